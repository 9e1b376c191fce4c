#include "placement/expert_store.hpp"

#include <algorithm>
#include <cstring>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "placement/format.hpp"

namespace ds4::placement {

using detail::fail;

namespace {

constexpr size_t kSlabAlign = 64;

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

const ExpertTensorView& view_of(const LayerExpertViews& L, int m) {
    return m == 0 ? L.gate : (m == 1 ? L.up : L.down);
}

RowRange rows_of(const LayerRows& r, int m) { return m == 2 ? r.out : r.ff; }

struct CopySpec {
    int memory_node = 0;
    int copier = -1;  // sub-pool index, -1: all workers
    bool interleave = false;
    std::vector<int> interleave_nodes;
    std::vector<LayerRows> rows;
    std::vector<int> readers;  // OS indices
};

}  // namespace

std::unique_ptr<ExpertStore> ExpertStore::build(std::shared_ptr<const Topology> topology, const PlacementPlan& plan,
                                                WorkerPool& pool, std::span<const LayerExpertViews> layers) {
    if (!topology) fail(ErrorCode::InvalidArgument, "expert store: no topology");
    if (!plan.copies_experts)
        fail(ErrorCode::InvalidArgument, "expert store: policy %s keeps the routed experts mapped",
             std::string(to_string(plan.policy)).c_str());
    if (static_cast<int>(layers.size()) != plan.n_layer)
        fail(ErrorCode::InvalidArgument, "expert store: %zu layers given, the plan has %d", layers.size(), plan.n_layer);
    for (size_t l = 0; l < layers.size(); ++l) {
        for (int m = 0; m < 3; ++m) {
            const auto& v = view_of(layers[l], m);
            if (!v.data || v.rows <= 0 || v.row_bytes == 0)
                fail(ErrorCode::InvalidArgument, "expert store: layer %zu matrix %d is empty", l, m);
        }
        if (layers[l].gate.rows != layers[l].up.rows)
            fail(ErrorCode::InvalidArgument, "expert store: layer %zu gate and up row counts differ", l);
    }

    // Which copies, read by whom.
    std::vector<CopySpec> specs;
    std::vector<LayerRows> full(layers.size());
    for (size_t l = 0; l < layers.size(); ++l)
        full[l] = LayerRows{RowRange{0, layers[l].gate.rows}, RowRange{0, layers[l].down.rows}};
    for (const auto& n : plan.nodes) {
        if (n.n_threads <= 0) continue;
        if (pool.subpool_of(n.os_index) < 0)
            fail(ErrorCode::InvalidArgument, "expert store: node %d has workers in the plan but not in the pool",
                 n.os_index);
        if (n.rows.size() != layers.size())
            fail(ErrorCode::InvalidArgument, "expert store: node %d has rows for %zu layers, expected %zu", n.os_index,
                 n.rows.size(), layers.size());
        switch (plan.policy) {
            case PlacementPolicy::SplitExperts: {
                CopySpec s;
                s.memory_node = n.memory_node;
                s.copier = pool.subpool_of(n.os_index);
                s.rows = n.rows;
                s.readers = {n.os_index};
                specs.push_back(std::move(s));
                break;
            }
            case PlacementPolicy::Replicate: {
                auto it = std::find_if(specs.begin(), specs.end(),
                                       [&](const CopySpec& s) { return s.memory_node == n.memory_node; });
                if (it == specs.end()) {
                    CopySpec s;
                    s.memory_node = n.memory_node;
                    const int own = pool.subpool_of(n.memory_node);
                    s.copier = own >= 0 ? own : pool.subpool_of(n.os_index);
                    s.rows = full;
                    specs.push_back(std::move(s));
                    it = specs.end() - 1;
                }
                it->readers.push_back(n.os_index);
                break;
            }
            case PlacementPolicy::Interleave: {
                if (specs.empty()) {
                    CopySpec s;
                    s.interleave = true;
                    s.rows = full;
                    specs.push_back(std::move(s));
                }
                auto& s = specs.front();
                s.readers.push_back(n.os_index);
                if (std::find(s.interleave_nodes.begin(), s.interleave_nodes.end(), n.memory_node) ==
                    s.interleave_nodes.end())
                    s.interleave_nodes.push_back(n.memory_node);
                break;
            }
            default:
                fail(ErrorCode::InvalidArgument, "expert store: unexpected policy");
        }
    }
    if (specs.empty()) fail(ErrorCode::InvalidArgument, "expert store: the plan has no workers");
    // SplitExperts: the nodes' rows must tile every matrix exactly once.
    if (plan.policy == PlacementPolicy::SplitExperts) {
        for (size_t l = 0; l < layers.size(); ++l) {
            for (int m = 0; m < 3; m += 2) {
                std::vector<RowRange> rs;
                for (const auto& s : specs) rs.push_back(rows_of(s.rows[l], m));
                std::sort(rs.begin(), rs.end(), [](const RowRange& a, const RowRange& b) { return a.begin < b.begin; });
                int64_t at = 0;
                for (const auto& r : rs) {
                    if (r.empty()) continue;
                    if (r.begin != at) fail(ErrorCode::InvalidArgument, "expert store: layer %zu rows do not tile", l);
                    at = r.end;
                }
                const int64_t want = m == 2 ? layers[l].down.rows : layers[l].gate.rows;
                if (at != want)
                    fail(ErrorCode::InvalidArgument, "expert store: layer %zu covers %lld of %lld rows", l,
                         static_cast<long long>(at), static_cast<long long>(want));
            }
        }
    }

    std::unique_ptr<ExpertStore> store(new ExpertStore());
    store->topology_ = topology;
    store->n_layer_ = plan.n_layer;
    store->n_expert_ = plan.n_expert;
    const size_t E = static_cast<size_t>(plan.n_expert);

    // Layout and allocation.
    for (const auto& s : specs) {
        Copy c;
        c.memory_node = s.memory_node;
        c.copier = s.copier;
        size_t off = 0;
        for (size_t l = 0; l < layers.size(); ++l) {
            for (int m = 0; m < 3; ++m) {
                const auto& v = view_of(layers[l], m);
                const RowRange r = rows_of(s.rows[l], m);
                if (r.begin < 0 || r.end > v.rows)
                    fail(ErrorCode::InvalidArgument, "expert store: layer %zu rows [%lld, %lld) outside %lld", l,
                         static_cast<long long>(r.begin), static_cast<long long>(r.end),
                         static_cast<long long>(v.rows));
                off = align_up(off, kSlabAlign);
                ExpertSlab slab;
                slab.rows = r;
                slab.row_bytes = v.row_bytes;
                slab.expert_stride = static_cast<size_t>(std::max<int64_t>(0, r.size())) * v.row_bytes;
                slab.data = reinterpret_cast<const uint8_t*>(off);  // offset for now
                c.slabs.push_back(slab);
                off += slab.expert_stride * E;
            }
        }
        c.buffer = s.interleave ? NodeBuffer::interleaved(*topology, s.interleave_nodes, off)
                                : NodeBuffer::on_node(*topology, s.memory_node, off);
        for (auto& slab : c.slabs) slab.data = c.buffer.data() + reinterpret_cast<uintptr_t>(slab.data);
        store->copies_.push_back(std::move(c));
        const int idx = static_cast<int>(store->copies_.size() - 1);
        for (int r : s.readers) store->reader_copy_.emplace_back(r, idx);
    }

    // Copy: item = (layer, matrix, expert) of one copy.
    const int64_t per_copy = static_cast<int64_t>(layers.size()) * 3 * static_cast<int64_t>(E);
    auto copy_item = [&](Copy& c, int64_t item) {
        const int64_t e = item % static_cast<int64_t>(E);
        const int64_t lm = item / static_cast<int64_t>(E);
        const size_t l = static_cast<size_t>(lm / 3);
        const int m = static_cast<int>(lm % 3);
        const auto& v = view_of(layers[l], m);
        const ExpertSlab& slab = c.slabs[static_cast<size_t>(lm)];
        if (slab.expert_stride == 0) return;
        const uint8_t* src = v.data + static_cast<size_t>(e) * static_cast<size_t>(v.rows) * v.row_bytes +
                             static_cast<size_t>(slab.rows.begin) * v.row_bytes;
        std::memcpy(const_cast<uint8_t*>(slab.expert(e)), src, slab.expert_stride);
    };
    if (plan.policy == PlacementPolicy::Interleave) {
        Copy& c = store->copies_.front();
        pool.parallel_for_all(per_copy, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) copy_item(c, i);
        });
    } else {
        // Each sub-pool copies its copies, all sub-pools at once.
        std::vector<std::vector<int>> by_pool(static_cast<size_t>(pool.n_nodes()));
        for (size_t i = 0; i < store->copies_.size(); ++i)
            by_pool[static_cast<size_t>(store->copies_[i].copier)].push_back(static_cast<int>(i));
        std::vector<int64_t> n(by_pool.size());
        for (size_t k = 0; k < by_pool.size(); ++k) n[k] = per_copy * static_cast<int64_t>(by_pool[k].size());
        pool.parallel_for_nodes(std::span<const int64_t>(n), [&](int node, int64_t b, int64_t e, int) {
            const auto& mine = by_pool[static_cast<size_t>(node)];
            for (int64_t i = b; i < e; ++i)
                copy_item(store->copies_[static_cast<size_t>(mine[static_cast<size_t>(i / per_copy)])], i % per_copy);
        });
    }
    DS4_LOG_INFO("placement: copied routed experts into %zu %s buffer(s), %s in total", store->copies_.size(),
                 plan.policy == PlacementPolicy::Interleave ? "interleaved" : "node-bound",
                 format_bytes(store->bytes()).c_str());
    return store;
}

const ExpertSlab& ExpertStore::slab(int os_index, int layer, ExpertMatrix m) const {
    if (layer < 0 || layer >= n_layer_) fail(ErrorCode::InvalidArgument, "expert store: layer %d out of range", layer);
    for (const auto& [node, idx] : reader_copy_)
        if (node == os_index)
            return copies_[static_cast<size_t>(idx)].slabs[static_cast<size_t>(layer) * 3 + static_cast<size_t>(m)];
    fail(ErrorCode::InvalidArgument, "expert store: node %d runs no workers", os_index);
}

uint64_t ExpertStore::bytes() const noexcept {
    uint64_t b = 0;
    for (const auto& c : copies_) b += c.buffer.size();
    return b;
}

void ExpertStore::measure(PlacementPlan& plan, size_t max_samples) const {
    std::vector<std::optional<PageLocations>> m;
    for (const auto& c : copies_) m.push_back(measure_pages(*topology_, c.buffer.data(), c.buffer.size(), max_samples));
    for (const auto& [node, idx] : reader_copy_) {
        for (auto& pn : plan.nodes)
            if (pn.os_index == node) pn.measured = m[static_cast<size_t>(idx)];
    }
}

std::optional<PageLocations> measure_areas(const Topology& topology, std::span<const MemoryArea> areas,
                                           size_t max_samples) {
    if (!topology.memlocation_supported()) return std::nullopt;
    uint64_t total = 0;
    for (const auto& a : areas) total += a.bytes;
    PageLocations sum;
    for (const auto& a : areas) {
        if (!a.data || a.bytes == 0) continue;
        const size_t share = std::max<size_t>(
            1, static_cast<size_t>(static_cast<double>(max_samples) * static_cast<double>(a.bytes) /
                                   static_cast<double>(std::max<uint64_t>(1, total))));
        auto loc = measure_pages(topology, a.data, a.bytes, share);
        if (!loc) return std::nullopt;
        sum.bytes += loc->bytes;
        sum.not_resident += loc->not_resident;
        sum.pages_sampled += loc->pages_sampled;
        sum.pages_total += loc->pages_total;
        for (const auto& [node, b] : loc->on_node) {
            auto it = std::find_if(sum.on_node.begin(), sum.on_node.end(), [&, n = node](const auto& p) { return p.first == n; });
            if (it == sum.on_node.end())
                sum.on_node.emplace_back(node, b);
            else
                it->second += b;
        }
    }
    std::sort(sum.on_node.begin(), sum.on_node.end());
    return sum;
}

}  // namespace ds4::placement
