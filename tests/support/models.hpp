// Generated test models, written once per test process into a temp folder.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <system_error>

#include "ds4/model_generator.hpp"

namespace ds4::test_support {

// Removes a folder of this process's own at exit (each ctest case is a
// process of its own: without this, every run left one folder of generated
// models per test case in the temp directory, gigabytes per suite run).
struct RemoveAtExit {
    std::filesystem::path dir;
    ~RemoveAtExit() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

// DS4_TEST_MODEL_DIR if set (kept), otherwise a per-process temp folder that
// is removed when the process exits normally.
inline std::filesystem::path model_dir() {
    static const std::filesystem::path dir = [] {
        const char* env = std::getenv("DS4_TEST_MODEL_DIR");
        if (env && *env) {
            std::filesystem::create_directories(env);
            return std::filesystem::path(env);
        }
        const std::filesystem::path d =
            std::filesystem::temp_directory_path() / ("ds4-test-models-" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        static const RemoveAtExit cleanup{d};
        return d;
    }();
    return dir;
}

// A tiny model with the given mix, seed and vocabulary; generated on first use.
inline std::string tiny_model(WeightMix mix = WeightMix::F32, uint64_t seed = 1, VocabKind vocab = VocabKind::None) {
    static std::mutex mu;
    static std::map<std::string, std::string> made;
    const char* mix_name = mix == WeightMix::F32 ? "f32" : mix == WeightMix::Q2 ? "q2" : "q4";
    const char* vocab_name = vocab == VocabKind::None ? "none" : vocab == VocabKind::Small ? "small" : "full";
    const std::string key = std::string("tiny-") + mix_name + "-s" + std::to_string(seed) + "-" + vocab_name;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = made.find(key); it != made.end()) return it->second;
    const std::string path = (model_dir() / (key + ".gguf")).string();
    if (!std::filesystem::exists(path)) {
        GeneratorOptions o;
        o.config = tiny_model_config();
        o.mix = mix;
        o.seed = seed;
        o.vocab = vocab;
        generate_model(o, path);
    }
    made[key] = path;
    return path;
}

}  // namespace ds4::test_support
