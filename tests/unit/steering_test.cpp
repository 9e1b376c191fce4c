// Hooks and steering on the tiny generated model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "ds4/capture.hpp"
#include "ds4/error.hpp"
#include "ds4/extraction.hpp"
#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"
#include "support/models.hpp"
#include "support/random.hpp"

using namespace ds4;
using test_support::random_tokens;

namespace {

std::vector<float> random_unit(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g;
    std::vector<float> v(static_cast<size_t>(n));
    double s = 0;
    for (auto& x : v) {
        x = g(rng);
        s += static_cast<double>(x) * x;
    }
    for (auto& x : v) x = static_cast<float>(x / std::sqrt(s));
    return v;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

float max_abs(std::span<const float> a) {
    float m = 0;
    for (float x : a) m = std::max(m, std::fabs(x));
    return m;
}

double cosine(std::span<const float> a, std::span<const float> b) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        ab += static_cast<double>(a[i]) * b[i];
        aa += static_cast<double>(a[i]) * a[i];
        bb += static_cast<double>(b[i]) * b[i];
    }
    return ab / std::sqrt(aa * bb);
}

class SteeringTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { model_ = Model::load(test_support::tiny_model(WeightMix::F32)); }
    static void TearDownTestSuite() { model_.reset(); }
    static std::shared_ptr<const Model> model_;
    const ModelConfig& cfg() const { return model_->config(); }
    SteeringVector all_layers(SteeringSite site, SteeringOp op, float scale, uint64_t seed) const {
        const int w = site == SteeringSite::RouterLogits ? cfg().n_expert : cfg().n_embd;
        SteeringVector v(cfg().n_layer, w, site, op, scale);
        for (int l = 0; l < cfg().n_layer; ++l) v.set_direction(l, random_unit(w, seed + static_cast<uint64_t>(l)));
        return v;
    }
    std::vector<float> run(const std::vector<TokenId>& toks, const std::vector<SteeringVector>& vs) const {
        Session s(model_, {.context_size = 256});
        for (const auto& v : vs) add_steering(s, v);
        s.prefill(toks);
        return {s.logits().begin(), s.logits().end()};
    }
};
std::shared_ptr<const Model> SteeringTest::model_;

}  // namespace

TEST(SteeringOps, FormulasOnOneRow) {
    const std::vector<float> v = {0.6f, 0.8f, 0.0f};  // unit
    const std::vector<float> v2 = {1.2f, 1.6f, 0.0f};  // same direction, norm 2
    std::vector<float> y = {1.0f, 2.0f, 3.0f};         // v.y = 2.2
    auto run = [&](SteeringOp op, float s, const std::vector<float>& dir) {
        std::vector<float> r = y;
        apply_steering_op(op, s, dir, r.data(), 1, 3, 3);
        return r;
    };
    auto add = run(SteeringOp::Add, 2.0f, v);
    EXPECT_FLOAT_EQ(add[0], 2.2f);
    EXPECT_FLOAT_EQ(add[2], 3.0f);
    auto proj = run(SteeringOp::Project, -1.0f, v2);  // removes the component, whatever |v|
    EXPECT_NEAR(proj[0] * 0.6f + proj[1] * 0.8f, 0.0f, 1e-6);
    auto amp = run(SteeringOp::Project, 1.0f, v2);  // doubles it
    EXPECT_NEAR(amp[0] * 0.6f + amp[1] * 0.8f, 4.4f, 1e-5);
    auto half = run(SteeringOp::Project, -0.5f, v);  // halves it
    EXPECT_NEAR(half[0] * 0.6f + half[1] * 0.8f, 1.1f, 1e-5);
    auto abl = run(SteeringOp::Ablate, 123.0f, v2);  // scale ignored, norm ignored
    EXPECT_NEAR(abl[0] * 0.6f + abl[1] * 0.8f, 0.0f, 1e-6);
    EXPECT_FLOAT_EQ(abl[2], 3.0f);
    auto cl = run(SteeringOp::Clamp, -1.5f, v2);  // component set to -1.5 |v| = -3
    EXPECT_NEAR(cl[0] * 0.6f + cl[1] * 0.8f, -3.0f, 1e-5);
    EXPECT_FLOAT_EQ(cl[2], 3.0f);
}

TEST(SteeringVectorApi, ValidatesInput) {
    SteeringVector v(4, 8, SteeringSite::FfnOut, SteeringOp::Add);
    std::vector<float> ok(8, 0.5f), wrong(7, 1.0f), zero(8, 0.0f), nan(8, 1.0f);
    nan[3] = NAN;
    EXPECT_THROW(v.set_direction(0, wrong), Error);
    EXPECT_THROW(v.set_direction(4, ok), Error);
    EXPECT_THROW(v.set_direction(-1, ok), Error);
    EXPECT_THROW(v.set_direction(0, zero), Error);
    EXPECT_THROW(v.set_direction(0, nan), Error);
    EXPECT_THROW(v.set_scale(INFINITY), Error);
    EXPECT_THROW(v.set_layer_range(2, 1), Error);
    EXPECT_THROW(v.set_layer_range(0, 4), Error);
    v.set_direction(1, ok);
    EXPECT_EQ(v.layers(), std::vector<int>{1});
    SteeringVector w(4, 8, SteeringSite::FfnOut, SteeringOp::Add);
    w.set_direction(1, ok);
    w.set_direction(2, ok);
    v += w;
    EXPECT_FLOAT_EQ(v.direction(1)[0], 1.0f);
    EXPECT_EQ(v.layers(), (std::vector<int>{1, 2}));
    SteeringVector other(4, 8, SteeringSite::AttnOut, SteeringOp::Add);
    EXPECT_THROW(v += other, Error);
    EXPECT_NE(v.fingerprint(), w.fingerprint());
}

TEST_F(SteeringTest, ScaleZeroIsBitIdenticalToNoSteering) {
    const auto toks = random_tokens(60, cfg().n_vocab, 1);
    const auto base = run(toks, {});
    for (auto site : {SteeringSite::AttnOut, SteeringSite::FfnOut, SteeringSite::LayerOut, SteeringSite::LayerIn,
                      SteeringSite::RouterLogits})
        for (auto op : {SteeringOp::Add, SteeringOp::Project}) {
            const auto got = run(toks, {all_layers(site, op, 0.0f, 5)});
            EXPECT_EQ(max_abs_diff(base, got), 0.0f) << steering_site_name(site) << " " << steering_op_name(op);
        }
}

TEST_F(SteeringTest, NonZeroScalesChangeTheOutput) {
    const auto toks = random_tokens(60, cfg().n_vocab, 2);
    const auto base = run(toks, {});
    for (auto site : {SteeringSite::AttnOut, SteeringSite::FfnOut, SteeringSite::LayerOut, SteeringSite::LayerIn,
                      SteeringSite::RouterLogits}) {
        const auto got = run(toks, {all_layers(site, SteeringOp::Add, 4.0f, 6)});
        EXPECT_GT(max_abs_diff(base, got), 1e-3f) << steering_site_name(site);
    }
}

TEST_F(SteeringTest, AblationLeavesNoComponentAtAnyResidualSite) {
    const auto toks = random_tokens(80, cfg().n_vocab, 3);
    const auto u = random_unit(cfg().n_embd, 77);
    Session s(model_, {.context_size = 256});
    add_directional_ablation(s, u);
    auto rec = run_with_cache(s, toks,
                              {{HookPoint::ResidPre, {}}, {HookPoint::ResidPost, {}}, {HookPoint::AttnOut, {}},
                               {HookPoint::FfnOut, {}}});
    Session plain(model_, {.context_size = 256});
    auto base = run_with_cache(plain, toks, {{HookPoint::ResidPost, {}}});
    double worst = 0, base_typical = 0;
    for (auto p : {HookPoint::ResidPre, HookPoint::ResidPost, HookPoint::AttnOut, HookPoint::FfnOut})
        for (int l = 0; l < cfg().n_layer; ++l) {
            const auto& c = rec->get(p, l);
            const int64_t d = c.width / c.streams;
            for (int64_t r = 0; r < c.rows(); ++r)
                for (int st = 0; st < c.streams; ++st) {
                    std::span<const float> x(c.data.data() + r * c.width + st * d, static_cast<size_t>(d));
                    double norm = 0;
                    for (float v : x) norm += static_cast<double>(v) * v;
                    const double rel = std::fabs(cosine(x, u)) * (norm > 0 ? 1 : 0);
                    worst = std::max(worst, rel);
                }
        }
    const auto& b = base->get(HookPoint::ResidPost, cfg().n_layer - 1);
    for (int64_t r = 0; r < b.rows(); ++r) base_typical = std::max(base_typical, std::fabs(cosine(b.stream_mean(r), u)));
    std::printf("ablation: max |cos(x, r)| = %.3g (unablated %.3g)\n", worst, base_typical);
    EXPECT_LT(worst, 1e-5);
    EXPECT_GT(base_typical, 1e-3);
}

TEST_F(SteeringTest, HooksSeeTheSameValuesInPrefillAndDecode) {
    const auto toks = random_tokens(50, cfg().n_vocab, 4);
    std::vector<ActivationRecorder::Point> pts = {{HookPoint::AttnIn, {}}, {HookPoint::FfnOut, {}},
                                                  {HookPoint::ResidPost, {}}, {HookPoint::RouterLogits, {}},
                                                  {HookPoint::FinalHidden, {}}};
    Session a(model_, {.context_size = 128});
    auto ra = std::make_shared<ActivationRecorder>(pts);
    a.add_hook(ra);
    PrefillOptions all;
    all.all_logits = true;
    a.prefill(toks, all);
    Session b(model_, {.context_size = 128});
    auto rb = std::make_shared<ActivationRecorder>(pts);
    b.add_hook(rb);
    for (TokenId t : toks) b.decode(t);
    for (const auto& p : pts) {
        const int first = p.point == HookPoint::FinalHidden ? -1 : 0;
        const int last = p.point == HookPoint::FinalHidden ? -1 : cfg().n_layer - 1;
        for (int l = first; l <= last; ++l) {
            const auto& ca = ra->get(p.point, l);
            const auto& cb = rb->get(p.point, l);
            ASSERT_EQ(ca.positions, cb.positions);
            ASSERT_EQ(ca.data.size(), cb.data.size());
            EXPECT_LE(max_abs_diff(ca.data, cb.data), 1e-4f) << hook_point_name(p.point) << " layer " << l;
        }
    }
}

TEST_F(SteeringTest, OrderOfCompositionIsRegistrationOrder) {
    const auto toks = random_tokens(40, cfg().n_vocab, 8);
    SteeringVector add = all_layers(SteeringSite::FfnOut, SteeringOp::Add, 3.0f, 11);
    SteeringVector proj(cfg().n_layer, cfg().n_embd, SteeringSite::FfnOut, SteeringOp::Project, -1.0f);  // removes the component
    for (int l = 0; l < cfg().n_layer; ++l) proj.set_direction(l, add.direction(l));  // same direction
    const auto add_then_proj = run(toks, {add, proj});
    const auto proj_then_add = run(toks, {proj, add});
    // Adding then projecting out the same direction cancels the add: equals
    // projecting alone up to rounding (which the KV cache's FP8 steps can
    // amplify to ~1e-3 of the logits), while the other order keeps the add.
    const auto proj_only = run(toks, {proj});
    const float order_effect = max_abs_diff(add_then_proj, proj_then_add);
    const float cancel_error = max_abs_diff(add_then_proj, proj_only);
    std::printf("  order effect %.4g, cancellation error %.4g (logit scale %.4g)\n", order_effect, cancel_error,
                max_abs(proj_only));
    EXPECT_GT(order_effect, 0.1f * max_abs(proj_only));
    EXPECT_LE(cancel_error, 0.01f * order_effect);
}

TEST_F(SteeringTest, LiveScaleChangesApplyToTheNextToken) {
    const auto toks = random_tokens(30, cfg().n_vocab, 9);
    const SteeringVector v = all_layers(SteeringSite::FfnOut, SteeringOp::Add, 2.0f, 12);
    Session a(model_, {.context_size = 64});
    SteeringHandle h = add_steering(a, v);
    a.prefill(std::span(toks).first(20));
    h.set_scale(0.0f);  // slider to zero: later tokens are unsteered...
    Session b(model_, {.context_size = 64});
    SteeringHandle hb = add_steering(b, v);
    b.prefill(std::span(toks).first(20));
    remove_steering(b, hb);  // ...exactly as if the vector were removed
    for (size_t i = 20; i < toks.size(); ++i) {
        a.decode(toks[i]);
        b.decode(toks[i]);
        ASSERT_EQ(max_abs_diff(a.logits(), b.logits()), 0.0f);
    }
    EXPECT_EQ(h.scale(), 0.0f);
}

TEST_F(SteeringTest, WindowPolicyEditsOnlyItsPositions) {
    const auto toks = random_tokens(40, cfg().n_vocab, 10);
    SteeringVector v = all_layers(SteeringSite::AttnOut, SteeringOp::Add, 5.0f, 13);
    v.positions = PositionPolicy::window(10, 20);
    Session s(model_, {.context_size = 64});
    add_steering(s, v);
    auto rec = run_with_cache(s, toks, {{HookPoint::AttnOut, {0}}});
    Session p(model_, {.context_size = 64});
    auto base = run_with_cache(p, toks, {{HookPoint::AttnOut, {0}}});
    const auto& a = rec->get(HookPoint::AttnOut, 0);
    const auto& b = base->get(HookPoint::AttnOut, 0);
    for (int64_t r = 0; r < a.rows(); ++r) {
        const float diff = max_abs_diff(a.row(r), b.row(r));
        if (r >= 10 && r < 20) {
            EXPECT_GT(diff, 1.0f) << "row " << r;
        } else if (r < 10) {
            EXPECT_EQ(diff, 0.0f) << "row " << r;
        }
    }
}

TEST_F(SteeringTest, RestoreUnderOtherSteeringIsRefused) {
    const auto toks = random_tokens(30, cfg().n_vocab, 14);
    Session a(model_, {.context_size = 64});
    SteeringHandle h = add_steering(a, all_layers(SteeringSite::FfnOut, SteeringOp::Add, 1.0f, 15));
    a.prefill(toks);
    EXPECT_NE(a.steering_fingerprint(), 0u);
    Snapshot snap = a.snapshot();
    Session b(model_, {.context_size = 64});
    try {
        b.restore(snap);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("steering"), std::string::npos) << e.what();
    }
    b.restore(snap, {.allow_steering_mismatch = true});
    EXPECT_EQ(b.position(), 30);
    EXPECT_EQ(b.steering_fingerprint(), snap.steering_fingerprint());
    // Same steering registered: accepted.
    Session c(model_, {.context_size = 64});
    add_steering(c, h.vector());
    c.restore(snap);
    EXPECT_EQ(c.position(), 30);
    // Changing the scale part-way marks the state as a mix.
    h.set_scale(2.0f);
    a.decode(toks[0]);
    EXPECT_NE(a.steering_fingerprint(), snap.steering_fingerprint());
    EXPECT_NE(a.steering_fingerprint(), a.active_edits_fingerprint());
}

TEST_F(SteeringTest, RouterLogitSteeringMovesExperts) {
    const auto toks = random_tokens(40, cfg().n_vocab, 16);
    const int layer = cfg().n_layer - 1;  // learned routing
    SteeringVector v(cfg().n_layer, cfg().n_expert, SteeringSite::RouterLogits, SteeringOp::Add, 50.0f);
    std::vector<float> e7(static_cast<size_t>(cfg().n_expert), 0.0f);
    e7[7] = 1.0f;
    v.set_direction(layer, e7);
    struct Sel : Hook {
        int layer;
        std::vector<int32_t> seen;
        bool wants(HookPoint p, int l) const override { return p == HookPoint::RouterSelection && l == layer; }
        void on_activation(const ActivationView& view) override {
            seen.insert(seen.end(), view.experts, view.experts + view.rows * view.k);
        }
    };
    Session s(model_, {.context_size = 64});
    add_steering(s, v);
    auto sel = std::make_shared<Sel>();
    sel->layer = layer;
    s.add_hook(sel);
    s.prefill(toks);
    const int k = cfg().n_expert_used;
    ASSERT_EQ(sel->seen.size(), toks.size() * static_cast<size_t>(k));
    for (size_t t = 0; t < toks.size(); ++t) EXPECT_EQ(sel->seen[t * static_cast<size_t>(k)], 7) << "token " << t;
}

// A direction planted in the embedding is found by extraction: pairs of
// prompts that differ only in a final token whose embeddings differ by 2c*u.
TEST_F(SteeringTest, ExtractionRecoversAPlantedDirection) {
    const auto u = random_unit(cfg().n_embd, 99);
    const std::string src = test_support::tiny_model(WeightMix::F32);
    const std::string dst = (test_support::model_dir() / "planted.gguf").string();
    const int n_pairs = 24;
    {
        gguf::File f = gguf::File::open(src);
        gguf::Writer w(f.alignment());
        for (const auto& [k, val] : f.metadata())
            if (k != "general.alignment") w.set(k, val);
        for (const auto& t : f.tensors()) {
            if (t.name != "token_embd.weight") {
                w.add_tensor(t.name, t.type, t.shape, {t.data, static_cast<size_t>(t.n_bytes)});
                continue;
            }
            std::vector<float> e(static_cast<size_t>(t.n_elements));
            std::memcpy(e.data(), t.data, t.n_bytes);
            const int64_t d = static_cast<int64_t>(t.shape[0]);
            // Tokens 2i and 2i+1 (i < n_pairs) share an embedding except +-c*u.
            for (int i = 0; i < n_pairs; ++i) {
                float* a = &e[static_cast<size_t>(2 * i * d)];
                float* b = &e[static_cast<size_t>((2 * i + 1) * d)];
                for (int64_t j = 0; j < d; ++j) {
                    b[j] = a[j] - 3.0f * u[static_cast<size_t>(j)];
                    a[j] = a[j] + 3.0f * u[static_cast<size_t>(j)];
                }
            }
            w.add_tensor_f32(t.name, t.shape, e);
        }
        w.write(dst);
    }
    auto planted = Model::load(dst);
    std::vector<ContrastExample> tgt, con;
    for (int i = 0; i < n_pairs; ++i) {
        auto pre = random_tokens(12, cfg().n_vocab, 200 + static_cast<uint64_t>(i));
        auto a = pre, b = pre;
        a.push_back(2 * i);
        b.push_back(2 * i + 1);
        tgt.push_back({a, 0});
        con.push_back({b, 0});
    }
    for (auto method : {ExtractionMethod::MeanDifference, ExtractionMethod::PcaOfPairs}) {
        ExtractionOptions o;
        o.site = SteeringSite::LayerOut;  // after a whole layer (attention + MoE) has run
        o.layers = {0, 1, 2};
        o.method = method;
        const Extraction ex = extract_direction(planted, tgt, con, o);
        const double c0 = cosine(ex.vector.direction(0), u);
        std::printf("planted direction (%s): cosine %.4f / %.4f / %.4f at the output of layers 0 / 1 / 2, gap %.3f, "
                    "d %.2f, pair accuracy %.2f\n",
                    method == ExtractionMethod::MeanDifference ? "mean" : "pca", c0,
                    cosine(ex.vector.direction(1), u), cosine(ex.vector.direction(2), u), ex.layers[0].mean_gap,
                    ex.layers[0].cohens_d, ex.layers[0].pair_accuracy);
        EXPECT_GT(c0, 0.95);
        EXPECT_GT(ex.layers[0].mean_gap, 0.0);
        EXPECT_EQ(ex.layers[0].pair_accuracy, 1.0);
        EXPECT_EQ(ex.vector.provenance.model_fingerprint, planted->fingerprint());
    }
}

TEST_F(SteeringTest, FilesRoundTripInEveryFormat) {
    const auto dir = test_support::model_dir();
    SteeringVector v = all_layers(SteeringSite::AttnOut, SteeringOp::Clamp, 0.25f, 20);
    v.clear_direction(2);
    v.set_layer_range(1, 4);
    v.positions = PositionPolicy::window(3, 9);
    v.provenance.name = "test";
    v.provenance.method = "mean_diff";
    v.provenance.model_fingerprint = model_->fingerprint();
    v.provenance.prompt_set_hashes = {1, 2};
    v.provenance.recommended_scale = 0.5f;
    v.provenance.notes["k"] = "v";
    const std::string p1 = (dir / "v.gguf").string();
    v.save(p1);
    const SteeringVector r = SteeringVector::load(p1);
    EXPECT_EQ(r.fingerprint(), v.fingerprint());
    EXPECT_EQ(r.site(), SteeringSite::AttnOut);
    EXPECT_EQ(r.op(), SteeringOp::Clamp);
    EXPECT_EQ(r.layers(), v.layers());
    EXPECT_EQ(r.provenance.prompt_set_hashes, v.provenance.prompt_set_hashes);
    EXPECT_EQ(r.provenance.notes.at("k"), "v");
    EXPECT_EQ(SteeringVector::load_any(p1, *model_).fingerprint(), v.fingerprint());

    // ds4 .f32: project at ffn_out, rows = layers.
    SteeringVector f = all_layers(SteeringSite::FfnOut, SteeringOp::Project, 1.0f, 21);
    f.clear_direction(0);
    const std::string p2 = (dir / "v.f32").string();
    f.save_ds4_f32(p2);
    EXPECT_EQ(std::filesystem::file_size(p2), static_cast<uintmax_t>(cfg().n_layer * cfg().n_embd * 4));
    const SteeringVector rf = SteeringVector::load_any(p2, *model_);
    EXPECT_EQ(rf.site(), SteeringSite::FfnOut);
    EXPECT_EQ(rf.op(), SteeringOp::Project);
    EXPECT_EQ(rf.layers(), f.layers());
    EXPECT_LE(max_abs_diff(rf.direction(3), f.direction(3)), 1e-6f);  // unit rows, as written
    EXPECT_FLOAT_EQ(rf.scale(), 1.0f);                                // through the sidecar
    EXPECT_THROW(v.save_ds4_f32(p2), Error);  // another meaning: refused

    // llama.cpp control vector: add at layer output, block 0 impossible.
    SteeringVector c = all_layers(SteeringSite::LayerOut, SteeringOp::Add, 2.0f, 22);
    const std::string p3 = (dir / "cv.gguf").string();
    EXPECT_THROW(c.save_control_vector(p3), Error);
    c.clear_direction(0);
    c.save_control_vector(p3);
    const SteeringVector rc = SteeringVector::load_any(p3, *model_);
    EXPECT_EQ(rc.site(), SteeringSite::LayerOut);
    EXPECT_EQ(rc.op(), SteeringOp::Add);
    EXPECT_EQ(rc.layers(), c.layers());
    for (float x : c.direction(1)) (void)x;
    EXPECT_NEAR(rc.direction(1)[0], 2.0f * c.direction(1)[0], 1e-6);  // scale baked in
}

TEST_F(SteeringTest, MalformedFilesAreRejected) {
    const auto dir = test_support::model_dir();
    // Wrong size .f32.
    const std::string bad = (dir / "bad.f32").string();
    {
        std::ofstream o(bad, std::ios::binary);
        std::vector<float> x(100, 1.0f);
        o.write(reinterpret_cast<const char*>(x.data()), 400);
    }
    EXPECT_THROW(SteeringVector::load_any(bad, *model_), Error);
    // NaN row.
    {
        std::vector<float> x(static_cast<size_t>(cfg().n_layer * cfg().n_embd), 0.1f);
        x[5] = NAN;
        std::ofstream o(bad, std::ios::binary);
        o.write(reinterpret_cast<const char*>(x.data()), static_cast<long>(x.size() * 4));
    }
    EXPECT_THROW(SteeringVector::load_any(bad, *model_), Error);
    // All-zero file.
    {
        std::vector<float> x(static_cast<size_t>(cfg().n_layer * cfg().n_embd), 0.0f);
        std::ofstream o(bad, std::ios::binary);
        o.write(reinterpret_cast<const char*>(x.data()), static_cast<long>(x.size() * 4));
    }
    EXPECT_THROW(SteeringVector::load_any(bad, *model_), Error);
    // Control vector with direction.0, with the wrong width, with a block past the model.
    auto cv = [&](const std::string& name, int width) {
        gguf::Writer w;
        w.set("general.architecture", gguf::Value::string("controlvector"));
        std::vector<float> x(static_cast<size_t>(width), 0.5f);
        w.add_tensor_f32(name, {static_cast<uint64_t>(width)}, x);
        const std::string p = (dir / "cvbad.gguf").string();
        w.write(p);
        return p;
    };
    EXPECT_THROW(SteeringVector::load_any(cv("direction.0", cfg().n_embd), *model_), Error);
    EXPECT_THROW(add_steering(*std::make_unique<Session>(model_), SteeringVector::load_any(cv("direction.1", 17), *model_)),
                 Error);
    EXPECT_THROW(SteeringVector::load_any(cv("direction.99", cfg().n_embd), *model_), Error);
    EXPECT_THROW(SteeringVector::load_any(cv("weird", cfg().n_embd), *model_), Error);
    // A ds4 steering file from another model is refused when applied.
    SteeringVector v = all_layers(SteeringSite::FfnOut, SteeringOp::Add, 1.0f, 23);
    v.provenance.model_fingerprint = model_->fingerprint() ^ 1;
    Session s(model_);
    try {
        add_steering(s, v);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
    }
    // Truncated ds4 steering file.
    v.provenance.model_fingerprint = 0;
    const std::string p = (dir / "trunc.gguf").string();
    v.save(p);
    const auto size = std::filesystem::file_size(p);
    std::filesystem::resize_file(p, size - 10);
    EXPECT_THROW(SteeringVector::load(p), Error);
}

// The reference engine edits y <- y - r v (v.y) with its --dir-steering-ffn /
// --dir-steering-attn scale r and a unit row v; this SDK's project scale is
// s = -r. A file written the reference tools' way, with and without its JSON
// sidecar, must edit rows exactly as that formula does.
TEST_F(SteeringTest, F32FilesFollowTheReferenceEnginesSignConvention) {
    const auto dir = test_support::model_dir();
    const std::string path = (dir / "ref.f32").string(), json_path = (dir / "ref.json").string();
    std::vector<float> rows(static_cast<size_t>(cfg().n_layer * cfg().n_embd), 0.0f);
    const auto u = random_unit(cfg().n_embd, 31);
    std::copy(u.begin(), u.end(), rows.begin() + 2 * cfg().n_embd);  // layer 2 only
    {
        std::ofstream o(path, std::ios::binary);
        o.write(reinterpret_cast<const char*>(rows.data()), static_cast<long>(rows.size() * 4));
    }
    const auto y0 = random_unit(cfg().n_embd, 32);
    auto edited_by_reference = [&](double r) {
        double d = 0;
        for (size_t i = 0; i < u.size(); ++i) d += static_cast<double>(u[i]) * y0[i];
        std::vector<float> y = y0;
        for (size_t i = 0; i < u.size(); ++i) y[i] = static_cast<float>(y[i] - r * u[i] * d);
        return y;
    };
    auto edited_by_import = [&]() {
        const SteeringVector v = SteeringVector::load_any(path, *model_);
        std::vector<float> y = y0;
        apply_steering_op(v.op(), v.scale(), v.direction(2), y.data(), 1, cfg().n_embd, cfg().n_embd);
        return std::pair{v, y};
    };
    std::filesystem::remove(json_path);
    {  // no sidecar: the engine's default for a file given alone, ffn r = 1
        const auto [v, y] = edited_by_import();
        EXPECT_EQ(v.site(), SteeringSite::FfnOut);
        EXPECT_EQ(v.layers(), std::vector<int>{2});
        EXPECT_LE(max_abs_diff(y, edited_by_reference(1.0)), 1e-5f);
    }
    for (const double r : {-1.5, 0.5, 2.0}) {  // the reference tool's sidecar with a scale
        std::ofstream(json_path) << nlohmann::json{{"format", "ds4-directional-steering-v1"},
                                                   {"shape", {cfg().n_layer, cfg().n_embd}},
                                                   {"component", "attn_out"},
                                                   {"scale", r}}
                                        .dump();
        const auto [v, y] = edited_by_import();
        EXPECT_EQ(v.site(), SteeringSite::AttnOut);
        EXPECT_FLOAT_EQ(v.scale(), static_cast<float>(-r));
        EXPECT_LE(max_abs_diff(y, edited_by_reference(r)), 1e-5f) << "r = " << r;
        // ...and written back, the sidecar holds the engine's scale again.
        v.save_ds4_f32((dir / "back.f32").string());
        std::ifstream js((dir / "back.json").string());
        const auto j = nlohmann::json::parse(js);
        EXPECT_EQ(j["component"], "attn_out");
        EXPECT_NEAR(j["scale"].get<double>(), r, 1e-6);
    }
    // A sidecar for another shape or site is refused, naming the key.
    std::ofstream(json_path) << R"({"format": "ds4-directional-steering-v1", "shape": [3, 7]})";
    try {
        SteeringVector::load_any(path, *model_);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
    }
    std::ofstream(json_path) << R"({"component": "layer_out"})";
    EXPECT_THROW(SteeringVector::load_any(path, *model_), Error);
    std::filesystem::remove(json_path);
}

TEST_F(SteeringTest, ExportsRefuseWhatTheirFormatCannotHoldUnlessLossy) {
    const auto dir = test_support::model_dir();
    const std::string cv = (dir / "cv2.gguf").string(), f32 = (dir / "p2.f32").string();
    SteeringVector c = all_layers(SteeringSite::LayerOut, SteeringOp::Add, 1.5f, 40);
    c.set_layer_range(2, 4);
    // Layers outside the range are not written; the scale is baked in.
    EXPECT_TRUE(c.save_control_vector(cv, {}).empty());
    const SteeringVector rc = SteeringVector::load_control_vector(cv, cfg().n_layer);
    EXPECT_EQ(rc.layers(), (std::vector<int>{2, 3, 4}));
    EXPECT_NEAR(rc.direction(3)[5], 1.5f * c.direction(3)[5], 1e-6);
    // A position policy, another op or site: refused, then written when lossy, with the list of what was dropped.
    c.positions = PositionPolicy::generated();
    try {
        c.save_control_vector(cv, {});
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("position policy"), std::string::npos) << e.what();
    }
    EXPECT_EQ(c.save_control_vector(cv, {.allow_lossy = true}).size(), 1u);
    SteeringVector f = all_layers(SteeringSite::FfnOut, SteeringOp::Add, 1.0f, 41);
    f.set_layer_range(1, 3);
    EXPECT_THROW(f.save_control_vector(cv, {}), Error);
    const auto dropped = f.save_control_vector(cv, {.allow_lossy = true});
    ASSERT_EQ(dropped.size(), 1u);
    EXPECT_NE(dropped[0].find("ffn_out"), std::string::npos);
    // .f32: a projection only; zero rows outside the layer range; a policy is lossy.
    EXPECT_THROW(f.save_ds4_f32(f32, {.allow_lossy = true}), Error);  // add cannot be written at all
    SteeringVector p = all_layers(SteeringSite::FfnOut, SteeringOp::Project, -0.5f, 42);
    p.set_layer_range(1, 3);
    p.positions = PositionPolicy::prompt();
    EXPECT_THROW(p.save_ds4_f32(f32, {}), Error);
    EXPECT_EQ(p.save_ds4_f32(f32, {.allow_lossy = true}).size(), 1u);
    const SteeringVector rp = SteeringVector::load_any(f32, *model_);
    EXPECT_EQ(rp.layers(), (std::vector<int>{1, 2, 3}));
    EXPECT_FLOAT_EQ(rp.scale(), -0.5f);
}

TEST_F(SteeringTest, OwnFormatKeepsEverythingAndReadsFormatOne) {
    const auto dir = test_support::model_dir();
    SteeringVector v = all_layers(SteeringSite::LayerOut, SteeringOp::Add, 0.75f, 50);
    v.clear_direction(0);
    v.set_layer_range(2, 4);
    v.positions = PositionPolicy::final_answer();
    v.provenance.notes["training_report"] = "setting,scale\n\"layer_out add\",0.75\n";
    const std::string p = (dir / "keep.ds4steer.gguf").string();
    v.save(p);
    const SteeringVector r = SteeringVector::load(p);
    EXPECT_EQ(r.fingerprint(), v.fingerprint());  // directions, site, op, scale, range, positions
    EXPECT_EQ(r.positions.kind, PositionPolicy::Kind::FinalAnswer);
    EXPECT_EQ(r.provenance.notes.at("training_report"), v.provenance.notes.at("training_report"));
    // A format-1 file: project was y - s v (v.y); with |v| = 2, s = 0.25 removes the component: s' = -1.
    gguf::Writer w;
    auto meta = [&](const std::string& k, gguf::Value x) { w.set("ds4steer." + k, std::move(x)); };
    w.set("general.architecture", gguf::Value::string("ds4-steering"));
    meta("version", gguf::Value::u32(1));
    meta("site", gguf::Value::string("ffn_out"));
    meta("op", gguf::Value::string("project"));
    meta("scale", gguf::Value::f32(0.25f));
    meta("width", gguf::Value::u32(static_cast<uint32_t>(cfg().n_embd)));
    meta("layer_count", gguf::Value::u32(static_cast<uint32_t>(cfg().n_layer)));
    meta("first_layer", gguf::Value::u32(0));
    meta("last_layer", gguf::Value::u32(static_cast<uint32_t>(cfg().n_layer - 1)));
    meta("positions", gguf::Value::string("all"));
    meta("positions.begin", gguf::Value::i64(0));
    meta("positions.end", gguf::Value::i64(1000));
    meta("method", gguf::Value::string("mean_diff"));
    meta("model_fingerprint", gguf::Value::u64(0));
    meta("model_name", gguf::Value::string(""));
    meta("recommended_scale", gguf::Value::f32(0));
    meta("prompt_set_hashes", gguf::Value::array(gguf::ValueType::U64, {}));
    auto d = random_unit(cfg().n_embd, 51);
    for (float& x : d) x *= 2;
    w.add_tensor_f32("direction.1", {static_cast<uint64_t>(cfg().n_embd)}, d);
    const std::string p1 = (dir / "v1.ds4steer.gguf").string();
    w.write(p1);
    const SteeringVector r1 = SteeringVector::load(p1);
    EXPECT_EQ(r1.op(), SteeringOp::Project);
    EXPECT_NEAR(r1.scale(), -1.0f, 1e-5);
    std::vector<float> y = random_unit(cfg().n_embd, 52);
    apply_steering_op(r1.op(), r1.scale(), r1.direction(1), y.data(), 1, cfg().n_embd, cfg().n_embd);
    double along = 0;
    for (size_t i = 0; i < y.size(); ++i) along += static_cast<double>(y[i]) * d[i];
    EXPECT_NEAR(along, 0.0, 1e-5);
}
