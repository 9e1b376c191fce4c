// Quantized types: known-answer blocks, round-trip error of the reference
// quantizers, stability of requantization, importance weighting, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.hpp"
#include "ds4/error.hpp"
#include "quant/iq2xxs_tables.hpp"
#include "quant/quant.hpp"

using namespace ds4;
using namespace ds4::quant;

namespace {

std::vector<float> gaussian(int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = nd(rng);
    return v;
}

std::vector<float> round_trip(DType t, const std::vector<float>& x, const float* importance = nullptr) {
    std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
    quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()), importance);
    std::vector<float> y(x.size());
    dequantize_row(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
    return y;
}

// RMSE relative to the RMS of the data (optionally importance-weighted).
double rel_rmse(const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>* w = nullptr) {
    double e = 0, s = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double wi = w ? (*w)[i] : 1.0;
        e += wi * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        s += wi * double(x[i]) * x[i];
    }
    return std::sqrt(e / s);
}

}  // namespace

TEST(QuantKnownAnswers, Q8_0) {
    BlockQ8_0 b{};
    b.d = f32_to_f16(0.5f);
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
    float y[32];
    dequantize_row(DType::Q8_0, &b, y, 32);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 16));
}

TEST(QuantKnownAnswers, Q4_K) {
    BlockQ4_K b{};
    b.d = f32_to_f16(2.0f);
    b.dmin = f32_to_f16(1.0f);
    // Sub-block 0: scale 3, min 5; sub-block 5: scale 33 (high bits 2), min 17 (high bits 1).
    b.scales[0] = 3;
    b.scales[4] = 5;
    b.scales[5 + 4] = static_cast<uint8_t>((33 & 15) | ((17 & 15) << 4));
    b.scales[5 - 4] |= static_cast<uint8_t>((33 >> 4) << 6);
    b.scales[5] |= static_cast<uint8_t>((17 >> 4) << 6);
    b.qs[0] = 0x97;       // value 0: low nibble 7; value 32: high nibble 9
    b.qs[64 + 1] = 0xA0;  // chunk 2, byte 1: value 161 (sub-block 5) = high nibble 10
    float y[256];
    dequantize_row(DType::Q4_K, &b, y, 256);
    EXPECT_EQ(y[0], 2.0f * 3 * 7 - 1.0f * 5);
    EXPECT_EQ(y[32], 2.0f * 0 * 9 - 0.0f);  // sub-block 1 has scale 0, min 0
    EXPECT_EQ(y[161], 2.0f * 33 * 10 - 1.0f * 17);
}

// The whole-block unpacking the SIMD kernels use gives the same 6-bit scale
// and min per sub-block as the per-sub-block definition, for every bit pattern
// of each byte position.
TEST(QuantKnownAnswers, Q4_KScalesUnpackedTogetherMatchOneByOne) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 2000; ++trial) {
        uint8_t packed[12];
        for (auto& b : packed) b = static_cast<uint8_t>(rng());
        if (trial < 256)
            for (auto& b : packed) b = static_cast<uint8_t>(trial);
        uint64_t scales = 0, mins = 0;
        q4_K_scales_mins(packed, &scales, &mins);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc = 0, mn = 0;
            q4_K_scale_min(j, packed, &sc, &mn);
            ASSERT_EQ(sc, static_cast<uint8_t>(scales >> (8 * j))) << "sub-block " << j << " trial " << trial;
            ASSERT_EQ(mn, static_cast<uint8_t>(mins >> (8 * j))) << "sub-block " << j << " trial " << trial;
        }
    }
}

TEST(QuantKnownAnswers, Q2_K) {
    BlockQ2_K b{};
    b.d = f32_to_f16(0.5f);
    b.dmin = f32_to_f16(0.25f);
    b.scales[0] = 0x21;   // sub-block 0: scale 1, min 2
    b.scales[11] = 0x3F;  // sub-block 11: scale 15, min 3 (values 176..191: half 1, pass 1, bytes 16..31)
    b.qs[0] = 0b11100100;  // value 0: 0, value 32: 1, value 64: 2, value 96: 3
    b.qs[32 + 16] = 0b00001100;  // value 128+32+16 = 176: (byte >> 2) & 3 = 3
    float y[256];
    dequantize_row(DType::Q2_K, &b, y, 256);
    EXPECT_EQ(y[0], 0.5f * 1 * 0 - 0.25f * 2);
    EXPECT_EQ(y[176], 0.5f * 15 * 3 - 0.25f * 3);
}

TEST(QuantKnownAnswers, IQ2_XXS) {
    // The standard grid (values are the magnitudes 8, 25, 43 per element).
    EXPECT_EQ(kIq2xxsGrid[0], 0x0808080808080808ull);
    EXPECT_EQ(kIq2xxsGrid[1], 0x080808080808082bull);
    EXPECT_EQ(kIq2xxsGrid[99], 0x08192b0808080819ull);
    EXPECT_EQ(kIq2xxsGrid[255], 0x2b2b2b1908081908ull);
    for (int i = 0; i < 128; ++i) EXPECT_EQ(__builtin_popcount(kIq2Signs[static_cast<size_t>(i)]) % 2, 0);

    BlockIQ2_XXS b{};
    b.d = f32_to_f16(1.0f);
    // Sub-block 0: entries 1, 99, 255, 0; sign index 3 on the first group
    // (elements 0 and 1 negative); scale nibble 5: db = (2*5+1)/8.
    const uint32_t idx = 1u | (99u << 8) | (255u << 16);
    const uint32_t aux = 3u | (5u << 28);
    std::memcpy(&b.qs[0], &idx, 4);
    std::memcpy(&b.qs[2], &aux, 4);
    float y[256];
    dequantize_row(DType::IQ2_XXS, &b, y, 256);
    const float db = 11.0f / 8.0f;
    EXPECT_EQ(y[0], -db * 43);  // entry 1, byte 0 = 0x2b
    EXPECT_EQ(y[1], -db * 8);
    EXPECT_EQ(y[2], db * 8);
    EXPECT_EQ(y[8], db * 25);   // entry 99, byte 0 = 0x19
    EXPECT_EQ(y[10], db * 8);
    EXPECT_EQ(y[13], db * 43);  // entry 99, byte 5 = 0x2b
    EXPECT_EQ(y[16], db * 8);   // entry 255, byte 0 = 0x08
    EXPECT_EQ(y[23], db * 43);
    EXPECT_EQ(y[24], db * 8);   // entry 0
    EXPECT_EQ(y[32], 0.125f * 8);  // sub-block 1: all-zero words = entry 0 (all 8), scale nibble 0 -> d/8
}

TEST(QuantRoundTrip, RelativeErrorPerType) {
    const auto x = gaussian(256 * 64, 1);
    struct Bound {
        DType t;
        double max_rel;
    };
    // Bounds from measurement with margin (printed below); a broken quantizer
    // (wrong scale, wrong packing) lands far above them.
    const Bound bounds[] = {{DType::F16, 1e-3},  {DType::BF16, 5e-3}, {DType::Q8_0, 0.01},
                            {DType::Q4_K, 0.11}, {DType::Q2_K, 0.40}, {DType::IQ2_XXS, 0.45}};
    for (const auto& b : bounds) {
        const double r = rel_rmse(x, round_trip(b.t, x));
        std::printf("  %-8s relative RMSE %.4f\n", std::string(dtype_name(b.t)).c_str(), r);
        EXPECT_LT(r, b.max_rel) << dtype_name(b.t);
        EXPECT_GT(r, 0.0) << dtype_name(b.t);
    }
    EXPECT_EQ(rel_rmse(x, round_trip(DType::F32, x)), 0.0);
}

TEST(QuantRoundTrip, RequantizingIsStable) {
    // Quantizing the dequantized values again gives the same values (the
    // blocks may differ only where two codes decode to the same value).
    const auto x = gaussian(256 * 8, 2);
    for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_K, DType::Q2_K, DType::IQ2_XXS}) {
        const auto y1 = round_trip(t, x);
        const auto y2 = round_trip(t, y1);
        const double r = rel_rmse(y1, y2);
        EXPECT_LT(r, t == DType::IQ2_XXS || t == DType::Q2_K ? 0.02 : 1e-3) << dtype_name(t) << " drift " << r;
        const auto y3 = round_trip(t, y2);
        EXPECT_LE(rel_rmse(y2, y3), r + 1e-12) << dtype_name(t);
    }
}

TEST(QuantRoundTrip, ImportanceLowersTheWeightedError) {
    const auto x = gaussian(256 * 32, 3);
    std::vector<float> w(x.size());
    std::mt19937_64 rng(4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (rng() % 8 == 0) ? 20.0f : 0.2f;  // few important values
    for (DType t : {DType::Q4_K, DType::Q2_K, DType::IQ2_XXS}) {
        const double plain = rel_rmse(x, round_trip(t, x), &w);
        const double weighted = rel_rmse(x, round_trip(t, x, w.data()), &w);
        std::printf("  %-8s weighted RMSE plain %.4f, with importance %.4f\n", std::string(dtype_name(t)).c_str(), plain,
                    weighted);
        EXPECT_LT(weighted, plain) << dtype_name(t);
    }
}

TEST(QuantRoundTrip, Deterministic) {
    const auto x = gaussian(256 * 4, 5);
    for (DType t : {DType::Q4_K, DType::Q2_K, DType::IQ2_XXS}) {
        std::vector<uint8_t> a(row_bytes(t, 1024)), b(a.size());
        quantize_row(t, x.data(), a.data(), 1024);
        quantize_row(t, x.data(), b.data(), 1024);
        EXPECT_EQ(a, b);
    }
}

TEST(QuantErrors, BadInputIsRejected) {
    std::vector<float> x(256, 1.0f);
    std::vector<uint8_t> q(1024);
    EXPECT_THROW(quantize_row(DType::Q4_K, x.data(), q.data(), 100), Error);
    EXPECT_THROW(quantize_row(DType::Q5_K, x.data(), q.data(), 256), Error);
    EXPECT_THROW(quantize_row(DType::Q8_K, x.data(), q.data(), 256), Error);
    x[17] = std::nanf("");
    EXPECT_THROW(quantize_row(DType::IQ2_XXS, x.data(), q.data(), 256), Error);
    x[17] = 1e6f;
    EXPECT_THROW(quantize_row(DType::F16, x.data(), q.data(), 256), Error);
    x[17] = 1.0f;
    std::vector<float> bad(256, 1.0f);
    bad[3] = -1.0f;
    EXPECT_THROW(quantize_row(DType::Q2_K, x.data(), q.data(), 256, bad.data()), Error);
    EXPECT_THROW(dequantize_row(DType::Q5_K, q.data(), x.data(), 256), Error);
}
