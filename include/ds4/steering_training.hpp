// ds4 — from text to a validated steering vector in one call.
//
//   ds4::SteeringDataset data;
//   data.add_pair("Answer briefly: what is MoE?", "Answer at length: what is MoE?");
//   ...
//   data.add_heldout("What is a hash table?");
//   ds4::TrainedSteering t = ds4::train_steering(model, data);   // library defaults
//   std::puts(t.table().c_str());
//   t.vector.save("terse.ds4steer.gguf");
//
// train_steering renders the chat template, captures activations at the
// candidate sites (attention output, FFN output, layer output), layer bands
// and token reductions (last prompt token, mean over the first N answer
// tokens, every answer token), builds directions (mean difference, PCA), and
// picks the setting and scale by measuring behaviour: it generates on the
// held-out prompts at each candidate scale (+s and -s) and scores the answers
// with a metric, rejecting settings whose coherence guard (KL of the steered
// next-token distributions on the unsteered answers to neutral prompts)
// exceeds a bound. The result is the vector at its chosen scale and a report
// with one row per setting tried.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ds4/chat.hpp"
#include "ds4/extraction.hpp"
#include "ds4/steering.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Model;

// One contrastive example: the same request with (positive) and without
// (negative) the behaviour. When a side's last message is an assistant
// message, its text is that side's answer; otherwise the model's own greedy
// answer is generated.
struct ContrastPair {
    std::vector<ChatMessage> positive;
    std::vector<ChatMessage> negative;
};

// A held-out conversation (ending with a user turn) the behaviour is measured
// on. The completions are used by the CompletionLogProb metric only.
struct HeldOutPrompt {
    std::vector<ChatMessage> conversation;
    std::string positive_completion;
    std::string negative_completion;
};

struct SteeringDataset {
    std::vector<ContrastPair> pairs;
    std::vector<HeldOutPrompt> heldout;
    // Prompts for the coherence guard (empty = the held-out conversations).
    std::vector<std::vector<ChatMessage>> neutral;

    // Two user prompts that differ in the behaviour (answers generated).
    void add_pair(std::string positive_user, std::string negative_user);
    // One prompt with an answer that shows the behaviour and one that does not.
    void add_completions(const std::string& prompt, std::string positive_answer, std::string negative_answer);
    // repeng's template: `user_template` holds "{persona}"; every answer
    // opening in `answer_openings` makes one pair (the same opening after the
    // two personas).
    void add_personas(std::string_view user_template, std::string_view positive_persona,
                      std::string_view negative_persona, std::span<const std::string> answer_openings);
    void add_heldout(std::string user, std::string positive_completion = {}, std::string negative_completion = {});
    void add_neutral(std::string user);
};

// How behaviour is scored. Every metric gives one number for a set of
// answers; the search maximizes its move towards the positive side.
struct BehaviourMetric {
    enum class Kind {
        AnswerLength,       // log of the mean number of answer tokens (before the stop token)
        CompletionLogProb,  // CAA's A/B score: log p(positive completion) - log p(negative completion), teacher forced
        Refusal,            // share of answers that open with a refusal phrase
        Custom,             // mean of `score` over the answers
    };
    Kind kind = Kind::AnswerLength;
    // Refusal: answer openings that count (empty = a built-in English list).
    std::vector<std::string> refusal_phrases;
    // Custom: the score of one answer (the prompt's last user text, the answer text).
    std::function<double(const std::string& prompt, const std::string& answer)> score;
    // +1: the positive side scores higher; -1: lower; 0: measured on the
    // pairs' answers (not possible for CompletionLogProb, which is +1).
    int positive_direction = 0;
};

std::string_view behaviour_metric_name(BehaviourMetric::Kind kind) noexcept;

// One setting to try: where and how a direction is captured and applied.
struct SteeringCandidate {
    SteeringSite site = SteeringSite::LayerOut;
    SteeringOp op = SteeringOp::Add;
    TokenReduction reduction = TokenReduction::MeanResponse;
    int answer_tokens = 16;  // MeanResponse: the first N answer tokens (0 = every answer token)
    ExtractionMethod method = ExtractionMethod::MeanDifference;
    bool orthogonalize_contrast_mean = false;
    std::vector<int> layers;  // the layers steered (empty = every layer)

    std::string label() const;  // e.g. "layer_out add mean(first 16) mean_diff L2-3"
};

// The default grid for a model of n_layer layers: the layer output at three
// bands of middle layers with the mean over the first answer tokens, the
// other reductions and sites at the middle band, PCA, the FFN output over
// every layer, and the reference engine's recipe (FFN-output projection on
// every layer, last prompt token, orthogonalized against the negative mean).
std::vector<SteeringCandidate> default_steering_candidates(int n_layer);

struct SteeringTrainingProgress {
    std::string stage;    // "answers", "capture", "baseline", "search", "confirm"
    int64_t done = 0, total = 0;
    std::string detail;   // the candidate and scale being measured
};

struct SteeringTrainingOptions {
    BehaviourMetric metric;
    std::vector<SteeringCandidate> candidates;  // empty = default_steering_candidates
    // Scales tried per candidate, smallest first, until one breaks the
    // coherence guard or neither side moves further. Ties in the effect go to
    // the larger move of both sides together. Add/Clamp: multiples of 1/(steered layers), so that
    // 1 moves the residual by about one measured gap in all; Project: as is.
    std::vector<float> add_scales = {0.5f, 1.0f, 2.0f, 4.0f, 8.0f};
    std::vector<float> project_scales = {0.25f, 0.5f, 1.0f, 2.0f};
    // Score a setting by its weaker side, +s towards the positive behaviour
    // and -s away from it (false: +s only).
    bool symmetric = true;
    // Coherence guard: the per-token KL (nats) between the unsteered and the
    // steered next-token distributions, teacher forced on the first
    // `coherence_tokens` tokens of the unsteered answers to the neutral
    // prompts, at +s and at -s; its `kl_quantile` quantile must stay under
    // max_kl. A behaviour changes a few decisions per answer (where to stop, a
    // refusal's first token) and leaves the other tokens' distributions alone;
    // a broken model changes most of them. Raise max_kl or lower kl_quantile
    // for a behaviour that rewrites most tokens (a persona, a language).
    double max_kl = 0.1;
    double kl_quantile = 0.9;
    int coherence_tokens = 16;
    struct Budget {
        int max_candidates = 16;   // candidates measured (the first of the grid)
        int search_prompts = 8;    // held-out prompts per measured setting
        int confirm_prompts = 32;  // held-out prompts for the chosen setting's final numbers
        int max_new_tokens = 96;   // per generated answer
        int64_t max_tokens = 0;    // stop searching after this many evaluated tokens (0 = no limit)
    } budget;
    ChatOptions chat;  // thinking mode of the rendered conversations
    std::string name;  // provenance name of the vector
    // Called as the work advances; return false to cancel (throws Cancelled).
    std::function<bool(const SteeringTrainingProgress&)> progress;
};

// One measured setting.
struct SteeringTrial {
    std::string candidate;  // SteeringCandidate::label()
    int candidate_index = -1;
    float scale = 0;
    double metric_negative = 0, metric_base = 0, metric_positive = 0;  // at -s, 0, +s
    double effect = 0;    // the score: the metric's move towards the positive side (the weaker side if symmetric)
    double effect_up = 0, effect_down = 0;  // the move at +s, and away from it at -s
    double kl = 0;        // coherence guard: the KL quantile (the larger of +s and -s)
    bool coherent = true;
    bool chosen = false;
    bool confirmation = false;  // measured again on confirm_prompts
    std::string note;           // why a row was not measured (e.g. the sides do not differ there)
    int prompts = 0;
    int64_t tokens = 0;   // tokens evaluated for this row (prefill + generation)
    double seconds = 0;
};

struct TrainedSteering {
    bool found = false;      // a coherent setting moved the behaviour the right way
    SteeringVector vector{1, 1, SteeringSite::LayerOut, SteeringOp::Add};  // the chosen setting at its scale (if found)
    SteeringCandidate setting;
    std::vector<SteeringTrial> report;
    std::vector<LayerSeparation> separation;  // per layer, of the chosen setting
    int positive_direction = 0;               // the metric's orientation used
    double pairs_metric_positive = 0, pairs_metric_negative = 0;  // the metric on the pairs' own answers
    int64_t tokens = 0;
    double seconds = 0;

    std::string table() const;  // the report as an aligned text table
    std::string csv() const;
};

TrainedSteering train_steering(const std::shared_ptr<const Model>& model, const SteeringDataset& data,
                               const SteeringTrainingOptions& options = {});

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
