// ds4 — a decode loop: prefill a prompt, then sample token by token.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ds4/sampling.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Session;

struct GenerateOptions {
    int max_tokens = 128;
    SamplingParams sampling = {.temperature = 0.0f};  // greedy by default
    uint64_t seed = 1;
    std::vector<TokenId> stop_tokens;  // generation ends after one of these (it is included)
    // Called with each new token; return false to stop.
    std::function<bool(TokenId)> on_token;
};

struct Generation {
    std::vector<TokenId> tokens;  // generated tokens (the prompt excluded)
    bool stopped_by_token = false;
    bool hit_context_limit = false;
};

// Make the session hold `prompt` (reusing a common prefix, see Session::sync),
// then sample up to max_tokens tokens, feeding each back. Never overruns the
// context: generation stops (hit_context_limit) when it is full. The last
// generated token is returned but not evaluated, so the session then holds
// prompt + tokens[0 .. n-1); call sync() with the full transcript to go on.
Generation generate(Session& session, std::span<const TokenId> prompt, const GenerateOptions& options = {});

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
