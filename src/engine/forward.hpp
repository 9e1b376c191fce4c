// The DS4 forward pass over a batch of consecutive tokens of one timeline.
//
// Layer-major: every token of the batch goes through layer 0, then layer 1,
// and so on. Projections are batched matrix products; the cache updates and
// the attention of each token run in token order, so a batch computes the
// same math as one-token decode (model spec section 3.7).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "ds4/hook.hpp"
#include "engine/layer_ops.hpp"
#include "engine/ops.hpp"
#include "engine/state.hpp"
#include "kernels/matmul.hpp"
#include "model/backend_assignment.hpp"
#include "model/model_impl.hpp"
#include "model/weights.hpp"

namespace ds4::engine {

class HookDispatch;  // engine/hooks.hpp; null = no hooks

// Activations of one input, prepared lazily once per activation type so that
// every matrix reading the same input shares one quantization.
class SharedInput {
public:
    void reset(const float* x, int64_t n_tok, int64_t cols);
    // Quantized on first use per activation type (rows split over the
    // scratch's pool in prefill).
    const kernels::Activations& for_weight(DType weight_type, const CpuScratch& scratch);
    const float* x() const { return x_; }
    int64_t n_tok() const { return n_tok_; }

private:
    const float* x_ = nullptr;
    int64_t n_tok_ = 0, cols_ = 0;
    kernels::Activations slots_[3];
    bool ready_[3] = {false, false, false};
};

struct ForwardStats {
    uint64_t tokens = 0;
};

class Forward {
public:
    // Runs on the model's worker pool, with its backend assignment and expert placement.
    Forward(const Model::Impl& model, int max_batch);

    // Evaluate tokens[0..n) at positions state.n_past .. state.n_past+n-1,
    // updating `state`. Logits are written for the last token into
    // logits[0..n_vocab), or for every token (logits[t*n_vocab...]) when
    // all_logits is set.
    void run(const int32_t* tokens, int n, TimelineState& state, float* logits, bool all_logits,
             HookDispatch* hooks);

    int max_batch() const { return max_batch_; }
    // Weight bytes read by the products so far (each matrix once per batch).
    uint64_t weight_bytes_read() const { return weight_bytes_; }
    // Multiply-adds of those products so far: rows x cols x tokens of every
    // matrix (or expert slice) a batch runs through (attention over the
    // context is not a weight product and is not counted).
    uint64_t weight_macs() const { return weight_macs_; }

    // Indexer selections of the last run, for tests: per layer, per token,
    // the compressed rows attended (empty when every row was visible).
    struct IndexerTrace {
        int layer;
        int64_t pos;
        std::vector<int32_t> rows;
    };
    void set_trace_indexer(bool on) { trace_indexer_ = on; }
    const std::vector<IndexerTrace>& indexer_trace() const { return indexer_trace_; }
    void clear_indexer_trace() { indexer_trace_.clear(); }

private:
    // y = W x on the weight's backend (SharedInput: the input's quantization is shared).
    void mm(const kernels::Matrix& W, SharedInput& in, float* y, int64_t y_stride = 0);
    void mm(const kernels::Matrix& W, const float* x, int64_t n_tok, float* y, int64_t y_stride = 0);
    void norm(const std::vector<float>& weight, const std::string& tensor, const float* x, float* y, int64_t rows,
              int64_t n);
    void hc_pre(const model::HcMixWeights& hw, int n, float* out_in, float* split);
    void hc_post(const model::HcMixWeights& hw, int n, const float* y, const float* split);
    void allocate_scratch(size_t max_batch);
    const model::BackendAssignment::Entry* offload(const void* weight_data, BackendOp op, DType type) const;
    // One routed expert with its rows split over the NUMA nodes of the plan
    // (experts copied into node memory): gate/up rows per node, SwiGLU, then
    // down rows per node over the whole FF vector.
    void placed_expert(int layer, int64_t expert, const ExpertCall& call);
    void attention_layer(const model::LayerWeights& L, LayerState& S, int n, int64_t pos0, HookDispatch* hooks);
    void ffn_layer(const model::LayerWeights& L, const int32_t* tokens, int n, int64_t pos0, HookDispatch* hooks);
    void attend_token(const model::LayerWeights& L, LayerState& S, int t, int64_t pos);
    void compressor_push(const model::CompressorWeights& cw, CompressorState& cs, const float* kv, const float* sc,
                         int64_t pos, bool is_indexer, const Rope& rope);
    void select_rows(const model::LayerWeights& L, LayerState& S, int t, int64_t pos, std::vector<int32_t>& sel);
    void output_head(int n, float* logits, bool all_logits, HookDispatch* hooks, int64_t pos0);
    // Offer an activation to the hooks that want (point, layer).
    void emit(HookDispatch* hooks, HookPoint point, int layer, float* data, int64_t rows, int64_t width,
              int64_t first_row = 0, int streams = 1, bool writable = true);

    const ModelConfig& cfg_;
    const model::Weights& w_;
    const model::BackendAssignment* off_;  // null: everything on the CPU path
    placement::WorkerPool* pool_;
    const PlacementPlan& plan_;
    const placement::ExpertStore* store_;  // null: experts read from the mapped file
    std::vector<int64_t> node_items_;
    int max_batch_;
    uint64_t weight_bytes_ = 0;
    uint64_t weight_macs_ = 0;
    // One product's weight bytes (read once per batch) and multiply-adds.
    void count_product(size_t row_bytes, int64_t rows, int64_t cols, int64_t n_tok);
    CpuScratch cpu_;
    std::vector<std::string> attn_norm_names_, ffn_norm_names_;

    // Scratch, sized for max_batch tokens.
    std::vector<float> X_, X2_;        // HC state [T][hc*d]
    std::vector<float> xin_, u_;       // sublayer input and its norm [T][d]
    std::vector<float> split_;         // [T][mix]
    std::vector<float> flat_;          // [T][hc*d] normalised state
    std::vector<float> mix_;           // [T][mix]
    std::vector<float> qr_, q_, kv_;   // [T][ql], [T][H*hd], [T][hd]
    std::vector<float> ckv_, csc_, ikv_, isc_, iq_, iw_;
    std::vector<float> o_, og_, low_, y_;  // attention output, grouped copy, low rank, sublayer output
    std::vector<float> logit_, probs_, wsel_;  // router
    std::vector<int32_t> sel_;
    std::vector<float> moe_parts_, gathered_, down_out_, shared_g_, shared_u_, shared_out_;
    std::vector<float> hidden_;  // output head
    std::vector<float> rope_cs_;
    // Per-token attention scratch.
    std::vector<float> keys_, idx_scores_, idx_q_, idx_dots_, expert_w_;
    std::vector<uint16_t> keys16_;  // the attended key rows, F16 as stored
    std::vector<int32_t> selected_;
    std::vector<float> cmp_row_, cmp_cs_, kv_row_, best_;  // compressor output row, its RoPE angles, a KV row, router top-k
    std::vector<std::vector<int32_t>> users_;             // per expert: the (token, slot) pairs routed to it
    std::vector<std::pair<int64_t, int64_t>> expert_calls_;  // (expert, first (token, slot) of its buffers)
    std::vector<ExpertCall> cpu_experts_;                  // the experts run together by cpu_routed_experts
    RoutedExpertsScratch routed_;
    SharedInput in_a_, in_b_, in_c_;
    std::vector<int64_t> positions_;
    const int32_t* tokens_ = nullptr;
    kernels::Activations act_tmp_;
    kernels::Activations idx_act_;  // the indexer's per-head queries, [ih][ihd]
    bool trace_indexer_ = false;
    std::vector<IndexerTrace> indexer_trace_;
};

}  // namespace ds4::engine
