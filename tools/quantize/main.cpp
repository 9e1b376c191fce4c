// ds4-quantize: rewrite a DeepSeek-V4-Flash GGUF in one of the published dtype
// mixes (e.g. an F32 export of a trained model into the q2 mix).
//
// The output is written to a temporary file next to it and renamed into place
// (gguf::Writer::write), so a failed run leaves no partial file; an output
// that is the input (under any name) is refused.
#include <cstdio>
#include <string>

#include "common/cli.hpp"
#include "common/files.hpp"
#include "ds4/error.hpp"
#include "ds4/quantize.hpp"

int main(int argc, char** argv) {
    CLI::App app("Rewrite a DeepSeek-V4-Flash GGUF in one of the published dtype mixes.\n"
                 "  q2: routed gate/up IQ2_XXS, down Q2_K; attention, shared expert, output Q8_0;\n"
                 "      HC, router, compressors, indexer, embedding F16; vectors F32\n"
                 "  q4: routed experts Q4_K; the rest as q2",
                 "ds4-quantize");
    ds4::tools::set_up(app);
    std::string in, out, mix;
    app.add_option("IN", in, "input GGUF")->required();
    app.add_option("OUT", out, "output GGUF (not the input)")->required();
    app.add_option("--mix", mix, "dtype mix")->required()->check(CLI::IsMember({"f32", "q2", "q4"}));
    if (const auto rc = ds4::tools::parse(app, argc, argv)) return *rc;
    try {
        ds4::tools::refuse_input_as_output(out, {in});
        ds4::quantize_model(in, ds4::tools::output_for_rename(out), ds4::weight_mix_from_name(mix));
        std::printf("wrote %s (%s mix)\n", out.c_str(), mix.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-quantize: %s\n", e.what());
        return 1;
    }
}
