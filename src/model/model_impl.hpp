// Model internals shared by the engine.
#pragma once

#include <memory>
#include <string>

#include "ds4/gguf.hpp"
#include "ds4/model.hpp"
#include "ds4/tokenizer.hpp"
#include "model/backend_assignment.hpp"
#include "model/weights.hpp"
#include "placement/expert_store.hpp"
#include "placement/topology.hpp"
#include "placement/worker_pool.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

struct Model::Impl {
    std::string path;
    ModelOptions options;
    gguf::File file;
    ModelConfig config;
    model::Weights weights;
    model::BackendAssignment backends;
    std::shared_ptr<const placement::Topology> topology;
    PlacementPlan placement;
    std::unique_ptr<placement::WorkerPool> pool;          // the model's worker threads
    std::unique_ptr<placement::ExpertStore> expert_store;  // routed experts in node memory (null: mapped)
    std::unique_ptr<Tokenizer> tokenizer;
    uint64_t fingerprint = 0;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
