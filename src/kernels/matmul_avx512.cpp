// AVX-512 kernels (F, BW, VL, DQ and VNNI). 512-bit registers take two Q8_0
// blocks, or 64 bytes of a K-quant super-block, per step; VNNI's
// unsigned x signed byte dot product (vpdpbusd) accumulates straight into
// 32-bit lanes. The order of operations of each (row, token) dot product is
// fixed, so results do not depend on the batch or the row range.
#include <immintrin.h>

#include <cstring>

#include "core/half.hpp"
#include "kernels/kernel_table.hpp"
#include "kernels/simd_common.hpp"
#include "quant/blocks.hpp"

namespace ds4::kernels::detail {

namespace {

using namespace ds4::quant;

// Sum of products of signed bytes a and b per 32-bit lane, added to acc:
// |a| as unsigned times b with a's sign.
inline __m512i dpbssd(__m512i acc, __m512i a, __m512i b) {
    const __m512i ax = _mm512_abs_epi8(a);
    const __mmask64 neg = _mm512_movepi8_mask(a);
    const __m512i sb = _mm512_mask_sub_epi8(b, neg, _mm512_setzero_si512(), b);
    return _mm512_dpbusd_epi32(acc, ax, sb);
}

inline __m256i dpbssd256(__m256i acc, __m256i a, __m256i b) {
    return _mm256_dpbusd_epi32(acc, _mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// ---- float weights -------------------------------------------------------------

template <class Load>
inline float dot_float(Load load, const float* w_tail_unused, const float* x, int64_t n) {
    (void)w_tail_unused;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(load(i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load(i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load(i), _mm512_loadu_ps(x + i), a0);
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

float dot_f32(const float* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{15};
    float s = dot_float([w](int64_t i) { return _mm512_loadu_ps(w + i); }, w, x, full);
    for (int64_t i = full; i < n; ++i) s += w[i] * x[i];
    return s;
}

float dot_f16(const uint16_t* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{15};
    float s = dot_float(
        [w](int64_t i) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i))); }, nullptr,
        x, full);
    for (int64_t i = full; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
    return s;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{15};
    float s = dot_float(
        [w](int64_t i) {
            const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
            return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        },
        nullptr, x, full);
    for (int64_t i = full; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

// ---- quantized weights ---------------------------------------------------------

// Two blocks per step: lanes 0-7 hold block i, lanes 8-15 block i+1.
float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i qw = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i + 1].qs)), 1);
        const __m512i qx = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i + 1].qs)), 1);
        const __m512i p = dpbssd(_mm512_setzero_si512(), qw, qx);
        const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(f16_to_f32(w[i].d) * f16_to_f32(x[i].d)),
                                            _mm256_set1_ps(f16_to_f32(w[i + 1].d) * f16_to_f32(x[i + 1].d)), 1);
        acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    if (i < nb) {
        const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
        const __m256i p = dpbssd256(_mm256_setzero_si256(), qw, qx);
        const __m512 pp = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(p));
        // Lanes 0-7 get the last block; lanes 8-15 keep their sums.
        acc = _mm512_mask3_fmadd_ps(pp, _mm512_set1_ps(f16_to_f32(w[i].d) * f16_to_f32(x[i].d)), acc, 0x00FF);
    }
    return _mm512_reduce_add_ps(acc);
}

float dot_q2_K(const BlockQ2_K* w, const BlockQ8_K* x, int64_t nb) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    float mins_total = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t mins = 0;
        for (int g = 0; g < 16; ++g) mins += static_cast<int32_t>(w[i].scales[g] >> 4) * x[i].bsums[g];
        // 64 quant bytes; pass p of half h covers values 128h + 32p .. +31.
        const __m512i bits = _mm512_loadu_si512(w[i].qs);
        __m512i sumi = _mm512_setzero_si512();
        for (int pass = 0; pass < 4; ++pass) {
            // Bytes 0-31: half 0, bytes 32-63: half 1 (each 32 values of this pass).
            const __m512i q2 = _mm512_and_si512(_mm512_srli_epi16(bits, 2 * pass), m3);
            const __m512i qx = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * pass))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 128 + 32 * pass)), 1);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q2, qx);  // 16 lanes of 4 values
            // Lanes 0-3: scale 2p, 4-7: 2p+1 (half 0); 8-11: 8+2p, 12-15: 9+2p (half 1).
            const int32_t s0 = w[i].scales[2 * pass] & 15, s1 = w[i].scales[2 * pass + 1] & 15;
            const int32_t s2 = w[i].scales[8 + 2 * pass] & 15, s3 = w[i].scales[9 + 2 * pass] & 15;
            const __m512i sc = _mm512_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1, s2, s2, s2, s2, s3, s3, s3, s3);
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p, sc));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(x[i].d * f16_to_f32(w[i].d)), _mm512_cvtepi32_ps(sumi), acc);
        mins_total += x[i].d * f16_to_f32(w[i].dmin) * static_cast<float>(mins);
    }
    return _mm512_reduce_add_ps(acc) - mins_total;
}

float dot_q4_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc = _mm512_setzero_ps();
    float mins_total = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; ++j) q4_K_scale_min(j, w[i].scales, &sc[j], &mn[j]);
        int32_t mins = 0;
        for (int j = 0; j < 8; ++j) mins += mn[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        __m512i sumi = _mm512_setzero_si512();
        for (int c = 0; c < 4; c += 2) {
            // 64 bytes = chunks c and c+1: low nibbles are sub-blocks 2c, 2c+2; high nibbles 2c+1, 2c+3.
            const __m512i bits = _mm512_loadu_si512(w[i].qs + 32 * c);
            const __m512i lo = _mm512_and_si512(bits, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bits, 4), m4);
            const __m512i xlo = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c + 64)), 1);
            const __m512i xhi = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c + 32))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c + 96)), 1);
            const __m512i plo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo);
            const __m512i phi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xhi);
            const int32_t a = sc[2 * c], b = sc[2 * c + 2], e = sc[2 * c + 1], f = sc[2 * c + 3];
            const __m512i slo = _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
            const __m512i shi = _mm512_setr_epi32(e, e, e, e, e, e, e, e, f, f, f, f, f, f, f, f);
            sumi = _mm512_add_epi32(sumi, _mm512_add_epi32(_mm512_mullo_epi32(plo, slo), _mm512_mullo_epi32(phi, shi)));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(x[i].d * f16_to_f32(w[i].d)), _mm512_cvtepi32_ps(sumi), acc);
        mins_total += x[i].d * f16_to_f32(w[i].dmin) * static_cast<float>(mins);
    }
    return _mm512_reduce_add_ps(acc) - mins_total;
}

float dot_iq2_xxs(const BlockIQ2_XXS* w, const BlockQ8_K* x, int64_t nb) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        __m512i sumi = _mm512_setzero_si512();
        for (int sb = 0; sb < 8; sb += 2) {
            uint32_t a0, a1, b0, b1;
            std::memcpy(&a0, &w[i].qs[4 * sb], 4);
            std::memcpy(&a1, &w[i].qs[4 * sb + 2], 4);
            std::memcpy(&b0, &w[i].qs[4 * sb + 4], 4);
            std::memcpy(&b1, &w[i].qs[4 * sb + 6], 4);
            auto g = [](uint32_t a, int l) { return static_cast<long long>(kIq2xxsGrid[(a >> (8 * l)) & 255]); };
            auto m = [](uint32_t a, int l) { return static_cast<long long>(kIq2SignMask[(a >> (7 * l)) & 127]); };
            const __m512i grid = _mm512_setr_epi64(g(a0, 0), g(a0, 1), g(a0, 2), g(a0, 3), g(b0, 0), g(b0, 1), g(b0, 2), g(b0, 3));
            const __m512i neg = _mm512_setr_epi64(m(a1, 0), m(a1, 1), m(a1, 2), m(a1, 3), m(b1, 0), m(b1, 1), m(b1, 2), m(b1, 3));
            __m512i qx = _mm512_loadu_si512(x[i].qs + 32 * sb);
            qx = _mm512_sub_epi8(_mm512_xor_si512(qx, neg), neg);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), grid, qx);
            const int32_t la = static_cast<int32_t>(2 * (a1 >> 28) + 1), lb = static_cast<int32_t>(2 * (b1 >> 28) + 1);
            const __m512i ls = _mm512_setr_epi32(la, la, la, la, la, la, la, la, lb, lb, lb, lb, lb, lb, lb, lb);
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(p, ls));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(0.125f * f16_to_f32(w[i].d) * x[i].d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

template <class W, class A, float (*Dot)(const W*, const A*, int64_t), int kBlock>
void rows_kernel(const Matrix& M, const Activations& x, float* y, int64_t stride, int64_t r0, int64_t r1) {
    const int64_t nb = M.cols / kBlock;
    const auto* base = static_cast<const uint8_t*>(M.data);
    for (int64_t r = r0; r < r1; ++r) {
        const W* w = reinterpret_cast<const W*>(base + static_cast<size_t>(r) * M.row_bytes);
        for (int64_t t = 0; t < x.n_tok(); ++t) y[t * stride + r] = Dot(w, reinterpret_cast<const A*>(x.row(t)), nb);
    }
}

}  // namespace

const KernelTable& avx512_kernels() {
    static const KernelTable t = [] {
        KernelTable k;
        k.f32 = rows_kernel<float, float, dot_f32, 1>;
        k.f16 = rows_kernel<uint16_t, float, dot_f16, 1>;
        k.bf16 = rows_kernel<uint16_t, float, dot_bf16, 1>;
        k.q8_0 = rows_kernel<BlockQ8_0, BlockQ8_0, dot_q8_0, kQK8_0>;
        k.q2_K = rows_kernel<BlockQ2_K, BlockQ8_K, dot_q2_K, kQK_K>;
        k.q4_K = rows_kernel<BlockQ4_K, BlockQ8_K, dot_q4_K, kQK_K>;
        k.iq2_xxs = rows_kernel<BlockIQ2_XXS, BlockQ8_K, dot_iq2_xxs, kQK_K>;
        return k;
    }();
    return t;
}

}  // namespace ds4::kernels::detail
