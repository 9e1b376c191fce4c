// ds4 — the hyperparameters of a DeepSeek-V4-Flash model, read from GGUF
// metadata (keys `deepseek4.*`). The published model has the values in the
// comments; generated test models use smaller, consistent values.
//
// Nothing is sized from a file's claim alone: every size-like key must lie
// within ModelConfig::Limits (far above the published values) or be checked
// against the tensors that carry it, before anything is allocated; the error
// names the key and the limit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace gguf {
class File;
}

struct ModelConfig {
    // The largest values from_gguf accepts (published value in parentheses).
    struct Limits {
        static constexpr int layers = 1024;          // block_count (43)
        static constexpr int width = 65536;          // embedding_length (4096), attention.q_lora_rank and
                                                     // output_lora_rank (1024), expert_feed_forward_length (2048)
        static constexpr int vocab = 1 << 20;        // vocab_size (129280)
        static constexpr int heads = 1024;           // attention.head_count and indexer.head_count (64)
        static constexpr int head_dim = 4096;        // attention.key_length (512), indexer.key_length (128)
        static constexpr int experts = 4096;         // expert_count (256)
        static constexpr int experts_used = 64;      // expert_used_count (6)
        static constexpr int hc_streams = 16;        // hyper_connection.count (4)
        static constexpr int sinkhorn_iters = 1000;  // hyper_connection.sinkhorn_iterations (20)
        static constexpr int window = 4096;          // attention.sliding_window (128)
        static constexpr int top_k = 65536;          // attention.indexer.top_k (512)
        static constexpr int compress_ratio = 4096;  // attention.compress_ratios entries (128)
    };

    std::string name;          // general.name (informational)
    int n_layer = 0;           // block_count (43)
    int n_embd = 0;            // embedding_length (4096)
    int n_vocab = 0;           // vocab_size (129280)
    int n_head = 0;            // attention.head_count (64)
    int head_dim = 0;          // attention.key_length == value_length (512)
    int n_rot = 0;             // rope.dimension_count (64), the RoPE'd tail of each head
    int q_lora_rank = 0;       // attention.q_lora_rank (1024)
    int o_lora_rank = 0;       // attention.output_lora_rank (1024)
    int o_groups = 0;          // attention.output_group_count (8)
    int n_expert = 0;          // expert_count (256)
    int n_expert_used = 0;     // expert_used_count (6)
    int n_expert_shared = 0;   // expert_shared_count (1)
    int expert_ff = 0;         // expert_feed_forward_length (2048)
    int n_hash_layers = 0;     // hash_layer_count (3)
    float expert_weights_scale = 0;   // (1.5)
    std::vector<float> swiglu_clamp;  // swiglu_clamp_exp, one per layer (10)
    float norm_eps = 0;        // attention.layer_norm_rms_epsilon (1e-6)
    float hc_eps = 0;          // hyper_connection.epsilon (1e-6)
    int hc_count = 0;          // hyper_connection.count (4)
    int hc_sinkhorn_iters = 0; // hyper_connection.sinkhorn_iterations (20)
    int sliding_window = 0;    // attention.sliding_window (128)
    int indexer_heads = 0;     // attention.indexer.head_count (64)
    int indexer_head_dim = 0;  // attention.indexer.key_length (128)
    int indexer_top_k = 0;     // attention.indexer.top_k (512)
    std::vector<int> compress_ratios;  // attention.compress_ratios: 0, 4 or another ratio (128)
    float rope_base = 0;           // rope.freq_base (10000), ratio-0 layers
    float compress_rope_base = 0;  // attention.compress_rope_freq_base (160000)
    float yarn_factor = 0;         // rope.scaling.factor (16)
    int64_t yarn_orig_ctx = 0;     // rope.scaling.original_context_length (65536)
    float yarn_beta_fast = 0;      // rope.scaling.yarn_beta_fast (32)
    float yarn_beta_slow = 0;      // rope.scaling.yarn_beta_slow (1)
    int64_t context_length = 0;    // context_length (informational; 0 if absent)

    // Derived helpers.
    int compress_ratio(int layer) const { return compress_ratios[static_cast<size_t>(layer)]; }
    bool has_indexer(int layer) const { return compress_ratio(layer) == 4; }
    // Compressor lanes: 2 for the overlapping ratio-4 compressor, else 1.
    int compress_lanes(int layer) const { return compress_ratio(layer) == 4 ? 2 : 1; }
    bool is_hash_layer(int layer) const { return layer < n_hash_layers; }
    int hc_mix_size() const { return 2 * hc_count + hc_count * hc_count; }
    int heads_per_group() const { return n_head / o_groups; }

    // Parse and check consistency (throws ds4::Error naming the key).
    static ModelConfig from_gguf(const gguf::File& file);
    // Throws unless every value equals the published DeepSeek-V4-Flash one.
    void require_published_shape() const;
    // The published DeepSeek-V4-Flash hyperparameters.
    static ModelConfig published();
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
