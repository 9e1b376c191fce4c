// Internal: the routed experts copied out of the mapped file into node
// memory, laid out as a PlacementPlan says.
//
// Layout: one NodeBuffer per copy. A copy holds, layer after layer, three
// slabs (gate, up, down); a slab holds for every expert e the rows
// [rows.begin, rows.end) of that expert's matrix, contiguous:
//
//   slab.data + e * slab.expert_stride + (r - rows.begin) * row_bytes  = row r of expert e
//
// Which copies exist:
//   SplitExperts  one per node with workers, with that node's rows (gate/up:
//                 plan rows.ff, down: plan rows.out), in its memory_node.
//   Replicate     one full copy per distinct memory_node of the nodes with
//                 workers; a memory-less node reads its memory_node's copy.
//   Interleave    one full copy whose pages are interleaved over the used
//                 memory nodes; every node reads it.
// The copies are made by the workers of the node that reads them (so pages
// are first-touched there even where binding memory is unsupported), all
// nodes at once, static partition over (layer, matrix, expert).
//
// Integration, per MoE layer and token batch (docs/placement.md):
//   phase 1  each node computes gate and up for its rows.ff of the selected
//            experts from slab(node, layer, Gate/Up) and applies the SwiGLU
//            to its slice of the FF activations (element-wise);
//   phase 2  after all nodes are done (the end of parallel_for_nodes), each
//            node computes down for its rows.out from slab(node, layer,
//            Down), reading the whole FF activation vector (all nodes'
//            slices), and writes those output rows.
// Every output value is a complete dot product computed by one worker in the
// kernel's fixed order, so the result does not depend on the policy, the
// node count or the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ds4/placement.hpp"
#include "placement/node_memory.hpp"
#include "placement/topology.hpp"
#include "placement/worker_pool.hpp"

namespace ds4::placement {

// One routed-expert tensor of one layer as mapped from the file: expert e is
// `rows` rows of `row_bytes` bytes at data + e * rows * row_bytes.
struct ExpertTensorView {
    const uint8_t* data = nullptr;
    int64_t rows = 0;
    size_t row_bytes = 0;
};

struct LayerExpertViews {
    ExpertTensorView gate, up, down;
};

enum class ExpertMatrix { Gate = 0, Up = 1, Down = 2 };

struct ExpertSlab {
    const uint8_t* data = nullptr;  // first held row of expert 0
    RowRange rows;                  // global rows held (of every expert)
    size_t row_bytes = 0;
    size_t expert_stride = 0;       // bytes from one expert's first held row to the next's

    // First held row of expert e.
    const uint8_t* expert(int64_t e) const noexcept { return data + static_cast<size_t>(e) * expert_stride; }
    // Row r (global index, rows.begin <= r < rows.end) of expert e.
    const uint8_t* row(int64_t e, int64_t r) const noexcept {
        return expert(e) + static_cast<size_t>(r - rows.begin) * row_bytes;
    }
};

class ExpertStore {
public:
    // Copies the routed experts as `plan` says (plan.copies_experts must be
    // true; `pool` must have been built from the same plan). `layers` holds
    // plan.n_layer entries whose shapes match the request the plan was made
    // from. Throws ds4::Error(InvalidArgument) on a mismatch,
    // OutOfMemory when a node buffer cannot be mapped.
    static std::unique_ptr<ExpertStore> build(std::shared_ptr<const Topology> topology, const PlacementPlan& plan,
                                              WorkerPool& pool, std::span<const LayerExpertViews> layers);

    // The slab the workers of OS node `os_index` read for (layer, matrix).
    // Throws InvalidArgument for a node without workers.
    const ExpertSlab& slab(int os_index, int layer, ExpertMatrix m) const;

    // Number of copies and their total bytes (N x the expert bytes under
    // Replicate).
    size_t n_copies() const noexcept { return copies_.size(); }
    uint64_t bytes() const noexcept;

    // Fill plan.nodes[*].measured with where the pages of each node's copy
    // are (no-op where hwloc cannot tell).
    void measure(PlacementPlan& plan, size_t max_samples = 4096) const;

private:
    struct Copy {
        NodeBuffer buffer;
        int memory_node = 0;
        int copier = 0;                      // sub-pool that copies it (-1: all workers)
        std::vector<ExpertSlab> slabs;       // [layer * 3 + matrix]
    };
    ExpertStore() = default;

    std::shared_ptr<const Topology> topology_;
    int n_layer_ = 0;
    int n_expert_ = 0;
    std::vector<Copy> copies_;
    std::vector<std::pair<int, int>> reader_copy_;  // (os_index, copy index)
};

// Where the pages of several areas are, summed (e.g. every mapped tensor
// that is not a routed expert). nullopt where hwloc cannot tell.
struct MemoryArea {
    const void* data = nullptr;
    size_t bytes = 0;
};
std::optional<PageLocations> measure_areas(const Topology& topology, std::span<const MemoryArea> areas,
                                           size_t max_samples = 4096);

}  // namespace ds4::placement
