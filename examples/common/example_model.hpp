// The model an example runs on: the path given on the command line, or a
// tiny generated model (the exact DS4 layout, random weights) with a real
// tokenizer, written once to the temp folder.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include "ds4/model_generator.hpp"

namespace example {

inline std::string model_path(int argc, char** argv, const char* name) {
    if (argc > 1) return argv[1];
    const auto path = std::filesystem::temp_directory_path() / (std::string("ds4-example-") + name + ".gguf");
    if (!std::filesystem::exists(path)) {
        ds4::GeneratorOptions gen;
        gen.config = ds4::tiny_model_config();
        gen.vocab = ds4::VocabKind::Small;
        gen.small_vocab_merges = 3000;
        gen.seed = 7;
        ds4::generate_model(gen, path.string());
    }
    std::printf("model: %s%s\n", path.c_str(), argc > 1 ? "" : " (generated: random weights, real tokenizer)");
    return path.string();
}

}  // namespace example
