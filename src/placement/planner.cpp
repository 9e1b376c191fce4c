// The placement planner: policy resolution (the Auto rule), worker threads
// per node, per-node row ranges of every expert, bytes per node, warnings.
#include "placement/planner.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "placement/format.hpp"

namespace ds4::placement {

using detail::fail;
using detail::format;

std::vector<RowRange> split_rows(int64_t rows, int64_t granule, const std::vector<int>& weights) {
    if (rows < 0 || granule <= 0) fail(ErrorCode::InvalidArgument, "split_rows: rows %lld, granule %lld",
                                       static_cast<long long>(rows), static_cast<long long>(granule));
    const int64_t total_w = std::accumulate(weights.begin(), weights.end(), int64_t{0});
    std::vector<RowRange> out(weights.size());
    if (weights.empty()) return out;
    if (total_w <= 0) fail(ErrorCode::InvalidArgument, "split_rows: all weights are zero");
    const int64_t units = (rows + granule - 1) / granule;
    std::vector<int64_t> share(weights.size());
    int64_t given = 0;
    for (size_t k = 0; k < weights.size(); ++k) {
        if (weights[k] < 0) fail(ErrorCode::InvalidArgument, "split_rows: negative weight");
        share[k] = units * weights[k] / total_w;
        given += share[k];
    }
    // Largest remainder; a stable sort keeps ties in entry order.
    std::vector<size_t> order(weights.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return (units * weights[a]) % total_w > (units * weights[b]) % total_w;
    });
    for (size_t i = 0; given < units; ++i) {
        const size_t k = order[i % order.size()];
        if (weights[k] == 0) continue;
        ++share[k];
        ++given;
    }
    int64_t unit = 0;
    for (size_t k = 0; k < weights.size(); ++k) {
        out[k].begin = std::min(rows, unit * granule);
        unit += share[k];
        out[k].end = std::min(rows, unit * granule);
    }
    return out;
}

namespace {

constexpr size_t kPageBytes = 4096;

void validate(const PlacementRequest& r) {
    if (r.n_threads < 0) fail(ErrorCode::InvalidArgument, "placement: n_threads %d is negative", r.n_threads);
    if (r.n_expert <= 0) fail(ErrorCode::InvalidArgument, "placement: n_expert %d must be positive", r.n_expert);
    if (r.layers.empty()) fail(ErrorCode::InvalidArgument, "placement: the request lists no expert layers");
    if (r.split_granule <= 0)
        fail(ErrorCode::InvalidArgument, "placement: split_granule %lld must be positive",
             static_cast<long long>(r.split_granule));
    if (!(r.memory_fraction > 0.0 && r.memory_fraction <= 1.0))
        fail(ErrorCode::InvalidArgument, "placement: memory_fraction %g must be in (0, 1]", r.memory_fraction);
    for (size_t l = 0; l < r.layers.size(); ++l) {
        const auto& L = r.layers[l];
        const ExpertMatrixShape* m[3] = {&L.gate, &L.up, &L.down};
        const char* names[3] = {"gate", "up", "down"};
        for (int i = 0; i < 3; ++i)
            if (m[i]->rows <= 0 || m[i]->row_bytes == 0)
                fail(ErrorCode::InvalidArgument, "placement: layer %zu %s experts have %lld rows of %zu bytes", l,
                     names[i], static_cast<long long>(m[i]->rows), m[i]->row_bytes);
        if (L.gate.rows != L.up.rows)
            fail(ErrorCode::InvalidArgument, "placement: layer %zu gate has %lld rows but up has %lld", l,
                 static_cast<long long>(L.gate.rows), static_cast<long long>(L.up.rows));
    }
}

// Bytes of the expert rows given by `rows` for one layer (all experts).
uint64_t layer_bytes(const LayerExpertShapes& L, const LayerRows& rows, int n_expert) {
    const uint64_t per_expert = static_cast<uint64_t>(rows.ff.size()) * (L.gate.row_bytes + L.up.row_bytes) +
                                static_cast<uint64_t>(rows.out.size()) * L.down.row_bytes;
    return per_expert * static_cast<uint64_t>(n_expert);
}

// Spread `bytes` over `count` nodes by pages, round-robin; share of entry k.
uint64_t round_robin_share(uint64_t bytes, size_t count, size_t k, size_t page) {
    const uint64_t pages = (bytes + page - 1) / page;
    const uint64_t full = pages / count, extra = pages % count;
    uint64_t n_pages = full + (k < extra ? 1 : 0);
    uint64_t b = n_pages * page;
    // The last page may be partial: it is page number pages-1, owned by entry (pages-1) % count.
    if (pages > 0 && (pages - 1) % count == k) b -= pages * page - bytes;
    return b;
}

struct Builder {
    const Topology& topo;
    const PlacementRequest& req;
    PlacementPlan plan;
    std::vector<int> compute;  // indices into topo.nodes() with cores
    int home = 0;              // index into topo.nodes()

    void warn(std::string s) { plan.warnings.push_back(std::move(s)); }

    int home_memory_node() const {
        const auto& nodes = topo.nodes();
        if (nodes[static_cast<size_t>(home)].has_memory()) return nodes[static_cast<size_t>(home)].os_index;
        for (const auto& n : nodes)
            if (n.has_memory()) return n.os_index;
        return nodes[static_cast<size_t>(home)].os_index;
    }

    // Assign `n` threads over the compute nodes (or the home node only),
    // balancing the fraction of each node's cores in use; ties go to the home
    // node, then the lower OS index.
    std::vector<int> distribute_threads(int n, bool home_only) const {
        const auto& nodes = topo.nodes();
        std::vector<int> t(nodes.size(), 0);
        if (home_only) {
            t[static_cast<size_t>(home)] = n;
            return t;
        }
        std::vector<int> order;
        order.push_back(home);
        for (int k : compute)
            if (k != home) order.push_back(k);
        for (int i = 0; i < n; ++i) {
            int best = -1;
            for (int k : order) {
                const int cores = static_cast<int>(nodes[static_cast<size_t>(k)].cores.size());
                if (t[static_cast<size_t>(k)] >= cores) continue;
                // Compare t[k]/cores[k] < t[best]/cores[best] without division.
                if (best < 0) {
                    best = k;
                    continue;
                }
                const int cb = static_cast<int>(nodes[static_cast<size_t>(best)].cores.size());
                if (static_cast<int64_t>(t[static_cast<size_t>(k)]) * cb <
                    static_cast<int64_t>(t[static_cast<size_t>(best)]) * cores)
                    best = k;
            }
            if (best < 0) break;
            ++t[static_cast<size_t>(best)];
        }
        return t;
    }

    // Per used node (in OS order) the rows it computes, proportional to its threads.
    void assign_rows(const std::vector<int>& threads) {
        std::vector<int> weights;
        for (size_t k = 0; k < plan.nodes.size(); ++k) weights.push_back(threads[k]);
        bool starved = false;
        for (const auto& L : req.layers) {
            const auto ff = split_rows(L.gate.rows, req.split_granule, weights);
            const auto out = split_rows(L.down.rows, req.split_granule, weights);
            for (size_t k = 0; k < plan.nodes.size(); ++k) {
                if (threads[k] == 0) continue;
                plan.nodes[k].rows.push_back(LayerRows{ff[k], out[k]});
                if (ff[k].empty() || out[k].empty()) starved = true;
            }
        }
        if (starved)
            warn(format("some expert matrices have fewer %lld-row units than the %d nodes in use: a node computes no "
                        "rows of them",
                        static_cast<long long>(req.split_granule), plan.used_nodes()));
    }

    // Bytes each node would hold under `policy` (index = topology node index).
    std::vector<uint64_t> held_bytes(PlacementPolicy policy, const std::vector<int>& threads) const {
        const auto& nodes = topo.nodes();
        std::vector<uint64_t> held(nodes.size(), 0);
        const uint64_t total = req.routed_expert_bytes();
        auto mem_index = [&](size_t k) {
            return static_cast<size_t>(topo.find_node(plan.nodes[k].memory_node));
        };
        switch (policy) {
            case PlacementPolicy::Auto:
            case PlacementPolicy::SingleNode:
                held[mem_index(static_cast<size_t>(home))] += total;
                break;
            case PlacementPolicy::Interleave: {
                const auto mem = interleave_nodes(threads);
                for (size_t i = 0; i < mem.size(); ++i) held[mem[i]] += round_robin_share(total, mem.size(), i, kPageBytes);
                break;
            }
            case PlacementPolicy::Replicate: {
                std::vector<bool> has_copy(nodes.size(), false);
                for (size_t k = 0; k < nodes.size(); ++k)
                    if (threads[k] > 0) has_copy[mem_index(k)] = true;
                for (size_t k = 0; k < nodes.size(); ++k)
                    if (has_copy[k]) held[k] = total;
                break;
            }
            case PlacementPolicy::SplitExperts:
                for (size_t k = 0; k < nodes.size(); ++k) {
                    if (threads[k] == 0) continue;
                    uint64_t b = 0;
                    for (size_t l = 0; l < req.layers.size(); ++l)
                        b += layer_bytes(req.layers[l], plan.nodes[k].rows[l], req.n_expert);
                    held[mem_index(k)] += b;
                }
                break;
        }
        return held;
    }

    // Memory nodes (topology indices, OS order) that an interleaved buffer spans.
    std::vector<size_t> interleave_nodes(const std::vector<int>& threads) const {
        std::vector<size_t> mem;
        for (size_t k = 0; k < plan.nodes.size(); ++k) {
            if (threads[k] == 0) continue;
            const size_t m = static_cast<size_t>(topo.find_node(plan.nodes[k].memory_node));
            if (std::find(mem.begin(), mem.end(), m) == mem.end()) mem.push_back(m);
        }
        std::sort(mem.begin(), mem.end());
        return mem;
    }

    std::vector<uint64_t> other_held(PlacementPolicy policy, const std::vector<int>& threads) const {
        std::vector<uint64_t> held(topo.nodes().size(), 0);
        if (policy == PlacementPolicy::Interleave) {
            const auto mem = interleave_nodes(threads);
            for (size_t i = 0; i < mem.size(); ++i)
                held[mem[i]] += round_robin_share(req.other_bytes, mem.size(), i, kPageBytes);
        } else {
            held[static_cast<size_t>(topo.find_node(home_memory_node()))] += req.other_bytes;
        }
        return held;
    }

    // Nodes whose planned bytes exceed memory_fraction of their memory.
    std::vector<size_t> overfull(const std::vector<uint64_t>& experts, const std::vector<uint64_t>& other) const {
        std::vector<size_t> bad;
        const auto& nodes = topo.nodes();
        for (size_t k = 0; k < nodes.size(); ++k) {
            const uint64_t b = experts[k] + other[k];
            if (b == 0) continue;
            if (static_cast<double>(b) > req.memory_fraction * static_cast<double>(nodes[k].local_memory))
                bad.push_back(k);
        }
        return bad;
    }
};

}  // namespace

PlacementPlan make_placement_plan(const Topology& topo, const PlacementRequest& req, bool log) {
    validate(req);
    Builder b{topo, req, {}, {}, 0};
    PlacementPlan& plan = b.plan;
    const auto& nodes = topo.nodes();
    for (size_t k = 0; k < nodes.size(); ++k)
        if (nodes[k].has_cores()) b.compute.push_back(static_cast<int>(k));
    if (b.compute.empty()) fail(ErrorCode::Internal, "placement: the topology (%s) has no cores", topo.source().c_str());

    // Home node.
    if (req.home_node >= 0) {
        b.home = topo.find_node(req.home_node);
        if (b.home < 0) fail(ErrorCode::InvalidArgument, "placement: home node %d does not exist", req.home_node);
        if (!nodes[static_cast<size_t>(b.home)].has_cores())
            fail(ErrorCode::InvalidArgument, "placement: home node %d has no cores", req.home_node);
    } else {
        const int cur = topo.find_node(topo.current_node());
        b.home = (cur >= 0 && nodes[static_cast<size_t>(cur)].has_cores()) ? cur : b.compute.front();
    }
    const auto& home = nodes[static_cast<size_t>(b.home)];

    plan.requested = req.policy;
    plan.home_node = home.os_index;
    plan.n_layer = static_cast<int>(req.layers.size());
    plan.n_expert = req.n_expert;
    plan.split_granule = req.split_granule;
    plan.routed_expert_bytes = req.routed_expert_bytes();
    plan.other_bytes = req.other_bytes;
    plan.binding_supported = topo.cpubind_supported();
    plan.topology = topo.source();
    for (const auto& n : nodes) {
        PlacementNode pn;
        pn.os_index = n.os_index;
        pn.local_memory = n.local_memory;
        pn.physical_cores = static_cast<int>(n.cores.size());
        pn.smt_threads = n.n_pus();
        pn.memory_node = n.os_index;
        plan.nodes.push_back(std::move(pn));
    }
    for (size_t k = 0; k < nodes.size(); ++k)
        if (!nodes[k].has_memory()) plan.nodes[k].memory_node = b.home_memory_node();

    const int total_cores = topo.total_cores();
    const int home_cores = static_cast<int>(home.cores.size());
    const int used_compute = static_cast<int>(b.compute.size());

    // ---- policy -------------------------------------------------------------
    PlacementPolicy policy = req.policy;
    bool fit_warned = false;
    if (policy == PlacementPolicy::Auto) {
        if (used_compute == 1) {
            policy = PlacementPolicy::SingleNode;
            plan.reason = "Auto: the machine has one NUMA node with cores";
        } else if (req.n_threads > 0 && req.n_threads <= home_cores) {
            policy = PlacementPolicy::SingleNode;
            plan.reason = format("Auto: %d threads fit on the %d physical cores of home node %d", req.n_threads,
                                 home_cores, home.os_index);
        } else {
            // Try SplitExperts over the nodes the threads would use.
            const int n = req.n_threads == 0 ? total_cores : std::min(req.n_threads, total_cores);
            const auto threads = b.distribute_threads(n, false);
            b.assign_rows(threads);
            const auto bad = b.overfull(b.held_bytes(PlacementPolicy::SplitExperts, threads),
                                        b.other_held(PlacementPolicy::SplitExperts, threads));
            for (auto& pn : plan.nodes) pn.rows.clear();
            plan.warnings.clear();
            if (bad.empty()) {
                policy = PlacementPolicy::SplitExperts;
                plan.reason = format("Auto: %d threads span several nodes and each node's share of the routed experts "
                                     "fits in %.0f%% of its memory",
                                     n, req.memory_fraction * 100.0);
            } else {
                policy = PlacementPolicy::SingleNode;
                fit_warned = true;
                plan.reason = format("Auto: node %d cannot hold its share of the routed experts even when split; "
                                     "the experts stay mapped from the file",
                                     nodes[bad.front()].os_index);
                b.warn(format("the model does not fit in memory (node %d would need more than %.0f%% of its %s): "
                              "using SingleNode, weights stay mapped and are paged from the file",
                              nodes[bad.front()].os_index, req.memory_fraction * 100.0,
                              format_bytes(nodes[bad.front()].local_memory).c_str()));
            }
        }
    } else {
        plan.reason = "requested";
    }
    plan.policy = policy;
    plan.copies_experts = policy != PlacementPolicy::SingleNode;

    // ---- threads ------------------------------------------------------------
    const bool home_only = policy == PlacementPolicy::SingleNode;
    const int avail = home_only ? home_cores : total_cores;
    int n = req.n_threads == 0 ? avail : std::min(req.n_threads, avail);
    if (req.n_threads > total_cores) {
        b.warn(format("%d threads requested but the machine has %d physical cores (%d hardware threads); using one "
                      "worker per physical core",
                      req.n_threads, total_cores, topo.total_pus()));
    } else if (home_only && req.n_threads > home_cores) {
        b.warn(format("%d threads requested but SingleNode runs only on the %d physical cores of node %d",
                      req.n_threads, home_cores, home.os_index));
    }
    const auto threads = b.distribute_threads(n, home_only);
    plan.n_threads = 0;
    for (size_t k = 0; k < nodes.size(); ++k) {
        auto& pn = plan.nodes[k];
        pn.n_threads = threads[k];
        for (int i = 0; i < threads[k]; ++i) pn.cores.push_back(nodes[k].cores[static_cast<size_t>(i)].first_pu);
        plan.n_threads += threads[k];
    }
    if (!home_only && plan.used_nodes() < used_compute && req.n_threads > 0)
        b.warn(format("%s with %d threads uses only %d of the %d nodes with cores", std::string(to_string(policy)).c_str(),
                      n, plan.used_nodes(), used_compute));

    // ---- rows and bytes -----------------------------------------------------
    b.assign_rows(threads);
    const auto held = b.held_bytes(policy, threads);
    const auto other = b.other_held(policy, threads);
    for (size_t k = 0; k < nodes.size(); ++k) {
        plan.nodes[k].routed_expert_bytes = held[k];
        plan.nodes[k].other_bytes = other[k];
    }
    if (policy == PlacementPolicy::Interleave) plan.interleave_page_bytes = kPageBytes;
    if (!fit_warned) {
        for (size_t k : b.overfull(held, other)) {
            if (plan.copies_experts)
                b.warn(format("node %d would hold %s of weights but has %s of memory (limit %.0f%%); the copy may "
                              "spill to other nodes or fail",
                              nodes[k].os_index, format_bytes(held[k] + other[k]).c_str(),
                              format_bytes(nodes[k].local_memory).c_str(), req.memory_fraction * 100.0));
            else
                b.warn(format("the weights (%s) exceed %.0f%% of node %d's %s of memory; their pages will spill to "
                              "other nodes or be re-read from the file",
                              format_bytes(held[k] + other[k]).c_str(), req.memory_fraction * 100.0,
                              nodes[k].os_index, format_bytes(nodes[k].local_memory).c_str()));
        }
    }

    // ---- machine warnings ---------------------------------------------------
    if (nodes.size() > 1 && topo.numa_balancing() != 0)
        b.warn(format("automatic NUMA balancing is on (/proc/sys/kernel/numa_balancing = %d): the kernel may migrate "
                      "weight pages away from the node that reads them; disable it with "
                      "'sysctl kernel.numa_balancing=0'",
                      topo.numa_balancing()));
    for (size_t k = 0; k < nodes.size(); ++k) {
        if (!nodes[k].has_memory() && threads[k] > 0)
            b.warn(format("node %d has no local memory: its %d workers read from node %d", nodes[k].os_index,
                          threads[k], plan.nodes[k].memory_node));
        else if (!nodes[k].has_memory())
            b.warn(format("node %d has no local memory (memory-less node)", nodes[k].os_index));
        if (!nodes[k].has_cores() && nodes[k].has_memory())
            b.warn(format("node %d has %s of memory but no cores (CPU-less node); ds4 places nothing there",
                          nodes[k].os_index, format_bytes(nodes[k].local_memory).c_str()));
    }

    if (log) {
        DS4_LOG_INFO("placement: %s (%s), %d threads on %d node(s)", std::string(to_string(plan.policy)).c_str(),
                     plan.reason.c_str(), plan.n_threads, plan.used_nodes());
        for (const auto& w : plan.warnings) DS4_LOG_WARN("placement: %s", w.c_str());
    }
    return plan;
}

}  // namespace ds4::placement

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

PlacementPlan plan_placement(const PlacementRequest& request, std::string_view topology) {
    const auto topo = placement::Topology::load(topology);
    return placement::make_placement_plan(*topo, request);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
