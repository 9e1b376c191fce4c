#include "placement/topology.hpp"

#include <hwloc.h>
#include <hwloc/export.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error_internal.hpp"
#include "core/file_io.hpp"
#include "core/log_internal.hpp"

namespace ds4::placement {

namespace {

// hwloc's XML of a large machine is a few MiB.
constexpr uint64_t kMaxTopologyXml = uint64_t{256} << 20;

struct TopoGuard {
    hwloc_topology_t t = nullptr;
    ~TopoGuard() {
        if (t) hwloc_topology_destroy(t);
    }
    hwloc_topology_t release() {
        hwloc_topology_t r = t;
        t = nullptr;
        return r;
    }
};

hwloc_topology_t init_topology() {
    hwloc_topology_t t = nullptr;
    if (hwloc_topology_init(&t) != 0)
        detail::fail(ErrorCode::Internal, "hwloc_topology_init failed: %s", std::strerror(errno));
    return t;
}

void load_or_fail(hwloc_topology_t t, const char* what) {
    if (hwloc_topology_load(t) != 0)
        detail::fail(ErrorCode::InvalidArgument, "hwloc could not load the %s topology: %s", what, std::strerror(errno));
}

// Rank of a NUMA node as the home of a core among nodes with equal locality:
// normal memory first, then any memory, then the rest.
int node_rank(hwloc_obj_t n) {
    const bool has_mem = n->attr && n->attr->numanode.local_memory > 0;
    const bool normal = n->subtype == nullptr || n->subtype[0] == '\0';
    if (has_mem && normal) return 0;
    if (has_mem) return 1;
    return 2;
}

}  // namespace

int TopoNode::n_pus() const {
    int n = 0;
    for (const auto& c : cores) n += static_cast<int>(c.pus.size());
    return n;
}

int read_numa_balancing() noexcept {
    std::FILE* f = std::fopen("/proc/sys/kernel/numa_balancing", "r");
    if (!f) return -1;
    int v = -1;
    if (std::fscanf(f, "%d", &v) != 1) v = -1;
    std::fclose(f);
    return v;
}

Topology::~Topology() {
    if (topo_) hwloc_topology_destroy(topo_);
}

std::shared_ptr<const Topology> Topology::load_system(const TopologyOptions& options) {
    TopoGuard g{init_topology()};
    load_or_fail(g.t, "system");
    return finish(g.release(), "system", options);
}

std::shared_ptr<const Topology> Topology::load(std::string_view spec, const TopologyOptions& options) {
    if (spec.empty() || spec == "system") return load_system(options);
    if (spec.starts_with("synthetic:")) return from_synthetic(std::string(spec.substr(10)), options);
    if (spec.starts_with("xml:")) return from_xml_file(std::string(spec.substr(4)), options);
    detail::fail(ErrorCode::InvalidArgument,
                 "topology '%.*s': expected \"system\", \"synthetic:<hwloc description>\" or \"xml:<path>\"",
                 static_cast<int>(spec.size()), spec.data());
}

std::shared_ptr<const Topology> Topology::from_xml_string(std::string_view xml, const TopologyOptions& options) {
    return load_xml(std::string(xml), "xml", options);
}

std::shared_ptr<const Topology> Topology::load_xml(const std::string& xml, std::string source,
                                                   const TopologyOptions& options) {
    TopoGuard g{init_topology()};
    if (hwloc_topology_set_xmlbuffer(g.t, xml.c_str(), static_cast<int>(xml.size() + 1)) != 0)
        detail::fail(ErrorCode::InvalidArgument, "hwloc rejected the XML topology (%s): %s", source.c_str(),
                     std::strerror(errno));
    load_or_fail(g.t, "XML");
    return finish(g.release(), std::move(source), options);
}

std::shared_ptr<const Topology> Topology::from_xml_file(const std::string& path, const TopologyOptions& options) {
    const std::vector<uint8_t> xml = detail::read_file(path, "topology XML", kMaxTopologyXml);
    return load_xml(std::string(xml.begin(), xml.end()), "xml:" + path, options);
}

std::shared_ptr<const Topology> Topology::from_synthetic(const std::string& description, const TopologyOptions& options) {
    TopoGuard g{init_topology()};
    if (hwloc_topology_set_synthetic(g.t, description.c_str()) != 0)
        detail::fail(ErrorCode::InvalidArgument, "invalid hwloc synthetic topology '%s'", description.c_str());
    load_or_fail(g.t, "synthetic");
    return finish(g.release(), "synthetic:" + description, options);
}

std::shared_ptr<const Topology> Topology::finish(hwloc_topology* topo, std::string source, const TopologyOptions& options) {
    std::shared_ptr<Topology> self(new Topology());
    self->topo_ = topo;
    self->source_ = std::move(source);
    self->this_system_ = hwloc_topology_is_thissystem(topo) != 0;

    const hwloc_topology_support* sup = hwloc_topology_get_support(topo);
    if (self->this_system_ && sup) {
        self->cpubind_ = sup->cpubind && sup->cpubind->set_thread_cpubind;
        self->membind_ = sup->membind && sup->membind->set_thisthread_membind && sup->membind->bind_membind;
        self->alloc_membind_ = sup->membind && sup->membind->alloc_membind && sup->membind->bind_membind;
        self->memlocation_ = sup->membind && sup->membind->get_area_memlocation;
    }
    if (options.numa_balancing >= 0)
        self->numa_balancing_ = options.numa_balancing;
    else
        self->numa_balancing_ = self->this_system_ ? std::max(0, read_numa_balancing()) : 0;

    // NUMA nodes.
    const int n_numa = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    std::vector<hwloc_obj_t> numa;
    for (int i = 0; i < n_numa; ++i) numa.push_back(hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i)));
    std::sort(numa.begin(), numa.end(), [](hwloc_obj_t a, hwloc_obj_t b) { return a->os_index < b->os_index; });
    for (hwloc_obj_t n : numa) {
        TopoNode tn;
        tn.os_index = static_cast<int>(n->os_index);
        tn.logical_index = static_cast<int>(n->logical_index);
        tn.local_memory = n->attr ? n->attr->numanode.local_memory : 0;
        tn.subtype = n->subtype ? n->subtype : "";
        self->nodes_.push_back(std::move(tn));
    }

    // Cores (PUs stand in for cores when the topology has no core level).
    hwloc_obj_type_t core_type = HWLOC_OBJ_CORE;
    int n_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    if (n_cores <= 0) {
        core_type = HWLOC_OBJ_PU;
        n_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    }
    for (int i = 0; i < n_cores; ++i) {
        hwloc_obj_t c = hwloc_get_obj_by_type(topo, core_type, static_cast<unsigned>(i));
        if (!c || !c->cpuset || hwloc_bitmap_iszero(c->cpuset)) continue;
        // Most local node containing the core.
        int best = -1, best_weight = 0, best_rank = 0;
        for (size_t k = 0; k < numa.size(); ++k) {
            hwloc_obj_t n = numa[k];
            if (!n->cpuset || !hwloc_bitmap_isincluded(c->cpuset, n->cpuset)) continue;
            const int w = hwloc_bitmap_weight(n->cpuset);
            const int r = node_rank(n);
            if (best < 0 || w < best_weight || (w == best_weight && r < best_rank)) {
                best = static_cast<int>(k);
                best_weight = w;
                best_rank = r;
            }
        }
        if (best < 0) {
            DS4_LOG_WARN("placement: core L#%u is in no NUMA node's cpuset; ignored", c->logical_index);
            continue;
        }
        TopoCore tc;
        tc.logical_index = static_cast<int>(c->logical_index);
        unsigned pu = 0;
        hwloc_bitmap_foreach_begin(pu, c->cpuset) { tc.pus.push_back(static_cast<int>(pu)); }
        hwloc_bitmap_foreach_end();
        tc.first_pu = tc.pus.front();
        self->nodes_[static_cast<size_t>(best)].cores.push_back(std::move(tc));
    }
    for (auto& n : self->nodes_)
        std::sort(n.cores.begin(), n.cores.end(),
                  [](const TopoCore& a, const TopoCore& b) { return a.logical_index < b.logical_index; });
    return self;
}

int Topology::find_node(int os_index) const noexcept {
    for (size_t i = 0; i < nodes_.size(); ++i)
        if (nodes_[i].os_index == os_index) return static_cast<int>(i);
    return -1;
}

int Topology::total_cores() const noexcept {
    int n = 0;
    for (const auto& nd : nodes_) n += static_cast<int>(nd.cores.size());
    return n;
}

int Topology::total_pus() const noexcept {
    int n = 0;
    for (const auto& nd : nodes_) n += nd.n_pus();
    return n;
}

int Topology::current_node() const noexcept {
    if (!this_system_) return -1;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return -1;
    int result = -1;
    if (hwloc_get_last_cpu_location(topo_, set, HWLOC_CPUBIND_THREAD) == 0) {
        const int pu = hwloc_bitmap_first(set);
        for (const auto& n : nodes_) {
            for (const auto& c : n.cores)
                if (std::find(c.pus.begin(), c.pus.end(), pu) != c.pus.end()) result = n.os_index;
        }
    }
    hwloc_bitmap_free(set);
    return result;
}

bool Topology::bind_thread_to_core(int first_pu) const noexcept {
    if (!cpubind_) return false;
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topo_, static_cast<unsigned>(first_pu));
    if (!pu) return false;
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo_, HWLOC_OBJ_CORE, pu);
    hwloc_const_cpuset_t set = core ? core->cpuset : pu->cpuset;
    return hwloc_set_cpubind(topo_, set, HWLOC_CPUBIND_THREAD) == 0;
}

bool Topology::bind_thread_to_node(int os_index) const noexcept {
    if (!cpubind_) return false;
    const int k = find_node(os_index);
    if (k < 0 || nodes_[static_cast<size_t>(k)].cores.empty()) return false;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return false;
    for (const auto& c : nodes_[static_cast<size_t>(k)].cores)
        for (int pu : c.pus) hwloc_bitmap_set(set, static_cast<unsigned>(pu));
    const bool ok = hwloc_set_cpubind(topo_, set, HWLOC_CPUBIND_THREAD) == 0;
    hwloc_bitmap_free(set);
    return ok;
}

bool Topology::bind_thread_memory(int os_index) const noexcept {
    if (!membind_) return false;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return false;
    hwloc_bitmap_only(set, static_cast<unsigned>(os_index));
    const bool ok =
        hwloc_set_membind(topo_, set, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) == 0;
    hwloc_bitmap_free(set);
    return ok;
}

std::string Topology::to_xml() const {
    char* buf = nullptr;
    int len = 0;
    if (hwloc_topology_export_xmlbuffer(topo_, &buf, &len, 0) != 0 || !buf)
        detail::fail(ErrorCode::Internal, "hwloc could not export the topology as XML");
    std::string s(buf, len > 0 ? static_cast<size_t>(len - 1) : 0);
    hwloc_free_xmlbuffer(topo_, buf);
    return s;
}

}  // namespace ds4::placement
