// ds4 — hooks: read and edit the model's activations while it runs.
//
// A hook point is addressed by (HookPoint, layer). A Hook first says which
// points it wants (asked once per registration), then receives a view of the
// activation at each of them, for every batch the session evaluates (prefill
// chunks and single decode steps alike), on the thread that called
// prefill/decode. Views are rows = tokens of the batch, with the absolute
// position and token id of each row; a hook may edit a writable view in
// place. Hooks run in registration order. With no hook registered the engine
// makes no call and no copy.
//
// Inside a call: a hook (or a progress callback) may add, remove or clear
// hooks of its own session. Those edits are deferred: the running call
// (prefill, decode, sync, rewind...) goes on calling the hooks it started
// with, a hook removed by itself or another included, and the edited list
// takes effect when that call returns, i.e. from the next call on.
// remove_hook answers for the edited list (false for a hook already removed
// in the same call). Any other call on the same session from inside a hook
// (prefill, decode, rewind, restore, snapshot...) throws ds4::Error
// (InvalidArgument, "re-entrant") and changes nothing; a hook that lets the
// error escape fails the running call like any exception from a hook.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class HookPoint : uint8_t {
    ResidPre = 0,     // the HC streams entering layer L: width = streams * n_embd
    AttnIn,           // attention input after HC pre-mix and attn_norm (n_embd)
    AttnOut,          // attention output, before HC post-mix (n_embd)
    FfnIn,            // FFN input after HC pre-mix and ffn_norm (n_embd)
    RouterLogits,     // router logits before sqrt-softplus (n_expert); read-only for hooks
    RouterSelection,  // selected experts and their weights; read-only (see ActivationView::experts)
    FfnOut,           // routed MoE + shared expert, before HC post-mix (n_embd)
    ResidPost,        // the HC streams after layer L (streams * n_embd)
    FinalHidden,      // the HC-collapsed, output-normed hidden state (layer = -1)
    Logits,           // next-token logits (layer = -1); rows that have logits only
};
constexpr int kHookPointCount = 10;

std::string_view hook_point_name(HookPoint p) noexcept;  // "attn_out", "resid_pre", ...
// Parses the names above; nullopt-like false on failure.
bool hook_point_from_name(std::string_view name, HookPoint* out) noexcept;

enum class Phase : uint8_t { Prefill, Decode };

struct ActivationView {
    HookPoint point = HookPoint::AttnOut;
    int layer = -1;
    Phase phase = Phase::Prefill;
    float* data = nullptr;     // rows x width, row-major (null for RouterSelection)
    int64_t rows = 0;
    int64_t width = 0;
    int streams = 1;           // ResidPre/ResidPost: HC streams per row (width = streams * n_embd)
    bool writable = false;
    std::span<const int64_t> positions;  // absolute position of each row
    std::span<const TokenId> tokens;     // token id of each row
    std::span<const TokenId> history;    // the session's tokens before this batch
    // RouterSelection: rows x k expert ids and routing weights.
    const int32_t* experts = nullptr;
    const float* expert_weights = nullptr;
    int k = 0;

    float* row(int64_t r) const { return data + r * width; }
};

class Hook {
public:
    virtual ~Hook() = default;
    // Asked once when the hook is added, for every point of every layer.
    virtual bool wants(HookPoint point, int layer) const = 0;
    // Called with the activation at a wanted point.
    virtual void on_activation(const ActivationView& view) = 0;
    // Non-zero for hooks that edit activations: identifies the edit, so that
    // snapshots record which edits produced their state. Read-only hooks
    // return 0.
    virtual uint64_t fingerprint() const { return 0; }
};

// Returned by Session::add_hook; pass it to remove_hook.
struct HookHandle {
    uint64_t id = 0;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
