// Activation quantizers of the dot-product kernels (spec section 6.1):
// Q8_0 for Q8_0 weights, Q8_K for the K-quants and IQ2_XXS. The scale
// conventions follow GGML's reference quantizers so that products match the
// reference engine's CPU path.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "quant/quant.hpp"

namespace ds4::quant {

namespace {

void check_multiple(const char* what, int64_t n, int block) {
    if (n < 0 || n % block != 0)
        ds4::detail::fail(ErrorCode::InvalidArgument, "%s: %lld values is not a multiple of %d", what,
                          static_cast<long long>(n), block);
}

// fmax skips NaN, so a block with a NaN or an infinity is found by a second look.
void check_finite(const char* what, const float* v, int n, float amax) {
    if (std::isfinite(amax)) {
        float s = 0.0f;
        for (int j = 0; j < n; ++j) s += v[j] * 0.0f;  // NaN or Inf anywhere makes s NaN
        if (s == 0.0f) return;
    }
    ds4::detail::fail(ErrorCode::InvalidArgument, "%s: the activations contain NaN or infinity", what);
}

}  // namespace

// Q8_0: d = amax / 127 (stored as f16), q = x / d rounded to nearest even
// with the unrounded d, as the reference engine's CPU path does (spec 6.1:
// lrintf(x / d)). q stays within [-127, 127]: it can only leave that range
// when d is subnormal (amax below about 1.5e-36), and the kernels negate
// activation quants, which -128 would not survive.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
    check_multiple("quantize_row_q8_0", n, kQK8_0);
    for (int64_t i = 0; i < n / kQK8_0; ++i) {
        const float* v = x + i * kQK8_0;
        float amax = 0.0f;
        for (int j = 0; j < kQK8_0; ++j) amax = std::fmax(amax, std::fabs(v[j]));
        check_finite("quantize_row_q8_0", v, kQK8_0, amax);
        const float d = amax / 127.0f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < kQK8_0; ++j)
            y[i].qs[j] = d != 0.0f ? static_cast<int8_t>(std::clamp(std::nearbyint(v[j] / d), -127.0f, 127.0f))
                                   : int8_t{0};
    }
}

// Q8_K: the value of largest magnitude (with its sign) maps to -127, i.e.
// scale = -127 / max, q = nearest(x * scale) clamped to [-127, 127] (with a
// finite scale only 127 can be exceeded, by rounding), d = 1 / scale, plus the
// sums of every 16 quants (used by the K-quant minimums). A block whose
// largest magnitude is so small that -127 / max overflows (below about
// 3.7e-37) is stored as zeros, like an all-zero block.
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
    check_multiple("quantize_row_q8_K", n, kQK_K);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float* v = x + i * kQK_K;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK_K; ++j) {
            const float a = std::fabs(v[j]);
            if (a > amax) {
                amax = a;
                max = v[j];
            }
        }
        check_finite("quantize_row_q8_K", v, kQK_K, amax);
        BlockQ8_K& b = y[i];
        const float iscale = amax != 0.0f ? -127.0f / max : 0.0f;
        if (!std::isfinite(iscale) || iscale == 0.0f) {
            b = {};  // d, quants and sums 0
            continue;
        }
        for (int j = 0; j < kQK_K; ++j)
            b.qs[j] = static_cast<int8_t>(std::clamp(std::nearbyint(iscale * v[j]), -127.0f, 127.0f));
        for (int g = 0; g < kQK_K / 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += b.qs[16 * g + j];
            b.bsums[g] = static_cast<int16_t>(s);
        }
        b.d = 1.0f / iscale;
    }
}

}  // namespace ds4::quant
