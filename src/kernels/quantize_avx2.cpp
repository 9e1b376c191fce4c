// AVX2 activation quantizers: the bytes of quant::quantize_row_q8_0 and
// quant::quantize_row_q8_K, eight values per instruction. The arguments for
// equality with the scalar definition are those of quantize_avx512.cpp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.hpp"
#include "kernels/kernel_table.hpp"
#include "quant/quant.hpp"

#if !defined(__AVX2__)
#error "quantize_avx2.cpp must be compiled with -mavx2"
#endif

namespace ds4::kernels::detail {

namespace {

inline __m256 abs_ps(__m256 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }

inline int unordered(__m256 a) { return _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)); }

inline float max_lanes(__m256 a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// Round in the current mode (nearest even by default), clamp to [-127, 127].
inline __m256i round_clamped(__m256 q) {
    const __m256 lim = _mm256_set1_ps(127.0f);
    q = _mm256_min_ps(_mm256_max_ps(q, _mm256_sub_ps(_mm256_setzero_ps(), lim)), lim);
    return _mm256_cvtps_epi32(q);
}

// 32 int32 values (four vectors, in order) -> 32 int8 values, in order.
inline void store_bytes(int8_t* dst, __m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b);  // a0-3 b0-3 | a4-7 b4-7
    const __m256i cd = _mm256_packs_epi32(c, d);
    const __m256i abcd = _mm256_packs_epi16(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permutevar8x32_epi32(abcd, order));
}

inline int sum_lanes(__m256i a) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

}  // namespace

void quantize_q8_0_avx2(const float* x, quant::BlockQ8_0* y, int64_t n) {
    if (n % quant::kQK8_0 != 0) return quant::quantize_row_q8_0(x, y, n);  // throws
    for (int64_t i = 0; i < n / quant::kQK8_0; ++i) {
        const float* v = x + i * quant::kQK8_0;
        __m256 a[4];
        __m256 vmax = _mm256_setzero_ps();
        int nan = 0;
        for (int k = 0; k < 4; ++k) {
            a[k] = _mm256_loadu_ps(v + 8 * k);
            nan |= unordered(a[k]);
            vmax = _mm256_max_ps(vmax, abs_ps(a[k]));
        }
        const float amax = max_lanes(vmax);
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
        const __m256 vd = _mm256_set1_ps(d);
        store_bytes(y[i].qs, round_clamped(_mm256_div_ps(a[0], vd)), round_clamped(_mm256_div_ps(a[1], vd)),
                    round_clamped(_mm256_div_ps(a[2], vd)), round_clamped(_mm256_div_ps(a[3], vd)));
    }
}

void quantize_q8_K_avx2(const float* x, quant::BlockQ8_K* y, int64_t n) {
    if (n % quant::kQK_K != 0) return quant::quantize_row_q8_K(x, y, n);  // throws
    constexpr int kVecs = quant::kQK_K / 8;
    for (int64_t i = 0; i < n / quant::kQK_K; ++i) {
        const float* v = x + i * quant::kQK_K;
        __m256 vmax = _mm256_setzero_ps();
        int nan = 0;
        for (int k = 0; k < kVecs; ++k) {
            const __m256 a = _mm256_loadu_ps(v + 8 * k);
            nan |= unordered(a);
            vmax = _mm256_max_ps(vmax, abs_ps(a));
        }
        const float amax = max_lanes(vmax);
        if (nan || !std::isfinite(amax)) {
            quant::quantize_row_q8_K(v, y + i, quant::kQK_K);  // throws
            continue;
        }
        quant::BlockQ8_K& b = y[i];
        float iscale = 0.0f;
        if (amax != 0.0f) {
            // The first value of largest magnitude, as in the scalar loop.
            const __m256 vamax = _mm256_set1_ps(amax);
            int k = 0, hit = 0;
            for (; k < kVecs; ++k) {
                hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(v + 8 * k)), vamax, _CMP_EQ_OQ));
                if (hit) break;
            }
            iscale = hit ? -127.0f / v[8 * k + __builtin_ctz(static_cast<unsigned>(hit))] : 0.0f;  // always hit
        }
        if (!std::isfinite(iscale) || iscale == 0.0f) {
            b = {};  // d, quants and sums 0
            continue;
        }
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < kVecs; k += 4) {
            __m256i q[4];
            for (int j = 0; j < 4; ++j) q[j] = round_clamped(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * (k + j)), vs));
            b.bsums[k / 2] = static_cast<int16_t>(sum_lanes(_mm256_add_epi32(q[0], q[1])));
            b.bsums[k / 2 + 1] = static_cast<int16_t>(sum_lanes(_mm256_add_epi32(q[2], q[3])));
            store_bytes(b.qs + 8 * k, q[0], q[1], q[2], q[3]);
        }
        b.d = 1.0f / iscale;
    }
}

}  // namespace ds4::kernels::detail
