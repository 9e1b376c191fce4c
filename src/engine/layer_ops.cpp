#include "engine/layer_ops.hpp"

// The engine runs its own threads (the placement worker pool): Eigen's
// products stay single-threaded inside them.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "engine/ops.hpp"
#include "placement/worker_pool.hpp"

namespace ds4::engine {

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows per unit of work handed to a worker (keeps the kernels' row tiles whole).
constexpr int64_t kRowGrain = 16;
// Activation rows to quantize below which a pooled run costs more than it saves.
constexpr int64_t kMinRowsToSplit = 16;
// Attention heads per unit of work (a fixed block, so that results do not
// depend on the number of workers).
constexpr int64_t kHeadsPerJob = 8;

template <class T>
void ensure(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

// Scores of one head -> attention weights: scaled, softmax over the rows and
// the head's sink logit (the sink takes its share of the mass, no value).
void softmax_with_sink(float* sc, int64_t N, float sink, float scale) {
    float m = sink;
    for (int64_t r = 0; r < N; ++r) {
        sc[r] *= scale;
        m = std::max(m, sc[r]);
    }
    float den = std::exp(sink - m);
    for (int64_t r = 0; r < N; ++r) {
        sc[r] = std::exp(sc[r] - m);
        den += sc[r];
    }
    const float inv = 1.0f / den;
    for (int64_t r = 0; r < N; ++r) sc[r] *= inv;
}

}  // namespace

void cpu_matmul(const CpuScratch& s, const kernels::Matrix& W, const kernels::Activations& x, float* y,
                int64_t y_stride) {
    if (!s.pool) {
        kernels::matmul(W, x, y, y_stride);
        return;
    }
    const int64_t stride = y_stride ? y_stride : W.rows;
    s.pool->parallel_for_all(
        W.rows, [&](int64_t b, int64_t e, int) { kernels::matmul_rows(W, x, y, stride, b, e); }, kRowGrain);
}

void prepare_activations(const CpuScratch& s, kernels::Activations& a, DType weight_type, const float* x,
                         int64_t n_tok, int64_t cols) {
    if (!s.pool || n_tok < kMinRowsToSplit) {
        a.prepare(weight_type, x, n_tok, cols);
        return;
    }
    a.shape(weight_type, n_tok, cols);
    s.pool->parallel_for_all(n_tok, [&](int64_t b, int64_t e, int) { a.quantize_rows(x, b, e); });
}

kernels::Matrix matrix_of(const WeightRef& w) {
    kernels::Matrix m;
    m.type = w.type;
    m.data = w.data;
    m.rows = w.rows;
    m.cols = w.cols;
    m.row_bytes = w.row_bytes;
    return m;
}

WeightRef weight_ref(const kernels::Matrix& m, std::string_view name, int expert) {
    WeightRef w;
    w.name = name;
    w.expert = expert;
    w.type = m.type;
    w.data = m.data;
    w.rows = m.rows;
    w.cols = m.cols;
    w.row_bytes = m.row_bytes;
    return w;
}

void cpu_hc_pre(const HcPreCall& c, CpuScratch& s) {
    const int hc = c.hc;
    const int64_t d = c.d, HD = hc * d, n = c.n_tok;
    const int64_t mix = c.fn.rows;
    ensure(s.a, static_cast<size_t>(n * HD));
    ensure(s.b, static_cast<size_t>(n * mix));
    for (int64_t t = 0; t < n; ++t) rms_norm(c.streams + t * HD, nullptr, &s.a[static_cast<size_t>(t * HD)], HD, c.eps);
    const kernels::Matrix fn = matrix_of(c.fn);
    s.act.prepare(fn.type, s.a.data(), n, HD);
    cpu_matmul(s, fn, s.act, s.b.data());
    for (int64_t t = 0; t < n; ++t) {
        float* sp = c.split + t * mix;
        hc_split(&s.b[static_cast<size_t>(t * mix)], c.scale, c.base, hc, c.sinkhorn_iters, c.eps, sp, sp + hc,
                 sp + 2 * hc);
        float* out = c.out + t * d;
        const float* x = c.streams + t * HD;
        std::fill(out, out + d, 0.0f);
        for (int h = 0; h < hc; ++h) {
            const float p = sp[h];
            for (int64_t i = 0; i < d; ++i) out[i] += p * x[h * d + i];
        }
    }
}

void cpu_hc_post(const HcPostCall& c) {
    const int hc = c.hc;
    const int64_t d = c.d, HD = hc * d, mix = 2 * hc + hc * hc;
    for (int64_t t = 0; t < c.n_tok; ++t) {
        const float* post = c.split + t * mix + hc;
        const float* comb = post + hc;
        const float* x = c.streams + t * HD;
        const float* y = c.y + t * d;
        float* out = c.out + t * HD;
        for (int i = 0; i < hc; ++i) {
            float* o = out + i * d;
            for (int64_t k = 0; k < d; ++k) o[k] = post[i] * y[k];
            for (int j = 0; j < hc; ++j) {
                const float w = comb[i + hc * j];
                const float* xj = x + j * d;
                for (int64_t k = 0; k < d; ++k) o[k] += w * xj[k];
            }
        }
    }
}

void cpu_attention(const AttentionCall& c, CpuScratch& s) {
    const int H = c.heads, hd = c.head_dim;
    const int64_t N = c.n_rows;
    Eigen::Map<const RowMajor> K(c.keys, N, hd);
    ensure(s.c, static_cast<size_t>(H) * static_cast<size_t>(N));
    // Heads [hb, he): scores against every key row, softmax with the sink,
    // weighted sum of the rows. Always in blocks of kHeadsPerJob heads, so
    // the result does not depend on how many workers share them.
    auto heads = [&](int64_t hb, int64_t he) {
        const int64_t nh = he - hb;
        Eigen::Map<const RowMajor> Q(c.q + hb * hd, nh, hd);
        Eigen::Map<RowMajor> P(&s.c[static_cast<size_t>(hb) * static_cast<size_t>(N)], nh, N);
        P.noalias() = Q * K.transpose();
        for (int64_t h = hb; h < he; ++h)
            softmax_with_sink(&s.c[static_cast<size_t>(h) * static_cast<size_t>(N)], N, c.sinks[h], c.scale);
        Eigen::Map<RowMajor> O(c.out + hb * hd, nh, hd);
        O.noalias() = P * K;
    };
    const int64_t blocks = (H + kHeadsPerJob - 1) / kHeadsPerJob;
    auto run_blocks = [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) heads(k * kHeadsPerJob, std::min<int64_t>(H, (k + 1) * kHeadsPerJob));
    };
    if (s.pool)
        s.pool->parallel_for_all(blocks, [&](int64_t b, int64_t e, int) { run_blocks(b, e); });
    else
        run_blocks(0, blocks);
}

void cpu_attention_f16(const AttentionF16Call& c, CpuScratch& s) {
    const int64_t H = c.heads, hd = c.head_dim, N = c.n_rows;
    ensure(s.c, static_cast<size_t>(H * N));
    float* P = s.c.data();
    // Scores P[h][r] = q_h . k_r: the F16 key rows as a matrix for the
    // dispatched kernels, the heads as a batch of H inputs.
    s.act.prepare(DType::F16, c.q, H, hd);
    cpu_matmul(s, kernels::Matrix::make(DType::F16, c.keys, N, hd), s.act, P, N);
    auto softmax = [&](int64_t b, int64_t e) {
        for (int64_t h = b; h < e; ++h) softmax_with_sink(P + h * N, N, c.sinks[h], c.scale);
    };
    // out[h] = sum_r P[h][r] k_r, columns split over the workers in units of 16.
    const int64_t units = (hd + 15) / 16;
    auto weighted = [&](int64_t b, int64_t e) {
        kernels::weighted_rows_f16(c.keys, hd, N, P, N, H, c.out, hd, b * 16, std::min(hd, e * 16));
    };
    if (s.pool) {
        s.pool->parallel_for_all(H, [&](int64_t b, int64_t e, int) { softmax(b, e); });
        s.pool->parallel_for_all(units, [&](int64_t b, int64_t e, int) { weighted(b, e); });
    } else {
        softmax(0, H);
        weighted(0, units);
    }
}

void cpu_routed_expert(const ExpertCall& c, CpuScratch& s) {
    const int64_t n = c.n_tok, d = c.gate.cols, ff = c.gate.rows;
    ensure(s.a, static_cast<size_t>(n * ff));
    ensure(s.b, static_cast<size_t>(n * ff));
    const kernels::Matrix gate = matrix_of(c.gate), up = matrix_of(c.up), down = matrix_of(c.down);
    s.act.prepare(gate.type, c.x, n, d);
    cpu_matmul(s, gate, s.act, s.a.data());
    if (kernels::activation_type(up.type) != kernels::activation_type(gate.type)) s.act.prepare(up.type, c.x, n, d);
    cpu_matmul(s, up, s.act, s.b.data());
    const float lim = c.clamp;
    for (int64_t i = 0; i < n; ++i) {
        const float w = c.weights[i];
        float* g = &s.a[static_cast<size_t>(i * ff)];
        const float* u = &s.b[static_cast<size_t>(i * ff)];
        for (int64_t j = 0; j < ff; ++j) g[j] = clamped_swiglu(g[j], u[j], lim) * w;
    }
    s.act.prepare(down.type, s.a.data(), n, ff);
    cpu_matmul(s, down, s.act, c.out);
}

void cpu_routed_experts(std::span<const ExpertCall> calls, CpuScratch& s, RoutedExpertsScratch& r) {
    const size_t n_calls = calls.size();
    if (!s.pool) {  // OpenMP: one expert after the other
        for (const ExpertCall& c : calls) cpu_routed_expert(c, s);
        return;
    }
    if (n_calls == 0) return;
    for (auto* v : {&r.ff_offset, &r.out_offset, &r.hidden_offset})
        if (v->size() < n_calls + 1) v->resize(n_calls + 1);
    if (r.gate_input.size() < n_calls) r.gate_input.resize(n_calls);
    if (r.up_input.size() < n_calls) r.up_input.resize(n_calls);
    if (r.hidden.size() < n_calls) r.hidden.resize(n_calls);

    // One quantization per distinct (x, n_tok, cols, activation type).
    r.input_keys.clear();
    auto input_for = [&](const float* x, int64_t n, int64_t cols, DType weight_type) {
        const DType at = kernels::activation_type(weight_type);
        for (size_t j = 0; j < r.input_keys.size(); ++j) {
            const auto& k = r.input_keys[j];
            if (k.x == x && k.n_tok == n && k.cols == cols && k.type == at) return j;
        }
        const size_t j = r.input_keys.size();
        r.input_keys.push_back({x, n, cols, at});
        if (r.inputs.size() <= j) r.inputs.resize(j + 1);
        prepare_activations(s, r.inputs[j], weight_type, x, n, cols);
        return j;
    };
    r.ff_offset[0] = r.out_offset[0] = r.hidden_offset[0] = 0;
    for (size_t i = 0; i < n_calls; ++i) {
        const ExpertCall& c = calls[i];
        r.gate_input[i] = input_for(c.x, c.n_tok, c.gate.cols, c.gate.type);
        r.up_input[i] = input_for(c.x, c.n_tok, c.up.cols, c.up.type);
        r.ff_offset[i + 1] = r.ff_offset[i] + c.gate.rows;
        r.out_offset[i + 1] = r.out_offset[i] + c.down.rows;
        r.hidden_offset[i + 1] = r.hidden_offset[i] + c.n_tok * c.gate.rows;  // call i's [n][ff] gate/up values
    }
    ensure(r.gate, static_cast<size_t>(r.hidden_offset[n_calls]));
    ensure(r.up, static_cast<size_t>(r.hidden_offset[n_calls]));

    // Visit the calls whose rows overlap [b, e) of the concatenated row space.
    auto for_rows = [&](const std::vector<int64_t>& offset, int64_t b, int64_t e, auto&& fn) {
        const auto last = offset.begin() + static_cast<std::ptrdiff_t>(n_calls) + 1;
        size_t i = static_cast<size_t>(std::upper_bound(offset.begin(), last, b) - offset.begin()) - 1;
        for (; i < n_calls && offset[i] < e; ++i) {
            const int64_t lb = std::max(b, offset[i]) - offset[i], le = std::min(e, offset[i + 1]) - offset[i];
            if (le > lb) fn(i, lb, le);
        }
    };

    // Job 1: gate and up rows, then the clamped SwiGLU of the same rows.
    s.pool->parallel_for_all(
        r.ff_offset[n_calls],
        [&](int64_t b, int64_t e, int) {
            for_rows(r.ff_offset, b, e, [&](size_t i, int64_t lb, int64_t le) {
                const ExpertCall& c = calls[i];
                const int64_t ff = c.gate.rows;
                float* g = &r.gate[static_cast<size_t>(r.hidden_offset[i])];
                float* u = &r.up[static_cast<size_t>(r.hidden_offset[i])];
                kernels::matmul_rows(matrix_of(c.gate), r.inputs[r.gate_input[i]], g, ff, lb, le);
                kernels::matmul_rows(matrix_of(c.up), r.inputs[r.up_input[i]], u, ff, lb, le);
                const float lim = c.clamp;
                for (int64_t t = 0; t < c.n_tok; ++t) {
                    const float w = c.weights[t];
                    for (int64_t j = lb; j < le; ++j) {
                        float& gv = g[t * ff + j];
                        gv = clamped_swiglu(gv, u[t * ff + j], lim) * w;
                    }
                }
            });
        },
        kRowGrain);

    // Job 2: down rows over each expert's whole SwiGLU vector.
    // (one expert's SwiGLU rows per unit: split over the pool in prefill,
    // where the experts hold hundreds of rows together)
    auto prepare_hidden = [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            const ExpertCall& c = calls[static_cast<size_t>(i)];
            const float* swiglu = &r.gate[static_cast<size_t>(r.hidden_offset[static_cast<size_t>(i)])];
            r.hidden[static_cast<size_t>(i)].prepare(c.down.type, swiglu, c.n_tok, c.gate.rows);
        }
    };
    int64_t hidden_rows = 0;
    for (size_t i = 0; i < n_calls; ++i) hidden_rows += calls[i].n_tok;
    if (hidden_rows >= kMinRowsToSplit)
        s.pool->parallel_for_all(
            static_cast<int64_t>(n_calls), [&](int64_t b, int64_t e, int) { prepare_hidden(b, e); }, 1,
            placement::Schedule::Dynamic);
    else
        prepare_hidden(0, static_cast<int64_t>(n_calls));
    s.pool->parallel_for_all(
        r.out_offset[n_calls],
        [&](int64_t b, int64_t e, int) {
            for_rows(r.out_offset, b, e, [&](size_t i, int64_t lb, int64_t le) {
                const ExpertCall& c = calls[i];
                kernels::matmul_rows(matrix_of(c.down), r.hidden[i], c.out, c.down.rows, lb, le);
            });
        },
        kRowGrain);
}

}  // namespace ds4::engine
