// ds4 — choosing the next token from logits.
//
// Evaluation and sampling are separate: a Session produces logits, and these
// free functions pick from them with a caller-owned random state, so custom
// samplers, log-probabilities and perplexity need nothing from the engine.
// The semantics (order top-k -> temperature -> min-p -> top-p, the RNG) follow
// the reference engine so that seeded runs are reproducible.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

struct SamplingParams {
    float temperature = 1.0f;  // <= 0: greedy (argmax, lowest id on ties)
    int top_k = 0;             // <= 0: off; capped at 1024
    float top_p = 1.0f;        // outside (0, 1]: off
    float min_p = 0.05f;       // keep p >= min_p * p_max (of the tempered distribution)
};

// xorshift64* generator; a zero seed is replaced by a fixed constant.
class Rng {
public:
    explicit Rng(uint64_t seed = 0) : state_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
    uint64_t next();
    float uniform();  // [0, 1) with 24 bits
    uint64_t state() const { return state_; }

private:
    uint64_t state_;
};

// Index of the largest finite-or-+inf logit (NaN never wins; ties -> lowest id).
TokenId argmax(std::span<const float> logits);
TokenId sample(std::span<const float> logits, const SamplingParams& params, Rng& rng);

struct TokenLogprob {
    TokenId id;
    float logit;
    float logprob;
};
// The n most likely tokens, most likely first, with log-probabilities.
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n);
float token_logprob(std::span<const float> logits, TokenId id);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
