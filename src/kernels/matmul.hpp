// Matrix products for the engine: y = W x for a row-major (possibly
// quantized) weight matrix W and f32 activations x, for one token (decode)
// or a batch of tokens (prefill, several tokens sharing an expert).
//
// Quantized weights are multiplied with quantized activations, as in the
// spec's CPU numerics (section 6.1): Q8_0 weights with Q8_0 activations;
// Q2_K, Q4_K and IQ2_XXS weights with Q8_K activations. F16, BF16 and F32
// weights use f32 activations. An `Activations` object holds the quantized
// form of an input so that every matrix reading the same input shares one
// quantization.
//
// Implementations: scalar, AVX2+FMA and AVX-512 (VNNI where present), chosen
// at run time by CPUID; DS4_CPU_ISA=scalar|avx2|avx512 overrides the choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ds4/dtype.hpp"

namespace ds4::kernels {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// Best ISA the CPU supports.
Isa detected_isa();
// The ISA in use: DS4_CPU_ISA if set (an unsupported request throws
// ds4::Error naming it), otherwise detected_isa(). Read once.
Isa active_isa();
// Force an ISA (tests and benchmarks). Throws if the CPU lacks it.
void set_active_isa(Isa isa);
bool isa_supported(Isa isa);

// A rows x cols weight matrix; row r starts at data + r * row_bytes.
struct Matrix {
    DType type = DType::F32;
    const void* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    size_t row_bytes = 0;

    // Validates type support and that cols is a whole number of blocks.
    static Matrix make(DType type, const void* data, int64_t rows, int64_t cols);
};

// The activation type a weight type is multiplied with.
DType activation_type(DType weight_type);

// n_tok input rows of `cols` values in the form a weight type needs.
// Reusing one object avoids allocation after the first call.
class Activations {
public:
    // Quantize (or copy) x[n_tok][cols] for weights of type `weight_type`.
    void prepare(DType weight_type, const float* x, int64_t n_tok, int64_t cols);
    // The same in two steps, for callers that quantize rows on several
    // threads: shape() sizes the buffer, quantize_rows() fills rows [begin,
    // end) of x[n_tok][cols] (disjoint ranges may run concurrently). Each row
    // is quantized from its own values only, so the result equals prepare().
    void shape(DType weight_type, int64_t n_tok, int64_t cols);
    void quantize_rows(const float* x, int64_t begin, int64_t end);

    DType type() const { return type_; }
    int64_t n_tok() const { return n_tok_; }
    int64_t cols() const { return cols_; }
    size_t row_bytes() const { return row_bytes_; }
    const uint8_t* row(int64_t t) const { return buf_.data() + static_cast<size_t>(t) * row_bytes_; }
    const float* f32_row(int64_t t) const { return reinterpret_cast<const float*>(row(t)); }

    // Q8_K only: the quants of row t once more, regrouped per super-block so
    // that byte 64 j + 8 s + e holds quant 32 s + 8 j + e (j < 4, s < 8, e <
    // 8): 64-byte piece j holds the j-th group of eight values of each of the
    // eight 32-value sub-blocks. Kernels whose weights carry one code per
    // group of eight (IQ2_XXS) read these so that a sub-block's groups stay
    // in one 64-bit lane. 256 bytes per super-block, then the super-blocks'
    // scales d as floats (so that a tile of tokens reads no more bytes than
    // from row(t), whose sums it does not need).
    const int8_t* q8_K_grouped_row(int64_t t) const {
        return reinterpret_cast<const int8_t*>(grouped_.data()) + static_cast<size_t>(t) * grouped_row_bytes_;
    }
    // The super-blocks' scales d of that grouped row (after its quants).
    const float* q8_K_grouped_scales(int64_t t) const {
        return reinterpret_cast<const float*>(q8_K_grouped_row(t) + cols_);
    }

private:
    DType type_ = DType::F32;
    int64_t n_tok_ = 0, cols_ = 0;
    size_t row_bytes_ = 0;
    size_t grouped_row_bytes_ = 0;
    std::vector<uint8_t, std::allocator<uint8_t>> buf_;
    std::vector<uint8_t, std::allocator<uint8_t>> grouped_;
};

// y[t * y_stride + r] = sum_c W[r][c] * x[t][c]  for t < x.n_tok(), r in [row_begin, row_end).
// Single-threaded; callers partition rows across threads.
void matmul_rows(const Matrix& W, const Activations& x, float* y, int64_t y_stride, int64_t row_begin,
                 int64_t row_end);

// Whole product, threaded over rows with OpenMP (runs single-threaded when
// called from inside a parallel region). y_stride = W.rows when 0.
void matmul(const Matrix& W, const Activations& x, float* y, int64_t y_stride = 0);
// Convenience: prepares the activations internally (allocates).
void matmul(const Matrix& W, const float* x, int64_t n_tok, float* y);

// out[s * out_stride + c] = sum_r p[s * p_stride + r] * W[r * w_stride + c]
// for s < n_sets and c in [col_begin, col_end), with F16 rows W (attention:
// the softmax weights of each head applied to its key rows). The sum runs
// over r in order. Single-threaded; callers partition the columns.
void weighted_rows_f16(const uint16_t* W, int64_t w_stride, int64_t n_rows, const float* p, int64_t p_stride,
                       int64_t n_sets, float* out, int64_t out_stride, int64_t col_begin, int64_t col_end);

// Reference: dequantize W and the prepared activations and accumulate in
// double. Tests compare every ISA path against it.
void matmul_reference(const Matrix& W, const Activations& x, float* y, int64_t y_stride = 0);

}  // namespace ds4::kernels
