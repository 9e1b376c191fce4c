// Dequantize-and-sgemm path for large batches (see matmul_blas.hpp).
#include "kernels/matmul_blas.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "core/error_internal.hpp"
#include "quant/quant.hpp"

namespace ds4::kernels {

size_t matmul_blas_scratch_floats(int64_t cols) { return static_cast<size_t>(kBlasTileRows * cols); }

void matmul_blas_rows(const Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride,
                      int64_t row_begin, int64_t row_end, float* scratch) {
    if (row_begin < 0 || row_end > W.rows || row_begin > row_end)
        ds4::detail::fail(ErrorCode::InvalidArgument, "matmul_blas: rows [%lld, %lld) outside a %lld-row matrix",
                          static_cast<long long>(row_begin), static_cast<long long>(row_end),
                          static_cast<long long>(W.rows));
    if (y_stride == 0) y_stride = W.rows;
    const auto* base = static_cast<const uint8_t*>(W.data);
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kBlasTileRows) {
        const int64_t nr = std::min(kBlasTileRows, row_end - r0);
        for (int64_t r = 0; r < nr; ++r)
            quant::dequantize_row(W.type, base + static_cast<size_t>(r0 + r) * W.row_bytes, scratch + r * W.cols,
                                  W.cols);
        // Y[n_tok x nr] (row stride y_stride, starting at column r0) = X[n_tok x cols] * tile^T.
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(n_tok), static_cast<blasint>(nr),
                    static_cast<blasint>(W.cols), 1.0f, x, static_cast<blasint>(W.cols), scratch,
                    static_cast<blasint>(W.cols), 0.0f, y + r0, static_cast<blasint>(y_stride));
    }
}

void matmul_blas(const Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride) {
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
    if (y_stride == 0) y_stride = W.rows;
    if (n_tok <= 0 || W.rows == 0) return;
    // Errors cannot leave the parallel region: check the type here (throws if
    // it cannot be dequantized).
    quant::dequantize_row(W.type, W.data, nullptr, 0);
    const int64_t tiles = (W.rows + kBlasTileRows - 1) / kBlasTileRows;
    const int threads = omp_in_parallel() ? 1 : static_cast<int>(std::min<int64_t>(omp_get_max_threads(), tiles));
    std::vector<std::unique_ptr<float[]>> scratch(static_cast<size_t>(threads));
    for (auto& s : scratch) s.reset(new float[matmul_blas_scratch_floats(W.cols)]);
#pragma omp parallel num_threads(threads)
    {
        // Contiguous blocks of tiles per thread, like matmul().
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t t0 = tiles * t / nt, t1 = tiles * (t + 1) / nt;
        if (t0 < t1)
            matmul_blas_rows(W, x, n_tok, y, y_stride, t0 * kBlasTileRows, std::min(W.rows, t1 * kBlasTileRows),
                             scratch[static_cast<size_t>(t)].get());
    }
}

}  // namespace ds4::kernels
