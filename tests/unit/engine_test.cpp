// Engine behaviour on generated tiny models: prefill equals decode, snapshots
// restore bit for bit, rewind, context limits and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <thread>
#include <filesystem>
#include <numeric>
#include <random>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "support/models.hpp"
#include "support/random.hpp"

using namespace ds4;
using test_support::random_tokens;

namespace {

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

float max_abs(std::span<const float> a) {
    float m = 0;
    for (float x : a) m = std::max(m, std::fabs(x));
    return m;
}

bool all_finite(std::span<const float> a) {
    return std::all_of(a.begin(), a.end(), [](float x) { return std::isfinite(x); });
}

class EngineTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { model_ = Model::load(test_support::tiny_model(WeightMix::F32)); }
    static void TearDownTestSuite() { model_.reset(); }
    static std::shared_ptr<const Model> model_;
};
std::shared_ptr<const Model> EngineTest::model_;

}  // namespace

TEST_F(EngineTest, LoadsTinyConfigFromMetadata) {
    const ModelConfig& c = model_->config();
    EXPECT_EQ(c.n_layer, 6);
    EXPECT_EQ(c.n_embd, 256);
    EXPECT_EQ(c.compress_ratios, (std::vector<int>{0, 0, 4, 16, 4, 16}));
    EXPECT_EQ(c.n_hash_layers, 3);
    EXPECT_TRUE(c.has_indexer(2));
    EXPECT_FALSE(c.has_indexer(3));
    EXPECT_NE(model_->fingerprint(), 0u);
    EXPECT_GT(model_->weight_bytes().routed_experts, 0u);
}

TEST_F(EngineTest, PrefillMatchesTokenByTokenDecode) {
    const auto toks = random_tokens(200, model_->config().n_vocab, 7);
    Session a(model_, {.context_size = 512, .prefill_chunk = 64});
    a.prefill(toks, PrefillOptions{.all_logits = true, .progress = nullptr});
    Session b(model_, {.context_size = 512});
    float worst = 0, scale = 0;
    for (size_t i = 0; i < toks.size(); ++i) {
        b.decode(toks[i]);
        ASSERT_TRUE(all_finite(b.logits())) << "token " << i;
        worst = std::max(worst, max_abs_diff(a.logits_at(static_cast<int64_t>(i)), b.logits()));
        scale = std::max(scale, max_abs(b.logits()));
    }
    std::printf("prefill vs decode over 200 tokens: max |diff| = %.3g (logit scale %.3g)\n", worst, scale);
    EXPECT_GT(scale, 0.1f);
    EXPECT_LE(worst, 1e-4f * std::max(1.0f, scale));
    EXPECT_EQ(a.position(), 200);
    EXPECT_EQ(max_abs_diff(a.logits(), a.logits_at(199)), 0.0f);
}

TEST_F(EngineTest, ChunkSizeDoesNotChangeTheResult) {
    const auto toks = random_tokens(150, model_->config().n_vocab, 8);
    Session a(model_, {.context_size = 256, .prefill_chunk = 150});
    Session b(model_, {.context_size = 256, .prefill_chunk = 7});
    a.prefill(toks);
    b.prefill(toks);
    EXPECT_LE(max_abs_diff(a.logits(), b.logits()), 1e-4f * std::max(1.0f, max_abs(a.logits())));
}

TEST_F(EngineTest, SnapshotRestoreContinuesBitForBit) {
    const auto toks = random_tokens(120, model_->config().n_vocab, 9);
    Session ref(model_, {.context_size = 256});
    ref.prefill(std::span(toks).first(80));
    Snapshot snap = ref.snapshot();
    EXPECT_EQ(snap.position(), 80);
    std::vector<std::vector<float>> want;
    for (size_t i = 80; i < toks.size(); ++i) {
        ref.decode(toks[i]);
        want.emplace_back(ref.logits().begin(), ref.logits().end());
    }
    Session other(model_, {.context_size = 256});
    other.prefill(random_tokens(30, model_->config().n_vocab, 10));  // unrelated history, replaced by restore
    other.restore(snap);
    EXPECT_EQ(other.position(), 80);
    for (size_t i = 80; i < toks.size(); ++i) {
        other.decode(toks[i]);
        ASSERT_EQ(max_abs_diff(other.logits(), want[i - 80]), 0.0f) << "token " << i;
    }
}

TEST_F(EngineTest, SnapshotFileRoundTripsBitForBit) {
    const auto toks = random_tokens(100, model_->config().n_vocab, 11);
    const auto path = (test_support::model_dir() / "snap.ds4s").string();
    Session a(model_, {.context_size = 256});
    a.prefill(std::span(toks).first(70));
    a.save(path);
    for (size_t i = 70; i < toks.size(); ++i) a.decode(toks[i]);
    Session b(model_, {.context_size = 256});
    b.load(path);
    EXPECT_EQ(b.position(), 70);
    EXPECT_EQ(std::vector<TokenId>(b.tokens().begin(), b.tokens().end()),
              std::vector<TokenId>(toks.begin(), toks.begin() + 70));
    for (size_t i = 70; i < toks.size(); ++i) b.decode(toks[i]);
    EXPECT_EQ(max_abs_diff(a.logits(), b.logits()), 0.0f);
    // The file is compressed: smaller than the raw state.
    EXPECT_GT(std::filesystem::file_size(path), 100u);
}

TEST_F(EngineTest, CorruptSnapshotFilesAreRejected) {
    const auto path = (test_support::model_dir() / "snap2.ds4s").string();
    Session a(model_, {.context_size = 256});
    a.prefill(random_tokens(40, model_->config().n_vocab, 12));
    a.save(path);
    std::string bytes;
    {
        std::ifstream f(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    const auto bad_path = (test_support::model_dir() / "snap_bad.ds4s").string();
    for (size_t cut : {size_t{0}, size_t{10}, size_t{30}, bytes.size() / 2, bytes.size() - 1}) {
        std::ofstream(bad_path, std::ios::binary).write(bytes.data(), static_cast<long>(cut));
        Session b(model_, {.context_size = 256});
        EXPECT_THROW(b.load(bad_path), Error) << "cut at " << cut;
        EXPECT_EQ(b.position(), 0);
    }
    // A snapshot of another model is refused.
    auto other = Model::load(test_support::tiny_model(WeightMix::F32, 2));
    Session c(other, {.context_size = 256});
    try {
        c.load(path);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
    }
}

TEST_F(EngineTest, RewindToPrefillEndIsExact) {
    const auto toks = random_tokens(90, model_->config().n_vocab, 13);
    Session s(model_, {.context_size = 256});
    s.prefill(std::span(toks).first(60));
    std::vector<std::vector<float>> first;
    for (size_t i = 60; i < toks.size(); ++i) {
        s.decode(toks[i]);
        first.emplace_back(s.logits().begin(), s.logits().end());
    }
    s.rewind(60);
    EXPECT_EQ(s.position(), 60);
    for (size_t i = 60; i < toks.size(); ++i) {
        s.decode(toks[i]);
        ASSERT_EQ(max_abs_diff(s.logits(), first[i - 60]), 0.0f) << "token " << i;
    }
}

TEST_F(EngineTest, RewindAnywhereMatchesTheFirstRun) {
    const auto toks = random_tokens(120, model_->config().n_vocab, 14);
    Session s(model_, {.context_size = 256, .prefill_chunk = 32});
    s.prefill(std::span(toks).first(50));
    std::vector<std::vector<float>> first(toks.size());
    for (size_t i = 50; i < toks.size(); ++i) {
        s.decode(toks[i]);
        first[i].assign(s.logits().begin(), s.logits().end());
    }
    // Positions after the prompt replay the decoded tokens one by one from the
    // prompt's checkpoint: bit-exact. Positions inside the prompt replay a
    // different prefill batch: equal within the prefill/decode tolerance.
    for (int64_t pos : {100, 77, 51, 30, 0}) {
        s.rewind(pos);
        ASSERT_EQ(s.position(), pos);
        for (int64_t i = pos; i < 110; ++i) {
            s.decode(toks[static_cast<size_t>(i)]);
            if (i < 50) continue;
            const float diff = max_abs_diff(s.logits(), first[static_cast<size_t>(i)]);
            if (pos >= 50)
                ASSERT_EQ(diff, 0.0f) << "rewind to " << pos << ", token " << i;
            else
                ASSERT_LE(diff, 1e-4f * std::max(1.0f, max_abs(s.logits()))) << "rewind to " << pos << ", token " << i;
        }
    }
}

TEST_F(EngineTest, SyncReusesTheCommonPrefix) {
    const auto toks = random_tokens(80, model_->config().n_vocab, 15);
    Session s(model_, {.context_size = 256});
    s.sync(std::span(toks).first(60));
    auto other = toks;
    other[70] = (other[70] + 1) % model_->config().n_vocab;
    EXPECT_EQ(s.common_prefix(toks), 60);
    s.sync(toks);
    Session fresh(model_, {.context_size = 256});
    fresh.prefill(toks);
    EXPECT_LE(max_abs_diff(s.logits(), fresh.logits()), 1e-4f * std::max(1.0f, max_abs(fresh.logits())));
    s.sync(other);  // diverges at 70: rewinds, re-evaluates
    Session fresh2(model_, {.context_size = 256});
    fresh2.prefill(other);
    EXPECT_LE(max_abs_diff(s.logits(), fresh2.logits()), 1e-4f * std::max(1.0f, max_abs(fresh2.logits())));
}

TEST_F(EngineTest, StatsCountWeightBytesAndMultiplyAdds) {
    const ModelConfig& c = model_->config();
    const auto toks = random_tokens(12, c.n_vocab, 21);
    // Decoding: every token runs the same products at this short context.
    Session s(model_, {.context_size = 64});
    s.prefill(std::span(toks).first(8));
    s.reset_stats();
    uint64_t macs_per_token = 0, bytes_per_token = 0;
    for (size_t i = 8; i < toks.size(); ++i) {
        const auto before = s.stats();
        s.decode(toks[i]);
        const auto after = s.stats();
        const uint64_t macs = after.decode_weight_macs - before.decode_weight_macs;
        const uint64_t bytes = after.decode_weight_bytes - before.decode_weight_bytes;
        if (i == 8) {
            macs_per_token = macs;
            bytes_per_token = bytes;
        }
        EXPECT_EQ(macs, macs_per_token) << "token " << i;
        EXPECT_EQ(bytes, bytes_per_token) << "token " << i;
    }
    EXPECT_EQ(s.stats().prefill_weight_macs, 0u);
    // The model is all F32: one token reads 4 bytes per multiply-add, plus its
    // embedding row (read, not multiplied).
    EXPECT_EQ(bytes_per_token, 4 * macs_per_token + 4 * static_cast<uint64_t>(c.n_embd));
    // A prefill with every row's logits runs the same products for each token.
    Session p(model_, {.context_size = 64});
    p.prefill(toks, PrefillOptions{.all_logits = true, .progress = nullptr});
    EXPECT_EQ(p.stats().prefill_weight_macs, toks.size() * macs_per_token);
    EXPECT_EQ(p.stats().decode_weight_macs, 0u);
}

TEST_F(EngineTest, ContextFullIsAnErrorAndLeavesTheSessionUnchanged) {
    Session s(model_, {.context_size = 40});
    const auto toks = random_tokens(40, model_->config().n_vocab, 16);
    s.prefill(std::span(toks).first(39));
    const std::vector<float> before(s.logits().begin(), s.logits().end());
    try {
        s.prefill(std::span(toks).first(2));
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::ContextFull);
    }
    EXPECT_EQ(s.position(), 39);
    EXPECT_EQ(max_abs_diff(s.logits(), before), 0.0f);
    s.decode(toks[39]);
    EXPECT_EQ(s.position(), 40);
    EXPECT_THROW(s.decode(toks[0]), Error);
}

TEST_F(EngineTest, BadTokensAreRejectedBeforeAnyWork) {
    Session s(model_, {.context_size = 64});
    s.prefill(std::vector<TokenId>{1, 2, 3});
    const std::vector<TokenId> bad = {4, model_->config().n_vocab, 5};
    try {
        s.prefill(bad);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("index 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(s.decode(-1), Error);
    EXPECT_THROW(s.prefill(std::vector<TokenId>{}), Error);
    EXPECT_EQ(s.position(), 3);
    EXPECT_THROW(s.rewind(4), Error);
    EXPECT_THROW(s.logits_at(0), Error);
}

TEST_F(EngineTest, ProgressCallbackReportsAndCancels) {
    const auto toks = random_tokens(100, model_->config().n_vocab, 17);
    Session s(model_, {.context_size = 256, .prefill_chunk = 16});
    std::vector<int64_t> seen;
    s.prefill(toks, {.progress = [&](int64_t done, int64_t total) {
                  EXPECT_EQ(total, 100);
                  seen.push_back(done);
                  return true;
              }});
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), 100);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));

    Session c(model_, {.context_size = 256, .prefill_chunk = 16});
    try {
        c.prefill(toks, {.progress = [&](int64_t done, int64_t) { return done < 40; }});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
    EXPECT_EQ(c.position(), 48);  // three chunks of 16 completed
    Session ref(model_, {.context_size = 256});
    ref.prefill(std::span(toks).first(48));
    EXPECT_LE(max_abs_diff(c.logits(), ref.logits()), 1e-4f * std::max(1.0f, max_abs(ref.logits())));
}

TEST_F(EngineTest, SessionsShareOneModelAcrossThreads) {
    const auto toks = random_tokens(40, model_->config().n_vocab, 18);
    Session ref(model_, {.context_size = 64});
    ref.prefill(toks);
    std::vector<float> want(ref.logits().begin(), ref.logits().end());
    std::vector<std::vector<float>> got(3);
    std::vector<std::thread> th;
    for (int i = 0; i < 3; ++i)
        th.emplace_back([&, i] {
            Session s(model_, {.context_size = 64});
            s.prefill(toks);
            got[static_cast<size_t>(i)].assign(s.logits().begin(), s.logits().end());
        });
    for (auto& t : th) t.join();
    for (const auto& g : got) EXPECT_EQ(max_abs_diff(g, want), 0.0f);
}

TEST_F(EngineTest, LogitsStayFiniteOverALongSequence) {
    Session s(model_, {.context_size = 4096, .prefill_chunk = 256});
    const auto toks = random_tokens(3000, model_->config().n_vocab, 19);
    s.prefill(toks);
    EXPECT_TRUE(all_finite(s.logits()));
    EXPECT_GT(max_abs(s.logits()), 0.1f);
    EXPECT_LT(max_abs(s.logits()), 1e3f);
}
