#include "engine/state.hpp"

#include <algorithm>

namespace ds4::engine {

constexpr float kNegInf = -1e30f;

void CompressorState::init(int r, int l, int d) {
    ratio = r;
    lanes = l;
    dim = d;
    kv.assign(static_cast<size_t>(lanes) * ratio * lanes * dim, 0.0f);
    score.assign(kv.size(), kNegInf);
    rows.clear();
    n_rows = 0;
}

void CompressorState::clear() {
    std::fill(kv.begin(), kv.end(), 0.0f);
    std::fill(score.begin(), score.end(), kNegInf);
    rows.clear();
    n_rows = 0;
}

void TimelineState::init(const ModelConfig& cfg) {
    layers.assign(static_cast<size_t>(cfg.n_layer), LayerState{});
    for (int il = 0; il < cfg.n_layer; ++il) {
        LayerState& L = layers[static_cast<size_t>(il)];
        L.window = cfg.sliding_window;
        L.dim = cfg.head_dim;
        L.raw.assign(static_cast<size_t>(L.window) * L.dim, 0);
        const int ratio = cfg.compress_ratio(il);
        if (ratio != 0) {
            L.compressed = true;
            L.attn.init(ratio, cfg.compress_lanes(il), cfg.head_dim);
        }
        if (cfg.has_indexer(il)) {
            L.indexed = true;
            L.indexer.init(ratio, cfg.compress_lanes(il), cfg.indexer_head_dim);
        }
    }
    n_past = 0;
}

void TimelineState::clear() {
    for (LayerState& L : layers) {
        std::fill(L.raw.begin(), L.raw.end(), uint16_t{0});
        if (L.compressed) L.attn.clear();
        if (L.indexed) L.indexer.clear();
    }
    n_past = 0;
}

uint64_t TimelineState::bytes_in_use() const {
    uint64_t b = 0;
    for (const LayerState& L : layers) {
        b += static_cast<uint64_t>(std::min<int64_t>(n_past, L.window)) * L.dim * 2;
        if (L.compressed) b += L.attn.rows.size() * 2 + (L.attn.kv.size() + L.attn.score.size()) * 4;
        if (L.indexed) b += L.indexer.rows.size() * 2 + (L.indexer.kv.size() + L.indexer.score.size()) * 4;
    }
    return b;
}

}  // namespace ds4::engine
