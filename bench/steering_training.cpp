// bench/steering_training: what ds4::train_steering costs.
//
// 1. The one call with the library defaults on the demo model: the
//    train.brief / train.detail prompts of data/demo-model/prompts.tsv as
//    pairs, heldout.neutral as held-out prompts. Prints the report, the total
//    time and the tokens evaluated.
// 2. One candidate row on a full-width generated model (--layers N, cached in
//    $DS4_BENCH_MODEL_DIR): the cost of measuring one setting at one scale
//    (prefill + generation tokens and seconds), which scales a search on the
//    real model (rows x that cost x 43 / N layers).
//
// usage: ds4-bench-steering_training [--demo-only] [--layers 2] [--mix q2] [--prompts 4] [--new-tokens 32]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_models.hpp"
#include "common/demo_model.hpp"
#include "ds4/model.hpp"
#include "ds4/steering_training.hpp"

namespace {

void bench_demo() {
    const example::DemoModel demo;
    const auto sets = demo.prompt_sets();
    ds4::SteeringDataset data;
    const auto& brief = sets.at("train.brief");
    const auto& detail = sets.at("train.detail");
    for (size_t i = 0; i < std::min<size_t>(40, std::min(brief.size(), detail.size())); ++i)
        data.add_pair(brief[i], detail[i]);
    for (const auto& q : sets.at("heldout.neutral")) data.add_heldout(q);
    auto model = ds4::Model::load(demo.path());
    const ds4::TrainedSteering t = ds4::train_steering(model, data);
    std::printf("demo model, library defaults, %zu pairs, %zu held-out prompts:\n%s", data.pairs.size(),
                data.heldout.size(), t.table().c_str());
    std::printf("train_steering on the demo model: %.1f s, %lld tokens evaluated (%.0f tokens/s), %zu rows, "
                "chosen %s at %.3f\n\n",
                t.seconds, static_cast<long long>(t.tokens), static_cast<double>(t.tokens) / t.seconds,
                t.report.size(), t.found ? t.setting.label().c_str() : "(none)",
                static_cast<double>(t.vector.scale()));
}

void bench_full_width(int layers, const std::string& mix, int prompts, int new_tokens) {
    auto model = ds4::Model::load(ds4::bench::full_width_model(layers, mix));
    ds4::SteeringDataset data;
    for (int i = 0; i < 4; ++i)
        data.add_pair("Answer briefly: question " + std::to_string(i) + "?",
                      "Answer at length: question " + std::to_string(i) + "?");
    for (int i = 0; i < prompts; ++i) data.add_heldout("Tell me about topic number " + std::to_string(i) + ".");
    ds4::SteeringTrainingOptions o;
    o.metric.positive_direction = -1;  // random weights: the pairs' answers do not tell
    o.candidates = {ds4::default_steering_candidates(model->config().n_layer).front()};
    o.add_scales = {1.0f};
    o.budget.search_prompts = prompts;
    o.budget.confirm_prompts = 0;
    o.budget.max_new_tokens = new_tokens;
    const ds4::TrainedSteering t = ds4::train_steering(model, data, o);
    std::printf("full-width %s model, %d layers:\n%s", mix.c_str(), layers, t.table().c_str());
    for (const auto& r : t.report)
        std::printf("one measured row (%d prompts x +/-, %d new tokens each, plus the guard): %lld tokens in %.2f s "
                    "(%.1f tokens/s)\n",
                    r.prompts, new_tokens, static_cast<long long>(r.tokens), r.seconds,
                    static_cast<double>(r.tokens) / r.seconds);
    std::printf("whole call: %lld tokens in %.1f s\n", static_cast<long long>(t.tokens), t.seconds);
}

}  // namespace

int main(int argc, char** argv) {
    int layers = 2, prompts = 4, new_tokens = 32;
    std::string mix = "q2";
    bool demo_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--demo-only") demo_only = true;
        else if (a == "--layers") layers = std::atoi(next());
        else if (a == "--mix") mix = next();
        else if (a == "--prompts") prompts = std::atoi(next());
        else if (a == "--new-tokens") new_tokens = std::atoi(next());
        else {
            std::fprintf(stderr, "usage: ds4-bench-steering_training [--demo-only] [--layers N] [--mix q2|q4] "
                                 "[--prompts N] [--new-tokens N]\n");
            return 2;
        }
    }
    try {
        bench_demo();
        if (!demo_only) bench_full_width(layers, mix, prompts, new_tokens);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-bench-steering_training: %s\n", e.what());
        return 1;
    }
    return 0;
}
