// terse: train a terseness vector on the demo model with the library's
// defaults, and steer with it.
//
// usage: ds4-example-terse [DEMO_MODEL_DIR] [OUT.ds4steer.gguf]
//
// The demo model (data/demo-model) answers tersely when asked for brevity,
// verbosely when asked for detail, and either way, half and half, when asked
// for neither.
//
// 1. ds4::train_steering with pairs of requests (train.brief vs
//    train.detail) and held-out questions that ask for neither: it captures
//    the candidate sites, layers and token reductions, and picks the setting
//    and scale by measuring answer length on the held-out questions under a
//    coherence guard. Nothing about the site, layers or scale is given.
// 2. Sweep the chosen vector's scale on more held-out questions (ds4::sweep,
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

        const auto brief = demo.prompt_set("train.brief"), detail = demo.prompt_set("train.detail");
        const auto questions = demo.prompt_set("heldout.neutral");
        ds4::SteeringDataset data;
        for (size_t i = 0; i < 40 && i < brief.size() && i < detail.size(); ++i) data.add_pair(brief[i], detail[i]);
        // The search measures on the first half of the held-out questions; the
        // sweep below shows all of them.
        for (size_t i = 0; i < questions.size() / 2; ++i) data.add_heldout(questions[i]);
        const ds4::TrainedSteering t = ds4::train_steering(model, data);
        std::printf("\ntrain_steering (library defaults; metric: log mean answer tokens, effect = its move towards\n"
                    "the brief side, the weaker of +scale and -scale; kl = coherence guard):\n%s",
                    t.table().c_str());
        std::printf("%lld tokens evaluated in %.1f s\n", static_cast<long long>(t.tokens), t.seconds);
        if (!t.found) {
            std::fprintf(stderr, "terse: no setting moved the answer length within the coherence guard\n");
            return 1;
        }
        const float unit = t.vector.scale();
        std::printf("chosen: %s at scale %.3f\n", t.setting.label().c_str(), static_cast<double>(unit));
        const std::string out_path = argc > 2 ? argv[2] : "terse.ds4steer.gguf";
        t.vector.save(out_path);
        std::printf("saved %s\n", out_path.c_str());

        const auto prompts = example::chat_prompts(tok, questions);
        ds4::SweepOptions so;
        so.scales = {-unit, -0.5f * unit, 0, 0.5f * unit, unit};
        so.generation.max_tokens = 128;
        so.generation.stop_tokens = {tok.specials().eos};
        const auto rows = ds4::sweep(model, prompts, t.vector, ds4::SweepMetric::ResponseLength, so);
        std::printf("\nmean response length (tokens) by scale, %zu held-out questions that ask for neither:\n%s",
                    prompts.size(), ds4::sweep_table(rows, ds4::SweepMetric::ResponseLength).c_str());
        const double base = rows[2].mean;
        std::printf("at +chosen scale: %.0f%% of the unsteered length; at -chosen scale: %.0f%%\n",
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
