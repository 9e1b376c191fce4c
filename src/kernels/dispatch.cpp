// Run-time choice of the kernel implementation, activation preparation and
// the threaded product.
#include <cpuid.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "kernels/kernel_table.hpp"
#include "kernels/matmul.hpp"
#include "quant/quant.hpp"

namespace ds4::kernels {

using ds4::detail::fail;

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
    }
    return "?";
}

namespace {

// CPUID.1:ECX.F16C (clang before 16 has no __builtin_cpu_supports("f16c")).
bool has_f16c() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

}  // namespace

bool isa_supported(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return true;
        case Isa::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
        case Isa::Avx512:
            // The AVX-512 kernels use the BW/VL/DQ instructions and VNNI dot products.
            return isa_supported(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vnni");
    }
    return false;
}

Isa detected_isa() {
    if (isa_supported(Isa::Avx512)) return Isa::Avx512;
    if (isa_supported(Isa::Avx2)) return Isa::Avx2;
    return Isa::Scalar;
}

namespace {

Isa isa_from_env() {
    const char* env = std::getenv("DS4_CPU_ISA");
    if (!env || !*env) return detected_isa();
    const std::string v = env;
    Isa want;
    if (v == "scalar") want = Isa::Scalar;
    else if (v == "avx2") want = Isa::Avx2;
    else if (v == "avx512") want = Isa::Avx512;
    else fail(ErrorCode::InvalidArgument, "DS4_CPU_ISA='%s' is not one of scalar, avx2, avx512", env);
    if (!isa_supported(want))
        fail(ErrorCode::InvalidArgument, "DS4_CPU_ISA=%s: this CPU does not support it (best: %s)", env,
             isa_name(detected_isa()));
    return want;
}

struct ActiveIsa {
    Isa isa = isa_from_env();
};

ActiveIsa& active() {
    static ActiveIsa a;
    return a;
}

const detail::KernelTable& table(Isa isa) {
    switch (isa) {
        case Isa::Avx512: return detail::avx512_kernels();
        case Isa::Avx2: return detail::avx2_kernels();
        case Isa::Scalar: break;
    }
    return detail::scalar_kernels();
}

detail::RowsKernel kernel_for(const detail::KernelTable& t, DType type) {
    switch (type) {
        case DType::F32: return t.f32;
        case DType::F16: return t.f16;
        case DType::BF16: return t.bf16;
        case DType::Q8_0: return t.q8_0;
        case DType::Q2_K: return t.q2_K;
        case DType::Q4_K: return t.q4_K;
        case DType::IQ2_XXS: return t.iq2_xxs;
        default: return nullptr;
    }
}

bool weight_type_supported(DType type) { return kernel_for(detail::scalar_kernels(), type) != nullptr; }

}  // namespace

Isa active_isa() { return active().isa; }

void set_active_isa(Isa isa) {
    if (!isa_supported(isa)) fail(ErrorCode::InvalidArgument, "this CPU does not support the %s kernels", isa_name(isa));
    active().isa = isa;
}

Matrix Matrix::make(DType type, const void* data, int64_t rows, int64_t cols) {
    if (!weight_type_supported(type))
        fail(ErrorCode::UnsupportedModel, "no matrix kernels for type %s", std::string(dtype_name(type)).c_str());
    if (rows < 0 || cols <= 0)
        fail(ErrorCode::InvalidArgument, "matrix shape %lld x %lld is invalid", static_cast<long long>(rows),
             static_cast<long long>(cols));
    Matrix m;
    m.type = type;
    m.data = data;
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = quant::row_bytes(type, cols);  // throws when cols is not a whole number of blocks
    return m;
}

DType activation_type(DType weight_type) {
    switch (weight_type) {
        case DType::Q8_0: return DType::Q8_0;
        case DType::Q2_K:
        case DType::Q4_K:
        case DType::IQ2_XXS: return DType::Q8_K;
        case DType::F32:
        case DType::F16:
        case DType::BF16: return DType::F32;
        default:
            fail(ErrorCode::UnsupportedModel, "no matrix kernels for type %s",
                 std::string(dtype_name(weight_type)).c_str());
    }
}

void Activations::prepare(DType weight_type, const float* x, int64_t n_tok, int64_t cols) {
    shape(weight_type, n_tok, cols);
    quantize_rows(x, 0, n_tok);
}

void Activations::shape(DType weight_type, int64_t n_tok, int64_t cols) {
    const DType t = activation_type(weight_type);
    if (n_tok < 0 || cols <= 0)
        fail(ErrorCode::InvalidArgument, "activations of %lld x %lld values", static_cast<long long>(n_tok),
             static_cast<long long>(cols));
    type_ = t;
    n_tok_ = n_tok;
    cols_ = cols;
    row_bytes_ = quant::row_bytes(t, cols);
    const size_t need = row_bytes_ * static_cast<size_t>(n_tok);
    if (buf_.size() < need) buf_.resize(need);
    grouped_row_bytes_ =
        t == DType::Q8_K ? static_cast<size_t>(cols / quant::kQK_K) * (quant::kQK_K + sizeof(float)) : 0;
    const size_t need_grouped = grouped_row_bytes_ * static_cast<size_t>(n_tok);
    if (grouped_.size() < need_grouped) grouped_.resize(need_grouped);
}

namespace {

// Q8_K quants in the grouped order of Activations::q8_K_grouped_row, then
// the blocks' scales.
void group_q8_K_quants(const quant::BlockQ8_K* blocks, int64_t n_blocks, uint8_t* out) {
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int8_t* q = blocks[b].qs;
        uint8_t* o = out + b * quant::kQK_K;
        for (int j = 0; j < 4; ++j)
            for (int s = 0; s < 8; ++s) std::memcpy(o + 64 * j + 8 * s, q + 32 * s + 8 * j, 8);
        std::memcpy(out + n_blocks * quant::kQK_K + b * static_cast<int64_t>(sizeof(float)), &blocks[b].d,
                    sizeof(float));
    }
}

}  // namespace

void Activations::quantize_rows(const float* x, int64_t begin, int64_t end) {
    if (begin < 0 || begin > end || end > n_tok_)
        fail(ErrorCode::InvalidArgument, "activation rows [%lld, %lld) of %lld", static_cast<long long>(begin),
             static_cast<long long>(end), static_cast<long long>(n_tok_));
    const detail::KernelTable& k = table(active_isa());
    for (int64_t i = begin; i < end; ++i) {
        uint8_t* dst = buf_.data() + static_cast<size_t>(i) * row_bytes_;
        const float* src = x + i * cols_;
        switch (type_) {
            case DType::Q8_0: k.quantize_q8_0(src, reinterpret_cast<quant::BlockQ8_0*>(dst), cols_); break;
            case DType::Q8_K:
                k.quantize_q8_K(src, reinterpret_cast<quant::BlockQ8_K*>(dst), cols_);
                group_q8_K_quants(reinterpret_cast<const quant::BlockQ8_K*>(dst), cols_ / quant::kQK_K,
                                  grouped_.data() + static_cast<size_t>(i) * grouped_row_bytes_);
                break;
            default: std::memcpy(dst, src, static_cast<size_t>(cols_) * sizeof(float)); break;
        }
    }
}

void matmul_rows(const Matrix& W, const Activations& x, float* y, int64_t y_stride, int64_t row_begin,
                 int64_t row_end) {
    if (W.cols != x.cols())
        fail(ErrorCode::InvalidArgument, "matmul: the matrix has %lld columns, the activations %lld",
             static_cast<long long>(W.cols), static_cast<long long>(x.cols()));
    if (x.type() != activation_type(W.type))
        fail(ErrorCode::InvalidArgument, "matmul: %s weights need %s activations, got %s",
             std::string(dtype_name(W.type)).c_str(), std::string(dtype_name(activation_type(W.type))).c_str(),
             std::string(dtype_name(x.type())).c_str());
    if (row_begin < 0 || row_end > W.rows || row_begin > row_end)
        fail(ErrorCode::InvalidArgument, "matmul: rows [%lld, %lld) outside a %lld-row matrix",
             static_cast<long long>(row_begin), static_cast<long long>(row_end), static_cast<long long>(W.rows));
    if (row_begin == row_end || x.n_tok() == 0) return;
    kernel_for(table(active_isa()), W.type)(W, x, y, y_stride ? y_stride : W.rows, row_begin, row_end);
}

void weighted_rows_f16(const uint16_t* W, int64_t w_stride, int64_t n_rows, const float* p, int64_t p_stride,
                       int64_t n_sets, float* out, int64_t out_stride, int64_t col_begin, int64_t col_end) {
    if (n_rows < 0 || n_sets < 0 || col_begin < 0 || col_begin > col_end || col_end > w_stride || p_stride < n_rows ||
        out_stride < col_end)
        fail(ErrorCode::InvalidArgument,
             "weighted_rows_f16: bad shape (rows %lld, sets %lld, columns [%lld, %lld), strides %lld/%lld/%lld)",
             static_cast<long long>(n_rows), static_cast<long long>(n_sets), static_cast<long long>(col_begin),
             static_cast<long long>(col_end), static_cast<long long>(w_stride), static_cast<long long>(p_stride),
             static_cast<long long>(out_stride));
    if (n_sets == 0 || col_begin == col_end) return;
    table(active_isa()).weighted_rows_f16(W, w_stride, n_rows, p, p_stride, n_sets, out, out_stride, col_begin, col_end);
}

void matmul(const Matrix& W, const Activations& x, float* y, int64_t y_stride) {
    if (y_stride == 0) y_stride = W.rows;
    constexpr int64_t kGrain = 16;  // rows per chunk: keeps the kernels' row tiles whole
    const int64_t chunks = (W.rows + kGrain - 1) / kGrain;
    if (omp_in_parallel() || chunks < 2) {
        matmul_rows(W, x, y, y_stride, 0, W.rows);
        return;
    }
    // Validate once on this thread (errors inside the parallel region could not propagate).
    matmul_rows(W, x, y, y_stride, 0, 0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c)
        matmul_rows(W, x, y, y_stride, c * kGrain, std::min(W.rows, (c + 1) * kGrain));
}

void matmul(const Matrix& W, const float* x, int64_t n_tok, float* y) {
    Activations a;
    a.prepare(W.type, x, n_tok, W.cols);
    matmul(W, a, y, W.rows);
}

void matmul_reference(const Matrix& W, const Activations& x, float* y, int64_t y_stride) {
    if (W.cols != x.cols()) fail(ErrorCode::InvalidArgument, "matmul_reference: column mismatch");
    if (y_stride == 0) y_stride = W.rows;
    std::vector<float> w(static_cast<size_t>(W.cols)), a(static_cast<size_t>(W.cols));
    for (int64_t t = 0; t < x.n_tok(); ++t) {
        quant::dequantize_row(x.type(), x.row(t), a.data(), W.cols);
        for (int64_t r = 0; r < W.rows; ++r) {
            quant::dequantize_row(W.type, static_cast<const uint8_t*>(W.data) + static_cast<size_t>(r) * W.row_bytes,
                                  w.data(), W.cols);
            double s = 0;
            for (int64_t c = 0; c < W.cols; ++c) s += static_cast<double>(w[static_cast<size_t>(c)]) * a[static_cast<size_t>(c)];
            y[t * y_stride + r] = static_cast<float>(s);
        }
    }
}

}  // namespace ds4::kernels
