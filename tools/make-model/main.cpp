// ds4-make-model: write a synthetic DeepSeek-V4-Flash GGUF (exact tensor
// layout, random weights from a seed) for tests and benchmarks.
#include <cstdio>
#include <map>
#include <string>

#include "common/cli.hpp"
#include "common/files.hpp"
#include "ds4/error.hpp"
#include "ds4/model_generator.hpp"
#include "ds4/quantize.hpp"

namespace {

struct Args {
    std::string out, config = "tiny", mix, vocab = "none";
    int layers = 4, merges = 768;
    uint64_t seed = 1;
    bool random_blocks = false, no_router_bias = false;
};

void add_options(CLI::App& app, Args& a) {
    app.add_option("-o,--out", a.out, "output GGUF file")->required();
    app.add_option("--config", a.config, "dimensions (default tiny; demo = tiny with 8 experts)")
        ->check(CLI::IsMember({"tiny", "demo", "full-width"}));
    app.add_option("--layers", a.layers, "layers of a full-width model (default 4)")
        ->check(ds4::tools::in_range(1, 43));
    app.add_option("--mix", a.mix, "tensor types (default f32 for tiny and demo, q2 for full-width)")
        ->check(CLI::IsMember({"f32", "q2", "q4"}));
    app.add_option("--seed", a.seed, "random seed (default 1)")->check(ds4::tools::in_range<uint64_t>(0));
    app.add_option("--vocab", a.vocab, "embedded tokenizer (default none)")
        ->check(CLI::IsMember({"none", "small", "full"}));
    app.add_option("--small-merges", a.merges, "merges in the small vocabulary (default 768)")
        ->check(ds4::tools::in_range(0));
    app.add_flag("--random-blocks", a.random_blocks,
                 "write random quant blocks instead of quantizing (default for full-width)");
    app.add_flag("--no-router-bias", a.no_router_bias, "omit exp_probs_b.bias");
}

ds4::GeneratorOptions generator_options(Args a) {
    const bool full_width = a.config == "full-width";
    ds4::GeneratorOptions o;
    o.config = full_width ? ds4::full_width_model_config(a.layers)
               : a.config == "demo" ? ds4::demo_model_config()
                                    : ds4::tiny_model_config();
    if (a.mix.empty()) a.mix = full_width ? "q2" : "f32";
    o.mix = ds4::weight_mix_from_name(a.mix);
    static const std::map<std::string, ds4::VocabKind> vocabs = {
        {"none", ds4::VocabKind::None}, {"small", ds4::VocabKind::Small}, {"full", ds4::VocabKind::Full}};
    o.vocab = vocabs.at(a.vocab);
    o.seed = a.seed;
    o.small_vocab_merges = a.merges;
    o.random_quant_blocks = a.random_blocks || full_width;
    o.router_bias = !a.no_router_bias;
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app("Write a synthetic DeepSeek-V4-Flash GGUF (exact tensor layout, random weights from a seed).",
                 "ds4-make-model");
    ds4::tools::set_up(app);
    Args a;
    add_options(app, a);
    if (const auto rc = ds4::tools::parse(app, argc, argv)) return *rc;
    try {
        ds4::generate_model(generator_options(a), ds4::tools::output_for_rename(a.out));
        std::fprintf(stderr, "wrote %s\n", a.out.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-make-model: %s\n", e.what());
        return 1;
    }
    return 0;
}
