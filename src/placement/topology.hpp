// Internal: the machine as the placement code sees it, read through hwloc.
//
// A Topology lists the NUMA nodes that can run workers: each with its OS
// index, its local memory, and its physical cores (one entry per core, never
// per SMT thread). It is loaded from the real machine, from an hwloc XML
// export, or from an hwloc synthetic description such as
// "pack:2 numa:1 core:4 pu:2" (2 nodes x 4 cores x 2 SMT threads), so that
// plans for multi-node machines can be tested on a single-node box.
//
// Core -> node assignment: every core belongs to exactly one node, the most
// local NUMA node whose cpuset contains it (smallest cpuset; among equals a
// node without an hwloc subtype such as "HBM"/"MCDRAM" and with memory, then
// the lowest OS index). A NUMA node that no core picks is listed with no
// cores ("CPU-less", e.g. CXL or HBM memory); a node whose local memory is 0
// is "memory-less". (Where hwloc does not report a memory-less node as a
// NUMA object at all, its cores count under the most local node that covers
// them, and their reads are remote without a warning.)
//
// A Topology is immutable after load and safe to read from any thread
// (hwloc allows concurrent queries and binding calls on a loaded topology).
// It is shared by pointer because worker pools and node buffers keep it alive.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct hwloc_topology;

namespace ds4::placement {

struct TopoCore {
    int logical_index = 0;    // hwloc logical index of the core
    int first_pu = 0;         // OS index of the core's first PU (hardware thread)
    std::vector<int> pus;     // OS indices of all its PUs (SMT siblings)
};

struct TopoNode {
    int os_index = 0;              // OS NUMA node number (as numactl prints it)
    int logical_index = 0;         // hwloc logical index
    uint64_t local_memory = 0;     // bytes (0: memory-less node)
    std::string subtype;           // hwloc subtype ("" for normal DRAM, "HBM", ...)
    std::vector<TopoCore> cores;   // physical cores assigned to this node (may be empty)

    bool has_memory() const { return local_memory > 0; }
    bool has_cores() const { return !cores.empty(); }
    int n_pus() const;
};

struct TopologyOptions {
    // Value reported for /proc/sys/kernel/numa_balancing. -1: read it from
    // /proc when the topology is the running machine, else 0.
    int numa_balancing = -1;
};

class Topology {
public:
    // The machine this process runs on (restricted to the CPUs and nodes the
    // process is allowed to use).
    static std::shared_ptr<const Topology> load_system(const TopologyOptions& options = {});
    // An hwloc XML export (lstopo foo.xml / hwloc_topology_export_xml).
    static std::shared_ptr<const Topology> from_xml_string(std::string_view xml, const TopologyOptions& options = {});
    static std::shared_ptr<const Topology> from_xml_file(const std::string& path, const TopologyOptions& options = {});
    // An hwloc synthetic description, e.g. "pack:2 numa:1 core:4 pu:2" or
    // "pack:2 [numa(memory=68719476736)] core:8 pu:2".
    static std::shared_ptr<const Topology> from_synthetic(const std::string& description,
                                                          const TopologyOptions& options = {});

    // By specification: "" or "system" = load_system(); "synthetic:<desc>";
    // "xml:<path>". Lets the engine and tools run on a described machine
    // (tests of multi-node plans on a single-node box).
    static std::shared_ptr<const Topology> load(std::string_view spec, const TopologyOptions& options = {});

    ~Topology();
    Topology(const Topology&) = delete;
    Topology& operator=(const Topology&) = delete;

    // Every NUMA node, ordered by OS index.
    const std::vector<TopoNode>& nodes() const noexcept { return nodes_; }
    // Index into nodes() of the node with this OS index, or -1.
    int find_node(int os_index) const noexcept;
    int total_cores() const noexcept;
    int total_pus() const noexcept;

    // True when the topology describes the running machine (binding and
    // memory queries are meaningful); false for XML/synthetic topologies.
    bool is_this_system() const noexcept { return this_system_; }
    bool cpubind_supported() const noexcept { return cpubind_; }
    bool membind_supported() const noexcept { return membind_; }
    bool alloc_membind_supported() const noexcept { return alloc_membind_; }
    bool memlocation_supported() const noexcept { return memlocation_; }
    int numa_balancing() const noexcept { return numa_balancing_; }
    // Where the topology came from ("system", "synthetic:<desc>", "xml").
    const std::string& source() const noexcept { return source_; }

    // OS index of the node whose cores include the CPU the calling thread
    // last ran on; -1 when unknown (not this system, or query failed).
    int current_node() const noexcept;

    // Bind the calling thread to the physical core whose first PU is
    // `first_pu` (all its SMT siblings), or to every core of node `os_index`.
    // Return false (and change nothing) when binding is unsupported or fails.
    bool bind_thread_to_core(int first_pu) const noexcept;
    bool bind_thread_to_node(int os_index) const noexcept;
    // Prefer memory of node `os_index` for the calling thread's future
    // allocations (hwloc_set_membind, thread scope). False when unsupported.
    bool bind_thread_memory(int os_index) const noexcept;

    // hwloc XML export of the loaded topology (for bug reports and tests).
    std::string to_xml() const;

    // The hwloc handle (internal; hwloc allows concurrent read-only use).
    hwloc_topology* handle() const noexcept { return topo_; }

private:
    Topology() = default;
    static std::shared_ptr<const Topology> load_xml(const std::string& xml, std::string source,
                                                    const TopologyOptions& options);
    static std::shared_ptr<const Topology> finish(hwloc_topology* topo, std::string source,
                                                  const TopologyOptions& options);

    hwloc_topology* topo_ = nullptr;
    std::vector<TopoNode> nodes_;
    bool this_system_ = false;
    bool cpubind_ = false, membind_ = false, alloc_membind_ = false, memlocation_ = false;
    int numa_balancing_ = 0;
    std::string source_;
};

// /proc/sys/kernel/numa_balancing: 0 or 1 (or 2 for memory tiering); -1 if
// the file cannot be read.
int read_numa_balancing() noexcept;

}  // namespace ds4::placement
