#include "engine/forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "core/memory_internal.hpp"
#include "engine/hooks.hpp"
#include "placement/worker_pool.hpp"

namespace ds4::engine {

using detail::fail;
using kernels::Activations;
using kernels::Matrix;

namespace {

constexpr float kNegInf = -1e30f;
constexpr int64_t kRowGrain = 16;  // rows per unit of work handed to a worker
constexpr float kRouteWeightFloor = 6.103515625e-5f;

int act_slot(DType weight_type) {
    switch (kernels::activation_type(weight_type)) {
        case DType::Q8_0: return 1;
        case DType::Q8_K: return 2;
        default: return 0;
    }
}

void store_f16(const float* x, uint16_t* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

void load_f16(const uint16_t* x, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = f16_to_f32(x[i]);
}

template <class T>
void ensure(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

}  // namespace

void SharedInput::reset(const float* x, int64_t n_tok, int64_t cols) {
    x_ = x;
    n_tok_ = n_tok;
    cols_ = cols;
    ready_[0] = ready_[1] = ready_[2] = false;
}

const Activations& SharedInput::for_weight(DType weight_type, const CpuScratch& scratch) {
    const int s = act_slot(weight_type);
    if (!ready_[s]) {
        prepare_activations(scratch, slots_[s], weight_type, x_, n_tok_, cols_);
        ready_[s] = true;
    }
    return slots_[s];
}

Forward::Forward(const Model::Impl& model, int max_batch)
    : cfg_(model.config),
      w_(model.weights),
      off_(model.backends.active() ? &model.backends : nullptr),
      pool_(model.pool.get()),
      plan_(model.placement),
      store_(model.expert_store.get()),
      max_batch_(max_batch) {
    const ModelConfig& cfg = cfg_;
    cpu_.pool = pool_;
    node_items_.resize(pool_ ? static_cast<size_t>(pool_->n_nodes()) : 0);
    allocate_scratch(static_cast<size_t>(max_batch));
    rope_cs_.resize(static_cast<size_t>(cfg.n_rot));
    if (off_) {
        for (int il = 0; il < cfg.n_layer; ++il) {
            attn_norm_names_.push_back("blk." + std::to_string(il) + ".attn_norm.weight");
            ffn_norm_names_.push_back("blk." + std::to_string(il) + ".ffn_norm.weight");
        }
    }
}

// The batch-sized buffers, floats per token; all sizes come from tensors the
// model has (checked at load) times the batch.
void Forward::allocate_scratch(size_t T) {
    const ModelConfig& c = cfg_;
    const size_t d = static_cast<size_t>(c.n_embd), hcd = static_cast<size_t>(c.hc_count) * d,
                 mix = static_cast<size_t>(c.hc_mix_size()),
                 heads = static_cast<size_t>(c.n_head) * static_cast<size_t>(c.head_dim);
    const std::pair<std::vector<float>*, size_t> per_token[] = {
        {&X_, hcd},     {&X2_, hcd},     {&flat_, hcd},    {&xin_, d},
        {&u_, d},       {&y_, d},        {&split_, mix},   {&mix_, mix},
        {&qr_, static_cast<size_t>(c.q_lora_rank)},        {&q_, heads},
        {&kv_, static_cast<size_t>(c.head_dim)},           {&o_, heads},
        {&og_, heads},  {&low_, static_cast<size_t>(c.o_groups) * static_cast<size_t>(c.o_lora_rank)},
        {&logit_, static_cast<size_t>(c.n_expert)},        {&probs_, static_cast<size_t>(c.n_expert)},
        {&wsel_, static_cast<size_t>(c.n_expert_used)},    {&moe_parts_, static_cast<size_t>(c.n_expert_used) * d},
    };
    uint64_t bytes = static_cast<uint64_t>(T) * static_cast<uint64_t>(c.n_expert_used) * sizeof(int32_t);  // sel_
    for (const auto& [buf, width] : per_token) bytes += static_cast<uint64_t>(T) * width * sizeof(float);
    detail::allocate_checked(detail::format("the forward-pass scratch for batches of %zu tokens", T), bytes,
                             "use a smaller SessionOptions::prefill_chunk", [&] {
                                 for (const auto& [buf, width] : per_token) buf->resize(T * width);
                                 sel_.resize(T * static_cast<size_t>(c.n_expert_used));
                             });
}

// ---- dispatch to the assigned backend -----------------------------------------

const model::BackendAssignment::Entry* Forward::offload(const void* weight_data, BackendOp op, DType type) const {
    if (!off_) return nullptr;
    const auto* e = off_->find(weight_data);
    return e && e->backend->supports(op, type) ? e : nullptr;
}

void Forward::count_product(size_t row_bytes, int64_t rows, int64_t cols, int64_t n_tok) {
    weight_bytes_ += row_bytes * static_cast<uint64_t>(rows);
    weight_macs_ += static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) * static_cast<uint64_t>(n_tok);
}

void Forward::mm(const Matrix& W, SharedInput& in, float* y, int64_t y_stride) {
    count_product(W.row_bytes, W.rows, W.cols, in.n_tok());
    if (const auto* e = offload(W.data, BackendOp::DenseMatmul, W.type)) {
        e->backend->matmul(weight_ref(W, e->name), in.x(), in.n_tok(), y, y_stride ? y_stride : W.rows);
        return;
    }
    cpu_matmul(cpu_, W, in.for_weight(W.type, cpu_), y, y_stride);
}

void Forward::mm(const Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride) {
    count_product(W.row_bytes, W.rows, W.cols, n_tok);
    if (const auto* e = offload(W.data, BackendOp::DenseMatmul, W.type)) {
        e->backend->matmul(weight_ref(W, e->name), x, n_tok, y, y_stride ? y_stride : W.rows);
        return;
    }
    prepare_activations(cpu_, act_tmp_, W.type, x, n_tok, W.cols);
    cpu_matmul(cpu_, W, act_tmp_, y, y_stride);
}

void Forward::norm(const std::vector<float>& weight, const std::string& tensor, const float* x, float* y, int64_t rows,
                   int64_t n) {
    if (off_)
        if (Backend* b = off_->norm(tensor); b && b->supports(BackendOp::RmsNorm)) {
            b->rms_norm(x, weight.data(), y, rows, n, cfg_.norm_eps);
            return;
        }
    for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * n, weight.data(), y + r * n, n, cfg_.norm_eps);
}

void Forward::emit(HookDispatch* hooks, HookPoint point, int layer, float* data, int64_t rows, int64_t width,
                   int64_t first_row, int streams, bool writable) {
    if (!hooks || !hooks->wants(point, layer)) return;
    ActivationView v;
    v.point = point;
    v.layer = layer;
    v.phase = hooks->phase;
    v.data = data;
    v.rows = rows;
    v.width = width;
    v.streams = streams;
    v.writable = writable;
    v.positions = std::span<const int64_t>(positions_.data() + first_row, static_cast<size_t>(rows));
    v.tokens = std::span<const TokenId>(tokens_ + first_row, static_cast<size_t>(rows));
    v.history = hooks->history;
    hooks->call(v);
}

// ---- mHC ---------------------------------------------------------------------

void Forward::hc_pre(const model::HcMixWeights& hw, int n, float* out_in, float* split) {
    HcPreCall c;
    c.streams = X_.data();
    c.n_tok = n;
    c.hc = cfg_.hc_count;
    c.d = cfg_.n_embd;
    c.fn = weight_ref(hw.fn);
    c.scale = hw.scale.data();
    c.base = hw.base.data();
    c.sinkhorn_iters = cfg_.hc_sinkhorn_iters;
    c.eps = cfg_.hc_eps;
    c.out = out_in;
    c.split = split;
    count_product(hw.fn.row_bytes, hw.fn.rows, hw.fn.cols, n);
    if (const auto* e = offload(hw.fn.data, BackendOp::HcMix, hw.fn.type)) {
        c.fn.name = e->name;
        e->backend->hc_pre(c);
        return;
    }
    cpu_hc_pre(c, cpu_);
}

void Forward::hc_post(const model::HcMixWeights& hw, int n, const float* y, const float* split) {
    HcPostCall c;
    c.streams = X_.data();
    c.y = y;
    c.split = split;
    c.n_tok = n;
    c.hc = cfg_.hc_count;
    c.d = cfg_.n_embd;
    c.out = X2_.data();
    if (const auto* e = offload(hw.fn.data, BackendOp::HcMix, hw.fn.type))
        e->backend->hc_post(c);
    else
        cpu_hc_post(c);
    std::swap(X_, X2_);
}

// ---- attention ---------------------------------------------------------------

void Forward::compressor_push(const model::CompressorWeights& cw, CompressorState& cs, const float* kv,
                              const float* sc, int64_t pos, bool is_indexer, const Rope& rope) {
    const int R = cs.ratio, lanes = cs.lanes, D = cs.dim, Wd = lanes * D;
    const int slot = static_cast<int>(pos % R);
    const int row = lanes == 2 ? R + slot : slot;
    std::memcpy(&cs.kv[static_cast<size_t>(row) * Wd], kv, sizeof(float) * Wd);
    const float* ape = &cw.ape[static_cast<size_t>(slot) * Wd];
    float* srow = &cs.score[static_cast<size_t>(row) * Wd];
    for (int j = 0; j < Wd; ++j) srow[j] = sc[j] + ape[j];
    if ((pos + 1) % R != 0) return;

    ensure(cmp_row_, static_cast<size_t>(D));
    float* p = cmp_row_.data();
    for (int j = 0; j < D; ++j) {
        float m = kNegInf;
        auto visit = [&](auto&& f) {
            if (lanes == 2) {
                for (int r = 0; r < R; ++r) f(cs.score[static_cast<size_t>(r) * Wd + j], cs.kv[static_cast<size_t>(r) * Wd + j]);
                for (int r = R; r < 2 * R; ++r)
                    f(cs.score[static_cast<size_t>(r) * Wd + D + j], cs.kv[static_cast<size_t>(r) * Wd + D + j]);
            } else {
                for (int r = 0; r < R; ++r) f(cs.score[static_cast<size_t>(r) * Wd + j], cs.kv[static_cast<size_t>(r) * Wd + j]);
            }
        };
        visit([&](float s, float) { m = std::max(m, s); });
        if (m <= kNegInf) {
            p[j] = 0.0f;
            continue;
        }
        float den = 0, num = 0;
        visit([&](float s, float v) {
            const float e = std::exp(s - m);
            den += e;
            num += e * v;
        });
        p[j] = num / den;
    }
    if (lanes == 2) {
        std::memcpy(cs.kv.data(), &cs.kv[static_cast<size_t>(R) * Wd], sizeof(float) * R * Wd);
        std::memcpy(cs.score.data(), &cs.score[static_cast<size_t>(R) * Wd], sizeof(float) * R * Wd);
    }
    rms_norm(p, cw.norm.data(), p, D, cfg_.norm_eps);
    ensure(cmp_cs_, static_cast<size_t>(cfg_.n_rot));
    float* cs_c = cmp_cs_.data();
    rope.angles(pos + 1 - R, cs_c);
    rope_apply(p, D, cfg_.n_rot, cs_c, false);
    if (is_indexer) {
        hadamard(p, D);
        fp4_round_trip(p, D);
    } else {
        fp8_round_trip(p, D - cfg_.n_rot);
    }
    cs.rows.resize(static_cast<size_t>(cs.n_rows + 1) * D);
    store_f16(p, &cs.rows[static_cast<size_t>(cs.n_rows) * D], D);
    ++cs.n_rows;
}

void Forward::select_rows(const model::LayerWeights& L, LayerState& S, int t, int64_t pos, std::vector<int32_t>& sel) {
    const int64_t n_c = L.compressed ? S.attn.n_rows : 0;
    sel.clear();
    if (!L.indexer || n_c <= cfg_.indexer_top_k) {
        sel.resize(static_cast<size_t>(n_c));
        std::iota(sel.begin(), sel.end(), 0);
        return;
    }
    const int ih = cfg_.indexer_heads, ihd = cfg_.indexer_head_dim;
    ensure(idx_q_, static_cast<size_t>(ih) * ihd);
    std::memcpy(idx_q_.data(), &iq_[static_cast<size_t>(t) * ih * ihd], sizeof(float) * ih * ihd);
    for (int h = 0; h < ih; ++h) {
        float* qh = &idx_q_[static_cast<size_t>(h) * ihd];
        rope_apply(qh, ihd, cfg_.n_rot, rope_cs_.data(), false);
        hadamard(qh, ihd);
        fp4_round_trip(qh, ihd);
    }
    // Every stored key against every head's query: the F16 key rows are a
    // weight matrix for the run-time-dispatched kernels (SIMD, threaded over
    // rows), the heads a batch of ih inputs: dots[h][c]. The keys are state,
    // not weights, so they are not counted in weight_bytes_. At 32k tokens
    // this is 8192 keys x 64 heads x 128 per ratio-4 layer and token.
    const int64_t n_k = S.indexer.n_rows;
    const Matrix K = Matrix::make(DType::F16, S.indexer.rows.data(), n_k, ihd);
    idx_act_.prepare(DType::F16, idx_q_.data(), ih, ihd);
    ensure(idx_dots_, static_cast<size_t>(ih) * n_k);
    cpu_matmul(cpu_, K, idx_act_, idx_dots_.data(), n_k);
    const float scale = 1.0f / std::sqrt(static_cast<float>(ihd) * static_cast<float>(ih));
    const float* wv = &iw_[static_cast<size_t>(t) * ih];
    ensure(idx_scores_, static_cast<size_t>(n_k));
    float* score = idx_scores_.data();
    std::fill(score, score + n_k, 0.0f);
    for (int h = 0; h < ih; ++h) {  // heads in order, as a per-key sum would add them
        const float w = wv[h] * scale;
        const float* dh = &idx_dots_[static_cast<size_t>(h) * n_k];
        for (int64_t c = 0; c < n_k; ++c) score[c] += w * std::max(0.0f, dh[c]);
    }
    sel.resize(static_cast<size_t>(n_k));
    std::iota(sel.begin(), sel.end(), 0);
    const size_t k = static_cast<size_t>(cfg_.indexer_top_k);
    std::partial_sort(sel.begin(), sel.begin() + static_cast<long>(k), sel.end(), [&](int32_t a, int32_t b) {
        const float sa = idx_scores_[static_cast<size_t>(a)], sb = idx_scores_[static_cast<size_t>(b)];
        return sa > sb || (sa == sb && a < b);
    });
    sel.resize(k);
    std::sort(sel.begin(), sel.end());
    if (trace_indexer_) indexer_trace_.push_back({L.index, pos, sel});
}

void Forward::attend_token(const model::LayerWeights& L, LayerState& S, int t, int64_t pos) {
    const int H = cfg_.n_head, hd = cfg_.head_dim;
    const int64_t first = std::max<int64_t>(0, pos - S.window + 1);
    const int64_t n_raw = pos - first + 1;
    select_rows(L, S, t, pos, selected_);
    const int64_t N = n_raw + static_cast<int64_t>(selected_.size());
    float* q = &q_[static_cast<size_t>(t) * H * hd];
    float* out = &o_[static_cast<size_t>(t) * H * hd];
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // The attended rows (the raw window, then the selected compressed rows)
    // copied into one matrix by `copy_row(src, dst)`; the call filled in.
    auto gather = [&](auto* dst, auto&& copy_row) {
        for (int64_t p = first; p <= pos; ++p) copy_row(S.raw_row(p), dst + (p - first) * hd);
        for (size_t i = 0; i < selected_.size(); ++i)
            copy_row(S.attn.row(selected_[i]), dst + (n_raw + static_cast<int64_t>(i)) * hd);
    };
    auto fill = [&](auto& c, const auto* keys) {
        c.q = q;
        c.keys = keys;
        c.n_rows = N;
        c.heads = H;
        c.head_dim = hd;
        c.sinks = L.sinks.data();
        c.scale = scale;
        c.out = out;
    };
    if (const auto* e = offload(L.kv.data, BackendOp::Attention, L.kv.type)) {
        // Backends take the key rows in f32.
        ensure(keys_, static_cast<size_t>(N) * hd);
        gather(keys_.data(), [&](const uint16_t* src, float* dst) { load_f16(src, dst, hd); });
        AttentionCall c;
        fill(c, keys_.data());
        e->backend->attention(c);
        return;
    }
    // The CPU path reads the F16 rows as stored: gathered, not converted.
    ensure(keys16_, static_cast<size_t>(N) * hd);
    gather(keys16_.data(), [&](const uint16_t* src, uint16_t* dst) { std::memcpy(dst, src, sizeof(uint16_t) * hd); });
    AttentionF16Call c;
    fill(c, keys16_.data());
    cpu_attention_f16(c, cpu_);
}

void Forward::attention_layer(const model::LayerWeights& L, LayerState& S, int n, int64_t pos0, HookDispatch* hooks) {
    const int64_t d = cfg_.n_embd, ql = cfg_.q_lora_rank, H = cfg_.n_head, hd = cfg_.head_dim;
    const int n_rot = cfg_.n_rot;
    hc_pre(L.hc_attn, n, xin_.data(), split_.data());
    norm(L.attn_norm, off_ ? attn_norm_names_[static_cast<size_t>(L.index)] : std::string(), xin_.data(), u_.data(), n, d);
    emit(hooks, HookPoint::AttnIn, L.index, u_.data(), n, d);

    in_a_.reset(u_.data(), n, d);
    mm(L.q_a, in_a_, qr_.data());
    for (int t = 0; t < n; ++t) rms_norm(&qr_[t * ql], L.q_a_norm.data(), &qr_[t * ql], ql, cfg_.norm_eps);
    in_b_.reset(qr_.data(), n, ql);
    mm(L.q_b, in_b_, q_.data());
    for (int64_t r = 0; r < static_cast<int64_t>(n) * H; ++r) rms_norm(&q_[r * hd], nullptr, &q_[r * hd], hd, cfg_.norm_eps);
    mm(L.kv, in_a_, kv_.data());
    for (int t = 0; t < n; ++t) rms_norm(&kv_[t * hd], L.kv_norm.data(), &kv_[t * hd], hd, cfg_.norm_eps);

    if (L.compressed) {
        const size_t W = static_cast<size_t>(L.compressor.lanes) * L.compressor.dim;
        ensure(ckv_, n * W);
        ensure(csc_, n * W);
        mm(L.compressor.kv, in_a_, ckv_.data());
        mm(L.compressor.gate, in_a_, csc_.data());
    }
    if (L.indexer) {
        const auto& ic = L.indexer_compressor;
        const size_t W = static_cast<size_t>(ic.lanes) * ic.dim;
        ensure(ikv_, n * W);
        ensure(isc_, n * W);
        mm(ic.kv, in_a_, ikv_.data());
        mm(ic.gate, in_a_, isc_.data());
        // The indexer query is only needed once more rows exist than top-k.
        const int64_t rows_after = (pos0 + n) / L.ratio;
        if (rows_after > cfg_.indexer_top_k) {
            ensure(iq_, static_cast<size_t>(n) * cfg_.indexer_heads * cfg_.indexer_head_dim);
            ensure(iw_, static_cast<size_t>(n) * cfg_.indexer_heads);
            mm(L.indexer_q_b, in_b_, iq_.data());
            mm(L.indexer_proj, in_a_, iw_.data());
        }
    }

    const Rope rope = Rope::for_layer(cfg_, L.index);
    ensure(kv_row_, static_cast<size_t>(hd));
    float* row = kv_row_.data();
    for (int t = 0; t < n; ++t) {
        const int64_t pos = pos0 + t;
        rope.angles(pos, rope_cs_.data());
        for (int64_t h = 0; h < H; ++h) rope_apply(&q_[(t * H + h) * hd], static_cast<int>(hd), n_rot, rope_cs_.data(), false);
        std::memcpy(row, &kv_[t * hd], sizeof(float) * hd);
        rope_apply(row, static_cast<int>(hd), n_rot, rope_cs_.data(), false);
        fp8_round_trip(row, hd - n_rot);
        store_f16(row, S.raw_row(pos), static_cast<int>(hd));
        if (L.compressed) {
            const size_t W = static_cast<size_t>(L.compressor.lanes) * L.compressor.dim;
            compressor_push(L.compressor, S.attn, &ckv_[t * W], &csc_[t * W], pos, false, rope);
        }
        if (L.indexer) {
            const size_t W = static_cast<size_t>(L.indexer_compressor.lanes) * L.indexer_compressor.dim;
            compressor_push(L.indexer_compressor, S.indexer, &ikv_[t * W], &isc_[t * W], pos, true, rope);
        }
        attend_token(L, S, t, pos);
        for (int64_t h = 0; h < H; ++h) rope_apply(&o_[(t * H + h) * hd], static_cast<int>(hd), n_rot, rope_cs_.data(), true);
    }

    // Grouped low-rank output: group g reads heads [g*hpg, (g+1)*hpg).
    const int64_t G = cfg_.o_groups, ol = cfg_.o_lora_rank, gw = (H / G) * hd;
    for (int64_t g = 0; g < G; ++g) {
        Matrix A = L.out_a;
        A.data = static_cast<const uint8_t*>(L.out_a.data) + static_cast<size_t>(g * ol) * L.out_a.row_bytes;
        A.rows = ol;
        const float* src = &o_[g * gw];
        if (n > 1) {
            for (int t = 0; t < n; ++t) std::memcpy(&og_[t * gw], &o_[t * H * hd + g * gw], sizeof(float) * gw);
            src = og_.data();
        }
        mm(A, src, n, &low_[g * ol], G * ol);
    }
    mm(L.out_b, low_.data(), n, y_.data());
    emit(hooks, HookPoint::AttnOut, L.index, y_.data(), n, d);
    hc_post(L.hc_attn, n, y_.data(), split_.data());
}

// ---- FFN ---------------------------------------------------------------------

void Forward::ffn_layer(const model::LayerWeights& L, const int32_t* tokens, int n, int64_t, HookDispatch* hooks) {
    const int64_t d = cfg_.n_embd, E = cfg_.n_expert, K = cfg_.n_expert_used, ff = cfg_.expert_ff;
    const float clampv = cfg_.swiglu_clamp[static_cast<size_t>(L.index)];
    hc_pre(L.hc_ffn, n, xin_.data(), split_.data());
    float* v = u_.data();
    norm(L.ffn_norm, off_ ? ffn_norm_names_[static_cast<size_t>(L.index)] : std::string(), xin_.data(), v, n, d);
    emit(hooks, HookPoint::FfnIn, L.index, v, n, d);
    in_a_.reset(v, n, d);

    // Router: sqrt(softplus(logits)); selection uses the bias, weights do not.
    mm(L.router, in_a_, logit_.data());
    emit(hooks, HookPoint::RouterLogits, L.index, logit_.data(), n, E);
    for (int64_t i = 0; i < n * E; ++i) probs_[static_cast<size_t>(i)] = std::sqrt(softplus(logit_[static_cast<size_t>(i)]));
    for (int t = 0; t < n; ++t) {
        const float* p = &probs_[static_cast<size_t>(t) * E];
        int32_t* sel = &sel_[static_cast<size_t>(t) * K];
        if (L.tid2eid) {
            for (int64_t k = 0; k < K; ++k) sel[k] = L.tid2eid[static_cast<size_t>(tokens[t]) * K + k];
        } else {
            // Insertion into a descending top-K list; strict '>' keeps the lower id on ties.
            ensure(best_, static_cast<size_t>(K));
            float* best = best_.data();
            std::fill(best, best + K, -INFINITY);
            for (int64_t k = 0; k < K; ++k) sel[k] = -1;
            for (int64_t e = 0; e < E; ++e) {
                const float s = p[e] + (L.router_bias.empty() ? 0.0f : L.router_bias[static_cast<size_t>(e)]);
                if (sel[K - 1] >= 0 && !(s > best[K - 1])) continue;
                int64_t k = K - 1;
                while (k > 0 && (sel[k - 1] < 0 || s > best[k - 1])) {
                    best[k] = best[k - 1];
                    sel[k] = sel[k - 1];
                    --k;
                }
                best[k] = s;
                sel[k] = static_cast<int32_t>(e);
            }
        }
        float sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += p[sel[k]];
        const float inv = 1.0f / std::max(sum, kRouteWeightFloor);
        for (int64_t k = 0; k < K; ++k)
            wsel_[static_cast<size_t>(t * K + k)] = p[sel[k]] * inv * cfg_.expert_weights_scale;
    }
    if (hooks && hooks->wants(HookPoint::RouterSelection, L.index)) {
        ActivationView view;
        view.point = HookPoint::RouterSelection;
        view.layer = L.index;
        view.phase = hooks->phase;
        view.rows = n;
        view.experts = sel_.data();
        view.expert_weights = wsel_.data();
        view.k = static_cast<int>(K);
        view.positions = std::span<const int64_t>(positions_.data(), static_cast<size_t>(n));
        view.tokens = std::span<const TokenId>(tokens_, static_cast<size_t>(n));
        view.history = hooks->history;
        hooks->call(view);
    }

    // Routed experts, tokens grouped per expert; each (token, slot) output is
    // kept apart and summed in slot order so the result does not depend on
    // how tokens were batched.
    if (users_.size() < static_cast<size_t>(E)) users_.resize(static_cast<size_t>(E));
    auto& users = users_;
    for (int64_t e = 0; e < E; ++e) users[static_cast<size_t>(e)].clear();
    for (int64_t i = 0; i < n * K; ++i) users[static_cast<size_t>(sel_[static_cast<size_t>(i)])].push_back(static_cast<int32_t>(i));
    // Each expert's inputs, routing weights and outputs get their own stretch
    // of the buffers (offsets in (token, slot) pairs), so the experts that
    // stay on the CPU can run together as two jobs (cpu_routed_experts).
    ensure(gathered_, static_cast<size_t>(n * K * d));
    ensure(down_out_, static_cast<size_t>(n * K * d));
    ensure(expert_w_, static_cast<size_t>(n * K));
    expert_calls_.clear();
    cpu_experts_.clear();
    int64_t at = 0;
    for (int64_t e = 0; e < E; ++e) {
        const auto& us = users[static_cast<size_t>(e)];
        if (us.empty()) continue;
        const int64_t c = static_cast<int64_t>(us.size());
        ExpertCall call;
        // Every token of the batch in order (always so in one-token decode):
        // read the input in place. (A hash table may list an expert twice for
        // one token, so the count alone does not say it.)
        bool in_order = c == n;
        for (int64_t i = 0; in_order && i < c; ++i) in_order = us[static_cast<size_t>(i)] / K == i;
        if (in_order) {
            call.x = v;
        } else {
            for (int64_t i = 0; i < c; ++i)
                std::memcpy(&gathered_[static_cast<size_t>((at + i) * d)], &v[(us[static_cast<size_t>(i)] / K) * d],
                            sizeof(float) * d);
            call.x = &gathered_[static_cast<size_t>(at * d)];
        }
        for (int64_t i = 0; i < c; ++i) expert_w_[static_cast<size_t>(at + i)] = wsel_[static_cast<size_t>(us[static_cast<size_t>(i)])];
        call.gate = weight_ref(L.gate_exps.expert(e), {}, static_cast<int>(e));
        call.up = weight_ref(L.up_exps.expert(e), {}, static_cast<int>(e));
        call.down = weight_ref(L.down_exps.expert(e), {}, static_cast<int>(e));
        call.weights = &expert_w_[static_cast<size_t>(at)];
        call.n_tok = c;
        call.clamp = clampv;
        call.out = &down_out_[static_cast<size_t>(at * d)];
        for (const WeightRef* w : {&call.gate, &call.up, &call.down}) count_product(w->row_bytes, w->rows, w->cols, c);
        if (const auto* ent = offload(call.gate.data, BackendOp::RoutedExperts, call.gate.type)) {
            call.gate.name = ent->name;
            ent->backend->routed_expert(call);
        } else if (store_) {
            placed_expert(L.index, e, call);
        } else {
            cpu_experts_.push_back(call);
        }
        expert_calls_.push_back({e, at});
        at += c;
    }
    cpu_routed_experts(cpu_experts_, cpu_, routed_);
    for (const auto& [e, first] : expert_calls_) {
        const auto& us = users[static_cast<size_t>(e)];
        for (size_t i = 0; i < us.size(); ++i)
            std::memcpy(&moe_parts_[static_cast<size_t>(us[i]) * d], &down_out_[static_cast<size_t>((first + static_cast<int64_t>(i)) * d)],
                        sizeof(float) * d);
    }

    // Shared expert on the same input.
    ensure(shared_g_, static_cast<size_t>(n * ff));
    ensure(shared_u_, static_cast<size_t>(n * ff));
    ensure(shared_out_, static_cast<size_t>(n * d));
    mm(L.gate_sh, in_a_, shared_g_.data());
    mm(L.up_sh, in_a_, shared_u_.data());
    for (int64_t i = 0; i < n * ff; ++i) {
        shared_g_[static_cast<size_t>(i)] = clamped_swiglu(shared_g_[static_cast<size_t>(i)], shared_u_[static_cast<size_t>(i)], clampv);
    }
    mm(L.down_sh, shared_g_.data(), n, shared_out_.data());

    for (int t = 0; t < n; ++t) {
        float* y = &y_[t * d];
        const float* part0 = &moe_parts_[static_cast<size_t>(t * K) * d];
        for (int64_t i = 0; i < d; ++i) y[i] = part0[i];
        for (int64_t k = 1; k < K; ++k) {
            const float* part = &moe_parts_[static_cast<size_t>(t * K + k) * d];
            for (int64_t i = 0; i < d; ++i) y[i] += part[i];
        }
        const float* sh = &shared_out_[static_cast<size_t>(t) * d];
        for (int64_t i = 0; i < d; ++i) y[i] += sh[i];
    }
    emit(hooks, HookPoint::FfnOut, L.index, y_.data(), n, d);
    hc_post(L.hc_ffn, n, y_.data(), split_.data());
}

void Forward::placed_expert(int layer, int64_t expert, const ExpertCall& c) {
    using placement::ExpertMatrix;
    const int64_t n = c.n_tok, d = c.gate.cols, ff = c.gate.rows;
    ensure(cpu_.a, static_cast<size_t>(n * ff));
    ensure(cpu_.b, static_cast<size_t>(n * ff));
    float* g = cpu_.a.data();
    float* u = cpu_.b.data();
    const int nodes = pool_->n_nodes();
    auto rows_of = [&](int k) -> const LayerRows& {
        return plan_.node(pool_->node_os_index(k))->rows[static_cast<size_t>(layer)];
    };
    // The held rows of one expert as a matrix whose row 0 is global row `slab.rows.begin`.
    auto slab_matrix = [&](int k, ExpertMatrix m, const WeightRef& like) {
        const placement::ExpertSlab& sl = store_->slab(pool_->node_os_index(k), layer, m);
        Matrix M = matrix_of(like);
        M.data = sl.expert(expert);
        M.rows = sl.rows.size();
        return std::pair<Matrix, int64_t>(M, sl.rows.begin);
    };

    // Phase 1: gate and up rows of each node, then the clamped SwiGLU of those rows.
    cpu_.act.prepare(c.gate.type, c.x, n, d);
    for (int k = 0; k < nodes; ++k) node_items_[static_cast<size_t>(k)] = rows_of(k).ff.size();
    const float lim = c.clamp;
    pool_->parallel_for_nodes(
        std::span<const int64_t>(node_items_),
        [&](int k, int64_t b, int64_t e, int) {
            const auto [G, g0] = slab_matrix(k, ExpertMatrix::Gate, c.gate);
            const auto [U, u0] = slab_matrix(k, ExpertMatrix::Up, c.up);
            const int64_t first = rows_of(k).ff.begin;  // global row of item 0
            kernels::matmul_rows(G, cpu_.act, g + g0, ff, first + b - g0, first + e - g0);
            kernels::matmul_rows(U, cpu_.act, u + u0, ff, first + b - u0, first + e - u0);
            for (int64_t t = 0; t < n; ++t)
                for (int64_t r = first + b; r < first + e; ++r) {
                    float& gv = g[t * ff + r];
                    gv = clamped_swiglu(gv, u[t * ff + r], lim) * c.weights[t];
                }
        },
        kRowGrain);

    // Phase 2: down rows of each node over the whole FF vector.
    cpu_.act.prepare(c.down.type, g, n, ff);
    for (int k = 0; k < nodes; ++k) node_items_[static_cast<size_t>(k)] = rows_of(k).out.size();
    pool_->parallel_for_nodes(
        std::span<const int64_t>(node_items_),
        [&](int k, int64_t b, int64_t e, int) {
            const auto [D, d0] = slab_matrix(k, ExpertMatrix::Down, c.down);
            const int64_t first = rows_of(k).out.begin;
            kernels::matmul_rows(D, cpu_.act, c.out + d0, d, first + b - d0, first + e - d0);
        },
        kRowGrain);
}

// ---- output head -------------------------------------------------------------

void Forward::output_head(int n, float* logits, bool all_logits, HookDispatch* hooks, int64_t) {
    const int hc = cfg_.hc_count;
    const int64_t d = cfg_.n_embd, HD = hc * d;
    const int first = all_logits ? 0 : n - 1;
    const int rows = n - first;
    ensure(hidden_, static_cast<size_t>(rows) * d);
    for (int r = 0; r < rows; ++r) rms_norm(&X_[(first + r) * HD], nullptr, &flat_[r * HD], HD, cfg_.hc_eps);
    mm(w_.output_hc.fn, flat_.data(), rows, mix_.data(), hc);
    for (int r = 0; r < rows; ++r) {
        const float* x = &X_[(first + r) * HD];
        float* h = &hidden_[static_cast<size_t>(r) * d];
        for (int64_t i = 0; i < d; ++i) h[i] = 0;
        for (int s = 0; s < hc; ++s) {
            const float wgt =
                sigmoid(mix_[static_cast<size_t>(r) * hc + s] * w_.output_hc.scale[0] + w_.output_hc.base[static_cast<size_t>(s)]) +
                cfg_.hc_eps;
            for (int64_t i = 0; i < d; ++i) h[i] += wgt * x[s * d + i];
        }
    }
    static const std::string kOutputNorm = "output_norm.weight";
    norm(w_.output_norm, kOutputNorm, hidden_.data(), hidden_.data(), rows, d);
    emit(hooks, HookPoint::FinalHidden, -1, hidden_.data(), rows, d, first);
    mm(w_.output, hidden_.data(), rows, logits);
    emit(hooks, HookPoint::Logits, -1, logits, rows, cfg_.n_vocab, first);
}

// ---- driver ------------------------------------------------------------------

void Forward::run(const int32_t* tokens, int n, TimelineState& state, float* logits, bool all_logits,
                  HookDispatch* hooks) {
    const int64_t d = cfg_.n_embd, HD = cfg_.hc_count * d;
    const int64_t pos0 = state.n_past;
    positions_.resize(static_cast<size_t>(n));
    for (int t = 0; t < n; ++t) positions_[static_cast<size_t>(t)] = pos0 + t;
    tokens_ = tokens;
    for (int t = 0; t < n; ++t) {
        float* x = &X_[t * HD];
        w_.embed(tokens[t], x, static_cast<int>(d));
        weight_bytes_ += w_.embd_row_bytes;
        for (int h = 1; h < cfg_.hc_count; ++h) std::memcpy(x + h * d, x, sizeof(float) * d);
    }
    for (int il = 0; il < cfg_.n_layer; ++il) {
        const model::LayerWeights& L = w_.layers[static_cast<size_t>(il)];
        LayerState& S = state.layers[static_cast<size_t>(il)];
        emit(hooks, HookPoint::ResidPre, il, X_.data(), n, HD, 0, cfg_.hc_count);
        attention_layer(L, S, n, pos0, hooks);
        ffn_layer(L, tokens, n, pos0, hooks);
        emit(hooks, HookPoint::ResidPost, il, X_.data(), n, HD, 0, cfg_.hc_count);
    }
    output_head(n, logits, all_logits, hooks, pos0);
    state.n_past += n;
}

}  // namespace ds4::engine
