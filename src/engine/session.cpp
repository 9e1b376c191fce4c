// ds4::Session — one timeline: tokens, attention state, logits, rewind
// checkpoints and snapshots.
#include "ds4/session.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "core/error_internal.hpp"
#include "core/memory_internal.hpp"
#include "engine/forward.hpp"
#include "engine/session_impl.hpp"
#include "engine/snapshot_io.hpp"
#include "model/model_impl.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {
double mib(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }
}  // namespace

// ---- Snapshot ----------------------------------------------------------------

namespace {

std::unique_ptr<Snapshot::Impl> copy_snapshot(const Snapshot::Impl* from) {
    if (!from) return nullptr;
    try {
        return std::make_unique<Snapshot::Impl>(*from);
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::OutOfMemory, "Snapshot: out of memory copying a snapshot of %zu tokens (%.1f MiB of state)",
             from->tokens.size(), mib(from->state.bytes_in_use()));
    }
}

}  // namespace

Snapshot::Snapshot() : impl_(std::make_unique<Impl>()) {}
Snapshot::~Snapshot() = default;
Snapshot::Snapshot(const Snapshot& o) : impl_(copy_snapshot(o.impl_.get())) {}
Snapshot& Snapshot::operator=(const Snapshot& o) {
    if (this != &o) impl_ = copy_snapshot(o.impl_.get());
    return *this;
}
Snapshot::Snapshot(Snapshot&&) noexcept = default;
Snapshot& Snapshot::operator=(Snapshot&&) noexcept = default;
// A moved-from snapshot holds nothing: it reports zeros and restore refuses it.
int64_t Snapshot::position() const noexcept { return impl_ ? static_cast<int64_t>(impl_->tokens.size()) : 0; }
uint64_t Snapshot::model_fingerprint() const noexcept { return impl_ ? impl_->model_fingerprint : 0; }
uint64_t Snapshot::steering_fingerprint() const noexcept { return impl_ ? impl_->steering_fingerprint : 0; }
size_t Snapshot::size_bytes() const noexcept {
    if (!impl_) return 0;
    return impl_->tokens.size() * sizeof(TokenId) + impl_->logits.size() * sizeof(float) + impl_->state.bytes_in_use();
}

// ---- Session -----------------------------------------------------------------

namespace {

// Every field checked before the session allocates anything.
SessionOptions checked_options(const SessionOptions& o) {
    if (o.context_size < 1 || o.context_size > SessionOptions::kMaxContextSize)
        fail(ErrorCode::InvalidArgument, "SessionOptions::context_size = %lld is outside [1, %lld]",
             static_cast<long long>(o.context_size), static_cast<long long>(SessionOptions::kMaxContextSize));
    if (o.prefill_chunk < 1 || o.prefill_chunk > SessionOptions::kMaxPrefillChunk)
        fail(ErrorCode::InvalidArgument, "SessionOptions::prefill_chunk = %d is outside [1, %d]", o.prefill_chunk,
             SessionOptions::kMaxPrefillChunk);
    if (o.checkpoint_interval < 0)
        fail(ErrorCode::InvalidArgument,
             "SessionOptions::checkpoint_interval = %lld is negative (0 = a checkpoint only at the end of each prefill)",
             static_cast<long long>(o.checkpoint_interval));
    if (o.max_checkpoints < 0)
        fail(ErrorCode::InvalidArgument, "SessionOptions::max_checkpoints = %d is negative (0 = keep none)",
             o.max_checkpoints);
    return o;
}

// Tokens per forward batch: a chunk never needs to exceed the context.
int batch_tokens(const SessionOptions& o) {
    return static_cast<int>(std::min<int64_t>(o.prefill_chunk, o.context_size));
}

}  // namespace

Session::Impl::Impl(std::shared_ptr<const Model> m, const SessionOptions& o)
    : model(std::move(m)),
      options(checked_options(o)),
      cfg(model->config()),
      forward(model->impl(), batch_tokens(options)),
      hooks(model->config().n_layer) {
    try {
        state.init(cfg, options.context_size);
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::OutOfMemory,
             "Session: out of memory allocating the attention state: %d layers of a %lld-row raw window of %d values "
             "and the compressor frontiers",
             cfg.n_layer, static_cast<long long>(std::min<int64_t>(cfg.sliding_window, options.context_size)),
             cfg.head_dim);
    }
}

void Session::Impl::validate_tokens(std::span<const TokenId> toks) const {
    for (size_t i = 0; i < toks.size(); ++i)
        if (toks[i] < 0 || toks[i] >= cfg.n_vocab)
            fail(ErrorCode::InvalidArgument, "token %d at index %zu is outside the vocabulary [0, %d)", toks[i], i,
                 cfg.n_vocab);
    const int64_t room = options.context_size - static_cast<int64_t>(tokens.size());
    if (static_cast<int64_t>(toks.size()) > room)
        fail(ErrorCode::ContextFull, "context full: %zu tokens do not fit (%lld of %lld positions used)", toks.size(),
             static_cast<long long>(tokens.size()), static_cast<long long>(options.context_size));
}

void Session::Impl::note_edits_for_new_tokens() {
    const uint64_t now = hooks.fingerprint();
    if (tokens.empty()) {
        state_fingerprint = now;
    } else if (now != state_fingerprint) {
        // The edits changed part-way: identify the mix, which matches no single setting.
        state_fingerprint = (state_fingerprint * 0x9E3779B97F4A7C15ull) ^ (now + 0x632BE59BD9B4E019ull) ^ 1;
    }
}

void Session::Impl::evaluate(std::span<const TokenId> toks, const PrefillOptions& popt, Phase phase,
                             bool checkpoint_at_end) {
    note_edits_for_new_tokens();
    hooks.phase = phase;
    engine::HookDispatch* hp = hooks.empty() ? nullptr : &hooks;
    const uint8_t phase_flag = phase == Phase::Decode ? 1 : 0;
    // The OpenMP paths (a "cpu" backend) use at most the threads the plan
    // has: ModelOptions::n_threads beyond the machine's cores is clamped there.
    const int nthreads = std::min(model->options().n_threads, model->placement().n_threads);
    if (nthreads > 0) omp_set_num_threads(nthreads);
    const int64_t total = static_cast<int64_t>(toks.size());
    const int64_t V = cfg.n_vocab;
    clear_all_logits();
    if (popt.all_logits) reserve_all_logits(total);
    const int64_t chunk = forward.max_batch();
    int64_t done = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t bytes0 = forward.weight_bytes_read(), macs0 = forward.weight_macs();
    struct CountWork {  // adds this call's work to the stats however it ends
        Impl& s;
        Phase phase;
        std::chrono::steady_clock::time_point t0;
        uint64_t bytes0, macs0;
        const int64_t& done;
        ~CountWork() {
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const uint64_t bytes = s.forward.weight_bytes_read() - bytes0;
            const uint64_t macs = s.forward.weight_macs() - macs0;
            if (phase == Phase::Decode) {
                s.stats.decode_tokens += done;
                s.stats.decode_seconds += sec;
                s.stats.decode_weight_bytes += bytes;
                s.stats.decode_weight_macs += macs;
            } else {
                s.stats.prefill_tokens += done;
                s.stats.prefill_seconds += sec;
                s.stats.prefill_weight_bytes += bytes;
                s.stats.prefill_weight_macs += macs;
            }
        }
    } count_work{*this, phase, t0, bytes0, macs0, done};
    try {
        while (done < total) {
            // Cut chunks at absolute multiples of the chunk size (and of the
            // checkpoint interval) so checkpoints land on fixed positions.
            const int64_t pos = static_cast<int64_t>(tokens.size());
            int64_t n = std::min(total - done, chunk - pos % chunk);
            const int64_t ci = options.checkpoint_interval;
            if (ci > 0) n = std::min(n, ci - pos % ci);
            if (!popt.all_logits) scratch_logits.resize(static_cast<size_t>(V));
            float* out = popt.all_logits ? &all_logits[static_cast<size_t>(done * V)] : scratch_logits.data();
            hooks.history = tokens;
            forward.run(toks.data() + done, static_cast<int>(n), state, out, popt.all_logits, hp);
            tokens.insert(tokens.end(), toks.begin() + done, toks.begin() + done + n);
            decoded.insert(decoded.end(), static_cast<size_t>(n), phase_flag);
            const float* last = popt.all_logits ? out + (n - 1) * V : out;
            logits.assign(last, last + V);
            done += n;
            if (popt.all_logits) all_logits_count = done;
            const int64_t now = static_cast<int64_t>(tokens.size());
            if ((done == total && phase == Phase::Prefill && checkpoint_at_end) || (ci > 0 && now % ci == 0))
                take_checkpoint();
            if (popt.progress && !popt.progress(done, total)) {
                if (done < total)
                    fail(ErrorCode::Cancelled, "prefill cancelled after %lld of %lld tokens",
                         static_cast<long long>(done), static_cast<long long>(total));
            }
        }
    } catch (const Error& e) {
        if (e.code() == ErrorCode::Cancelled) {
            take_checkpoint();
            throw;
        }
        reset();
        throw;
    } catch (const std::bad_alloc&) {
        const uint64_t held = state.bytes_in_use();
        reset();
        fail(ErrorCode::OutOfMemory,
             "%s: out of memory after %lld of %lld tokens, growing the attention state (%.1f MiB) or a rewind "
             "checkpoint; the session was reset",
             phase == Phase::Decode ? "decode" : "prefill", static_cast<long long>(done), static_cast<long long>(total),
             mib(held));
    } catch (...) {
        reset();
        throw;
    }
}

void Session::Impl::clear_all_logits() noexcept {
    all_logits.clear();
    all_logits_count = 0;
    all_logits_requested = 0;
}

void Session::Impl::reserve_all_logits(int64_t n_tokens) {
    const size_t floats = static_cast<size_t>(n_tokens) * static_cast<size_t>(cfg.n_vocab);
    detail::allocate_checked(
        detail::format("prefill with PrefillOptions::all_logits: %lld tokens x %d logits", static_cast<long long>(n_tokens),
                       cfg.n_vocab),
        floats * sizeof(float), "prefill in smaller pieces", [&] { all_logits.resize(floats); });
    all_logits_requested = n_tokens;
}

void Session::Impl::take_checkpoint() {
    const int64_t pos = static_cast<int64_t>(tokens.size());
    if (!checkpoints.empty() && checkpoints.back().position == pos) return;
    if (options.max_checkpoints <= 0) return;
    Checkpoint cp;
    cp.position = pos;
    cp.steering_fingerprint = state_fingerprint;
    cp.logits = logits;
    cp.layers.reserve(state.layers.size());
    for (const auto& L : state.layers) {
        Checkpoint::Layer c;
        c.raw = L.raw;
        if (L.compressed) {
            c.attn_kv = L.attn.kv;
            c.attn_score = L.attn.score;
            c.attn_rows = L.attn.n_rows;
        }
        if (L.indexed) {
            c.idx_kv = L.indexer.kv;
            c.idx_score = L.indexer.score;
            c.idx_rows = L.indexer.n_rows;
        }
        cp.layers.push_back(std::move(c));
    }
    checkpoints.push_back(std::move(cp));
    while (static_cast<int>(checkpoints.size()) > options.max_checkpoints) checkpoints.pop_front();
}

void Session::Impl::restore_checkpoint(const Checkpoint& cp) {
    for (size_t il = 0; il < state.layers.size(); ++il) {
        auto& L = state.layers[il];
        const auto& c = cp.layers[il];
        L.raw = c.raw;
        if (L.compressed) {
            L.attn.kv = c.attn_kv;
            L.attn.score = c.attn_score;
            L.attn.truncate(c.attn_rows);
        }
        if (L.indexed) {
            L.indexer.kv = c.idx_kv;
            L.indexer.score = c.idx_score;
            L.indexer.truncate(c.idx_rows);
        }
    }
    state.n_past = cp.position;
    state_fingerprint = cp.steering_fingerprint;
    tokens.resize(static_cast<size_t>(cp.position));
    decoded.resize(static_cast<size_t>(cp.position));
    logits = cp.logits;
    clear_all_logits();
}

void Session::Impl::reset() {
    state.clear();
    tokens.clear();
    decoded.clear();
    logits.clear();
    clear_all_logits();
    checkpoints.clear();
    state_fingerprint = 0;
}

void Session::Impl::replay(const std::vector<TokenId>& source, const std::vector<uint8_t>& phases, size_t from,
                           size_t to) {
    size_t i = from;
    while (i < to) {
        size_t j = i;
        while (j < to && phases[j] == phases[i]) ++j;
        if (phases[i]) {
            for (size_t k = i; k < j; ++k)
                evaluate(std::span<const TokenId>(&source[k], 1), PrefillOptions{}, Phase::Decode, false);
        } else {
            evaluate(std::span<const TokenId>(source.data() + i, j - i), PrefillOptions{}, Phase::Prefill, false);
        }
        i = j;
    }
}

void Session::Impl::rewind(int64_t position) {
    const int64_t cur = static_cast<int64_t>(tokens.size());
    if (position < 0 || position > cur)
        fail(ErrorCode::InvalidArgument, "rewind(%lld): position must be in [0, %lld]", static_cast<long long>(position),
             static_cast<long long>(cur));
    if (position == cur) return;
    while (!checkpoints.empty() && checkpoints.back().position > position) checkpoints.pop_back();
    const std::vector<TokenId> toks = tokens;
    const std::vector<uint8_t> phases = decoded;
    size_t from = 0;
    if (checkpoints.empty()) {
        reset();
    } else {
        from = static_cast<size_t>(checkpoints.back().position);
        restore_checkpoint(checkpoints.back());
    }
    replay(toks, phases, from, static_cast<size_t>(position));
}

int64_t Session::Impl::common_prefix(std::span<const TokenId> toks) const noexcept {
    const size_t n = std::min(tokens.size(), toks.size());
    size_t i = 0;
    while (i < n && tokens[i] == toks[i]) ++i;
    return static_cast<int64_t>(i);
}

void Session::Impl::sync(std::span<const TokenId> toks, const PrefillOptions& popt) {
    if (toks.empty()) {
        reset();
        return;
    }
    int64_t common = common_prefix(toks);
    // The logits after the last token must be recomputed, so keep at most
    // size-1 tokens of the prefix when the whole input is already held.
    if (common == static_cast<int64_t>(toks.size())) {
        if (static_cast<int64_t>(tokens.size()) == common) return;
        --common;
    }
    // Validate the new suffix before touching the state.
    for (size_t i = static_cast<size_t>(common); i < toks.size(); ++i)
        if (toks[i] < 0 || toks[i] >= cfg.n_vocab)
            fail(ErrorCode::InvalidArgument, "token %d at index %zu is outside the vocabulary [0, %d)", toks[i], i,
                 cfg.n_vocab);
    if (static_cast<int64_t>(toks.size()) > options.context_size)
        fail(ErrorCode::ContextFull, "context full: %zu tokens do not fit in a context of %lld", toks.size(),
             static_cast<long long>(options.context_size));
    rewind(common);
    evaluate(toks.subspan(static_cast<size_t>(common)), popt, Phase::Prefill, true);
}

Snapshot Session::Impl::snapshot() const {
    Snapshot s;
    auto& si = *s.impl_;
    si.model_fingerprint = model->fingerprint();
    si.steering_fingerprint = steering_fingerprint();
    si.tokens = tokens;
    si.decoded = decoded;
    si.logits = logits;
    si.state = state;
    return s;
}

void Session::Impl::restore(const Snapshot::Impl& si, const RestoreOptions& ro) {
    if (si.model_fingerprint != model->fingerprint())
        fail(ErrorCode::InvalidArgument,
             "snapshot belongs to another model (fingerprint %016llx, this model is %016llx)",
             static_cast<unsigned long long>(si.model_fingerprint),
             static_cast<unsigned long long>(model->fingerprint()));
    if (static_cast<int64_t>(si.tokens.size()) > options.context_size)
        fail(ErrorCode::ContextFull, "snapshot holds %zu tokens, more than this session's context (%lld)",
             si.tokens.size(), static_cast<long long>(options.context_size));
    const uint64_t active = hooks.fingerprint();
    if (!ro.allow_steering_mismatch && !si.tokens.empty() && si.steering_fingerprint != active)
        fail(ErrorCode::InvalidArgument,
             "snapshot state was produced under other activation edits (steering %016llx) than the ones registered "
             "now (%016llx); remove or add the same steering, or pass allow_steering_mismatch",
             static_cast<unsigned long long>(si.steering_fingerprint), static_cast<unsigned long long>(active));
    // Copy everything first (this may run out of memory), then swap: a
    // failed restore leaves the session as it was.
    engine::TimelineState st = si.state.with_ring_for(options.context_size);
    std::vector<TokenId> toks = si.tokens;
    std::vector<uint8_t> phases = si.decoded;
    std::vector<float> lg = si.logits;
    state = std::move(st);
    tokens = std::move(toks);
    decoded = std::move(phases);
    logits = std::move(lg);
    state_fingerprint = si.steering_fingerprint;
    clear_all_logits();
    checkpoints.clear();
    try {
        take_checkpoint();
    } catch (...) {
        reset();
        throw;
    }
}

namespace {

// The Impl of a session that was not moved from.
Session::Impl& live(const std::unique_ptr<Session::Impl>& p, const char* what) {
    if (!p)
        fail(ErrorCode::InvalidArgument, "Session::%s: this Session was moved from and holds no model or state", what);
    return *p;
}

// body(), with std::bad_alloc reported as OutOfMemory naming the call.
template <class F>
auto memory_checked(const char* what, const Session::Impl& s, F&& body) {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::OutOfMemory,
             "Session::%s: out of memory (the session holds %zu tokens and %.1f MiB of attention state)", what,
             s.tokens.size(), mib(s.state.bytes_in_use()));
    }
}

// Runs body(impl) as the public call `what`: refuses a moved-from session
// and a call made while another call runs on the same session (from one of
// its hooks or callbacks, or from another thread); hook-list edits made
// during the call take effect when it ends; running out of memory is a
// ds4::Error.
template <class F>
auto session_call(const std::unique_ptr<Session::Impl>& p, const char* what, F&& body) {
    Session::Impl& s = live(p, what);
    const char* idle = nullptr;
    if (!s.running.compare_exchange_strong(idle, what))
        fail(ErrorCode::InvalidArgument,
             "Session::%s called while Session::%s is running on the same session (from one of its hooks or "
             "callbacks, or from another thread): re-entrant calls are refused",
             what, idle);
    struct EndCall {
        Session::Impl& s;
        ~EndCall() {
            s.hooks.end_pass();
            s.running.store(nullptr);
        }
    } end_call{s};
    s.hooks.begin_pass();
    return memory_checked(what, s, [&] { return body(s); });
}

}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options) {
    if (!model) fail(ErrorCode::InvalidArgument, "Session needs a model (got a null pointer)");
    try {
        impl_ = std::make_unique<Impl>(std::move(model), options);
    } catch (const std::bad_alloc&) {  // the large parts report themselves
        fail(ErrorCode::OutOfMemory, "Session: out of memory creating a session of %lld tokens",
             static_cast<long long>(options.context_size));
    }
}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

// Observers of a moved-from session report an empty timeline; the calls
// that need a model or state throw.
const Model& Session::model() const { return *live(impl_, "model").model; }
const std::shared_ptr<const Model>& Session::model_ptr() const noexcept {
    static const std::shared_ptr<const Model> none;
    return impl_ ? impl_->model : none;
}
const SessionOptions& Session::options() const { return live(impl_, "options").options; }
Session::Impl& Session::impl() { return live(impl_, "impl"); }
int64_t Session::position() const noexcept { return impl_ ? static_cast<int64_t>(impl_->tokens.size()) : 0; }
int64_t Session::context_size() const noexcept { return impl_ ? impl_->options.context_size : 0; }
std::span<const TokenId> Session::tokens() const noexcept {
    return impl_ ? std::span<const TokenId>(impl_->tokens) : std::span<const TokenId>();
}
std::span<const float> Session::logits() const noexcept {
    return impl_ ? std::span<const float>(impl_->logits) : std::span<const float>();
}
uint64_t Session::steering_fingerprint() const noexcept { return impl_ ? impl_->steering_fingerprint() : 0; }
uint64_t Session::active_edits_fingerprint() const noexcept { return impl_ ? impl_->hooks.fingerprint() : 0; }
uint64_t Session::state_bytes() const noexcept { return impl_ ? impl_->state.bytes_in_use() : 0; }
Session::Stats Session::stats() const noexcept { return impl_ ? impl_->stats : Stats{}; }
void Session::reset_stats() noexcept {
    if (impl_) impl_->stats = {};
}
int64_t Session::common_prefix(std::span<const TokenId> tokens) const noexcept {
    return impl_ ? impl_->common_prefix(tokens) : 0;
}

// Hook-list edits are not refused during a call: they are deferred (hooks.hpp).
HookHandle Session::add_hook(std::shared_ptr<Hook> hook) {
    Impl& s = live(impl_, "add_hook");
    return memory_checked("add_hook", s, [&] { return s.hooks.add(std::move(hook)); });
}
bool Session::remove_hook(HookHandle handle) {
    Impl& s = live(impl_, "remove_hook");
    return memory_checked("remove_hook", s, [&] { return s.hooks.remove(handle); });
}
void Session::clear_hooks() {
    Impl& s = live(impl_, "clear_hooks");
    memory_checked("clear_hooks", s, [&] { s.hooks.clear(); });
}

std::span<const float> Session::logits_at(int64_t i) const {
    const Impl& s = live(impl_, "logits_at");
    if (i >= s.all_logits_count && i < s.all_logits_requested)
        fail(ErrorCode::InvalidArgument,
             "logits_at(%lld): the last prefill stopped after %lld of its %lld tokens, so the logits after token %lld "
             "were never computed",
             static_cast<long long>(i), static_cast<long long>(s.all_logits_count),
             static_cast<long long>(s.all_logits_requested), static_cast<long long>(i));
    if (i < 0 || i >= s.all_logits_count)
        fail(ErrorCode::InvalidArgument,
             "logits_at(%lld): the last prefill kept logits for %lld tokens (set PrefillOptions::all_logits)",
             static_cast<long long>(i), static_cast<long long>(s.all_logits_count));
    const size_t V = static_cast<size_t>(s.cfg.n_vocab);
    return {s.all_logits.data() + static_cast<size_t>(i) * V, V};
}

void Session::prefill(std::span<const TokenId> tokens, const PrefillOptions& options) {
    session_call(impl_, "prefill", [&](Impl& s) {
        if (tokens.empty()) fail(ErrorCode::InvalidArgument, "prefill needs at least one token");
        s.validate_tokens(tokens);
        s.evaluate(tokens, options, Phase::Prefill, true);
    });
}

void Session::decode(TokenId token) {
    session_call(impl_, "decode", [&](Impl& s) {
        const TokenId one[1] = {token};
        s.validate_tokens(one);
        s.evaluate(one, PrefillOptions{}, Phase::Decode, false);
    });
}

void Session::reset() {
    session_call(impl_, "reset", [](Impl& s) { s.reset(); });
}

void Session::rewind(int64_t position) {
    session_call(impl_, "rewind", [&](Impl& s) { s.rewind(position); });
}

void Session::sync(std::span<const TokenId> tokens, const PrefillOptions& options) {
    session_call(impl_, "sync", [&](Impl& s) { s.sync(tokens, options); });
}

Snapshot Session::snapshot() const {
    return session_call(impl_, "snapshot", [](Impl& s) { return s.snapshot(); });
}

void Session::restore(const Snapshot& snapshot, const RestoreOptions& options) {
    session_call(impl_, "restore", [&](Impl& s) {
        if (!snapshot.impl_)
            fail(ErrorCode::InvalidArgument, "Session::restore: the snapshot was moved from and holds no state");
        s.restore(*snapshot.impl_, options);
    });
}

// Snapshot files keep the whole window whatever the session's ring.
void Session::save(const std::string& path) const {
    session_call(impl_, "save", [&](Impl& s) {
        Snapshot snap = s.snapshot();
        snap.impl_->state = snap.impl_->state.with_ring_for(INT64_MAX);
        engine::write_snapshot_file(path, *snap.impl_, s.cfg);
    });
}

void Session::load(const std::string& path, const RestoreOptions& options) {
    session_call(impl_, "load", [&](Impl& s) {
        Snapshot snap;
        engine::read_snapshot_file(path, *snap.impl_, {s.cfg, s.model->fingerprint(), s.options.context_size});
        s.restore(*snap.impl_, options);
    });
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
