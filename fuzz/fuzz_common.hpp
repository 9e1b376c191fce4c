// Shared by the fuzz targets (docs/fuzzing.md): the micro model, a file of the
// process's own for the APIs that take a path, and the options every target
// loads with.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/model_generator.hpp"

namespace ds4::fuzz {

// The DS4 layout at its smallest: 3 layers (hash-routed ratio 0, ratio 4 with
// the indexer, ratio 16), width 64, 4 routed experts, F32, with a small BPE
// vocabulary. About 1.6 MB; the fuzz targets that need a model load it, and
// the model target's seed is this file.
inline GeneratorOptions micro_model_options() {
    ModelConfig c = tiny_model_config();
    c.name = "ds4-fuzz-micro";
    c.n_layer = 3;
    c.n_embd = 64;
    c.n_head = 2;
    c.head_dim = 32;
    c.n_rot = 16;
    c.q_lora_rank = 32;
    c.o_lora_rank = 16;
    c.o_groups = 1;
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.expert_ff = 32;
    c.n_hash_layers = 1;
    c.swiglu_clamp.assign(3, 10.0f);
    c.sliding_window = 8;
    c.indexer_heads = 2;
    c.indexer_head_dim = 32;
    c.indexer_top_k = 4;
    c.compress_ratios = {0, 4, 16};
    GeneratorOptions o;
    o.config = c;
    o.vocab = VocabKind::Small;
    o.small_vocab_merges = 64;
    return o;
}

// How the targets load models: one thread on a synthetic one-core machine
// (no hwloc probe of the host per input), no prefetch.
inline ModelOptions load_options() {
    ModelOptions mo;
    mo.n_threads = 1;
    mo.topology = "synthetic:pack:1 core:1 pu:1";
    mo.prefetch_weights = false;
    return mo;
}

// Findings reported but not fixed yet (fuzz/crashes/README.md) are skipped,
// so that runs look for new ones; DS4_FUZZ_KNOWN=1 lets them through (to
// check a fix with the reproducers).
inline bool skip_known() {
    static const bool skip = std::getenv("DS4_FUZZ_KNOWN") == nullptr;
    return skip;
}

// A folder of this process's own, removed at normal exit.
inline const std::filesystem::path& work_dir() {
    struct Dir {
        std::filesystem::path path;
        Dir() : path(std::filesystem::temp_directory_path() / ("ds4-fuzz-" + std::to_string(::getpid()))) {
            std::filesystem::create_directories(path);
        }
        ~Dir() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const Dir dir;
    return dir.path;
}

// The input written to this process's input file; its path.
inline std::string write_input(const uint8_t* data, size_t size) {
    const std::string path = (work_dir() / "input").string();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::abort();
    }
    return path;
}

// The micro model, generated into work_dir() and loaded on first use.
inline const std::shared_ptr<const Model>& micro_model() {
    static const std::shared_ptr<const Model> model = [] {
        const std::string path = (work_dir() / "micro.gguf").string();
        generate_model(micro_model_options(), path);
        return Model::load(path, load_options());
    }();
    return model;
}

}  // namespace ds4::fuzz
