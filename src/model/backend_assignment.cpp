#include "model/backend_assignment.hpp"

#include <cstdio>
#include <map>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "model/name_pattern.hpp"
#include "quant/quant.hpp"

namespace ds4::model {

using detail::fail;

namespace {

bool is_cpu(const std::string& spec) { return spec == "cpu" || spec == "cpu:0"; }

bool is_norm(const std::string& name) {
    return name == "output_norm.weight" ||
           (name.rfind("blk.", 0) == 0 &&
            (name.find(".attn_norm.weight") != std::string::npos || name.find(".ffn_norm.weight") != std::string::npos));
}

}  // namespace

BackendAssignment BackendAssignment::resolve(const gguf::File& file, const ModelConfig& cfg, const Weights&,
                                             const ModelOptions& o) {
    BackendAssignment a;
    struct Rule {
        NamePattern re;
        const TensorOverride* src;
        bool used = false;
    };
    std::vector<Rule> rules;
    for (const auto& ov : o.tensor_overrides) rules.push_back({NamePattern(ov.pattern), &ov});
    for (const auto& h : o.hot_experts) {
        if (h.layer < 0 || h.layer >= cfg.n_layer)
            fail(ErrorCode::InvalidArgument, "hot experts: layer %d is outside [0, %d)", h.layer, cfg.n_layer);
        for (int e : h.experts)
            if (e < 0 || e >= cfg.n_expert)
                fail(ErrorCode::InvalidArgument, "hot experts of layer %d: expert %d is outside [0, %d)", h.layer, e,
                     cfg.n_expert);
    }

    std::map<std::string, Backend*> created;  // spec -> instance (null = cpu path)
    auto backend_of = [&](const std::string& spec) -> Backend* {
        if (is_cpu(spec)) return nullptr;
        auto it = created.find(spec);
        if (it != created.end()) return it->second;
        std::shared_ptr<Backend> b = create_backend(spec);
        a.instances_.push_back(b);
        return created[spec] = b.get();
    };
    backend_of(o.backend);  // validate the default even if nothing uses it

    auto assign = [&](const gguf::TensorInfo& t, int expert, const std::string& spec, const uint8_t* data, int64_t rows,
                      int64_t cols) {
        Backend* b = backend_of(spec);
        if (!b) return;
        WeightRef ref;
        ref.name = t.name;
        ref.expert = expert;
        ref.type = t.type;
        ref.data = data;
        ref.rows = rows;
        ref.cols = cols;
        ref.row_bytes = quant::row_bytes(t.type, cols);
        b->prepare_weight(ref);
        a.by_data_[data] = Entry{b, t.name, expert};
        a.uses_.push_back({expert < 0 ? t.name : t.name + "[" + std::to_string(expert) + "]", spec});
    };

    for (const auto& t : file.tensors()) {
        std::string spec = o.backend;
        for (auto& r : rules)
            if (r.re.search(t.name)) {
                spec = r.src->backend;
                r.used = true;
                break;
            }
        if (t.type == DType::I32) continue;  // hash-routing table: read by the engine itself
        if (t.shape.size() == 1) {
            if (is_norm(t.name))
                if (Backend* b = backend_of(spec)) {
                    a.norms_[t.name] = b;
                    a.uses_.push_back({t.name, spec});
                }
            continue;
        }
        const int64_t cols = static_cast<int64_t>(t.shape[0]), rows = static_cast<int64_t>(t.shape[1]);
        if (t.shape.size() == 2) {
            assign(t, -1, spec, t.data, rows, cols);
            continue;
        }
        // Routed experts: one slice per expert; hot experts may move single slices.
        const bool routed = t.name.find("_exps.weight") != std::string::npos;
        int layer = -1;
        if (routed && std::sscanf(t.name.c_str(), "blk.%d.", &layer) != 1) layer = -1;
        const size_t slice = quant::row_bytes(t.type, cols) * static_cast<size_t>(rows);
        for (int64_t e = 0; e < static_cast<int64_t>(t.shape[2]); ++e) {
            std::string s = spec;
            for (const auto& h : o.hot_experts)
                if (h.layer == layer)
                    for (int x : h.experts)
                        if (x == e) s = h.backend;
            assign(t, static_cast<int>(e), s, t.data + static_cast<size_t>(e) * slice, rows, cols);
        }
    }
    for (const auto& r : rules)
        if (!r.used) DS4_LOG_WARN("tensor override pattern '%s' matches no tensor", r.src->pattern.c_str());
    return a;
}

}  // namespace ds4::model
