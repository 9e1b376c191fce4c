// The worker pool's hot path allocates nothing: the global operator new is
// replaced here (in this executable only) by a counting one.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "placement/worker_pool.hpp"

namespace {
std::atomic<uint64_t> g_news{0};

void* counted_alloc(std::size_t n, std::size_t align) {
    g_news.fetch_add(1, std::memory_order_relaxed);
    if (n == 0) n = 1;
    void* p = nullptr;
    if (align <= alignof(std::max_align_t)) {
        p = std::malloc(n);
    } else if (posix_memalign(&p, align, n) != 0) {
        p = nullptr;
    }
    return p;
}
}  // namespace

void* operator new(std::size_t n) {
    if (void* p = counted_alloc(n, 0)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    if (void* p = counted_alloc(n, 0)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
    if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
    if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using namespace ds4::placement;

TEST(WorkerPoolAlloc, CountingWorks) {
    const uint64_t before = g_news.load();
    auto* v = new std::vector<int>(10);
    delete v;
    EXPECT_GE(g_news.load(), before + 2);
}

TEST(WorkerPoolAlloc, RunsDoNotAllocate) {
    for (int spin : {20000, 0}) {  // spinning and sleeping waits
        WorkerPoolOptions o;
        o.worker_spin = spin;
        o.caller_spin = spin;
        WorkerPool pool({2, 1, 2}, o);
        std::vector<double> out(4096);
        const std::vector<int64_t> per_node = {1000, 0, 3000};
        // parallel_for_nodes gives each node rows [0, n): one output per node.
        std::vector<std::vector<double>> node_out(per_node.size(), std::vector<double>(3000));
        // Warm-up run (thread-local and futex tables settle).
        pool.parallel_for_all(4096, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = 1.0;
        });
        const uint64_t before = g_news.load();
        for (int run = 0; run < 300; ++run) {
            pool.parallel_for_all(4096, [&](int64_t b, int64_t e, int w) {
                for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = i * 0.5 + w + run;
            }, 64);
            pool.parallel_for(2, 777, [&](int64_t b, int64_t e, int) {
                for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] += 1.0;
            }, 1, Schedule::Dynamic);
            pool.parallel_for_nodes(std::span<const int64_t>(per_node), [&](int node, int64_t b, int64_t e, int) {
                for (int64_t i = b; i < e; ++i) node_out[static_cast<size_t>(node)][static_cast<size_t>(i)] += node;
            });
        }
        const uint64_t after = g_news.load();
        EXPECT_EQ(after, before) << "spin " << spin;
        EXPECT_EQ(pool.stats().runs, 1u + 3u * 300u);
    }
}
