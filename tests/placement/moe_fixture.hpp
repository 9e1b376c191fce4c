// Test fixture shared by the placement tests: a small f32 mixture of
// experts, a straightforward reference, and the two-phase node-parallel MoE
// (gate/up split by FF rows, down split by output rows) that the engine is
// meant to run over an ExpertStore. Both compute every output value as one
// complete dot product in a fixed order, so they must agree bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "ds4/placement.hpp"
#include "placement/expert_store.hpp"
#include "placement/worker_pool.hpp"

namespace ds4::placement::testing {

// Small f32 "experts": gate/up are ff x d, down is d x ff; row_bytes = cols * 4.
struct FakeExperts {
    int n_layer, n_expert;
    int64_t d, ff;
    std::vector<std::vector<float>> gate, up, down;  // per layer, [n_expert][rows][cols]

    FakeExperts(int layers, int experts, int64_t d_, int64_t ff_, uint32_t seed)
        : n_layer(layers), n_expert(experts), d(d_), ff(ff_) {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> u(-0.5f, 0.5f);
        for (int l = 0; l < layers; ++l) {
            gate.emplace_back(static_cast<size_t>(experts * ff * d));
            up.emplace_back(static_cast<size_t>(experts * ff * d));
            down.emplace_back(static_cast<size_t>(experts * d * ff));
            for (auto* v : {&gate.back(), &up.back(), &down.back()})
                for (auto& x : *v) x = u(rng);
        }
    }
    PlacementRequest request(PlacementPolicy p, int threads) const {
        auto r = PlacementRequest::uniform(n_layer, n_expert, {ff, static_cast<size_t>(d) * 4},
                                           {ff, static_cast<size_t>(d) * 4}, {d, static_cast<size_t>(ff) * 4}, 4096);
        r.policy = p;
        r.n_threads = threads;
        r.split_granule = 16;  // small model: 16-row units (the real model uses 256)
        return r;
    }
    std::vector<LayerExpertViews> views() const {
        std::vector<LayerExpertViews> v;
        for (int l = 0; l < n_layer; ++l) {
            LayerExpertViews L;
            L.gate = {reinterpret_cast<const uint8_t*>(gate[static_cast<size_t>(l)].data()), ff, static_cast<size_t>(d) * 4};
            L.up = {reinterpret_cast<const uint8_t*>(up[static_cast<size_t>(l)].data()), ff, static_cast<size_t>(d) * 4};
            L.down = {reinterpret_cast<const uint8_t*>(down[static_cast<size_t>(l)].data()), d, static_cast<size_t>(ff) * 4};
            v.push_back(L);
        }
        return v;
    }
};

inline float dot(const float* a, const float* b, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

inline float swiglu(float g, float u) { return g / (1.0f + std::exp(-g)) * u; }

// Reference: one layer, selected experts `sel` with weights `w`, input x[d].
inline std::vector<float> moe_reference(const FakeExperts& fx, int layer, const std::vector<int>& sel,
                                 const std::vector<float>& w, const std::vector<float>& x) {
    std::vector<float> y(static_cast<size_t>(fx.d), 0.0f), h(static_cast<size_t>(fx.ff));
    std::vector<std::vector<float>> parts;
    for (size_t k = 0; k < sel.size(); ++k) {
        const float* G = fx.gate[static_cast<size_t>(layer)].data() + static_cast<size_t>(sel[k] * fx.ff * fx.d);
        const float* U = fx.up[static_cast<size_t>(layer)].data() + static_cast<size_t>(sel[k] * fx.ff * fx.d);
        const float* D = fx.down[static_cast<size_t>(layer)].data() + static_cast<size_t>(sel[k] * fx.d * fx.ff);
        for (int64_t r = 0; r < fx.ff; ++r)
            h[static_cast<size_t>(r)] = swiglu(dot(G + r * fx.d, x.data(), fx.d), dot(U + r * fx.d, x.data(), fx.d)) * w[k];
        std::vector<float> p(static_cast<size_t>(fx.d));
        for (int64_t r = 0; r < fx.d; ++r) p[static_cast<size_t>(r)] = dot(D + r * fx.ff, h.data(), fx.ff);
        parts.push_back(std::move(p));
    }
    // Expert outputs summed in slot order, as the engine does.
    for (size_t k = 0; k < parts.size(); ++k)
        for (int64_t r = 0; r < fx.d; ++r) y[static_cast<size_t>(r)] += parts[k][static_cast<size_t>(r)];
    return y;
}

// The two-phase node-parallel MoE described in expert_store.hpp.
inline std::vector<float> moe_placed(const FakeExperts& fx, const PlacementPlan& plan, const ExpertStore& store,
                              WorkerPool& pool, int layer, const std::vector<int>& sel, const std::vector<float>& w,
                              const std::vector<float>& x) {
    const size_t K = sel.size();
    std::vector<float> h(K * static_cast<size_t>(fx.ff));      // FF activations, shared by all nodes
    std::vector<float> parts(K * static_cast<size_t>(fx.d));   // per-slot down outputs
    std::vector<int64_t> n(static_cast<size_t>(pool.n_nodes()));
    std::vector<LayerRows> rows(static_cast<size_t>(pool.n_nodes()));
    for (int k = 0; k < pool.n_nodes(); ++k) rows[static_cast<size_t>(k)] = plan.node(pool.node_os_index(k))->rows[static_cast<size_t>(layer)];
    // Phase 1: gate/up rows of each node, items = (slot, row).
    for (int k = 0; k < pool.n_nodes(); ++k) n[static_cast<size_t>(k)] = static_cast<int64_t>(K) * rows[static_cast<size_t>(k)].ff.size();
    pool.parallel_for_nodes(std::span<const int64_t>(n), [&](int node, int64_t b, int64_t e, int) {
        const RowRange ff = rows[static_cast<size_t>(node)].ff;
        const int os = pool.node_os_index(node);
        const ExpertSlab& G = store.slab(os, layer, ExpertMatrix::Gate);
        const ExpertSlab& U = store.slab(os, layer, ExpertMatrix::Up);
        for (int64_t i = b; i < e; ++i) {
            const size_t k = static_cast<size_t>(i / ff.size());
            const int64_t r = ff.begin + i % ff.size();
            const float* g = reinterpret_cast<const float*>(G.row(sel[k], r));
            const float* u = reinterpret_cast<const float*>(U.row(sel[k], r));
            h[k * static_cast<size_t>(fx.ff) + static_cast<size_t>(r)] = swiglu(dot(g, x.data(), fx.d), dot(u, x.data(), fx.d)) * w[k];
        }
    });
    // Phase 2: down rows of each node over the whole FF vector.
    for (int k = 0; k < pool.n_nodes(); ++k) n[static_cast<size_t>(k)] = static_cast<int64_t>(K) * rows[static_cast<size_t>(k)].out.size();
    pool.parallel_for_nodes(std::span<const int64_t>(n), [&](int node, int64_t b, int64_t e, int) {
        const RowRange out = rows[static_cast<size_t>(node)].out;
        const ExpertSlab& D = store.slab(pool.node_os_index(node), layer, ExpertMatrix::Down);
        for (int64_t i = b; i < e; ++i) {
            const size_t k = static_cast<size_t>(i / out.size());
            const int64_t r = out.begin + i % out.size();
            parts[k * static_cast<size_t>(fx.d) + static_cast<size_t>(r)] =
                dot(reinterpret_cast<const float*>(D.row(sel[k], r)), &h[k * static_cast<size_t>(fx.ff)], fx.ff);
        }
    }, 3, Schedule::Dynamic);
    std::vector<float> y(static_cast<size_t>(fx.d), 0.0f);
    for (size_t k = 0; k < K; ++k)
        for (int64_t r = 0; r < fx.d; ++r) y[static_cast<size_t>(r)] += parts[k * static_cast<size_t>(fx.d) + static_cast<size_t>(r)];
    return y;
}

}  // namespace ds4::placement::testing
