// Quantized tensor types: dequantization (bit-exact to the GGML definitions),
// reference quantizers for every weight type, and the activation quantizers
// the dot-product kernels use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ds4/dtype.hpp"
#include "quant/blocks.hpp"

namespace ds4::quant {

// Bytes of one row of `n` elements (n must be a multiple of the block size).
size_t row_bytes(DType type, int64_t n);

// dst[0..n) = values of the `n` elements stored at src. Supports F32, F16,
// BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS and Q8_K; throws ds4::Error otherwise.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Reference quantizers: write `n` values (a multiple of the block size) as
// `type` into dst (row_bytes(type, n) bytes). `importance` (optional, n
// weights >= 0) weights the squared error the search minimises, as an imatrix
// does. Supports F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS.
void quantize_row(DType type, const float* src, void* dst, int64_t n, const float* importance = nullptr);

// Activation quantizers used by the kernels (deterministic, match the engine
// numerics of the spec, section 6.1):
//  Q8_0: d = amax/127, q = nearest-even(x/d) in [-127, 127]  (per 32 values)
//  Q8_K: scale = -127/max_signed, q = nearest-even(x*scale) in [-127, 127],
//        with bsums of every 16 quants (per 256 values)
// Both throw ds4::Error on NaN or infinity. The kernels' SIMD versions
// (kernels/quantize_*.cpp) produce the same bytes.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t n);

}  // namespace ds4::quant
