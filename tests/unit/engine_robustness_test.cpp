// Issue 27: nothing an input or a callback does may crash, hang or exhaust
// the host. Hooks that edit the hook list or call back into their session,
// moved-from objects, absurd options, metadata that would size every
// session, override patterns, a model file truncated under the mapping and
// a fork()ed child.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include "ds4/error.hpp"
#include "ds4/gguf.hpp"
#include "ds4/log.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "engine/session_impl.hpp"
#include "model/name_pattern.hpp"
#include "support/errors.hpp"
#include "support/models.hpp"
#include "support/random.hpp"

using namespace ds4;
using test_support::error_of;
using test_support::random_tokens;

namespace {

std::vector<float> copy(std::span<const float> a) { return {a.begin(), a.end()}; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Calls `fn(view)` at every AttnOut point.
class LambdaHook : public Hook {
public:
    explicit LambdaHook(std::function<void(const ActivationView&)> fn) : fn_(std::move(fn)) {}
    bool wants(HookPoint p, int) const override { return p == HookPoint::AttnOut; }
    void on_activation(const ActivationView& v) override { fn_(v); }

private:
    std::function<void(const ActivationView&)> fn_;
};

struct Counter : Hook {
    int calls = 0;
    bool wants(HookPoint p, int) const override { return p == HookPoint::AttnOut; }
    void on_activation(const ActivationView&) override { ++calls; }
};

class RobustnessTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { model_ = Model::load(test_support::tiny_model(WeightMix::F32)); }
    static void TearDownTestSuite() { model_.reset(); }
    static int vocab() { return model_->config().n_vocab; }
    static int layers() { return model_->config().n_layer; }
    static std::shared_ptr<const Model> model_;
};
std::shared_ptr<const Model> RobustnessTest::model_;

}  // namespace

// ---- item 1: hook-list edits inside a hook, re-entrant calls ------------------

TEST_F(RobustnessTest, HookRemovingItselfIsDeferredToTheEndOfTheCall) {
    Session s(model_, {.context_size = 64});
    int calls = 0;
    HookHandle self;
    self = s.add_hook(std::make_shared<LambdaHook>([&](const ActivationView&) {
        if (calls++ == 0) {
            EXPECT_TRUE(s.remove_hook(self));
        }
        EXPECT_FALSE(s.remove_hook(self));  // already removed from the list that takes effect next
    }));
    s.prefill(random_tokens(5, vocab(), 1));
    EXPECT_EQ(calls, layers());  // the running prefill keeps the list it started with
    s.decode(3);
    EXPECT_EQ(calls, layers());  // gone from the next call on
    Session ref(model_, {.context_size = 64});
    ref.prefill(random_tokens(5, vocab(), 1));
    ref.decode(3);
    EXPECT_EQ(copy(s.logits()), copy(ref.logits()));
}

TEST_F(RobustnessTest, HooksAddedOrClearedInsideAHookTakeEffectAfterTheCall) {
    Session s(model_, {.context_size = 64});
    std::vector<std::shared_ptr<Counter>> added;
    bool done = false;
    s.add_hook(std::make_shared<LambdaHook>([&](const ActivationView&) {
        if (done) return;
        done = true;
        for (int i = 0; i < 100; ++i) {  // enough to reallocate the list many times
            added.push_back(std::make_shared<Counter>());
            s.add_hook(added.back());
        }
    }));
    s.prefill(random_tokens(4, vocab(), 2));
    for (const auto& c : added) EXPECT_EQ(c->calls, 0);
    s.decode(5);
    for (const auto& c : added) EXPECT_EQ(c->calls, layers());

    // clear_hooks from inside a hook: the pass finishes with every hook.
    auto last = std::make_shared<Counter>();
    s.add_hook(std::make_shared<LambdaHook>([&](const ActivationView&) { s.clear_hooks(); }));
    s.add_hook(last);
    s.decode(6);
    EXPECT_EQ(last->calls, layers());
    EXPECT_EQ(added[0]->calls, 2 * layers());
    s.decode(7);
    EXPECT_EQ(last->calls, layers());
    EXPECT_EQ(added[0]->calls, 2 * layers());
}

TEST_F(RobustnessTest, ReentrantCallsFromAHookAreRefused) {
    const auto toks = random_tokens(20, vocab(), 3);
    const std::string path = (test_support::model_dir() / "reentrant.ds4s").string();
    Session s(model_, {.context_size = 64});
    s.prefill(std::span(toks).first(4));
    const Snapshot snap = s.snapshot();
    s.save(path);
    const std::vector<std::pair<const char*, std::function<void()>>> calls = {
        {"prefill", [&] { s.prefill(toks); }},
        {"decode", [&] { s.decode(1); }},
        {"rewind", [&] { s.rewind(0); }},
        {"reset", [&] { s.reset(); }},
        {"sync", [&] { s.sync(toks); }},
        {"restore", [&] { s.restore(snap); }},
        {"load", [&] { s.load(path); }},
        {"snapshot", [&] { (void)s.snapshot(); }},
        {"save", [&] { s.save(path); }},
    };
    std::vector<std::string> errors;
    s.add_hook(std::make_shared<LambdaHook>([&](const ActivationView& v) {
        if (v.layer != 1) return;
        for (const auto& [name, call] : calls) {
            errors.push_back(error_of(call));
            EXPECT_TRUE(contains(errors.back(), "re-entrant")) << name << ": " << errors.back();
        }
    }));
    s.prefill(std::span(toks).subspan(4, 8));  // one batch: the hook runs once
    ASSERT_EQ(errors.size(), calls.size());
    EXPECT_TRUE(contains(errors[0], "Session::prefill called while Session::prefill is running")) << errors[0];
    s.decode(toks[12]);
    EXPECT_EQ(errors.size(), calls.size() * 2);

    // The outer calls ran undisturbed.
    Session ref(model_, {.context_size = 64});
    ref.prefill(std::span(toks).first(12));
    ref.decode(toks[12]);
    EXPECT_EQ(s.position(), 13);
    EXPECT_EQ(copy(s.logits()), copy(ref.logits()));
}

TEST_F(RobustnessTest, AReentrantErrorLeftUncaughtFailsTheOuterCallCleanly) {
    Session s(model_, {.context_size = 64});
    s.add_hook(std::make_shared<LambdaHook>([&](const ActivationView&) { s.decode(1); }));
    const std::string msg = error_of([&] { s.prefill(random_tokens(6, vocab(), 4)); });
    EXPECT_TRUE(contains(msg, "re-entrant")) << msg;
    EXPECT_EQ(s.position(), 0);
    s.clear_hooks();
    s.prefill(random_tokens(6, vocab(), 4));  // usable again
    EXPECT_EQ(s.position(), 6);
}

TEST_F(RobustnessTest, ProgressCallbackCannotReenterItsSession) {
    Session s(model_, {.context_size = 64, .prefill_chunk = 4});
    std::string msg;
    s.prefill(random_tokens(12, vocab(), 5), {.progress = [&](int64_t, int64_t) {
                  msg = error_of([&] { s.rewind(0); });
                  return true;
              }});
    EXPECT_TRUE(contains(msg, "Session::rewind called while Session::prefill is running")) << msg;
    EXPECT_EQ(s.position(), 12);
}

// ---- item 2: moved-from Session and Snapshot ----------------------------------

TEST_F(RobustnessTest, MovedFromSessionThrowsOrReportsEmpty) {
    Session a(model_, {.context_size = 64});
    a.prefill(random_tokens(3, vocab(), 6));
    Session b(std::move(a));
    EXPECT_EQ(b.position(), 3);
    // NOLINTBEGIN(bugprone-use-after-move): what a moved-from session does is the point
    EXPECT_EQ(a.position(), 0);
    EXPECT_EQ(a.context_size(), 0);
    EXPECT_TRUE(a.tokens().empty());
    EXPECT_TRUE(a.logits().empty());
    EXPECT_EQ(a.state_bytes(), 0u);
    EXPECT_EQ(a.steering_fingerprint(), 0u);
    EXPECT_EQ(a.active_edits_fingerprint(), 0u);
    EXPECT_EQ(a.common_prefix(b.tokens()), 0);
    EXPECT_EQ(a.model_ptr(), nullptr);
    EXPECT_EQ(a.stats().prefill_tokens, 0);
    a.reset_stats();
    const std::vector<std::function<void()>> calls = {
        [&] { (void)a.model(); },         [&] { (void)a.options(); },
        [&] { a.prefill(b.tokens()); },   [&] { a.decode(1); },
        [&] { (void)a.logits_at(0); },    [&] { a.rewind(0); },
        [&] { a.reset(); },               [&] { a.sync(b.tokens()); },
        [&] { (void)a.snapshot(); },      [&] { a.restore(b.snapshot()); },
        [&] { a.save("/nonexistent"); },  [&] { a.load("/nonexistent"); },
        [&] { a.add_hook(std::make_shared<Counter>()); },
        [&] { a.remove_hook({1}); },      [&] { a.clear_hooks(); },
        [&] { (void)a.impl(); },
    };
    for (size_t i = 0; i < calls.size(); ++i) {
        ErrorCode code{};
        const std::string msg = error_of(calls[i], &code);
        EXPECT_EQ(code, ErrorCode::InvalidArgument) << "call " << i;
        EXPECT_TRUE(contains(msg, "moved from")) << "call " << i << ": " << msg;
    }
    a = std::move(b);  // assigning a live session makes it usable again
    EXPECT_EQ(a.position(), 3);
    a.decode(4);
    // NOLINTEND(bugprone-use-after-move)
}

TEST_F(RobustnessTest, MovedFromSnapshotIsEmptyAndRefusedByRestore) {
    Session s(model_, {.context_size = 64});
    s.prefill(random_tokens(5, vocab(), 7));
    Snapshot a = s.snapshot();
    Snapshot b(std::move(a));
    EXPECT_EQ(b.position(), 5);
    // NOLINTBEGIN(bugprone-use-after-move)
    EXPECT_EQ(a.position(), 0);
    EXPECT_EQ(a.model_fingerprint(), 0u);
    EXPECT_EQ(a.steering_fingerprint(), 0u);
    EXPECT_EQ(a.size_bytes(), 0u);
    Snapshot c(a);  // a copy of nothing is nothing
    EXPECT_EQ(c.position(), 0);
    c = b;
    EXPECT_EQ(c.position(), 5);
    c = a;
    EXPECT_EQ(c.position(), 0);
    const std::string msg = error_of([&] { s.restore(a); });
    EXPECT_TRUE(contains(msg, "moved from")) << msg;
    EXPECT_EQ(s.position(), 5);
    a = b;  // a moved-from snapshot can be assigned
    s.restore(a);
    EXPECT_EQ(s.position(), 5);
    // NOLINTEND(bugprone-use-after-move)
}

// ---- item 3: session options ----------------------------------------------------

TEST_F(RobustnessTest, AbsurdSessionOptionsAreRefusedNamingTheField) {
    struct Case {
        SessionOptions o;
        const char* field;
    };
    const Case cases[] = {
        {{.context_size = 64, .prefill_chunk = 1 << 30}, "prefill_chunk"},
        {{.context_size = 64, .prefill_chunk = 0}, "prefill_chunk"},
        {{.context_size = 64, .prefill_chunk = -5}, "prefill_chunk"},
        {{.context_size = 0}, "context_size"},
        {{.context_size = -1}, "context_size"},
        {{.context_size = int64_t{1} << 40}, "context_size"},
        {{.context_size = 64, .checkpoint_interval = -1}, "checkpoint_interval"},
        {{.context_size = 64, .max_checkpoints = -1}, "max_checkpoints"},
    };
    for (const Case& c : cases) {
        ErrorCode code{};
        const std::string msg = error_of([&] { Session s(model_, c.o); }, &code);
        EXPECT_EQ(code, ErrorCode::InvalidArgument) << msg;
        EXPECT_TRUE(contains(msg, std::string("SessionOptions::") + c.field)) << msg;
    }
}

TEST_F(RobustnessTest, PrefillChunkAboveTheContextActsAsTheContext) {
    const auto toks = random_tokens(40, vocab(), 8);
    Session big(model_, {.context_size = 48, .prefill_chunk = SessionOptions::kMaxPrefillChunk});
    EXPECT_EQ(big.impl().forward.max_batch(), 48);
    big.prefill(toks);
    Session ref(model_, {.context_size = 48, .prefill_chunk = 48});
    ref.prefill(toks);
    EXPECT_EQ(copy(big.logits()), copy(ref.logits()));
}

// ---- item 4: logits_at after a cancelled prefill ------------------------------

TEST_F(RobustnessTest, LogitsAtRefusesRowsACancelledPrefillNeverComputed) {
    const auto toks = random_tokens(40, vocab(), 9);
    Session s(model_, {.context_size = 64, .prefill_chunk = 8});
    EXPECT_THROW(s.prefill(toks, {.all_logits = true, .progress = [](int64_t done, int64_t) { return done < 16; }}),
                 Error);
    ASSERT_EQ(s.position(), 16);
    Session ref(model_, {.context_size = 64, .prefill_chunk = 8});
    ref.prefill(std::span(toks).first(16), {.all_logits = true, .progress = nullptr});
    for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(copy(s.logits_at(i)), copy(ref.logits_at(i))) << i;
    for (int64_t i : {16, 17, 39}) {
        const std::string msg = error_of([&] { (void)s.logits_at(i); });
        EXPECT_TRUE(contains(msg, "stopped after 16 of its 40 tokens")) << msg;
    }
    EXPECT_THROW((void)s.logits_at(40), Error);
    s.decode(1);  // a later call without all_logits keeps none
    EXPECT_THROW((void)s.logits_at(0), Error);
}

// ---- item 5: metadata that would size every session -----------------------------

namespace {

std::string model_with(const std::string& name, const std::function<void(ModelConfig&)>& edit) {
    const std::string path = (test_support::model_dir() / (name + ".gguf")).string();
    if (!std::filesystem::exists(path)) {
        GeneratorOptions o;
        o.config = tiny_model_config();
        edit(o.config);
        generate_model(o, path);
    }
    return path;
}

}  // namespace

TEST(MetadataLimits, AnOversizedWindowIsRefusedAtLoadNamingTheKeyAndTheLimit) {
    const std::string path = model_with("window-2p20", [](ModelConfig& c) { c.sliding_window = 1 << 20; });
    ErrorCode code{};
    const std::string msg = error_of([&] { (void)Model::load(path); }, &code);
    EXPECT_EQ(code, ErrorCode::UnsupportedModel);
    EXPECT_TRUE(contains(msg, "deepseek4.attention.sliding_window")) << msg;
    EXPECT_TRUE(contains(msg, std::to_string(ModelConfig::Limits::window))) << msg;
}

TEST(MetadataLimits, SizeLikeKeysAboveTheirLimitsAreRefused) {
    struct Case {
        const char* name;
        std::function<void(ModelConfig&)> edit;
        const char* key;
    };
    const Case cases[] = {
        {"sinkhorn-big", [](ModelConfig& c) { c.hc_sinkhorn_iters = 1 << 20; }, "sinkhorn_iterations"},
        {"topk-big", [](ModelConfig& c) { c.indexer_top_k = 1 << 24; }, "indexer.top_k"},
        {"ratio-big", [](ModelConfig& c) { c.compress_ratios[3] = 8192; }, "compress_ratios"},
    };
    for (const Case& c : cases) {
        const std::string msg = error_of([&] { (void)Model::load(model_with(c.name, c.edit)); });
        EXPECT_TRUE(contains(msg, c.key)) << msg;
    }
}

TEST(MetadataLimits, SessionsAllocateTheRawWindowForAtMostTheirContext) {
    const auto model = Model::load(model_with("window-4096", [](ModelConfig& c) {
        c.sliding_window = ModelConfig::Limits::window;
    }));
    const auto& cfg = model->config();
    Session small(model, {.context_size = 40});
    for (const auto& L : small.impl().state.layers)
        EXPECT_EQ(L.raw.size(), static_cast<size_t>(40) * static_cast<size_t>(cfg.head_dim));
    // Same results as a session whose ring holds the whole window, through
    // snapshots in both directions and a snapshot file.
    const auto toks = random_tokens(40, cfg.n_vocab, 10);
    Session big(model, {.context_size = 8192});
    small.prefill(std::span(toks).first(30));
    big.prefill(std::span(toks).first(30));
    EXPECT_EQ(copy(small.logits()), copy(big.logits()));
    Session from_small(model, {.context_size = 8192});
    from_small.restore(small.snapshot());
    Session from_big(model, {.context_size = 40});
    from_big.restore(big.snapshot());
    const std::string path = (test_support::model_dir() / "small-ring.ds4s").string();
    small.save(path);
    Session from_file(model, {.context_size = 8192});
    from_file.load(path);
    for (size_t i = 30; i < toks.size(); ++i)
        for (Session* s : {&small, &big, &from_small, &from_big, &from_file}) s->decode(toks[i]);
    for (const Session* s : {&big, &from_small, &from_big, &from_file})
        EXPECT_EQ(copy(s->logits()), copy(small.logits()));
}

// ---- item 6: tensor override patterns -------------------------------------------

TEST(OverridePatterns, MatchLikeStdRegexOnTensorNames) {
    const char* patterns[] = {
        "attn_q_a\\.weight$", "^blk\\.2\\.(attn_kv|hc_attn_fn|hc_ffn_fn|attn_norm)\\.weight$", "attn_|shexp|^output",
        "blk\\.[0-9]+\\.ffn_.*_exps", "blk\\.\\d{1,2}\\.", "^blk\\.(1|3|5)\\.", "[^a-z_.0-9]", "^$", "", "x?",
        "exps\\.weight$", "(?:gate|up)_exps", "blk\\.1[0-9]?\\.attn", "^.{20,}$", "^.{3}$", "a{2}", "\\w+\\.\\w+$",
        "[a-c-]", "\\s", "\\S+", "(a|b)*c", "^(blk|output)", "[.]w", "o+u*t?", "x{0,0}y?", "ffn_(gate|up|down)_shexp",
    };
    const char* names[] = {
        "blk.2.attn_q_a.weight", "blk.2.attn_kv.weight", "blk.12.ffn_gate_exps.weight", "output.weight",
        "output_hc_fn.weight", "token_embd.weight", "blk.1.attn_norm.weight", "blk.3.hc_ffn_fn.weight", "", "a",
        "aa", "abc", "blk.5.ffn_down_shexp.weight", "blk.17.attn_output_a.weight", "A-B", "xyz", "ccc",
    };
    // std::regex_search(name, std::regex(pattern)) for each pattern and name
    // (libstdc++ 12), recorded: std::regex in this file warns under the
    // sanitizers.
    const char* const expected[] = {
        "10000000000000000",  // attn_q_a\.weight$
        "01000000000000000",  // ^blk\.2\.(attn_kv|hc_attn_fn|hc_ffn_fn|attn_norm)\.weight$
        "11011010000011000",  // attn_|shexp|^output
        "00100000000000000",  // blk\.[0-9]+\.ffn_.*_exps
        "11100011000011000",  // blk\.\d{1,2}\.
        "00000011000010000",  // ^blk\.(1|3|5)\.
        "00000000000000100",  // [^a-z_.0-9]
        "00000000100000000",  // ^$
        "11111111111111111",  // (empty)
        "11111111111111111",  // x?
        "00100000000000000",  // exps\.weight$
        "00100000000000000",  // (?:gate|up)_exps
        "00000010000001000",  // blk\.1[0-9]?\.attn
        "11100011000011000",  // ^.{20,}$
        "00000000000100111",  // ^.{3}$
        "00000000001000000",  // a{2}
        "11111111000011000",  // \w+\.\w+$
        "11101111011111101",  // [a-c-]
        "00000000000000000",  // \s
        "11111111011111111",  // \S+
        "00001001000100001",  // (a|b)*c
        "11111011000011000",  // ^(blk|output)
        "11111111000011000",  // [.]w
        "00011110000011000",  // o+u*t?
        "11111111111111111",  // x{0,0}y?
        "00000000000010000",  // ffn_(gate|up|down)_shexp
    };
    ASSERT_EQ(std::size(expected), std::size(patterns));
    for (size_t i = 0; i < std::size(patterns); ++i) {
        const model::NamePattern mine(patterns[i]);
        for (size_t j = 0; j < std::size(names); ++j)
            EXPECT_EQ(mine.search(names[j]), expected[i][j] == '1')
                << "pattern '" << patterns[i] << "' name '" << names[j] << "'";
    }
}

TEST(OverridePatterns, LongNamesAndBacktrackingPatternsRunInLinearTime) {
    const std::string name(300 * 1024, 'a');
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(model::NamePattern(".*").search(name));
    EXPECT_TRUE(model::NamePattern("^(a|aa)*$").search(name));
    EXPECT_FALSE(model::NamePattern("(a*)*b").search(name));
    EXPECT_FALSE(model::NamePattern("^(a+)+$").search(name + "!"));
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

TEST(OverridePatterns, UnsupportedOrOversizedPatternsAreClearErrors) {
    const std::pair<std::string, const char*> bad[] = {
        {"(a)\\1", "back-references"},   {"(?=a)", "lookaround"},   {"\\bblk", "word boundaries"},
        {"([unclosed", "unterminated"},  {"(a", "unmatched '('"},   {"a)", "unmatched ')'"},
        {"*a", "nothing to repeat"},     {"a**", "nothing to repeat"}, {"a{3,2}", "m < n"},
        {"a{1001}", "above 1000"},       {"[z-a]", "out of order"}, {"\\q", "\\q"},
        {std::string(2000, 'a'), "limit is 1024"},
        {std::string(70, '(') + std::string(70, ')'), "nested deeper"},
        {"(((a{1000}){1000}){1000})", "states"},
    };
    for (const auto& [p, why] : bad) {
        ErrorCode code{};
        const std::string msg = error_of([&] { model::NamePattern x(p); }, &code);
        EXPECT_EQ(code, ErrorCode::InvalidArgument) << msg;
        EXPECT_TRUE(contains(msg, why)) << "pattern '" << p.substr(0, 40) << "': " << msg;
    }
}

TEST(OverridePatterns, AModelWithA300KiBTensorNameLoadsWithADotStarOverride) {
    const std::string path = (test_support::model_dir() / "long-name.gguf").string();
    {
        const auto src = gguf::File::open(test_support::tiny_model(WeightMix::F32));
        gguf::Writer w;
        for (const auto& [k, v] : src.metadata())
            if (k != "general.alignment") w.set(k, v);
        for (const auto& t : src.tensors()) w.add_tensor(t.name, t.type, t.shape, {t.data, t.n_bytes});
        const float x[4] = {1, 2, 3, 4};
        w.add_tensor_f32(std::string(300 * 1024, 'x'), {4}, x);
        w.write(path);
    }
    ModelOptions mo;
    mo.tensor_overrides = {{".*", "cpu"}};
    const auto m = Model::load(path, mo);
    Session s(m, {.context_size = 16});
    s.prefill(std::vector<TokenId>{1, 2, 3});
    EXPECT_EQ(s.position(), 3);
}

// ---- item 7: the mapped model file ---------------------------------------------

TEST(ModelFile, TruncationDuringLoadIsAnError) {
    const std::string path = (test_support::model_dir() / "truncated-during-load.gguf").string();
    std::filesystem::copy_file(test_support::tiny_model(WeightMix::F32), path,
                               std::filesystem::copy_options::overwrite_existing);
    const auto size = std::filesystem::file_size(path);
    // The warning about an override that matches nothing comes after the
    // tensors are bound and before the load reads them all (fingerprint).
    set_log_sink([&](LogLevel, std::string_view msg) {
        if (msg.find("matches no tensor") != std::string_view::npos) std::filesystem::resize_file(path, size / 2);
    });
    ModelOptions mo;
    mo.tensor_overrides = {{"no-such-tensor", "cpu"}};
    ErrorCode code{};
    const std::string msg = error_of([&] { (void)Model::load(path, mo); }, &code);
    set_log_sink(nullptr);
    EXPECT_EQ(code, ErrorCode::CorruptFile);
    EXPECT_TRUE(contains(msg, "truncated")) << msg;
    EXPECT_TRUE(contains(msg, "renaming a new file over it")) << msg;
    // Truncated before load: the same kind of error.
    EXPECT_THROW((void)Model::load(path), Error);
}

TEST(ModelFile, GgufFileNoticesATruncation) {
    const std::string path = (test_support::model_dir() / "truncated-gguf.gguf").string();
    std::filesystem::copy_file(test_support::tiny_model(WeightMix::F32), path,
                               std::filesystem::copy_options::overwrite_existing);
    const auto f = gguf::File::open(path);
    f.check_not_truncated();
    std::filesystem::resize_file(path, f.file_size() - 1);
    EXPECT_THROW(f.check_not_truncated(), Error);
}

TEST(Fork, AChildProcessCanRunTheModelItsParentLoaded) {
    const auto model = Model::load(test_support::tiny_model(WeightMix::F32));
    const auto toks = random_tokens(24, model->config().n_vocab, 11);
    Session parent(model, {.context_size = 64});
    parent.prefill(toks);  // the worker pool has run: its threads exist in the parent only
    const std::vector<float> want = copy(parent.logits());
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(60);  // a hang ends as SIGALRM, not as a stuck test
        int status = 3;
        try {
            Session child(model, {.context_size = 64});
            child.prefill(toks);
            status = copy(child.logits()) == want ? 0 : 2;
        } catch (...) {
            status = 4;
        }
        _exit(status);
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    pid_t got = 0;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "the child hung";
    }
    ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    // The parent's pool still works.
    parent.decode(toks[0]);
    EXPECT_EQ(parent.position(), 25);
}
