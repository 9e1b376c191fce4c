// Internal: anonymous memory placed on NUMA nodes, and where pages really are.
//
// Why copies: an mmap'd GGUF file is a *shared file mapping*. Linux ignores
// mbind() (and so hwloc_set_area_membind) for such mappings: page-cache
// pages land on the node of whichever thread faults them first, and pages
// already cached stay where they are. The only way to decide where a routed
// expert lives is to copy it into anonymous memory whose policy says so.
// NodeBuffer is that memory: an anonymous private mapping (2 MiB aligned,
// transparent huge pages requested) with a "preferred node" (or interleave)
// policy set through hwloc before any page is touched. The policy is a
// preference, not a strict bind: when a node runs out of memory, pages spill
// to another node instead of the process being killed; measure_pages()
// reveals it and the plan reports it.
//
// When the machine cannot bind memory (no NUMA support, a container without
// the syscalls, a synthetic topology), the buffer is allocated without a
// policy and a warning is logged once; pages then follow the first touch,
// which is why copies are made by threads bound to the target node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "ds4/placement.hpp"
#include "placement/topology.hpp"

namespace ds4::placement {

class NodeBuffer {
public:
    NodeBuffer() = default;
    ~NodeBuffer();
    NodeBuffer(NodeBuffer&& other) noexcept;
    NodeBuffer& operator=(NodeBuffer&& other) noexcept;
    NodeBuffer(const NodeBuffer&) = delete;
    NodeBuffer& operator=(const NodeBuffer&) = delete;

    // `bytes` of zero-filled memory whose pages prefer node `os_index`. No
    // page is touched yet. Throws ds4::Error(OutOfMemory) when the mapping
    // fails, InvalidArgument for an unknown node.
    static NodeBuffer on_node(const Topology& topology, int os_index, size_t bytes);
    // `bytes` whose pages are interleaved over `os_indices` (page i on the
    // (i mod n)-th node, the kernel choosing where the cycle starts).
    static NodeBuffer interleaved(const Topology& topology, const std::vector<int>& os_indices, size_t bytes);

    uint8_t* data() noexcept { return data_; }
    const uint8_t* data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    // Nodes of the policy (one node, or the interleave set).
    const std::vector<int>& nodes() const noexcept { return nodes_; }
    // True when the memory policy was applied; false for the unbound fallback.
    bool bound() const noexcept { return bound_; }
    bool interleave() const noexcept { return interleave_; }

private:
    static NodeBuffer make(const Topology& topology, const std::vector<int>& os_indices, size_t bytes, bool interleave);
    void release() noexcept;

    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    void* map_ = nullptr;  // the whole mapping (data_ is aligned inside it)
    size_t map_size_ = 0;
    std::vector<int> nodes_;
    bool bound_ = false;
    bool interleave_ = false;
};

// Write one byte per page of [p, p + bytes) from a temporary thread bound to
// node `os_index`'s cores (from the calling thread when binding is not
// supported), so that unbound memory gets its pages on that node.
void first_touch_on_node(const Topology& topology, int os_index, void* p, size_t bytes);

// Read one byte per page of [p, p + bytes) (fault in mapped file pages).
// Returns a value derived from the bytes so the reads are not optimized away.
uint64_t prefault_read(const void* p, size_t bytes) noexcept;

// Where the pages of [p, p + bytes) are (hwloc_get_area_memlocation, page by
// page). At most `max_samples` pages are queried, evenly spread; the byte
// counts are then estimates. Returns nullopt when the topology cannot tell
// (not this system, or no support).
std::optional<PageLocations> measure_pages(const Topology& topology, const void* p, size_t bytes,
                                           size_t max_samples = 4096);

// Page size used for touching and measuring (sysconf(_SC_PAGESIZE)).
size_t page_size() noexcept;

}  // namespace ds4::placement
