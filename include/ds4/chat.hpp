// ds4 — the DeepSeek-V4 chat format (runtime spec section 2): system, user,
// assistant and tool turns, thinking modes, rendered straight to token ids.
// Control tokens are inserted as ids, never parsed out of message text, so
// message content cannot inject `<｜User｜>` or any other control token.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ds4/tokenizer.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class Role { System, User, Assistant, Tool };

struct ChatMessage {
    Role role = Role::User;
    std::string content;
    std::string reasoning;  // assistant: the thinking text (kept only where the format keeps it)
};

enum class ThinkingMode {
    None,  // the assistant turn opens with </think>
    High,  // the assistant turn opens with <think>
    Max,   // High plus the "maximum effort" prefix after BOS (needs a context of >= 393216 tokens)
};

// The smallest context Max is used with; below it Max falls back to High.
inline constexpr int64_t kMaxThinkingMinContext = 393216;
// The mode actually used for a context size (0 = unknown: Max stays Max).
ThinkingMode effective_thinking_mode(ThinkingMode mode, int64_t context_size);
// The text Max mode puts after BOS.
const std::string& max_thinking_prefix();

struct ChatOptions {
    ThinkingMode thinking = ThinkingMode::None;
    int64_t context_size = 0;         // for the Max rule (0 = do not gate)
    bool add_generation_prompt = true;  // end with <｜Assistant｜> and the thinking marker after a user/tool turn
};

// BOS, [Max prefix], the system messages (joined by "\n\n"), then every other
// message in order, as the reference server renders a transcript.
std::vector<TokenId> render_chat(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                 const ChatOptions& options = {});

// The tokens that continue a transcript whose last message had role
// `previous` with one more message (and the generation prompt when it is a
// user or tool turn), so a Session can go on without re-prefilling. After a
// generated assistant reply, append the EOS the model emitted (or
// tok.specials().eos) before the next turn.
std::vector<TokenId> render_turn(const Tokenizer& tok, const ChatMessage& message, Role previous,
                                 const ChatOptions& options = {});

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
