// Helpers shared by the SIMD kernels (only included by files
// compiled with F16C, which both the AVX2 and the AVX-512 files are).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace ds4::kernels::detail {

// f16 -> f32 through F16C: exact, like the portable f16_to_f32, without its
// branches.
inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

}  // namespace ds4::kernels::detail
