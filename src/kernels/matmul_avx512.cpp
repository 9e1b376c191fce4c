// AVX-512 matrix kernels (F, BW, VL, DQ and VNNI; the build compiles this file
// with those flags and dispatch selects it only on CPUs that have all five).
//
// Shape of every kernel: a tile of NR weight rows x NT tokens. Each weight
// vector is loaded and decoded once per tile and used for all NT tokens; each
// activation vector is loaded once per tile and used for all NR rows. Decode
// (one token) uses tall tiles (several rows streamed at once, several
// independent dependency chains); batches use tiles of up to 4 or 8 tokens, with
// the row loop outside the token loop so that a row is read from memory once
// and re-read from L1 for every further token tile.
//
// Batch invariance: for one (row, token) pair every tile shape runs the same
// sequence of arithmetic. Integer parts are exact; the float parts (one
// 16-lane accumulator per pair, updated with explicit FMAs in column order,
// then one fixed horizontal reduction) depend on neither NR, NT nor the
// position of the pair in the tile.
//
// Integer dot products (see docs/performance.md for the per-type details):
//  Q8_0    |w| x (x with the sign of w), VPDPBUSD; two blocks per register,
//          per-block scale d_w * d_x applied lane-wise in float.
//  Q2_K    2-bit quants multiplied by their 4-bit scale in 16-bit lanes (the
//          product fits a byte), then VPDPBUSD with the Q8_K quants; the
//          minimums use the activation's 16-value sums (VPMADDWD).
//  Q4_K    4-bit quants: VPMADDUBSW with the Q8_K quants, then VPDPWSSD with
//          the 6-bit scales; minimums as for Q2_K.
//  IQ2_XXS codewords gathered from the 256-entry grid (VPGATHERDQ), signs
//          expanded to a 64-bit mask and applied to the activations (masked
//          subtract), VPMADDUBSW, then VPDPWSSD with 2*scale+1.
//  F32/F16/BF16 widened to f32 (VCVTPH2PS, shift for BF16) and FMA.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/avx512_intrinsics.hpp"
#include "kernels/kernel_table.hpp"
#include "kernels/simd_common.hpp"
#include "quant/blocks.hpp"
#include "quant/iq2xxs_tables.hpp"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__) || \
    !defined(__AVX512VNNI__)
#error "matmul_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni"
#endif

namespace ds4::kernels::detail {

namespace {

using quant::BlockIQ2_XXS;
using quant::BlockQ2_K;
using quant::BlockQ4_K;
using quant::BlockQ8_0;
using quant::BlockQ8_K;
using quant::kQK8_0;
using quant::kQK_K;

template <class T>
inline T load_scalar(const void* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

inline __m512i loadu512(const void* p) { return _mm512_loadu_si512(p); }

// Two 32-byte halves from unrelated addresses.
inline __m512i load_2x256(const void* lo, const void* hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(lo))),
                              _mm256_loadu_si256(static_cast<const __m256i*>(hi)), 1);
}

// Where the result of (tile row r, tile token t) goes.
struct Out {
    float* y;
    int64_t stride;
    int64_t r0, t0;
    void put(int r, int t, float v) const { y[(t0 + t) * stride + r0 + r] = v; }
};

// Software prefetch of the weight rows. With several vector operations per
// weight byte the core keeps too few cache misses in flight for the hardware
// prefetcher alone to reach the memory bandwidth, so the kernels ask for
// their bytes ahead of time, in one of two ways:
//  - short tiles (NR rows of at most kLinearTileBytes in all, the routed
//    experts and narrow projections): the rows of a thread are one contiguous
//    range, and the tile after this one is prefetched at the pace this one is
//    read (block i of this tile's rows -> block i of the next tile's rows),
//    plus kLinearExtra bytes: one linear stream a little more than a tile
//    ahead of the loads;
//  - long rows (a tile ahead would no longer fit in L1): each row prefetches
//    a fixed distance Ahead further along itself.
// Measured in bench/matvec on the routed-expert shapes, one thread: Q2_K
// 15 -> 19 GB/s and Q4_K 20 -> 26 GB/s from the per-row scheme to the linear
// one; the wide F32/F16/Q8_0 rows stay faster with the per-row scheme.
constexpr int64_t kLinearTileBytes = 8192;
constexpr int64_t kLinearExtra = 3072;

__attribute__((always_inline)) inline void prefetch_lines(const uint8_t* p, int bytes) {
    for (int i = 0; i < bytes; i += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + i, _MM_HINT_T0);
}

// Pointers for one tile.
template <int NR, int NT>
struct TilePtrs {
    const uint8_t* w[NR];
    const uint8_t* x[NT];
    const int8_t* xg[NT];           // Q8_K activations: their quants in grouped order
    const float* xd[NT];            // and the scales of those grouped rows
    const uint8_t* next = nullptr;  // the next tile's first row, when the linear scheme applies

    // Prefetch for the point where every row of the tile has been read up to
    // byte `offset`, `bytes` bytes per row being read next.
    template <int Ahead>
    __attribute__((always_inline)) void prefetch(int64_t offset, int bytes) const {
        if (next != nullptr) {
            prefetch_lines(next + NR * offset + kLinearExtra, NR * bytes);
        } else {
            for (int r = 0; r < NR; ++r) prefetch_lines(w[r] + offset + Ahead, bytes);
        }
    }
};

// ---------------------------------------------------------------------------
// Tile drivers.
//
// A kernel K provides `template <int NR, int NT> static void tile(const
// TilePtrs<NR, NT>&, int64_t cols, const Out&)` and the tile sizes it wants:
// K::kDecodeRows (rows per tile for one token), K::kBatchRows and
// K::kBatchToks (rows and tokens per tile for batches).

template <class K, int NR, int NT>
inline void run_tile(const Matrix& W, const Activations& x, int64_t r0, int64_t t0, const Out& o) {
    TilePtrs<NR, NT> p;
    for (int r = 0; r < NR; ++r) p.w[r] = static_cast<const uint8_t*>(W.data) + (r0 + r) * W.row_bytes;
    for (int t = 0; t < NT; ++t) p.x[t] = x.row(t0 + t);
    for (int t = 0; t < NT; ++t) {
        const bool grouped = x.type() == DType::Q8_K;
        p.xg[t] = grouped ? x.q8_K_grouped_row(t0 + t) : nullptr;
        p.xd[t] = grouped ? x.q8_K_grouped_scales(t0 + t) : nullptr;
    }
    if (NR * static_cast<int64_t>(W.row_bytes) <= kLinearTileBytes)
        p.next = static_cast<const uint8_t*>(W.data) + (r0 + NR) * W.row_bytes;
    Out oo = o;
    oo.r0 = r0;
    oo.t0 = t0;
    K::template tile<NR, NT>(p, W.cols, oo);
}

// Token tile of runtime size n (1..NT) on rows r0..r0+NR.
template <class K, int NR, int NT>
inline void run_tokens(const Matrix& W, const Activations& x, int64_t r0, int64_t t0, int n, const Out& o) {
    if constexpr (NT > 1) {
        if (n < NT) return run_tokens<K, NR, NT - 1>(W, x, r0, t0, n, o);
    }
    run_tile<K, NR, NT>(W, x, r0, t0, o);
}

template <class K, int NR>
inline void run_rows_batch(const Matrix& W, const Activations& x, int64_t r0, const Out& o) {
    constexpr int NT = K::kBatchToks;
    const int64_t n = x.n_tok();
    int64_t t = 0;
    for (; t + NT <= n; t += NT) run_tile<K, NR, NT>(W, x, r0, t, o);
    if (t < n) run_tokens<K, NR, NT>(W, x, r0, t, static_cast<int>(n - t), o);
}

template <class K>
void run(const Matrix& W, const Activations& x, float* y, int64_t y_stride, int64_t row_begin, int64_t row_end) {
    const Out o{y, y_stride, 0, 0};
    int64_t r = row_begin;
    if (x.n_tok() == 1) {
        constexpr int NR = K::kDecodeRows;
        for (; r + NR <= row_end; r += NR) run_tile<K, NR, 1>(W, x, r, 0, o);
        for (; r < row_end; ++r) run_tile<K, 1, 1>(W, x, r, 0, o);
        return;
    }
    constexpr int NR = K::kBatchRows;
    for (; r + NR <= row_end; r += NR) run_rows_batch<K, NR>(W, x, r, o);
    for (; r < row_end; ++r) run_rows_batch<K, 1>(W, x, r, o);
}

// ---------------------------------------------------------------------------
// F32 / F16 / BF16 weights with f32 activations.

struct LoadF32 {
    static constexpr int kBytes = 4;
    static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(p); }
    static __m512 load_masked(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    static __m512 load(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
    static __m512 load_masked(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
    static __m512 load(const uint8_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
    static __m512 load_masked(const uint8_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};

// One accumulator per (row, token); element c goes to lane c % 16.
template <class L>
struct FloatKernel {
    static constexpr int kDecodeRows = 4;
    static constexpr int kBatchRows = 4;
    static constexpr int kBatchToks = 4;

    template <int NR, int NT>
    static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        __m512 acc[NR][NT];
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            __m512 xv[NT];
            for (int t = 0; t < NT; ++t) xv[t] = _mm512_loadu_ps(p.x[t] + c * 4);
            if (L::kBytes == 4 || (c & 16) == 0) p.template prefetch<2048>(c * L::kBytes, 64);
            for (int r = 0; r < NR; ++r) {
                const __m512 w = L::load(p.w[r] + c * L::kBytes);
                for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
            }
        }
        if (c < cols) {
            const __mmask16 m = static_cast<__mmask16>((1u << (cols - c)) - 1);
            __m512 xv[NT];
            for (int t = 0; t < NT; ++t) xv[t] = _mm512_maskz_loadu_ps(m, p.x[t] + c * 4);
            for (int r = 0; r < NR; ++r) {
                const __m512 w = L::load_masked(p.w[r] + c * L::kBytes, m);
                for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
            }
        }
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) o.put(r, t, _mm512_reduce_add_ps(acc[r][t]));
    }
};

// ---------------------------------------------------------------------------
// Q8_0 weights with Q8_0 activations.
//
// Blocks are taken in groups of up to 8; their f16 scales are gathered into
// one vector, converted, and multiplied (weight x activation) once per group.
// A register holds two blocks: lanes 0..7 the even block, lanes 8..15 the odd
// one; the i32 block partials are converted to float and scaled lane-wise.

inline __m256 q8_0_scales(const BlockQ8_0* b, int n) {
    if (n == 8) {
        const __m128i h = _mm_setr_epi16(static_cast<short>(b[0].d), static_cast<short>(b[1].d),
                                         static_cast<short>(b[2].d), static_cast<short>(b[3].d),
                                         static_cast<short>(b[4].d), static_cast<short>(b[5].d),
                                         static_cast<short>(b[6].d), static_cast<short>(b[7].d));
        return _mm256_cvtph_ps(h);
    }
    alignas(16) uint16_t tmp[8] = {};
    for (int k = 0; k < n; ++k) tmp[k] = load_scalar<uint16_t>(&b[k].d);
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
}

// Quants of blocks k and k+1 (or k alone, upper half zero, when `pair` is false).
inline __m512i q8_0_pair(const BlockQ8_0* b, bool pair) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    if (!pair) return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
}

struct Q8_0Kernel {
    static constexpr int kDecodeRows = 4;
    static constexpr int kBatchRows = 4;
    static constexpr int kBatchToks = 4;

    // Blocks [k0, k0 + n) of every row and token, n <= 8.
    //
    // Signed x signed bytes through VPDPBUSD (unsigned x signed): the
    // activations are biased by 128 (x ^ 0x80 = x + 128 as unsigned) and the
    // accumulator starts at -128 * sum(w), so it ends at sum(x * w) exactly.
    // The bias is applied once per token and the correction once per row.
    template <int NR, int NT, int N>
    static inline void group(const BlockQ8_0* const* w, const BlockQ8_0* const* x, int64_t k0, int n,
                             __m512 (&acc)[NR][NT]) {
        const int cnt = N ? N : n;
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
        __m256 xs[NT];
        for (int t = 0; t < NT; ++t) xs[t] = q8_0_scales(x[t] + k0, cnt);
        __m512 s[NR][NT];
        for (int r = 0; r < NR; ++r) {
            const __m256 ws = q8_0_scales(w[r] + k0, cnt);
            for (int t = 0; t < NT; ++t) s[r][t] = _mm512_castps256_ps512(_mm256_mul_ps(ws, xs[t]));
        }
        for (int k = 0; k < cnt; k += 2) {
            const bool pair = k + 1 < cnt;
            const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi32(k), _mm256_set1_epi32(k + 1), 1);
            __m512i xu[NT];
            for (int t = 0; t < NT; ++t) xu[t] = _mm512_xor_si512(q8_0_pair(x[t] + k0 + k, pair), bias);
            for (int r = 0; r < NR; ++r) {
                const __m512i wq = q8_0_pair(w[r] + k0 + k, pair);
                const __m512i init =
                    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wq));
                for (int t = 0; t < NT; ++t) {
                    const __m512i d = _mm512_dpbusd_epi32(init, xu[t], wq);
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(sel, s[r][t]), acc[r][t]);
                }
            }
        }
    }

    template <int NR, int NT>
    static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        const int64_t nb = cols / kQK8_0;
        const BlockQ8_0* w[NR];
        const BlockQ8_0* x[NT];
        for (int r = 0; r < NR; ++r) w[r] = reinterpret_cast<const BlockQ8_0*>(p.w[r]);
        for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_0*>(p.x[t]);
        __m512 acc[NR][NT];
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= nb; k += 8) {
            p.template prefetch<1024>(k * static_cast<int64_t>(sizeof(BlockQ8_0)), 8 * sizeof(BlockQ8_0));
            group<NR, NT, 8>(w, x, k, 8, acc);
        }
        if (k < nb) group<NR, NT, 0>(w, x, k, static_cast<int>(nb - k), acc);
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) o.put(r, t, _mm512_reduce_add_ps(acc[r][t]));
    }
};

// ---------------------------------------------------------------------------
// Shared by the Q8_K kernels.

static_assert(offsetof(BlockQ2_K, dmin) == offsetof(BlockQ2_K, d) + 2);
static_assert(offsetof(BlockQ4_K, dmin) == offsetof(BlockQ4_K, d) + 2);

// The f16 pair (d, dmin) at p as floats in lanes 0 and 1.
inline __m128 load_d_dmin(const void* p) {
    return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_scalar<uint32_t>(p))));
}

// acc += isum * (d * dx) - msum * (dmin * dx), lane-wise, in this order, with
// dd = (d, dmin).
inline __m512 scale_accumulate(__m512 acc, __m512i isum, __m256i msum, __m128 dd, float dx) {
    const __m128 s = _mm_mul_ps(dd, _mm_set1_ps(dx));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(s), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(msum)),
                            _mm512_broadcastss_ps(_mm_movehdup_ps(s)), acc);
}

// ---------------------------------------------------------------------------
// Q2_K weights with Q8_K activations.
//
// qs holds four 2-bit planes of 64 bytes; plane p, bytes 0..31 are values
// 32p..32p+31 and bytes 32..63 are values 128+32p.. . The weights stay in
// plane order and the activations are loaded in the same order instead (two
// 32-byte halves per register), once per token for all rows of the tile;
// the 16-byte lanes of plane p are the 16-value groups 2p, 2p+1, 2p+8, 2p+9.
// Each 2-bit quant times its 4-bit scale is at most 45, so the
// product is formed in 16-bit lanes (no carry crosses a byte) and fed to
// VPDPBUSD directly.

struct Q2KWeights {
    __m512i w[4];   // scaled quants, natural order
    __m256i mins;   // 16 x i16 minimums
    __m128 dd;  // d, dmin
};

inline void decode_q2_K(const BlockQ2_K* b, Q2KWeights& out) {
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i q = loadu512(b->qs);
    const __m512i v0 = _mm512_and_si512(q, m3);
    const __m512i v1 = _mm512_and_si512(_mm512_srli_epi16(q, 2), m3);
    const __m512i v2 = _mm512_and_si512(_mm512_srli_epi16(q, 4), m3);
    const __m512i v3 = _mm512_and_si512(_mm512_srli_epi16(q, 6), m3);
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i m4 = _mm_set1_epi8(15);
    const __m512i sc_lo = _mm512_broadcast_i32x4(_mm_and_si128(sc, m4));
    // 128-bit lane k of plane p holds the 16 values of group 2p + k%2 + 8*(k/2):
    // its scale byte, zero-extended to 16 bits.
    auto scale_of = [&](int p) {
        const __m128i c0 = _mm_set1_epi16(static_cast<short>(0x8000 | (2 * p + 0)));
        const __m128i c1 = _mm_set1_epi16(static_cast<short>(0x8000 | (2 * p + 1)));
        const __m128i c2 = _mm_set1_epi16(static_cast<short>(0x8000 | (2 * p + 8)));
        const __m128i c3 = _mm_set1_epi16(static_cast<short>(0x8000 | (2 * p + 9)));
        const __m512i ctrl = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set_m128i(c1, c0)), _mm256_set_m128i(c3, c2), 1);
        return _mm512_shuffle_epi8(sc_lo, ctrl);
    };
    out.w[0] = _mm512_mullo_epi16(v0, scale_of(0));
    out.w[1] = _mm512_mullo_epi16(v1, scale_of(1));
    out.w[2] = _mm512_mullo_epi16(v2, scale_of(2));
    out.w[3] = _mm512_mullo_epi16(v3, scale_of(3));
    out.mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
    out.dd = load_d_dmin(&b->d);
}

struct Q2KKernel {
    static constexpr int kDecodeRows = 2;
    static constexpr int kBatchRows = 2;
    static constexpr int kBatchToks = 8;

    template <int NR, int NT>
    static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        const int64_t nb = cols / kQK_K;
        __m512 acc[NR][NT];
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; ++i) {
            Q2KWeights wd[NR];
            p.template prefetch<2048>(i * static_cast<int64_t>(sizeof(BlockQ2_K)), sizeof(BlockQ2_K));
            for (int r = 0; r < NR; ++r) {
                const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(p.w[r]) + i;
                decode_q2_K(b, wd[r]);
            }
            for (int t = 0; t < NT; ++t) {
                const BlockQ8_K* xb = reinterpret_cast<const BlockQ8_K*>(p.x[t]) + i;
                __m512i xq[4];
                for (int k = 0; k < 4; ++k) xq[k] = load_2x256(xb->qs + 32 * k, xb->qs + 128 + 32 * k);
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
                const float dx = load_scalar<float>(&xb->d);
                for (int r = 0; r < NR; ++r) {
                    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wd[r].w[0], xq[0]);
                    s = _mm512_dpbusd_epi32(s, wd[r].w[1], xq[1]);
                    s = _mm512_dpbusd_epi32(s, wd[r].w[2], xq[2]);
                    s = _mm512_dpbusd_epi32(s, wd[r].w[3], xq[3]);
                    const __m256i m = _mm256_madd_epi16(bs, wd[r].mins);
                    acc[r][t] = scale_accumulate(acc[r][t], s, m, wd[r].dd, dx);
                }
            }
        }
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) o.put(r, t, _mm512_reduce_add_ps(acc[r][t]));
    }
};

// ---------------------------------------------------------------------------
// Q4_K weights with Q8_K activations.
//
// qs holds four 32-byte chunks; chunk c's low nibbles are sub-block 2c and
// its high nibbles sub-block 2c+1. A 64-byte load masked to its low (high)
// nibbles holds sub-blocks 4h and 4h+2 (4h+1 and 4h+3); the weights stay in
// that order and the activations are loaded in the same order (two 32-byte
// halves per register, once per token for all rows of the tile). The 6-bit
// scales enter through VPDPWSSD on the 16-bit pair sums of VPMADDUBSW.

struct Q4KWeights {
    __m512i w[4];   // nibbles: register i holds sub-blocks j, j + 2 (j = 4 * (i / 2) + i % 2)
    __m512i sc[4];  // i16 scale per lane: sub-block j in lanes 0..15, j + 2 in 16..31
    __m256i mins;   // 16 x i16: min of sub-block j at positions 2j and 2j+1
    __m128 dd;  // d, dmin
};

inline void decode_q4_K(const BlockQ4_K* b, Q4KWeights& out) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i q0 = loadu512(b->qs);
    const __m512i q1 = loadu512(b->qs + 64);
    const __m512i lo0 = _mm512_and_si512(q0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
    const __m512i lo1 = _mm512_and_si512(q1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
    out.w[0] = lo0;
    out.w[1] = hi0;
    out.w[2] = lo1;
    out.w[3] = hi1;

    // Unpack the 12 scale bytes: scales of sub-blocks 0..7 and mins 0..7, 6 bits each.
    uint64_t scales, mins;
    quant::q4_K_scales_mins(b->scales, &scales, &mins);
    const __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(scales))));
    for (int i = 0; i < 4; ++i) {
        // Register i holds sub-blocks j and j + 2 (j = 4 * (i / 2) + i % 2):
        // i16 element j in 128-bit lanes 0,1 and element j + 2 in lanes 2,3.
        const int j = 4 * (i / 2) + i % 2;
        const __m128i a = _mm_set1_epi16(static_cast<short>((2 * j) | ((2 * j + 1) << 8)));
        const __m128i c = _mm_set1_epi16(static_cast<short>((2 * j + 4) | ((2 * j + 5) << 8)));
        const __m512i ctrl =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(a, a)), _mm256_set_m128i(c, c), 1);
        out.sc[i] = _mm512_shuffle_epi8(s16, ctrl);
    }
    const __m128i mv = _mm_cvtsi64_si128(static_cast<long long>(mins));
    out.mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mv, mv));
    out.dd = load_d_dmin(&b->d);
}

struct Q4KKernel {
    static constexpr int kDecodeRows = 2;
    static constexpr int kBatchRows = 2;
    static constexpr int kBatchToks = 8;

    template <int NR, int NT>
    static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        const int64_t nb = cols / kQK_K;
        __m512 acc[NR][NT];
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; ++i) {
            Q4KWeights wd[NR];
            p.template prefetch<4096>(i * static_cast<int64_t>(sizeof(BlockQ4_K)), sizeof(BlockQ4_K));
            for (int r = 0; r < NR; ++r) {
                const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(p.w[r]) + i;
                decode_q4_K(b, wd[r]);
            }
            for (int t = 0; t < NT; ++t) {
                const BlockQ8_K* xb = reinterpret_cast<const BlockQ8_K*>(p.x[t]) + i;
                __m512i xq[4];
                for (int k = 0; k < 4; ++k)
                    xq[k] = load_2x256(xb->qs + 128 * (k / 2) + 32 * (k % 2), xb->qs + 128 * (k / 2) + 32 * (k % 2) + 64);
                const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
                const float dx = load_scalar<float>(&xb->d);
                for (int r = 0; r < NR; ++r) {
                    __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                                    _mm512_maddubs_epi16(wd[r].w[0], xq[0]), wd[r].sc[0]);
                    s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wd[r].w[1], xq[1]), wd[r].sc[1]);
                    s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wd[r].w[2], xq[2]), wd[r].sc[2]);
                    s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wd[r].w[3], xq[3]), wd[r].sc[3]);
                    const __m256i m = _mm256_madd_epi16(bs, wd[r].mins);
                    acc[r][t] = scale_accumulate(acc[r][t], s, m, wd[r].dd, dx);
                }
            }
        }
        for (int r = 0; r < NR; ++r)
            for (int t = 0; t < NT; ++t) o.put(r, t, _mm512_reduce_add_ps(acc[r][t]));
    }
};

// ---------------------------------------------------------------------------
// IQ2_XXS weights with Q8_K activations.
//
// The 64 bytes of qs are 16 u32: even ones hold four grid indices, odd ones
// 28 sign bits (7 per 8 values; the eighth sign makes the count of negatives
// even) and a 4-bit scale. Super-blocks are decoded two at a time:
//  - signs: the 16 sign words of both are expanded together in one register
//    (7 bits per byte, parity into bit 7) and stored as one 64-bit mask per
//    pair of sub-blocks (64 values);
//  - grid: the 32 indices of a super-block look up 16-bit codes in a table
//    held in eight registers (VPERMT2W); a pair's 8 codes are then widened to
//    64 magnitude bytes (VPERMW, VPSRLVW, VPSHUFB);
//  - the signs are applied to the activations (masked subtract), the
//    magnitudes multiplied in (VPMADDUBSW) and the scales 2s+1 applied in
//    VPDPWSSD.

// A codeword in 16 bits: the digit (0, 1, 2 for magnitudes 8, 25, 43) of
// element j sits at bit 2*(j/2) + 8*(j%2), so shifting right by 2m and
// masking with 0x0303 leaves the digits of elements 2m and 2m+1 in the two
// bytes of a 16-bit lane.
constexpr std::array<uint16_t, 256> make_iq2_codes() {
    std::array<uint16_t, 256> out{};
    for (int i = 0; i < 256; ++i) {
        const uint64_t g = quant::kIq2xxsGrid[static_cast<size_t>(i)];
        uint16_t code = 0;
        for (int j = 0; j < 8; ++j) {
            const uint8_t m = static_cast<uint8_t>(g >> (8 * j));
            const uint16_t digit = m == 8 ? 0 : m == 25 ? 1 : 2;
            code = static_cast<uint16_t>(code | digit << (2 * (j / 2) + 8 * (j % 2)));
        }
        out[static_cast<size_t>(i)] = code;
    }
    return out;
}
alignas(64) constexpr std::array<uint16_t, 256> kIq2Codes = make_iq2_codes();

struct IQ2Consts {
    __m512i table[8];  // the 256 codes, 64 per VPERMT2W register pair
    __m512i shifts;    // 2 * (lane % 4) per u16 lane
    __m512i mag;       // digit -> magnitude, per 128-bit lane
    __m512i m0303;
    __m512i widen[4];  // u16 lane w <- code 8i + w/4
    __m512i scale[4];  // u16 lanes 0..15 <- u16 8i+2, lanes 16..31 <- u16 8i+6
    IQ2Consts() {
        for (int i = 0; i < 8; ++i) table[i] = _mm512_load_si512(kIq2Codes.data() + 32 * i);
        shifts = _mm512_set1_epi64(0x0006000400020000ll);
        mag = _mm512_broadcast_i32x4(_mm_setr_epi8(8, 25, 43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        m0303 = _mm512_set1_epi16(0x0303);
        alignas(64) uint16_t w[32];
        for (int i = 0; i < 4; ++i) {
            for (int l = 0; l < 32; ++l) w[l] = static_cast<uint16_t>(8 * i + l / 4);
            widen[i] = _mm512_load_si512(w);
            for (int l = 0; l < 32; ++l) w[l] = static_cast<uint16_t>(l < 16 ? 8 * i + 2 : 8 * i + 6);
            scale[i] = _mm512_load_si512(w);
        }
    }
};

// Codes for 32 grid indices (u16 lanes, 0..255).
inline __m512i iq2_codes(const IQ2Consts& c, __m512i idx) {
    const __m512i l0 = _mm512_permutex2var_epi16(c.table[0], idx, c.table[1]);
    const __m512i l1 = _mm512_permutex2var_epi16(c.table[2], idx, c.table[3]);
    const __m512i l2 = _mm512_permutex2var_epi16(c.table[4], idx, c.table[5]);
    const __m512i l3 = _mm512_permutex2var_epi16(c.table[6], idx, c.table[7]);
    const __mmask32 b6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x40));
    const __mmask32 b7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x80));
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, l0, l1), _mm512_mask_blend_epi16(b6, l2, l3));
}

// Sign words (in every u32 lane) -> 32 sign bits: 7-bit groups spread to
// bytes, parity of each group into bit 7.
inline __m512i iq2_signs(__m512i v) {
    const __m512i m7 = _mm512_set1_epi32(0x7f);
    __m512i e = _mm512_and_si512(v, m7);
    e = _mm512_or_si512(e, _mm512_and_si512(_mm512_slli_epi32(v, 1), _mm512_slli_epi32(m7, 8)));
    e = _mm512_or_si512(e, _mm512_and_si512(_mm512_slli_epi32(v, 2), _mm512_slli_epi32(m7, 16)));
    e = _mm512_or_si512(e, _mm512_and_si512(_mm512_slli_epi32(v, 3), _mm512_slli_epi32(m7, 24)));
    __m512i par = _mm512_xor_si512(e, _mm512_srli_epi32(e, 4));
    par = _mm512_xor_si512(par, _mm512_srli_epi32(par, 2));
    par = _mm512_xor_si512(par, _mm512_srli_epi32(par, 1));
    return _mm512_or_si512(e, _mm512_slli_epi32(_mm512_and_si512(par, _mm512_set1_epi32(0x01010101)), 7));
}

// Decoded form of one super-block, minus the per-pair widening.
struct IQ2Block {
    __m512i codes;  // 32 codes, sub-block s at u16 lanes 4s..4s+3
    __m512i sc;     // 2*scale+1 in the low half of each odd u32 lane
    float d;
};

// Decodes super-blocks a and b (b may equal a); signs[0..3] get a's pair
// masks and signs[4..7] b's.
inline void iq2_decode2(const BlockIQ2_XXS* a, const BlockIQ2_XXS* b, const IQ2Consts& c, IQ2Block& da,
                        IQ2Block& db, uint64_t* signs) {
    const __m512i va = loadu512(a->qs), vb = loadu512(b->qs);
    // Sign words: a's in odd lanes, b's moved to the even lanes.
    const __m512i sw = iq2_signs(_mm512_mask_blend_epi32(0x5555, va, _mm512_srli_epi64(vb, 32)));
    _mm512_store_si512(signs, _mm512_permutexvar_epi32(
                                  _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14), sw));
    // Index words: a's then b's.
    const __m512i iw = _mm512_permutex2var_epi32(
        va, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), vb);
    da.codes = iq2_codes(c, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(iw)));
    db.codes = iq2_codes(c, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(iw, 1)));
    const __m512i m1e = _mm512_set1_epi32(0x1e), one = _mm512_set1_epi32(1);
    da.sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(va, 27), m1e), one);
    db.sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(vb, 27), m1e), one);
    da.d = half_to_float(load_scalar<uint16_t>(&a->d));
    db.d = half_to_float(load_scalar<uint16_t>(&b->d));
}

struct IQ2XXSKernel {
    static constexpr int kDecodeRows = 1;
    static constexpr int kBatchRows = 1;
    static constexpr int kBatchToks = 8;

    // Super-block i of every token in the tile, then acc += isum * d * dx / 8.
    template <int NT>
    static inline void block(const IQ2Block& blk, const uint64_t* signs, const IQ2Consts& c,
                             const BlockQ8_K* const* x, int64_t i, __m512 (&acc)[NT]) {
        __m512i s[NT];
        for (int t = 0; t < NT; ++t) s[t] = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
            const __m512i code = _mm512_srlv_epi16(_mm512_permutexvar_epi16(c.widen[j], blk.codes), c.shifts);
            const __m512i g = _mm512_shuffle_epi8(c.mag, _mm512_and_si512(code, c.m0303));
            const __m512i sc = _mm512_permutexvar_epi16(c.scale[j], blk.sc);
            const __mmask64 neg = _cvtu64_mask64(signs[j]);
            for (int t = 0; t < NT; ++t) {
                const __m512i xq = loadu512(x[t][i].qs + 64 * j);
                const __m512i xs = _mm512_mask_sub_epi8(xq, neg, _mm512_setzero_si512(), xq);
                s[t] = _mm512_dpwssd_epi32(s[t], _mm512_maddubs_epi16(g, xs), sc);
            }
        }
        for (int t = 0; t < NT; ++t) {
            const float dx = load_scalar<float>(&x[t][i].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_set1_ps(blk.d * dx * 0.125f), acc[t]);
        }
    }

    template <int NR, int NT>
    static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        static_assert(NR == 1);
        const int64_t nb = cols / kQK_K;
        const BlockIQ2_XXS* w = reinterpret_cast<const BlockIQ2_XXS*>(p.w[0]);
        const BlockQ8_K* x[NT];
        for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_K*>(p.x[t]);
        const IQ2Consts c;
        __m512 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
        alignas(64) uint64_t signs[8];
        int64_t i = 0;
        for (; i + 2 <= nb; i += 2) {
            IQ2Block a, b;
            p.template prefetch<4096>(i * static_cast<int64_t>(sizeof(BlockIQ2_XXS)), 2 * sizeof(BlockIQ2_XXS));
            iq2_decode2(w + i, w + i + 1, c, a, b, signs);
            block<NT>(a, signs, c, x, i, acc);
            block<NT>(b, signs + 4, c, x, i + 1, acc);
        }
        if (i < nb) {
            IQ2Block a, b;
            iq2_decode2(w + i, w + i, c, a, b, signs);
            block<NT>(a, signs, c, x, i, acc);
        }
        for (int t = 0; t < NT; ++t) o.put(0, t, _mm512_reduce_add_ps(acc[t]));
    }
};

// ---------------------------------------------------------------------------
// IQ2_XXS with AVX512_VBMI and AVX512_BITALG (byte permutes, VPMULTISHIFTQB,
// VPSHUFBITQMB), chosen at run time when the CPU has both (Ice Lake and Zen 4
// onwards). It reads the
// activations in their grouped order (Activations::q8_K_grouped_row: 64-bit
// lane s of the j-th 64-byte piece of a super-block holds the j-th group of
// eight values of sub-block s) and decodes the weights into the same shape,
// so that no per-piece permute places codes or spreads scales:
//  - codes: the 32 grid indices of each super-block look up the low and high
//    bytes of their 16-bit codes (VPERMT2B, 128 entries per register pair),
//    interleaved (VPUNPCKLBW/HBW) so that 64-bit lane s holds the four codes
//    of sub-block s; piece j cuts the eight 2-bit digits of code j out of
//    every lane (VPMULTISHIFTQB) and maps them to magnitudes (VPERMB);
//  - signs: the 7-bit groups are cut out (VPMULTISHIFTQB) and mapped to sign
//    bytes with their parity bit (VPERMT2B), 64-bit lane s holding those of
//    sub-block s; piece j picks its 64 sign bits from them (VPSHUFBITQMB)
//    into a mask, applied to the activations by a masked subtract;
//  - products: one VPDPBUSD per piece into an int32 accumulator whose lanes
//    2s and 2s+1 belong to sub-block s, then one multiply by 2 * scale + 1
//    per super-block and token.

#define DS4_VBMI __attribute__((target("avx512vbmi,avx512bitalg")))

// Digit of element e at bits 2e, 2e+1 of a 16-bit code.
constexpr std::array<uint8_t, 512> make_iq2_code_bytes() {
    std::array<uint8_t, 512> out{};  // [0, 256): low bytes, [256, 512): high bytes
    for (int i = 0; i < 256; ++i) {
        const uint64_t g = quant::kIq2xxsGrid[static_cast<size_t>(i)];
        uint16_t code = 0;
        for (int j = 0; j < 8; ++j) {
            const uint8_t m = static_cast<uint8_t>(g >> (8 * j));
            const uint16_t digit = m == 8 ? 0 : m == 25 ? 1 : 2;
            code = static_cast<uint16_t>(code | digit << (2 * j));
        }
        out[static_cast<size_t>(i)] = static_cast<uint8_t>(code);
        out[static_cast<size_t>(256 + i)] = static_cast<uint8_t>(code >> 8);
    }
    return out;
}
alignas(64) constexpr std::array<uint8_t, 512> kIq2CodeBytes = make_iq2_code_bytes();
alignas(64) constexpr std::array<uint8_t, 128> kIq2SignBytes = quant::kIq2Signs;

struct IQ2VbmiConsts {
    __m512i lo[4], hi[4];    // code bytes for indices 0..63, 64..127, 128..191, 192..255
    __m512i signs[2];        // sign table, entries 0..63 and 64..127
    __m512i mag;             // 6-bit index -> magnitude of its low 2 bits
    __m512i index_words;     // VPERMT2D: u32 slot 4m + r <- index word of sub-block 2m + r % 2 of a (r < 2) or b
    __m512i sign_words;      // VPERMT2D: u32 slot 2s <- sign word of sub-block s of a, 2s + 1 <- of b
    __m512i cut_signs;       // VPMULTISHIFTQB: bits 0, 7, 14, 21 of both u32 halves -> bytes
    __m512i pick_signs;      // VPSHUFBITQMB: bits 0..7 (piece j of a: + 8 j, of b: + 32 + 8 j)
    __m512i cut_digits;      // VPMULTISHIFTQB: bits 2 e -> byte e (piece j: + 16 j)
    __m512i step8, step16;   // 8 or 16 in every byte
    DS4_VBMI IQ2VbmiConsts() {
        for (int i = 0; i < 4; ++i) {
            lo[i] = _mm512_load_si512(kIq2CodeBytes.data() + 64 * i);
            hi[i] = _mm512_load_si512(kIq2CodeBytes.data() + 256 + 64 * i);
        }
        signs[0] = _mm512_load_si512(kIq2SignBytes.data());
        signs[1] = _mm512_load_si512(kIq2SignBytes.data() + 64);
        alignas(64) uint8_t b[64];
        for (int n = 0; n < 64; ++n) b[n] = (n & 3) == 0 ? 8 : (n & 3) == 1 ? 25 : (n & 3) == 2 ? 43 : 0;
        mag = _mm512_load_si512(b);
        alignas(64) uint32_t w[16];
        for (int p = 0; p < 16; ++p) {
            const int m = p / 4, r = p % 4;
            w[p] = static_cast<uint32_t>(r < 2 ? 2 * (2 * m + r) : 16 + 2 * (2 * m + r - 2));
        }
        index_words = _mm512_load_si512(w);
        for (int l = 0; l < 16; ++l) w[l] = static_cast<uint32_t>((l % 2 == 0 ? 0 : 16) + 2 * (l / 2) + 1);
        sign_words = _mm512_load_si512(w);
        cut_signs = _mm512_set1_epi64(0x352e2720150e0700ll);
        // After the cut and the table, lane s holds the sign bytes of a's
        // groups 0..3 and then of b's.
        pick_signs = _mm512_set1_epi64(0x0706050403020100ll);
        cut_digits = _mm512_set1_epi64(0x0e0c0a0806040200ll);
        step8 = _mm512_set1_epi8(8);
        step16 = _mm512_set1_epi8(16);
    }
};

// One decoded super-block.
struct IQ2VbmiBlock {
    __m512i codes;  // 64-bit lane s: the four 16-bit codes of sub-block s
    __m512i scale;  // u32 lanes 2s, 2s+1: 2 * scale + 1 of sub-block s
    float d;
};

// 2 * scale + 1 of sub-block s into u32 lanes 2s and 2s+1 (the scale is in
// bits 28..31 of the odd u32 lanes of qs).
DS4_VBMI inline __m512i iq2_vbmi_scales(__m512i q) {
    const __m512i odd = _mm512_ternarylogic_epi32(_mm512_srli_epi32(q, 27), _mm512_set1_epi32(0x1e),
                                                  _mm512_set1_epi32(1), 0xea);  // (A & B) | C
    return _mm512_shuffle_epi32(odd, _MM_PERM_DDBB);
}

// Decodes super-blocks a and b (b may equal a); the sign masks of their
// pieces are picked from `sign_bytes` (see IQ2VbmiConsts::pick_signs).
DS4_VBMI inline void iq2_vbmi_decode2(const BlockIQ2_XXS* a, const BlockIQ2_XXS* b, const IQ2VbmiConsts& c,
                                      IQ2VbmiBlock& da, IQ2VbmiBlock& db, __m512i& sign_bytes) {
    const __m512i va = loadu512(a->qs), vb = loadu512(b->qs);
    const __m512i groups = _mm512_multishift_epi64_epi8(c.cut_signs, _mm512_permutex2var_epi32(va, c.sign_words, vb));
    sign_bytes = _mm512_permutex2var_epi8(c.signs[0], groups, c.signs[1]);
    const __m512i iw = _mm512_permutex2var_epi32(va, c.index_words, vb);
    const __mmask64 high = _mm512_movepi8_mask(iw);
    const __m512i lo = _mm512_mask_blend_epi8(high, _mm512_permutex2var_epi8(c.lo[0], iw, c.lo[1]),
                                              _mm512_permutex2var_epi8(c.lo[2], iw, c.lo[3]));
    const __m512i hi = _mm512_mask_blend_epi8(high, _mm512_permutex2var_epi8(c.hi[0], iw, c.hi[1]),
                                              _mm512_permutex2var_epi8(c.hi[2], iw, c.hi[3]));
    da.codes = _mm512_unpacklo_epi8(lo, hi);
    db.codes = _mm512_unpackhi_epi8(lo, hi);
    da.scale = iq2_vbmi_scales(va);
    db.scale = iq2_vbmi_scales(vb);
    da.d = half_to_float(load_scalar<uint16_t>(&a->d));
    db.d = half_to_float(load_scalar<uint16_t>(&b->d));
}

struct IQ2XXSVbmiKernel {
    static constexpr int kDecodeRows = 1;
    static constexpr int kBatchRows = 1;
    static constexpr int kBatchToks = 8;

    // Super-block i for every token of the tile: acc += (sum_s (2 scale_s + 1)
    // * dot_s) * d * dx / 8, lane-wise.
    template <int NT>
    DS4_VBMI static inline void block(const IQ2VbmiBlock& blk, __m512i sign_bytes, int h, const IQ2VbmiConsts& c,
                                      const int8_t* const* xg, const float* const* xd, int64_t i,
                                      __m512 (&acc)[NT]) {
        __m512i s[NT];
        for (int t = 0; t < NT; ++t) s[t] = _mm512_setzero_si512();
        // The controls of piece j are stepped from those of piece 0 (fewer
        // registers held for the tile).
        __m512i cut = c.cut_digits;
        __m512i pick = h == 0 ? c.pick_signs : _mm512_add_epi8(c.pick_signs, _mm512_set1_epi8(32));
        for (int j = 0; j < 4; ++j) {
            if (j > 0) {
                cut = _mm512_add_epi8(cut, c.step16);
                pick = _mm512_add_epi8(pick, c.step8);
            }
            const __m512i g = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(cut, blk.codes), c.mag);
            const __mmask64 neg = _mm512_bitshuffle_epi64_mask(sign_bytes, pick);
            for (int t = 0; t < NT; ++t) {
                const __m512i xq = loadu512(xg[t] + i * kQK_K + 64 * j);
                s[t] = _mm512_dpbusd_epi32(s[t], g, _mm512_mask_sub_epi8(xq, neg, _mm512_setzero_si512(), xq));
            }
        }
        for (int t = 0; t < NT; ++t) {
            const float dx = load_scalar<float>(xd[t] + i);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(s[t], blk.scale)),
                                     _mm512_set1_ps(blk.d * dx * 0.125f), acc[t]);
        }
    }

    template <int NR, int NT>
    DS4_VBMI static void tile(const TilePtrs<NR, NT>& p, int64_t cols, const Out& o) {
        static_assert(NR == 1);
        const int64_t nb = cols / kQK_K;
        const BlockIQ2_XXS* w = reinterpret_cast<const BlockIQ2_XXS*>(p.w[0]);
        const IQ2VbmiConsts c;
        __m512 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 2 <= nb; i += 2) {
            IQ2VbmiBlock a, b;
            __m512i signs;
            p.template prefetch<4096>(i * static_cast<int64_t>(sizeof(BlockIQ2_XXS)), 2 * sizeof(BlockIQ2_XXS));
            iq2_vbmi_decode2(w + i, w + i + 1, c, a, b, signs);
            block<NT>(a, signs, 0, c, p.xg, p.xd, i, acc);
            block<NT>(b, signs, 1, c, p.xg, p.xd, i + 1, acc);
        }
        if (i < nb) {
            IQ2VbmiBlock a, b;
            __m512i signs;
            iq2_vbmi_decode2(w + i, w + i, c, a, b, signs);
            block<NT>(a, signs, 0, c, p.xg, p.xd, i, acc);
        }
        for (int t = 0; t < NT; ++t) o.put(0, t, _mm512_reduce_add_ps(acc[t]));
    }
};

void f32_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<FloatKernel<LoadF32>>(W, x, y, ys, rb, re);
}
void f16_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<FloatKernel<LoadF16>>(W, x, y, ys, rb, re);
}
void bf16_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<FloatKernel<LoadBF16>>(W, x, y, ys, rb, re);
}
void q8_0_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<Q8_0Kernel>(W, x, y, ys, rb, re);
}
void q2_K_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<Q2KKernel>(W, x, y, ys, rb, re);
}
void q4_K_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<Q4KKernel>(W, x, y, ys, rb, re);
}
void iq2_xxs_rows(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<IQ2XXSKernel>(W, x, y, ys, rb, re);
}
void iq2_xxs_rows_vbmi(const Matrix& W, const Activations& x, float* y, int64_t ys, int64_t rb, int64_t re) {
    run<IQ2XXSVbmiKernel>(W, x, y, ys, rb, re);
}

// Weighted sum of F16 rows: NS sets x NV vectors of 16 columns in registers
// (the last vector masked at a column tail), the rows streamed once per block
// of sets.
template <int NS, int NV>
void weighted_block(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, float* out, int64_t os,
                    int64_t c, __mmask16 last) {
    __m512 acc[NS][NV];
    for (int s = 0; s < NS; ++s)
        for (int v = 0; v < NV; ++v) acc[s][v] = _mm512_setzero_ps();
    for (int64_t r = 0; r < n_rows; ++r) {
        __m512 w[NV];
        for (int v = 0; v < NV; ++v) {
            const __mmask16 m = v == NV - 1 ? last : static_cast<__mmask16>(0xffff);
            w[v] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, W + r * ws + c + 16 * v));
        }
        for (int s = 0; s < NS; ++s) {
            const __m512 b = _mm512_set1_ps(p[s * ps + r]);
            for (int v = 0; v < NV; ++v) acc[s][v] = _mm512_fmadd_ps(b, w[v], acc[s][v]);
        }
    }
    for (int s = 0; s < NS; ++s)
        for (int v = 0; v < NV; ++v)
            _mm512_mask_storeu_ps(out + s * os + c + 16 * v, v == NV - 1 ? last : static_cast<__mmask16>(0xffff),
                                  acc[s][v]);
}

template <int NS>
void weighted_sets(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, float* out, int64_t os,
                   int64_t cb, int64_t ce) {
    int64_t c = cb;
    for (; c + 64 <= ce; c += 64) weighted_block<NS, 4>(W, ws, n_rows, p, ps, out, os, c, 0xffff);
    for (; c + 16 <= ce; c += 16) weighted_block<NS, 1>(W, ws, n_rows, p, ps, out, os, c, 0xffff);
    if (c < ce)
        weighted_block<NS, 1>(W, ws, n_rows, p, ps, out, os, c, static_cast<__mmask16>((1u << (ce - c)) - 1));
}

void weighted_rows_f16(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, int64_t n_sets,
                       float* out, int64_t os, int64_t cb, int64_t ce) {
    int64_t s = 0;
    for (; s + 4 <= n_sets; s += 4) weighted_sets<4>(W, ws, n_rows, p + s * ps, ps, out + s * os, os, cb, ce);
    for (; s < n_sets; ++s) weighted_sets<1>(W, ws, n_rows, p + s * ps, ps, out + s * os, os, cb, ce);
}

}  // namespace

RowsKernel avx512_iq2_xxs_without_vbmi() { return iq2_xxs_rows; }

const KernelTable& avx512_kernels() {
    static const KernelTable table{
        .f32 = f32_rows,
        .f16 = f16_rows,
        .bf16 = bf16_rows,
        .q8_0 = q8_0_rows,
        .q2_K = q2_K_rows,
        .q4_K = q4_K_rows,
        .iq2_xxs = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bitalg") ? iq2_xxs_rows_vbmi
                                                                                                 : iq2_xxs_rows,
        .weighted_rows_f16 = weighted_rows_f16,
        .quantize_q8_0 = quantize_q8_0_avx512,
        .quantize_q8_K = quantize_q8_K_avx512,
    };
    return table;
}

}  // namespace ds4::kernels::detail
