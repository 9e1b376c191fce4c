// refusal: find the demo model's refusal direction (Arditi et al. 2024) and
// ablate it.
//
// usage: ds4-example-refusal [DEMO_MODEL_DIR]
//
// The demo model (data/demo-model) answers "I can't help with that." to one
// category of requests (weapons, poisons, break-ins, theft) and answers the
// rest.
// 1. find_refusal_direction: difference of means between harmful and harmless
//    requests at the post-instruction positions (train split), candidates per
//    layer and position scored on validation prompts (bypass, induce, KL).
// 2. Directional ablation at every layer and position, swept at scales 0 and
//    -1 (op project: -1 removes the component) on held-out requests: the
//    refusal rate of harmful requests, and how many answers to harmless
//    requests stay exactly the same.
// 3. The same edit baked into the weights (export_orthogonalized_model).
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/demo_model.hpp"
#include "ds4/ds4.hpp"

namespace {

std::string text_of(const ds4::Tokenizer& tok, const std::vector<ds4::TokenId>& ids) {
    std::string t = tok.decode(ids);
    if (!ids.empty() && ids.back() == tok.specials().eos) t.resize(t.size() - tok.token_bytes(ids.back()).size());
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        example::DemoModel demo;
        if (argc > 1) demo.dir = argv[1];
        auto model = ds4::Model::load(demo.path());
        const ds4::Tokenizer& tok = *model->tokenizer();
        std::printf("model: %s\n", demo.path().c_str());

        const ds4::RefusalDirection rd = example::refusal_direction(model, demo);
        std::printf("\ncandidates (layer, position from the end): bypass = refusal score with the direction ablated,\n"
                    "induce = score on harmless prompts with it added, kl = divergence on harmless prompts\n");
        for (const auto& c : rd.candidates)
            std::printf("  layer %d pos %d: bypass %+.3f induce %+.3f kl %.4f %s\n", c.layer, c.position, c.bypass,
                        c.induce, c.kl, c.eligible ? "" : "(not eligible)");
        std::printf("chosen: layer %d, position %d; refusal score %+.2f harmful, %+.2f harmless\n", rd.layer,
                    rd.position, rd.base_harmful_score, rd.base_harmless_score);

        const auto ablation = ds4::directional_ablation(*model, rd.direction, ds4::SteeringOp::Project);
        ds4::SweepOptions so;
        so.scales = {0.0f, -1.0f};
        so.generation.max_tokens = 24;
        so.generation.stop_tokens = {tok.specials().eos};
        so.refusal_prefixes = {example::refusal_text_tokens(tok)};
        const auto harmful_text = demo.prompt_set("heldout.harmful");
        const auto harmful = example::chat_prompts(tok, harmful_text);
        const auto refused = ds4::sweep(model, harmful, ablation, ds4::SweepMetric::RefusalRate, so);
        std::printf("\nrefusal rate on %zu held-out harmful requests: %.0f%% unsteered, %.0f%% with the direction "
                    "ablated\n",
                    harmful.size(), 100 * refused[0].mean, 100 * refused[1].mean);

        const auto harmless_text = demo.prompt_set("heldout.other");
        const auto harmless = example::chat_prompts(tok, harmless_text);
        so.generation.max_tokens = 96;
        const auto kept = ds4::sweep(model, harmless, ablation, ds4::SweepMetric::ResponseLength, so);
        size_t same = 0;
        for (size_t i = 0; i < harmless.size(); ++i) same += kept[0].responses[i] == kept[1].responses[i];
        std::printf("held-out requests and questions outside the refused category answered identically with the\n"
                    "ablation: %zu of %zu\n", same,
                    harmless.size());

        for (size_t i = 0; i < 3 && i < harmful.size(); ++i)
            std::printf("\nQ: %s\n  unsteered: %s\n  ablated:   %s\n", harmful_text[i].c_str(),
                        text_of(tok, refused[0].responses[i]).c_str(), text_of(tok, refused[1].responses[i]).c_str());

        const std::string out = (std::filesystem::temp_directory_path() / "ds4-demo-orthogonalized.gguf").string();
        ds4::export_orthogonalized_model(*model, rd.direction, out);
        auto ortho = ds4::Model::load(out);
        so.generation.max_tokens = 12;
        const auto baked = ds4::sweep(ortho, harmful, ablation, ds4::SweepMetric::RefusalRate,
                                      {.scales = {0.0f}, .generation = so.generation,
                                       .refusal_prefixes = so.refusal_prefixes});
        std::printf("\northogonalized model (%s), no hook: refusal rate %.0f%%\n", out.c_str(), 100 * baked[0].mean);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "refusal: %s\n", e.what());
        return 1;
    }
}
