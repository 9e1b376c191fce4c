// The per-layer attention state of one timeline (model spec section 4.1):
// the raw sliding window, the compressor frontier and the compressed rows,
// and for ratio-4 layers the indexer's frontier and keys. Cache rows are
// stored as f16 (the spec's CPU numerics round them to f16 on store).
#pragma once

#include <cstdint>
#include <climits>
#include <vector>

#include "ds4/config.hpp"

namespace ds4::engine {

// Frontier of one compressor: `lanes * ratio` rows of `lanes * dim` values
// for the projected values and for the scores (+APE).
struct CompressorState {
    int ratio = 0, lanes = 0, dim = 0;
    std::vector<float> kv;     // [lanes*ratio][lanes*dim]
    std::vector<float> score;  // same shape; -1e30 marks an empty slot
    std::vector<uint16_t> rows;  // emitted rows, [n_rows][dim] f16
    int64_t n_rows = 0;

    void init(int ratio, int lanes, int dim);
    void clear();
    int width() const { return lanes * dim; }
    const uint16_t* row(int64_t i) const { return rows.data() + static_cast<size_t>(i) * dim; }
    void truncate(int64_t n) { n_rows = n; rows.resize(static_cast<size_t>(n) * dim); }
};

struct LayerState {
    int window = 0, dim = 0;
    // Rows of the ring: the window, or fewer when the timeline can never hold
    // a window of tokens (min(window, context)); every row attention reads is
    // still in the ring.
    int64_t ring = 0;
    std::vector<uint16_t> raw;  // ring: [ring][dim] f16; position p lives in slot p % ring
    bool compressed = false, indexed = false;
    CompressorState attn;     // ratio != 0
    CompressorState indexer;  // ratio == 4

    const uint16_t* raw_row(int64_t pos) const {
        return raw.data() + static_cast<size_t>(pos % ring) * dim;
    }
    uint16_t* raw_row(int64_t pos) { return raw.data() + static_cast<size_t>(pos % ring) * dim; }
};

struct TimelineState {
    std::vector<LayerState> layers;
    int64_t n_past = 0;  // tokens whose state is in the cache

    // Empty state for a timeline of at most `max_tokens` tokens (the ring
    // holds min(window, max_tokens) rows; the default keeps the whole window,
    // the layout of snapshot files).
    void init(const ModelConfig& cfg, int64_t max_tokens = INT64_MAX);
    void clear();
    // The same state with rings of min(window, max_tokens) rows; throws
    // (leaving *this unchanged) unless they hold every row attention reads.
    TimelineState with_ring_for(int64_t max_tokens) const;
    // Bytes of state that depend on the tokens (for reports and snapshots).
    uint64_t bytes_in_use() const;
};

}  // namespace ds4::engine
