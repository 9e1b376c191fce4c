// The trained demo model (data/demo-model), through the C++ engine:
//  - the engine's logits match the trainer's PyTorch model on the shipped file;
//  - the refusal direction found by find_refusal_direction, ablated everywhere
//    (a directional_ablation set swept at scales 0 and -1), takes the refusal
//    rate on held-out harmful prompts from >= 90% to <= 10% while the answers
//    to >= 90% of the held-out harmless prompts stay the same;
//  - the terseness direction from extract_direction, at the recommended scale,
//    cuts the mean response length on held-out neutral prompts to <= 60% of the
//    unsteered mean, and with the opposite sign raises it to >= 140%.
// The steering steps are the demo's (examples/common/demo_model.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "demo_model.hpp"
#include "ds4/ds4.hpp"

namespace {

using example::DemoModel;

std::shared_ptr<const ds4::Model> load_demo() {
    static std::shared_ptr<const ds4::Model> model = ds4::Model::load(DemoModel{}.path());
    return model;
}

struct LogitComparison {
    size_t positions = 0, argmax_same = 0;
    double worst = 0, median = 0;  // per position: max |engine - torch| / max |torch|
};

// The engine's logits on `model_path` for check_tokens.txt against the
// PyTorch model's logits in `logits_file` (float32, positions x vocab).
LogitComparison compare_with_trainer(const std::string& model_path, const std::string& logits_file) {
    const DemoModel demo;
    std::ifstream tin(demo.dir + "/check_tokens.txt");
    if (!tin) throw std::runtime_error("missing check_tokens.txt");
    std::vector<ds4::TokenId> toks;
    for (ds4::TokenId t; tin >> t;) toks.push_back(t);
    auto model = ds4::Model::load(model_path);
    const size_t V = static_cast<size_t>(model->config().n_vocab);
    std::ifstream lin(demo.dir + "/" + logits_file, std::ios::binary);
    std::vector<float> ref(toks.size() * V);
    lin.read(reinterpret_cast<char*>(ref.data()), static_cast<std::streamsize>(ref.size() * sizeof(float)));
    if (static_cast<size_t>(lin.gcount()) != ref.size() * sizeof(float))
        throw std::runtime_error(logits_file + " does not hold positions x vocab floats");

    ds4::Session s(model, {.context_size = static_cast<int64_t>(toks.size()) + 1});
    ds4::PrefillOptions po;
    po.all_logits = true;
    s.prefill(toks, po);
    LogitComparison c;
    c.positions = toks.size();
    std::vector<double> rel;
    for (size_t t = 0; t < toks.size(); ++t) {
        const auto got = s.logits_at(static_cast<int64_t>(t));
        const float* want = ref.data() + t * V;
        double scale = 0, diff = 0;
        size_t a = 0, b = 0;
        for (size_t v = 0; v < V; ++v) {
            scale = std::max(scale, std::fabs(static_cast<double>(want[v])));
            diff = std::max(diff, std::fabs(static_cast<double>(got[v]) - want[v]));
            if (got[v] > got[a]) a = v;
            if (want[v] > want[b]) b = v;
        }
        rel.push_back(diff / scale);
        c.argmax_same += a == b;
    }
    c.worst = *std::max_element(rel.begin(), rel.end());
    std::nth_element(rel.begin(), rel.begin() + static_cast<std::ptrdiff_t>(rel.size() / 2), rel.end());
    c.median = rel[rel.size() / 2];
    return c;
}

TEST(DemoModel, EngineReproducesTheTrainersLogits) {
    // The trainer wrote, at export, the logits of its PyTorch model (float64)
    // on the shipped weights for a held-out conversation (check_tokens.txt).
    //
    // 1. Exact weights, no activation quantization: the shipped file converted
    //    to F32 (its dequantized values) through the engine against
    //    check_logits.f32. Both compute the same function; the bound is the
    //    engine's float32 arithmetic and its FP8/f16 KV rounding (the
    //    engine-vs-NumPy-reference F32 parity sees up to 2e-3 over 200 tokens).
    const DemoModel demo;
    const std::string f32_path = ::testing::TempDir() + "ds4-demo-f32.gguf";
    ds4::quantize_model(demo.path(), f32_path, ds4::WeightMix::F32);
    const LogitComparison exact = compare_with_trainer(f32_path, "check_logits.f32");
    std::printf("  F32 conversion, %zu positions: max rel %.2e, median %.2e, argmax agrees at %zu\n", exact.positions,
                exact.worst, exact.median, exact.argmax_same);
    EXPECT_LT(exact.worst, 1e-3);
    EXPECT_EQ(exact.argmax_same, exact.positions);
    std::remove(f32_path.c_str());

    // 2. The q2 file itself, whose activations the engine quantizes (Q8_0 /
    //    Q8_K, spec 6.1), against check_logits_q8.f32 (the trainer applying the
    //    same quantization in float64). An activation within float32 rounding
    //    of a quantization midpoint rounds differently in the two, and the
    //    trained model's sharp logits amplify such flips: judged by the median
    //    position and the argmax, with a loose bound on the worst position.
    const LogitComparison q = compare_with_trainer(demo.path(), "check_logits_q8.f32");
    std::printf("  q2 file, %zu positions: max rel %.2e, median %.2e, argmax agrees at %zu\n", q.positions, q.worst,
                q.median, q.argmax_same);
    EXPECT_LT(q.median, 1e-2);
    EXPECT_LT(q.worst, 0.2);
    EXPECT_GE(static_cast<double>(q.argmax_same), 0.95 * static_cast<double>(q.positions));
}

// Issue 7's refusal acceptance, in two parts. The refusal direction that
// find_refusal_direction extracts from the train split, ablated with
// directional_ablation, must take the refusal rate of held-out harmful
// requests from >= 90% to <= 10%, and leave >= 90% of the answers to other
// held-out prompts unchanged (shipped model: 98% -> 0%, 59 of 64 unchanged).
ds4::SweepOptions refusal_sweep_options(const ds4::Tokenizer& tok, int max_tokens) {
    ds4::SweepOptions so;
    so.scales = {0.0f, -1.0f};  // project: -1 removes the component
    so.generation.max_tokens = max_tokens;
    so.generation.stop_tokens = {tok.specials().eos};
    so.refusal_prefixes = {example::refusal_text_tokens(tok)};
    return so;
}

// The demo's refusal recipe: find_refusal_direction on the train split, and
// the directional ablation of what it found.
struct RefusalAblation {
    std::shared_ptr<const ds4::Model> model = load_demo();
    DemoModel demo;
    ds4::RefusalDirection rd = example::refusal_direction(model, demo);
    std::vector<ds4::SteeringVector> ablation = ds4::directional_ablation(*model, rd.direction, ds4::SteeringOp::Project);
};

TEST(DemoModel, RefusalAblationBypassesRefusals) {
    const RefusalAblation r;
    const auto& [model, demo, rd, ablation] = r;
    const ds4::Tokenizer& tok = *model->tokenizer();
    const auto harmful = example::chat_prompts(tok, demo.prompt_set("heldout.harmful"));
    const auto rows = ds4::sweep(model, harmful, ablation, ds4::SweepMetric::RefusalRate, refusal_sweep_options(tok, 12));
    std::printf("  refusal rate on %zu held-out harmful prompts: %.3f unsteered, %.3f ablated (layer %d)\n",
                harmful.size(), rows[0].mean, rows[1].mean, rd.layer);
    EXPECT_GE(rows[0].mean, 0.9);
    EXPECT_LE(rows[1].mean, 0.1);
}

// Second part: the ablation leaves the answers to other held-out prompts
// (questions and harmless requests about taught entities and objects, with
// and without cues) token for token the same.
TEST(DemoModel, RefusalAblationKeepsOtherAnswers) {
    const RefusalAblation r;
    const auto& [model, demo, rd, ablation] = r;
    const ds4::Tokenizer& tok = *model->tokenizer();
    const auto others = example::chat_prompts(tok, demo.prompt_set("heldout.other"));
    const auto kept = ds4::sweep(model, others, ablation, ds4::SweepMetric::ResponseLength, refusal_sweep_options(tok, 96));
    size_t same = 0;
    for (size_t i = 0; i < others.size(); ++i) same += kept[0].responses[i] == kept[1].responses[i];
    const double frac = static_cast<double>(same) / static_cast<double>(others.size());
    std::printf("  held-out other prompts answered identically with the ablation: %zu of %zu\n", same, others.size());
    EXPECT_GE(frac, 0.9);
}

TEST(DemoModel, TersenessDirectionShortensAndLengthensAnswers) {
    auto model = load_demo();
    const DemoModel demo;
    const ds4::Tokenizer& tok = *model->tokenizer();
    const ds4::Extraction ex = example::terse_direction(model, demo);
    const float s = ex.vector.scale();
    ASSERT_GT(s, 0.0f);
    ds4::SweepOptions so;
    so.scales = {-s, 0.0f, s};
    so.generation.max_tokens = 128;
    so.generation.stop_tokens = {tok.specials().eos};
    const auto prompts = example::chat_prompts(tok, demo.prompt_set("heldout.neutral"));
    const auto rows = ds4::sweep(model, prompts, ex.vector, ds4::SweepMetric::ResponseLength, so);
    std::printf("  mean response tokens on %zu held-out neutral prompts: %.1f at -%.3f, %.1f unsteered, %.1f at +%.3f"
                " (layer %d)\n",
                prompts.size(), rows[0].mean, static_cast<double>(s), rows[1].mean, rows[2].mean,
                static_cast<double>(s), ex.best_layer);
    ASSERT_GT(rows[1].mean, 0.0);
    EXPECT_LE(rows[2].mean, 0.6 * rows[1].mean);
    EXPECT_GE(rows[0].mean, 1.4 * rows[1].mean);
}

}  // namespace
