#include "ds4/capture.hpp"

#include <algorithm>

#include "core/error_internal.hpp"
#include "ds4/session.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

std::vector<float> CapturedActivation::stream_mean(int64_t r) const {
    if (r < 0 || r >= rows())
        detail::fail(ErrorCode::InvalidArgument, "captured row %lld outside [0, %lld)", static_cast<long long>(r),
                     static_cast<long long>(rows()));
    const int64_t d = width / streams;
    std::vector<float> out(static_cast<size_t>(d), 0.0f);
    const float* x = data.data() + r * width;
    for (int s = 0; s < streams; ++s)
        for (int64_t i = 0; i < d; ++i) out[static_cast<size_t>(i)] += x[s * d + i] / static_cast<float>(streams);
    return out;
}

std::vector<float> CapturedActivation::mean(int64_t begin, int64_t end) const {
    if (begin < 0 || end > rows() || begin >= end)
        detail::fail(ErrorCode::InvalidArgument, "captured rows [%lld, %lld) are not inside [0, %lld)",
                     static_cast<long long>(begin), static_cast<long long>(end), static_cast<long long>(rows()));
    std::vector<double> acc(static_cast<size_t>(width / streams), 0.0);
    for (int64_t r = begin; r < end; ++r) {
        const auto v = stream_mean(r);
        for (size_t i = 0; i < v.size(); ++i) acc[i] += v[i];
    }
    std::vector<float> out(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) out[i] = static_cast<float>(acc[i] / static_cast<double>(end - begin));
    return out;
}

int64_t CapturedActivation::row_of_position(int64_t pos) const {
    const auto it = std::find(positions.begin(), positions.end(), pos);
    return it == positions.end() ? -1 : static_cast<int64_t>(it - positions.begin());
}

bool ActivationRecorder::wants(HookPoint point, int layer) const {
    if (point == HookPoint::RouterSelection) return false;  // no dense rows to record
    for (const auto& p : points_) {
        if (p.point != point) continue;
        if (p.layers.empty() || std::find(p.layers.begin(), p.layers.end(), layer) != p.layers.end()) return true;
    }
    return false;
}

void ActivationRecorder::on_activation(const ActivationView& view) {
    auto& c = store_[{static_cast<int>(view.point), view.layer}];
    c.width = view.width;
    c.streams = view.streams;
    c.data.insert(c.data.end(), view.data, view.data + view.rows * view.width);
    c.positions.insert(c.positions.end(), view.positions.begin(), view.positions.end());
}

bool ActivationRecorder::has(HookPoint point, int layer) const {
    return store_.count({static_cast<int>(point), layer}) != 0;
}

const CapturedActivation& ActivationRecorder::get(HookPoint point, int layer) const {
    const auto it = store_.find({static_cast<int>(point), layer});
    if (it == store_.end())
        detail::fail(ErrorCode::NotFound, "nothing was recorded at %s of layer %d",
                     std::string(hook_point_name(point)).c_str(), layer);
    return it->second;
}

std::shared_ptr<ActivationRecorder> run_with_cache(Session& session, std::span<const TokenId> tokens,
                                                   std::vector<ActivationRecorder::Point> points) {
    auto rec = std::make_shared<ActivationRecorder>(std::move(points));
    const HookHandle h = session.add_hook(rec);
    try {
        session.prefill(tokens);
    } catch (...) {
        session.remove_hook(h);
        throw;
    }
    session.remove_hook(h);
    return rec;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
