// terse: extract a terseness direction from paired succinct/verbose prompts
// and generate with it at several scales.
//
// usage: ds4-example-terse [MODEL.gguf] [OUT.ds4steer.gguf]
//
// 1. Render each instruction twice, once asking for brevity and once for
//    detail, and capture the FFN output at the last prompt token.
// 2. extract_direction: difference of means per layer, normalised, with a
//    per-layer report (separation, Cohen's d); the best layer's mean gap is
//    the natural unit of the scale.
// 3. Generate for held-out questions at scales -2..2 (in units of the gap)
//    and report the mean response length per scale (ds4::sweep).
#include <cstdio>
#include <string>
#include <vector>

#include "common/example_model.hpp"
#include "ds4/ds4.hpp"

namespace {

const char* kQuestions[] = {
    "what is a hash table?",        "why is the sky blue?",          "how does a compiler work?",
    "what causes the seasons?",     "how do vaccines work?",         "what is inflation?",
    "why do cats purr?",            "how does GPS find a position?", "what is photosynthesis?",
    "how do airplanes stay aloft?", "what is a neural network?",     "why does ice float?",
};
const char* kHeldOut[] = {"what is a black hole?", "how does a refrigerator cool?", "why do we sleep?"};

std::vector<ds4::TokenId> chat(const ds4::Tokenizer& tok, const std::string& text) {
    const std::vector<ds4::ChatMessage> m = {{ds4::Role::User, text, ""}};
    return ds4::render_chat(tok, m);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto model = ds4::Model::load(example::model_path(argc, argv, "steering"));
        const ds4::Tokenizer& tok = *model->tokenizer();

        std::vector<ds4::ContrastExample> terse, verbose;
        for (const char* q : kQuestions) {
            terse.push_back({chat(tok, std::string("Answer in one short sentence: ") + q), 0});
            verbose.push_back({chat(tok, std::string("Answer in great detail, with examples and several paragraphs: ") + q), 0});
        }
        ds4::ExtractionOptions eo;
        eo.site = ds4::SteeringSite::FfnOut;
        eo.op = ds4::SteeringOp::Add;
        eo.reduction = ds4::TokenReduction::LastPromptToken;
        eo.name = "terseness";
        ds4::Extraction ex = ds4::extract_direction(model, terse, verbose, eo);

        std::printf("\nper-layer separation (terse minus verbose, at the FFN output):\n");
        std::printf("  layer  mean gap   cohen d  pair acc\n");
        for (const auto& l : ex.layers)
            std::printf("  %5d  %8.4f  %8.3f  %8.2f\n", l.layer, l.mean_gap, l.cohens_d, l.pair_accuracy);
        std::printf("best layer %d, recommended scale %.4f (the mean projection gap)\n", ex.best_layer,
                    static_cast<double>(ex.vector.provenance.recommended_scale));

        // Steer at the best layer only, in units of the gap.
        ds4::SteeringVector v = ex.vector;
        v.set_layer_range(ex.best_layer, ex.best_layer);
        const float unit = ex.vector.provenance.recommended_scale;
        const std::string out_path = argc > 2 ? argv[2] : "terse.ds4steer.gguf";
        v.set_scale(unit);
        v.save(out_path);
        std::printf("saved %s\n", out_path.c_str());

        std::vector<std::vector<ds4::TokenId>> prompts;
        for (const char* q : kHeldOut) prompts.push_back(chat(tok, std::string("Answer this: ") + q));
        ds4::SweepOptions so;
        so.scales = {-2 * unit, -unit, 0, unit, 2 * unit};
        so.generation.max_tokens = 24;
        so.generation.stop_tokens = {tok.specials().eos};
        const auto rows = ds4::sweep(model, prompts, v, ds4::SweepMetric::ResponseLength, so);
        std::printf("\nresponse length by scale (%zu held-out prompts, at most %d tokens):\n%s", prompts.size(),
                    so.generation.max_tokens, ds4::sweep_table(rows, ds4::SweepMetric::ResponseLength).c_str());
        for (const auto& r : rows) {
            std::string text = tok.decode(r.responses[0]);
            for (char& c : text)
                if (c == '\n') c = ' ';
            std::printf("  scale %+8.3f: %s\n", static_cast<double>(r.scale), text.c_str());
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "terse: %s\n", e.what());
        return 1;
    }
}
