#include "placement/node_memory.hpp"

#include <hwloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"

namespace ds4::placement {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

std::atomic<bool> g_warned_unsupported{false};
std::atomic<bool> g_warned_failed{false};

void warn_once(std::atomic<bool>& flag, const std::string& msg) {
    if (!flag.exchange(true)) DS4_LOG_WARN("placement: %s", msg.c_str());
}

}  // namespace

size_t page_size() noexcept {
    static const size_t ps = [] {
        const long v = sysconf(_SC_PAGESIZE);
        return v > 0 ? static_cast<size_t>(v) : size_t{4096};
    }();
    return ps;
}

NodeBuffer::~NodeBuffer() { release(); }

NodeBuffer::NodeBuffer(NodeBuffer&& o) noexcept
    : data_(o.data_), size_(o.size_), map_(o.map_), map_size_(o.map_size_), nodes_(std::move(o.nodes_)),
      bound_(o.bound_), interleave_(o.interleave_) {
    o.data_ = nullptr;
    o.size_ = 0;
    o.map_ = nullptr;
    o.map_size_ = 0;
}

NodeBuffer& NodeBuffer::operator=(NodeBuffer&& o) noexcept {
    if (this != &o) {
        release();
        data_ = o.data_;
        size_ = o.size_;
        map_ = o.map_;
        map_size_ = o.map_size_;
        nodes_ = std::move(o.nodes_);
        bound_ = o.bound_;
        interleave_ = o.interleave_;
        o.data_ = nullptr;
        o.size_ = 0;
        o.map_ = nullptr;
        o.map_size_ = 0;
    }
    return *this;
}

void NodeBuffer::release() noexcept {
    if (map_) munmap(map_, map_size_);
    map_ = nullptr;
    map_size_ = 0;
    data_ = nullptr;
    size_ = 0;
}

NodeBuffer NodeBuffer::on_node(const Topology& topology, int os_index, size_t bytes) {
    return make(topology, {os_index}, bytes, false);
}

NodeBuffer NodeBuffer::interleaved(const Topology& topology, const std::vector<int>& os_indices, size_t bytes) {
    return make(topology, os_indices, bytes, true);
}

NodeBuffer NodeBuffer::make(const Topology& topology, const std::vector<int>& os_indices, size_t bytes,
                            bool interleave) {
    if (os_indices.empty()) detail::fail(ErrorCode::InvalidArgument, "placement: node buffer with no node");
    for (int n : os_indices)
        if (topology.find_node(n) < 0) detail::fail(ErrorCode::InvalidArgument, "placement: NUMA node %d does not exist", n);
    NodeBuffer b;
    b.nodes_ = os_indices;
    b.interleave_ = interleave;
    if (bytes == 0) return b;

    // Anonymous private mapping, 2 MiB aligned when large enough for huge pages.
    const size_t ps = page_size();
    const size_t align = bytes >= kHugePage ? kHugePage : ps;
    const size_t len = (bytes + ps - 1) / ps * ps;
    const size_t map_len = len + (align > ps ? align : 0);
    void* m = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        detail::fail(ErrorCode::OutOfMemory, "placement: cannot map %zu bytes for node %d: %s", bytes,
                     os_indices.front(), std::strerror(errno));
    b.map_ = m;
    b.map_size_ = map_len;
    const uintptr_t a = (reinterpret_cast<uintptr_t>(m) + align - 1) / align * align;
    b.data_ = reinterpret_cast<uint8_t*>(a);
    b.size_ = bytes;
#ifdef MADV_HUGEPAGE
    if (align == kHugePage) (void)madvise(b.data_, len, MADV_HUGEPAGE);
#endif

    if (!topology.alloc_membind_supported()) {
        warn_once(g_warned_unsupported,
                  detail::format("this topology (%s) cannot bind memory to NUMA nodes; node buffers are allocated "
                                 "without a policy and placed by the first touch",
                                 topology.source().c_str()));
        return b;
    }
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return b;
    for (int n : os_indices) hwloc_bitmap_set(set, static_cast<unsigned>(n));
    const hwloc_membind_policy_t policy = interleave ? HWLOC_MEMBIND_INTERLEAVE : HWLOC_MEMBIND_BIND;
    // Without HWLOC_MEMBIND_STRICT a single-node BIND is a preference
    // (MPOL_PREFERRED): a full node spills instead of failing.
    const int rc = hwloc_set_area_membind(topology.handle(), b.data_, len, set, policy, HWLOC_MEMBIND_BYNODESET);
    const int err = errno;
    hwloc_bitmap_free(set);
    if (rc == 0) {
        b.bound_ = true;
    } else {
        warn_once(g_warned_failed, detail::format("binding memory to NUMA node(s) failed (%s); node buffers are "
                                                  "allocated without a policy and placed by the first touch",
                                                  std::strerror(err)));
    }
    return b;
}

void first_touch_on_node(const Topology& topology, int os_index, void* p, size_t bytes) {
    if (!p || bytes == 0) return;
    auto touch = [p, bytes] {
        const size_t ps = page_size();
        volatile uint8_t* base = static_cast<volatile uint8_t*>(p);
        for (size_t off = 0; off < bytes; off += ps) base[off] = base[off];
        base[bytes - 1] = base[bytes - 1];
    };
    if (!topology.cpubind_supported()) {
        touch();
        return;
    }
    std::thread t([&] {
        (void)topology.bind_thread_to_node(os_index);
        (void)topology.bind_thread_memory(os_index);
        touch();
    });
    t.join();
}

uint64_t prefault_read(const void* p, size_t bytes) noexcept {
    if (!p || bytes == 0) return 0;
    const size_t ps = page_size();
    const volatile uint8_t* base = static_cast<const volatile uint8_t*>(p);
    uint64_t h = 0;
    for (size_t off = 0; off < bytes; off += ps) h = h * 31 + base[off];
    return h + base[bytes - 1];
}

std::optional<PageLocations> measure_pages(const Topology& topology, const void* p, size_t bytes, size_t max_samples) {
    if (!topology.memlocation_supported()) return std::nullopt;
    PageLocations loc;
    loc.bytes = bytes;
    if (!p || bytes == 0) return loc;
    const size_t ps = page_size();
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    const uintptr_t end = begin + bytes;
    const uintptr_t first = begin / ps * ps;
    const size_t n_pages = static_cast<size_t>((end - first + ps - 1) / ps);
    const size_t samples = std::max<size_t>(1, std::min(n_pages, max_samples));
    loc.pages_total = n_pages;
    loc.pages_sampled = samples;

    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return std::nullopt;
    std::map<int, uint64_t> counted;  // node -> bytes (exact) or sample count
    uint64_t missing = 0;
    for (size_t s = 0; s < samples; ++s) {
        // Evenly spread samples; all pages when samples == n_pages.
        const size_t page = samples == n_pages ? s : static_cast<size_t>((static_cast<unsigned __int128>(s) * n_pages) / samples);
        const uintptr_t lo = std::max<uintptr_t>(begin, first + page * ps);
        const uintptr_t hi = std::min<uintptr_t>(end, first + (page + 1) * ps);
        const uint64_t w = samples == n_pages ? hi - lo : 1;
        hwloc_bitmap_zero(set);
        const int rc = hwloc_get_area_memlocation(topology.handle(), reinterpret_cast<const void*>(lo), hi - lo, set,
                                                  HWLOC_MEMBIND_BYNODESET);
        const int node = rc == 0 ? hwloc_bitmap_first(set) : -1;
        if (node < 0)
            missing += w;
        else
            counted[node] += w;
    }
    hwloc_bitmap_free(set);
    if (samples == n_pages) {
        for (const auto& [node, b] : counted) loc.on_node.emplace_back(node, b);
        loc.not_resident = missing;
    } else {
        uint64_t given = 0;
        for (const auto& [node, c] : counted) {
            const uint64_t b = static_cast<uint64_t>(std::llround(static_cast<double>(c) / static_cast<double>(samples) *
                                                                  static_cast<double>(bytes)));
            loc.on_node.emplace_back(node, std::min<uint64_t>(b, bytes - given));
            given += loc.on_node.back().second;
        }
        loc.not_resident = bytes - given;
    }
    return loc;
}

}  // namespace ds4::placement
