// The session's ordered hook list, as the forward pass sees it.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "ds4/hook.hpp"

namespace ds4::engine {

class HookDispatch {
public:
    explicit HookDispatch(int n_layer) : n_layer_(n_layer) {}

    HookHandle add(std::shared_ptr<Hook> hook);
    bool remove(HookHandle h);
    void clear();
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
    void rebuild();
    int n_layer_;
    uint64_t next_id_ = 1;
    std::vector<Entry> entries_;
    std::array<std::vector<bool>, kHookPointCount> any_;
};

}  // namespace ds4::engine
