// Full-width benchmark models, generated once and cached on disk
// ($DS4_BENCH_MODEL_DIR, default ./bench-models).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "ds4/model_generator.hpp"
#include "ds4/types.hpp"

namespace ds4::bench {

inline std::filesystem::path model_cache_dir() {
    const char* env = std::getenv("DS4_BENCH_MODEL_DIR");
    return env && *env ? std::filesystem::path(env) : std::filesystem::path("bench-models");
}

// The published dimensions and dtypes with `layers` layers (layer 0 hash
// routed and ratio 0, then ratios 4, 128, 4, ...), random valid quant blocks.
inline std::string full_width_model(int layers, const std::string& mix) {
    const auto dir = model_cache_dir();
    std::filesystem::create_directories(dir);
    const auto path = dir / ("full-width-" + mix + "-" + std::to_string(layers) + "L.gguf");
    if (!std::filesystem::exists(path)) {
        std::fprintf(stderr, "generating %s (once) ...\n", path.c_str());
        GeneratorOptions o;
        o.config = full_width_model_config(layers);
        o.mix = weight_mix_from_name(mix);
        o.random_quant_blocks = true;
        o.seed = 42;
        generate_model(o, path.string());
    }
    return path.string();
}

inline std::vector<TokenId> random_tokens(int64_t n, int vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<TokenId> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<TokenId>(rng() % static_cast<uint64_t>(vocab));
    return t;
}

}  // namespace ds4::bench
