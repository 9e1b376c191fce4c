// Which backend runs each weight's operations, resolved once at model load
// from ModelOptions (default backend, tensor-name overrides, hot experts).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ds4/backend.hpp"
#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "model/weights.hpp"

namespace ds4::model {

class BackendAssignment {
public:
    struct Entry {
        Backend* backend = nullptr;
        std::string_view name;  // tensor name (points into the GGUF directory)
        int expert = -1;
    };

    static BackendAssignment resolve(const gguf::File& file, const ModelConfig& cfg, const Weights& w,
                                     const ModelOptions& options);

    // False when every operation stays on the engine's CPU path.
    bool active() const { return !by_data_.empty() || !norms_.empty(); }
    // The non-CPU backend of the weight whose data starts at `data` (a 2-D
    // tensor or one routed expert's slice), or null.
    const Entry* find(const void* data) const {
        auto it = by_data_.find(data);
        return it == by_data_.end() ? nullptr : &it->second;
    }
    // Backend of a sublayer norm weight ("blk.L.attn_norm.weight", ...), or null.
    Backend* norm(const std::string& tensor) const {
        auto it = norms_.find(tensor);
        return it == norms_.end() ? nullptr : it->second;
    }
    const std::vector<Model::BackendUse>& uses() const { return uses_; }

private:
    std::vector<std::shared_ptr<Backend>> instances_;
    std::unordered_map<const void*, Entry> by_data_;
    std::unordered_map<std::string, Backend*> norms_;
    std::vector<Model::BackendUse> uses_;
};

}  // namespace ds4::model
