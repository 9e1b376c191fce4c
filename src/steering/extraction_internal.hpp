// Helpers shared by the extraction, refusal and sweep code.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ds4/extraction.hpp"
#include "ds4/hook.hpp"
#include "ds4/steering.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Session;

namespace steering_detail {

HookPoint capture_point(SteeringSite site);
double dot(std::span<const float> a, std::span<const float> b);
uint64_t hash_token_sets(std::span<const std::vector<TokenId>> sets);
std::vector<double> mean_of(const std::vector<std::vector<float>>& rows);
// One reduced activation per example.
using ReducedRows = std::vector<std::vector<float>>;

// One layer's direction from the two sets' reduced rows: pointing from the
// contrast set to the target set, as long as the measured gap between their
// mean projections (empty when the sets do not separate), and its report.
struct LayerDirection {
    std::vector<float> direction;
    LayerSeparation report;
};
LayerDirection layer_direction(const ReducedRows& target, const ReducedRows& contrast, ExtractionMethod method,
                               bool orthogonalize_contrast_mean, int layer);

// The next-token logits at each token of `continuation`, teacher forced after
// `prompt` from an empty state: row k is the distribution continuation[k] was
// drawn from (one row, after the prompt, for an empty continuation).
std::vector<std::vector<float>> teacher_forced_logits(Session& s, std::span<const TokenId> prompt,
                                                      std::span<const TokenId> continuation);

// KL(p || q) of the softmax distributions of two logit vectors.
double kl_divergence(std::span<const float> p_logits, std::span<const float> q_logits);

}  // namespace steering_detail
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
