// The backend interface: registry rules, per-tensor and hot-expert
// assignment, per-operation fallback, and the reference backend's logits
// against the CPU backend's.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <set>

#include "ds4/backend.hpp"
#include "ds4/error.hpp"
#include "ds4/hook.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "support/models.hpp"

using namespace ds4;

namespace {

std::vector<TokenId> some_tokens(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<TokenId> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<TokenId>(rng() % 1000);
    return t;
}

std::vector<float> logits_of(const std::string& path, const ModelOptions& mo, const std::vector<TokenId>& toks) {
    auto model = Model::load(path, mo);
    Session s(model);
    s.prefill(toks);
    return {s.logits().begin(), s.logits().end()};
}

// Largest |a - b| relative to the largest |a|.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0, s = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        m = std::max(m, std::fabs(double(a[i]) - b[i]));
        s = std::max(s, std::fabs(double(a[i])));
    }
    return m / s;
}

// Delegates to the reference backend and counts the calls per operation;
// `ops` says which operations it claims to support.
struct CountingBackend : Backend {
    std::shared_ptr<Backend> inner = create_backend("reference");
    uint32_t ops_mask;
    std::atomic<int> matmuls{0}, norms{0}, hc{0}, attention_calls{0}, experts{0}, prepared{0};
    explicit CountingBackend(uint32_t mask) : ops_mask(mask) {}
    std::string_view name() const override { return "counting"; }
    DeviceInfo device() const override { return inner->device(); }
    bool supports(BackendOp op, DType t) const override {
        return (ops_mask >> static_cast<int>(op) & 1) && inner->supports(op, t);
    }
    void prepare_weight(const WeightRef&) override { ++prepared; }
    void matmul(const WeightRef& w, const float* x, int64_t n, float* y, int64_t s) override {
        ++matmuls;
        inner->matmul(w, x, n, y, s);
    }
    void rms_norm(const float* x, const float* w, float* y, int64_t r, int64_t n, float e) override {
        ++norms;
        inner->rms_norm(x, w, y, r, n, e);
    }
    void hc_pre(const HcPreCall& c) override { ++hc; inner->hc_pre(c); }
    void hc_post(const HcPostCall& c) override { ++hc; inner->hc_post(c); }
    void attention(const AttentionCall& c) override { ++attention_calls; inner->attention(c); }
    void routed_expert(const ExpertCall& c) override { ++experts; inner->routed_expert(c); }
};

std::shared_ptr<CountingBackend> g_counting;  // the instance the "counting-*" factories hand out

void register_counting(const std::string& name, uint32_t mask) {
    for (const auto& n : backend_names())
        if (n == name) return;
    BackendFactory f;
    f.name = name;
    f.devices = [] { return std::vector<DeviceInfo>{DeviceInfo{"test0", "counting test device", DeviceKind::Accelerator, 0, 0}}; };
    f.create = [mask](int) { return g_counting = std::make_shared<CountingBackend>(mask); };
    register_backend(f);
}

constexpr uint32_t kAllOps = 0x1f;

}  // namespace

TEST(BackendRegistry, BuiltinsAndRules) {
    const auto names = backend_names();
    ASSERT_GE(names.size(), 2u);
    EXPECT_EQ(names[0], "cpu");
    EXPECT_EQ(names[1], "reference");
    EXPECT_EQ(backend_devices("cpu").size(), 1u);
    EXPECT_EQ(create_backend("reference")->name(), "reference");
    EXPECT_EQ(create_backend("cpu:0")->name(), "cpu");

    auto code_of = [](auto&& f) {
        try {
            f();
        } catch (const Error& e) {
            return e.code();
        }
        return ErrorCode::Internal;  // "did not throw"
    };
    EXPECT_EQ(code_of([] { create_backend("no-such-backend"); }), ErrorCode::NotFound);
    EXPECT_EQ(code_of([] { create_backend("reference:1"); }), ErrorCode::NotFound);
    EXPECT_EQ(code_of([] { create_backend("reference:x"); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(code_of([] { backend_devices("nope"); }), ErrorCode::NotFound);

    BackendFactory f;
    f.name = "future";
    f.api_version = kBackendApiVersion + 1;
    f.devices = [] { return std::vector<DeviceInfo>{}; };
    f.create = [](int) { return std::shared_ptr<Backend>(); };
    EXPECT_EQ(code_of([&] { register_backend(f); }), ErrorCode::BackendFailure);
    f.api_version = kBackendApiVersion;
    f.name = "cpu";
    EXPECT_EQ(code_of([&] { register_backend(f); }), ErrorCode::InvalidArgument);  // duplicate
    f.name = "a:b";
    EXPECT_EQ(code_of([&] { register_backend(f); }), ErrorCode::InvalidArgument);
    f.name = "incomplete";
    f.create = nullptr;
    EXPECT_EQ(code_of([&] { register_backend(f); }), ErrorCode::InvalidArgument);
}

TEST(BackendRegistry, UnsupportedOperationsThrow) {
    struct Nothing : Backend {
        std::string_view name() const override { return "nothing"; }
        DeviceInfo device() const override { return {}; }
        bool supports(BackendOp, DType) const override { return false; }
    } b;
    EXPECT_THROW(b.attention(AttentionCall{}), Error);
    EXPECT_THROW(b.matmul(WeightRef{}, nullptr, 0, nullptr, 0), Error);
    auto buf = b.allocate(16);
    const uint32_t v = 0xabcd1234;
    buf->write(4, &v, 4);
    uint32_t r = 0;
    buf->read(4, &r, 4);
    EXPECT_EQ(r, v);
    EXPECT_THROW(buf->write(14, &v, 4), Error);
}

TEST(Backends, ReferenceBackendMatchesCpu) {
    const auto toks = some_tokens(40, 3);
    const std::string path = test_support::tiny_model(WeightMix::F32);
    const auto cpu = logits_of(path, {}, toks);
    ModelOptions ref;
    ref.backend = "reference";
    const auto r = logits_of(path, ref, toks);
    // F32 weights: both sides compute in f32 with different summation orders
    // (the reference sums in double). The KV cache's FP8 and the indexer's FP4
    // simulations are step functions, so a rounding difference can move a
    // value by one FP8 step: the logits then differ by a few 1e-4 relative.
    EXPECT_LT(rel_diff(cpu, r), 2e-3);
    auto model = Model::load(path, ref);
    EXPECT_FALSE(model->backend_assignment().empty());
}

TEST(Backends, ReferenceBackendMatchesCpuOnQuantizedModel) {
    const auto toks = some_tokens(24, 5);
    const std::string path = test_support::tiny_model(WeightMix::Q2);
    const auto cpu = logits_of(path, {}, toks);
    ModelOptions ref;
    ref.backend = "reference";
    const auto r = logits_of(path, ref, toks);
    // The CPU path quantizes activations to Q8_0/Q8_K before quantized
    // products; the reference backend multiplies with f32 activations.
    EXPECT_LT(rel_diff(cpu, r), 0.05);
}

TEST(Backends, OverridesAndHotExpertsRouteExactlyTheirOperations) {
    register_counting("counting-all", kAllOps);
    const auto toks = some_tokens(12, 7);
    const std::string path = test_support::tiny_model(WeightMix::F32);
    const auto cpu = logits_of(path, {}, toks);
    const int L = tiny_model_config().n_layer;

    ModelOptions mo;
    mo.tensor_overrides = {{"attn_q_a\\.weight$", "counting-all"}};
    auto model = Model::load(path, mo);
    ASSERT_TRUE(g_counting);
    auto counting = g_counting;
    EXPECT_EQ(counting->prepared.load(), L);
    EXPECT_EQ(model->backend_assignment().size(), static_cast<size_t>(L));
    {
        Session s(model);
        s.prefill(toks);
        EXPECT_EQ(counting->matmuls.load(), L);  // one batched q_a product per layer
        EXPECT_EQ(counting->attention_calls.load(), 0);
        EXPECT_LT(rel_diff(cpu, {s.logits().begin(), s.logits().end()}), 2e-3);
    }

    // Hot experts: some experts of layer 3 go to the backend, every other
    // operation stays on the CPU. The backend must see one call per hot
    // expert that a token of the batch selected.
    struct SelectionRecorder : Hook {
        std::set<int> experts;
        bool wants(HookPoint p, int layer) const override { return p == HookPoint::RouterSelection && layer == 3; }
        void on_activation(const ActivationView& v) override {
            for (int64_t i = 0; i < v.rows * v.k; ++i) experts.insert(v.experts[i]);
        }
    };
    const std::vector<int> hot = {0, 1, 2, 3, 4, 5, 6, 7};
    mo = {};
    mo.hot_experts = {{3, hot, "counting-all"}};
    model = Model::load(path, mo);
    counting = g_counting;
    EXPECT_EQ(model->backend_assignment().size(), 3 * hot.size());  // gate, up, down per expert
    Session s(model);
    auto rec = std::make_shared<SelectionRecorder>();
    s.add_hook(rec);
    s.prefill(toks);
    int selected_hot = 0;
    for (int e : rec->experts) selected_hot += e < 8;
    ASSERT_GT(selected_hot, 0);
    EXPECT_EQ(counting->experts.load(), selected_hot);
    EXPECT_EQ(counting->matmuls.load(), 0);
    EXPECT_LT(rel_diff(cpu, {s.logits().begin(), s.logits().end()}), 2e-3);

    // Attention follows attn_kv, HC mixing follows hc_*_fn, norms their weight.
    mo = {};
    mo.tensor_overrides = {{"^blk\\.2\\.(attn_kv|hc_attn_fn|hc_ffn_fn|attn_norm)\\.weight$", "counting-all"}};
    model = Model::load(path, mo);
    counting = g_counting;
    Session s2(model);
    s2.prefill(toks);
    EXPECT_EQ(counting->attention_calls.load(), static_cast<int>(toks.size()));
    EXPECT_EQ(counting->hc.load(), 4);   // pre + post for attention and FFN
    EXPECT_EQ(counting->norms.load(), 1);
    EXPECT_EQ(counting->matmuls.load(), 1);  // the attn_kv projection
    EXPECT_LT(rel_diff(cpu, {s2.logits().begin(), s2.logits().end()}), 2e-3);
}

TEST(Backends, UnsupportedOperationsFallBackToCpuBitForBit) {
    register_counting("counting-none", 0);
    const auto toks = some_tokens(20, 9);
    const std::string path = test_support::tiny_model(WeightMix::F32);
    const auto cpu = logits_of(path, {}, toks);
    ModelOptions mo;
    mo.backend = "counting-none";
    const auto fallback = logits_of(path, mo, toks);
    EXPECT_EQ(cpu, fallback);
    EXPECT_EQ(g_counting->matmuls.load() + g_counting->attention_calls.load() + g_counting->experts.load(), 0);
}

TEST(Backends, BadOptionsAreRejected) {
    const std::string path = test_support::tiny_model(WeightMix::F32);
    ModelOptions mo;
    mo.tensor_overrides = {{"([unclosed", "reference"}};
    EXPECT_THROW(Model::load(path, mo), Error);
    mo = {};
    mo.hot_experts = {{99, {0}, "reference"}};
    EXPECT_THROW(Model::load(path, mo), Error);
    mo = {};
    mo.hot_experts = {{0, {16}, "reference"}};
    EXPECT_THROW(Model::load(path, mo), Error);
    mo = {};
    mo.backend = "no-such-backend";
    EXPECT_THROW(Model::load(path, mo), Error);
}
