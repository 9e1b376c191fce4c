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

template <class T>
void ensure(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
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
    Eigen::Map<const RowMajor> Q(c.q, H, hd);
    ensure(s.c, static_cast<size_t>(H) * static_cast<size_t>(N));
    Eigen::Map<RowMajor> P(s.c.data(), H, N);
    P.noalias() = Q * K.transpose();
    for (int h = 0; h < H; ++h) {
        float* sc = &s.c[static_cast<size_t>(h) * static_cast<size_t>(N)];
        const float sink = c.sinks[h];
        float m = sink;
        for (int64_t r = 0; r < N; ++r) {
            sc[r] *= c.scale;
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
    Eigen::Map<RowMajor> O(c.out, H, hd);
    O.noalias() = P * K;
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
        for (int64_t j = 0; j < ff; ++j) g[j] = silu(std::min(g[j], lim)) * std::clamp(u[j], -lim, lim) * w;
    }
    s.act.prepare(down.type, s.a.data(), n, ff);
    cpu_matmul(s, down, s.act, c.out);
}

}  // namespace ds4::engine
