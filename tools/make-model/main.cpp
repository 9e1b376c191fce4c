// ds4-make-model: write a synthetic DeepSeek-V4-Flash GGUF (exact tensor
// layout, random weights from a seed) for tests and benchmarks.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ds4/error.hpp"
#include "ds4/model_generator.hpp"
#include "ds4/quantize.hpp"

namespace {

void usage() {
    std::fprintf(stderr,
                 "usage: ds4-make-model -o OUT.gguf [options]\n"
                 "  --config tiny|demo|full-width  dimensions (default tiny; demo = tiny with 8 experts)\n"
                 "  --layers N                 layers of a full-width model (default 4)\n"
                 "  --mix f32|q2|q4            tensor types (default f32 for tiny, q2 for full-width)\n"
                 "  --seed S                   random seed (default 1)\n"
                 "  --vocab none|small|full    embedded tokenizer (default none)\n"
                 "  --small-merges N           merges in the small vocabulary (default 768)\n"
                 "  --random-blocks            write random quant blocks instead of quantizing\n"
                 "                             (default for full-width)\n"
                 "  --no-router-bias           omit exp_probs_b.bias\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::string out, config = "tiny", mix, vocab = "none";
    int layers = 4, merges = 768;
    unsigned long long seed = 1;
    int random_blocks = -1;
    bool router_bias = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "ds4-make-model: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-o" || a == "--out") out = next();
        else if (a == "--config") config = next();
        else if (a == "--layers") layers = std::atoi(next().c_str());
        else if (a == "--mix") mix = next();
        else if (a == "--seed") seed = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--vocab") vocab = next();
        else if (a == "--small-merges") merges = std::atoi(next().c_str());
        else if (a == "--random-blocks") random_blocks = 1;
        else if (a == "--no-router-bias") router_bias = false;
        else if (a == "-h" || a == "--help") {
            usage();
            return 0;
        } else {
            std::fprintf(stderr, "ds4-make-model: unknown option '%s'\n", a.c_str());
            usage();
            return 2;
        }
    }
    if (out.empty()) {
        usage();
        return 2;
    }
    try {
        ds4::GeneratorOptions o;
        if (config == "tiny") {
            o.config = ds4::tiny_model_config();
            if (mix.empty()) mix = "f32";
        } else if (config == "demo") {
            o.config = ds4::demo_model_config();
            if (mix.empty()) mix = "f32";
        } else if (config == "full-width") {
            o.config = ds4::full_width_model_config(layers);
            if (mix.empty()) mix = "q2";
            if (random_blocks < 0) random_blocks = 1;
        } else {
            std::fprintf(stderr, "ds4-make-model: unknown config '%s' (tiny, demo or full-width)\n", config.c_str());
            return 2;
        }
        o.mix = ds4::weight_mix_from_name(mix);
        if (vocab == "none") o.vocab = ds4::VocabKind::None;
        else if (vocab == "small") o.vocab = ds4::VocabKind::Small;
        else if (vocab == "full") o.vocab = ds4::VocabKind::Full;
        else {
            std::fprintf(stderr, "ds4-make-model: unknown vocab '%s' (none, small or full)\n", vocab.c_str());
            return 2;
        }
        o.seed = seed;
        o.small_vocab_merges = merges;
        o.random_quant_blocks = random_blocks > 0;
        o.router_bias = router_bias;
        ds4::generate_model(o, out);
        std::fprintf(stderr, "wrote %s\n", out.c_str());
    } catch (const ds4::Error& e) {
        std::fprintf(stderr, "ds4-make-model: %s\n", e.what());
        return 1;
    }
    return 0;
}
