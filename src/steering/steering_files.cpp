// Steering vector files: ds4's own GGUF format, the reference engine's raw
// .f32 and llama.cpp's control-vector GGUF. Each foreign format is imported
// with its own meaning (site, operation, layer convention), never ours.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error_internal.hpp"
#include "core/file_io.hpp"
#include "core/log_internal.hpp"
#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "ds4/steering.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;
using gguf::Value;

namespace {

constexpr const char* kArch = "ds4-steering";
// Format 2: the one scale unit (steering.hpp). Format 1 had project as
// y - s v (v.y) and clamp as y + (s - u.y) u.
constexpr uint32_t kFormatVersion = 2;
constexpr const char* kF32Format = "ds4-directional-steering-v1";
const std::string P = "ds4steer.";

std::string_view policy_name(PositionPolicy::Kind k) {
    switch (k) {
        case PositionPolicy::Kind::All: return "all";
        case PositionPolicy::Kind::Prompt: return "prompt";
        case PositionPolicy::Kind::Generated: return "generated";
        case PositionPolicy::Kind::Window: return "window";
        case PositionPolicy::Kind::FinalAnswer: return "final_answer";
    }
    return "all";
}

bool policy_from_name(std::string_view s, PositionPolicy::Kind* k) {
    for (auto c : {PositionPolicy::Kind::All, PositionPolicy::Kind::Prompt, PositionPolicy::Kind::Generated,
                   PositionPolicy::Kind::Window, PositionPolicy::Kind::FinalAnswer})
        if (policy_name(c) == s) {
            *k = c;
            return true;
        }
    return false;
}

// "direction.N" -> N, or -1 if the name has another form.
long parse_direction_index(const std::string& name) {
    const std::string pre = "direction.";
    if (name.rfind(pre, 0) != 0 || name.size() == pre.size() || name.size() > pre.size() + 9) return -1;
    long n = 0;
    for (size_t i = pre.size(); i < name.size(); ++i) {
        if (name[i] < '0' || name[i] > '9') return -1;
        n = n * 10 + (name[i] - '0');
    }
    return n;
}

std::vector<float> f32_tensor(const gguf::File& f, const gguf::TensorInfo& t, int64_t width) {
    if (t.type != DType::F32 || t.shape.size() != 1)
        fail(ErrorCode::CorruptFile, "%s: tensor '%s' must be a 1-D F32 vector (is %s %s)", f.path().c_str(),
             t.name.c_str(), std::string(dtype_name(t.type)).c_str(), t.shape_string().c_str());
    if (width >= 0 && static_cast<int64_t>(t.shape[0]) != width)
        fail(ErrorCode::InvalidArgument, "%s: tensor '%s' has %llu values, expected %lld", f.path().c_str(),
             t.name.c_str(), static_cast<unsigned long long>(t.shape[0]), static_cast<long long>(width));
    std::vector<float> v(static_cast<size_t>(t.shape[0]));
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    for (size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
            fail(ErrorCode::InvalidArgument, "%s: tensor '%s' has a non-finite value at index %zu", f.path().c_str(),
                 t.name.c_str(), i);
    return v;
}

// The model shape a caller passes to a loader: what a ds4 steering file may declare.
constexpr int kMaxLayers = 4096, kMaxWidth = 1 << 24;

void check_layer_count(const std::string& path, int n_layer) {
    if (n_layer < 1 || n_layer > kMaxLayers)
        fail(ErrorCode::InvalidArgument, "%s: cannot load for a model of %d layers (1..%d)", path.c_str(), n_layer,
             kMaxLayers);
}

void check_width(const std::string& path, int width) {
    if (width < 1 || width > kMaxWidth)
        fail(ErrorCode::InvalidArgument, "%s: cannot load for a model of width %d (1..%d)", path.c_str(), width,
             kMaxWidth);
}

bool is_zero(const std::vector<float>& v) {
    for (float x : v)
        if (x != 0) return false;
    return true;
}

// Directions' squared lengths, if they are all the same (else -1).
double common_squared_length(const SteeringVector& v) {
    double common = -1;
    for (int l : v.layers()) {
        double n = 0;
        for (float x : v.direction(l)) n += static_cast<double>(x) * x;
        if (common >= 0 && std::fabs(n - common) > 1e-5 * common) return -1;
        common = n;
    }
    return common;
}

// A format-1 vector in this convention: project's scale was -s|v|^2 of the
// unit component, clamp's target was s along the unit direction.
SteeringVector from_format1(const SteeringVector& v1, const std::string& path) {
    if (v1.op() != SteeringOp::Project && v1.op() != SteeringOp::Clamp) return v1;
    const double len2 = common_squared_length(v1);
    if (v1.op() == SteeringOp::Project && len2 < 0)
        fail(ErrorCode::UnsupportedModel,
             "%s: a format-1 project vector whose directions have different lengths has no format-2 equivalent",
             path.c_str());
    SteeringVector v2 = v1;
    v2.normalize();
    if (v1.op() == SteeringOp::Project) v2.set_scale(static_cast<float>(-v1.scale() * len2));
    return v2;
}

void report_dropped(const std::string& path, const std::vector<std::string>& dropped, bool allow_lossy,
                    const char* format) {
    if (dropped.empty()) return;
    std::string what;
    for (const auto& d : dropped) what += (what.empty() ? "" : "; ") + d;
    if (!allow_lossy)
        fail(ErrorCode::InvalidArgument, "%s: the %s format cannot hold this vector: %s (ask for a lossy export to "
             "write it anyway)", path.c_str(), format, what.c_str());
    DS4_LOG_WARN("%s: lossy %s export: %s", path.c_str(), format, what.c_str());
}

std::string policy_label(const PositionPolicy& p) {
    std::string s(policy_name(p.kind));
    if (p.kind == PositionPolicy::Kind::Window)
        s += " [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ")";
    return s;
}

std::string sidecar_path(const std::string& f32_path) {
    std::string p = f32_path;
    if (p.size() > 4 && p.compare(p.size() - 4, 4, ".f32") == 0) p.resize(p.size() - 4);
    return p + ".json";
}

struct SidecarMeaning {
    SteeringSite site = SteeringSite::FfnOut;
    double reference_scale = 1.0;  // the engine's default for a file given without a scale flag
    std::string method = "import:ds4-f32";
};

// The reference tools' JSON sidecar, if there is one.
SidecarMeaning read_sidecar(const std::string& f32_path, int n_layer, int width) {
    SidecarMeaning m;
    const std::string path = sidecar_path(f32_path);
    if (!std::filesystem::exists(path)) return m;
    const std::vector<uint8_t> text = detail::read_file(path, "steering JSON sidecar", 1u << 20);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
        fail(ErrorCode::CorruptFile, "%s: not valid JSON (%s)", path.c_str(), e.what());
    }
    auto str = [&](const char* key) -> std::string {
        if (!j.is_object() || !j.contains(key)) return {};
        if (!j[key].is_string()) fail(ErrorCode::CorruptFile, "%s: key '%s' must be a string", path.c_str(), key);
        return j[key].get<std::string>();
    };
    if (const std::string f = str("format"); !f.empty() && f != kF32Format)
        fail(ErrorCode::UnsupportedModel, "%s: format '%s' is not %s", path.c_str(), f.c_str(), kF32Format);
    if (j.is_object() && j.contains("shape") &&
        (!j["shape"].is_array() || j["shape"] != nlohmann::json::array({n_layer, width})))
        fail(ErrorCode::InvalidArgument, "%s: shape %s does not match this model's [%d, %d]", path.c_str(),
             j["shape"].dump().c_str(), n_layer, width);
    const std::string component = str("component");
    if (component == "attn_out") {
        m.site = SteeringSite::AttnOut;
        m.reference_scale = 0.0;  // the engine's attention scale defaults to 0
    } else if (!component.empty() && component != "ffn_out") {
        fail(ErrorCode::UnsupportedModel, "%s: component '%s' is neither ffn_out nor attn_out", path.c_str(),
             component.c_str());
    }
    if (j.is_object() && j.contains("scale")) {
        if (!j["scale"].is_number() || !std::isfinite(j["scale"].get<double>()))
            fail(ErrorCode::CorruptFile, "%s: key 'scale' must be a finite number", path.c_str());
        m.reference_scale = j["scale"].get<double>();
    }
    if (const std::string method = str("method"); !method.empty()) m.method = method;
    return m;
}

}  // namespace

void SteeringVector::save(const std::string& path) const {
    if (layers().empty()) fail(ErrorCode::InvalidArgument, "%s: steering vector has no direction to save", path.c_str());
    gguf::Writer w;
    w.set("general.architecture", Value::string(kArch));
    w.set("general.name", Value::string(provenance.name.empty() ? "steering" : provenance.name));
    w.set(P + "version", Value::u32(kFormatVersion));
    w.set(P + "site", Value::string(std::string(steering_site_name(site_))));
    w.set(P + "op", Value::string(std::string(steering_op_name(op_))));
    w.set(P + "scale", Value::f32(scale_));
    w.set(P + "width", Value::u32(static_cast<uint32_t>(width_)));
    w.set(P + "layer_count", Value::u32(static_cast<uint32_t>(n_layer_)));
    w.set(P + "first_layer", Value::u32(static_cast<uint32_t>(first_layer_)));
    w.set(P + "last_layer", Value::u32(static_cast<uint32_t>(last_layer_)));
    w.set(P + "positions", Value::string(std::string(policy_name(positions.kind))));
    w.set(P + "positions.begin", Value::i64(positions.begin));
    w.set(P + "positions.end", Value::i64(positions.end));
    w.set(P + "method", Value::string(provenance.method));
    w.set(P + "model_fingerprint", Value::u64(provenance.model_fingerprint));
    w.set(P + "model_name", Value::string(provenance.model_name));
    w.set(P + "recommended_scale", Value::f32(provenance.recommended_scale));
    std::vector<Value> hashes;
    for (uint64_t h : provenance.prompt_set_hashes) hashes.push_back(Value::u64(h));
    w.set(P + "prompt_set_hashes", Value::array(gguf::ValueType::U64, std::move(hashes)));
    for (const auto& [k, v] : provenance.notes) w.set(P + "note." + k, Value::string(v));
    for (int l : layers())
        w.add_tensor_f32("direction." + std::to_string(l), {static_cast<uint64_t>(width_)}, direction(l));
    w.write(path);
}

SteeringVector SteeringVector::load(const std::string& path) {
    const gguf::File f = gguf::File::open(path);
    const Value* arch = f.find("general.architecture");
    if (!arch || !arch->is_string() || arch->as_string() != kArch)
        fail(ErrorCode::UnsupportedModel,
             "%s: not a ds4 steering file (general.architecture is '%s'); use load_any for foreign formats",
             path.c_str(), arch && arch->is_string() ? arch->as_string().c_str() : "missing");
    const uint64_t version = f.get(P + "version").as_uint(P + "version");
    if (version != 1 && version != kFormatVersion)
        fail(ErrorCode::UnsupportedModel, "%s: ds4 steering format version %llu is not supported (reads 1 and %u)",
             path.c_str(), static_cast<unsigned long long>(version), kFormatVersion);
    const std::string& site_s = f.get(P + "site").as_string(P + "site");
    const std::string& op_s = f.get(P + "op").as_string(P + "op");
    const auto site = steering_site_from_name(site_s);
    const auto op = steering_op_from_name(op_s);
    if (!site) fail(ErrorCode::UnsupportedModel, "%s: unknown steering site '%s'", path.c_str(), site_s.c_str());
    if (!op) fail(ErrorCode::UnsupportedModel, "%s: unknown steering operation '%s'", path.c_str(), op_s.c_str());
    const uint64_t width = f.get(P + "width").as_uint(P + "width");
    const uint64_t n_layer = f.get(P + "layer_count").as_uint(P + "layer_count");
    if (width == 0 || width > (1u << 24) || n_layer == 0 || n_layer > 4096)
        fail(ErrorCode::CorruptFile, "%s: steering width %llu / layer count %llu out of range", path.c_str(),
             static_cast<unsigned long long>(width), static_cast<unsigned long long>(n_layer));
    const double scale = f.get(P + "scale").as_double(P + "scale");
    SteeringVector v(static_cast<int>(n_layer), static_cast<int>(width), *site, *op, static_cast<float>(scale));
    const uint64_t first = f.get(P + "first_layer").as_uint(P + "first_layer");
    const uint64_t last = f.get(P + "last_layer").as_uint(P + "last_layer");
    v.set_layer_range(static_cast<int>(std::min<uint64_t>(first, 1u << 30)), static_cast<int>(std::min<uint64_t>(last, 1u << 30)));
    PositionPolicy::Kind kind;
    const std::string& pol = f.get(P + "positions").as_string(P + "positions");
    if (!policy_from_name(pol, &kind))
        fail(ErrorCode::UnsupportedModel, "%s: unknown position policy '%s'", path.c_str(), pol.c_str());
    v.positions.kind = kind;
    v.positions.begin = f.get(P + "positions.begin").as_int(P + "positions.begin");
    v.positions.end = f.get(P + "positions.end").as_int(P + "positions.end");
    v.provenance.name = f.find("general.name") ? f.get("general.name").as_string("general.name") : "";
    v.provenance.method = f.get(P + "method").as_string(P + "method");
    v.provenance.model_fingerprint = f.get(P + "model_fingerprint").as_uint(P + "model_fingerprint");
    v.provenance.model_name = f.get(P + "model_name").as_string(P + "model_name");
    v.provenance.recommended_scale = static_cast<float>(f.get(P + "recommended_scale").as_double());
    for (const auto& h : f.get(P + "prompt_set_hashes").as_array(P + "prompt_set_hashes").items)
        v.provenance.prompt_set_hashes.push_back(h.as_uint(P + "prompt_set_hashes"));
    const std::string note = P + "note.";
    for (const auto& [k, val] : f.metadata())
        if (k.rfind(note, 0) == 0 && val.is_string()) v.provenance.notes[k.substr(note.size())] = val.as_string();
    for (const auto& t : f.tensors()) {
        const long l = parse_direction_index(t.name);
        if (l < 0 || l >= static_cast<long>(n_layer))
            fail(ErrorCode::CorruptFile, "%s: unexpected tensor '%s' (expected direction.0 .. direction.%llu)",
                 path.c_str(), t.name.c_str(), static_cast<unsigned long long>(n_layer - 1));
        v.set_direction(static_cast<int>(l), f32_tensor(f, t, static_cast<int64_t>(width)));
    }
    if (v.layers().empty()) fail(ErrorCode::CorruptFile, "%s: steering file has no direction", path.c_str());
    return version == 1 ? from_format1(v, path) : v;
}

SteeringVector SteeringVector::load_ds4_f32(const std::string& path, int n_layer, int width) {
    check_layer_count(path, n_layer);
    check_width(path, width);
    const detail::InputFile in(path, "ds4 .f32 direction file");
    const size_t want = static_cast<size_t>(n_layer) * static_cast<size_t>(width) * sizeof(float);
    if (in.size() != want)
        fail(ErrorCode::InvalidArgument,
             "%s: a ds4 .f32 direction file for this model must be %d layers x %d floats = %zu bytes, not %llu",
             path.c_str(), n_layer, width, want, static_cast<unsigned long long>(in.size()));
    const std::vector<uint8_t> bytes = in.read_all();
    // Its meaning in the reference engine: y <- y - r v (v.y) at the site, rows
    // = layers 0..L-1; this SDK's project scale is s = -r (for unit rows).
    const SidecarMeaning meaning = read_sidecar(path, n_layer, width);
    SteeringVector v(n_layer, width, meaning.site, SteeringOp::Project, static_cast<float>(-meaning.reference_scale));
    v.provenance.method = meaning.method;
    for (int l = 0; l < n_layer; ++l) {
        std::vector<float> row(static_cast<size_t>(width));
        std::memcpy(row.data(), bytes.data() + static_cast<size_t>(l) * width * sizeof(float), row.size() * sizeof(float));
        for (size_t i = 0; i < row.size(); ++i)
            if (!std::isfinite(row[i]))
                fail(ErrorCode::InvalidArgument, "%s: row %d has a non-finite value at index %zu", path.c_str(), l, i);
        if (!is_zero(row)) v.set_direction(l, row);  // a zero row leaves the layer unsteered
    }
    if (v.layers().empty()) fail(ErrorCode::InvalidArgument, "%s: every row is zero", path.c_str());
    return v;
}

std::vector<std::string> SteeringVector::save_ds4_f32(const std::string& path, const ExportOptions& options) const {
    if ((site_ != SteeringSite::FfnOut && site_ != SteeringSite::AttnOut) ||
        (op_ != SteeringOp::Project && op_ != SteeringOp::Ablate))
        fail(ErrorCode::InvalidArgument,
             "%s: the ds4 .f32 format holds a projection at ffn_out or attn_out; this vector is %s at %s",
             path.c_str(), std::string(steering_op_name(op_)).c_str(), std::string(steering_site_name(site_)).c_str());
    std::vector<std::string> dropped;
    if (positions.kind != PositionPolicy::Kind::All)
        dropped.push_back("position policy " + policy_label(positions) + " (the file applies to every token)");
    report_dropped(path, dropped, options.allow_lossy, "ds4 .f32");
    // Unit rows (the engine uses them as they are), zero rows where nothing applies.
    SteeringVector unit_rows = *this;
    unit_rows.normalize();
    std::vector<float> all(static_cast<size_t>(n_layer_) * static_cast<size_t>(width_), 0.0f);
    for (int l : layers())
        if (applies_to_layer(l)) {
            const auto u = unit_rows.direction(l);
            std::copy(u.begin(), u.end(), all.begin() + static_cast<std::ptrdiff_t>(l) * width_);
        }
    // The sidecar the reference tools write, with the scale in the engine's
    // convention (r = -s; ablate is r = 1).
    const double reference_scale = op_ == SteeringOp::Ablate ? 1.0 : -static_cast<double>(scale_);
    const nlohmann::json j = {
        {"format", kF32Format},
        {"shape", {n_layer_, width_}},
        {"component", site_ == SteeringSite::AttnOut ? "attn_out" : "ffn_out"},
        {"scale", reference_scale},
        {"method", provenance.method},
        {"model", provenance.model_name},
        {"note", "positive scale suppresses the direction; scale is the --dir-steering-ffn/--dir-steering-attn value"}};
    const std::string json = j.dump(2) + "\n";
    // Both written in full before either replaces its file.
    detail::AtomicFileWriter data(path), sidecar(sidecar_path(path));
    data.write(all.data(), all.size() * sizeof(float));
    sidecar.write(json.data(), json.size());
    data.commit();
    sidecar.commit();
    return dropped;
}

SteeringVector SteeringVector::load_control_vector(const std::string& path, int n_layer) {
    check_layer_count(path, n_layer);
    const gguf::File f = gguf::File::open(path);
    if (const Value* arch = f.find("general.architecture"); arch && arch->is_string() && arch->as_string() == kArch)
        fail(ErrorCode::InvalidArgument, "%s: this is a ds4 steering file; load it with SteeringVector::load",
             path.c_str());
    int64_t width = -1;
    std::vector<std::vector<float>> sums(static_cast<size_t>(n_layer));
    for (const auto& t : f.tensors()) {
        const long idx = parse_direction_index(t.name);
        if (idx < 0)
            fail(ErrorCode::CorruptFile, "%s: tensor '%s' is not a control-vector direction.N", path.c_str(),
                 t.name.c_str());
        if (idx == 0)
            fail(ErrorCode::CorruptFile, "%s: direction.0 is invalid in a control vector (block 0 cannot be steered)",
                 path.c_str());
        if (idx >= n_layer)
            fail(ErrorCode::InvalidArgument, "%s: %s targets block %ld, the model has %d blocks", path.c_str(),
                 t.name.c_str(), idx, n_layer);
        auto v = f32_tensor(f, t, width);
        width = static_cast<int64_t>(v.size());
        auto& s = sums[static_cast<size_t>(idx)];
        if (s.empty()) {
            s = std::move(v);
        } else {
            for (size_t i = 0; i < s.size(); ++i) s[i] += v[i];  // duplicate N add up, as in llama.cpp
        }
    }
    if (width < 0) fail(ErrorCode::CorruptFile, "%s: control vector has no direction.N tensor", path.c_str());
    // Its meaning in llama.cpp: add at the output of block N, broadcast to the HC streams.
    SteeringVector v(n_layer, static_cast<int>(width), SteeringSite::LayerOut, SteeringOp::Add, 1.0f);
    v.provenance.method = "import:llama.cpp-control-vector";
    if (const Value* hint = f.find("controlvector.model_hint"); hint && hint->is_string())
        v.provenance.model_name = hint->as_string();
    for (int l = 0; l < n_layer; ++l)
        if (!sums[static_cast<size_t>(l)].empty() && !is_zero(sums[static_cast<size_t>(l)]))
            v.set_direction(l, sums[static_cast<size_t>(l)]);
    return v;
}

std::vector<std::string> SteeringVector::save_control_vector(const std::string& path,
                                                             const ExportOptions& options) const {
    std::vector<std::string> dropped;
    if (site_ != SteeringSite::LayerOut)
        dropped.push_back("site " + std::string(steering_site_name(site_)) + " (written as layer_out)");
    if (op_ != SteeringOp::Add)
        dropped.push_back("op " + std::string(steering_op_name(op_)) + " (written as add)");
    if (positions.kind != PositionPolicy::Kind::All)
        dropped.push_back("position policy " + policy_label(positions) + " (the file applies to every token)");
    if (applies_to_layer(0)) dropped.push_back("the direction of block 0 (control vectors cannot steer it)");
    report_dropped(path, dropped, options.allow_lossy, "llama.cpp control vector");
    std::vector<int> written;
    for (int l : layers())
        if (l > 0 && applies_to_layer(l)) written.push_back(l);
    if (written.empty()) fail(ErrorCode::InvalidArgument, "%s: no direction in the layer range to write", path.c_str());
    gguf::Writer w;
    w.set("general.architecture", Value::string("controlvector"));
    w.set("controlvector.model_hint", Value::string("deepseek4"));
    w.set("controlvector.layer_count", Value::i32(static_cast<int32_t>(written.size())));
    for (int l : written) {
        std::vector<float> d(dirs_[static_cast<size_t>(l)]);
        for (float& x : d) x *= scale_;  // the file has no scale: bake it in
        w.add_tensor_f32("direction." + std::to_string(l), {static_cast<uint64_t>(width_)}, d);
    }
    w.write(path);
    return dropped;
}

SteeringVector SteeringVector::load_any(const std::string& path, const Model& model) {
    const detail::InputFile in(path, "steering vector");
    char magic[4] = {};
    if (in.size() >= 4) in.read_at(0, magic, 4);
    if (std::memcmp(magic, "GGUF", 4) == 0) {
        const gguf::File f = gguf::File::open(path);
        const Value* arch = f.find("general.architecture");
        if (arch && arch->is_string() && arch->as_string() == kArch) return load(path);
        return load_control_vector(path, model.config().n_layer);
    }
    return load_ds4_f32(path, model.config().n_layer, model.config().n_embd);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
