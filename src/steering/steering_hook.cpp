// Applying steering vectors through the session's hook list.
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include "core/error_internal.hpp"
#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {

HookPoint site_point(SteeringSite s) {
    switch (s) {
        case SteeringSite::AttnOut: return HookPoint::AttnOut;
        case SteeringSite::FfnOut: return HookPoint::FfnOut;
        case SteeringSite::LayerOut: return HookPoint::ResidPost;
        case SteeringSite::RouterLogits: return HookPoint::RouterLogits;
        case SteeringSite::LayerIn: return HookPoint::ResidPre;
    }
    return HookPoint::FfnOut;
}

// Token ids the FinalAnswer policy reacts to, looked up by text.
struct MarkerIds {
    TokenId think = -1, end_think = -1, dsml = -1, assistant = -1, eos = -1;
};

MarkerIds find_markers(const Model& model) {
    MarkerIds m;
    const gguf::Value* toks = model.gguf().find("tokenizer.ggml.tokens");
    if (!toks || !toks->is_array()) return m;
    const auto& items = toks->as_array().items;
    for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) continue;
        const std::string& s = items[i].as_string();
        const auto id = static_cast<TokenId>(i);
        if (s == "<think>") m.think = id;
        else if (s == "</think>") m.end_think = id;
        else if (s == "\xEF\xBD\x9C" "DSML" "\xEF\xBD\x9C") m.dsml = id;
        else if (s == "<\xEF\xBD\x9C" "Assistant" "\xEF\xBD\x9C>") m.assistant = id;
        else if (s == "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>") m.eos = id;
    }
    return m;
}

}  // namespace

struct SteeringHandle::State {
    SteeringVector vec;
    std::atomic<float> scale;
    std::atomic<bool> enabled{true};
    MarkerIds markers;
    int n_embd = 0;

    explicit State(SteeringVector v) : vec(std::move(v)), scale(vec.scale()) {}

    // The edit is the identity when disabled, or for add/project at scale 0.
    bool is_identity() const {
        if (!enabled.load()) return true;
        const float s = scale.load();
        return s == 0.0f && (vec.op() == SteeringOp::Add || vec.op() == SteeringOp::Project);
    }
};

namespace {

class SteeringHook final : public Hook {
public:
    explicit SteeringHook(std::shared_ptr<SteeringHandle::State> st) : st_(std::move(st)) {}

    bool wants(HookPoint point, int layer) const override {
        return point == site_point(st_->vec.site()) && st_->vec.applies_to_layer(layer);
    }

    void on_activation(const ActivationView& view) override {
        if (st_->is_identity() || !view.writable) return;
        const SteeringVector& v = st_->vec;
        const auto dir = v.direction(view.layer);
        const float scale = st_->scale.load();
        for (int64_t r = 0; r < view.rows; ++r) {
            if (!row_selected(view, r)) continue;
            if (v.site() == SteeringSite::LayerOut || v.site() == SteeringSite::LayerIn) {
                // The same vector on each HC stream of the row.
                const int64_t d = view.width / view.streams;
                apply_steering_op(v.op(), scale, dir, view.row(r), view.streams, d, d);
            } else {
                apply_steering_op(v.op(), scale, dir, view.row(r), 1, view.width, view.width);
            }
        }
    }

    uint64_t fingerprint() const override {
        if (st_->is_identity()) return 0;
        uint64_t h = st_->vec.fingerprint();
        const float s = st_->scale.load();
        uint32_t bits;
        std::memcpy(&bits, &s, 4);
        return (h ^ bits) * 0x100000001b3ull;
    }

private:
    bool row_selected(const ActivationView& view, int64_t r) const {
        const PositionPolicy& p = st_->vec.positions;
        switch (p.kind) {
            case PositionPolicy::Kind::All: return true;
            case PositionPolicy::Kind::Prompt: return view.phase == Phase::Prefill;
            case PositionPolicy::Kind::Generated: return view.phase == Phase::Decode;
            case PositionPolicy::Kind::Window: {
                const int64_t pos = view.positions[static_cast<size_t>(r)];
                return pos >= p.begin && pos < p.end;
            }
            case PositionPolicy::Kind::FinalAnswer: return view.phase == Phase::Decode && in_final_answer(view, r);
        }
        return true;
    }

    // Walk back from the row's token (inclusive) to the start of the
    // assistant turn: a tool-call marker or an open <think> means "not the
    // final answer".
    bool in_final_answer(const ActivationView& view, int64_t r) const {
        const MarkerIds& m = st_->markers;
        auto classify = [&](TokenId t) -> int {  // 1 = answer, 0 = not answer, -1 = keep looking
            if (t == m.dsml) return 0;
            if (t == m.think) return 0;
            if (t == m.end_think || t == m.assistant || t == m.eos) return 1;
            return -1;
        };
        for (int64_t i = r; i >= 0; --i) {
            const int c = classify(view.tokens[static_cast<size_t>(i)]);
            if (c >= 0) return c == 1;
        }
        for (size_t i = view.history.size(); i-- > 0;) {
            const int c = classify(view.history[i]);
            if (c >= 0) return c == 1;
        }
        return true;
    }

    std::shared_ptr<SteeringHandle::State> st_;
};

std::shared_ptr<SteeringHandle::State> make_state(SteeringVector vector, const Model& model) {
    vector.check_compatible(model);
    auto st = std::make_shared<SteeringHandle::State>(std::move(vector));
    st->n_embd = model.config().n_embd;
    if (st->vec.positions.kind == PositionPolicy::Kind::FinalAnswer) {
        st->markers = find_markers(model);
        if (st->markers.think < 0 || st->markers.end_think < 0)
            fail(ErrorCode::InvalidArgument,
                 "the final-answer position policy needs the <think>/</think> tokens, which %s does not have",
                 model.path().c_str());
    }
    return st;
}

}  // namespace

std::shared_ptr<Hook> make_steering_hook(const SteeringVector& vector, const Model& model) {
    return std::make_shared<SteeringHook>(make_state(vector, model));
}

SteeringHandle add_steering(Session& session, SteeringVector vector) {
    SteeringHandle h;
    h.state_ = make_state(std::move(vector), session.model());
    h.hook_ = session.add_hook(std::make_shared<SteeringHook>(h.state_));
    return h;
}

void remove_steering(Session& session, const SteeringHandle& handle) {
    if (!handle.valid() || !session.remove_hook(handle.hook()))
        fail(ErrorCode::NotFound, "remove_steering: this steering vector is not registered on the session");
}

void SteeringHandle::set_scale(float s) {
    if (!state_) fail(ErrorCode::InvalidArgument, "steering handle is empty");
    if (!std::isfinite(s)) fail(ErrorCode::InvalidArgument, "steering scale must be finite (got %g)", s);
    state_->scale.store(s);
}

float SteeringHandle::scale() const {
    if (!state_) fail(ErrorCode::InvalidArgument, "steering handle is empty");
    return state_->scale.load();
}

void SteeringHandle::set_enabled(bool on) {
    if (!state_) fail(ErrorCode::InvalidArgument, "steering handle is empty");
    state_->enabled.store(on);
}

bool SteeringHandle::enabled() const { return state_ && state_->enabled.load(); }

const SteeringVector& SteeringHandle::vector() const {
    if (!state_) fail(ErrorCode::InvalidArgument, "steering handle is empty");
    return state_->vec;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
