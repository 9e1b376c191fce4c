// SteeringDataset builders, and turning the dataset into token sequences
// (contrast examples with their answers, held-out prompts).
#include <algorithm>

#include "core/error_internal.hpp"
#include "ds4/generate.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering_training.hpp"
#include "steering/training_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {

std::vector<ChatMessage> user_turn(std::string text) { return {{Role::User, std::move(text), ""}}; }

std::vector<ChatMessage> answered(std::string user, std::string answer) {
    return {{Role::User, std::move(user), ""}, {Role::Assistant, std::move(answer), ""}};
}

std::string fill_persona(std::string_view tmpl, std::string_view persona) {
    const std::string_view key = "{persona}";
    const size_t at = tmpl.find(key);
    if (at == std::string_view::npos)
        fail(ErrorCode::InvalidArgument, "add_personas: the template \"%.*s\" has no {persona}",
             static_cast<int>(tmpl.size()), tmpl.data());
    std::string out(tmpl.substr(0, at));
    out += persona;
    out += tmpl.substr(at + key.size());
    return out;
}

}  // namespace

void SteeringDataset::add_pair(std::string positive_user, std::string negative_user) {
    pairs.push_back({user_turn(std::move(positive_user)), user_turn(std::move(negative_user))});
}

void SteeringDataset::add_completions(const std::string& prompt, std::string positive_answer,
                                      std::string negative_answer) {
    pairs.push_back({answered(prompt, std::move(positive_answer)), answered(prompt, std::move(negative_answer))});
}

void SteeringDataset::add_personas(std::string_view user_template, std::string_view positive_persona,
                                   std::string_view negative_persona, std::span<const std::string> answer_openings) {
    if (answer_openings.empty()) fail(ErrorCode::InvalidArgument, "add_personas needs at least one answer opening");
    const std::string pos = fill_persona(user_template, positive_persona);
    const std::string neg = fill_persona(user_template, negative_persona);
    for (const std::string& opening : answer_openings) pairs.push_back({answered(pos, opening), answered(neg, opening)});
}

void SteeringDataset::add_heldout(std::string user, std::string positive_completion, std::string negative_completion) {
    heldout.push_back({user_turn(std::move(user)), std::move(positive_completion), std::move(negative_completion)});
}

void SteeringDataset::add_neutral(std::string user) { neutral.push_back(user_turn(std::move(user))); }

namespace steering_detail {

std::string last_user_text(std::span<const ChatMessage> conversation) {
    for (size_t i = conversation.size(); i-- > 0;)
        if (conversation[i].role == Role::User) return conversation[i].content;
    return {};
}

std::vector<TokenId> render_prompt(const Tokenizer& tok, std::span<const ChatMessage> conversation,
                                   const ChatOptions& chat, const char* what, size_t index) {
    if (conversation.empty()) fail(ErrorCode::InvalidArgument, "%s %zu is an empty conversation", what, index);
    if (conversation.back().role == Role::Assistant)
        fail(ErrorCode::InvalidArgument, "%s %zu ends with an assistant message; it must end with a user turn", what,
             index);
    ChatOptions o = chat;
    o.add_generation_prompt = true;
    return render_chat(tok, conversation, o);
}

size_t answer_length(std::span<const TokenId> answer, TokenId eos) {
    const auto it = std::find(answer.begin(), answer.end(), eos);
    return static_cast<size_t>(it - answer.begin());
}

std::vector<TokenId> generate_answer(Session& s, std::span<const TokenId> prompt, int max_new_tokens, TokenId eos,
                                     int64_t* tokens) {
    s.reset();
    GenerateOptions go;
    go.max_tokens = max_new_tokens;
    go.stop_tokens = {eos};
    std::vector<TokenId> answer = generate(s, prompt, go).tokens;
    *tokens += static_cast<int64_t>(prompt.size() + answer.size());
    answer.resize(answer_length(answer, eos));
    return answer;
}

RenderedExample render_side(const Tokenizer& tok, std::span<const ChatMessage> side, const ChatOptions& chat,
                            size_t index) {
    if (side.empty()) fail(ErrorCode::InvalidArgument, "contrast pair %zu has an empty side", index);
    RenderedExample ex;
    const bool has_answer = side.back().role == Role::Assistant;
    const auto context = has_answer ? side.first(side.size() - 1) : side;
    ex.prompt = render_prompt(tok, context, chat, "contrast pair", index);
    ex.prompt_text = last_user_text(context);
    if (has_answer) {
        ex.answer = tok.encode(side.back().content);
        ex.answer_given = true;
        if (ex.answer.empty()) fail(ErrorCode::InvalidArgument, "contrast pair %zu has an empty answer", index);
    }
    return ex;
}

}  // namespace steering_detail

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
