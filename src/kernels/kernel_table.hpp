// Internal: the per-instruction-set kernel tables behind kernels::matmul_rows.
//
// Each ISA (scalar, AVX2+FMA, AVX-512) provides one table. A kernel computes
//   y[t * y_stride + r] = dot(W row r, activation row t)
// for t in [0, x.n_tok()) and r in [row_begin, row_end), single-threaded,
// without allocating. The activation rows are already in the form
// activation_type(W.type) gives (Q8_0 blocks for Q8_0 weights, Q8_K blocks
// for Q2_K / Q4_K / IQ2_XXS weights, f32 for F32 / F16 / BF16 weights).
//
// Every kernel must be batch invariant: the value computed for (r, t) must not
// depend on n_tok, on t, or on the row range (fixed accumulation order per
// dot product), so that prefill and token-by-token decode agree bit for bit.
#pragma once

#include <cstdint>

#include "kernels/matmul.hpp"
#include "quant/blocks.hpp"

namespace ds4::kernels::detail {

using RowsKernel = void (*)(const Matrix& W, const Activations& x, float* y, int64_t y_stride,
                            int64_t row_begin, int64_t row_end);

// out[s * out_stride + c] = sum over r = 0, 1, ..., n_rows-1 (in that order)
// of p[s * p_stride + r] * W[r * w_stride + c], for s in [0, n_sets) and c in
// [col_begin, col_end), W in F16. The order over r is fixed, so a value does
// not depend on the column range or on n_sets.
using WeightedRowsF16Kernel = void (*)(const uint16_t* W, int64_t w_stride, int64_t n_rows, const float* p,
                                       int64_t p_stride, int64_t n_sets, float* out, int64_t out_stride,
                                       int64_t col_begin, int64_t col_end);

// Activation quantizers: the same bytes as quant::quantize_row_q8_0 and
// quant::quantize_row_q8_K (the scalar tables use those), for n a multiple of
// the block size. On NaN or infinity they throw the scalar quantizer's error.
using QuantizeQ8_0Kernel = void (*)(const float* x, quant::BlockQ8_0* y, int64_t n);
using QuantizeQ8_KKernel = void (*)(const float* x, quant::BlockQ8_K* y, int64_t n);

struct KernelTable {
    RowsKernel f32 = nullptr;
    RowsKernel f16 = nullptr;
    RowsKernel bf16 = nullptr;
    RowsKernel q8_0 = nullptr;
    RowsKernel q2_K = nullptr;
    RowsKernel q4_K = nullptr;
    RowsKernel iq2_xxs = nullptr;
    WeightedRowsF16Kernel weighted_rows_f16 = nullptr;
    QuantizeQ8_0Kernel quantize_q8_0 = nullptr;
    QuantizeQ8_KKernel quantize_q8_K = nullptr;
};

// Defined in matmul_scalar.cpp, matmul_avx2.cpp and matmul_avx512.cpp. The
// SIMD tables may only be called on CPUs that have the ISA (dispatch checks).
const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
// The AVX-512 IQ2_XXS kernel for CPUs without AVX512_VBMI/BITALG (Skylake-X,
// Cascade Lake): avx512_kernels() picks it only there, so tests call it
// directly to check it on every AVX-512 machine.
RowsKernel avx512_iq2_xxs_without_vbmi();

// Defined in quantize_avx2.cpp and quantize_avx512.cpp.
void quantize_q8_0_avx2(const float* x, quant::BlockQ8_0* y, int64_t n);
void quantize_q8_K_avx2(const float* x, quant::BlockQ8_K* y, int64_t n);
void quantize_q8_0_avx512(const float* x, quant::BlockQ8_0* y, int64_t n);
void quantize_q8_K_avx512(const float* x, quant::BlockQ8_K* y, int64_t n);

}  // namespace ds4::kernels::detail
