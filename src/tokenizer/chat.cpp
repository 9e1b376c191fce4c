// Chat rendering (runtime spec 2.1-2.2).
#include "ds4/chat.hpp"

#include "core/error_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace {

// Tool results are wrapped in <tool_result>...</tool_result>; the closing tag
// inside the content is neutralised (its '<' written as "&lt;").
std::string escape_tool_result(const std::string& s) {
    static const std::string close = "</tool_result>";
    std::string out;
    size_t i = 0;
    for (size_t j; (j = s.find(close, i)) != std::string::npos; i = j + 1) {
        out.append(s, i, j - i);
        out += "&lt;";
    }
    out.append(s, i);
    return out;
}

struct Renderer {
    const Tokenizer& tok;
    ThinkingMode mode;
    std::vector<TokenId> out;

    void text(const std::string& s) { tok.encode_append(s, out); }
    void id(TokenId t) { out.push_back(t); }
    bool thinking() const { return mode != ThinkingMode::None; }

    void generation_prompt() {
        id(tok.specials().assistant);
        id(thinking() ? tok.specials().think : tok.specials().end_think);
    }

    // One non-system message; `previous` is the role of the message before it.
    void message(const ChatMessage& m, Role previous, bool keep_reasoning) {
        switch (m.role) {
            case Role::User:
                id(tok.specials().user);
                text(m.content);
                break;
            case Role::Tool:
                if (previous != Role::Tool) id(tok.specials().user);
                text("<tool_result>" + escape_tool_result(m.content) + "</tool_result>");
                break;
            case Role::Assistant:
                if (previous == Role::User || previous == Role::Tool) id(tok.specials().assistant);
                if (thinking() && keep_reasoning) {
                    id(tok.specials().think);
                    text(m.reasoning);
                }
                id(tok.specials().end_think);
                text(m.content);
                id(tok.specials().eos);
                break;
            case Role::System:
                text(m.content);
                break;
        }
    }
};

}  // namespace

ThinkingMode effective_thinking_mode(ThinkingMode mode, int64_t context_size) {
    if (mode == ThinkingMode::Max && context_size > 0 && context_size < kMaxThinkingMinContext) return ThinkingMode::High;
    return mode;
}

const std::string& max_thinking_prefix() {
    static const std::string s =
        "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
        "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
        "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
        "scenarios.\n"
        "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
        "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";
    return s;
}

std::vector<TokenId> render_chat(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                 const ChatOptions& options) {
    Renderer r{tok, effective_thinking_mode(options.thinking, options.context_size), {}};
    r.id(tok.specials().bos);
    if (r.mode == ThinkingMode::Max) r.text(max_thinking_prefix());
    std::string system;
    for (const auto& m : messages)
        if (m.role == Role::System) system += (system.empty() ? "" : "\n\n") + m.content;
    if (!system.empty()) r.text(system);
    // Reasoning is kept for tool conversations and for assistant turns after
    // the last user/tool message; older reasoning is dropped.
    bool tool_context = false;
    size_t last_user_or_tool = 0;
    bool any_user_or_tool = false;
    for (size_t i = 0; i < messages.size(); ++i) {
        if (messages[i].role == Role::Tool) tool_context = true;
        if (messages[i].role == Role::User || messages[i].role == Role::Tool) {
            last_user_or_tool = i;
            any_user_or_tool = true;
        }
    }
    Role previous = Role::System;
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == Role::System) continue;
        r.message(m, previous, tool_context || !any_user_or_tool || i > last_user_or_tool);
        previous = m.role;
    }
    if (options.add_generation_prompt && (previous == Role::User || previous == Role::Tool)) r.generation_prompt();
    return std::move(r.out);
}

std::vector<TokenId> render_turn(const Tokenizer& tok, const ChatMessage& message, Role previous,
                                 const ChatOptions& options) {
    if (message.role == Role::System)
        detail::fail(ErrorCode::InvalidArgument, "render_turn: a system message belongs at the start of the transcript");
    Renderer r{tok, effective_thinking_mode(options.thinking, options.context_size), {}};
    r.message(message, previous, true);
    if (options.add_generation_prompt && (message.role == Role::User || message.role == Role::Tool))
        r.generation_prompt();
    return std::move(r.out);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
