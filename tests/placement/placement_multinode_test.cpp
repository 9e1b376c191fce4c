// Placement on real multi-node hardware: node-bound copies land on their
// node, workers run on their node's cores, interleaved pages spread, and the
// node-parallel MoE stays bit-identical. Skipped (with the reason printed)
// on machines with fewer than two NUMA nodes that have both cores and memory.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "placement/expert_store.hpp"
#include "placement/moe_fixture.hpp"
#include "placement/node_memory.hpp"
#include "placement/planner.hpp"
#include "placement/topology.hpp"
#include "placement/worker_pool.hpp"

using namespace ds4;
using namespace ds4::placement;
using namespace ds4::placement::testing;

namespace {

// Nodes with cores and memory, or a skip reason.
std::vector<int> usable_nodes(const Topology& t) {
    std::vector<int> v;
    for (const auto& n : t.nodes())
        if (n.has_cores() && n.has_memory()) v.push_back(n.os_index);
    return v;
}

#define DS4_REQUIRE_MULTINODE(topo)                                                                              \
    do {                                                                                                         \
        const auto usable_ = usable_nodes(*(topo));                                                              \
        if (usable_.size() < 2) {                                                                                \
            std::printf("skipping: needs at least 2 NUMA nodes with cores and memory; this machine has %zu "    \
                        "(%zu NUMA nodes in all)\n",                                                            \
                        usable_.size(), (topo)->nodes().size());                                                 \
            GTEST_SKIP() << "needs at least 2 NUMA nodes with cores and memory";                                 \
        }                                                                                                        \
        if (!(topo)->alloc_membind_supported() || !(topo)->memlocation_supported() ||                           \
            !(topo)->cpubind_supported()) {                                                                      \
            std::printf("skipping: this system cannot bind memory/threads or report page locations\n");          \
            GTEST_SKIP() << "no binding support";                                                                \
        }                                                                                                        \
    } while (0)

constexpr double kMinLocal = 0.9;  // fraction of a node copy that must be on its node

}  // namespace

TEST(MultinodeMemory, NodeBuffersLandOnTheirNode) {
    auto topo = Topology::load_system();
    DS4_REQUIRE_MULTINODE(topo);
    for (int node : usable_nodes(*topo)) {
        const size_t bytes = size_t{64} << 20;
        NodeBuffer b = NodeBuffer::on_node(*topo, node, bytes);
        EXPECT_TRUE(b.bound());
        // Touch from the *calling* thread, wherever it runs: the policy decides.
        std::memset(b.data(), 1, b.size());
        auto loc = measure_pages(*topo, b.data(), b.size());
        ASSERT_TRUE(loc.has_value());
        EXPECT_GE(static_cast<double>(loc->bytes_on(node)), kMinLocal * static_cast<double>(bytes))
            << "node " << node;
    }
}

TEST(MultinodeMemory, InterleavedPagesSpread) {
    auto topo = Topology::load_system();
    DS4_REQUIRE_MULTINODE(topo);
    const auto nodes = usable_nodes(*topo);
    const size_t bytes = size_t{64} << 20;
    NodeBuffer b = NodeBuffer::interleaved(*topo, nodes, bytes);
    std::memset(b.data(), 1, b.size());
    auto loc = measure_pages(*topo, b.data(), b.size());
    ASSERT_TRUE(loc.has_value());
    const double share = 1.0 / static_cast<double>(nodes.size());
    for (int n : nodes)
        EXPECT_GE(static_cast<double>(loc->bytes_on(n)), 0.5 * share * static_cast<double>(bytes)) << "node " << n;
}

TEST(MultinodePool, WorkersRunOnTheirNodesCores) {
    auto topo = Topology::load_system();
    DS4_REQUIRE_MULTINODE(topo);
    auto req = FakeExperts(1, 2, 16, 32, 1).request(PlacementPolicy::SplitExperts, 0);
    const auto plan = make_placement_plan(*topo, req, false);
    WorkerPool pool(topo, plan);
    ASSERT_TRUE(pool.binding().all_bound());
    for (int k = 0; k < pool.n_nodes(); ++k) {
        std::vector<int> cpu(static_cast<size_t>(pool.workers(k)), -1);
        pool.parallel_for(k, pool.workers(k), [&](int64_t b, int64_t, int w) {
            (void)b;
            cpu[static_cast<size_t>(w)] = sched_getcpu();
        });
        const auto& tn = topo->nodes()[static_cast<size_t>(topo->find_node(pool.node_os_index(k)))];
        for (int w = 0; w < pool.workers(k); ++w) {
            if (k == pool.binding().caller_node && w == 0) continue;  // the calling thread, never bound
            const int first = plan.node(pool.node_os_index(k))->cores[static_cast<size_t>(w)];
            const auto core = std::find_if(tn.cores.begin(), tn.cores.end(),
                                           [&](const TopoCore& c) { return c.first_pu == first; });
            ASSERT_NE(core, tn.cores.end());
            EXPECT_NE(std::find(core->pus.begin(), core->pus.end(), cpu[static_cast<size_t>(w)]), core->pus.end());
        }
    }
}

TEST(MultinodeExperts, CopiesAreLocalAndMoeIsBitIdentical) {
    auto topo = Topology::load_system();
    DS4_REQUIRE_MULTINODE(topo);
    const FakeExperts fx(2, 8, 512, 1024, 9);  // ~96 MiB of experts
    const auto views = fx.views();
    std::vector<float> x(static_cast<size_t>(fx.d));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
    const std::vector<int> sel = {5, 0, 7, 2};
    const std::vector<float> w = {0.4f, 0.3f, 0.2f, 0.1f};
    for (auto policy : {PlacementPolicy::SplitExperts, PlacementPolicy::Replicate, PlacementPolicy::Interleave}) {
        SCOPED_TRACE(std::string(to_string(policy)));
        auto plan = make_placement_plan(*topo, fx.request(policy, 0), false);
        WorkerPool pool(topo, plan);
        auto store = ExpertStore::build(topo, plan, pool, views);
        store->measure(plan);
        std::printf("%s\n", plan.describe().c_str());
        if (policy != PlacementPolicy::Interleave) {
            for (const auto& pn : plan.nodes) {
                if (pn.n_threads == 0 || !pn.measured) continue;
                EXPECT_GE(static_cast<double>(pn.measured->bytes_on(pn.memory_node)),
                          kMinLocal * static_cast<double>(pn.measured->bytes))
                    << "node " << pn.os_index;
            }
        }
        for (int l = 0; l < fx.n_layer; ++l) {
            const auto ref = moe_reference(fx, l, sel, w, x);
            const auto y = moe_placed(fx, plan, *store, pool, l, sel, w, x);
            ASSERT_EQ(std::memcmp(y.data(), ref.data(), sizeof(float) * y.size()), 0) << "layer " << l;
        }
    }
}
