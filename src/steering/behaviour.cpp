// Behaviour metrics and the coherence guard of train_steering.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error_internal.hpp"
#include "ds4/session.hpp"
#include "ds4/tokenizer.hpp"
#include "steering/extraction_internal.hpp"
#include "steering/training_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

std::string_view behaviour_metric_name(BehaviourMetric::Kind kind) noexcept {
    switch (kind) {
        case BehaviourMetric::Kind::AnswerLength: return "answer_length";
        case BehaviourMetric::Kind::CompletionLogProb: return "completion_logprob";
        case BehaviourMetric::Kind::Refusal: return "refusal";
        case BehaviourMetric::Kind::Custom: return "custom";
    }
    return "?";
}

namespace steering_detail {

namespace {

const std::vector<std::string>& default_refusal_phrases() {
    static const std::vector<std::string> phrases = {
        "I can't", "I cannot", "I can not", "I won't", "I will not", "I'm sorry", "I am sorry", "Sorry",
        "I'm not able", "I am not able", "I'm unable", "I am unable", "As an AI", "I must decline", "I apologize"};
    return phrases;
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
            return false;
    return true;
}

// Sum of log p(completion token) after `prompt`, teacher forced.
double completion_logprob(Session& s, std::span<const TokenId> prompt, std::span<const TokenId> completion,
                          int64_t* tokens) {
    const auto rows = teacher_forced_logits(s, prompt, completion);
    *tokens += static_cast<int64_t>(prompt.size() + completion.size() - 1);
    double lp = 0;
    for (size_t k = 0; k < completion.size(); ++k) {
        const std::vector<float>& logits = rows[k];
        double m = -INFINITY;
        for (float v : logits) m = std::max(m, static_cast<double>(v));
        double z = 0;
        for (float v : logits) z += std::exp(static_cast<double>(v) - m);
        lp += static_cast<double>(logits[static_cast<size_t>(completion[k])]) - m - std::log(z);
    }
    return lp;
}

}  // namespace

BehaviourScorer::BehaviourScorer(const BehaviourMetric& metric, const Tokenizer& tok) : metric_(metric), tok_(tok) {
    if (metric.kind == BehaviourMetric::Kind::Custom && !metric.score)
        fail(ErrorCode::InvalidArgument, "the custom behaviour metric needs a score function");
    if (metric.positive_direction < -1 || metric.positive_direction > 1)
        fail(ErrorCode::InvalidArgument, "metric.positive_direction must be -1, 0 or +1 (got %d)",
             metric.positive_direction);
    refusal_phrases_ = metric.refusal_phrases.empty() ? default_refusal_phrases() : metric.refusal_phrases;
}

bool BehaviourScorer::is_refusal(const std::string& answer) const {
    size_t start = 0;
    while (start < answer.size() && std::isspace(static_cast<unsigned char>(answer[start]))) ++start;
    const std::string_view text = std::string_view(answer).substr(start);
    for (const std::string& p : refusal_phrases_)
        if (!p.empty() && starts_with_ignoring_case(text, p)) return true;
    return false;
}

double BehaviourScorer::of_answers(std::span<const std::string> prompts,
                                   std::span<const std::vector<TokenId>> answers) const {
    if (answers.empty()) fail(ErrorCode::InvalidArgument, "a behaviour metric needs at least one answer");
    double sum = 0;
    for (size_t i = 0; i < answers.size(); ++i) {
        switch (metric_.kind) {
            case BehaviourMetric::Kind::AnswerLength: sum += static_cast<double>(answers[i].size()); break;
            case BehaviourMetric::Kind::Refusal: sum += is_refusal(tok_.decode(answers[i])) ? 1.0 : 0.0; break;
            case BehaviourMetric::Kind::Custom: {
                const double v = metric_.score(prompts[i], tok_.decode(answers[i]));
                if (!std::isfinite(v))
                    fail(ErrorCode::InvalidArgument, "the custom behaviour metric returned %g for answer %zu", v, i);
                sum += v;
                break;
            }
            case BehaviourMetric::Kind::CompletionLogProb:
                fail(ErrorCode::InvalidArgument, "the completion log-probability metric does not score answers");
        }
    }
    const double mean = sum / static_cast<double>(answers.size());
    return metric_.kind == BehaviourMetric::Kind::AnswerLength ? std::log(mean + 1.0) : mean;
}

double BehaviourScorer::measure(Session& s, std::span<const EvalPrompt> prompts, int max_new_tokens,
                                int64_t* tokens) const {
    if (metric_.kind == BehaviourMetric::Kind::CompletionLogProb) {
        double sum = 0;
        for (const EvalPrompt& p : prompts)
            sum += completion_logprob(s, p.prompt, p.positive_completion, tokens) -
                   completion_logprob(s, p.prompt, p.negative_completion, tokens);
        return sum / static_cast<double>(prompts.size());
    }
    const TokenId eos = tok_.specials().eos;
    std::vector<std::string> texts;
    std::vector<std::vector<TokenId>> answers;
    for (const EvalPrompt& p : prompts) {
        texts.push_back(p.text);
        answers.push_back(generate_answer(s, p.prompt, max_new_tokens, eos, tokens));
    }
    return of_answers(texts, answers);
}

CoherenceGuard::CoherenceGuard(Session& s, std::span<const std::vector<TokenId>> prompts, int answer_tokens,
                               TokenId eos, int64_t* tokens) {
    for (const auto& p : prompts) {
        Item item;
        std::vector<TokenId> answer = generate_answer(s, p, answer_tokens, eos, tokens);
        if (answer.size() < static_cast<size_t>(answer_tokens)) answer.push_back(eos);  // the stop is part of it
        item.prompt = p;
        item.answer = std::move(answer);
        item.logits = item.teacher_forced(s, tokens);
        items_.push_back(std::move(item));
    }
}

std::vector<std::vector<float>> CoherenceGuard::Item::teacher_forced(Session& s, int64_t* tokens) const {
    *tokens += static_cast<int64_t>(prompt.size() + answer.size() - 1);
    return teacher_forced_logits(s, prompt, answer);
}

double CoherenceGuard::kl(Session& s, double quantile, int64_t* tokens) const {
    std::vector<double> kls;
    for (const Item& item : items_) {
        const auto steered = item.teacher_forced(s, tokens);
        for (size_t k = 0; k < steered.size(); ++k) kls.push_back(kl_divergence(item.logits[k], steered[k]));
    }
    if (kls.empty()) return 0.0;
    const auto at = static_cast<size_t>(std::clamp(quantile, 0.0, 1.0) * static_cast<double>(kls.size() - 1) + 0.5);
    std::nth_element(kls.begin(), kls.begin() + static_cast<std::ptrdiff_t>(at), kls.end());
    return kls[at];
}

}  // namespace steering_detail
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
