// Direction extraction from contrast sets, with per-layer separation reports.
#include <algorithm>
#include <cmath>

#include "core/error_internal.hpp"
#include "ds4/capture.hpp"
#include "ds4/extraction.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "steering/extraction_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace steering_detail {

HookPoint capture_point(SteeringSite site) {
    switch (site) {
        case SteeringSite::AttnOut: return HookPoint::AttnOut;
        case SteeringSite::FfnOut: return HookPoint::FfnOut;
        case SteeringSite::LayerOut: return HookPoint::ResidPost;
        case SteeringSite::LayerIn: return HookPoint::ResidPre;
        case SteeringSite::RouterLogits: break;
    }
    fail(ErrorCode::InvalidArgument, "directions can be extracted at attn_out, ffn_out, layer_out or layer_in, not %s",
         std::string(steering_site_name(site)).c_str());
}

double dot(std::span<const float> a, std::span<const float> b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

uint64_t hash_token_sets(std::span<const std::vector<TokenId>> sets) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const auto& s : sets) {
        for (TokenId t : s) h = (h ^ static_cast<uint32_t>(t)) * 0x100000001b3ull;
        h = (h ^ 0xFFFFFFFFu) * 0x100000001b3ull;
    }
    return h;
}

std::vector<double> mean_of(const std::vector<std::vector<float>>& rows) {
    std::vector<double> m(rows.empty() ? 0 : rows[0].size(), 0.0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i) m[i] += r[i];
    for (double& x : m) x /= static_cast<double>(std::max<size_t>(1, rows.size()));
    return m;
}

}  // namespace steering_detail

using namespace steering_detail;

namespace {

// Reduced activations per layer: [layer][example] -> vector.
using Captures = std::vector<ReducedRows>;

Captures capture_set(const std::shared_ptr<const Model>& model, std::span<const ContrastExample> set,
                     const std::vector<int>& layers, HookPoint point, TokenReduction red, int64_t ctx) {
    const int n_layer = model->config().n_layer;
    Captures out(static_cast<size_t>(n_layer));
    Session s(model, {.context_size = ctx, .prefill_chunk = 256, .checkpoint_interval = 0, .max_checkpoints = 0});
    for (size_t e = 0; e < set.size(); ++e) {
        const auto& ex = set[e];
        if (ex.tokens.empty()) fail(ErrorCode::InvalidArgument, "contrast example %zu is empty", e);
        const int64_t n = static_cast<int64_t>(ex.tokens.size());
        const int64_t plen = ex.prompt_length > 0 ? ex.prompt_length : n;
        if (plen > n) fail(ErrorCode::InvalidArgument, "contrast example %zu: prompt_length %lld > %lld tokens", e,
                           static_cast<long long>(plen), static_cast<long long>(n));
        if (red == TokenReduction::MeanResponse && plen >= n)
            fail(ErrorCode::InvalidArgument, "contrast example %zu has no response tokens to average", e);
        s.reset();
        auto rec = run_with_cache(s, ex.tokens, {{point, layers}});
        for (int l : layers) {
            const CapturedActivation& c = rec->get(point, l);
            std::vector<float> v;
            switch (red) {
                case TokenReduction::LastPromptToken: v = c.stream_mean(plen - 1); break;
                case TokenReduction::MeanResponse: v = c.mean(plen, n); break;
                case TokenReduction::MeanAll: v = c.mean(0, n); break;
            }
            out[static_cast<size_t>(l)].push_back(std::move(v));
        }
    }
    return out;
}

double average(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

double variance(const std::vector<double>& v, double m) {
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return v.size() > 1 ? s / static_cast<double>(v.size() - 1) : 0.0;
}

// Remove from dir its component along `base` (the reference engine's
// orthogonalization against the contrast mean).
void remove_component(std::vector<double>& dir, const std::vector<double>& base) {
    double nb = 0;
    for (double x : base) nb += x * x;
    nb = std::sqrt(nb);
    if (nb == 0) return;
    double p = 0;
    for (size_t i = 0; i < dir.size(); ++i) p += dir[i] * base[i] / nb;
    for (size_t i = 0; i < dir.size(); ++i) dir[i] -= p * base[i] / nb;
}

// First principal axis of the uncentred paired differences, by power
// iteration from the mean difference (deterministic).
std::vector<double> pca_axis(const std::vector<std::vector<double>>& diffs) {
    const size_t d = diffs[0].size();
    std::vector<double> v(d, 0.0);
    for (const auto& x : diffs)
        for (size_t i = 0; i < d; ++i) v[i] += x[i];
    auto norm = [](std::vector<double>& x) {
        double n = 0;
        for (double a : x) n += a * a;
        n = std::sqrt(n);
        if (n > 0)
            for (double& a : x) a /= n;
        return n;
    };
    if (norm(v) == 0) v[0] = 1;
    for (int it = 0; it < 500; ++it) {
        std::vector<double> w(d, 0.0);
        for (const auto& x : diffs) {
            double p = 0;
            for (size_t i = 0; i < d; ++i) p += x[i] * v[i];
            for (size_t i = 0; i < d; ++i) w[i] += p * x[i];
        }
        if (norm(w) == 0) break;
        double change = 0;
        for (size_t i = 0; i < d; ++i) change = std::max(change, std::fabs(w[i] - v[i]));
        v.swap(w);
        if (change < 1e-12) break;
    }
    return v;
}

}  // namespace

namespace steering_detail {

LayerDirection layer_direction(const ReducedRows& t, const ReducedRows& c, ExtractionMethod method,
                               bool orthogonalize_contrast_mean, int layer) {
    LayerDirection out;
    out.report.layer = layer;
    const size_t pairs = std::min(t.size(), c.size());
    const auto mt = mean_of(t), mc = mean_of(c);
    const size_t d = mt.size();
    std::vector<double> dir(d);
    if (method == ExtractionMethod::MeanDifference) {
        for (size_t i = 0; i < d; ++i) dir[i] = mt[i] - mc[i];
    } else {
        std::vector<std::vector<double>> diffs(pairs, std::vector<double>(d));
        for (size_t p = 0; p < pairs; ++p)
            for (size_t i = 0; i < d; ++i) diffs[p][i] = static_cast<double>(t[p][i]) - c[p][i];
        dir = pca_axis(diffs);
    }
    if (orthogonalize_contrast_mean) remove_component(dir, mc);
    double raw = 0;
    for (double x : dir) raw += x * x;
    raw = std::sqrt(raw);
    out.report.raw_norm = raw;
    if (raw == 0 || !std::isfinite(raw)) return out;
    std::vector<float> u(d);
    for (size_t i = 0; i < d; ++i) u[i] = static_cast<float>(dir[i] / raw);
    std::vector<double> pt, pc;
    for (const auto& x : t) pt.push_back(dot(x, u));
    for (const auto& x : c) pc.push_back(dot(x, u));
    // Sign: the target side projects higher (PCA has no sign of its own).
    if (average(pt) < average(pc)) {
        for (float& x : u) x = -x;
        for (double& x : pt) x = -x;
        for (double& x : pc) x = -x;
    }
    LayerSeparation& rep = out.report;
    rep.target_mean = average(pt);
    rep.contrast_mean = average(pc);
    rep.mean_gap = rep.target_mean - rep.contrast_mean;
    rep.pooled_std = std::sqrt(0.5 * (variance(pt, rep.target_mean) + variance(pc, rep.contrast_mean)));
    rep.cohens_d = rep.pooled_std > 0 ? rep.mean_gap / rep.pooled_std : (rep.mean_gap > 0 ? 1e9 : 0);
    size_t wins = 0;
    for (size_t p = 0; p < pairs; ++p) wins += pt[p] > pc[p];
    rep.pair_accuracy = static_cast<double>(wins) / static_cast<double>(pairs);
    if (!(rep.mean_gap > 0)) return out;
    // One scale unit (steering.hpp): the direction is as long as the gap.
    for (float& x : u) x *= static_cast<float>(rep.mean_gap);
    out.direction = std::move(u);
    return out;
}

}  // namespace steering_detail

Extraction extract_direction(const std::shared_ptr<const Model>& model, std::span<const ContrastExample> target,
                             std::span<const ContrastExample> contrast, const ExtractionOptions& o) {
    if (!model) fail(ErrorCode::InvalidArgument, "extract_direction: null model");
    if (target.empty() || contrast.empty())
        fail(ErrorCode::InvalidArgument, "extract_direction needs non-empty target and contrast sets");
    const ModelConfig& cfg = model->config();
    const HookPoint point = capture_point(o.site);
    std::vector<int> layers = o.layers;
    if (layers.empty())
        for (int l = 0; l < cfg.n_layer; ++l) layers.push_back(l);
    for (int l : layers)
        if (l < 0 || l >= cfg.n_layer)
            fail(ErrorCode::InvalidArgument, "extract_direction: layer %d is outside 0..%d", l, cfg.n_layer - 1);
    int64_t ctx = o.context_size;
    if (ctx <= 0) {
        for (const auto& e : target) ctx = std::max<int64_t>(ctx, static_cast<int64_t>(e.tokens.size()) + 1);
        for (const auto& e : contrast) ctx = std::max<int64_t>(ctx, static_cast<int64_t>(e.tokens.size()) + 1);
    }
    const Captures T = capture_set(model, target, layers, point, o.reduction, ctx);
    const Captures C = capture_set(model, contrast, layers, point, o.reduction, ctx);

    Extraction ex{SteeringVector(cfg.n_layer, cfg.n_embd, o.site, o.op, 0.0f), {}, -1};
    double best_d = -1e300;
    for (int l : layers) {
        LayerDirection ld = layer_direction(T[static_cast<size_t>(l)], C[static_cast<size_t>(l)], o.method,
                                            o.orthogonalize_contrast_mean, l);
        ex.layers.push_back(ld.report);
        if (ld.direction.empty()) continue;
        ex.vector.set_direction(l, ld.direction);
        if (ld.report.cohens_d > best_d) {
            best_d = ld.report.cohens_d;
            ex.best_layer = l;
        }
    }
    if (ex.best_layer < 0) fail(ErrorCode::InvalidArgument, "extract_direction: the two sets give the same activations");
    auto& pv = ex.vector.provenance;
    pv.name = o.name;
    pv.method = o.method == ExtractionMethod::MeanDifference ? "mean_diff" : "pca_pairs";
    if (o.orthogonalize_contrast_mean) pv.method += "+orthogonalized";
    pv.model_fingerprint = model->fingerprint();
    pv.model_name = cfg.name;
    std::vector<std::vector<TokenId>> ts, cs;
    for (const auto& e : target) ts.push_back(e.tokens);
    for (const auto& e : contrast) cs.push_back(e.tokens);
    pv.prompt_set_hashes = {hash_token_sets(ts), hash_token_sets(cs)};
    pv.recommended_scale = 1.0f;  // one measured gap (steering.hpp, "one scale unit")
    pv.notes["reduction"] = o.reduction == TokenReduction::LastPromptToken ? "last_prompt_token"
                            : o.reduction == TokenReduction::MeanResponse  ? "mean_response"
                                                                           : "mean_all";
    pv.notes["best_layer"] = std::to_string(ex.best_layer);
    return ex;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
