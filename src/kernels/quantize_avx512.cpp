// AVX-512 activation quantizers: the bytes of quant::quantize_row_q8_0 and
// quant::quantize_row_q8_K, sixteen values per instruction.
//
// Every step is one the scalar definition also takes, so the results are
// identical: the largest magnitude is a maximum (order-free), x / d and
// x * scale are single IEEE operations, VCVTPS2DQ rounds in the current
// rounding mode like nearbyint, and clamping to [-127, 127] before or after
// rounding to an integer gives the same value. A block with NaN or infinity
// is handed to the scalar quantizer, which throws its error.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.hpp"
#include "kernels/avx512_intrinsics.hpp"
#include "kernels/kernel_table.hpp"
#include "quant/quant.hpp"

#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "quantize_avx512.cpp must be compiled with -mavx512f -mavx512bw"
#endif

namespace ds4::kernels::detail {

namespace {

// Round in the current mode (nearest even by default), clamp to [-127, 127].
inline __m512i round_clamped(__m512 q) {
    const __m512 lim = _mm512_set1_ps(127.0f);
    q = _mm512_min_ps(_mm512_max_ps(q, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    return _mm512_cvtps_epi32(q);
}

}  // namespace

void quantize_q8_0_avx512(const float* x, quant::BlockQ8_0* y, int64_t n) {
    if (n % quant::kQK8_0 != 0) return quant::quantize_row_q8_0(x, y, n);  // throws
    for (int64_t i = 0; i < n / quant::kQK8_0; ++i) {
        const float* v = x + i * quant::kQK8_0;
        const __m512 a = _mm512_loadu_ps(v), b = _mm512_loadu_ps(v + 16);
        const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        if (nan || !std::isfinite(amax)) {
            quant::quantize_row_q8_0(v, y + i, quant::kQK8_0);  // throws
            continue;
        }
        const float d = amax / 127.0f;
        y[i].d = f32_to_f16(d);
        if (d == 0.0f) {
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            continue;
        }
        const __m512 vd = _mm512_set1_ps(d);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), _mm512_cvtepi32_epi8(round_clamped(_mm512_div_ps(a, vd))));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16),
                         _mm512_cvtepi32_epi8(round_clamped(_mm512_div_ps(b, vd))));
    }
}

void quantize_q8_K_avx512(const float* x, quant::BlockQ8_K* y, int64_t n) {
    if (n % quant::kQK_K != 0) return quant::quantize_row_q8_K(x, y, n);  // throws
    constexpr int kVecs = quant::kQK_K / 16;  // one vector per 16-value sum
    for (int64_t i = 0; i < n / quant::kQK_K; ++i) {
        const float* v = x + i * quant::kQK_K;
        __m512 vmax = _mm512_setzero_ps();
        __mmask16 nan = 0;
        for (int k = 0; k < kVecs; ++k) {
            const __m512 a = _mm512_loadu_ps(v + 16 * k);
            nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(a));
        }
        const float amax = _mm512_reduce_max_ps(vmax);
        if (nan || !std::isfinite(amax)) {
            quant::quantize_row_q8_K(v, y + i, quant::kQK_K);  // throws
            continue;
        }
        quant::BlockQ8_K& b = y[i];
        float iscale = 0.0f;
        if (amax != 0.0f) {
            // The signed value of largest magnitude: its first occurrence, as
            // the scalar loop (which replaces the maximum only when exceeded).
            const __m512 vamax = _mm512_set1_ps(amax);
            int k = 0;
            __mmask16 hit = 0;
            for (; k < kVecs; ++k) {
                hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(v + 16 * k)), vamax, _CMP_EQ_OQ);
                if (hit) break;
            }
            iscale = hit ? -127.0f / v[16 * k + __builtin_ctz(hit)] : 0.0f;  // always hit: amax is some |v|
        }
        if (!std::isfinite(iscale) || iscale == 0.0f) {
            b = {};  // d, quants and sums 0
            continue;
        }
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int k = 0; k < kVecs; ++k) {
            const __m512i q = round_clamped(_mm512_mul_ps(_mm512_loadu_ps(v + 16 * k), vs));
            b.bsums[k] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(b.qs + 16 * k), _mm512_cvtepi32_epi8(q));
        }
        b.d = 1.0f / iscale;
    }
}

}  // namespace ds4::kernels::detail
