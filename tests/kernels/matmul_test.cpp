// Matrix kernels of the ISA selected by DS4_CPU_ISA (CTest runs this binary
// once per ISA): every weight type against the double-precision reference,
// batch invariance, threading, activation quantizers and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.hpp"
#include "ds4/error.hpp"
#include "kernels/kernel_table.hpp"
#include "kernels/matmul.hpp"
#include "quant/quant.hpp"

using namespace ds4;
using namespace ds4::kernels;
using namespace ds4::quant;

namespace {

// Skip (with the reason) when the requested ISA is not available here.
#define REQUIRE_ISA()                                                                                           \
    do {                                                                                                        \
        const char* want = std::getenv("DS4_CPU_ISA");                                                          \
        if (want && std::string(want) == "avx512" && !isa_supported(Isa::Avx512))                               \
            GTEST_SKIP() << "this CPU lacks AVX-512 (F/BW/VL/DQ/VNNI)";                                         \
        if (want && std::string(want) == "avx2" && !isa_supported(Isa::Avx2))                                  \
            GTEST_SKIP() << "this CPU lacks AVX2+FMA+F16C";                                                     \
    } while (0)

// Random but valid rows of `type`: random quant bytes with realistic scales.
std::vector<uint8_t> random_rows(DType type, int64_t rows, int64_t cols, std::mt19937_64& rng) {
    const size_t rb = row_bytes(type, cols);
    std::vector<uint8_t> buf(rb * static_cast<size_t>(rows));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ud(0.5f, 1.5f);
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    for (int64_t r = 0; r < rows; ++r) {
        uint8_t* row = buf.data() + rb * static_cast<size_t>(r);
        switch (type) {
            case DType::F32: {
                auto* f = reinterpret_cast<float*>(row);
                for (int64_t i = 0; i < cols; ++i) f[i] = nd(rng);
                break;
            }
            case DType::F16: {
                auto* h = reinterpret_cast<uint16_t*>(row);
                for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_f16(nd(rng));
                break;
            }
            case DType::BF16: {
                auto* h = reinterpret_cast<uint16_t*>(row);
                for (int64_t i = 0; i < cols; ++i) h[i] = f32_to_bf16(nd(rng));
                break;
            }
            case DType::Q8_0: {
                auto* b = reinterpret_cast<BlockQ8_0*>(row);
                for (int64_t i = 0; i < cols / kQK8_0; ++i) {
                    b[i].d = f32_to_f16(0.01f * ud(rng));
                    for (auto& q : b[i].qs) q = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
                }
                break;
            }
            case DType::Q2_K: {
                auto* b = reinterpret_cast<BlockQ2_K*>(row);
                for (int64_t i = 0; i < cols / kQK_K; ++i) {
                    b[i].d = f32_to_f16(0.02f * ud(rng));
                    b[i].dmin = f32_to_f16(0.01f * ud(rng));
                }
                break;
            }
            case DType::Q4_K: {
                auto* b = reinterpret_cast<BlockQ4_K*>(row);
                for (int64_t i = 0; i < cols / kQK_K; ++i) {
                    b[i].d = f32_to_f16(0.005f * ud(rng));
                    b[i].dmin = f32_to_f16(0.005f * ud(rng));
                }
                break;
            }
            case DType::IQ2_XXS: {
                auto* b = reinterpret_cast<BlockIQ2_XXS*>(row);
                for (int64_t i = 0; i < cols / kQK_K; ++i) b[i].d = f32_to_f16(0.01f * ud(rng));
                break;
            }
            default: ADD_FAILURE() << "type";
        }
    }
    return buf;
}

std::vector<float> random_x(int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    return x;
}

// |y - ref| <= tol * sum_c |w_c x_c| for every output (the error of a dot
// product scales with the sum of magnitudes of its terms).
void expect_close(const Matrix& W, const Activations& a, const std::vector<float>& y, const std::vector<float>& ref,
                  double tol, const char* what) {
    std::vector<float> w(static_cast<size_t>(W.cols)), x(static_cast<size_t>(W.cols));
    int bad = 0;
    for (int64_t t = 0; t < a.n_tok(); ++t) {
        dequantize_row(a.type(), a.row(t), x.data(), W.cols);
        for (int64_t r = 0; r < W.rows; ++r) {
            dequantize_row(W.type, static_cast<const uint8_t*>(W.data) + static_cast<size_t>(r) * W.row_bytes, w.data(), W.cols);
            double mag = 0;
            for (int64_t c = 0; c < W.cols; ++c) mag += std::fabs(double(w[static_cast<size_t>(c)]) * x[static_cast<size_t>(c)]);
            const size_t i = static_cast<size_t>(t * W.rows + r);
            if (!(std::fabs(double(y[i]) - ref[i]) <= tol * mag + 1e-30) && bad++ < 5)
                ADD_FAILURE() << what << " row " << r << " token " << t << ": " << y[i] << " vs " << ref[i]
                              << " (magnitude " << mag << ")";
        }
    }
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q2_K, DType::Q4_K, DType::IQ2_XXS};

}  // namespace

TEST(Kernels, ActiveIsaFollowsTheEnvironment) {
    REQUIRE_ISA();
    const char* want = std::getenv("DS4_CPU_ISA");
    if (!want) GTEST_SKIP() << "DS4_CPU_ISA not set";
    EXPECT_STREQ(isa_name(active_isa()), want);
}

TEST(Kernels, EveryTypeMatchesTheReference) {
    REQUIRE_ISA();
    std::mt19937_64 rng(1);
    for (DType type : kTypes) {
        std::vector<int64_t> widths = {256, 512, 2048};
        if (dtype_info(static_cast<uint32_t>(type))->block_elems < 256) widths.insert(widths.end(), {32, 96, 160, 4128});
        for (int64_t cols : widths) {
            const int64_t rows = 37;
            auto buf = random_rows(type, rows, cols, rng);
            const Matrix W = Matrix::make(type, buf.data(), rows, cols);
            for (int64_t n : {1, 2, 3, 7, 16, 64}) {
                const auto x = random_x(n * cols, rng);
                Activations a;
                a.prepare(type, x.data(), n, cols);
                std::vector<float> y(static_cast<size_t>(n * rows)), ref(y.size());
                matmul(W, a, y.data());
                matmul_reference(W, a, ref.data());
                // f32 accumulation of up to 2048 terms: a few ulps of the magnitude sum.
                expect_close(W, a, y, ref, 1e-5, std::string(dtype_name(type)).c_str());
            }
        }
    }
}

// The IQ2_XXS kernel for AVX-512 CPUs without VBMI/BITALG: the table above
// uses it only on such CPUs, so it is called here directly.
TEST(Kernels, Avx512IQ2XXSWithoutVbmiMatchesTheReference) {
    if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "this CPU lacks AVX-512 (F/BW/VL/DQ/VNNI)";
    const detail::RowsKernel kernel = detail::avx512_iq2_xxs_without_vbmi();
    std::mt19937_64 rng(11);
    for (int64_t cols : {256, 512, 2048}) {
        const int64_t rows = 13;
        auto buf = random_rows(DType::IQ2_XXS, rows, cols, rng);
        const Matrix W = Matrix::make(DType::IQ2_XXS, buf.data(), rows, cols);
        for (int64_t n : {1, 3, 8, 17}) {
            const auto x = random_x(n * cols, rng);
            Activations a;
            a.prepare(DType::IQ2_XXS, x.data(), n, cols);
            std::vector<float> y(static_cast<size_t>(n * rows)), ref(y.size());
            kernel(W, a, y.data(), rows, 0, rows);
            matmul_reference(W, a, ref.data());
            expect_close(W, a, y, ref, 1e-5, "IQ2_XXS without VBMI");
        }
    }
}

// The grouped copy of Q8_K activations holds the documented permutation of
// each row's quants, then the blocks' scales.
TEST(Kernels, Q8KGroupedRowsPermuteTheQuants) {
    REQUIRE_ISA();
    std::mt19937_64 rng(12);
    const int64_t n = 3, cols = 768, nb = cols / kQK_K;
    const auto x = random_x(n * cols, rng);
    Activations a;
    a.prepare(DType::Q2_K, x.data(), n, cols);
    for (int64_t t = 0; t < n; ++t) {
        const auto* blocks = reinterpret_cast<const BlockQ8_K*>(a.row(t));
        const int8_t* g = a.q8_K_grouped_row(t);
        for (int64_t b = 0; b < nb; ++b) {
            for (int j = 0; j < 4; ++j)
                for (int s = 0; s < 8; ++s)
                    for (int e = 0; e < 8; ++e)
                        ASSERT_EQ(g[b * kQK_K + 64 * j + 8 * s + e], blocks[b].qs[32 * s + 8 * j + e])
                            << "token " << t << " block " << b << " piece " << j << " sub-block " << s;
            float d;
            std::memcpy(&d, g + nb * kQK_K + b * 4, sizeof d);
            EXPECT_EQ(d, blocks[b].d);
            EXPECT_EQ(a.q8_K_grouped_scales(t) + b, reinterpret_cast<const float*>(g + nb * kQK_K) + b);
        }
    }
}

TEST(Kernels, OddFloatWidths) {
    REQUIRE_ISA();
    std::mt19937_64 rng(2);
    for (DType type : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t cols : {1, 7, 9, 33, 100}) {
            auto buf = random_rows(type, 5, cols, rng);
            const Matrix W = Matrix::make(type, buf.data(), 5, cols);
            const auto x = random_x(2 * cols, rng);
            Activations a;
            a.prepare(type, x.data(), 2, cols);
            std::vector<float> y(10), ref(10);
            matmul(W, a, y.data());
            matmul_reference(W, a, ref.data());
            expect_close(W, a, y, ref, 1e-5, "odd width");
        }
    }
}

TEST(Kernels, BatchAndRowRangeInvariance) {
    REQUIRE_ISA();
    std::mt19937_64 rng(3);
    for (DType type : kTypes) {
        const int64_t rows = 45, cols = 512, n = 9;
        auto buf = random_rows(type, rows, cols, rng);
        const Matrix W = Matrix::make(type, buf.data(), rows, cols);
        const auto x = random_x(n * cols, rng);
        Activations all;
        all.prepare(type, x.data(), n, cols);
        std::vector<float> y(static_cast<size_t>(n * rows));
        matmul(W, all, y.data());
        for (int64_t t = 0; t < n; ++t) {
            Activations one;
            one.prepare(type, x.data() + t * cols, 1, cols);
            std::vector<float> y1(static_cast<size_t>(rows));
            // Odd row ranges, one at a time.
            for (int64_t r0 = 0; r0 < rows;) {
                const int64_t r1 = std::min(rows, r0 + 1 + (r0 % 5));
                matmul_rows(W, one, y1.data(), rows, r0, r1);
                r0 = r1;
            }
            for (int64_t r = 0; r < rows; ++r)
                ASSERT_EQ(std::memcmp(&y1[static_cast<size_t>(r)], &y[static_cast<size_t>(t * rows + r)], 4), 0)
                    << dtype_name(type) << " row " << r << " token " << t;
        }
    }
}

TEST(Kernels, SimdMatchesScalar) {
    REQUIRE_ISA();
    const Isa mine = active_isa();
    std::mt19937_64 rng(4);
    for (DType type : kTypes) {
        const int64_t rows = 19, cols = 1024, n = 5;
        auto buf = random_rows(type, rows, cols, rng);
        const Matrix W = Matrix::make(type, buf.data(), rows, cols);
        const auto x = random_x(n * cols, rng);
        Activations a;
        a.prepare(type, x.data(), n, cols);
        std::vector<float> ys(static_cast<size_t>(n * rows)), yi(ys.size());
        set_active_isa(Isa::Scalar);
        matmul(W, a, ys.data());
        set_active_isa(mine);
        matmul(W, a, yi.data());
        expect_close(W, a, yi, ys, 1e-5, "simd vs scalar");
    }
}

TEST(Kernels, ActivationQuantizersKnownAnswers) {
    // Q8_0: d = amax / 127, q = x / d rounded to nearest even (spec 6.1, lrintf).
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;  // d = 1 exactly
    x[1] = -63.5f;  // a tie: rounds to the even -64
    x[2] = 0.5f;    // a tie: rounds to the even 0
    x[4] = 2.5f;    // a tie: rounds to the even 2
    BlockQ8_0 b;
    quantize_row_q8_0(x.data(), &b, 32);
    EXPECT_EQ(f16_to_f32(b.d), 1.0f);
    EXPECT_EQ(b.qs[0], 127);
    EXPECT_EQ(b.qs[1], -64);
    EXPECT_EQ(b.qs[2], 0);
    EXPECT_EQ(b.qs[3], 0);
    EXPECT_EQ(b.qs[4], 2);

    // Q8_K: scale = -127 / (the value of largest magnitude), so that value
    // becomes -127 and d = 1 / scale carries the sign.
    std::vector<float> v(256);
    for (int i = 0; i < 256; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i % 16) - 8.0f;  // largest: -8
    BlockQ8_K k;
    quantize_row_q8_K(v.data(), &k, 256);
    EXPECT_FLOAT_EQ(k.d, 8.0f / 127.0f);
    EXPECT_EQ(k.qs[0], -127);  // -8 * (127/8)
    EXPECT_EQ(k.qs[1], -111);  // -7 * 15.875 = -111.125
    EXPECT_EQ(k.qs[8], 0);
    EXPECT_EQ(k.qs[15], 111);
    std::vector<float> pos(256, 1.0f);
    pos[3] = 8.0f;  // largest is positive: it maps to -127 and d is negative
    BlockQ8_K kp;
    quantize_row_q8_K(pos.data(), &kp, 256);
    EXPECT_FLOAT_EQ(kp.d, -8.0f / 127.0f);
    EXPECT_EQ(kp.qs[3], -127);
    EXPECT_EQ(kp.qs[0], -16);  // 1 * -15.875 rounds to -16
    for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int j = 0; j < 16; ++j) s += k.qs[16 * g + j];
        EXPECT_EQ(k.bsums[g], s);
    }
    std::vector<float> zero(256, 0.0f);
    quantize_row_q8_K(zero.data(), &k, 256);
    EXPECT_EQ(k.d, 0.0f);
    for (int16_t s : k.bsums) EXPECT_EQ(s, 0);

    // A subnormal scale: 2e-43 / 127 rounds to the smallest subnormal, so
    // x / d would be 143; the quants stay within [-127, 127].
    std::vector<float> tiny(32, 0.0f);
    tiny[0] = 2e-43f;
    tiny[1] = -2e-43f;
    tiny[2] = 1.4e-45f;
    BlockQ8_0 bt;
    quantize_row_q8_0(tiny.data(), &bt, 32);
    EXPECT_EQ(bt.qs[0], 127);
    EXPECT_EQ(bt.qs[1], -127);
    EXPECT_EQ(bt.qs[2], 1);
    // Q8_K: -127 / 1e-39 overflows, so the block is stored as zeros.
    std::vector<float> tinyk(256, 1e-39f);
    quantize_row_q8_K(tinyk.data(), &k, 256);
    EXPECT_EQ(k.d, 0.0f);
    for (int8_t q : k.qs) EXPECT_EQ(q, 0);

    x[5] = std::nanf("");
    EXPECT_THROW(quantize_row_q8_0(x.data(), &b, 32), Error);
    v[7] = INFINITY;
    EXPECT_THROW(quantize_row_q8_K(v.data(), &k, 256), Error);
}

// Inputs that exercise every branch of the activation quantizers: blocks of
// normal values at scales from 1e-30 to 1e30, exact rounding ties, the largest
// magnitude present with both signs, zeros, negative zeros, subnormals (also
// with a subnormal Q8_0 scale), values near FLT_MAX and one-hot blocks.
std::vector<float> quantizer_inputs(int64_t n, std::mt19937_64& rng) {
    std::vector<float> x = random_x(n, rng);
    std::uniform_int_distribution<int> pick(0, 10), exp10(-30, 30), pos(0, 255);
    for (int64_t b = 0; b < n / 256; ++b) {
        float* v = x.data() + b * 256;
        switch (pick(rng)) {
            case 0: for (int j = 0; j < 256; ++j) v[j] *= std::pow(10.0f, static_cast<float>(exp10(rng))); break;
            case 1:  // halves of the Q8_0 step (amax 127): every value a tie or an integer
                for (int j = 0; j < 256; ++j) v[j] = static_cast<float>(static_cast<int>(v[j] * 40.0f)) * 0.5f;
                for (int j = 0; j < 256; j += 32) v[j] = 127.0f;
                break;
            case 2: {  // the largest magnitude twice, with opposite signs, first one negative or positive
                const float m = 10.0f * (pick(rng) < 5 ? 1.0f : -1.0f);
                const int p1 = pos(rng), p2 = pos(rng);
                v[p1] = m;
                v[p2] = -m;
                break;
            }
            case 3: for (int j = 0; j < 256; ++j) v[j] = (j % 3 == 0) ? -0.0f : 0.0f; break;
            case 4: for (int j = 0; j < 256; ++j) v[j] *= 1e-40f; break;  // subnormal
            case 5: for (int j = 0; j < 256; ++j) v[j] *= 3e37f; break;   // up to about FLT_MAX / 4
            case 6: for (int j = 0; j < 256; ++j) v[j] = 0.0f; v[pos(rng)] = -0.75f; break;
            case 7:  // Q8_0 scale 2e-43 / 127 rounds to one subnormal step: x / d reaches 143, clamped
                for (int j = 0; j < 256; ++j) v[j] = (j % 32 == 0) ? 2e-43f : v[j] * 6e-44f;
                break;
            default: break;
        }
    }
    return x;
}

TEST(Kernels, ActivationQuantizersMatchScalarBitForBit) {
    REQUIRE_ISA();
    const Isa mine = active_isa();
    std::mt19937_64 rng(11);
    const int64_t n_tok = 8, cols = 4096;
    const auto x = quantizer_inputs(n_tok * cols, rng);
    for (DType weight : {DType::Q8_0, DType::Q4_K}) {  // Q8_0 and Q8_K activations
        Activations simd, scalar;
        simd.prepare(weight, x.data(), n_tok, cols);
        set_active_isa(Isa::Scalar);
        scalar.prepare(weight, x.data(), n_tok, cols);
        set_active_isa(mine);
        for (int64_t t = 0; t < n_tok; ++t)
            for (size_t i = 0; i < simd.row_bytes(); ++i)
                ASSERT_EQ(simd.row(t)[i], scalar.row(t)[i])
                    << dtype_name(simd.type()) << " token " << t << " byte " << i << " (" << isa_name(mine) << ")";
    }
    // NaN and infinity are refused by every ISA, with the scalar message.
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
        auto y = x;
        y[static_cast<size_t>(cols + 777)] = bad;
        for (DType weight : {DType::Q8_0, DType::Q2_K}) {
            Activations a;
            try {
                a.prepare(weight, y.data(), n_tok, cols);
                FAIL() << "no error for " << bad << " with " << dtype_name(weight) << " weights";
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find("NaN or infinity"), std::string::npos) << e.what();
            }
        }
    }
}

TEST(Kernels, ShapeAndTypeErrors) {
    std::vector<uint8_t> buf(4096);
    EXPECT_THROW(Matrix::make(DType::Q4_K, buf.data(), 1, 100), Error);   // not whole blocks
    EXPECT_THROW(Matrix::make(DType::Q5_K, buf.data(), 1, 256), Error);   // no kernels
    EXPECT_THROW(Matrix::make(DType::F32, buf.data(), -1, 4), Error);
    const Matrix W = Matrix::make(DType::Q8_0, buf.data(), 2, 64);
    std::vector<float> x(128, 1.0f), y(4);
    Activations wrong_width;
    wrong_width.prepare(DType::Q8_0, x.data(), 1, 128);
    EXPECT_THROW(matmul(W, wrong_width, y.data()), Error);
    Activations wrong_type;
    wrong_type.prepare(DType::F32, x.data(), 1, 64);
    EXPECT_THROW(matmul(W, wrong_type, y.data()), Error);
    Activations ok;
    ok.prepare(DType::Q8_0, x.data(), 1, 64);
    EXPECT_THROW(matmul_rows(W, ok, y.data(), 2, 1, 3), Error);
}

TEST(Kernels, ThreadedEqualsSingleThreaded) {
    REQUIRE_ISA();
    std::mt19937_64 rng(5);
    const int64_t rows = 1000, cols = 1024, n = 3;
    auto buf = random_rows(DType::Q4_K, rows, cols, rng);
    const Matrix W = Matrix::make(DType::Q4_K, buf.data(), rows, cols);
    const auto x = random_x(n * cols, rng);
    Activations a;
    a.prepare(DType::Q4_K, x.data(), n, cols);
    std::vector<float> y1(static_cast<size_t>(n * rows)), y2(y1.size());
    matmul_rows(W, a, y1.data(), rows, 0, rows);
    matmul(W, a, y2.data());
    EXPECT_EQ(y1, y2);
}

// Attention's weighted sum of F16 key rows: against a double-precision sum,
// the same value for a column whatever range or set count it is computed in,
// and bad shapes rejected.
TEST(Kernels, WeightedRowsF16) {
    REQUIRE_ISA();
    std::mt19937_64 rng(21);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (const int64_t cols : {512, 100, 7}) {
        const int64_t rows = 37, sets = 11, stride = cols + 3;
        std::vector<uint16_t> W(static_cast<size_t>(rows * stride));
        for (auto& w : W) w = f32_to_f16(nd(rng));
        std::vector<float> p(static_cast<size_t>(sets * rows));
        for (auto& v : p) v = nd(rng);
        std::vector<float> out(static_cast<size_t>(sets * cols), NAN), part(out.size(), NAN);
        weighted_rows_f16(W.data(), stride, rows, p.data(), rows, sets, out.data(), cols, 0, cols);
        for (int64_t s = 0; s < sets; ++s)
            for (int64_t c = 0; c < cols; ++c) {
                double ref = 0, mag = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    const double term = double(p[s * rows + r]) * f16_to_f32(W[r * stride + c]);
                    ref += term;
                    mag += std::fabs(term);
                }
                ASSERT_NEAR(out[s * cols + c], ref, 1e-6 * mag + 1e-6) << "cols " << cols << " set " << s << " col " << c;
            }
        // Odd column ranges and one set at a time give the same bits.
        for (int64_t cb = 0; cb < cols;) {
            const int64_t ce = std::min(cols, cb + 1 + (cb * 7) % 41);
            for (int64_t s = 0; s < sets; ++s)
                weighted_rows_f16(W.data(), stride, rows, &p[s * rows], rows, 1, &part[s * cols], cols, cb, ce);
            cb = ce;
        }
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], part[i]) << "cols " << cols << " index " << i;
    }
    std::vector<uint16_t> W(64);
    std::vector<float> p(8), out(64);
    EXPECT_THROW(weighted_rows_f16(W.data(), 8, 8, p.data(), 8, 1, out.data(), 8, 0, 9), Error);  // past the row
    EXPECT_THROW(weighted_rows_f16(W.data(), 8, 8, p.data(), 4, 1, out.data(), 8, 0, 8), Error);  // p rows too short
    EXPECT_THROW(weighted_rows_f16(W.data(), 8, 8, p.data(), 8, 1, out.data(), 8, 5, 2), Error);  // reversed range
}
