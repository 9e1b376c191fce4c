// terse: find a terseness direction in the demo model and steer with it.
//
// usage: ds4-example-terse [DEMO_MODEL_DIR] [OUT.ds4steer.gguf]
//
// The demo model (data/demo-model) answers tersely when asked for brevity,
// verbosely when asked for detail, and either way, half and half, when asked
// for neither. The direction between the two requests is found with
// extract_direction and then steers answers to questions that ask for neither.
//
// 1. Capture the layer output over the first sentence of the model's answers
//    to prompts that ask for brevity and to prompts that ask for detail (train
//    split); the difference of means per layer, normalised, with a per-layer
//    report (separation, Cohen's d). The best layer's mean gap is the
//    recommended scale (examples/common/demo_model.hpp has the recipe).
// 2. Sweep the scale on held-out questions that ask for neither (ds4::sweep,
//    response length) and show some answers at each scale.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/demo_model.hpp"
#include "ds4/ds4.hpp"

int main(int argc, char** argv) {
    try {
        example::DemoModel demo;
        if (argc > 1) demo.dir = argv[1];
        auto model = ds4::Model::load(demo.path());
        const ds4::Tokenizer& tok = *model->tokenizer();
        std::printf("model: %s\n", demo.path().c_str());

        const ds4::Extraction ex = example::terse_direction(model, demo);
        std::printf("\nper-layer separation (answers to brief minus detailed requests, layer output, mean over the\n"
                    "first sentence of the answer):\n");
        std::printf("  layer  mean gap   cohen d  pair acc\n");
        for (const auto& l : ex.layers)
            std::printf("  %5d  %8.4f  %8.3f  %8.2f\n", l.layer, l.mean_gap, l.cohens_d, l.pair_accuracy);
        const float unit = ex.vector.scale();
        std::printf("best layer %d, recommended scale %.4f (its mean projection gap); steering layers 2-3\n", ex.best_layer,
                    static_cast<double>(unit));
        const std::string out_path = argc > 2 ? argv[2] : "terse.ds4steer.gguf";
        ex.vector.save(out_path);
        std::printf("saved %s\n", out_path.c_str());

        const auto questions = demo.prompt_set("heldout.neutral");
        const auto prompts = example::chat_prompts(tok, questions);
        ds4::SweepOptions so;
        so.scales = {-unit, -0.5f * unit, 0, 0.5f * unit, unit};
        so.generation.max_tokens = 128;
        so.generation.stop_tokens = {tok.specials().eos};
        const auto rows = ds4::sweep(model, prompts, ex.vector, ds4::SweepMetric::ResponseLength, so);
        std::printf("\nmean response length (tokens) by scale, %zu held-out questions that ask for neither:\n%s",
                    prompts.size(), ds4::sweep_table(rows, ds4::SweepMetric::ResponseLength).c_str());
        const double base = rows[2].mean;
        std::printf("at +recommended scale: %.0f%% of the unsteered length; at -recommended scale: %.0f%%\n",
                    100.0 * rows[4].mean / base, 100.0 * rows[0].mean / base);
        // The three questions whose answers the vector changes most.
        std::vector<size_t> order(questions.size());
        for (size_t q = 0; q < order.size(); ++q) order[q] = q;
        auto spread = [&](size_t q) { return rows.front().per_prompt[q] - rows.back().per_prompt[q]; };
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return spread(a) > spread(b); });
        for (size_t k = 0; k < 3 && k < order.size(); ++k) {
            const size_t q = order[k];
            std::printf("\nQ: %s\n", questions[q].c_str());
            for (const auto& r : rows) {
                std::string text = tok.decode(r.responses[q]);
                if (!text.empty() && r.responses[q].back() == tok.specials().eos)
                    text.resize(text.size() - tok.token_bytes(tok.specials().eos).size());
                std::printf("  scale %+7.3f: %s\n", static_cast<double>(r.scale), text.c_str());
            }
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "terse: %s\n", e.what());
        return 1;
    }
}
