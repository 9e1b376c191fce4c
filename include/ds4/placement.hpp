// ds4 — where the weights and the worker threads of a model live on a NUMA
// machine.
//
// DeepSeek-V4-Flash is dominated by its routed experts (256 per layer). On a
// machine with several NUMA nodes (sockets, or SNC/NPS sub-nodes) decode
// speed depends on every worker reading its experts from memory attached to
// its own node. A PlacementPolicy, chosen in the model options, says how the
// routed experts are laid out; the resulting PlacementPlan (returned by
// Model::placement()) reports what was decided: the policy and why, the
// worker threads of each node (one per physical core, never two on SMT
// siblings), which bytes each node holds, the rows of every expert each node
// computes, warnings, and, after load, where the pages actually are.
//
// Policies
//   SingleNode    Everything on one node (the node of the loading thread, or
//                 PlacementRequest::home_node): workers only on its cores;
//                 weights stay mapped from the file.
//   Interleave    Routed experts copied into one buffer whose pages are
//                 spread round-robin over the used nodes; workers on every
//                 node.
//   Replicate     A full copy of the routed experts in every used node's
//                 memory (N x the expert bytes); each node computes its
//                 share of the rows from its own copy.
//   SplitExperts  Each expert's rows are divided among the used nodes in
//                 units of `split_granule` (256) rows and each node holds
//                 only its rows (1 x the expert bytes): gate and up by their
//                 output rows (the FF dimension), down by its output rows
//                 (the model width). No node ever sums another node's
//                 partial results, so results are bit-identical to a single
//                 node run (docs/placement.md, "Bit identity").
//   Auto          The rule below.
//
// The Auto rule
//   1. If the machine has one node with cores, or the caller asked for a
//      thread count that the home node's physical cores can serve
//      (0 < n_threads <= cores of the home node): SingleNode.
//   2. Otherwise the workers span several nodes. If every used node can hold
//      its SplitExperts share of the routed experts (plus, on the home node,
//      the mapped other weights) within `memory_fraction` of its local
//      memory: SplitExperts.
//   3. Otherwise the weights cannot be placed in memory at all: SingleNode,
//      with a warning (the experts stay mapped and are paged from the file).
//   Replicate and Interleave are never chosen automatically: Replicate costs
//   N x the expert memory for the same locality SplitExperts gives, and
//   Interleave makes (N-1)/N of every read remote.
//
// Other weights (attention, dense and shared-expert matrices, norms,
// embeddings) always stay mapped from the GGUF file; a file mapping cannot be
// moved with mbind, so their location is decided by the first touch. The
// plan reports where they are expected (the home node, or round-robin under
// Interleave) and, after load, where they were measured.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

enum class PlacementPolicy { Auto, SingleNode, Interleave, Replicate, SplitExperts };

// "auto", "single-node", "interleave", "replicate", "split-experts".
std::string_view to_string(PlacementPolicy policy) noexcept;
// Accepts the names above (case-insensitive, '_' or '-'); nullopt otherwise.
std::optional<PlacementPolicy> parse_placement_policy(std::string_view name) noexcept;

// One routed-expert matrix of one layer: every expert is `rows` rows of
// `row_bytes` bytes (a row is one output of the matrix product).
struct ExpertMatrixShape {
    int64_t rows = 0;      // gate/up: the expert FF width (2048); down: n_embd (4096)
    size_t row_bytes = 0;  // bytes of one row in its quantized type
    uint64_t expert_bytes() const noexcept { return static_cast<uint64_t>(rows) * row_bytes; }
};

struct LayerExpertShapes {
    ExpertMatrixShape gate, up, down;  // gate.rows must equal up.rows
};

// What the planner needs to know about the model and the caller's wishes.
struct PlacementRequest {
    PlacementPolicy policy = PlacementPolicy::Auto;
    // Worker threads in total. 0: one per physical core of the nodes the
    // policy uses. More than the physical cores available is clamped (warning).
    int n_threads = 0;
    int n_expert = 0;
    // One entry per layer with routed experts.
    std::vector<LayerExpertShapes> layers;
    // Bytes of every weight that is not a routed expert (stays mapped).
    uint64_t other_bytes = 0;
    // SplitExperts (and the per-node compute split of every policy): node
    // boundaries inside an expert are multiples of this many rows. 256 is the
    // super-block of the K-quants, so a node's FF slice quantizes to whole
    // Q8_K blocks.
    int64_t split_granule = 256;
    // OS index of the node that SingleNode uses and that holds the mapped
    // weights; -1: the node of the calling thread (the first node with cores
    // when unknown).
    int home_node = -1;
    // Auto: a node can hold a share when share <= memory_fraction x local memory.
    double memory_fraction = 0.9;

    // A request where every layer has the same expert shapes.
    static PlacementRequest uniform(int n_layer, int n_expert, ExpertMatrixShape gate, ExpertMatrixShape up,
                                    ExpertMatrixShape down, uint64_t other_bytes);
    // Bytes of one copy of all routed experts.
    uint64_t routed_expert_bytes() const noexcept;
};

struct RowRange {
    int64_t begin = 0, end = 0;  // [begin, end)
    int64_t size() const noexcept { return end - begin; }
    bool empty() const noexcept { return end <= begin; }
    friend bool operator==(const RowRange&, const RowRange&) = default;
};

// The rows of one layer's expert matrices a node computes (for every expert).
struct LayerRows {
    RowRange ff;   // rows of gate and up (the FF dimension)
    RowRange out;  // rows of down (its output: the model width)
    friend bool operator==(const LayerRows&, const LayerRows&) = default;
};

// Where the pages of a memory area are, as the kernel reports them
// (hwloc_get_area_memlocation). Large areas are sampled.
struct PageLocations {
    uint64_t bytes = 0;                               // size of the area
    std::vector<std::pair<int, uint64_t>> on_node;    // (OS node index, bytes), estimated from the samples
    uint64_t not_resident = 0;                        // bytes whose pages are not in memory (or unknown)
    size_t pages_sampled = 0;
    size_t pages_total = 0;
    // Bytes on `os_index` (0 if none).
    uint64_t bytes_on(int os_index) const noexcept;
};

struct PlacementNode {
    int os_index = 0;           // OS NUMA node number (numactl's numbering)
    uint64_t local_memory = 0;  // bytes of memory attached to the node (0: memory-less)
    int physical_cores = 0;     // physical cores of the node
    int smt_threads = 0;        // hardware threads (PUs) of the node
    // First hardware thread (OS index) of each physical core a worker runs
    // on; one worker per core.
    std::vector<int> cores;
    int n_threads = 0;  // == cores.size()
    // Node whose memory holds the experts this node's workers read:
    // os_index, except for a memory-less node, which reads from the home node
    // (or the first node with memory).
    int memory_node = 0;
    // Bytes of routed experts in this node's memory: copied into node-bound
    // memory when plan.copies_experts, otherwise expected (mapped file pages).
    uint64_t routed_expert_bytes = 0;
    // Bytes of the other (mapped) weights expected in this node's memory.
    uint64_t other_bytes = 0;
    // Per layer, the rows of every expert this node computes. Under
    // SplitExperts these are exactly the rows it holds. Empty when the node
    // runs no worker.
    std::vector<LayerRows> rows;
    // Measured location of the expert copy this node's workers read (filled
    // after load; under Interleave every node reads the same buffer).
    std::optional<PageLocations> measured;
};

struct PlacementPlan {
    PlacementPolicy requested = PlacementPolicy::Auto;
    PlacementPolicy policy = PlacementPolicy::SingleNode;  // never Auto
    std::string reason;    // why `policy` (the Auto rule step, or "requested")
    int n_threads = 0;     // workers in total
    int home_node = 0;     // OS index
    int n_layer = 0, n_expert = 0;
    int64_t split_granule = 256;
    uint64_t routed_expert_bytes = 0;  // one copy
    uint64_t other_bytes = 0;
    // True when routed experts are copied out of the file into node-bound
    // memory (Interleave, Replicate, SplitExperts).
    bool copies_experts = false;
    // Interleave: the page size of the round-robin; per-node byte counts are
    // the pages i with i % n_used == k (the kernel picks the first node).
    size_t interleave_page_bytes = 0;
    // Whether workers can be bound to their cores on this machine.
    bool binding_supported = false;
    std::string topology;  // where the topology came from ("system", "synthetic:...")
    // Every NUMA node, ordered by OS index, including nodes without workers.
    std::vector<PlacementNode> nodes;
    std::vector<std::string> warnings;
    // Measured location of the mapped other weights (filled after load).
    std::optional<PageLocations> measured_other;

    // The node with this OS index, or nullptr.
    const PlacementNode* node(int os_index) const noexcept;
    // Nodes that run at least one worker.
    int used_nodes() const noexcept;
    // Bytes of routed experts held in node memory over all nodes (N copies
    // under Replicate).
    uint64_t total_routed_bytes_held() const noexcept;
    // A human-readable multi-line summary.
    std::string describe() const;
};

// Plan without loading a model (dry runs, tools, tests). `topology`: "" or
// "system" for this machine, "synthetic:<hwloc synthetic description>" (e.g.
// "synthetic:pack:2 [numa(memory=274877906944)] core:16 pu:2") or
// "xml:<path to an lstopo XML export>". Warnings are logged as at load.
// Throws ds4::Error(InvalidArgument) for a bad request or topology.
PlacementPlan plan_placement(const PlacementRequest& request, std::string_view topology = {});

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
