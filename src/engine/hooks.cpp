#include "engine/hooks.hpp"

#include <algorithm>

#include "core/error_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace {
constexpr std::string_view kNames[kHookPointCount] = {"resid_pre",   "attn_in",          "attn_out",
                                                       "ffn_in",      "router_logits",    "router_selection",
                                                       "ffn_out",     "resid_post",       "final_hidden",
                                                       "logits"};
}

std::string_view hook_point_name(HookPoint p) noexcept {
    const auto i = static_cast<size_t>(p);
    return i < kHookPointCount ? kNames[i] : "?";
}

bool hook_point_from_name(std::string_view name, HookPoint* out) noexcept {
    for (int i = 0; i < kHookPointCount; ++i)
        if (kNames[i] == name) {
            *out = static_cast<HookPoint>(i);
            return true;
        }
    return false;
}

DS4_INLINE_NAMESPACE_END

namespace engine {

namespace {
bool is_output_point(HookPoint p) { return p == HookPoint::FinalHidden || p == HookPoint::Logits; }
}  // namespace

HookDispatch::HookDispatch(int n_layer) : n_layer_(n_layer) {
    for (auto& v : any_) v.assign(static_cast<size_t>(n_layer_ + 1), false);
}

std::vector<HookDispatch::Entry>& HookDispatch::editable() {
    if (!deferring_) return entries_;
    if (!has_staged_) {
        staged_ = entries_;
        has_staged_ = true;
    }
    return staged_;
}

void HookDispatch::edited() {
    if (!deferring_) rebuild();
}

HookHandle HookDispatch::add(std::shared_ptr<Hook> hook) {
    if (!hook) detail::fail(ErrorCode::InvalidArgument, "add_hook: null hook");
    Entry e;
    e.id = next_id_;
    e.wanted.assign(static_cast<size_t>(n_layer_ + 1), {});
    for (int p = 0; p < kHookPointCount; ++p) {
        const auto hp = static_cast<HookPoint>(p);
        if (is_output_point(hp)) {
            e.wanted[0][static_cast<size_t>(p)] = hook->wants(hp, -1);
        } else {
            for (int l = 0; l < n_layer_; ++l) e.wanted[static_cast<size_t>(l + 1)][static_cast<size_t>(p)] = hook->wants(hp, l);
        }
    }
    e.hook = std::move(hook);
    editable().push_back(std::move(e));
    ++next_id_;
    edited();
    return {next_id_ - 1};
}

bool HookDispatch::remove(HookHandle h) {
    auto& list = editable();
    for (auto it = list.begin(); it != list.end(); ++it)
        if (it->id == h.id) {
            list.erase(it);
            edited();
            return true;
        }
    return false;
}

void HookDispatch::clear() {
    editable().clear();
    edited();
}

void HookDispatch::end_pass() noexcept {
    deferring_ = false;
    if (!has_staged_) return;
    entries_.swap(staged_);
    staged_.clear();  // releases the hooks removed during the pass
    has_staged_ = false;
    rebuild();
}

// Allocates nothing (any_ is sized once), so end_pass can run in a destructor.
void HookDispatch::rebuild() noexcept {
    for (auto& v : any_) std::fill(v.begin(), v.end(), false);
    for (const auto& e : entries_)
        for (size_t l = 0; l < e.wanted.size(); ++l)
            for (size_t p = 0; p < kHookPointCount; ++p)
                if (e.wanted[l][p]) any_[p][l] = true;
}

void HookDispatch::call(const ActivationView& view) const {
    const size_t l = static_cast<size_t>(view.layer + 1);
    for (const auto& e : entries_)
        if (e.wanted[l][static_cast<size_t>(view.point)]) e.hook->on_activation(view);
}

uint64_t HookDispatch::fingerprint() const {
    uint64_t h = 0;
    for (const auto& e : entries_) {
        const uint64_t f = e.hook->fingerprint();
        if (f == 0) continue;
        h = (h ^ f) * 0x100000001b3ull + 0x9E3779B97F4A7C15ull;
    }
    return h;
}

}  // namespace engine
}  // namespace ds4
