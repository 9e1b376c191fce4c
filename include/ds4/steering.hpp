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
// Operations, for a row y, stored direction v, u = v/|v| and scale s:
//   Add      y + s v
//   Project  y + s u (u.y)       (scales the existing component by 1 + s:
//                                 s = -1 removes it, s = +1 doubles it)
//   Ablate   y - u (u.y)         (full directional ablation; the scale is ignored)
//   Clamp    y + (s|v| - u.y) u  (sets the component along u to s |v|)
//
// One scale unit for every operation and file format: the scale is
// dimensionless, positive moves towards the behaviour the direction points to
// (the positive / target examples it was extracted from), negative away, and
// 1 is one measured unit of it. Extraction stores each layer's direction with
// the length of the measured gap between the two sets' mean projections at
// that layer, so Add at scale 1 moves every steered layer by its own gap and
// Clamp at s = +1/-1 sets the component one gap above/below zero; Project is
// relative to the component already there (-1 removes it). Files keep this
// convention; the reference engine's .f32 scale r (y - r v (v.y), positive
// suppresses) is imported as s = -r and exported as r = -s.
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
    // Every format keeps the one scale unit above. A foreign format that
    // cannot hold part of the vector refuses to write it (InvalidArgument,
    // naming what it cannot hold) unless allow_lossy is set; a lossy export
    // returns, and logs as warnings, what it dropped.
    struct ExportOptions {
        bool allow_lossy = false;
    };
    // ds4 steering GGUF (format 2): site, op, scale, layer range, position
    // policy, layer map, model identity, width, method, prompt-set hashes,
    // recommended scale and notes (train_steering's report). Loads format 1
    // files, converting their project/clamp scales to this convention.
    void save(const std::string& path) const;
    static SteeringVector load(const std::string& path);
    // The reference engine's raw .f32 (n_layer x width, rows = layers 0..L-1,
    // "project at the FFN output", y - r v (v.y)) and its JSON sidecar
    // (<stem>.json: component ffn_out|attn_out, and the scale r this SDK
    // writes). Import: the sidecar's site, scale s = -r (without a sidecar or
    // a scale, the engine's defaults: ffn r = 1, attn r = 0). Export: op
    // project or ablate at attn_out/ffn_out only, unit rows (zero outside the
    // layer range), r = -s; a position policy other than all is lossy.
    static SteeringVector load_ds4_f32(const std::string& path, int n_layer, int width);
    std::vector<std::string> save_ds4_f32(const std::string& path, const ExportOptions& options) const;
    void save_ds4_f32(const std::string& path) const { save_ds4_f32(path, ExportOptions{}); }
    // llama.cpp control-vector GGUF (direction.N = add at the output of block
    // N, N >= 1, no scale). Export writes the layers in range with the scale
    // baked in; another site, op or position policy, or a direction at block
    // 0, is lossy.
    static SteeringVector load_control_vector(const std::string& path, int n_layer);
    std::vector<std::string> save_control_vector(const std::string& path, const ExportOptions& options) const;
    void save_control_vector(const std::string& path) const { save_control_vector(path, ExportOptions{}); }
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
