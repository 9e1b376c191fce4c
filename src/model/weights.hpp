// Weight binding: views into the mapped GGUF for every tensor of the model,
// checked against the config (names, shapes and types per spec section 2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ds4/config.hpp"
#include "ds4/gguf.hpp"
#include "kernels/matmul.hpp"

namespace ds4::model {

using kernels::Matrix;

// A 3-D expert tensor [in, out, n_expert]: expert e is a contiguous out x in matrix.
struct ExpertMatrices {
    DType type = DType::F32;
    const uint8_t* data = nullptr;
    int64_t n_expert = 0, rows = 0, cols = 0;
    size_t row_bytes = 0;
    size_t expert_bytes() const { return row_bytes * static_cast<size_t>(rows); }
    Matrix expert(int64_t e) const {
        Matrix m;
        m.type = type;
        m.data = data + static_cast<size_t>(e) * expert_bytes();
        m.rows = rows;
        m.cols = cols;
        m.row_bytes = row_bytes;
        return m;
    }
};

// Compressor weights (attention: head_dim wide; indexer: indexer_head_dim wide).
struct CompressorWeights {
    int ratio = 0;
    int lanes = 0;   // 2 for ratio 4 (overlapping), else 1
    int dim = 0;     // D: output row width
    Matrix kv;       // (lanes*D) x n_embd
    Matrix gate;     // (lanes*D) x n_embd
    std::vector<float> ape;  // ratio x (lanes*D), row = slot
    std::vector<float> norm; // D
};

struct HcMixWeights {
    Matrix fn;                 // mix_size x (hc*n_embd)
    std::vector<float> scale;  // 3
    std::vector<float> base;   // mix_size
};

struct LayerWeights {
    int index = 0;
    int ratio = 0;
    HcMixWeights hc_attn, hc_ffn;
    std::vector<float> attn_norm, q_a_norm, kv_norm, sinks, ffn_norm;
    Matrix q_a, q_b, kv, out_a, out_b;
    // Compressed layers.
    bool compressed = false;
    CompressorWeights compressor;
    // Ratio-4 layers.
    bool indexer = false;
    Matrix indexer_q_b;   // (ih*ihd) x q_lora
    Matrix indexer_proj;  // ih x n_embd
    CompressorWeights indexer_compressor;
    // FFN.
    Matrix router;                  // n_expert x n_embd
    std::vector<float> router_bias; // n_expert, empty if absent
    ExpertMatrices gate_exps, up_exps, down_exps;
    Matrix gate_sh, up_sh, down_sh;
    const int32_t* tid2eid = nullptr;  // hash layers: [n_vocab][n_expert_used]
};

struct Weights {
    const gguf::TensorInfo* token_embd = nullptr;  // rows dequantized on lookup
    size_t embd_row_bytes = 0;
    HcMixWeights output_hc;  // fn: hc x (hc*n_embd); scale: 1; base: hc
    std::vector<float> output_norm;
    Matrix output;           // n_vocab x n_embd
    std::vector<LayerWeights> layers;
    // Bytes of weights by tensor kind (for reports).
    uint64_t routed_expert_bytes = 0, other_bytes = 0;

    static Weights bind(const gguf::File& file, const ModelConfig& cfg);
    // f32 embedding row of token t.
    void embed(int32_t token, float* out, int n_embd) const;
};

}  // namespace ds4::model
