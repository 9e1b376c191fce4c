// ds4 — extracting steering directions from contrasting prompt sets,
// finding the refusal direction, baking an ablation into the weights, and
// sweeping a vector's scale against a metric.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ds4/generate.hpp"
#include "ds4/steering.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Model;

// One prompt of a contrast set: tokens[0, prompt_length) is the prompt (as
// rendered for the model); tokens after it, if any, are a response prefix.
struct ContrastExample {
    std::vector<TokenId> tokens;
    int64_t prompt_length = 0;  // 0 = the whole sequence is the prompt
};

enum class TokenReduction {
    LastPromptToken,  // the activation at the last prompt token
    MeanResponse,     // mean over the response prefix rows
    MeanAll,          // mean over every row
};

enum class ExtractionMethod {
    MeanDifference,  // mean(target) - mean(contrast)
    PcaOfPairs,      // first principal axis of the paired differences (uncentred, deterministic power iteration)
};

struct ExtractionOptions {
    SteeringSite site = SteeringSite::FfnOut;  // AttnOut, FfnOut, LayerOut or LayerIn
    std::vector<int> layers;                   // empty = every layer
    ExtractionMethod method = ExtractionMethod::MeanDifference;
    TokenReduction reduction = TokenReduction::LastPromptToken;
    // Remove the component along the contrast mean (the reference engine's default).
    bool orthogonalize_contrast_mean = false;
    // The operation the returned vector is set up for (scale 0 = neutral until
    // the caller picks one; provenance.recommended_scale suggests one).
    SteeringOp op = SteeringOp::Add;
    std::string name;
    int64_t context_size = 0;  // 0 = the longest example + 1
};

struct LayerSeparation {
    int layer = 0;
    double mean_gap = 0;       // mean projection on the unit direction: target minus contrast
    double target_mean = 0;    // mean projection of the target set
    double contrast_mean = 0;  // mean projection of the contrast set
    double pooled_std = 0;
    double cohens_d = 0;       // mean_gap / pooled_std
    double pair_accuracy = 0;  // fraction of pairs where the target projects higher
    double raw_norm = 0;       // norm of the direction before normalisation
};

struct Extraction {
    SteeringVector vector;  // each layer's direction as long as its mean_gap, site/op as asked, scale 0
    std::vector<LayerSeparation> layers;
    int best_layer = -1;  // largest Cohen's d
};

// Capture both sets at the site and extract one direction per layer, pointing
// from the contrast set towards the target set and as long as the measured gap
// between the sets (so scale 1 is one gap: steering.hpp, "one scale unit";
// provenance.recommended_scale is 1). Pairs (for PCA and
// pair accuracy) are formed by index over the shorter set.
Extraction extract_direction(const std::shared_ptr<const Model>& model, std::span<const ContrastExample> target,
                             std::span<const ContrastExample> contrast, const ExtractionOptions& options);

// ---- refusal direction (Arditi et al. 2024) ----

struct RefusalOptions {
    std::vector<TokenId> refusal_tokens;  // first tokens of refusals ("I" of "I can't ...")
    int positions = 2;                    // post-instruction positions: the last N prompt tokens
    double max_layer_fraction = 0.8;      // skip layers >= this fraction of depth
    double max_kl = 0.1;                  // KL(base || ablated) on harmless prompts
    std::vector<int> layers;              // candidate layers (empty = all below the fraction)
};

struct RefusalCandidate {
    int layer = 0;
    int position = 0;  // offset from the end of the prompt (-1 = last token)
    double bypass = 0;  // mean refusal score on harmful prompts with the direction ablated
    double induce = 0;  // mean refusal score on harmless prompts with it added at `layer`
    double kl = 0;      // mean KL on harmless prompts under ablation
    bool eligible = false;
};

struct RefusalDirection {
    std::vector<float> direction;  // unit, n_embd
    std::vector<float> raw;        // difference of means (not normalised)
    int layer = -1;
    int position = 0;
    std::vector<RefusalCandidate> candidates;
    double base_harmful_score = 0, base_harmless_score = 0;
};

// Refusal score of the next-token distribution: log p(R) - log(1 - p(R)).
double refusal_score(std::span<const float> logits, std::span<const TokenId> refusal_tokens);

RefusalDirection find_refusal_direction(const std::shared_ptr<const Model>& model,
                                        std::span<const std::vector<TokenId>> harmful_train,
                                        std::span<const std::vector<TokenId>> harmless_train,
                                        std::span<const std::vector<TokenId>> harmful_val,
                                        std::span<const std::vector<TokenId>> harmless_val,
                                        const RefusalOptions& options);

// Directional ablation at every layer and position: ablate at the embedding
// (layer 0 input) and at every attention and FFN output, which keeps the
// direction out of all HC streams.
// With op Project (scale -1 = the ablation, 0 = none) the set can be swept.
std::vector<SteeringVector> directional_ablation(const Model& model, std::span<const float> direction,
                                                 SteeringOp op = SteeringOp::Ablate);
std::vector<SteeringHandle> add_directional_ablation(Session& session, std::span<const float> direction);

// Write a copy of the model whose residual writers (token_embd,
// attn_output_b, ffn_down_shexp, ffn_down_exps) are orthogonalised against
// the direction, W <- W - r r^T W, requantized to their original types.
void export_orthogonalized_model(const Model& model, std::span<const float> direction, const std::string& out_path);

// ---- sweeps ----

enum class SweepMetric {
    ResponseLength,  // generated tokens before a stop token
    RefusalRate,     // fraction of responses starting with a refusal (see SweepOptions)
    KlToUnsteered,   // mean KL(unsteered || steered) over the unsteered continuation
};

struct SweepOptions {
    std::vector<float> scales = {-2, -1, -0.5f, 0, 0.5f, 1, 2};
    GenerateOptions generation;
    int64_t context_size = 0;  // 0 = longest prompt + max_tokens + 1
    // RefusalRate: a response counts as a refusal if it starts with one of these token sequences.
    std::vector<std::vector<TokenId>> refusal_prefixes;
};

struct SweepRow {
    float scale = 0;
    double mean = 0;
    std::vector<double> per_prompt;
    std::vector<std::vector<TokenId>> responses;
};

std::vector<SweepRow> sweep(const std::shared_ptr<const Model>& model, std::span<const std::vector<TokenId>> prompts,
                            const SteeringVector& vector, SweepMetric metric, const SweepOptions& options);
// A set of vectors swept jointly: every vector gets the row's scale (e.g.
// directional_ablation(..., SteeringOp::Project) at scales {0, 1}).
std::vector<SweepRow> sweep(const std::shared_ptr<const Model>& model, std::span<const std::vector<TokenId>> prompts,
                            std::span<const SteeringVector> vectors, SweepMetric metric, const SweepOptions& options);
std::string sweep_table(const std::vector<SweepRow>& rows, SweepMetric metric);
std::string sweep_csv(const std::vector<SweepRow>& rows, SweepMetric metric);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
