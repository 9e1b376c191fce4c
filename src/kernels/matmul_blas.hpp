// Large-batch alternative to the hand-written kernels: dequantize a tile of
// weight rows to f32 and multiply it with the f32 activations by OpenBLAS
// sgemm. bench/blas.cpp measures where (if anywhere) it beats matmul().
//
// Numerics differ from matmul(): the activations are not quantized (closer to
// an f32 reference) and sgemm's summation order depends on the batch size and
// its blocking, so results are not batch invariant: a prefill that switches to
// this path no longer matches token-by-token decode bit for bit.
//
// Threading: OpenMP over row tiles; each tile's sgemm runs on the calling
// thread. OpenBLAS's own thread pool (the pthread build Debian ships) would
// otherwise start its own threads inside every OpenMP thread, so matmul_blas
// sets openblas_set_num_threads(1) once (a process-wide setting).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/matmul.hpp"

namespace ds4::kernels {

// Rows dequantized per sgemm call.
constexpr int64_t kBlasTileRows = 64;

// Floats of scratch matmul_blas_rows needs for a matrix of `cols` columns.
size_t matmul_blas_scratch_floats(int64_t cols);

// y[t * y_stride + r] = sum_c W[r][c] * x[t * cols + c] for t < n_tok and r in
// [row_begin, row_end). Single-threaded (OpenBLAS must be set to one thread,
// see above); scratch holds at least matmul_blas_scratch_floats(W.cols) floats.
void matmul_blas_rows(const Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride,
                      int64_t row_begin, int64_t row_end, float* scratch);

// Whole product, threaded over row tiles with OpenMP; y_stride = W.rows when
// 0. Allocates one scratch tile per thread.
void matmul_blas(const Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride = 0);

}  // namespace ds4::kernels
