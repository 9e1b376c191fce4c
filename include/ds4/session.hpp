// ds4 — one timeline of a model: its attention state (raw window, compressed
// rows, compressor and indexer state), the tokens it holds and the logits
// for the next token.
//
// A Session is used by one thread at a time; several Sessions may share one
// Model concurrently.
//
// Re-entrant calls: while prefill, decode, sync, rewind, reset, restore,
// load, snapshot or save runs, the session's hooks and callbacks (the
// progress callback) may read it (position(), tokens(), logits(), ...) and
// edit its hook list (deferred, see ds4/hook.hpp), but any of those calls
// on the same session throws InvalidArgument ("re-entrant") and changes
// nothing; the running call goes on. A hook must not destroy or move-assign
// the session that calls it.
//
// A moved-from Session holds nothing: position(), tokens(), logits() and the
// other noexcept observers report an empty timeline (context_size() 0),
// every other call throws InvalidArgument. The same holds for Snapshot.
//
// State after a failed call:
//  - InvalidArgument (bad token id, empty input, a re-entrant call) and
//    ContextFull: the session is unchanged (checked before any work).
//  - Cancelled (the progress callback returned false): the tokens of every
//    chunk completed before cancellation are kept; position() says how many,
//    and logits() are those after the last kept token.
//  - OutOfMemory (a ds4::Error too, never std::bad_alloc): from prefill or
//    decode the session is reset to empty, from restore or load unchanged.
//  - anything else: the session is reset to empty.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ds4/hook.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Model;

// Checked when the Session is constructed: a value outside its range throws
// InvalidArgument naming the field and the range, before anything is
// allocated.
struct SessionOptions {
    static constexpr int64_t kMaxContextSize = int64_t{1} << 24;  // 16x the published model's 1M context
    static constexpr int kMaxPrefillChunk = 65536;

    // Maximum number of tokens the timeline can hold: [1, kMaxContextSize].
    // The raw attention window is allocated for min(context_size,
    // sliding_window) rows, so a short session of a model stays small.
    int64_t context_size = 4096;
    // Tokens evaluated per batch in prefill (bounds scratch memory):
    // [1, kMaxPrefillChunk]. Batches are never larger than context_size (a
    // larger value acts as context_size).
    int prefill_chunk = 256;
    // Keep a rewind checkpoint at the end of every prefill() and every
    // `checkpoint_interval` tokens inside long prefills (0 = only at the
    // end; >= 0).
    int64_t checkpoint_interval = 2048;
    // At most this many rewind checkpoints are kept (oldest dropped first;
    // 0 = none, rewinds replay from the start; >= 0).
    int max_checkpoints = 8;
};

// Called after each prefill chunk with (tokens done, tokens total); return
// false to cancel.
using ProgressCallback = std::function<bool(int64_t done, int64_t total)>;

struct PrefillOptions {
    // Compute logits for every token of this call (logits_at), not only the last.
    bool all_logits = false;
    ProgressCallback progress;
};

// An in-memory copy of a session's state (tokens, attention state, logits).
class Snapshot {
public:
    Snapshot();
    ~Snapshot();
    Snapshot(const Snapshot&);
    Snapshot& operator=(const Snapshot&);
    Snapshot(Snapshot&&) noexcept;
    Snapshot& operator=(Snapshot&&) noexcept;

    int64_t position() const noexcept;
    uint64_t model_fingerprint() const noexcept;
    // Identifies the steering/hook edits that produced the state (0 = none).
    uint64_t steering_fingerprint() const noexcept;
    size_t size_bytes() const noexcept;

    struct Impl;

private:
    friend class Session;
    std::unique_ptr<Impl> impl_;
};

class Session {
public:
    explicit Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
    ~Session();
    Session(Session&&) noexcept;
    Session& operator=(Session&&) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    const Model& model() const;  // throws on a moved-from session
    const std::shared_ptr<const Model>& model_ptr() const noexcept;  // null on a moved-from session
    const SessionOptions& options() const;  // throws on a moved-from session

    int64_t position() const noexcept;  // tokens held
    // Bytes of attention state the held tokens occupy (raw window, compressor
    // frontiers, compressed rows and indexer keys).
    uint64_t state_bytes() const noexcept;
    int64_t context_size() const noexcept;
    std::span<const TokenId> tokens() const noexcept;

    // Append tokens and compute the logits after the last one.
    void prefill(std::span<const TokenId> tokens, const PrefillOptions& options = {});
    // Append one token (prefill of one token).
    void decode(TokenId token);

    // Logits for the next token (empty before the first token).
    std::span<const float> logits() const noexcept;
    // With PrefillOptions::all_logits: logits after token `i` of the last
    // prefill call (0-based within that call). Throws InvalidArgument for a
    // row that was not computed (no all_logits, or a prefill cancelled or
    // failed before token i).
    std::span<const float> logits_at(int64_t i) const;

    // Drop every token from `position` on; the state and logits become
    // those after tokens[0, position). Restores the newest checkpoint at or
    // before `position` and re-evaluates the tokens after it.
    void rewind(int64_t position);
    // Empty the timeline.
    void reset();

    // Length of the common prefix of `tokens` and tokens().
    int64_t common_prefix(std::span<const TokenId> tokens) const noexcept;
    // Make the timeline hold exactly `tokens`, reusing the common prefix.
    void sync(std::span<const TokenId> tokens, const PrefillOptions& options = {});

    struct RestoreOptions {
        // Accept a state produced under other activation edits (steering,
        // editing hooks) than the ones now registered.
        bool allow_steering_mismatch = false;
    };
    Snapshot snapshot() const;
    // Throws InvalidArgument if the snapshot belongs to another model, was
    // produced under other activation edits than the ones registered now
    // (unless allowed), or ContextFull if it does not fit.
    void restore(const Snapshot& snapshot, const RestoreOptions& options);
    void restore(const Snapshot& snapshot) { restore(snapshot, RestoreOptions{}); }
    // Files (docs/snapshots.md): a header declaring every size, checked
    // against the model and this session's context before anything else is
    // read, then the zstd-compressed state, under an XXH3-64 checksum.
    // save() replaces `path` atomically; load() throws a ds4::Error naming
    // the file for anything wrong with it (the session is then unchanged).
    void save(const std::string& path) const;
    void load(const std::string& path, const RestoreOptions& options);
    void load(const std::string& path) { load(path, RestoreOptions{}); }

    // Hooks (see ds4/hook.hpp), run in registration order. Steering vectors
    // are applied through the same list, so their order with hooks is the
    // order they were added.
    HookHandle add_hook(std::shared_ptr<Hook> hook);
    bool remove_hook(HookHandle handle);
    void clear_hooks();

    // Fingerprint of the edits that produced the current state: the editing
    // hooks active while its tokens were evaluated (0 = unedited). If the
    // edits changed part-way, it identifies that mix. Snapshots record it.
    uint64_t steering_fingerprint() const noexcept;
    // Fingerprint of the edits registered now.
    uint64_t active_edits_fingerprint() const noexcept;

    // Work done since the session was created or reset_stats() was called.
    struct Stats {
        int64_t prefill_tokens = 0, decode_tokens = 0;  // tokens evaluated (replays after rewind included)
        double prefill_seconds = 0, decode_seconds = 0;
        // Weight bytes the matrix products read: every matrix (or routed
        // expert slice) a batch touches, counted once per batch.
        uint64_t prefill_weight_bytes = 0, decode_weight_bytes = 0;
        // Multiply-adds of those products: rows x cols x tokens of each
        // (attention over the context not included).
        uint64_t prefill_weight_macs = 0, decode_weight_macs = 0;
    };
    Stats stats() const noexcept;
    void reset_stats() noexcept;

    struct Impl;
    Impl& impl();  // internals, for the library's own tests and tools

private:
    std::unique_ptr<Impl> impl_;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
