// Placement: topologies (synthetic and XML), plans for every policy, the
// worker pool, node memory and the expert store. Everything here runs on a
// single-node machine; tests that need several real NUMA nodes live in
// tests/placement (CTest label `multinode`).
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ds4/error.hpp"
#include "ds4/log.hpp"
#include "ds4/placement.hpp"
#include "placement/expert_store.hpp"
#include "placement/node_memory.hpp"
#include "placement/planner.hpp"
#include "placement/topology.hpp"
#include "placement/worker_pool.hpp"
#include "placement/moe_fixture.hpp"

using namespace ds4;
using namespace ds4::placement;

namespace {

constexpr uint64_t GiB = uint64_t{1} << 30;

std::string synthetic(int packs, int cores, int pus, uint64_t mem_per_node) {
    return "pack:" + std::to_string(packs) + " [numa(memory=" + std::to_string(mem_per_node) + ")] core:" +
           std::to_string(cores) + " pu:" + std::to_string(pus);
}

// 4 nodes as SNC: one package, 4 groups each with a node.
std::string synthetic_snc4(int cores, int pus, uint64_t mem_per_node) {
    return "pack:1 group:4 [numa(memory=" + std::to_string(mem_per_node) + ")] core:" + std::to_string(cores) +
           " pu:" + std::to_string(pus);
}

// The published model's expert shapes (Q4_K gate/up rows of 4096 columns,
// Q4_K down rows of 2048 columns), scaled by layer count.
PlacementRequest ds4_request(int n_layer = 43, PlacementPolicy policy = PlacementPolicy::Auto, int threads = 0) {
    auto r = PlacementRequest::uniform(n_layer, 256, {2048, 2304}, {2048, 2304}, {4096, 1152}, 6 * GiB);
    r.policy = policy;
    r.n_threads = threads;
    return r;
}

bool has_warning(const PlacementPlan& p, const std::string& needle) {
    for (const auto& w : p.warnings)
        if (w.find(needle) != std::string::npos) return true;
    return false;
}

// Invariants every plan must satisfy.
void check_invariants(const Topology& topo, const PlacementRequest& req, const PlacementPlan& plan) {
    SCOPED_TRACE(plan.describe());
    ASSERT_NE(plan.policy, PlacementPolicy::Auto);
    ASSERT_EQ(plan.nodes.size(), topo.nodes().size());
    EXPECT_EQ(plan.routed_expert_bytes, req.routed_expert_bytes());
    EXPECT_EQ(plan.other_bytes, req.other_bytes);
    EXPECT_EQ(plan.copies_experts, plan.policy != PlacementPolicy::SingleNode);

    // Threads: one per physical core, no SMT siblings, never more than the node has.
    int threads = 0;
    for (size_t k = 0; k < plan.nodes.size(); ++k) {
        const auto& pn = plan.nodes[k];
        const auto& tn = topo.nodes()[k];
        EXPECT_EQ(pn.os_index, tn.os_index);
        EXPECT_EQ(pn.n_threads, static_cast<int>(pn.cores.size()));
        EXPECT_LE(pn.n_threads, static_cast<int>(tn.cores.size()));
        EXPECT_EQ(pn.physical_cores, static_cast<int>(tn.cores.size()));
        std::set<int> seen;
        for (int pu : pn.cores) {
            EXPECT_TRUE(seen.insert(pu).second) << "core listed twice";
            const bool is_first_pu = std::any_of(tn.cores.begin(), tn.cores.end(),
                                                 [&](const TopoCore& c) { return c.first_pu == pu; });
            EXPECT_TRUE(is_first_pu) << "PU " << pu << " is not the first PU of a core of node " << tn.os_index;
        }
        // No two workers on SMT siblings of one core.
        std::set<int> cores_used;
        for (int pu : pn.cores)
            for (const auto& c : tn.cores)
                if (std::find(c.pus.begin(), c.pus.end(), pu) != c.pus.end()) {
                    EXPECT_TRUE(cores_used.insert(c.logical_index).second);
                }
        threads += pn.n_threads;
        if (plan.policy == PlacementPolicy::SingleNode && pn.os_index != plan.home_node) {
            EXPECT_EQ(pn.n_threads, 0);
        }
    }
    EXPECT_EQ(threads, plan.n_threads);
    EXPECT_GT(plan.n_threads, 0);
    EXPECT_LE(plan.n_threads, topo.total_cores());

    // Rows: every used node has rows for every layer; across used nodes they
    // tile each matrix exactly once, at granule boundaries.
    for (size_t l = 0; l < req.layers.size(); ++l) {
        for (int m = 0; m < 2; ++m) {
            const int64_t rows = m == 0 ? req.layers[l].gate.rows : req.layers[l].down.rows;
            std::vector<RowRange> rs;
            for (const auto& pn : plan.nodes) {
                if (pn.n_threads == 0) {
                    EXPECT_TRUE(pn.rows.empty());
                    continue;
                }
                ASSERT_EQ(pn.rows.size(), req.layers.size());
                rs.push_back(m == 0 ? pn.rows[l].ff : pn.rows[l].out);
            }
            std::vector<int> hits(static_cast<size_t>(rows), 0);
            for (const auto& r : rs) {
                if (r.empty()) continue;
                EXPECT_EQ(r.begin % req.split_granule, 0);
                EXPECT_TRUE(r.end == rows || r.end % req.split_granule == 0);
                for (int64_t i = r.begin; i < r.end; ++i) ++hits[static_cast<size_t>(i)];
            }
            for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)], 1) << "row " << i;
        }
    }

    // Bytes.
    uint64_t other = 0, held = 0;
    for (const auto& pn : plan.nodes) {
        other += pn.other_bytes;
        held += pn.routed_expert_bytes;
    }
    EXPECT_EQ(other, req.other_bytes);
    const uint64_t total = req.routed_expert_bytes();
    switch (plan.policy) {
        case PlacementPolicy::SingleNode:
        case PlacementPolicy::Interleave:
        case PlacementPolicy::SplitExperts:
            EXPECT_EQ(held, total);  // one copy
            break;
        case PlacementPolicy::Replicate: {
            std::set<int> holders;
            for (const auto& pn : plan.nodes)
                if (pn.n_threads > 0) holders.insert(pn.memory_node);
            for (const auto& pn : plan.nodes)
                EXPECT_EQ(pn.routed_expert_bytes, holders.count(pn.os_index) ? total : 0) << "node " << pn.os_index;
            EXPECT_EQ(held, total * holders.size());
            break;
        }
        case PlacementPolicy::Auto:
            break;
    }
    if (plan.policy == PlacementPolicy::SplitExperts) {
        // Each node holds exactly the bytes of its rows.
        std::map<int, uint64_t> expect;
        for (const auto& pn : plan.nodes) {
            if (pn.n_threads == 0) continue;
            for (size_t l = 0; l < req.layers.size(); ++l) {
                const auto& L = req.layers[l];
                expect[pn.memory_node] += static_cast<uint64_t>(req.n_expert) *
                                          (static_cast<uint64_t>(pn.rows[l].ff.size()) *
                                               (L.gate.row_bytes + L.up.row_bytes) +
                                           static_cast<uint64_t>(pn.rows[l].out.size()) * L.down.row_bytes);
            }
        }
        for (const auto& pn : plan.nodes) EXPECT_EQ(pn.routed_expert_bytes, expect[pn.os_index]);
    }
    EXPECT_FALSE(plan.describe().empty());
}

struct LogCapture {
    std::mutex mu;
    std::vector<std::string> lines;
    LogCapture() {
        set_log_level(LogLevel::Debug);
        set_log_sink([this](LogLevel lv, std::string_view s) {
            if (lv >= LogLevel::Warning) {
                std::lock_guard<std::mutex> l(mu);
                lines.emplace_back(s);
            }
        });
    }
    ~LogCapture() {
        set_log_sink({});
        set_log_level(LogLevel::Warning);
    }
    bool contains(const std::string& needle) {
        std::lock_guard<std::mutex> l(mu);
        for (const auto& s : lines)
            if (s.find(needle) != std::string::npos) return true;
        return false;
    }
};

}  // namespace

// ---- Topology -----------------------------------------------------------------

TEST(Topology, SyntheticTwoNodesWithSmt) {
    auto t = Topology::from_synthetic("pack:2 numa:1 core:4 pu:2");
    ASSERT_EQ(t->nodes().size(), 2u);
    EXPECT_FALSE(t->is_this_system());
    EXPECT_FALSE(t->cpubind_supported());
    EXPECT_FALSE(t->alloc_membind_supported());
    EXPECT_EQ(t->total_cores(), 8);
    EXPECT_EQ(t->total_pus(), 16);
    for (int k = 0; k < 2; ++k) {
        const auto& n = t->nodes()[static_cast<size_t>(k)];
        EXPECT_EQ(n.os_index, k);
        EXPECT_GT(n.local_memory, 0u);
        ASSERT_EQ(n.cores.size(), 4u);
        for (size_t c = 0; c < 4; ++c) {
            EXPECT_EQ(n.cores[c].pus.size(), 2u);
            EXPECT_EQ(n.cores[c].first_pu, k * 8 + static_cast<int>(c) * 2);
            EXPECT_EQ(n.cores[c].pus[1], n.cores[c].first_pu + 1);
        }
    }
    EXPECT_EQ(t->find_node(1), 1);
    EXPECT_EQ(t->find_node(7), -1);
    EXPECT_EQ(t->current_node(), -1);
    EXPECT_EQ(t->numa_balancing(), 0);
}

TEST(Topology, SyntheticFourNodesAndMemorySizes) {
    auto t = Topology::from_synthetic(synthetic_snc4(3, 1, 64 * GiB));
    ASSERT_EQ(t->nodes().size(), 4u);
    for (const auto& n : t->nodes()) {
        EXPECT_EQ(n.local_memory, 64 * GiB);
        EXPECT_EQ(n.cores.size(), 3u);
    }
}

TEST(Topology, XmlRoundTrip) {
    auto a = Topology::from_synthetic(synthetic(2, 2, 2, 8 * GiB));
    const std::string xml = a->to_xml();
    EXPECT_NE(xml.find("NUMANode"), std::string::npos);
    auto b = Topology::from_xml_string(xml);
    ASSERT_EQ(b->nodes().size(), a->nodes().size());
    for (size_t k = 0; k < a->nodes().size(); ++k) {
        EXPECT_EQ(b->nodes()[k].os_index, a->nodes()[k].os_index);
        EXPECT_EQ(b->nodes()[k].local_memory, a->nodes()[k].local_memory);
        ASSERT_EQ(b->nodes()[k].cores.size(), a->nodes()[k].cores.size());
        for (size_t c = 0; c < a->nodes()[k].cores.size(); ++c)
            EXPECT_EQ(b->nodes()[k].cores[c].pus, a->nodes()[k].cores[c].pus);
    }
    EXPECT_FALSE(b->is_this_system());
    EXPECT_EQ(b->source(), "xml");
}

TEST(Topology, CpuLessNodeGetsNoCores) {
    // A machine-level node (think CXL / HBM) next to two package nodes: every
    // core picks its more local package node.
    auto t = Topology::from_synthetic("[numa(memory=1000000000)] pack:2 [numa(memory=2000000000)] core:2 pu:1");
    ASSERT_EQ(t->nodes().size(), 3u);
    int cpuless = 0;
    for (const auto& n : t->nodes()) {
        if (n.cores.empty()) {
            ++cpuless;
            EXPECT_EQ(n.local_memory, 1000000000u);
        } else {
            EXPECT_EQ(n.cores.size(), 2u);
        }
    }
    EXPECT_EQ(cpuless, 1);
    EXPECT_EQ(t->total_cores(), 4);
}

TEST(Topology, TwoNodesSameLocalityCoresGoToFirst) {
    auto t = Topology::from_synthetic("pack:1 [numa(memory=1000000000)] [numa(memory=500000000)] core:2 pu:1");
    ASSERT_EQ(t->nodes().size(), 2u);
    EXPECT_EQ(t->nodes()[0].cores.size(), 2u);
    EXPECT_TRUE(t->nodes()[1].cores.empty());
}

TEST(Topology, InvalidInputsThrow) {
    EXPECT_THROW(Topology::from_synthetic("this is not a topology"), Error);
    EXPECT_THROW(Topology::from_xml_string("<nope/>"), Error);
    EXPECT_THROW(Topology::from_xml_file("/nonexistent/topology.xml"), Error);
}

TEST(Topology, SystemLoads) {
    auto t = Topology::load_system();
    EXPECT_TRUE(t->is_this_system());
    EXPECT_GE(t->total_cores(), 1);
    EXPECT_GE(t->total_pus(), t->total_cores());
    EXPECT_EQ(t->source(), "system");
    const int cur = t->current_node();
    if (cur >= 0) {
        EXPECT_GE(t->find_node(cur), 0);
    }
}

TEST(Topology, LoadBySpec) {
    EXPECT_TRUE(Topology::load("")->is_this_system());
    EXPECT_TRUE(Topology::load("system")->is_this_system());
    auto s = Topology::load("synthetic:pack:2 numa:1 core:2 pu:1");
    EXPECT_EQ(s->nodes().size(), 2u);
    EXPECT_EQ(s->source(), "synthetic:pack:2 numa:1 core:2 pu:1");
    EXPECT_THROW(Topology::load("xml:/nonexistent.xml"), Error);
    EXPECT_THROW(Topology::load("numa:2"), Error);
}

TEST(Topology, NumaBalancingOverride) {
    TopologyOptions o;
    o.numa_balancing = 1;
    auto t = Topology::from_synthetic(synthetic(2, 2, 1, 8 * GiB), o);
    EXPECT_EQ(t->numa_balancing(), 1);
}

// ---- split_rows ---------------------------------------------------------------

TEST(PlacementSplit, RowsTileAtGranule) {
    for (int64_t rows : {1, 255, 256, 257, 2048, 4096, 4100, 10000}) {
        for (const std::vector<int>& w : std::vector<std::vector<int>>{{1}, {1, 1}, {3, 1}, {2, 0, 2}, {8, 8, 8, 8}, {5, 7, 1}}) {
            const auto r = split_rows(rows, 256, w);
            ASSERT_EQ(r.size(), w.size());
            int64_t at = 0;
            for (size_t k = 0; k < r.size(); ++k) {
                EXPECT_EQ(r[k].begin, at);
                EXPECT_GE(r[k].end, r[k].begin);
                if (w[k] == 0) {
                    EXPECT_TRUE(r[k].empty());
                }
                if (r[k].end != rows) {
                    EXPECT_EQ(r[k].end % 256, 0);
                }
                at = r[k].end;
            }
            EXPECT_EQ(at, rows);
        }
    }
}

TEST(PlacementSplit, ProportionalToWeights) {
    auto r = split_rows(4096, 256, {3, 1});  // 16 units -> 12 + 4
    EXPECT_EQ(r[0], (RowRange{0, 3072}));
    EXPECT_EQ(r[1], (RowRange{3072, 4096}));
    r = split_rows(2048, 256, {1, 1, 1});  // 8 units -> 3 + 3 + 2 (remainder to the earlier ones)
    EXPECT_EQ(r[0].size(), 768);
    EXPECT_EQ(r[1].size(), 768);
    EXPECT_EQ(r[2].size(), 512);
    EXPECT_THROW(split_rows(10, 0, {1}), Error);
    EXPECT_THROW(split_rows(10, 256, {0, 0}), Error);
}

// ---- Plans ----------------------------------------------------------------------

TEST(PlacementPolicyNames, RoundTrip) {
    for (auto p : {PlacementPolicy::Auto, PlacementPolicy::SingleNode, PlacementPolicy::Interleave,
                   PlacementPolicy::Replicate, PlacementPolicy::SplitExperts}) {
        auto q = parse_placement_policy(to_string(p));
        ASSERT_TRUE(q.has_value());
        EXPECT_EQ(*q, p);
    }
    EXPECT_EQ(parse_placement_policy("Split_Experts"), PlacementPolicy::SplitExperts);
    EXPECT_EQ(parse_placement_policy("singlenode"), PlacementPolicy::SingleNode);
    EXPECT_FALSE(parse_placement_policy("mirror").has_value());
}

TEST(PlacementPlan, EveryPolicyOnEveryTopology) {
    const std::vector<std::string> topos = {
        synthetic(1, 8, 2, 512 * GiB),    // 1 node with SMT
        synthetic(2, 8, 2, 256 * GiB),    // 2 nodes with SMT
        synthetic_snc4(4, 2, 128 * GiB),  // 4 nodes (SNC-like)
        synthetic(2, 6, 1, 256 * GiB),    // 2 nodes without SMT
    };
    for (const auto& desc : topos) {
        auto topo = Topology::from_synthetic(desc);
        for (auto policy : {PlacementPolicy::Auto, PlacementPolicy::SingleNode, PlacementPolicy::Interleave,
                            PlacementPolicy::Replicate, PlacementPolicy::SplitExperts}) {
            for (int threads : {0, 1, 3, 5, 16, 100}) {
                SCOPED_TRACE(desc + " " + std::string(to_string(policy)) + " threads " + std::to_string(threads));
                const auto req = ds4_request(43, policy, threads);
                const auto plan = make_placement_plan(*topo, req, false);
                if (policy != PlacementPolicy::Auto) {
                    EXPECT_EQ(plan.policy, policy);
                    EXPECT_EQ(plan.reason, "requested");
                }
                check_invariants(*topo, req, plan);
                if (threads == 0 && plan.policy != PlacementPolicy::SingleNode) {
                    EXPECT_EQ(plan.n_threads, topo->total_cores());
                }
                if (threads > topo->total_cores()) {
                    EXPECT_TRUE(has_warning(plan, "physical cores"));
                }
            }
        }
    }
}

TEST(PlacementPlan, ThreadsPerNodeEqualPhysicalCores) {
    auto topo = Topology::from_synthetic(synthetic(2, 8, 2, 256 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::SplitExperts), false);
    ASSERT_EQ(plan.nodes.size(), 2u);
    for (const auto& n : plan.nodes) {
        EXPECT_EQ(n.n_threads, 8);
        EXPECT_EQ(n.physical_cores, 8);
        EXPECT_EQ(n.smt_threads, 16);
        // First PUs of cores only: even numbers.
        for (int pu : n.cores) EXPECT_EQ(pu % 2, 0);
    }
    EXPECT_EQ(plan.n_threads, 16);
}

TEST(PlacementPlan, ThreadsSpreadEvenlyAndHomeFirst) {
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 256 * GiB));
    auto req = ds4_request(4, PlacementPolicy::SplitExperts, 5);
    req.home_node = 1;
    const auto plan = make_placement_plan(*topo, req, false);
    EXPECT_EQ(plan.home_node, 1);
    EXPECT_EQ(plan.node(1)->n_threads, 3);
    EXPECT_EQ(plan.node(0)->n_threads, 2);
    // Rows follow the threads: node 1 computes 3/5 of the units.
    EXPECT_EQ(plan.node(0)->rows[0].ff.size() + plan.node(1)->rows[0].ff.size(), 2048);
    EXPECT_GT(plan.node(1)->rows[0].ff.size(), plan.node(0)->rows[0].ff.size());
}

TEST(PlacementPlan, ReplicateHoldsFullCopyPerNode) {
    auto topo = Topology::from_synthetic(synthetic_snc4(4, 1, 256 * GiB));
    const auto req = ds4_request(43, PlacementPolicy::Replicate);
    const auto plan = make_placement_plan(*topo, req, false);
    for (const auto& n : plan.nodes) EXPECT_EQ(n.routed_expert_bytes, req.routed_expert_bytes());
    EXPECT_EQ(plan.total_routed_bytes_held(), 4 * req.routed_expert_bytes());
    EXPECT_TRUE(plan.copies_experts);
}

TEST(PlacementPlan, SplitExpertsHoldsOneCopy) {
    auto topo = Topology::from_synthetic(synthetic_snc4(4, 1, 256 * GiB));
    const auto req = ds4_request(43, PlacementPolicy::SplitExperts);
    const auto plan = make_placement_plan(*topo, req, false);
    EXPECT_EQ(plan.total_routed_bytes_held(), req.routed_expert_bytes());
    // 2048 FF rows = 8 units over 4 nodes; 4096 output rows = 16 units.
    for (size_t k = 0; k < 4; ++k) {
        EXPECT_EQ(plan.nodes[k].rows[0].ff, (RowRange{static_cast<int64_t>(k) * 512, static_cast<int64_t>(k + 1) * 512}));
        EXPECT_EQ(plan.nodes[k].rows[0].out, (RowRange{static_cast<int64_t>(k) * 1024, static_cast<int64_t>(k + 1) * 1024}));
        EXPECT_EQ(plan.nodes[k].routed_expert_bytes, req.routed_expert_bytes() / 4);
    }
}

TEST(PlacementPlan, InterleaveRoundRobinByPage) {
    auto topo = Topology::from_synthetic(synthetic(2, 2, 1, 256 * GiB));
    auto req = ds4_request(1, PlacementPolicy::Interleave);
    req.other_bytes = 3 * 4096 + 100;  // 4 pages: 2 + 2, the last one partial
    const auto plan = make_placement_plan(*topo, req, false);
    EXPECT_EQ(plan.interleave_page_bytes, 4096u);
    EXPECT_EQ(plan.nodes[0].other_bytes, 2 * 4096u);
    EXPECT_EQ(plan.nodes[1].other_bytes, 4096u + 100u);
    const uint64_t total = req.routed_expert_bytes();
    EXPECT_EQ(plan.nodes[0].routed_expert_bytes + plan.nodes[1].routed_expert_bytes, total);
    EXPECT_LE(plan.nodes[0].routed_expert_bytes - plan.nodes[1].routed_expert_bytes, 4096u);
}

TEST(PlacementPlan, SingleNodeUsesHomeOnly) {
    auto topo = Topology::from_synthetic(synthetic(2, 4, 2, 256 * GiB));
    auto req = ds4_request(43, PlacementPolicy::SingleNode, 6);
    req.home_node = 1;
    const auto plan = make_placement_plan(*topo, req, false);
    EXPECT_EQ(plan.node(1)->n_threads, 4);
    EXPECT_EQ(plan.node(0)->n_threads, 0);
    EXPECT_EQ(plan.node(1)->routed_expert_bytes, req.routed_expert_bytes());
    EXPECT_EQ(plan.node(1)->other_bytes, req.other_bytes);
    EXPECT_FALSE(plan.copies_experts);
    EXPECT_TRUE(has_warning(plan, "SingleNode runs only on the 4 physical cores of node 1"));
    EXPECT_EQ(plan.node(1)->rows[0].ff, (RowRange{0, 2048}));
}

TEST(PlacementAuto, OneNodeIsSingleNode) {
    auto topo = Topology::from_synthetic(synthetic(1, 8, 2, 512 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(), false);
    EXPECT_EQ(plan.requested, PlacementPolicy::Auto);
    EXPECT_EQ(plan.policy, PlacementPolicy::SingleNode);
    EXPECT_NE(plan.reason.find("one NUMA node"), std::string::npos);
    EXPECT_EQ(plan.n_threads, 8);
}

TEST(PlacementAuto, SeveralNodesThatFitSplit) {
    for (const auto& desc : {synthetic(2, 8, 2, 256 * GiB), synthetic_snc4(4, 2, 128 * GiB)}) {
        auto topo = Topology::from_synthetic(desc);
        const auto plan = make_placement_plan(*topo, ds4_request(), false);
        EXPECT_EQ(plan.policy, PlacementPolicy::SplitExperts) << desc;
        EXPECT_EQ(plan.n_threads, topo->total_cores());
        EXPECT_NE(plan.reason.find("fits"), std::string::npos);
        EXPECT_TRUE(plan.warnings.empty());
    }
}

TEST(PlacementAuto, FewThreadsStayOnHomeNode) {
    auto topo = Topology::from_synthetic(synthetic(2, 8, 2, 256 * GiB));
    auto plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::Auto, 8), false);
    EXPECT_EQ(plan.policy, PlacementPolicy::SingleNode);
    EXPECT_EQ(plan.n_threads, 8);
    plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::Auto, 9), false);
    EXPECT_EQ(plan.policy, PlacementPolicy::SplitExperts);
    EXPECT_EQ(plan.n_threads, 9);
}

TEST(PlacementAuto, TooLargeStaysMapped) {
    // 155 GB of experts on 2 x 32 GiB: does not fit even split.
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 32 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(), false);
    EXPECT_EQ(plan.policy, PlacementPolicy::SingleNode);
    EXPECT_FALSE(plan.copies_experts);
    EXPECT_TRUE(has_warning(plan, "does not fit"));
}

TEST(PlacementAuto, NeverReplicatesOrInterleaves) {
    // Even with memory for many copies, Auto splits.
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 4096 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(), false);
    EXPECT_EQ(plan.policy, PlacementPolicy::SplitExperts);
}

TEST(PlacementWarnings, TooManyThreads) {
    auto topo = Topology::from_synthetic(synthetic(2, 4, 2, 256 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::SplitExperts, 16), false);
    EXPECT_EQ(plan.n_threads, 8);
    EXPECT_TRUE(has_warning(plan, "16 threads requested but the machine has 8 physical cores (16 hardware threads)"));
}

TEST(PlacementWarnings, NumaBalancing) {
    TopologyOptions o;
    o.numa_balancing = 1;
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 256 * GiB), o);
    EXPECT_TRUE(has_warning(make_placement_plan(*topo, ds4_request(), false), "numa_balancing"));
    // Irrelevant (and not reported) on one node.
    auto one = Topology::from_synthetic(synthetic(1, 4, 1, 256 * GiB), o);
    EXPECT_FALSE(has_warning(make_placement_plan(*one, ds4_request(), false), "numa_balancing"));
}

TEST(PlacementWarnings, MemoryLessNode) {
    // Node 1 keeps its cores but loses its memory.
    auto base = Topology::from_synthetic(synthetic(2, 2, 1, 256 * GiB));
    std::string xml = base->to_xml();
    const std::string mem = "local_memory=\"" + std::to_string(256 * GiB) + "\"";
    const size_t second = xml.find(mem, xml.find(mem) + 1);
    ASSERT_NE(second, std::string::npos);
    xml.erase(second, mem.size());
    auto topo = Topology::from_xml_string(xml);
    ASSERT_EQ(topo->nodes().size(), 2u);
    ASSERT_EQ(topo->nodes()[1].local_memory, 0u);
    ASSERT_EQ(topo->nodes()[1].cores.size(), 2u);

    for (auto policy : {PlacementPolicy::SplitExperts, PlacementPolicy::Replicate, PlacementPolicy::Interleave}) {
        auto req = ds4_request(43, policy);
        req.home_node = 0;
        const auto plan = make_placement_plan(*topo, req, false);
        check_invariants(*topo, req, plan);
        EXPECT_TRUE(has_warning(plan, "node 1 has no local memory")) << to_string(policy);
        EXPECT_EQ(plan.node(1)->memory_node, 0);
        EXPECT_EQ(plan.node(1)->routed_expert_bytes, 0u);
        EXPECT_EQ(plan.node(0)->routed_expert_bytes, req.routed_expert_bytes());  // one copy, all on node 0
    }
}

TEST(PlacementWarnings, CpuLessNode) {
    auto topo = Topology::from_synthetic("[numa(memory=1000000000)] pack:2 [numa(memory=274877906944)] core:2 pu:1");
    const auto req = ds4_request(43, PlacementPolicy::SplitExperts);
    const auto plan = make_placement_plan(*topo, req, false);
    check_invariants(*topo, req, plan);
    EXPECT_TRUE(has_warning(plan, "no cores (CPU-less node)"));
    for (const auto& n : plan.nodes)
        if (n.physical_cores == 0) {
            EXPECT_EQ(n.routed_expert_bytes, 0u);
        }
}

TEST(PlacementWarnings, ExplicitPolicyThatDoesNotFit) {
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 100 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::Replicate), false);
    EXPECT_EQ(plan.policy, PlacementPolicy::Replicate);
    EXPECT_TRUE(has_warning(plan, "would hold"));
}

TEST(PlacementWarnings, LoggedThroughTheSink) {
    LogCapture cap;
    auto topo = Topology::from_synthetic(synthetic(2, 4, 1, 256 * GiB));
    (void)make_placement_plan(*topo, ds4_request(43, PlacementPolicy::SplitExperts, 64));
    EXPECT_TRUE(cap.contains("64 threads requested"));
}

TEST(PlacementPlan, SmallMatricesLeaveNodesIdle) {
    auto topo = Topology::from_synthetic(synthetic_snc4(2, 1, 8 * GiB));
    auto req = PlacementRequest::uniform(2, 8, {300, 64}, {300, 64}, {512, 32}, 1000);
    req.policy = PlacementPolicy::SplitExperts;
    const auto plan = make_placement_plan(*topo, req, false);
    check_invariants(*topo, req, plan);
    EXPECT_TRUE(has_warning(plan, "fewer 256-row units"));
}

TEST(PlacementPlan, InvalidRequestsThrow) {
    auto topo = Topology::from_synthetic(synthetic(2, 2, 1, 8 * GiB));
    auto bad = ds4_request(2);
    bad.layers[1].up.rows = 1000;
    EXPECT_THROW(make_placement_plan(*topo, bad, false), Error);
    auto none = ds4_request(2);
    none.layers.clear();
    EXPECT_THROW(make_placement_plan(*topo, none, false), Error);
    auto home = ds4_request(2);
    home.home_node = 5;
    EXPECT_THROW(make_placement_plan(*topo, home, false), Error);
    auto neg = ds4_request(2);
    neg.n_threads = -1;
    EXPECT_THROW(make_placement_plan(*topo, neg, false), Error);
    try {
        make_placement_plan(*topo, bad, false);
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    }
}

TEST(PlacementPlan, DescribeMentionsTheDecision) {
    auto topo = Topology::from_synthetic(synthetic(2, 4, 2, 256 * GiB));
    auto plan = make_placement_plan(*topo, ds4_request(43, PlacementPolicy::Auto, 100), false);
    PageLocations m;
    m.bytes = 1000;
    m.on_node = {{0, 900}};
    m.not_resident = 100;
    m.pages_total = m.pages_sampled = 1;
    plan.nodes[0].measured = m;
    const std::string d = plan.describe();
    EXPECT_NE(d.find("placement: split-experts (Auto:"), std::string::npos) << d;
    EXPECT_NE(d.find("node 0:"), std::string::npos);
    EXPECT_NE(d.find("node 1:"), std::string::npos);
    EXPECT_NE(d.find("4 workers on cores (first PU) 0,2,4,6"), std::string::npos) << d;
    EXPECT_NE(d.find("gate/up rows [0, 1024), down rows [0, 2048) of every expert in every layer"), std::string::npos)
        << d;
    EXPECT_NE(d.find("measured: 900 B on node 0, 100 B not resident"), std::string::npos) << d;
    EXPECT_NE(d.find("warnings:"), std::string::npos);
    EXPECT_EQ(m.bytes_on(0), 900u);
    EXPECT_EQ(m.bytes_on(3), 0u);
}

TEST(PlacementPlan, PublicDryRun) {
    const auto plan = plan_placement(ds4_request(43, PlacementPolicy::Auto),
                                     "synthetic:" + synthetic_snc4(4, 2, 128 * GiB));
    EXPECT_EQ(plan.policy, PlacementPolicy::SplitExperts);
    EXPECT_EQ(plan.used_nodes(), 4);
    EXPECT_EQ(plan.n_threads, 16);
    const auto here = plan_placement(ds4_request(2, PlacementPolicy::SingleNode));
    EXPECT_EQ(here.topology, "system");
    EXPECT_THROW(plan_placement(ds4_request(2), "bogus"), Error);
}

TEST(PlacementPlan, SystemTopology) {
    auto topo = Topology::load_system();
    auto req = ds4_request(4);
    for (auto policy : {PlacementPolicy::Auto, PlacementPolicy::SingleNode, PlacementPolicy::Interleave,
                        PlacementPolicy::Replicate, PlacementPolicy::SplitExperts}) {
        req.policy = policy;
        const auto plan = make_placement_plan(*topo, req, false);
        check_invariants(*topo, req, plan);
        EXPECT_EQ(plan.binding_supported, topo->cpubind_supported());
    }
}

// ---- Worker pool ------------------------------------------------------------------

namespace {
const std::vector<std::vector<int>> kPoolShapes = {{1}, {2}, {3}, {1, 1}, {2, 3}, {1, 2, 1, 3}};
const std::vector<int64_t> kSizes = {0, 1, 2, 3, 7, 64, 255, 256, 257, 1000, 4097};
}  // namespace

TEST(WorkerPool, EveryIndexOnceParallelFor) {
    for (const auto& shape : kPoolShapes) {
        WorkerPool pool(shape);
        for (int node = 0; node < pool.n_nodes(); ++node) {
            for (int64_t n : kSizes) {
                for (int64_t grain : {1, 7, 256}) {
                    for (auto sched : {Schedule::Static, Schedule::Dynamic}) {
                        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                        std::atomic<bool> bad{false};
                        pool.parallel_for(
                            node, n,
                            [&](int64_t b, int64_t e, int w) {
                                if (b < 0 || e > n || b >= e || w < 0 || w >= pool.workers(node) || b % grain != 0)
                                    bad = true;
                                for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
                            },
                            grain, sched);
                        EXPECT_FALSE(bad);
                        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1);
                    }
                }
            }
        }
    }
}

TEST(WorkerPool, StaticRangesAreOnePerWorker) {
    WorkerPool pool({4});
    std::mutex mu;
    std::map<int, std::vector<std::pair<int64_t, int64_t>>> by_worker;
    pool.parallel_for(0, 1000, [&](int64_t b, int64_t e, int w) {
        std::lock_guard<std::mutex> l(mu);
        by_worker[w].emplace_back(b, e);
    });
    ASSERT_EQ(by_worker.size(), 4u);
    for (const auto& [w, rs] : by_worker) {
        EXPECT_EQ(rs.size(), 1u);
        EXPECT_EQ(rs[0].first, w * 250);
        EXPECT_EQ(rs[0].second, (w + 1) * 250);
    }
}

TEST(WorkerPool, EveryIndexOnceParallelForNodes) {
    for (const auto& shape : kPoolShapes) {
        WorkerPool pool(shape);
        for (int64_t base : {0, 1, 100, 1001}) {
            std::vector<int64_t> n(static_cast<size_t>(pool.n_nodes()));
            for (size_t k = 0; k < n.size(); ++k) n[k] = (base * static_cast<int64_t>(k + 1)) % 1500;
            std::vector<std::vector<std::atomic<int>>> hits(n.size());
            for (size_t k = 0; k < n.size(); ++k) hits[k] = std::vector<std::atomic<int>>(static_cast<size_t>(n[k]));
            std::atomic<bool> bad{false};
            pool.parallel_for_nodes(std::span<const int64_t>(n), [&](int node, int64_t b, int64_t e, int w) {
                if (node < 0 || node >= pool.n_nodes() || w >= pool.workers(node) || e > n[static_cast<size_t>(node)])
                    bad = true;
                for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(node)][static_cast<size_t>(i)]++;
            });
            EXPECT_FALSE(bad);
            for (size_t k = 0; k < n.size(); ++k)
                for (auto& h : hits[k]) ASSERT_EQ(h.load(), 1);
        }
    }
    WorkerPool pool({1, 1});
    std::vector<int64_t> wrong = {1};
    EXPECT_THROW(pool.parallel_for_nodes(std::span<const int64_t>(wrong), [](int, int64_t, int64_t, int) {}), Error);
    EXPECT_THROW(pool.parallel_for(2, 10, [](int64_t, int64_t, int) {}), Error);
}

TEST(WorkerPool, EveryIndexOnceParallelForAll) {
    for (const auto& shape : kPoolShapes) {
        WorkerPool pool(shape);
        for (int64_t n : kSizes) {
            for (int64_t grain : {1, 16}) {
                std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                std::vector<std::atomic<int>> owner(static_cast<size_t>(n));
                pool.parallel_for_all(
                    n,
                    [&](int64_t b, int64_t e, int gw) {
                        for (int64_t i = b; i < e; ++i) {
                            hits[static_cast<size_t>(i)]++;
                            owner[static_cast<size_t>(i)] = gw;
                        }
                    },
                    grain);
                for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1);
                // Global worker ids increase along the range (node blocks in order).
                for (int64_t i = 1; i < n; ++i)
                    EXPECT_LE(owner[static_cast<size_t>(i - 1)].load(), owner[static_cast<size_t>(i)].load());
            }
        }
    }
}

namespace {
// A per-row reduction with a fixed order: the kind of computation the engine
// runs (a dot product per output row).
void rows_dot(const std::vector<float>& W, const std::vector<float>& x, int64_t cols, int64_t b, int64_t e, float* y) {
    for (int64_t r = b; r < e; ++r) {
        float acc = 0.0f;
        for (int64_t c = 0; c < cols; ++c) acc += W[static_cast<size_t>(r * cols + c)] * x[static_cast<size_t>(c)];
        y[r] = acc;
    }
}
}  // namespace

TEST(WorkerPool, BitIdenticalAcrossWorkerCounts) {
    const int64_t rows = 1531, cols = 517;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> W(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols));
    for (auto& v : W) v = d(rng);
    for (auto& v : x) v = d(rng);
    std::vector<float> ref(static_cast<size_t>(rows));
    rows_dot(W, x, cols, 0, rows, ref.data());
    for (const auto& shape : kPoolShapes) {
        WorkerPool pool(shape);
        for (auto sched : {Schedule::Static, Schedule::Dynamic}) {
            std::vector<float> y(static_cast<size_t>(rows), -1.0f);
            pool.parallel_for_all(rows, [&](int64_t b, int64_t e, int) { rows_dot(W, x, cols, b, e, y.data()); }, 8,
                                  sched);
            EXPECT_EQ(std::memcmp(y.data(), ref.data(), sizeof(float) * ref.size()), 0);
            // Node-split as SplitExperts does it.
            std::vector<int> weights;
            for (int k = 0; k < pool.n_nodes(); ++k) weights.push_back(pool.workers(k));
            const auto split = split_rows(rows, 256, weights);
            std::vector<int64_t> n;
            for (const auto& r : split) n.push_back(r.size());
            std::fill(y.begin(), y.end(), -1.0f);
            pool.parallel_for_nodes(std::span<const int64_t>(n), [&](int node, int64_t b, int64_t e, int) {
                const int64_t off = split[static_cast<size_t>(node)].begin;
                rows_dot(W, x, cols, off + b, off + e, y.data());
            }, 1, sched);
            EXPECT_EQ(std::memcmp(y.data(), ref.data(), sizeof(float) * ref.size()), 0);
        }
    }
}

TEST(WorkerPool, ExceptionsPropagate) {
    WorkerPool pool({2, 2});
    for (auto sched : {Schedule::Static, Schedule::Dynamic}) {
        try {
            pool.parallel_for_all(
                1000,
                [](int64_t b, int64_t e, int) {
                    if (b <= 500 && 500 < e) throw std::runtime_error("row 500 failed");
                },
                10, sched);
            FAIL() << "no exception";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "row 500 failed");
        }
        // ds4::Error keeps its code.
        try {
            pool.parallel_for(1, 10, [](int64_t, int64_t, int) {
                throw Error(ErrorCode::OutOfMemory, "boom");
            });
            FAIL() << "no exception";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::OutOfMemory);
        }
        // The pool is still usable.
        std::atomic<int64_t> sum{0};
        pool.parallel_for_all(100, [&](int64_t b, int64_t e, int) { sum += e - b; });
        EXPECT_EQ(sum.load(), 100);
    }
}

TEST(WorkerPool, NestedCallThrows) {
    WorkerPool pool({2});
    EXPECT_THROW(pool.parallel_for(0, 4, [&](int64_t, int64_t, int) {
        pool.parallel_for(0, 4, [](int64_t, int64_t, int) {});
    }),
                 Error);
}

TEST(WorkerPool, ConcurrentCallersAreSerialized) {
    WorkerPool pool({2, 1});
    std::atomic<int64_t> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c)
        callers.emplace_back([&] {
            for (int i = 0; i < 200; ++i) pool.parallel_for_all(97, [&](int64_t b, int64_t e, int) { total += e - b; });
        });
    for (auto& t : callers) t.join();
    EXPECT_EQ(total.load(), 3 * 200 * 97);
    EXPECT_EQ(pool.stats().runs, 600u);
}

TEST(WorkerPool, ReuseManyRuns) {
    WorkerPoolOptions o;
    o.worker_spin = 0;  // sleep at once: exercises the futex path
    o.caller_spin = 0;
    WorkerPool pool({2, 2}, o);
    std::vector<int64_t> out(64);
    for (int run = 0; run < 2000; ++run) {
        pool.parallel_for_all(64, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = i + run;
        });
        ASSERT_EQ(out[63], 63 + run);
    }
    EXPECT_EQ(pool.stats().runs, 2000u);
    EXPECT_GT(pool.stats().worker_sleeps, 0u);
}

TEST(WorkerPool, WorkerIdsAndNodes) {
    WorkerPool pool({2, 3});
    EXPECT_EQ(pool.n_nodes(), 2);
    EXPECT_EQ(pool.total_workers(), 5);
    EXPECT_EQ(pool.worker_id(1, 0), 2);
    EXPECT_EQ(pool.worker_id(1, 2), 4);
    EXPECT_EQ(pool.node_os_index(1), 1);
    EXPECT_EQ(pool.subpool_of(1), 1);
    EXPECT_EQ(pool.subpool_of(9), -1);
    EXPECT_FALSE(pool.binding().requested);
    EXPECT_EQ(pool.binding().pool_threads, 4);
    EXPECT_THROW(WorkerPool(std::vector<int>{2, 0}), Error);
}

TEST(WorkerPool, CallerParticipatesOrWaits) {
    for (bool participates : {true, false}) {
        WorkerPoolOptions o;
        o.caller_participates = participates;
        WorkerPool pool({2, 2}, o);
        EXPECT_EQ(pool.binding().caller_is_worker, participates);
        EXPECT_EQ(pool.binding().pool_threads, participates ? 3 : 4);
        const auto me = std::this_thread::get_id();
        std::vector<std::thread::id> who(4);
        pool.parallel_for_all(4, [&](int64_t b, int64_t, int w) { who[static_cast<size_t>(b)] = std::this_thread::get_id(); (void)w; });
        EXPECT_EQ(who[0] == me, participates);  // worker 0 of sub-pool 0 has rows [0, 1)
        for (size_t i = 1; i < 4; ++i) EXPECT_NE(who[i], me);
        // A pool of one worker runs everything on the caller.
        WorkerPool one({1}, o);
        std::thread::id ran;
        one.parallel_for(0, 10, [&](int64_t, int64_t, int) { ran = std::this_thread::get_id(); });
        EXPECT_EQ(ran == me, participates);
        // Nested calls from the caller's own share fail instead of deadlocking.
        EXPECT_THROW(one.parallel_for(0, 1, [&](int64_t, int64_t, int) { one.parallel_for(0, 1, [](int64_t, int64_t, int) {}); }),
                     Error);
    }
}

TEST(WorkerPool, BindingOnSyntheticTopologyIsReportedAndWarned) {
    LogCapture cap;
    auto topo = Topology::from_synthetic(synthetic(2, 2, 2, 256 * GiB));
    const auto plan = make_placement_plan(*topo, ds4_request(2, PlacementPolicy::SplitExperts), false);
    WorkerPool pool(topo, plan);
    EXPECT_EQ(pool.n_nodes(), 2);
    EXPECT_EQ(pool.total_workers(), 4);
    const auto b = pool.binding();
    EXPECT_TRUE(b.requested);
    EXPECT_FALSE(b.supported);
    EXPECT_EQ(b.bound_workers, 0);
    EXPECT_TRUE(cap.contains("cannot bind threads"));
    std::atomic<int> n{0};
    pool.parallel_for_all(10, [&](int64_t b0, int64_t e, int) { n += static_cast<int>(e - b0); });
    EXPECT_EQ(n.load(), 10);
}

TEST(WorkerPool, BindingOnThisMachine) {
    auto topo = Topology::load_system();
    auto req = ds4_request(2, PlacementPolicy::SingleNode);
    const auto plan = make_placement_plan(*topo, req, false);
    WorkerPool pool(topo, plan);
    const auto b = pool.binding();
    EXPECT_EQ(b.supported, topo->cpubind_supported());
    EXPECT_EQ(pool.total_workers(), plan.n_threads);
    EXPECT_TRUE(b.caller_is_worker);
    EXPECT_EQ(b.pool_threads, plan.n_threads - 1);
    const int home = pool.subpool_of(plan.home_node);
    ASSERT_GE(home, 0);
    EXPECT_EQ(b.caller_node, home);
    if (!b.supported) GTEST_SKIP() << "this machine cannot bind threads";
    EXPECT_TRUE(b.all_bound());
    // Each pool thread runs on a PU of its own core (worker 0 is the caller, unbound).
    const auto& node = topo->nodes()[static_cast<size_t>(topo->find_node(plan.home_node))];
    std::vector<int> cpu(static_cast<size_t>(pool.workers(home)), -1);
    pool.parallel_for(home, pool.workers(home), [&](int64_t, int64_t, int w) { cpu[static_cast<size_t>(w)] = sched_getcpu(); });
    for (int w = 1; w < pool.workers(home); ++w) {
        const int first = plan.node(plan.home_node)->cores[static_cast<size_t>(w)];
        const auto core = std::find_if(node.cores.begin(), node.cores.end(), [&](const TopoCore& c) { return c.first_pu == first; });
        ASSERT_NE(core, node.cores.end());
        EXPECT_NE(std::find(core->pus.begin(), core->pus.end(), cpu[static_cast<size_t>(w)]), core->pus.end())
            << "worker " << w << " ran on CPU " << cpu[static_cast<size_t>(w)];
    }
}

// ---- Node memory ----------------------------------------------------------------

TEST(NodeMemory, AllocateTouchMeasureOnThisMachine) {
    auto topo = Topology::load_system();
    const int node = topo->nodes().front().os_index;
    const size_t bytes = (size_t{4} << 20) + 123;
    NodeBuffer buf = NodeBuffer::on_node(*topo, node, bytes);
    ASSERT_NE(buf.data(), nullptr);
    EXPECT_EQ(buf.size(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % (size_t{2} << 20), 0u);
    EXPECT_EQ(buf.bound(), topo->alloc_membind_supported());
    if (topo->memlocation_supported()) {
        auto before = measure_pages(*topo, buf.data(), buf.size());
        ASSERT_TRUE(before.has_value());
        EXPECT_EQ(before->not_resident, bytes);
    }
    first_touch_on_node(*topo, node, buf.data(), buf.size());
    std::memset(buf.data(), 0x5a, bytes);
    EXPECT_EQ(buf.data()[bytes - 1], 0x5a);
    auto loc = measure_pages(*topo, buf.data(), buf.size());
    if (!topo->memlocation_supported()) {
        EXPECT_FALSE(loc.has_value());
        GTEST_SKIP() << "this machine cannot report page locations";
    }
    ASSERT_TRUE(loc.has_value());
    EXPECT_EQ(loc->bytes, bytes);
    EXPECT_EQ(loc->pages_total, loc->pages_sampled);
    EXPECT_EQ(loc->bytes_on(node) + loc->not_resident, bytes);
    if (topo->nodes().size() == 1) {
        EXPECT_EQ(loc->bytes_on(node), bytes);
    }
    // Sampling estimates still add up.
    auto sampled = measure_pages(*topo, buf.data(), buf.size(), 16);
    ASSERT_TRUE(sampled.has_value());
    EXPECT_EQ(sampled->pages_sampled, 16u);
    uint64_t sum = sampled->not_resident;
    for (const auto& p : sampled->on_node) sum += p.second;
    EXPECT_EQ(sum, bytes);
    // Move keeps ownership.
    NodeBuffer moved = std::move(buf);
    EXPECT_EQ(moved.size(), bytes);
    EXPECT_EQ(buf.size(), 0u);  // NOLINT(bugprone-use-after-move)
}

TEST(NodeMemory, InterleavedAndEmpty) {
    auto topo = Topology::load_system();
    std::vector<int> all;
    for (const auto& n : topo->nodes())
        if (n.has_memory()) all.push_back(n.os_index);
    NodeBuffer b = NodeBuffer::interleaved(*topo, all, 1 << 16);
    EXPECT_TRUE(b.interleave());
    std::memset(b.data(), 1, b.size());
    NodeBuffer e = NodeBuffer::on_node(*topo, all.front(), 0);
    EXPECT_TRUE(e.empty());
    EXPECT_THROW(NodeBuffer::on_node(*topo, 4242, 10), Error);
    EXPECT_EQ(prefault_read(nullptr, 0), 0u);
}

TEST(NodeMemory, SyntheticTopologyFallsBackUnbound) {
    auto topo = Topology::from_synthetic(synthetic(2, 1, 1, 8 * GiB));
    NodeBuffer b = NodeBuffer::on_node(*topo, 1, 10000);
    EXPECT_FALSE(b.bound());
    ASSERT_NE(b.data(), nullptr);
    first_touch_on_node(*topo, 1, b.data(), b.size());
    std::memset(b.data(), 3, b.size());
    EXPECT_FALSE(measure_pages(*topo, b.data(), b.size()).has_value());
}

// ---- Expert store: copies and a bit-identical MoE ----------------------------------

using namespace ds4::placement::testing;

TEST(PlacementExpertStore, CopiesMatchTheSourceForEveryPolicy) {
    const FakeExperts fx(3, 5, 40, 72, 11);
    const auto views = fx.views();
    for (const auto& desc : {synthetic(2, 2, 2, 8 * GiB), synthetic_snc4(1, 1, 8 * GiB), std::string("system")}) {
        auto topo = desc == "system" ? Topology::load_system() : Topology::from_synthetic(desc);
        for (auto policy : {PlacementPolicy::SplitExperts, PlacementPolicy::Replicate, PlacementPolicy::Interleave}) {
            SCOPED_TRACE(desc + " " + std::string(to_string(policy)));
            const auto req = fx.request(policy, 0);
            auto plan = make_placement_plan(*topo, req, false);
            WorkerPool pool(topo, plan, WorkerPoolOptions{false});
            auto store = ExpertStore::build(topo, plan, pool, views);
            const uint64_t expected_bytes =
                policy == PlacementPolicy::Replicate ? plan.total_routed_bytes_held() : req.routed_expert_bytes();
            EXPECT_GE(store->bytes(), expected_bytes);
            EXPECT_LE(store->bytes(), expected_bytes + store->n_copies() * 3 * 64 * static_cast<uint64_t>(fx.n_layer));
            for (const auto& pn : plan.nodes) {
                if (pn.n_threads == 0) {
                    EXPECT_THROW(store->slab(pn.os_index, 0, ExpertMatrix::Gate), Error);
                    continue;
                }
                for (int l = 0; l < fx.n_layer; ++l) {
                    for (int m = 0; m < 3; ++m) {
                        const ExpertSlab& s = store->slab(pn.os_index, l, static_cast<ExpertMatrix>(m));
                        const RowRange want = policy == PlacementPolicy::SplitExperts
                                                  ? (m == 2 ? pn.rows[static_cast<size_t>(l)].out : pn.rows[static_cast<size_t>(l)].ff)
                                                  : RowRange{0, m == 2 ? fx.d : fx.ff};
                        EXPECT_EQ(s.rows, want);
                        const auto& src = m == 0 ? fx.gate[static_cast<size_t>(l)] : (m == 1 ? fx.up[static_cast<size_t>(l)] : fx.down[static_cast<size_t>(l)]);
                        const int64_t rows = m == 2 ? fx.d : fx.ff, cols = m == 2 ? fx.ff : fx.d;
                        for (int e = 0; e < fx.n_expert; ++e)
                            for (int64_t r = s.rows.begin; r < s.rows.end; ++r)
                                ASSERT_EQ(std::memcmp(s.row(e, r), &src[static_cast<size_t>((e * rows + r) * cols)], s.row_bytes), 0)
                                    << "layer " << l << " matrix " << m << " expert " << e << " row " << r;
                    }
                }
            }
            store->measure(plan);
            for (const auto& pn : plan.nodes) {
                if (pn.n_threads > 0 && topo->memlocation_supported()) {
                    ASSERT_TRUE(pn.measured.has_value());
                    EXPECT_EQ(pn.measured->not_resident, 0u);
                }
                if (!topo->memlocation_supported()) {
                    EXPECT_FALSE(pn.measured.has_value());
                }
            }
            EXPECT_FALSE(plan.describe().empty());
        }
    }
}

TEST(PlacementExpertStore, RejectsMappedPoliciesAndMismatches) {
    const FakeExperts fx(2, 3, 16, 32, 3);
    const auto views = fx.views();
    auto topo = Topology::from_synthetic(synthetic(2, 1, 1, 8 * GiB));
    auto single = make_placement_plan(*topo, fx.request(PlacementPolicy::SingleNode, 0), false);
    WorkerPool pool1(topo, single, WorkerPoolOptions{false});
    EXPECT_THROW(ExpertStore::build(topo, single, pool1, views), Error);
    auto split = make_placement_plan(*topo, fx.request(PlacementPolicy::SplitExperts, 0), false);
    WorkerPool pool2(topo, split, WorkerPoolOptions{false});
    EXPECT_THROW(ExpertStore::build(topo, split, pool2, std::span<const LayerExpertViews>(views.data(), 1)), Error);
    auto wrong = views;
    wrong[1].down.rows = 8;  // plan rows reach 16
    EXPECT_THROW(ExpertStore::build(topo, split, pool2, wrong), Error);
}

TEST(PlacementExpertStore, MoeBitIdenticalAcrossPoliciesAndThreads) {
    // ff = 72 rows with 16-row units, d = 40: uneven splits on 2 and 4 nodes.
    const FakeExperts fx(2, 6, 40, 72, 5);
    const auto views = fx.views();
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(fx.d));
    for (auto& v : x) v = u(rng);
    const std::vector<int> sel = {4, 1, 3};
    const std::vector<float> w = {0.5f, 0.3f, 0.2f};
    std::vector<std::vector<float>> ref;
    for (int l = 0; l < fx.n_layer; ++l) ref.push_back(moe_reference(fx, l, sel, w, x));

    int checked = 0;
    for (const auto& desc : {synthetic(1, 3, 1, 8 * GiB), synthetic(2, 2, 2, 8 * GiB), synthetic_snc4(2, 1, 8 * GiB)}) {
        auto topo = Topology::from_synthetic(desc);
        for (auto policy : {PlacementPolicy::SplitExperts, PlacementPolicy::Replicate, PlacementPolicy::Interleave}) {
            for (int threads : {1, 2, 3, 0}) {
                SCOPED_TRACE(desc + " " + std::string(to_string(policy)) + " threads " + std::to_string(threads));
                auto plan = make_placement_plan(*topo, fx.request(policy, threads), false);
                WorkerPool pool(topo, plan, WorkerPoolOptions{false});
                auto store = ExpertStore::build(topo, plan, pool, views);
                for (int l = 0; l < fx.n_layer; ++l) {
                    const auto y = moe_placed(fx, plan, *store, pool, l, sel, w, x);
                    ASSERT_EQ(std::memcmp(y.data(), ref[static_cast<size_t>(l)].data(), sizeof(float) * y.size()), 0)
                        << "layer " << l;
                    ++checked;
                }
            }
        }
    }
    EXPECT_EQ(checked, 3 * 3 * 4 * 2);
}

TEST(PlacementExpertStore, MeasureAreasSums) {
    auto topo = Topology::load_system();
    std::vector<uint8_t> a(100000, 1), b(50000, 2);
    const MemoryArea areas[] = {{a.data(), a.size()}, {b.data(), b.size()}, {nullptr, 0}};
    auto loc = measure_areas(*topo, areas, 64);
    if (!topo->memlocation_supported()) {
        EXPECT_FALSE(loc.has_value());
        GTEST_SKIP() << "this machine cannot report page locations";
    }
    ASSERT_TRUE(loc.has_value());
    EXPECT_EQ(loc->bytes, a.size() + b.size());
    uint64_t sum = loc->not_resident;
    for (const auto& p : loc->on_node) sum += p.second;
    EXPECT_EQ(sum, loc->bytes);
}
