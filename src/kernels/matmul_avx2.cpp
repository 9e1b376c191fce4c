// AVX2 + FMA kernels. Each (row, token) dot product has one fixed order of
// operations, so results do not depend on the batch or the row range. For a
// batch, each weight row is read from memory once and reused from L1 for
// every token.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/half.hpp"
#include "kernels/kernel_table.hpp"
#include "kernels/simd_common.hpp"
#include "quant/blocks.hpp"
#include "quant/iq2xxs_tables.hpp"

namespace ds4::kernels::detail {

namespace {

using namespace ds4::quant;

inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// Sum of the products of 32 signed bytes: 8 int32 lanes.
inline __m256i dot_i8(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a);
    const __m256i sb = _mm256_sign_epi8(b, a);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), _mm256_set1_epi16(1));
}

// ---- float weights -------------------------------------------------------------

template <class Load>
inline float dot_float(Load load, const float* x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load(i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load(i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load(i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    if (i < n) {
        alignas(32) float w[8];
        _mm256_store_ps(w, load(i));  // the loader reads whole vectors only within bounds (see callers)
        for (int64_t j = 0; i + j < n; ++j) s += w[j] * x[i + j];
    }
    return s;
}

float dot_f32(const float* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{7};
    float s = dot_float([w](int64_t i) { return _mm256_loadu_ps(w + i); }, x, full);
    for (int64_t i = full; i < n; ++i) s += w[i] * x[i];
    return s;
}

float dot_f16(const uint16_t* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{7};
    float s = dot_float(
        [w](int64_t i) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))); }, x, full);
    for (int64_t i = full; i < n; ++i) s += half_to_float(w[i]) * x[i];
    return s;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
    const int64_t full = n & ~int64_t{7};
    float s = dot_float(
        [w](int64_t i) {
            const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
            return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        },
        x, full);
    for (int64_t i = full; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

// ---- quantized weights ---------------------------------------------------------

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs));
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
        const __m256 p = _mm256_cvtepi32_ps(dot_i8(qw, qx));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[i].d) * half_to_float(x[i].d)), p, acc);
    }
    return hsum(acc);
}

// PSHUFB control that spreads scale byte a over the eight 16-bit lanes of the
// low 128-bit half and byte b over those of the high half.
inline __m256i scale_pair_ctrl(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(0x8000 | b)), _mm_set1_epi16(static_cast<short>(0x8000 | a)));
}

// Q2_K: the 16 4-bit scales are widened to 16-bit lanes with one PSHUFB per
// 32 values; the minimums are one VPMADDWD of the 4-bit mins with the
// activation's 16-value sums, accumulated in a second float vector.
float dot_q2_K(const BlockQ2_K* w, const BlockQ8_K* x, int64_t nb) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i msum = _mm256_madd_epi16(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].bsums)));
        const __m256i scales = _mm256_broadcastsi128_si256(_mm_and_si128(sc, m4));
        __m256i sumi = _mm256_setzero_si256();
        const int8_t* q8 = x[i].qs;
        for (int half = 0; half < 2; ++half) {
            const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * half));
            for (int pass = 0; pass < 4; ++pass) {
                const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * pass), m3);
                const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8));
                q8 += 32;
                const __m256i p16 = _mm256_maddubs_epi16(q2, qx);
                const int g = 8 * half + 2 * pass;
                const __m256i s16 = _mm256_shuffle_epi8(scales, scale_pair_ctrl(g, g + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, s16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * half_to_float(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * half_to_float(w[i].dmin)), _mm256_cvtepi32_ps(msum), acc_min);
    }
    return hsum(acc) - hsum(acc_min);
}

// Q4_K: scales and mins unpacked for the whole block at once; the minimums
// as for Q2_K (each 6-bit min covers two 16-value sums).
float dot_q4_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
        uint64_t scales, mins;
        q4_K_scales_mins(w[i].scales, &scales, &mins);
        const __m128i mv = _mm_cvtsi64_si128(static_cast<long long>(mins));
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv));
        const __m256i msum = _mm256_madd_epi16(mins16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].bsums)));
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const auto sc0 = static_cast<short>((scales >> (16 * c)) & 0xff);
            const auto sc1 = static_cast<short>((scales >> (16 * c + 8)) & 0xff);
            const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(bits, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * c + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc0));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * half_to_float(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * half_to_float(w[i].dmin)), _mm256_cvtepi32_ps(msum), acc_min);
    }
    return hsum(acc) - hsum(acc_min);
}

// IQ2_XXS with the activations in their grouped order
// (Activations::q8_K_grouped_row): 32-byte half h of piece j holds group j of
// sub-blocks 4h..4h+3, 8 values each. The four grid rows of such a register
// come from the 256-entry table; the 32 sign bytes of a super-block are
// computed in one register (7 bits per group, parity into bit 7) and each
// register's signs are spread from it with one PSHUFB. Products are summed per
// sub-block over the four pieces and scaled by 2 * scale + 1 once per
// super-block.
struct IQ2GroupedConsts {
    __m256i spread[2][4];  // PSHUFB: half h, piece j -> sign byte of (s, j) into the 8 bytes of s
    __m256i bit;           // byte e of every 8: 1 << e
    IQ2GroupedConsts() {
        alignas(32) uint8_t b[32];
        for (int h = 0; h < 2; ++h)
            for (int j = 0; j < 4; ++j) {
                // Sign words sit as [s0, s1, s4, s5 | s2, s3, s6, s7]: the
                // register of half h needs u32 2h, 2h + 1 of each 128-bit lane.
                for (int n = 0; n < 32; ++n) b[n] = static_cast<uint8_t>(4 * (2 * h + (n % 16) / 8) + j);
                spread[h][j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
            }
        for (int n = 0; n < 32; ++n) b[n] = static_cast<uint8_t>(1u << (n % 8));
        bit = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    }
};

// The sign bytes of all 32 groups of a super-block, u32 lanes as
// [s0, s1, s4, s5 | s2, s3, s6, s7] (byte k of a lane: group k).
inline __m256i iq2_sign_bytes(__m256i lo, __m256i hi) {
    // lo = u32 [i0, s0, i1, s1, i2, s2, i3, s3], hi the same for s4..s7.
    const __m256i a = _mm256_permutevar8x32_epi32(lo, _mm256_setr_epi32(1, 3, 0, 0, 5, 7, 0, 0));
    const __m256i b = _mm256_permutevar8x32_epi32(hi, _mm256_setr_epi32(0, 0, 1, 3, 0, 0, 5, 7));
    const __m256i v = _mm256_blend_epi32(a, b, 0xcc);
    const __m256i m7 = _mm256_set1_epi32(0x7f);
    __m256i e = _mm256_and_si256(v, m7);
    e = _mm256_or_si256(e, _mm256_and_si256(_mm256_slli_epi32(v, 1), _mm256_slli_epi32(m7, 8)));
    e = _mm256_or_si256(e, _mm256_and_si256(_mm256_slli_epi32(v, 2), _mm256_slli_epi32(m7, 16)));
    e = _mm256_or_si256(e, _mm256_and_si256(_mm256_slli_epi32(v, 3), _mm256_slli_epi32(m7, 24)));
    __m256i par = _mm256_xor_si256(e, _mm256_srli_epi32(e, 4));
    par = _mm256_xor_si256(par, _mm256_srli_epi32(par, 2));
    par = _mm256_xor_si256(par, _mm256_srli_epi32(par, 1));
    return _mm256_or_si256(e, _mm256_slli_epi32(_mm256_and_si256(par, _mm256_set1_epi32(0x01010101)), 7));
}

// 2 * scale + 1 of sub-block 4h + m in u32 lanes 2m, 2m + 1 (the scale is
// bits 28..31 of the odd u32 lanes).
inline __m256i iq2_scales(__m256i q) {
    const __m256i odd = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(q, 27), _mm256_set1_epi32(0x1e)),
                                        _mm256_set1_epi32(1));
    return _mm256_shuffle_epi32(odd, 0xf5);
}

// Kept out of line: inlined into the row loop it runs 2-3% slower (the
// loop's state competes for the 16 vector registers).
__attribute__((noinline)) float dot_iq2_xxs_grouped(const IQ2GroupedConsts& c, const BlockIQ2_XXS* w,
                                                    const int8_t* xg, const float* xd, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    // The sign bytes are a chain of some twenty dependent instructions that
    // every product of a super-block waits for: they are computed one
    // super-block ahead.
    __m256i next_signs = iq2_sign_bytes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[0].qs)),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[0].qs + 16)));
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* q = reinterpret_cast<const uint8_t*>(w[i].qs);
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
        const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
        const __m256i signs = next_signs;
        if (i + 1 < nb)
            next_signs = iq2_sign_bytes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i + 1].qs)),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i + 1].qs + 16)));
        const int8_t* x = xg + i * kQK_K;
        __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int j = 0; j < 4; ++j) {
            for (int h = 0; h < 2; ++h) {
                const uint8_t* idx = q + 32 * h + j;  // index byte j of sub-blocks 4h..4h+3
                const __m256i grid = _mm256_setr_epi64x(
                    static_cast<long long>(kIq2xxsGrid[idx[0]]), static_cast<long long>(kIq2xxsGrid[idx[8]]),
                    static_cast<long long>(kIq2xxsGrid[idx[16]]), static_cast<long long>(kIq2xxsGrid[idx[24]]));
                const __m256i spread = _mm256_shuffle_epi8(signs, c.spread[h][j]);
                const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(spread, c.bit), c.bit);
                const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * j + 32 * h));
                const __m256i xs = _mm256_sub_epi8(_mm256_xor_si256(xq, neg), neg);  // negate where the sign is set
                sum[h] = _mm256_add_epi32(sum[h], _mm256_madd_epi16(_mm256_maddubs_epi16(grid, xs), ones));
            }
        }
        const __m256i isum = _mm256_add_epi32(_mm256_mullo_epi32(sum[0], iq2_scales(lo)),
                                              _mm256_mullo_epi32(sum[1], iq2_scales(hi)));
        float dx;
        std::memcpy(&dx, xd + i, sizeof dx);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(0.125f * half_to_float(w[i].d) * dx), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum(acc);
}

// Rows [r0, r1) of M, each against every token: y[t * stride + r] =
// dot(row r as W blocks, t). The next row's start is prefetched.
template <class W, class RowDot>
void for_each_row(const Matrix& M, const Activations& x, float* y, int64_t stride, int64_t r0, int64_t r1,
                  RowDot dot) {
    const auto* base = static_cast<const uint8_t*>(M.data);
    for (int64_t r = r0; r < r1; ++r) {
        const W* w = reinterpret_cast<const W*>(base + static_cast<size_t>(r) * M.row_bytes);
        if (r + 1 < r1) _mm_prefetch(reinterpret_cast<const char*>(base + static_cast<size_t>(r + 1) * M.row_bytes), _MM_HINT_T0);
        for (int64_t t = 0; t < x.n_tok(); ++t) y[t * stride + r] = dot(w, t);
    }
}

template <class W, class A, float (*Dot)(const W*, const A*, int64_t), int kBlock>
void rows_kernel(const Matrix& M, const Activations& x, float* y, int64_t stride, int64_t r0, int64_t r1) {
    const int64_t nb = M.cols / kBlock;
    for_each_row<W>(M, x, y, stride, r0, r1,
                    [&](const W* w, int64_t t) { return Dot(w, reinterpret_cast<const A*>(x.row(t)), nb); });
}

void iq2_xxs_rows(const Matrix& M, const Activations& x, float* y, int64_t stride, int64_t r0, int64_t r1) {
    const int64_t nb = M.cols / kQK_K;
    const IQ2GroupedConsts c;
    for_each_row<BlockIQ2_XXS>(M, x, y, stride, r0, r1, [&](const BlockIQ2_XXS* w, int64_t t) {
        return dot_iq2_xxs_grouped(c, w, x.q8_K_grouped_row(t), x.q8_K_grouped_scales(t), nb);
    });
}

// Weighted sum of F16 rows: NS sets x NV vectors of 8 columns in registers,
// the rows streamed once per block of sets; a column tail below 8 is scalar
// (same order over r).
template <int NS, int NV>
void weighted_block(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, float* out, int64_t os,
                    int64_t c) {
    __m256 acc[NS][NV];
    for (int s = 0; s < NS; ++s)
        for (int v = 0; v < NV; ++v) acc[s][v] = _mm256_setzero_ps();
    for (int64_t r = 0; r < n_rows; ++r) {
        __m256 w[NV];
        for (int v = 0; v < NV; ++v)
            w[v] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(W + r * ws + c + 8 * v)));
        for (int s = 0; s < NS; ++s) {
            const __m256 b = _mm256_set1_ps(p[s * ps + r]);
            for (int v = 0; v < NV; ++v) acc[s][v] = _mm256_fmadd_ps(b, w[v], acc[s][v]);
        }
    }
    for (int s = 0; s < NS; ++s)
        for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + s * os + c + 8 * v, acc[s][v]);
}

template <int NS>
void weighted_sets(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, float* out, int64_t os,
                   int64_t cb, int64_t ce) {
    int64_t c = cb;
    for (; c + 32 <= ce; c += 32) weighted_block<NS, 4>(W, ws, n_rows, p, ps, out, os, c);
    for (; c + 8 <= ce; c += 8) weighted_block<NS, 1>(W, ws, n_rows, p, ps, out, os, c);
    for (; c < ce; ++c)
        for (int s = 0; s < NS; ++s) {
            float a = 0.0f;
            for (int64_t r = 0; r < n_rows; ++r) a = std::fma(p[s * ps + r], f16_to_f32(W[r * ws + c]), a);
            out[s * os + c] = a;
        }
}

void weighted_rows_f16(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, int64_t n_sets,
                       float* out, int64_t os, int64_t cb, int64_t ce) {
    int64_t s = 0;
    for (; s + 2 <= n_sets; s += 2) weighted_sets<2>(W, ws, n_rows, p + s * ps, ps, out + s * os, os, cb, ce);
    if (s < n_sets) weighted_sets<1>(W, ws, n_rows, p + s * ps, ps, out + s * os, os, cb, ce);
}

}  // namespace

const KernelTable& avx2_kernels() {
    static const KernelTable t = [] {
        KernelTable k;
        k.f32 = rows_kernel<float, float, dot_f32, 1>;
        k.f16 = rows_kernel<uint16_t, float, dot_f16, 1>;
        k.bf16 = rows_kernel<uint16_t, float, dot_bf16, 1>;
        k.q8_0 = rows_kernel<BlockQ8_0, BlockQ8_0, dot_q8_0, kQK8_0>;
        k.q2_K = rows_kernel<BlockQ2_K, BlockQ8_K, dot_q2_K, kQK_K>;
        k.q4_K = rows_kernel<BlockQ4_K, BlockQ8_K, dot_q4_K, kQK_K>;
        k.iq2_xxs = iq2_xxs_rows;
        k.weighted_rows_f16 = weighted_rows_f16;
        k.quantize_q8_0 = quantize_q8_0_avx2;
        k.quantize_q8_K = quantize_q8_K_avx2;
        return k;
    }();
    return t;
}

}  // namespace ds4::kernels::detail
