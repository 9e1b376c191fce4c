// The public placement value types: names, helpers and describe().
#include <algorithm>
#include <cctype>

#include "ds4/placement.hpp"
#include "placement/format.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using placement::format_bytes;
using placement::format_index_list;

std::string_view to_string(PlacementPolicy policy) noexcept {
    switch (policy) {
        case PlacementPolicy::Auto: return "auto";
        case PlacementPolicy::SingleNode: return "single-node";
        case PlacementPolicy::Interleave: return "interleave";
        case PlacementPolicy::Replicate: return "replicate";
        case PlacementPolicy::SplitExperts: return "split-experts";
    }
    return "?";
}

std::optional<PlacementPolicy> parse_placement_policy(std::string_view name) noexcept {
    std::string s;
    for (char c : name) {
        if (c == '_') c = '-';
        s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    for (PlacementPolicy p : {PlacementPolicy::Auto, PlacementPolicy::SingleNode, PlacementPolicy::Interleave,
                              PlacementPolicy::Replicate, PlacementPolicy::SplitExperts}) {
        std::string n(to_string(p));
        std::string compact;
        for (char c : n)
            if (c != '-') compact += c;
        if (s == n || s == compact) return p;
    }
    return std::nullopt;
}

PlacementRequest PlacementRequest::uniform(int n_layer, int n_expert, ExpertMatrixShape gate, ExpertMatrixShape up,
                                           ExpertMatrixShape down, uint64_t other_bytes) {
    PlacementRequest r;
    r.n_expert = n_expert;
    r.layers.assign(static_cast<size_t>(std::max(0, n_layer)), LayerExpertShapes{gate, up, down});
    r.other_bytes = other_bytes;
    return r;
}

uint64_t PlacementRequest::routed_expert_bytes() const noexcept {
    uint64_t b = 0;
    for (const auto& L : layers) b += L.gate.expert_bytes() + L.up.expert_bytes() + L.down.expert_bytes();
    return b * static_cast<uint64_t>(std::max(0, n_expert));
}

uint64_t PageLocations::bytes_on(int os_index) const noexcept {
    for (const auto& [node, bytes] : on_node)
        if (node == os_index) return bytes;
    return 0;
}

const PlacementNode* PlacementPlan::node(int os_index) const noexcept {
    for (const auto& n : nodes)
        if (n.os_index == os_index) return &n;
    return nullptr;
}

int PlacementPlan::used_nodes() const noexcept {
    int n = 0;
    for (const auto& nd : nodes)
        if (nd.n_threads > 0) ++n;
    return n;
}

uint64_t PlacementPlan::total_routed_bytes_held() const noexcept {
    uint64_t b = 0;
    for (const auto& n : nodes) b += n.routed_expert_bytes;
    return b;
}

namespace {

std::string describe_locations(const PageLocations& m) {
    std::string s;
    for (const auto& [node, bytes] : m.on_node) {
        if (!s.empty()) s += ", ";
        s += format_bytes(bytes) + " on node " + std::to_string(node);
    }
    if (m.not_resident > 0) {
        if (!s.empty()) s += ", ";
        s += format_bytes(m.not_resident) + " not resident";
    }
    if (s.empty()) s = "nothing";
    if (m.pages_sampled < m.pages_total)
        s += detail::format(" (estimated from %zu of %zu pages)", m.pages_sampled, m.pages_total);
    return s;
}

std::string describe_rows(const std::vector<LayerRows>& rows) {
    if (rows.empty()) return "";
    const bool same = std::all_of(rows.begin(), rows.end(), [&](const LayerRows& r) { return r == rows.front(); });
    const auto& r = rows.front();
    std::string s = detail::format("gate/up rows [%lld, %lld), down rows [%lld, %lld)",
                                   static_cast<long long>(r.ff.begin), static_cast<long long>(r.ff.end),
                                   static_cast<long long>(r.out.begin), static_cast<long long>(r.out.end));
    s += same ? " of every expert in every layer" : " of every expert in layer 0 (other layers differ)";
    return s;
}

}  // namespace

std::string PlacementPlan::describe() const {
    std::string s;
    s += detail::format("placement: %s", std::string(to_string(policy)).c_str());
    if (requested == PlacementPolicy::Auto)
        s += " (" + reason + ")";
    else
        s += " (requested)";
    s += "\n";
    s += detail::format("threads: %d, one per physical core, on %d of %zu node(s); core binding %s; topology %s\n",
                        n_threads, used_nodes(), nodes.size(), binding_supported ? "supported" : "not supported",
                        topology.c_str());
    if (copies_experts)
        s += detail::format("routed experts: %s per copy, %s in node memory, copied from the file into node-bound "
                            "memory\n",
                            format_bytes(routed_expert_bytes).c_str(), format_bytes(total_routed_bytes_held()).c_str());
    else
        s += detail::format("routed experts: %s, mapped from the file (not copied)\n",
                            format_bytes(routed_expert_bytes).c_str());
    s += detail::format("other weights: %s, mapped from the file\n", format_bytes(other_bytes).c_str());
    if (policy == PlacementPolicy::SplitExperts || policy == PlacementPolicy::Replicate ||
        policy == PlacementPolicy::Interleave)
        s += detail::format("split granule: %lld rows\n", static_cast<long long>(split_granule));
    bool printed_interleave = false;
    for (const auto& n : nodes) {
        s += detail::format("node %d: %s memory, %d cores / %d hw threads", n.os_index,
                            format_bytes(n.local_memory).c_str(), n.physical_cores, n.smt_threads);
        if (n.n_threads > 0)
            s += detail::format(", %d workers on cores (first PU) %s", n.n_threads,
                                format_index_list(n.cores).c_str());
        else
            s += ", no workers";
        s += "\n";
        s += detail::format("  holds: routed experts %s (%s), other weights %s (expected)", 
                            format_bytes(n.routed_expert_bytes).c_str(), copies_experts ? "copied" : "expected",
                            format_bytes(n.other_bytes).c_str());
        if (n.memory_node != n.os_index && n.n_threads > 0)
            s += detail::format("; its workers read node %d's memory", n.memory_node);
        s += "\n";
        if (n.n_threads > 0 && !n.rows.empty()) s += "  computes: " + describe_rows(n.rows) + "\n";
        if (n.measured && !(policy == PlacementPolicy::Interleave && printed_interleave)) {
            s += std::string(policy == PlacementPolicy::Interleave ? "  measured (interleaved buffer): "
                                                                   : "  measured: ") +
                 describe_locations(*n.measured) + "\n";
            printed_interleave = true;
        }
    }
    if (measured_other) s += "other weights measured: " + describe_locations(*measured_other) + "\n";
    if (!warnings.empty()) {
        s += "warnings:\n";
        for (const auto& w : warnings) s += "  - " + w + "\n";
    }
    return s;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
