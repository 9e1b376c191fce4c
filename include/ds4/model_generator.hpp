// ds4 — writes synthetic DeepSeek-V4-Flash GGUF files with the exact tensor
// names and layout of the published model, from a seed. Used by the tests
// (tiny configurations) and by the benchmarks (full-width configurations with
// a few layers). The weights are random but scaled so that activations stay
// finite over long sequences.
#pragma once

#include <cstdint>
#include <string>

#include "ds4/config.hpp"
#include "ds4/quantize.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class VocabKind {
    None,   // no tokenizer metadata (token ids only)
    Small,  // a small BPE vocabulary: bytes + the first merges + the special tokens
    Full,   // the full DeepSeek V4 vocabulary (129280 ids)
};

struct GeneratorOptions {
    ModelConfig config;
    WeightMix mix = WeightMix::F32;
    uint64_t seed = 1;
    VocabKind vocab = VocabKind::None;
    int small_vocab_merges = 768;  // with VocabKind::Small
    // Quantized tensors are written as random valid blocks with realistic
    // scales instead of quantizing Gaussian weights (much faster; meant for
    // full-width benchmark models).
    bool random_quant_blocks = false;
    // Write exp_probs_b.bias on learned-routing layers.
    bool router_bias = true;
};

// A 6-layer model of width 256 covering every layer kind: layers 0-2 hash
// routed, ratios [0, 0, 4, 16, 4, 16] (16 stands in for 128), window 16,
// indexer top-k 8, so a 200-token sequence crosses every window, compression
// and top-k boundary. n_vocab is set by the generator from the vocabulary
// (or 1024 with VocabKind::None).
ModelConfig tiny_model_config();
// The tiny layout with 8 routed experts (2 per token), Q LoRA rank 64 and the
// published 128-token raw-attention window (so that an answer can copy from
// its prompt token by token): the size of the trained demo model
// (tools/train-demo-model), small enough to train on two CPU cores in under
// an hour. (The width stays 256: the q2 mix needs rows that are whole
// 256-value blocks.)
ModelConfig demo_model_config();
// The published dimensions with `n_layers` layers: layer 0 is ratio 0 and
// hash routed; then ratios alternate 4, 128, 4, ...
ModelConfig full_width_model_config(int n_layers);

// Generate and write the file. The config's n_vocab is replaced by the
// vocabulary's size when a vocabulary is embedded.
void generate_model(const GeneratorOptions& options, const std::string& path);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
