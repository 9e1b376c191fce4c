#include "engine/state.hpp"

#include <algorithm>
#include <cstring>

#include "core/error_internal.hpp"

namespace ds4::engine {

using detail::fail;

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

namespace {
int64_t ring_rows(int window, int64_t max_tokens) { return std::max<int64_t>(1, std::min<int64_t>(window, max_tokens)); }
}  // namespace

void TimelineState::init(const ModelConfig& cfg, int64_t max_tokens) {
    layers.assign(static_cast<size_t>(cfg.n_layer), LayerState{});
    for (int il = 0; il < cfg.n_layer; ++il) {
        LayerState& L = layers[static_cast<size_t>(il)];
        L.window = cfg.sliding_window;
        L.dim = cfg.head_dim;
        L.ring = ring_rows(L.window, max_tokens);
        L.raw.assign(static_cast<size_t>(L.ring) * static_cast<size_t>(L.dim), 0);
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

TimelineState TimelineState::with_ring_for(int64_t max_tokens) const {
    TimelineState out = *this;
    for (LayerState& L : out.layers) {
        const int64_t ring = ring_rows(L.window, max_tokens);
        const int64_t kept = std::min<int64_t>(n_past, L.window);
        if (kept > ring || kept > L.ring)
            fail(ErrorCode::InvalidArgument, "a state of %lld tokens does not fit in a ring of %lld rows",
                 static_cast<long long>(n_past), static_cast<long long>(std::min(ring, L.ring)));
        std::vector<uint16_t> raw(static_cast<size_t>(ring) * static_cast<size_t>(L.dim), 0);
        const size_t row_bytes = sizeof(uint16_t) * static_cast<size_t>(L.dim);
        for (int64_t p = n_past - kept; p < n_past; ++p)
            std::memcpy(&raw[static_cast<size_t>(p % ring) * static_cast<size_t>(L.dim)], L.raw_row(p), row_bytes);
        L.ring = ring;
        L.raw = std::move(raw);
    }
    return out;
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
