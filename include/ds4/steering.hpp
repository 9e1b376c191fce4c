// ds4 — steering vectors: one direction per layer, applied at a site with an
// operation, a scale, a layer range and a position policy.
//
// Sites (where in a layer the edit happens):
//   AttnOut      attention output before the HC post-mix (the reference
//                engine's "attn" site)
//   FfnOut       routed MoE + shared expert before the HC post-mix (the
//                reference engine's "ffn" site)
//   LayerOut     the layer's output, the same vector applied to each of the
//                HC streams (llama.cpp's control-vector site for this model)
//   LayerIn      the HC streams entering the layer (layer 0: the embedding),
//                the same vector on each stream
//   RouterLogits the router logits of the layer (steer towards or away from
//                experts; the direction is n_expert wide)
// Operations, for a row y, direction v, scale s and u = v/|v|:
//   Add      y + s v
//   Project  y - s v (v.y)       (the reference engine's edit: s = 1 removes
//                                 the component when |v| = 1, s < 0 amplifies)
//   Ablate   y - u (u.y)         (full directional ablation; the scale is ignored)
//   Clamp    y + (s - u.y) u     (sets the projection on u to s)
// Several vectors registered on one session apply in registration order; adds
// and projections do not commute, so the order matters and is kept.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ds4/hook.hpp"
#include "ds4/types.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

class Model;
class Session;

enum class SteeringSite : uint8_t { AttnOut = 0, FfnOut = 1, LayerOut = 2, RouterLogits = 3, LayerIn = 4 };
enum class SteeringOp : uint8_t { Add = 0, Project = 1, Ablate = 2, Clamp = 3 };

std::string_view steering_site_name(SteeringSite s) noexcept;  // "attn_out", "ffn_out", "layer_out", "router_logits", "layer_in"
std::string_view steering_op_name(SteeringOp o) noexcept;      // "add", "project", "ablate", "clamp"
std::optional<SteeringSite> steering_site_from_name(std::string_view name) noexcept;
std::optional<SteeringOp> steering_op_from_name(std::string_view name) noexcept;

// Which token rows an edit applies to.
struct PositionPolicy {
    enum class Kind : uint8_t {
        All,          // every row, prompt and generated
        Prompt,       // rows evaluated by prefill()
        Generated,    // rows evaluated by decode()
        Window,       // absolute positions in [begin, end)
        FinalAnswer,  // generated rows outside <think>...</think> and before any tool-call (DSML) token
    };
    Kind kind = Kind::All;
    int64_t begin = 0;
    int64_t end = std::numeric_limits<int64_t>::max();

    static PositionPolicy all() { return {}; }
    static PositionPolicy prompt() { return {Kind::Prompt}; }
    static PositionPolicy generated() { return {Kind::Generated}; }
    static PositionPolicy window(int64_t b, int64_t e) { return {Kind::Window, b, e}; }
    static PositionPolicy final_answer() { return {Kind::FinalAnswer}; }
};

// Where a vector came from; written to and read from ds4 steering files.
struct SteeringProvenance {
    std::string name;                 // e.g. "terseness"
    std::string method;               // "mean_diff", "pca", "refusal_dir", "import:ds4-f32", ...
    uint64_t model_fingerprint = 0;   // Model::fingerprint() of the model it was extracted on (0 = unknown)
    std::string model_name;
    std::vector<uint64_t> prompt_set_hashes;  // hashes of the prompt sets used
    float recommended_scale = 0;      // 0 = none
    std::map<std::string, std::string> notes;  // free-form key/value metadata
};

class SteeringVector {
public:
    // An empty vector for a model of n_layer layers and `width` values per
    // direction (n_embd, or n_expert for RouterLogits).
    SteeringVector(int n_layer, int width, SteeringSite site, SteeringOp op, float scale = 1.0f);

    int n_layer() const noexcept { return n_layer_; }
    int width() const noexcept { return width_; }
    SteeringSite site() const noexcept { return site_; }
    SteeringOp op() const noexcept { return op_; }
    float scale() const noexcept { return scale_; }
    void set_scale(float s);  // finite, else InvalidArgument

    // Directions. Throws InvalidArgument on a wrong width, an out-of-range
    // layer, NaN/Inf, or a zero vector with an operation that needs a direction.
    void set_direction(int layer, std::span<const float> v);
    void clear_direction(int layer);
    bool has_direction(int layer) const noexcept;
    std::span<const float> direction(int layer) const;  // empty if none
    std::vector<int> layers() const;                     // layers with a direction

    // Only layers in [first, last] (inclusive) are applied.
    void set_layer_range(int first, int last);
    int first_layer() const noexcept { return first_layer_; }
    int last_layer() const noexcept { return last_layer_; }
    bool applies_to_layer(int layer) const noexcept;

    PositionPolicy positions;
    SteeringProvenance provenance;

    // Identity of the edit (directions, site, op, scale, layers, positions).
    uint64_t fingerprint() const noexcept;

    // Unit-normalise every direction.
    void normalize();
    // Arithmetic on vectors of the same site and op (repeng-style): the
    // directions add layer by layer.
    SteeringVector& operator+=(const SteeringVector& other);
    SteeringVector scaled(float factor) const;  // directions multiplied
    SteeringVector negated() const { return scaled(-1.0f); }

    // Check against a model (layer count, width, identity if recorded).
    void check_compatible(const Model& model) const;

    // ---- files ----
    // ds4 steering GGUF: records site, op, scale, layer map, model identity,
    // width, method, prompt-set hashes and recommended scale.
    void save(const std::string& path) const;
    static SteeringVector load(const std::string& path);
    // The reference engine's raw .f32 (n_layer x width, rows = layers 0..L-1,
    // meaning "project at the FFN output"); import maps it to that meaning.
    static SteeringVector load_ds4_f32(const std::string& path, int n_layer, int width);
    void save_ds4_f32(const std::string& path) const;  // only for site FfnOut + op Project
    // llama.cpp control-vector GGUF (direction.N = add at the output of block N, N >= 1).
    static SteeringVector load_control_vector(const std::string& path, int n_layer);
    void save_control_vector(const std::string& path) const;  // only for site LayerOut + op Add
    // Load any of the three, detected by content; `model` supplies n_layer
    // and width for the formats that do not record them.
    static SteeringVector load_any(const std::string& path, const Model& model);

private:
    int n_layer_, width_;
    SteeringSite site_;
    SteeringOp op_;
    float scale_;
    int first_layer_ = 0, last_layer_;
    std::vector<std::vector<float>> dirs_;  // per layer; empty = none
};

// A steering vector registered on a session. The scale can change between
// decode steps (a live slider): the next evaluated token uses it.
class SteeringHandle {
public:
    SteeringHandle() = default;
    void set_scale(float s);
    float scale() const;
    void set_enabled(bool on);
    bool enabled() const;
    HookHandle hook() const { return hook_; }
    const SteeringVector& vector() const;
    bool valid() const { return static_cast<bool>(state_); }

    struct State;

private:
    friend SteeringHandle add_steering(Session&, SteeringVector);
    std::shared_ptr<State> state_;
    HookHandle hook_;
};

// Register a steering vector on a session (through its hook list). Throws if
// the vector does not fit the session's model.
SteeringHandle add_steering(Session& session, SteeringVector vector);
void remove_steering(Session& session, const SteeringHandle& handle);

// A hook applying the vector (for callers that manage hooks themselves).
std::shared_ptr<Hook> make_steering_hook(const SteeringVector& vector, const Model& model);

// Apply the vector's operation to rows of `width` values (the same code the
// hook uses; exposed for tests and tools).
void apply_steering_op(SteeringOp op, float scale, std::span<const float> direction, float* rows, int64_t n_rows,
                       int64_t width, int64_t row_stride);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
