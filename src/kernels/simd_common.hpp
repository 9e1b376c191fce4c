// Tables and helpers shared by the SIMD kernels (only included by files
// compiled with F16C, which both the AVX2 and the AVX-512 files are).
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>

#include "quant/iq2xxs_tables.hpp"

namespace ds4::kernels::detail {

// f16 -> f32 through F16C: exact, like the portable f16_to_f32, without its
// branches.
inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// For a 7-bit IQ2_XXS sign index: 8 bytes, 0xFF where the element is negative.
inline constexpr std::array<uint64_t, 128> kIq2SignMask = [] {
    std::array<uint64_t, 128> out{};
    for (int i = 0; i < 128; ++i) {
        const uint8_t s = quant::kIq2Signs[static_cast<size_t>(i)];
        uint64_t m = 0;
        for (int j = 0; j < 8; ++j)
            if ((s >> j) & 1) m |= uint64_t{0xFF} << (8 * j);
        out[static_cast<size_t>(i)] = m;
    }
    return out;
}();

}  // namespace ds4::kernels::detail
