// train_steering: contrast pairs in, a steering vector chosen by measured
// behaviour out (ds4/steering_training.hpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

#include "core/error_internal.hpp"
#include "ds4/capture.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering_training.hpp"
#include "steering/extraction_internal.hpp"
#include "steering/training_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;
using namespace steering_detail;

std::string SteeringCandidate::label() const {
    std::string s = std::string(steering_site_name(site)) + " " + std::string(steering_op_name(op)) + " ";
    switch (reduction) {
        case TokenReduction::LastPromptToken: s += "last_prompt"; break;
        case TokenReduction::MeanResponse:
            s += answer_tokens > 0 ? "answer[0," + std::to_string(answer_tokens) + ")" : "answer[all]";
            break;
        case TokenReduction::MeanAll: s += "all_tokens"; break;
    }
    s += method == ExtractionMethod::MeanDifference ? " mean_diff" : " pca";
    if (orthogonalize_contrast_mean) s += "+orth";
    if (layers.empty()) return s + " L*";
    const auto [lo, hi] = std::minmax_element(layers.begin(), layers.end());
    const bool contiguous = static_cast<size_t>(*hi - *lo + 1) == layers.size();
    if (contiguous) return s + " L" + std::to_string(*lo) + (*hi != *lo ? "-" + std::to_string(*hi) : "");
    s += " L";
    for (size_t i = 0; i < layers.size(); ++i) s += (i ? "," : "") + std::to_string(layers[i]);
    return s;
}

namespace {

std::vector<int> layer_band(int n_layer, double begin, double end) {
    const int a = std::clamp(static_cast<int>(std::floor(begin * n_layer)), 0, n_layer - 1);
    const int b = std::clamp(static_cast<int>(std::ceil(end * n_layer)), a + 1, n_layer);
    std::vector<int> out;
    for (int l = a; l < b; ++l) out.push_back(l);
    return out;
}

}  // namespace

std::vector<SteeringCandidate> default_steering_candidates(int n_layer) {
    if (n_layer < 1) fail(ErrorCode::InvalidArgument, "default_steering_candidates: n_layer %d", n_layer);
    using S = SteeringSite;
    using R = TokenReduction;
    const auto mid = layer_band(n_layer, 1.0 / 3, 2.0 / 3);
    const auto early = layer_band(n_layer, 1.0 / 6, 1.0 / 2);
    const auto late = layer_band(n_layer, 1.0 / 2, 5.0 / 6);
    const auto md = ExtractionMethod::MeanDifference;
    const auto pca = ExtractionMethod::PcaOfPairs;
    return {
        {S::LayerOut, SteeringOp::Add, R::MeanResponse, 16, md, false, mid},
        {S::LayerOut, SteeringOp::Add, R::MeanResponse, 16, md, false, early},
        {S::LayerOut, SteeringOp::Add, R::MeanResponse, 16, md, false, late},
        {S::LayerOut, SteeringOp::Add, R::MeanResponse, 0, md, false, mid},
        {S::LayerOut, SteeringOp::Add, R::LastPromptToken, 0, md, false, mid},
        {S::LayerOut, SteeringOp::Add, R::MeanResponse, 16, pca, false, mid},
        {S::FfnOut, SteeringOp::Add, R::MeanResponse, 16, md, false, mid},
        {S::AttnOut, SteeringOp::Add, R::MeanResponse, 16, md, false, mid},
        {S::FfnOut, SteeringOp::Add, R::MeanResponse, 16, md, false, {}},
        {S::FfnOut, SteeringOp::Project, R::LastPromptToken, 0, md, true, {}},
        {S::FfnOut, SteeringOp::Add, R::LastPromptToken, 0, md, false, mid},
    };
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Everything the search shares.
struct Trainer {
    std::shared_ptr<const Model> model;
    const Tokenizer& tok;
    const SteeringTrainingOptions& o;
    BehaviourScorer scorer;
    Session session;
    int64_t tokens = 0;

    Trainer(const std::shared_ptr<const Model>& m, const SteeringTrainingOptions& opt, int64_t context)
        : model(m),
          tok(*m->tokenizer()),
          o(opt),
          scorer(opt.metric, *m->tokenizer()),
          session(m, {.context_size = context, .checkpoint_interval = 0, .max_checkpoints = 0}) {}

    void progress(const char* stage, int64_t done, int64_t total, const std::string& detail = {}) const {
        if (o.progress && !o.progress({stage, done, total, detail}))
            fail(ErrorCode::Cancelled, "train_steering was cancelled during %s", stage);
    }
};

// ---- inputs ----

struct Inputs {
    std::vector<RenderedExample> positive, negative;
    std::vector<EvalPrompt> heldout;
    std::vector<std::vector<TokenId>> neutral;
    int64_t longest = 0;  // tokens of the longest sequence the search evaluates
};

void check_options(const SteeringTrainingOptions& o, const SteeringDataset& data) {
    const auto& b = o.budget;
    if (data.pairs.size() < 2) fail(ErrorCode::InvalidArgument, "train_steering needs at least 2 contrast pairs");
    if (data.heldout.empty()) fail(ErrorCode::InvalidArgument, "train_steering needs held-out prompts");
    if (b.max_candidates < 1 || b.search_prompts < 1 || b.confirm_prompts < 0 || b.max_new_tokens < 1 ||
        b.max_new_tokens > 65536 || b.max_tokens < 0)
        fail(ErrorCode::InvalidArgument,
             "train_steering budget out of range (max_candidates %d, search_prompts %d, confirm_prompts %d, "
             "max_new_tokens %d, max_tokens %lld)",
             b.max_candidates, b.search_prompts, b.confirm_prompts, b.max_new_tokens,
             static_cast<long long>(b.max_tokens));
    if (!(o.max_kl > 0) || !(o.kl_quantile >= 0 && o.kl_quantile <= 1) || o.coherence_tokens < 1 ||
        o.coherence_tokens > 4096)
        fail(ErrorCode::InvalidArgument,
             "train_steering: max_kl must be > 0, kl_quantile in [0, 1] and coherence_tokens in 1..4096");
    for (const auto* ladder : {&o.add_scales, &o.project_scales})
        for (float s : *ladder)
            if (!std::isfinite(s) || s <= 0) fail(ErrorCode::InvalidArgument, "train_steering: scale %g is not > 0", s);
}

Inputs render_inputs(const Tokenizer& tok, const SteeringDataset& data, const SteeringTrainingOptions& o) {
    Inputs in;
    for (size_t i = 0; i < data.pairs.size(); ++i) {
        in.positive.push_back(render_side(tok, data.pairs[i].positive, o.chat, i));
        in.negative.push_back(render_side(tok, data.pairs[i].negative, o.chat, i));
    }
    const bool ab = o.metric.kind == BehaviourMetric::Kind::CompletionLogProb;
    for (size_t i = 0; i < data.heldout.size(); ++i) {
        const HeldOutPrompt& h = data.heldout[i];
        EvalPrompt p{render_prompt(tok, h.conversation, o.chat, "held-out prompt", i), last_user_text(h.conversation),
                     tok.encode(h.positive_completion), tok.encode(h.negative_completion)};
        if (ab && (p.positive_completion.empty() || p.negative_completion.empty()))
            fail(ErrorCode::InvalidArgument,
                 "held-out prompt %zu needs a positive and a negative completion for the completion_logprob metric", i);
        in.heldout.push_back(std::move(p));
    }
    const size_t n_neutral = static_cast<size_t>(o.budget.search_prompts);
    for (size_t i = 0; i < data.neutral.size() && in.neutral.size() < n_neutral; ++i)
        in.neutral.push_back(render_prompt(tok, data.neutral[i], o.chat, "neutral prompt", i));
    for (size_t i = 0; data.neutral.empty() && i < in.heldout.size() && in.neutral.size() < n_neutral; ++i)
        in.neutral.push_back(in.heldout[i].prompt);
    auto grow = [&](size_t n) { in.longest = std::max(in.longest, static_cast<int64_t>(n)); };
    const size_t gen = static_cast<size_t>(o.budget.max_new_tokens);
    for (const auto* side : {&in.positive, &in.negative})
        for (const auto& e : *side) grow(e.prompt.size() + std::max(e.answer.size(), gen));
    for (const auto& p : in.heldout)
        grow(p.prompt.size() + std::max({gen, p.positive_completion.size(), p.negative_completion.size()}));
    for (const auto& p : in.neutral) grow(p.size() + static_cast<size_t>(o.coherence_tokens));
    return in;
}

// The model's own answers for the sides that have none.
void answer_pairs(Trainer& t, Inputs& in) {
    const int64_t total = static_cast<int64_t>(in.positive.size() * 2);
    int64_t done = 0;
    for (auto* side : {&in.positive, &in.negative})
        for (RenderedExample& e : *side) {
            t.progress("answers", done++, total);
            if (e.answer_given) continue;
            e.answer = generate_answer(t.session, e.prompt, t.o.budget.max_new_tokens, t.tok.specials().eos, &t.tokens);
        }
}

// The metric on the pairs' answers: which way the positive side moves it.
int orientation(const Trainer& t, const Inputs& in, double* pos, double* neg) {
    const int given = t.o.metric.positive_direction;
    if (t.o.metric.kind == BehaviourMetric::Kind::CompletionLogProb) return given ? given : 1;
    auto metric_of = [&](const std::vector<RenderedExample>& side) {
        std::vector<std::string> prompts;
        std::vector<std::vector<TokenId>> answers;
        for (const auto& e : side) {
            prompts.push_back(e.prompt_text);
            answers.push_back(e.answer);
        }
        return t.scorer.of_answers(prompts, answers);
    };
    *pos = metric_of(in.positive);
    *neg = metric_of(in.negative);
    if (t.o.metric.positive_direction != 0) return t.o.metric.positive_direction;
    if (*pos == *neg)
        fail(ErrorCode::InvalidArgument,
             "the %s metric is the same on the positive and the negative answers (%g): the pairs do not show the "
             "behaviour, or set metric.positive_direction",
             std::string(behaviour_metric_name(t.o.metric.kind)).c_str(), *pos);
    return *pos > *neg ? 1 : -1;
}

// ---- captures ----

using CaptureKey = std::tuple<int, int, int>;  // site, reduction, answer tokens

CaptureKey key_of(const SteeringCandidate& c) {
    const int n = c.reduction == TokenReduction::MeanResponse ? c.answer_tokens : 0;
    return {static_cast<int>(c.site), static_cast<int>(c.reduction), n};
}

struct SideCaptures {
    std::vector<ReducedRows> positive, negative;  // [layer][example]
};

std::vector<float> reduce(const CapturedActivation& c, const RenderedExample& e, TokenReduction red, int n) {
    const auto plen = static_cast<int64_t>(e.prompt.size());
    const auto alen = static_cast<int64_t>(e.answer.size());
    switch (red) {
        case TokenReduction::LastPromptToken: return c.stream_mean(plen - 1);
        case TokenReduction::MeanAll: return c.mean(0, plen + alen);
        case TokenReduction::MeanResponse: break;
    }
    if (alen == 0) return c.stream_mean(plen - 1);  // an empty answer: its only evidence is the last prompt token
    return c.mean(plen, plen + (n > 0 ? std::min<int64_t>(n, alen) : alen));
}

std::map<CaptureKey, SideCaptures> capture(Trainer& t, const Inputs& in,
                                           const std::vector<SteeringCandidate>& candidates) {
    const int n_layer = t.model->config().n_layer;
    std::map<CaptureKey, SideCaptures> out;
    std::vector<ActivationRecorder::Point> points;
    for (const auto& c : candidates) {
        auto& sc = out[key_of(c)];
        sc.positive.resize(static_cast<size_t>(n_layer));
        sc.negative.resize(static_cast<size_t>(n_layer));
        const HookPoint p = capture_point(c.site);
        if (std::none_of(points.begin(), points.end(), [&](const auto& x) { return x.point == p; }))
            points.push_back({p, {}});
    }
    const int64_t total = static_cast<int64_t>(in.positive.size() * 2);
    int64_t done = 0;
    for (int side = 0; side < 2; ++side)
        for (const RenderedExample& e : side == 0 ? in.positive : in.negative) {
            t.progress("capture", done++, total);
            std::vector<TokenId> seq = e.prompt;
            seq.insert(seq.end(), e.answer.begin(), e.answer.end());
            t.session.reset();
            const auto rec = run_with_cache(t.session, seq, points);
            t.tokens += static_cast<int64_t>(seq.size());
            for (auto& [key, sc] : out) {
                const auto [site, red, n] = key;
                auto& rows = side == 0 ? sc.positive : sc.negative;
                for (int l = 0; l < n_layer; ++l)
                    rows[static_cast<size_t>(l)].push_back(
                        reduce(rec->get(capture_point(static_cast<SteeringSite>(site)), l), e,
                               static_cast<TokenReduction>(red), n));
            }
        }
    return out;
}

// ---- candidates ----

struct BuiltCandidate {
    SteeringVector vector;
    std::vector<LayerSeparation> separation;
};

BuiltCandidate build(const Trainer& t, const SteeringCandidate& c, const SideCaptures& sc) {
    const ModelConfig& cfg = t.model->config();
    BuiltCandidate b{SteeringVector(cfg.n_layer, cfg.n_embd, c.site, c.op, 0.0f), {}};
    std::vector<int> layers = c.layers;
    if (layers.empty())
        for (int l = 0; l < cfg.n_layer; ++l) layers.push_back(l);
    for (int l : layers) {
        LayerDirection ld = layer_direction(sc.positive[static_cast<size_t>(l)], sc.negative[static_cast<size_t>(l)],
                                            c.method, c.orthogonalize_contrast_mean, l);
        b.separation.push_back(ld.report);
        if (!ld.direction.empty()) b.vector.set_direction(l, ld.direction);
    }
    return b;
}

std::vector<float> ladder(const SteeringTrainingOptions& o, const SteeringVector& v) {
    if (v.op() == SteeringOp::Project) return o.project_scales;
    std::vector<float> out;
    const auto k = static_cast<float>(std::max<size_t>(1, v.layers().size()));
    for (float s : o.add_scales) out.push_back(s / k);
    return out;
}

// ---- measuring ----

// The metric and the guard with `v` at +s and -s (or +s only).
SteeringTrial measure(Trainer& t, const CoherenceGuard& guard, std::span<const EvalPrompt> prompts, double base,
                      int orient, SteeringVector v, float s) {
    const auto t0 = Clock::now();
    const int64_t tokens0 = t.tokens;
    SteeringTrial row;
    row.scale = s;
    row.metric_base = base;
    row.prompts = static_cast<int>(prompts.size());
    const std::vector<float> signs = t.o.symmetric ? std::vector<float>{1.0f, -1.0f} : std::vector<float>{1.0f};
    for (float sign : signs) {
        v.set_scale(sign * s);
        const SteeringHandle h = add_steering(t.session, v);
        row.kl = std::max(row.kl, guard.kl(t.session, t.o.kl_quantile, &t.tokens));
        row.coherent = row.coherent && row.kl <= t.o.max_kl;
        if (row.coherent) {
            const double m = t.scorer.measure(t.session, prompts, t.o.budget.max_new_tokens, &t.tokens);
            (sign > 0 ? row.metric_positive : row.metric_negative) = m;
        }
        remove_steering(t.session, h);
        if (!row.coherent) break;
    }
    if (row.coherent) {
        row.effect_up = orient * (row.metric_positive - base);
        row.effect_down = t.o.symmetric ? orient * (base - row.metric_negative) : 0.0;
        row.effect = t.o.symmetric ? std::min(row.effect_up, row.effect_down) : row.effect_up;
    }
    row.tokens = t.tokens - tokens0;
    row.seconds = seconds_since(t0);
    return row;
}

// The search's order of preference: a larger effect; on a tie (a small
// held-out set saturates on one side) the larger move of both sides
// together; else the candidate earlier in the grid.
bool better(const SteeringTrial& row, const SteeringTrial* best) {
    if (!row.coherent || row.effect <= 0) return false;
    if (!best || row.effect > best->effect) return true;
    return row.effect == best->effect && row.effect_up + row.effect_down > best->effect_up + best->effect_down;
}

bool over_budget(const Trainer& t) { return t.o.budget.max_tokens > 0 && t.tokens >= t.o.budget.max_tokens; }

// One candidate up its scale ladder, while the guard holds and either side
// still moves (a row that says why when the candidate has no direction).
std::vector<SteeringTrial> walk_ladder(Trainer& t, const CoherenceGuard& guard, std::span<const EvalPrompt> prompts,
                                       double base, int orient, const SteeringVector& v, int index,
                                       const std::string& label, size_t candidates) {
    std::vector<SteeringTrial> rows;
    if (v.layers().empty()) {
        SteeringTrial row;
        row.coherent = false;
        row.note = "no direction: the two sides give the same activations there";
        rows.push_back(row);
    }
    SteeringTrial previous;
    for (float s : v.layers().empty() ? std::vector<float>{} : ladder(t.o, v)) {
        t.progress("search", index, static_cast<int64_t>(candidates), label + " scale " + std::to_string(s));
        SteeringTrial row = measure(t, guard, prompts, base, orient, v, s);
        const bool saturated =
            row.effect > 0 && row.effect_up <= previous.effect_up && row.effect_down <= previous.effect_down;
        previous = row;
        rows.push_back(std::move(row));
        if (!previous.coherent || saturated || over_budget(t)) break;
    }
    for (SteeringTrial& row : rows) {
        row.candidate = label;
        row.candidate_index = index;
    }
    return rows;
}

// What the file records of how the vector was made.
void record_provenance(TrainedSteering& out, const Model& model, const SteeringTrainingOptions& o) {
    auto& pv = out.vector.provenance;
    pv.name = o.name;
    pv.method = std::string("train_steering:") +
                (out.setting.method == ExtractionMethod::MeanDifference ? "mean_diff" : "pca");
    pv.model_fingerprint = model.fingerprint();
    pv.model_name = model.config().name;
    pv.recommended_scale = out.vector.scale();
    pv.notes["setting"] = out.setting.label();
    pv.notes["metric"] = std::string(behaviour_metric_name(o.metric.kind));
    pv.notes["training_report"] = out.csv();
}

}  // namespace

TrainedSteering train_steering(const std::shared_ptr<const Model>& model, const SteeringDataset& data,
                               const SteeringTrainingOptions& o) {
    const auto t0 = Clock::now();
    if (!model) fail(ErrorCode::InvalidArgument, "train_steering: null model");
    check_options(o, data);
    const ModelConfig& cfg = model->config();
    std::vector<SteeringCandidate> candidates = o.candidates.empty() ? default_steering_candidates(cfg.n_layer) : o.candidates;
    if (candidates.size() > static_cast<size_t>(o.budget.max_candidates))
        candidates.resize(static_cast<size_t>(o.budget.max_candidates));
    for (const auto& c : candidates) {
        capture_point(c.site);  // rejects router_logits
        for (int l : c.layers)
            if (l < 0 || l >= cfg.n_layer)
                fail(ErrorCode::InvalidArgument, "steering candidate '%s': layer %d is outside 0..%d",
                     c.label().c_str(), l, cfg.n_layer - 1);
        if (c.op == SteeringOp::Ablate)
            fail(ErrorCode::InvalidArgument, "steering candidate '%s': op ablate has no scale to search",
                 c.label().c_str());
        if (c.answer_tokens < 0)
            fail(ErrorCode::InvalidArgument, "steering candidate '%s': answer_tokens is %d, must be >= 0",
                 c.label().c_str(), c.answer_tokens);
    }
    Inputs in = render_inputs(*model->tokenizer(), data, o);
    Trainer t(model, o, in.longest + 1);
    TrainedSteering out;

    answer_pairs(t, in);
    out.positive_direction = orientation(t, in, &out.pairs_metric_positive, &out.pairs_metric_negative);
    const auto captures = capture(t, in, candidates);

    const std::span<const EvalPrompt> all(in.heldout);
    const auto search = all.first(std::min(all.size(), static_cast<size_t>(o.budget.search_prompts)));
    const auto confirm = all.first(std::min(all.size(), static_cast<size_t>(o.budget.confirm_prompts)));
    t.progress("baseline", 0, 1);
    const CoherenceGuard guard(t.session, in.neutral, o.coherence_tokens, t.tok.specials().eos, &t.tokens);
    const double base = t.scorer.measure(t.session, search, o.budget.max_new_tokens, &t.tokens);

    // The search: every candidate up its scale ladder until the guard trips.
    std::vector<BuiltCandidate> built;
    int best = -1;
    for (size_t ci = 0; ci < candidates.size() && !over_budget(t); ++ci) {
        built.push_back(build(t, candidates[ci], captures.at(key_of(candidates[ci]))));
        for (SteeringTrial& row : walk_ladder(t, guard, search, base, out.positive_direction, built.back().vector,
                                              static_cast<int>(ci), candidates[ci].label(), candidates.size())) {
            out.report.push_back(std::move(row));
            if (better(out.report.back(), best < 0 ? nullptr : &out.report[static_cast<size_t>(best)]))
                best = static_cast<int>(out.report.size() - 1);
        }
    }

    if (best >= 0) {
        out.report[static_cast<size_t>(best)].chosen = true;
        const SteeringTrial chosen = out.report[static_cast<size_t>(best)];
        const auto ci = static_cast<size_t>(chosen.candidate_index);
        out.setting = candidates[ci];
        out.separation = built[ci].separation;
        out.vector = built[ci].vector;
        out.vector.set_scale(chosen.scale);
        if (confirm.size() > search.size()) {
            t.progress("confirm", 0, 1);
            const double base_confirm = t.scorer.measure(t.session, confirm, o.budget.max_new_tokens, &t.tokens);
            SteeringTrial row = measure(t, guard, confirm, base_confirm, out.positive_direction, out.vector, chosen.scale);
            row.candidate = chosen.candidate;
            row.candidate_index = chosen.candidate_index;
            row.confirmation = true;
            out.report.push_back(row);
        }
        out.found = true;
    }
    out.tokens = t.tokens;
    out.seconds = seconds_since(t0);
    if (out.found) record_provenance(out, *model, o);
    return out;
}

std::string TrainedSteering::table() const {
    std::string s;
    char buf[320];
    std::snprintf(buf, sizeof buf, "%-46s %8s %9s %9s %9s %8s %7s %4s %8s %7s\n", "setting", "scale", "metric-",
                  "metric0", "metric+", "effect", "kl", "n", "tokens", "sec");
    s += buf;
    auto metric = [](double v, bool measured) {
        char m[32];
        if (measured) std::snprintf(m, sizeof m, "%9.4f", v);
        else std::snprintf(m, sizeof m, "%9s", "-");
        return std::string(m);
    };
    for (const SteeringTrial& r : report) {
        std::snprintf(buf, sizeof buf, "%-46s %8.4f %s %9.4f %s %8.4f %7.4f %4d %8lld %7.2f%s\n", r.candidate.c_str(),
                      static_cast<double>(r.scale), metric(r.metric_negative, r.coherent).c_str(), r.metric_base,
                      metric(r.metric_positive, r.coherent).c_str(), r.effect, r.kl, r.prompts,
                      static_cast<long long>(r.tokens), r.seconds,
                      r.confirmation ? "  confirm"
                      : r.chosen     ? "  <- chosen"
                      : !r.note.empty() ? ("  " + r.note).c_str()
                      : !r.coherent  ? "  incoherent"
                                     : "");
        s += buf;
    }
    return s;
}

std::string TrainedSteering::csv() const {
    std::string s = "setting,scale,metric_negative,metric_base,metric_positive,effect,kl,coherent,chosen,confirmation,"
                    "prompts,tokens,seconds,note\n";
    char buf[320];
    for (const SteeringTrial& r : report) {
        std::snprintf(buf, sizeof buf, "\"%s\",%g,%.6g,%.6g,%.6g,%.6g,%.6g,%d,%d,%d,%d,%lld,%.3f,\"%s\"\n",
                      r.candidate.c_str(), static_cast<double>(r.scale), r.metric_negative, r.metric_base,
                      r.metric_positive, r.effect, r.kl, r.coherent, r.chosen, r.confirmation, r.prompts,
                      static_cast<long long>(r.tokens), r.seconds, r.note.c_str());
        s += buf;
    }
    return s;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
