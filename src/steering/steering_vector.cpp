// SteeringVector: directions, validation, arithmetic, and the row operations.
#include <cmath>
#include <cstring>

#include "core/error_internal.hpp"
#include "ds4/model.hpp"
#include "ds4/steering.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {
constexpr std::string_view kSiteNames[] = {"attn_out", "ffn_out", "layer_out", "router_logits", "layer_in"};
constexpr size_t kSiteCount = 5;
constexpr std::string_view kOpNames[] = {"add", "project", "ablate", "clamp"};
}  // namespace

std::string_view steering_site_name(SteeringSite s) noexcept {
    const auto i = static_cast<size_t>(s);
    return i < kSiteCount ? kSiteNames[i] : "?";
}
std::string_view steering_op_name(SteeringOp o) noexcept { return kOpNames[static_cast<size_t>(o) & 3]; }

std::optional<SteeringSite> steering_site_from_name(std::string_view name) noexcept {
    for (size_t i = 0; i < kSiteCount; ++i)
        if (kSiteNames[i] == name) return static_cast<SteeringSite>(i);
    return std::nullopt;
}

std::optional<SteeringOp> steering_op_from_name(std::string_view name) noexcept {
    for (size_t i = 0; i < 4; ++i)
        if (kOpNames[i] == name) return static_cast<SteeringOp>(i);
    return std::nullopt;
}

SteeringVector::SteeringVector(int n_layer, int width, SteeringSite site, SteeringOp op, float scale)
    : n_layer_(n_layer), width_(width), site_(site), op_(op), scale_(scale), last_layer_(n_layer - 1) {
    if (n_layer < 1 || width < 1)
        fail(ErrorCode::InvalidArgument, "steering vector needs n_layer >= 1 and width >= 1 (got %d, %d)", n_layer,
             width);
    if (static_cast<size_t>(site) >= kSiteCount || static_cast<uint8_t>(op) > 3)
        fail(ErrorCode::InvalidArgument, "steering vector: unknown site or operation");
    set_scale(scale);
    dirs_.resize(static_cast<size_t>(n_layer));
}

void SteeringVector::set_scale(float s) {
    if (!std::isfinite(s)) fail(ErrorCode::InvalidArgument, "steering scale must be finite (got %g)", s);
    scale_ = s;
}

void SteeringVector::set_direction(int layer, std::span<const float> v) {
    if (layer < 0 || layer >= n_layer_)
        fail(ErrorCode::InvalidArgument, "steering direction for layer %d: the model has layers 0..%d", layer,
             n_layer_ - 1);
    if (static_cast<int64_t>(v.size()) != width_)
        fail(ErrorCode::InvalidArgument, "steering direction for layer %d has %zu values, expected %d", layer,
             v.size(), width_);
    double norm2 = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        if (!std::isfinite(v[i]))
            fail(ErrorCode::InvalidArgument, "steering direction for layer %d has a non-finite value at index %zu",
                 layer, i);
        norm2 += static_cast<double>(v[i]) * v[i];
    }
    if (norm2 == 0)
        fail(ErrorCode::InvalidArgument,
             "steering direction for layer %d is the zero vector (use clear_direction to steer no layer)", layer);
    dirs_[static_cast<size_t>(layer)].assign(v.begin(), v.end());
}

void SteeringVector::clear_direction(int layer) {
    if (layer < 0 || layer >= n_layer_)
        fail(ErrorCode::InvalidArgument, "steering layer %d is outside 0..%d", layer, n_layer_ - 1);
    dirs_[static_cast<size_t>(layer)].clear();
}

bool SteeringVector::has_direction(int layer) const noexcept {
    return layer >= 0 && layer < n_layer_ && !dirs_[static_cast<size_t>(layer)].empty();
}

std::span<const float> SteeringVector::direction(int layer) const {
    if (layer < 0 || layer >= n_layer_)
        fail(ErrorCode::InvalidArgument, "steering layer %d is outside 0..%d", layer, n_layer_ - 1);
    return dirs_[static_cast<size_t>(layer)];
}

std::vector<int> SteeringVector::layers() const {
    std::vector<int> out;
    for (int l = 0; l < n_layer_; ++l)
        if (has_direction(l)) out.push_back(l);
    return out;
}

void SteeringVector::set_layer_range(int first, int last) {
    if (first < 0 || last >= n_layer_ || first > last)
        fail(ErrorCode::InvalidArgument, "steering layer range [%d, %d] is not inside [0, %d]", first, last,
             n_layer_ - 1);
    first_layer_ = first;
    last_layer_ = last;
}

bool SteeringVector::applies_to_layer(int layer) const noexcept {
    return layer >= first_layer_ && layer <= last_layer_ && has_direction(layer);
}

uint64_t SteeringVector::fingerprint() const noexcept {
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&](const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    };
    const uint8_t so[2] = {static_cast<uint8_t>(site_), static_cast<uint8_t>(op_)};
    mix(so, 2);
    mix(&scale_, sizeof(scale_));
    mix(&first_layer_, sizeof(first_layer_));
    mix(&last_layer_, sizeof(last_layer_));
    mix(&positions.kind, sizeof(positions.kind));
    mix(&positions.begin, sizeof(positions.begin));
    mix(&positions.end, sizeof(positions.end));
    for (int l = 0; l < n_layer_; ++l) {
        const auto& d = dirs_[static_cast<size_t>(l)];
        mix(&l, sizeof(l));
        if (!d.empty()) mix(d.data(), d.size() * sizeof(float));
    }
    return h ? h : 1;
}

void SteeringVector::normalize() {
    for (auto& d : dirs_) {
        if (d.empty()) continue;
        double n = 0;
        for (float x : d) n += static_cast<double>(x) * x;
        const float inv = static_cast<float>(1.0 / std::sqrt(n));
        for (float& x : d) x *= inv;
    }
}

SteeringVector& SteeringVector::operator+=(const SteeringVector& o) {
    if (o.n_layer_ != n_layer_ || o.width_ != width_ || o.site_ != site_ || o.op_ != op_)
        fail(ErrorCode::InvalidArgument,
             "steering vectors can only be added with the same layer count, width, site and operation (%s/%s vs %s/%s)",
             std::string(steering_site_name(site_)).c_str(), std::string(steering_op_name(op_)).c_str(),
             std::string(steering_site_name(o.site_)).c_str(), std::string(steering_op_name(o.op_)).c_str());
    for (int l = 0; l < n_layer_; ++l) {
        const auto& b = o.dirs_[static_cast<size_t>(l)];
        if (b.empty()) continue;
        auto& a = dirs_[static_cast<size_t>(l)];
        if (a.empty()) {
            a = b;
        } else {
            for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
        }
    }
    return *this;
}

SteeringVector SteeringVector::scaled(float factor) const {
    if (!std::isfinite(factor) || factor == 0)
        fail(ErrorCode::InvalidArgument, "steering vector scaled by %g (must be finite and non-zero)", factor);
    SteeringVector out = *this;
    for (auto& d : out.dirs_)
        for (float& x : d) x *= factor;
    return out;
}

void apply_steering_op(SteeringOp op, float scale, std::span<const float> v, float* rows, int64_t n_rows,
                       int64_t width, int64_t row_stride) {
    if (static_cast<int64_t>(v.size()) != width)
        fail(ErrorCode::InvalidArgument, "steering direction has %zu values, rows have %lld", v.size(),
             static_cast<long long>(width));
    double vv = 0;
    for (float x : v) vv += static_cast<double>(x) * x;
    const double inv_norm = vv > 0 ? 1.0 / std::sqrt(vv) : 0.0;
    const double length = std::sqrt(vv);
    for (int64_t r = 0; r < n_rows; ++r) {
        float* y = rows + r * row_stride;
        if (op == SteeringOp::Add) {
            for (int64_t i = 0; i < width; ++i) y[i] += scale * v[static_cast<size_t>(i)];
            continue;
        }
        double dot = 0;  // v . y
        for (int64_t i = 0; i < width; ++i) dot += static_cast<double>(v[static_cast<size_t>(i)]) * y[i];
        const double component = dot * inv_norm;  // u . y
        double delta = 0;                          // y += delta * u
        switch (op) {
            case SteeringOp::Project: delta = scale * component; break;
            case SteeringOp::Ablate: delta = -component; break;
            case SteeringOp::Clamp: delta = scale * length - component; break;
            case SteeringOp::Add: break;
        }
        const auto coef = static_cast<float>(delta * inv_norm);  // delta * u = coef * v
        for (int64_t i = 0; i < width; ++i) y[i] += coef * v[static_cast<size_t>(i)];
    }
}

void SteeringVector::check_compatible(const Model& model) const {
    const ModelConfig& c = model.config();
    if (n_layer_ != c.n_layer)
        fail(ErrorCode::InvalidArgument, "steering vector has %d layers, the model %s has %d", n_layer_,
             model.path().c_str(), c.n_layer);
    const int want = site_ == SteeringSite::RouterLogits ? c.n_expert : c.n_embd;
    if (width_ != want)
        fail(ErrorCode::InvalidArgument, "steering vector width is %d, the model's %s width is %d", width_,
             site_ == SteeringSite::RouterLogits ? "router" : "residual", want);
    if (provenance.model_fingerprint != 0 && provenance.model_fingerprint != model.fingerprint())
        fail(ErrorCode::InvalidArgument,
             "steering vector '%s' was extracted on another model (fingerprint %016llx%s%s), not on %s (%016llx); "
             "clear provenance.model_fingerprint to apply it anyway",
             provenance.name.c_str(), static_cast<unsigned long long>(provenance.model_fingerprint),
             provenance.model_name.empty() ? "" : ", ", provenance.model_name.c_str(), model.path().c_str(),
             static_cast<unsigned long long>(model.fingerprint()));
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
