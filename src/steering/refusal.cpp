// The refusal direction (Arditi et al. 2024): candidates from the difference
// of means at the post-instruction positions, selection by bypass / induce /
// KL, directional ablation, and weight orthogonalisation.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "ds4/capture.hpp"
#include "ds4/extraction.hpp"
#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "quant/quant.hpp"
#include "steering/extraction_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;
using namespace steering_detail;

namespace steering_detail {
double kl_divergence(std::span<const float> p, std::span<const float> q) {
    auto lse = [](std::span<const float> x) {
        double m = -INFINITY;
        for (float v : x) m = std::max(m, static_cast<double>(v));
        double s = 0;
        for (float v : x) s += std::exp(static_cast<double>(v) - m);
        return m + std::log(s);
    };
    const double zp = lse(p), zq = lse(q);
    double kl = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        const double lp = p[i] - zp, lq = q[i] - zq;
        kl += std::exp(lp) * (lp - lq);
    }
    return std::max(0.0, kl);
}
}  // namespace steering_detail

double refusal_score(std::span<const float> logits, std::span<const TokenId> refusal_tokens) {
    if (refusal_tokens.empty()) fail(ErrorCode::InvalidArgument, "refusal_score needs at least one refusal token");
    double m = -INFINITY;
    for (float v : logits) m = std::max(m, static_cast<double>(v));
    double z = 0;
    for (float v : logits) z += std::exp(static_cast<double>(v) - m);
    double pr = 0;
    for (TokenId t : refusal_tokens) {
        if (t < 0 || static_cast<size_t>(t) >= logits.size())
            fail(ErrorCode::InvalidArgument, "refusal token %d is outside the vocabulary", t);
        pr += std::exp(static_cast<double>(logits[static_cast<size_t>(t)]) - m) / z;
    }
    pr = std::clamp(pr, 1e-12, 1.0 - 1e-12);
    return std::log(pr) - std::log(1.0 - pr);
}

std::vector<SteeringVector> directional_ablation(const Model& model, std::span<const float> direction, SteeringOp op) {
    const ModelConfig& c = model.config();
    if (op != SteeringOp::Ablate && op != SteeringOp::Project)
        fail(ErrorCode::InvalidArgument, "directional ablation is op ablate or project, not %s",
             std::string(steering_op_name(op)).c_str());
    if (static_cast<int>(direction.size()) != c.n_embd)
        fail(ErrorCode::InvalidArgument, "ablation direction has %zu values, the model width is %d", direction.size(),
             c.n_embd);
    std::vector<SteeringVector> out;
    SteeringVector in(c.n_layer, c.n_embd, SteeringSite::LayerIn, op);
    in.set_direction(0, direction);  // rejects non-finite and zero directions
    SteeringVector attn(c.n_layer, c.n_embd, SteeringSite::AttnOut, op);
    SteeringVector ffn(c.n_layer, c.n_embd, SteeringSite::FfnOut, op);
    for (int l = 0; l < c.n_layer; ++l) {
        attn.set_direction(l, direction);
        ffn.set_direction(l, direction);
    }
    for (SteeringVector* v : {&in, &attn, &ffn}) {
        // Project scales the component along the direction by 1 + scale:
        // scale -1 is the ablation, 0 no edit.
        v->normalize();
        v->provenance.name = "directional-ablation";
        v->provenance.method = "ablation";
        out.push_back(std::move(*v));
    }
    return out;
}

std::vector<SteeringHandle> add_directional_ablation(Session& session, std::span<const float> direction) {
    std::vector<SteeringHandle> hs;
    for (auto& v : directional_ablation(session.model(), direction)) hs.push_back(add_steering(session, std::move(v)));
    return hs;
}

namespace {

std::vector<float> last_logits(Session& s, const std::vector<TokenId>& prompt) {
    s.reset();
    s.prefill(prompt);
    return {s.logits().begin(), s.logits().end()};
}

}  // namespace

RefusalDirection find_refusal_direction(const std::shared_ptr<const Model>& model,
                                        std::span<const std::vector<TokenId>> harmful_train,
                                        std::span<const std::vector<TokenId>> harmless_train,
                                        std::span<const std::vector<TokenId>> harmful_val,
                                        std::span<const std::vector<TokenId>> harmless_val, const RefusalOptions& o) {
    if (!model) fail(ErrorCode::InvalidArgument, "find_refusal_direction: null model");
    if (harmful_train.empty() || harmless_train.empty() || harmful_val.empty() || harmless_val.empty())
        fail(ErrorCode::InvalidArgument, "find_refusal_direction needs non-empty train and validation sets");
    if (o.refusal_tokens.empty()) fail(ErrorCode::InvalidArgument, "find_refusal_direction needs refusal_tokens");
    if (o.positions < 1) fail(ErrorCode::InvalidArgument, "find_refusal_direction: positions must be >= 1");
    const ModelConfig& cfg = model->config();
    std::vector<int> layers = o.layers;
    if (layers.empty())
        for (int l = 0; l < cfg.n_layer; ++l)
            if (l < o.max_layer_fraction * cfg.n_layer) layers.push_back(l);
    int64_t ctx = 2;
    for (auto sets : {harmful_train, harmless_train, harmful_val, harmless_val})
        for (const auto& p : sets) {
            if (static_cast<int>(p.size()) < o.positions)
                fail(ErrorCode::InvalidArgument, "a refusal prompt has fewer tokens than the %d positions", o.positions);
            ctx = std::max<int64_t>(ctx, static_cast<int64_t>(p.size()) + 1);
        }

    // Difference of means at the block input (resid_pre, streams averaged),
    // for every (position offset, layer).
    auto means = [&](std::span<const std::vector<TokenId>> set) {
        std::vector<std::vector<std::vector<double>>> acc(
            static_cast<size_t>(o.positions),
            std::vector<std::vector<double>>(static_cast<size_t>(cfg.n_layer)));
        Session s(model, {.context_size = ctx, .checkpoint_interval = 0, .max_checkpoints = 0});
        for (const auto& p : set) {
            s.reset();
            auto rec = run_with_cache(s, p, {{HookPoint::ResidPre, layers}});
            for (int l : layers) {
                const auto& c = rec->get(HookPoint::ResidPre, l);
                for (int k = 0; k < o.positions; ++k) {
                    const auto v = c.stream_mean(c.rows() - o.positions + k);
                    auto& a = acc[static_cast<size_t>(k)][static_cast<size_t>(l)];
                    if (a.empty()) a.assign(v.size(), 0.0);
                    for (size_t i = 0; i < v.size(); ++i) a[i] += v[i];
                }
            }
        }
        for (auto& per_pos : acc)
            for (auto& a : per_pos)
                for (double& x : a) x /= static_cast<double>(set.size());
        return acc;
    };
    const auto mh = means(harmful_train);
    const auto ms = means(harmless_train);

    RefusalDirection out;
    Session s(model, {.context_size = ctx, .checkpoint_interval = 0, .max_checkpoints = 0});
    std::vector<std::vector<float>> base_harmless;
    for (const auto& p : harmful_val) out.base_harmful_score += refusal_score(last_logits(s, p), o.refusal_tokens);
    for (const auto& p : harmless_val) {
        base_harmless.push_back(last_logits(s, p));
        out.base_harmless_score += refusal_score(base_harmless.back(), o.refusal_tokens);
    }
    out.base_harmful_score /= static_cast<double>(harmful_val.size());
    out.base_harmless_score /= static_cast<double>(harmless_val.size());

    double best = INFINITY, best_any = INFINITY;
    int best_idx = -1, best_any_idx = -1;
    std::vector<std::vector<float>> raws;
    for (int k = 0; k < o.positions; ++k) {
        for (int l : layers) {
            const auto& a = mh[static_cast<size_t>(k)][static_cast<size_t>(l)];
            const auto& b = ms[static_cast<size_t>(k)][static_cast<size_t>(l)];
            std::vector<float> raw(a.size()), unit(a.size());
            double n = 0;
            for (size_t i = 0; i < a.size(); ++i) {
                raw[i] = static_cast<float>(a[i] - b[i]);
                n += static_cast<double>(raw[i]) * raw[i];
            }
            n = std::sqrt(n);
            if (n == 0) continue;
            for (size_t i = 0; i < a.size(); ++i) unit[i] = static_cast<float>(raw[i] / n);
            RefusalCandidate cand;
            cand.layer = l;
            cand.position = k - o.positions;
            {  // bypass and KL under ablation
                auto hs = add_directional_ablation(s, unit);
                for (const auto& p : harmful_val) cand.bypass += refusal_score(last_logits(s, p), o.refusal_tokens);
                for (size_t i = 0; i < harmless_val.size(); ++i)
                    cand.kl += kl_divergence(base_harmless[i], last_logits(s, harmless_val[i]));
                s.clear_hooks();
            }
            {  // induce: add the raw difference at the block input of layer l
                SteeringVector add(cfg.n_layer, cfg.n_embd, SteeringSite::LayerIn, SteeringOp::Add, 1.0f);
                add.set_direction(l, raw);
                add_steering(s, std::move(add));
                for (const auto& p : harmless_val) cand.induce += refusal_score(last_logits(s, p), o.refusal_tokens);
                s.clear_hooks();
            }
            cand.bypass /= static_cast<double>(harmful_val.size());
            cand.kl /= static_cast<double>(harmless_val.size());
            cand.induce /= static_cast<double>(harmless_val.size());
            cand.eligible = l < o.max_layer_fraction * cfg.n_layer && cand.kl <= o.max_kl && cand.induce > 0;
            out.candidates.push_back(cand);
            raws.push_back(raw);
            const int idx = static_cast<int>(out.candidates.size()) - 1;
            if (cand.eligible && cand.bypass < best) {
                best = cand.bypass;
                best_idx = idx;
            }
            if (cand.bypass < best_any) {
                best_any = cand.bypass;
                best_any_idx = idx;
            }
        }
    }
    if (best_any_idx < 0) fail(ErrorCode::InvalidArgument, "find_refusal_direction: harmful and harmless means coincide");
    if (best_idx < 0) {
        DS4_LOG_WARN("refusal direction: no candidate passed the KL/induce/layer filters; using the lowest bypass score");
        best_idx = best_any_idx;
    }
    const auto& bc = out.candidates[static_cast<size_t>(best_idx)];
    out.layer = bc.layer;
    out.position = bc.position;
    out.raw = raws[static_cast<size_t>(best_idx)];
    double n = 0;
    for (float x : out.raw) n += static_cast<double>(x) * x;
    n = std::sqrt(n);
    out.direction.resize(out.raw.size());
    for (size_t i = 0; i < out.raw.size(); ++i) out.direction[i] = static_cast<float>(out.raw[i] / n);
    return out;
}

void export_orthogonalized_model(const Model& model, std::span<const float> direction, const std::string& out_path) {
    const ModelConfig& c = model.config();
    if (static_cast<int>(direction.size()) != c.n_embd)
        fail(ErrorCode::InvalidArgument, "orthogonalization direction has %zu values, the model width is %d",
             direction.size(), c.n_embd);
    double nn = 0;
    for (float x : direction) {
        if (!std::isfinite(x)) fail(ErrorCode::InvalidArgument, "orthogonalization direction has a non-finite value");
        nn += static_cast<double>(x) * x;
    }
    if (nn == 0) fail(ErrorCode::InvalidArgument, "orthogonalization direction is zero");
    std::vector<double> r(direction.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = direction[i] / std::sqrt(nn);

    const gguf::File& f = model.gguf();
    gguf::Writer w(f.alignment());
    for (const auto& [k, v] : f.metadata())
        if (k != "general.alignment") w.set(k, v);
    w.set("ds4.orthogonalized", gguf::Value::string("residual writers projected off a direction (refusal ablation)"));
    const int64_t d = c.n_embd;
    auto is_writer = [](const std::string& n) {
        auto ends = [&](const char* s) {
            const size_t k = std::strlen(s);
            return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
        };
        return n == "token_embd.weight" || ends(".attn_output_b.weight") || ends(".ffn_down_shexp.weight") ||
               ends(".ffn_down_exps.weight");
    };
    for (const auto& t : f.tensors()) {
        if (!is_writer(t.name)) {
            w.add_tensor(t.name, t.type, t.shape, {t.data, static_cast<size_t>(t.n_bytes)});
            continue;
        }
        const gguf::TensorInfo* tp = &t;
        w.add_tensor_deferred(t.name, t.type, t.shape, [tp, &r, d](std::span<uint8_t> out) {
            const auto& T = *tp;
            const int64_t cols = static_cast<int64_t>(T.shape[0]);
            const size_t row_bytes = quant::row_bytes(T.type, cols);
            std::vector<float> row(static_cast<size_t>(cols));
            if (T.name == "token_embd.weight") {
                // Each row is an embedding vector: e <- e - r (r.e).
                const int64_t rows = static_cast<int64_t>(T.shape[1]);
                for (int64_t i = 0; i < rows; ++i) {
                    quant::dequantize_row(T.type, T.data + i * row_bytes, row.data(), cols);
                    double p = 0;
                    for (int64_t j = 0; j < cols; ++j) p += r[static_cast<size_t>(j)] * row[static_cast<size_t>(j)];
                    for (int64_t j = 0; j < cols; ++j) row[static_cast<size_t>(j)] -= static_cast<float>(p * r[static_cast<size_t>(j)]);
                    quant::quantize_row(T.type, row.data(), out.data() + i * row_bytes, cols);
                }
                return;
            }
            // Output rows are the residual dims: W <- (I - r r^T) W, per expert.
            const int64_t n_mat = T.shape.size() > 2 ? static_cast<int64_t>(T.shape[2]) : 1;
            std::vector<float> m(static_cast<size_t>(d * cols));
            for (int64_t e = 0; e < n_mat; ++e) {
                const size_t base = static_cast<size_t>(e * d) * row_bytes;
                for (int64_t i = 0; i < d; ++i)
                    quant::dequantize_row(T.type, T.data + base + i * row_bytes, &m[static_cast<size_t>(i * cols)], cols);
                std::vector<double> s(static_cast<size_t>(cols), 0.0);
                for (int64_t i = 0; i < d; ++i)
                    for (int64_t j = 0; j < cols; ++j) s[static_cast<size_t>(j)] += r[static_cast<size_t>(i)] * m[static_cast<size_t>(i * cols + j)];
                for (int64_t i = 0; i < d; ++i) {
                    float* mr = &m[static_cast<size_t>(i * cols)];
                    for (int64_t j = 0; j < cols; ++j) mr[j] -= static_cast<float>(r[static_cast<size_t>(i)] * s[static_cast<size_t>(j)]);
                    quant::quantize_row(T.type, mr, out.data() + base + i * row_bytes, cols);
                }
            }
        });
    }
    w.write(out_path);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
