// The "reference" backend: every operation as straightforward loops over f32
// values (weights dequantized row by row, sums in double, no SIMD, no
// activation quantization). It is the worked example of an external backend
// (docs/backends.md) and the tests check that its logits match the "cpu"
// backend's.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/builtin_backends.hpp"
#include "core/error_internal.hpp"
#include "engine/ops.hpp"
#include "quant/quant.hpp"

namespace ds4::backend {

namespace {

void check_weight(const WeightRef& w) {
    if (!w.data || w.rows <= 0 || w.cols <= 0)
        detail::fail(ErrorCode::InvalidArgument, "reference backend: weight '%.*s' is empty",
                     static_cast<int>(w.name.size()), w.name.data());
}

// y[t*stride + r] = sum_c W[r][c] x[t][c]
void reference_matmul(const WeightRef& w, const float* x, int64_t n_tok, float* y, int64_t stride) {
    check_weight(w);
    if (stride == 0) stride = w.rows;
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
        quant::dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes,
                              row.data(), w.cols);
        for (int64_t t = 0; t < n_tok; ++t) {
            const float* xt = x + t * w.cols;
            double s = 0;
            for (int64_t c = 0; c < w.cols; ++c) s += static_cast<double>(row[static_cast<size_t>(c)]) * xt[c];
            y[t * stride + r] = static_cast<float>(s);
        }
    }
}

void reference_rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

float silu(float v) { return v / (1.0f + std::exp(-v)); }

class ReferenceBackend final : public Backend {
public:
    std::string_view name() const override { return "reference"; }
    DeviceInfo device() const override { return reference_device(); }
    bool supports(BackendOp, DType type) const override {
        switch (type) {
            case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0:
            case DType::Q2_K: case DType::Q4_K: case DType::IQ2_XXS: return true;
            default: return false;
        }
    }

    void matmul(const WeightRef& w, const float* x, int64_t n_tok, float* y, int64_t y_stride) override {
        reference_matmul(w, x, n_tok, y, y_stride);
    }

    void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) override {
        for (int64_t r = 0; r < rows; ++r) reference_rms_norm(x + r * n, w, y + r * n, n, eps);
    }

    void hc_pre(const HcPreCall& c) override {
        const int hc = c.hc;
        const int64_t d = c.d, HD = hc * d, mix = c.fn.rows;
        std::vector<float> flat(static_cast<size_t>(HD)), m(static_cast<size_t>(mix));
        for (int64_t t = 0; t < c.n_tok; ++t) {
            const float* x = c.streams + t * HD;
            reference_rms_norm(x, nullptr, flat.data(), HD, c.eps);
            reference_matmul(c.fn, flat.data(), 1, m.data(), mix);
            float* sp = c.split + t * mix;
            engine::hc_split(m.data(), c.scale, c.base, hc, c.sinkhorn_iters, c.eps, sp, sp + hc, sp + 2 * hc);
            for (int64_t i = 0; i < d; ++i) {
                float acc = 0;
                for (int h = 0; h < hc; ++h) acc += sp[h] * x[h * d + i];
                c.out[t * d + i] = acc;
            }
        }
    }

    void hc_post(const HcPostCall& c) override {
        const int hc = c.hc;
        const int64_t d = c.d, HD = hc * d, mix = 2 * hc + hc * hc;
        for (int64_t t = 0; t < c.n_tok; ++t) {
            const float* post = c.split + t * mix + hc;
            const float* comb = post + hc;
            for (int i = 0; i < hc; ++i)
                for (int64_t k = 0; k < d; ++k) {
                    float acc = post[i] * c.y[t * d + k];
                    for (int j = 0; j < hc; ++j) acc += comb[i + hc * j] * c.streams[t * HD + j * d + k];
                    c.out[t * HD + i * d + k] = acc;
                }
        }
    }

    void attention(const AttentionCall& c) override {
        const int64_t N = c.n_rows;
        std::vector<double> p(static_cast<size_t>(N));
        for (int h = 0; h < c.heads; ++h) {
            const float* q = c.q + static_cast<int64_t>(h) * c.head_dim;
            double m = c.sinks[h];
            for (int64_t r = 0; r < N; ++r) {
                double s = 0;
                for (int i = 0; i < c.head_dim; ++i) s += static_cast<double>(q[i]) * c.keys[r * c.head_dim + i];
                p[static_cast<size_t>(r)] = s * c.scale;
                m = std::max(m, p[static_cast<size_t>(r)]);
            }
            double den = std::exp(c.sinks[h] - m);
            for (int64_t r = 0; r < N; ++r) den += p[static_cast<size_t>(r)] = std::exp(p[static_cast<size_t>(r)] - m);
            float* o = c.out + static_cast<int64_t>(h) * c.head_dim;
            for (int i = 0; i < c.head_dim; ++i) {
                double acc = 0;
                for (int64_t r = 0; r < N; ++r) acc += p[static_cast<size_t>(r)] * c.keys[r * c.head_dim + i];
                o[i] = static_cast<float>(acc / den);
            }
        }
    }

    void routed_expert(const ExpertCall& c) override {
        const int64_t ff = c.gate.rows, d = c.gate.cols;
        std::vector<float> g(static_cast<size_t>(ff)), u(static_cast<size_t>(ff));
        for (int64_t t = 0; t < c.n_tok; ++t) {
            reference_matmul(c.gate, c.x + t * d, 1, g.data(), ff);
            reference_matmul(c.up, c.x + t * d, 1, u.data(), ff);
            for (int64_t j = 0; j < ff; ++j) {
                const size_t k = static_cast<size_t>(j);
                g[k] = silu(std::min(g[k], c.clamp)) * std::clamp(u[k], -c.clamp, c.clamp) * c.weights[t];
            }
            reference_matmul(c.down, g.data(), 1, c.out + t * d, d);
        }
    }

    static DeviceInfo reference_device() {
        DeviceInfo d;
        d.name = "reference0";
        d.description = "plain f32 loops on the host (no SIMD); a worked example and a test oracle";
        d.kind = DeviceKind::Cpu;
        return d;
    }
};

}  // namespace

BackendFactory reference_backend_factory() {
    BackendFactory f;
    f.name = "reference";
    f.devices = [] { return std::vector<DeviceInfo>{ReferenceBackend::reference_device()}; };
    f.create = [](int) { return std::make_shared<ReferenceBackend>(); };
    return f;
}

}  // namespace ds4::backend
