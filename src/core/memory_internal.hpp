// Internal: large allocations checked against the machine's memory.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <new>
#include <string>

#include "core/error_internal.hpp"

namespace ds4::detail {

// Bytes of physical memory (0 if unknown).
inline uint64_t physical_memory_bytes() noexcept {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

// Runs `allocate` (which allocates about `bytes`) unless that is more than
// half of the machine's memory: filling it would drive the host into swap or
// the OOM killer. Both that and std::bad_alloc throw OutOfMemory naming
// `what` and the size, followed by `hint` (what the caller can change).
template <class F>
void allocate_checked(const std::string& what, uint64_t bytes, const char* hint, F&& allocate) {
    const double mib = static_cast<double>(bytes) / 1048576.0;
    const uint64_t ram = physical_memory_bytes();
    if (ram != 0 && bytes > ram / 2)
        fail(ErrorCode::OutOfMemory, "%s needs %.1f MiB, more than half of this machine's %.1f MiB of memory; %s",
             what.c_str(), mib, static_cast<double>(ram) / 1048576.0, hint);
    try {
        allocate();
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::OutOfMemory, "%s needs %.1f MiB: out of memory; %s", what.c_str(), mib, hint);
    }
}

}  // namespace ds4::detail
