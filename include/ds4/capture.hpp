// ds4 — recording activations (TransformerLens' run_with_cache, built on hooks).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ds4/hook.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Session;

// Recorded rows of one hook point: rows x width, with their positions.
struct CapturedActivation {
    int64_t width = 0;
    int streams = 1;
    std::vector<float> data;         // rows x width
    std::vector<int64_t> positions;  // per row
    int64_t rows() const { return width ? static_cast<int64_t>(data.size()) / width : 0; }
    std::span<const float> row(int64_t r) const { return {data.data() + r * width, static_cast<size_t>(width)}; }
    // Row r with the HC streams averaged (ResidPre/ResidPost), else the row.
    std::vector<float> stream_mean(int64_t r) const;
    // Mean of rows [begin, end) (stream-averaged for the HC points).
    std::vector<float> mean(int64_t begin, int64_t end) const;
    // The row holding absolute position `pos`; -1 if not recorded.
    int64_t row_of_position(int64_t pos) const;
};

// A hook that records every row at the chosen points (all layers, or the
// listed ones). Use it directly or through run_with_cache.
class ActivationRecorder : public Hook {
public:
    struct Point {
        HookPoint point;
        std::vector<int> layers;  // empty = every layer (or -1 for the output points)
    };
    explicit ActivationRecorder(std::vector<Point> points) : points_(std::move(points)) {}

    bool wants(HookPoint point, int layer) const override;
    void on_activation(const ActivationView& view) override;

    void clear() { store_.clear(); }
    // Throws NotFound if nothing was recorded there.
    const CapturedActivation& get(HookPoint point, int layer) const;
    bool has(HookPoint point, int layer) const;

private:
    std::vector<Point> points_;
    std::map<std::pair<int, int>, CapturedActivation> store_;
};

// Evaluate `tokens` on the session (appended after what it holds) with a
// recorder attached, and return the recorder.
std::shared_ptr<ActivationRecorder> run_with_cache(Session& session, std::span<const TokenId> tokens,
                                                   std::vector<ActivationRecorder::Point> points);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
