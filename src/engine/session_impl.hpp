// Session and Snapshot internals.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <vector>

#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "engine/forward.hpp"
#include "engine/hooks.hpp"
#include "engine/state.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

struct Snapshot::Impl {
    uint64_t model_fingerprint = 0;
    uint64_t steering_fingerprint = 0;
    std::vector<TokenId> tokens;
    std::vector<uint8_t> decoded;
    std::vector<float> logits;
    engine::TimelineState state;
};

// What a rewind needs to get back to a position: the parts of the state that
// are overwritten in place (raw ring, compressor frontiers) and the lengths
// of the append-only parts (compressed rows).
struct Checkpoint {
    struct Layer {
        std::vector<uint16_t> raw;
        std::vector<float> attn_kv, attn_score, idx_kv, idx_score;
        int64_t attn_rows = 0, idx_rows = 0;
    };
    int64_t position = 0;
    uint64_t steering_fingerprint = 0;
    std::vector<float> logits;
    std::vector<Layer> layers;
};

struct Session::Impl {
    Impl(std::shared_ptr<const Model> model, const SessionOptions& options);

    std::shared_ptr<const Model> model;
    SessionOptions options;  // checked (checked_options) before anything is allocated
    const ModelConfig& cfg;
    engine::Forward forward;
    engine::TimelineState state;
    std::vector<TokenId> tokens;
    std::vector<uint8_t> decoded;  // per token: evaluated by decode() (1) or prefill() (0)
    Session::Stats stats;
    std::vector<float> logits;
    std::vector<float> scratch_logits;
    std::vector<float> all_logits;
    int64_t all_logits_count = 0;      // rows of all_logits computed
    int64_t all_logits_requested = 0;  // tokens of the prefill that asked for them
    std::deque<Checkpoint> checkpoints;
    engine::HookDispatch hooks;
    uint64_t state_fingerprint = 0;  // edits that produced the current state
    // The public call running on this session (null when idle): a call made
    // from inside it (a hook or a callback) is refused (session_call).
    std::atomic<const char*> running{nullptr};

    void validate_tokens(std::span<const TokenId> toks) const;
    // Evaluate tokens with the given phase; prefill calls leave a rewind
    // checkpoint at their end when checkpoint_at_end is set.
    void evaluate(std::span<const TokenId> toks, const PrefillOptions& popt, Phase phase, bool checkpoint_at_end);
    void take_checkpoint();
    void clear_all_logits() noexcept;
    void reserve_all_logits(int64_t n_tokens);
    void restore_checkpoint(const Checkpoint& cp);
    void reset();
    // Re-evaluate tokens[from, to) of `source` with the phases they had.
    void replay(const std::vector<TokenId>& source, const std::vector<uint8_t>& phases, size_t from, size_t to);
    void rewind(int64_t position);
    int64_t common_prefix(std::span<const TokenId> toks) const noexcept;
    void sync(std::span<const TokenId> toks, const PrefillOptions& popt);
    Snapshot snapshot() const;
    // Replaces the state (strong guarantee up to the closing checkpoint).
    void restore(const Snapshot::Impl& snapshot, const RestoreOptions& options);
    uint64_t steering_fingerprint() const { return state_fingerprint; }
    void note_edits_for_new_tokens();
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
