// train_steering on the tiny generated model: inputs checked up front,
// cancellation, each metric's path, and a report that matches the vector.
// (Whether the defaults steer is tests/demo/steering_training_test.cpp's job:
// a random model has no behaviour to find.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/steering_training.hpp"
#include "support/errors.hpp"
#include "support/models.hpp"

using namespace ds4;

namespace {

class SteeringTrainingTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        model_ = Model::load(test_support::tiny_model(WeightMix::F32, 1, VocabKind::Small));
    }
    static void TearDownTestSuite() { model_.reset(); }
    static std::shared_ptr<const Model> model_;

    static SteeringDataset small_dataset() {
        SteeringDataset d;
        d.add_completions("hello there", "ok", "well, let me think about this for a long while");
        d.add_completions("tell me", "yes", "there are many things to say and I will say them all");
        d.add_completions("what now", "no", "it depends on a great many circumstances of every kind");
        d.add_heldout("say something", "short", "a much longer completion than the other one");
        d.add_heldout("and again", "brief", "another long completion with many more words in it");
        return d;
    }
    static SteeringTrainingOptions fast_options() {
        SteeringTrainingOptions o;
        o.candidates = {{SteeringSite::LayerOut, SteeringOp::Add, TokenReduction::MeanResponse, 4,
                         ExtractionMethod::MeanDifference, false, {1, 2}},
                        {SteeringSite::FfnOut, SteeringOp::Project, TokenReduction::MeanResponse, 0,
                         ExtractionMethod::MeanDifference, true, {}}};
        o.add_scales = {1.0f, 4.0f};
        o.project_scales = {0.5f};
        o.budget.search_prompts = 2;
        o.budget.confirm_prompts = 0;
        o.budget.max_new_tokens = 6;
        o.coherence_tokens = 4;
        o.max_kl = 1e9;  // a random model: keep every row
        return o;
    }
};
std::shared_ptr<const Model> SteeringTrainingTest::model_;

void expect_error_mentions(const std::function<void()>& f, const std::string& text) {
    const std::string message = test_support::error_of(f);
    EXPECT_NE(message.find(text), std::string::npos) << message;
}

}  // namespace

TEST_F(SteeringTrainingTest, BadInputsAreClearErrors) {
    auto train = [&](const SteeringDataset& d, const SteeringTrainingOptions& o) { train_steering(model_, d, o); };
    SteeringDataset one;
    one.add_pair("a", "b");
    one.add_heldout("c");
    expect_error_mentions([&] { train(one, fast_options()); }, "at least 2 contrast pairs");
    SteeringDataset no_heldout = small_dataset();
    no_heldout.heldout.clear();
    expect_error_mentions([&] { train(no_heldout, fast_options()); }, "held-out");
    auto o = fast_options();
    o.candidates[0].layers = {1, 99};
    expect_error_mentions([&] { train(small_dataset(), o); }, "layer 99");
    o = fast_options();
    o.candidates[0].site = SteeringSite::RouterLogits;
    expect_error_mentions([&] { train(small_dataset(), o); }, "router_logits");
    o = fast_options();
    o.metric.kind = BehaviourMetric::Kind::Custom;
    expect_error_mentions([&] { train(small_dataset(), o); }, "score function");
    o = fast_options();
    o.add_scales = {1.0f, NAN};
    expect_error_mentions([&] { train(small_dataset(), o); }, "scale");
    o = fast_options();
    o.budget.max_new_tokens = 0;
    expect_error_mentions([&] { train(small_dataset(), o); }, "budget");
    SteeringDataset assistant_last = small_dataset();
    assistant_last.heldout[0].conversation.push_back({Role::Assistant, "hi", ""});
    expect_error_mentions([&] { train(assistant_last, fast_options()); }, "held-out prompt 0");
    SteeringDataset no_completion = small_dataset();
    no_completion.heldout[1].negative_completion.clear();
    o = fast_options();
    o.metric.kind = BehaviourMetric::Kind::CompletionLogProb;
    expect_error_mentions([&] { train(no_completion, o); }, "completion");
    expect_error_mentions([&] { SteeringDataset d; d.add_personas("no placeholder", "a", "b", std::vector<std::string>{"x"}); },
                          "{persona}");
}

TEST_F(SteeringTrainingTest, ProgressCanCancel) {
    auto o = fast_options();
    int calls = 0;
    o.progress = [&](const SteeringTrainingProgress& p) {
        ++calls;
        return p.stage != "capture";
    };
    try {
        train_steering(model_, small_dataset(), o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
    EXPECT_GT(calls, 1);
}

// Answer length: the given completions tell the orientation (the positive,
// short side: -1); every candidate walks its ladder, and the report and the
// returned vector agree.
TEST_F(SteeringTrainingTest, AnswerLengthReportMatchesTheVector) {
    const TrainedSteering t = train_steering(model_, small_dataset(), fast_options());
    EXPECT_EQ(t.positive_direction, -1);
    EXPECT_LT(t.pairs_metric_positive, t.pairs_metric_negative);
    ASSERT_EQ(t.report.size(), 3u);  // two add scales, one project scale
    EXPECT_EQ(t.report[0].candidate, "layer_out add answer[0,4) mean_diff L1-2");
    EXPECT_FLOAT_EQ(t.report[0].scale, 0.5f);  // 1 / two steered layers
    EXPECT_FLOAT_EQ(t.report[1].scale, 2.0f);
    int64_t tokens = 0;
    for (const auto& r : t.report) {
        EXPECT_TRUE(std::isfinite(r.metric_positive) && std::isfinite(r.metric_negative) && std::isfinite(r.kl));
        EXPECT_GT(r.tokens, 0);
        tokens += r.tokens;
        const double up = -(r.metric_positive - r.metric_base), down = -(r.metric_base - r.metric_negative);
        EXPECT_NEAR(r.effect, std::min(up, down), 1e-12);
    }
    EXPECT_GT(t.tokens, tokens);  // plus answers, captures and the baseline
    if (t.found) {
        size_t chosen = 0;
        for (const auto& r : t.report) chosen += r.chosen;
        EXPECT_EQ(chosen, 1u);
        EXPECT_GT(t.vector.scale(), 0.0f);
        EXPECT_FALSE(t.vector.layers().empty());
        EXPECT_FALSE(t.vector.provenance.notes.at("training_report").empty());
    }
}

TEST_F(SteeringTrainingTest, TheGuardStopsTheLadder) {
    auto o = fast_options();
    o.max_kl = 1e-12;  // any edit breaks it
    o.kl_quantile = 1.0;
    const TrainedSteering t = train_steering(model_, small_dataset(), o);
    ASSERT_EQ(t.report.size(), 2u);  // the first scale of each candidate, then stop
    for (const auto& r : t.report) EXPECT_FALSE(r.coherent);
    EXPECT_FALSE(t.found);
}

// Completion pairs share their prompt: the last prompt token cannot tell the
// sides apart, and the report says so instead of measuring a zero vector.
TEST_F(SteeringTrainingTest, ACandidateWithoutDirectionIsReported) {
    auto o = fast_options();
    o.candidates.resize(1);
    o.candidates[0].reduction = TokenReduction::LastPromptToken;
    const TrainedSteering t = train_steering(model_, small_dataset(), o);
    ASSERT_EQ(t.report.size(), 1u);
    EXPECT_NE(t.report[0].note.find("no direction"), std::string::npos);
    EXPECT_EQ(t.report[0].tokens, 0);
    EXPECT_FALSE(t.found);
    EXPECT_NE(t.table().find("no direction"), std::string::npos);
}

TEST_F(SteeringTrainingTest, CompletionLogProbAndCustomMetricsRun) {
    auto o = fast_options();
    o.metric.kind = BehaviourMetric::Kind::CompletionLogProb;
    const TrainedSteering ab = train_steering(model_, small_dataset(), o);
    EXPECT_EQ(ab.positive_direction, 1);
    ASSERT_FALSE(ab.report.empty());
    EXPECT_TRUE(std::isfinite(ab.report[0].metric_base));
    o.metric.kind = BehaviourMetric::Kind::Custom;
    int scored = 0;
    o.metric.score = [&](const std::string&, const std::string& answer) {
        ++scored;
        return static_cast<double>(answer.size());
    };
    o.metric.positive_direction = 1;
    const TrainedSteering custom = train_steering(model_, small_dataset(), o);
    EXPECT_GT(scored, 0);
    EXPECT_EQ(custom.positive_direction, 1);
}
