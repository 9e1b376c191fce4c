// Scalar kernels: the executable definition of every weight type's dot
// product with its activation type (integer products of the quants, then the
// block scales, as the formats define them). The SIMD kernels are tested
// against these.
#include <cstring>

#include "core/half.hpp"
#include "kernels/kernel_table.hpp"
#include "quant/blocks.hpp"
#include "quant/iq2xxs_tables.hpp"
#include "quant/quant.hpp"

namespace ds4::kernels::detail {

namespace {

using namespace ds4::quant;

float dot_f32(const float* w, const float* x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += w[i] * x[i];
    return s;
}

float dot_f16(const uint16_t* w, const float* x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
    return s;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
    float s = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t acc = 0;
        for (int j = 0; j < kQK8_0; ++j) acc += static_cast<int32_t>(w[i].qs[j]) * x[i].qs[j];
        s += f16_to_f32(w[i].d) * f16_to_f32(x[i].d) * static_cast<float>(acc);
    }
    return s;
}

// Q2_K: value = d * scale_s * q - dmin * min_s for sub-block s of 16 values.
float dot_q2_K(const BlockQ2_K* w, const BlockQ8_K* x, int64_t nb) {
    float s = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t mins = 0;
        for (int g = 0; g < 16; ++g) mins += static_cast<int32_t>(w[i].scales[g] >> 4) * x[i].bsums[g];
        int32_t acc = 0;
        const int8_t* q8 = x[i].qs;
        for (int half = 0; half < 2; ++half) {
            const uint8_t* q2 = w[i].qs + 32 * half;
            for (int pass = 0; pass < 4; ++pass) {
                for (int part = 0; part < 2; ++part) {
                    int32_t sub = 0;
                    for (int l = 0; l < 16; ++l) sub += ((q2[16 * part + l] >> (2 * pass)) & 3) * q8[l];
                    acc += static_cast<int32_t>(w[i].scales[8 * half + 2 * pass + part] & 15) * sub;
                    q8 += 16;
                }
            }
        }
        s += x[i].d * f16_to_f32(w[i].d) * static_cast<float>(acc) - x[i].d * f16_to_f32(w[i].dmin) * static_cast<float>(mins);
    }
    return s;
}

// Q4_K: value = d * scale_s * q - dmin * min_s for sub-block s of 32 values.
float dot_q4_K(const BlockQ4_K* w, const BlockQ8_K* x, int64_t nb) {
    float s = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t acc = 0, mins = 0;
        for (int c = 0; c < 4; ++c) {
            uint8_t sc0, m0, sc1, m1;
            q4_K_scale_min(2 * c, w[i].scales, &sc0, &m0);
            q4_K_scale_min(2 * c + 1, w[i].scales, &sc1, &m1);
            const uint8_t* q4 = w[i].qs + 32 * c;
            const int8_t* lo = x[i].qs + 64 * c;
            const int8_t* hi = lo + 32;
            int32_t s0 = 0, s1 = 0;
            for (int l = 0; l < 32; ++l) {
                s0 += (q4[l] & 15) * lo[l];
                s1 += (q4[l] >> 4) * hi[l];
            }
            acc += sc0 * s0 + sc1 * s1;
            mins += m0 * (x[i].bsums[4 * c] + x[i].bsums[4 * c + 1]) + m1 * (x[i].bsums[4 * c + 2] + x[i].bsums[4 * c + 3]);
        }
        s += x[i].d * f16_to_f32(w[i].d) * static_cast<float>(acc) - x[i].d * f16_to_f32(w[i].dmin) * static_cast<float>(mins);
    }
    return s;
}

// IQ2_XXS: per 32 values, four 8-value grid points with 7 sign bits each and
// a 4-bit scale; value = d * (2 * scale + 1) / 8 * grid * sign.
float dot_iq2_xxs(const BlockIQ2_XXS* w, const BlockQ8_K* x, int64_t nb) {
    float s = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        const int8_t* q8 = x[i].qs;
        int32_t acc = 0;
        for (int sb = 0; sb < 8; ++sb) {
            uint32_t a0, a1;
            std::memcpy(&a0, &w[i].qs[4 * sb], 4);
            std::memcpy(&a1, &w[i].qs[4 * sb + 2], 4);
            int32_t sub = 0;
            for (int l = 0; l < 4; ++l) {
                const uint64_t g = kIq2xxsGrid[(a0 >> (8 * l)) & 255];
                const uint8_t signs = kIq2Signs[(a1 >> (7 * l)) & 127];
                for (int j = 0; j < 8; ++j) {
                    const int32_t m = static_cast<int32_t>((g >> (8 * j)) & 255);
                    sub += ((signs >> j) & 1 ? -m : m) * q8[j];
                }
                q8 += 8;
            }
            acc += sub * static_cast<int32_t>(2 * (a1 >> 28) + 1);
        }
        s += 0.125f * f16_to_f32(w[i].d) * x[i].d * static_cast<float>(acc);
    }
    return s;
}

// One kernel per type: every (row, token) pair is one independent dot product.
template <class W, class A, float (*Dot)(const W*, const A*, int64_t), int kBlock>
void rows_kernel(const Matrix& M, const Activations& x, float* y, int64_t stride, int64_t r0, int64_t r1) {
    const int64_t nb = M.cols / kBlock;
    for (int64_t r = r0; r < r1; ++r) {
        const W* w = reinterpret_cast<const W*>(static_cast<const uint8_t*>(M.data) + static_cast<size_t>(r) * M.row_bytes);
        for (int64_t t = 0; t < x.n_tok(); ++t) y[t * stride + r] = Dot(w, reinterpret_cast<const A*>(x.row(t)), nb);
    }
}

void weighted_rows_f16(const uint16_t* W, int64_t ws, int64_t n_rows, const float* p, int64_t ps, int64_t n_sets,
                       float* out, int64_t os, int64_t cb, int64_t ce) {
    for (int64_t s = 0; s < n_sets; ++s)
        for (int64_t c = cb; c < ce; ++c) out[s * os + c] = 0.0f;
    for (int64_t r = 0; r < n_rows; ++r) {
        const uint16_t* w = W + r * ws;
        for (int64_t s = 0; s < n_sets; ++s) {
            const float pr = p[s * ps + r];
            float* o = out + s * os;
            for (int64_t c = cb; c < ce; ++c) o[c] += pr * f16_to_f32(w[c]);
        }
    }
}

}  // namespace

const KernelTable& scalar_kernels() {
    static const KernelTable t = [] {
        KernelTable k;
        k.f32 = rows_kernel<float, float, dot_f32, 1>;
        k.f16 = rows_kernel<uint16_t, float, dot_f16, 1>;
        k.bf16 = rows_kernel<uint16_t, float, dot_bf16, 1>;
        k.q8_0 = rows_kernel<BlockQ8_0, BlockQ8_0, dot_q8_0, kQK8_0>;
        k.q2_K = rows_kernel<BlockQ2_K, BlockQ8_K, dot_q2_K, kQK_K>;
        k.q4_K = rows_kernel<BlockQ4_K, BlockQ8_K, dot_q4_K, kQK_K>;
        k.iq2_xxs = rows_kernel<BlockIQ2_XXS, BlockQ8_K, dot_iq2_xxs, kQK_K>;
        k.weighted_rows_f16 = weighted_rows_f16;
        k.quantize_q8_0 = quant::quantize_row_q8_0;
        k.quantize_q8_K = quant::quantize_row_q8_K;
        return k;
    }();
    return t;
}

}  // namespace ds4::kernels::detail
