// ds4-quantize: rewrite a DeepSeek-V4-Flash GGUF in one of the published dtype
// mixes (e.g. an F32 export of a trained model into the q2 mix).
#include <cstdio>
#include <cstring>
#include <string>

#include "ds4/error.hpp"
#include "ds4/quantize.hpp"

namespace {

void usage() {
    std::fprintf(stderr,
                 "usage: ds4-quantize IN.gguf OUT.gguf --mix f32|q2|q4\n"
                 "  q2: routed gate/up IQ2_XXS, down Q2_K; attention, shared expert, output Q8_0;\n"
                 "      HC, router, compressors, indexer, embedding F16; vectors F32\n"
                 "  q4: routed experts Q4_K; the rest as q2\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::string in, out, mix;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--mix") && i + 1 < argc) {
            mix = argv[++i];
        } else if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (in.empty()) {
            in = argv[i];
        } else if (out.empty()) {
            out = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (in.empty() || out.empty() || mix.empty()) {
        usage();
        return 2;
    }
    try {
        ds4::quantize_model(in, out, ds4::weight_mix_from_name(mix));
        std::printf("wrote %s (%s mix)\n", out.c_str(), mix.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-quantize: %s\n", e.what());
        return 1;
    }
}
