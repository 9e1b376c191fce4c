// The CPU layer operations that run on the worker pool: several routed
// experts as two pooled jobs must give, bit for bit, what one expert at a
// time gives; attention split over the pool must equal the serial result and
// a double-precision reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/layer_ops.hpp"
#include "core/half.hpp"
#include "ds4/error.hpp"
#include "engine/ops.hpp"
#include "placement/worker_pool.hpp"
#include "quant/quant.hpp"

using namespace ds4;
using namespace ds4::engine;

namespace {

struct QuantMatrix {
    std::vector<uint8_t> bytes;
    WeightRef ref;
};

QuantMatrix quantized(DType type, int64_t rows, int64_t cols, std::mt19937_64& rng, float sd) {
    std::normal_distribution<float> nd(0.0f, sd);
    std::vector<float> f(static_cast<size_t>(rows * cols));
    for (auto& v : f) v = nd(rng);
    QuantMatrix m;
    const size_t rb = quant::row_bytes(type, cols);
    m.bytes.resize(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
        quant::quantize_row(type, &f[static_cast<size_t>(r * cols)], m.bytes.data() + rb * static_cast<size_t>(r), cols);
    m.ref.type = type;
    m.ref.data = m.bytes.data();
    m.ref.rows = rows;
    m.ref.cols = cols;
    m.ref.row_bytes = rb;
    return m;
}

std::vector<float> randn(size_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// An attention call (AttentionCall or AttentionF16Call) over N key rows.
template <class Call, class Key>
Call attention_call(const std::vector<float>& q, const Key* keys, int64_t N, int H, int hd,
                    const std::vector<float>& sinks, float* out) {
    Call c;
    c.q = q.data();
    c.keys = keys;
    c.n_rows = N;
    c.heads = H;
    c.head_dim = hd;
    c.sinks = sinks.data();
    c.scale = 1.0f / std::sqrt(float(hd));
    c.out = out;
    return c;
}

// Runs `attend(call, scratch)` without a pool into `serial` and on a pool of
// two workers into `pooled`.
template <class Call, class Attend>
void run_serial_and_pooled(Attend attend, Call c, float* serial, float* pooled) {
    CpuScratch s1;
    c.out = serial;
    attend(c, s1);
    placement::WorkerPool pool(std::vector<int>{2});
    CpuScratch s2;
    s2.pool = &pool;
    c.out = pooled;
    attend(c, s2);
}

}  // namespace

TEST(LayerOps, RoutedExpertsAsOneJobEqualOneAtATime) {
    constexpr int64_t d = 512, ff = 256;
    std::mt19937_64 rng(3);
    struct Expert {
        QuantMatrix gate, up, down;
    };
    // Gate and up of expert 2 need different activation types (Q8_0 vs Q8_K).
    const DType types[4][3] = {{DType::IQ2_XXS, DType::IQ2_XXS, DType::Q2_K},
                               {DType::Q4_K, DType::Q4_K, DType::Q8_0},
                               {DType::Q8_0, DType::Q2_K, DType::F16},
                               {DType::IQ2_XXS, DType::IQ2_XXS, DType::Q2_K}};
    std::vector<Expert> experts;
    for (const auto& t : types)
        experts.push_back({quantized(t[0], ff, d, rng, 0.05f), quantized(t[1], ff, d, rng, 0.05f),
                           quantized(t[2], d, ff, rng, 0.05f)});
    // Experts 0, 1 and 2 read the same single token (one-token decode);
    // expert 3 reads three other tokens.
    const std::vector<float> x1 = randn(d, rng), x3 = randn(3 * d, rng);
    const std::vector<float> w = {0.7f, 0.2f, 0.4f, 0.9f, 0.3f, 0.5f};
    std::vector<ExpertCall> calls(4);
    std::vector<std::vector<float>> grouped(4), single(4);
    for (size_t i = 0; i < 4; ++i) {
        ExpertCall& c = calls[i];
        c.gate = experts[i].gate.ref;
        c.up = experts[i].up.ref;
        c.down = experts[i].down.ref;
        c.n_tok = i == 3 ? 3 : 1;
        c.x = i == 3 ? x3.data() : x1.data();
        c.weights = &w[i];
        c.clamp = 7.0f;
        grouped[i].assign(static_cast<size_t>(c.n_tok * d), NAN);
        single[i].assign(static_cast<size_t>(c.n_tok * d), NAN);
    }

    placement::WorkerPool pool(std::vector<int>{2});
    CpuScratch s;
    s.pool = &pool;
    RoutedExpertsScratch buffers;
    for (int round = 0; round < 2; ++round) {  // the second round reuses the buffers
        for (size_t i = 0; i < 4; ++i) calls[i].out = grouped[i].data();
        cpu_routed_experts(calls, s, buffers);
        for (size_t i = 0; i < 4; ++i) {
            ExpertCall c = calls[i];
            c.out = single[i].data();
            cpu_routed_expert(c, s);
        }
        for (size_t i = 0; i < 4; ++i) {
            double norm = 0;
            for (size_t j = 0; j < grouped[i].size(); ++j) {
                ASSERT_EQ(grouped[i][j], single[i][j]) << "expert " << i << " value " << j;
                norm += double(single[i][j]) * single[i][j];
            }
            EXPECT_GT(norm, 0.0) << "expert " << i;
        }
    }
}

TEST(LayerOps, AttentionOnThePoolEqualsSerialAndReference) {
    constexpr int H = 20, hd = 64;  // 20 heads: two full blocks of eight and a partial one
    constexpr int64_t N = 37;
    std::mt19937_64 rng(9);
    const std::vector<float> q = randn(H * hd, rng), keys = randn(N * hd, rng), sinks = randn(H, rng);
    std::vector<float> serial(H * hd), pooled(H * hd);
    const auto c = attention_call<AttentionCall>(q, keys.data(), N, H, hd, sinks, nullptr);
    run_serial_and_pooled(cpu_attention, c, serial.data(), pooled.data());
    for (size_t i = 0; i < serial.size(); ++i) ASSERT_EQ(serial[i], pooled[i]) << i;

    for (int h = 0; h < H; ++h) {
        std::vector<double> p(N);
        double m = sinks[h];
        for (int64_t r = 0; r < N; ++r) {
            double dot = 0;
            for (int k = 0; k < hd; ++k) dot += double(q[h * hd + k]) * keys[r * hd + k];
            p[r] = dot * c.scale;
            m = std::max(m, p[r]);
        }
        double den = std::exp(sinks[h] - m);
        for (auto& v : p) den += (v = std::exp(v - m));
        for (int k = 0; k < hd; ++k) {
            double o = 0;
            for (int64_t r = 0; r < N; ++r) o += p[r] / den * keys[r * hd + k];
            EXPECT_NEAR(pooled[h * hd + k], o, 1e-5 + 1e-5 * std::fabs(o)) << "head " << h << " dim " << k;
        }
    }
}

TEST(LayerOps, F16AttentionMatchesF32AttentionAndIgnoresThePool) {
    std::mt19937_64 rng(17);
    // (heads, head_dim, rows): 80 columns end in a partial SIMD block; 4 x 128
    // over 24 rows is the tiny model's indexed layer.
    const int shapes[][3] = {{12, 80, 1}, {12, 80, 45}, {12, 80, 300}, {4, 128, 24}, {64, 512, 640}};
    for (const auto& shape : shapes) {
        const int H = shape[0], hd = shape[1];
        const int64_t N = shape[2];
        const std::vector<float> q = randn(H * hd, rng), sinks = randn(H, rng);
        std::vector<float> keys = randn(static_cast<size_t>(N * hd), rng);
        std::vector<uint16_t> keys16(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) {
            keys16[i] = f32_to_f16(keys[i]);
            keys[i] = f16_to_f32(keys16[i]);  // the f32 path sees the same values
        }
        std::vector<float> ref(H * hd), serial(H * hd), pooled(H * hd);
        CpuScratch s0;
        cpu_attention(attention_call<AttentionCall>(q, keys.data(), N, H, hd, sinks, ref.data()), s0);

        run_serial_and_pooled(cpu_attention_f16,
                              attention_call<AttentionF16Call>(q, keys16.data(), N, H, hd, sinks, nullptr),
                              serial.data(), pooled.data());
        for (size_t i = 0; i < ref.size(); ++i) {
            ASSERT_EQ(serial[i], pooled[i]) << "N " << N << " index " << i;
            ASSERT_NEAR(pooled[i], ref[i], 1e-5 + 1e-5 * std::fabs(ref[i])) << "N " << N << " index " << i;
        }
    }
}

TEST(LayerOps, ActivationsPreparedOnThePoolEqualSerial) {
    std::mt19937_64 rng(23);
    placement::WorkerPool pool(std::vector<int>{2});
    CpuScratch pooled;
    pooled.pool = &pool;
    // Q8_0 (Q8_0 weights), Q8_K (K-quants), f32 copy (F16 weights); 37 rows
    // split over the pool, 5 rows below the split threshold.
    for (DType w : {DType::Q8_0, DType::Q2_K, DType::F16}) {
        for (int64_t n : {37, 5}) {
            const int64_t cols = 512;
            const std::vector<float> x = randn(static_cast<size_t>(n * cols), rng);
            kernels::Activations serial, split;
            serial.prepare(w, x.data(), n, cols);
            prepare_activations(pooled, split, w, x.data(), n, cols);
            ASSERT_EQ(split.type(), serial.type());
            ASSERT_EQ(split.n_tok(), n);
            ASSERT_EQ(split.row_bytes(), serial.row_bytes());
            for (int64_t t = 0; t < n; ++t)
                ASSERT_EQ(std::memcmp(split.row(t), serial.row(t), serial.row_bytes()), 0) << "row " << t;
        }
    }
    kernels::Activations a;
    a.shape(DType::Q8_0, 4, 64);
    const std::vector<float> x(4 * 64, 1.0f);
    EXPECT_THROW(a.quantize_rows(x.data(), 2, 5), ds4::Error);
    EXPECT_THROW(a.quantize_rows(x.data(), 3, 2), ds4::Error);
}
