#include "engine/ops.hpp"

#include <algorithm>
#include <cfenv>
#include <cmath>

namespace ds4::engine {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    if (w) {
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
    } else {
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale;
    }
}

float pow2_ceil(float v) {
    int e = 0;
    const float m = std::frexp(v, &e);  // v = m * 2^e, m in [0.5, 1)
    return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}

float e4m3_round(float x) {
    const float a = std::fabs(x);
    constexpr float kMinNormal = 0.015625f;  // 2^-6
    float q;
    if (a < kMinNormal) {
        q = std::nearbyint(a * 512.0f) / 512.0f;  // subnormal step 2^-9
    } else {
        int e = 0;
        std::frexp(a, &e);                           // a in [2^(e-1), 2^e)
        const float step = std::ldexp(1.0f, e - 4);  // 3 mantissa bits
        q = std::nearbyint(a / step) * step;
    }
    q = std::min(q, 448.0f);
    return std::copysign(q, x);
}

void fp8_round_trip(float* x, int64_t n, int block) {
    for (int64_t b = 0; b < n; b += block) {
        const int64_t end = std::min<int64_t>(n, b + block);
        float amax = 1e-4f;
        for (int64_t i = b; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float scale = pow2_ceil(amax / 448.0f);
        for (int64_t i = b; i < end; ++i) {
            const float v = std::clamp(x[i] / scale, -448.0f, 448.0f);
            x[i] = e4m3_round(v) * scale;
        }
    }
}

float e2m1_round(float x) {
    static const float kLevels[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    const float a = std::fabs(x);
    int best = 0;
    float best_err = a;
    for (int i = 1; i < 8; ++i) {
        const float err = std::fabs(a - kLevels[i]);
        // Strictly better, or a tie won by the even index.
        if (err < best_err || (err == best_err && (i % 2 == 0) && (best % 2 != 0))) {
            best = i;
            best_err = err;
        }
    }
    return std::copysign(kLevels[best], x);
}

void fp4_round_trip(float* x, int64_t n, int block) {
    for (int64_t b = 0; b < n; b += block) {
        const int64_t end = std::min<int64_t>(n, b + block);
        float amax = 7.052966104933725e-38f;
        for (int64_t i = b; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float scale = pow2_ceil(amax / 6.0f);
        for (int64_t i = b; i < end; ++i) {
            const float v = std::clamp(x[i] / scale, -6.0f, 6.0f);
            x[i] = e2m1_round(v) * scale;
        }
    }
}

void hadamard(float* x, int n) {
    for (int h = 1; h < n; h *= 2) {
        for (int i = 0; i < n; i += 2 * h) {
            for (int j = i; j < i + h; ++j) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
    }
    const float s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
    for (int i = 0; i < n; ++i) x[i] *= s;
}

Rope Rope::for_layer(const ModelConfig& cfg, int layer) {
    Rope r;
    r.n_rot = cfg.n_rot;
    if (cfg.compress_ratio(layer) == 0) {
        r.base = cfg.rope_base;
        return r;
    }
    r.base = cfg.compress_rope_base;
    r.yarn = true;
    r.factor = cfg.yarn_factor;
    const double pi = 3.14159265358979323846;
    auto corr = [&](double beta) {
        return cfg.n_rot * std::log(static_cast<double>(cfg.yarn_orig_ctx) / (beta * 2.0 * pi)) /
               (2.0 * std::log(r.base));
    };
    r.ramp_lo = std::max(0.0, std::floor(corr(cfg.yarn_beta_fast)));
    r.ramp_hi = std::min(static_cast<double>(cfg.n_rot - 1), std::ceil(corr(cfg.yarn_beta_slow)));
    return r;
}

void Rope::angles(int64_t pos, float* cs) const {
    const int pairs = n_rot / 2;
    for (int k = 0; k < pairs; ++k) {
        const double theta_ext = static_cast<double>(pos) * std::pow(base, -2.0 * k / n_rot);
        double theta = theta_ext;
        if (yarn) {
            const double t = (k - ramp_lo) / std::max(0.001, ramp_hi - ramp_lo);
            const double ramp = 1.0 - std::clamp(t, 0.0, 1.0);
            theta = (theta_ext / factor) * (1.0 - ramp) + theta_ext * ramp;
        }
        cs[2 * k] = static_cast<float>(std::cos(theta));
        cs[2 * k + 1] = static_cast<float>(std::sin(theta));
    }
}

void rope_apply(float* x, int dim, int n_rot, const float* cs, bool inverse) {
    float* t = x + (dim - n_rot);
    for (int k = 0; k < n_rot / 2; ++k) {
        const float c = cs[2 * k];
        const float s = inverse ? -cs[2 * k + 1] : cs[2 * k + 1];
        const float x0 = t[2 * k], x1 = t[2 * k + 1];
        t[2 * k] = x0 * c - x1 * s;
        t[2 * k + 1] = x0 * s + x1 * c;
    }
}

float sigmoid(float x) {
    if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
}

float silu(float x) { return x * sigmoid(x); }

float softplus(float x) {
    if (x > 20.0f) return x;
    if (x < -20.0f) return std::exp(x);
    return std::log1p(std::exp(x));
}

void hc_split(const float* m, const float* scale, const float* base, int n, int sinkhorn_iters, float eps,
              float* pre, float* post, float* comb) {
    for (int i = 0; i < n; ++i) {
        pre[i] = 1.0f / (1.0f + std::exp(-(m[i] * scale[0] + base[i]))) + eps;
        post[i] = 2.0f / (1.0f + std::exp(-(m[n + i] * scale[1] + base[n + i])));
    }
    const int off = 2 * n;
    // Column-wise softmax over destinations, plus eps.
    for (int j = 0; j < n; ++j) {
        float mx = -INFINITY;
        for (int i = 0; i < n; ++i) mx = std::max(mx, m[off + i + n * j] * scale[2] + base[off + i + n * j]);
        float sum = 0;
        for (int i = 0; i < n; ++i) {
            const float e = std::exp(m[off + i + n * j] * scale[2] + base[off + i + n * j] - mx);
            comb[i + n * j] = e;
            sum += e;
        }
        for (int i = 0; i < n; ++i) comb[i + n * j] = comb[i + n * j] / sum + eps;
    }
    auto normalize_rows = [&] {
        for (int i = 0; i < n; ++i) {
            float r = 0;
            for (int j = 0; j < n; ++j) r += comb[i + n * j];
            for (int j = 0; j < n; ++j) comb[i + n * j] /= (r + eps);
        }
    };
    normalize_rows();
    for (int it = 1; it < sinkhorn_iters; ++it) {
        for (int j = 0; j < n; ++j) {
            float q = 0;
            for (int i = 0; i < n; ++i) q += comb[i + n * j];
            for (int i = 0; i < n; ++i) comb[i + n * j] /= (q + eps);
        }
        normalize_rows();
    }
}

}  // namespace ds4::engine
