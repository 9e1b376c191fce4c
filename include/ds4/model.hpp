// ds4 — a loaded DeepSeek-V4-Flash model.
//
// Model::load maps a GGUF file (never copying the weights), reads the
// hyperparameters from its metadata, and checks every tensor's name, shape
// and type before anything runs. A Model is immutable after load and may be
// shared by any number of Sessions on any threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ds4/backend.hpp"
#include "ds4/config.hpp"
#include "ds4/placement.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace gguf {
class File;
}
class Tokenizer;

struct ModelOptions {
    // Worker threads (0 = one per physical core of the nodes the placement
    // uses). The workers are bound to their cores and shared by the
    // sessions of this model.
    int n_threads = 0;
    // How the routed experts are laid out over NUMA nodes (ds4/placement.hpp).
    PlacementPolicy placement = PlacementPolicy::Auto;
    // The machine to plan for: "" for this one; "synthetic:<hwloc synthetic
    // description>" or "xml:<lstopo export>" to plan (and run) as if on
    // another topology, for tests and dry runs.
    std::string topology;
    // Refuse files whose hyperparameters differ from the published model
    // (off: smaller consistent test models load too).
    bool require_published_shape = false;
    // Load the tokenizer from the GGUF metadata when it is present.
    bool load_tokenizer = true;
    // Map every page of the file at load (MAP_POPULATE, as llama.cpp's
    // default prefetch): loading reads the whole file once, and decoding
    // never stalls on page faults. Turn off for quick inspection of a file.
    bool prefetch_weights = true;

    // Which backend runs what (ds4/backend.hpp). `backend` takes every
    // operation; a tensor matching a TensorOverride pattern (first match
    // wins) goes to that override's backend instead, and HotExperts moves
    // single routed experts. Operations follow their weights: dense products
    // and routed experts their matrix, mHC mixing the hc_*_fn tensor,
    // attention the layer's attn_kv tensor, the sublayer norms their norm
    // weight. "cpu" is the engine's own path.
    std::string backend = "cpu";
    std::vector<TensorOverride> tensor_overrides;
    std::vector<HotExperts> hot_experts;
};

class Model {
public:
    // Throws ds4::Error (IoError, CorruptFile, UnsupportedModel) naming the
    // file and the key or tensor that does not match.
    //
    // The file is mapped, not copied, for the Model's whole life: replace a
    // model file by writing a new file and renaming it over the old one
    // (the mapping keeps the old one alive), never by truncating or
    // rewriting it in place. A truncation before or during load is a
    // CorruptFile error (the size is checked against the file before the
    // tensors are read); after load the missing pages would be SIGBUS, which
    // no library can turn into an error.
    static std::shared_ptr<const Model> load(const std::string& path, const ModelOptions& options = {});

    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const noexcept;
    const ModelOptions& options() const noexcept;
    const std::string& path() const noexcept;
    const gguf::File& gguf() const noexcept;
    // Null when the file carries no tokenizer (or load_tokenizer was false).
    const Tokenizer* tokenizer() const noexcept;

    // Identity of the weights: a hash of the hyperparameters, the tensor
    // directory and samples of the tensor data. Snapshots and steering files
    // record it so they are never applied to another model.
    uint64_t fingerprint() const noexcept;

    struct WeightBytes {
        uint64_t routed_experts = 0;  // 3-D expert tensors (mapped, never copied)
        uint64_t other = 0;           // everything else
    };
    WeightBytes weight_bytes() const noexcept;

    // Where each weight runs: one entry per tensor (or routed expert slice)
    // that is not on the "cpu" path. Empty when everything runs on the CPU.
    struct BackendUse {
        std::string tensor;   // tensor name, "name[e]" for one routed expert
        std::string backend;  // backend spec as given in the options
    };
    const std::vector<BackendUse>& backend_assignment() const noexcept;

    // The placement decided at load: policy and reason, worker threads per
    // NUMA node, bytes per node, measured page locations, warnings.
    const PlacementPlan& placement() const noexcept;

    struct Impl;
    const Impl& impl() const noexcept { return *impl_; }

private:
    Model();
    std::unique_ptr<Impl> impl_;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
