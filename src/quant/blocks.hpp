// Block layouts of the quantized types ds4 computes with (GGML's layouts).
#pragma once

#include <cstdint>
#include <cstring>

namespace ds4::quant {

constexpr int kQK8_0 = 32;   // elements per Q8_0 block
constexpr int kQK_K = 256;   // elements per K-quant / IQ2_XXS / Q8_K super-block

// Q8_0: value = d * qs[i]
struct BlockQ8_0 {
    uint16_t d;  // f16
    int8_t qs[kQK8_0];
};

// Q2_K: 16 sub-blocks of 16 values; 4-bit scale and 4-bit min per sub-block.
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];  // low nibble scale, high nibble min
    uint8_t qs[kQK_K / 4];       // 2-bit quants
    uint16_t d;                  // f16 super-block scale for scales
    uint16_t dmin;               // f16 super-block scale for mins
};

// Q4_K: 8 sub-blocks of 32 values; 6-bit scales and mins packed in 12 bytes.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];  // 4-bit quants
};

// IQ2_XXS: 8 sub-blocks of 32 values; per sub-block two u32: four grid
// indices (8 bits each) and 4x7 sign bits + a 4-bit scale.
struct BlockIQ2_XXS {
    uint16_t d;
    uint16_t qs[kQK_K / 8];
};

// Q8_K: activation blocks for K-quant and IQ dot products.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];  // sums of each group of 16 quants
};

// 6-bit scale and min of sub-block j (0..7) of a Q4_K block's packed scales.
inline void q4_K_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = static_cast<uint8_t>((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

// All eight 6-bit scales and mins of a Q4_K block at once: byte j of
// `scales` (`mins`) is sub-block j's, as q4_K_scale_min gives them.
inline void q4_K_scales_mins(const uint8_t* s, uint64_t* scales, uint64_t* mins) {
    uint32_t u0, u1, u2;
    std::memcpy(&u0, s, 4);
    std::memcpy(&u1, s + 4, 4);
    std::memcpy(&u2, s + 8, 4);
    *scales = static_cast<uint64_t>(u0 & 0x3f3f3f3fu) |
              static_cast<uint64_t>((u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u)) << 32;
    *mins = static_cast<uint64_t>(u1 & 0x3f3f3f3fu) |
            static_cast<uint64_t>(((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u)) << 32;
}

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockIQ2_XXS) == 66);
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace ds4::quant
