// Internals of train_steering shared by its source files: rendered examples,
// behaviour metrics and the coherence guard.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ds4/chat.hpp"
#include "ds4/steering_training.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Session;

namespace steering_detail {

// One side of a contrast pair as tokens: the rendered prompt (ending with the
// generation prompt) and the answer after it (given, or the model's own).
struct RenderedExample {
    std::vector<TokenId> prompt, answer;
    std::string prompt_text;  // the last user message (what a custom metric is given)
    bool answer_given = false;
};

std::string last_user_text(std::span<const ChatMessage> conversation);
// The conversation with the generation prompt; it must end with a user turn.
std::vector<TokenId> render_prompt(const Tokenizer& tok, std::span<const ChatMessage> conversation,
                                   const ChatOptions& chat, const char* what, size_t index);
RenderedExample render_side(const Tokenizer& tok, std::span<const ChatMessage> side, const ChatOptions& chat,
                            size_t index);
// Tokens before the first `eos`.
size_t answer_length(std::span<const TokenId> answer, TokenId eos);
// The session's greedy answer to `prompt` (from an empty state), without the
// stop token; adds the tokens it evaluated to *tokens.
std::vector<TokenId> generate_answer(Session& s, std::span<const TokenId> prompt, int max_new_tokens, TokenId eos,
                                     int64_t* tokens);

// A prompt the behaviour is measured on.
struct EvalPrompt {
    std::vector<TokenId> prompt;
    std::string text;  // its last user message
    std::vector<TokenId> positive_completion, negative_completion;
};

// Scores sets of answers with a BehaviourMetric.
class BehaviourScorer {
public:
    BehaviourScorer(const BehaviourMetric& metric, const Tokenizer& tok);
    bool generates() const { return metric_.kind != BehaviourMetric::Kind::CompletionLogProb; }
    // The metric of answers (token ids without the stop token) to prompts.
    double of_answers(std::span<const std::string> prompts, std::span<const std::vector<TokenId>> answers) const;
    // The metric measured on a session with its current hooks: generation,
    // or teacher-forced completions. Adds evaluated tokens to *tokens.
    double measure(Session& s, std::span<const EvalPrompt> prompts, int max_new_tokens, int64_t* tokens) const;

private:
    bool is_refusal(const std::string& answer) const;
    BehaviourMetric metric_;
    const Tokenizer& tok_;
    std::vector<std::string> refusal_phrases_;
};

// The coherence guard: the unsteered next-token distributions over the first
// tokens of the unsteered answers to the neutral prompts, and a quantile of
// the per-token KL of a steered session's distributions from them.
class CoherenceGuard {
public:
    CoherenceGuard(Session& s, std::span<const std::vector<TokenId>> prompts, int answer_tokens, TokenId eos,
                   int64_t* tokens);
    double kl(Session& s, double quantile, int64_t* tokens) const;

private:
    struct Item {
        std::vector<TokenId> prompt, answer;     // the unsteered answer's first tokens
        std::vector<std::vector<float>> logits;  // unsteered, per answer position
        std::vector<std::vector<float>> teacher_forced(Session& s, int64_t* tokens) const;
    };
    std::vector<Item> items_;
};

}  // namespace steering_detail
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
