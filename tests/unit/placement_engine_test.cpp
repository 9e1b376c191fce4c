// Placement in the engine: logits are bit-identical whatever the placement
// policy, the (synthetic) NUMA topology and the thread count.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "ds4/model.hpp"
#include "ds4/model_generator.hpp"
#include "ds4/session.hpp"
#include "support/models.hpp"

using namespace ds4;

namespace {

// Three layers (hash/ratio 0, ratio 4 with the indexer, ratio 16) with an
// expert FF width of 1024 rows, so SplitExperts really splits gate and up
// over up to four nodes in 256-row units.
std::string split_model() {
    static const std::string path = [] {
        const std::string p = (test_support::model_dir() / "placement-split.gguf").string();
        if (!std::filesystem::exists(p)) {
            GeneratorOptions o;
            o.config = tiny_model_config();
            o.config.n_layer = 3;
            o.config.n_hash_layers = 1;
            o.config.compress_ratios = {0, 4, 16};
            o.config.swiglu_clamp.assign(3, 10.0f);
            o.config.expert_ff = 1024;
            o.seed = 11;
            generate_model(o, p);
        }
        return p;
    }();
    return path;
}

std::vector<float> run(const ModelOptions& mo, std::vector<std::string>* warnings = nullptr,
                       PlacementPolicy* resolved = nullptr) {
    auto model = Model::load(split_model(), mo);
    if (warnings) *warnings = model->placement().warnings;
    if (resolved) *resolved = model->placement().policy;
    std::mt19937_64 rng(5);
    std::vector<TokenId> toks(40);
    for (auto& t : toks) t = static_cast<TokenId>(rng() % 1024);
    Session s(model);
    s.prefill({toks.data(), 30});
    for (size_t i = 30; i < toks.size(); ++i) s.decode(toks[i]);
    return {s.logits().begin(), s.logits().end()};
}

}  // namespace

TEST(PlacementEngine, LogitsIdenticalAcrossPoliciesTopologiesAndThreads) {
    const std::vector<float> base = run({});
    ASSERT_FALSE(base.empty());
    const char* topologies[] = {
        "synthetic:pack:2 [numa(memory=8589934592)] core:2 pu:1",
        "synthetic:pack:4 [numa(memory=8589934592)] core:1 pu:2",
    };
    for (const char* topo : topologies) {
        for (PlacementPolicy p : {PlacementPolicy::SingleNode, PlacementPolicy::Interleave, PlacementPolicy::Replicate,
                                  PlacementPolicy::SplitExperts, PlacementPolicy::Auto}) {
            for (int threads : {1, 2, 4}) {
                ModelOptions mo;
                mo.topology = topo;
                mo.placement = p;
                mo.n_threads = threads;
                PlacementPolicy resolved{};
                const auto got = run(mo, nullptr, &resolved);
                EXPECT_EQ(got, base) << topo << " policy " << to_string(p) << " (resolved "
                                     << to_string(resolved) << ") threads " << threads;
            }
        }
    }
}

TEST(PlacementEngine, PlanIsReportedByTheModel) {
    ModelOptions mo;
    mo.topology = "synthetic:pack:2 [numa(memory=8589934592)] core:2 pu:1";
    mo.placement = PlacementPolicy::SplitExperts;
    auto model = Model::load(split_model(), mo);
    const PlacementPlan& plan = model->placement();
    EXPECT_EQ(plan.policy, PlacementPolicy::SplitExperts);
    EXPECT_TRUE(plan.copies_experts);
    EXPECT_EQ(plan.used_nodes(), 2);
    EXPECT_EQ(plan.total_routed_bytes_held(), plan.routed_expert_bytes);  // one copy, split
    EXPECT_FALSE(plan.describe().empty());

    mo.placement = PlacementPolicy::Replicate;
    model = Model::load(split_model(), mo);
    EXPECT_EQ(model->placement().total_routed_bytes_held(), 2 * model->placement().routed_expert_bytes);
}
