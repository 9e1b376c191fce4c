// The session's ordered hook list, as the forward pass sees it.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "ds4/hook.hpp"

namespace ds4::engine {

class HookDispatch {
public:
    explicit HookDispatch(int n_layer);

    // Edits of the list. Between begin_pass() and end_pass() they go to a
    // staged copy and the pass keeps calling the list it started with; the
    // staged list takes effect at end_pass().
    HookHandle add(std::shared_ptr<Hook> hook);
    bool remove(HookHandle h);
    void clear();
    void begin_pass() noexcept { deferring_ = true; }
    void end_pass() noexcept;

    bool empty() const { return entries_.empty(); }
    // Combined fingerprint of the editing hooks, in order (0 if none edits).
    uint64_t fingerprint() const;

    // True if some hook wants (point, layer); layer -1 for the output points.
    bool wants(HookPoint p, int layer) const {
        return any_[static_cast<size_t>(p)][static_cast<size_t>(layer + 1)];
    }
    void call(const ActivationView& view) const;

    Phase phase = Phase::Prefill;
    std::span<const TokenId> history;  // tokens before the batch being evaluated

private:
    struct Entry {
        uint64_t id;
        std::shared_ptr<Hook> hook;
        std::vector<std::array<bool, kHookPointCount>> wanted;  // [layer+1][point]
    };
    // The list edits apply to: the active one, or the staged copy in a pass.
    std::vector<Entry>& editable();
    void edited();
    void rebuild() noexcept;
    int n_layer_;
    uint64_t next_id_ = 1;
    std::vector<Entry> entries_;
    std::vector<Entry> staged_;
    bool deferring_ = false, has_staged_ = false;
    std::array<std::vector<bool>, kHookPointCount> any_;
};

}  // namespace ds4::engine
