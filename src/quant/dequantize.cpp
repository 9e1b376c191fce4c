// Dequantization of every type ds4 computes with. Each routine is the plain
// statement of the block format (model spec section 2.1 / GGML).
#include <cmath>
#include <cstring>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "quant/iq2xxs_tables.hpp"
#include "quant/quant.hpp"

namespace ds4::quant {

size_t row_bytes(DType type, int64_t n) {
    const auto b = dtype_row_bytes(type, n < 0 ? 0 : static_cast<uint64_t>(n));
    if (n < 0 || !b)
        ds4::detail::fail(ErrorCode::InvalidArgument, "%lld elements is not a whole number of %s blocks",
                     static_cast<long long>(n), std::string(dtype_name(type)).c_str());
    return static_cast<size_t>(*b);
}

namespace {

void check_blocks(DType type, int64_t n, int block) {
    if (n < 0 || n % block != 0)
        ds4::detail::fail(ErrorCode::InvalidArgument, "dequantize %s: %lld elements is not a multiple of %d",
                     std::string(dtype_name(type)).c_str(), static_cast<long long>(n), block);
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        for (int j = 0; j < kQK8_0; ++j) y[i * kQK8_0 + j] = d * static_cast<float>(b[i].qs[j]);
    }
}

void dequant_q2_K(const BlockQ2_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        const float dmin = f16_to_f32(b[i].dmin);
        float* out = y + i * kQK_K;
        for (int half = 0; half < 2; ++half) {
            for (int pass = 0; pass < 4; ++pass) {
                for (int l = 0; l < 32; ++l) {
                    const uint8_t s = b[i].scales[8 * half + 2 * pass + (l >= 16 ? 1 : 0)];
                    const int q = (b[i].qs[32 * half + l] >> (2 * pass)) & 3;
                    out[128 * half + 32 * pass + l] =
                        d * static_cast<float>(s & 15) * static_cast<float>(q) - dmin * static_cast<float>(s >> 4);
                }
            }
        }
    }
}

void dequant_q4_K(const BlockQ4_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        const float dmin = f16_to_f32(b[i].dmin);
        float* out = y + i * kQK_K;
        for (int c = 0; c < 4; ++c) {
            uint8_t sc0, m0, sc1, m1;
            q4_K_scale_min(2 * c, b[i].scales, &sc0, &m0);
            q4_K_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
            const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
            for (int l = 0; l < 32; ++l) {
                const uint8_t q = b[i].qs[32 * c + l];
                out[64 * c + l] = d0 * static_cast<float>(q & 15) - mm0;
                out[64 * c + 32 + l] = d1 * static_cast<float>(q >> 4) - mm1;
            }
        }
    }
}

void dequant_iq2_xxs(const BlockIQ2_XXS* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = f16_to_f32(b[i].d);
        float* out = y + i * kQK_K;
        for (int sb = 0; sb < 8; ++sb) {
            uint32_t a0, a1;
            std::memcpy(&a0, &b[i].qs[4 * sb], 4);
            std::memcpy(&a1, &b[i].qs[4 * sb + 2], 4);
            const float db = d * (0.5f + static_cast<float>(a1 >> 28)) * 0.25f;
            for (int l = 0; l < 4; ++l) {
                const uint64_t g = kIq2xxsGrid[(a0 >> (8 * l)) & 255];
                const uint8_t signs = kIq2Signs[(a1 >> (7 * l)) & 127];
                for (int j = 0; j < 8; ++j) {
                    const float m = static_cast<float>((g >> (8 * j)) & 255);
                    out[32 * sb + 8 * l + j] = db * m * ((signs >> j) & 1 ? -1.0f : 1.0f);
                }
            }
        }
    }
}

void dequant_q8_K(const BlockQ8_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i)
        for (int j = 0; j < kQK_K; ++j) y[i * kQK_K + j] = b[i].d * static_cast<float>(b[i].qs[j]);
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
    switch (type) {
        case DType::F32:
            check_blocks(type, n, 1);
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return;
        case DType::F16: {
            check_blocks(type, n, 1);
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(h[i]);
            return;
        }
        case DType::BF16: {
            check_blocks(type, n, 1);
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
            return;
        }
        case DType::Q8_0:
            check_blocks(type, n, kQK8_0);
            dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK8_0);
            return;
        case DType::Q2_K:
            check_blocks(type, n, kQK_K);
            dequant_q2_K(static_cast<const BlockQ2_K*>(src), dst, n / kQK_K);
            return;
        case DType::Q4_K:
            check_blocks(type, n, kQK_K);
            dequant_q4_K(static_cast<const BlockQ4_K*>(src), dst, n / kQK_K);
            return;
        case DType::IQ2_XXS:
            check_blocks(type, n, kQK_K);
            dequant_iq2_xxs(static_cast<const BlockIQ2_XXS*>(src), dst, n / kQK_K);
            return;
        case DType::Q8_K:
            check_blocks(type, n, kQK_K);
            dequant_q8_K(static_cast<const BlockQ8_K*>(src), dst, n / kQK_K);
            return;
        default:
            ds4::detail::fail(ErrorCode::UnsupportedModel, "cannot dequantize type %s",
                         std::string(dtype_name(type)).c_str());
    }
}

}  // namespace ds4::quant
