// embed: the smallest program that embeds ds4 — load a model, prefill a
// prompt, generate a few tokens greedily.
//
// usage: embed MODEL.gguf
#include <cstdio>
#include <vector>

#include "ds4/generate.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: embed MODEL.gguf\n");
        return 2;
    }
    try {
        auto model = ds4::Model::load(argv[1]);
        ds4::Session session(model);
        const std::vector<ds4::TokenId> prompt = {1, 2, 3, 4, 5};
        ds4::GenerateOptions options;
        options.max_tokens = 8;
        const ds4::Generation out = ds4::generate(session, prompt, options);
        std::printf("generated:");
        for (ds4::TokenId t : out.tokens) std::printf(" %d", t);
        std::printf("\n");
        return out.tokens.empty() ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "embed: %s\n", e.what());
        return 1;
    }
}
