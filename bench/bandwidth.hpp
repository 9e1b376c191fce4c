// Memory read-bandwidth probe: the roofline the matrix-vector kernels are
// measured against.
//
// A read-only stream over a buffer of at least 1 GiB (far larger than any
// cache), split into one contiguous slice per OpenMP thread; each thread sums
// its slice with wide loads and several independent accumulators so that the
// loop is limited by memory, not by the adds. The buffer is touched first by
// the threads that later read it (first-touch NUMA placement). The result is
// the best of several passes, in GB/s (1e9 bytes per second).
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace ds4::bench {

namespace bw_detail {

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

// Sum of n 64-bit words (n a multiple of 32), 4 x 512-bit accumulators.
__attribute__((target("avx512f"))) inline uint64_t sum_words_avx512(const uint64_t* p, size_t n) {
    typedef long long v8 __attribute__((vector_size(64)));
    v8 a = {}, b = {}, c = {}, d = {};
    for (size_t i = 0; i < n; i += 32) {
        v8 x0, x1, x2, x3;
        std::memcpy(&x0, p + i, 64);
        std::memcpy(&x1, p + i + 8, 64);
        std::memcpy(&x2, p + i + 16, 64);
        std::memcpy(&x3, p + i + 24, 64);
        a += x0;
        b += x1;
        c += x2;
        d += x3;
    }
    a += b + c + d;
    uint64_t s = 0;
    for (int k = 0; k < 8; ++k) s += static_cast<uint64_t>(a[k]);
    return s;
}

__attribute__((target("avx2"))) inline uint64_t sum_words_avx2(const uint64_t* p, size_t n) {
    typedef long long v4 __attribute__((vector_size(32)));
    v4 a = {}, b = {}, c = {}, d = {};
    for (size_t i = 0; i < n; i += 16) {
        v4 x0, x1, x2, x3;
        std::memcpy(&x0, p + i, 32);
        std::memcpy(&x1, p + i + 4, 32);
        std::memcpy(&x2, p + i + 8, 32);
        std::memcpy(&x3, p + i + 12, 32);
        a += x0;
        b += x1;
        c += x2;
        d += x3;
    }
    a += b + c + d;
    uint64_t s = 0;
    for (int k = 0; k < 4; ++k) s += static_cast<uint64_t>(a[k]);
    return s;
}

inline uint64_t sum_words(const uint64_t* p, size_t n) {
    if (__builtin_cpu_supports("avx512f")) return sum_words_avx512(p, n);
    if (__builtin_cpu_supports("avx2")) return sum_words_avx2(p, n);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

}  // namespace bw_detail

// Best-of-`passes` read bandwidth in GB/s with `threads` OpenMP threads over
// `bytes` bytes (rounded down to a multiple of 4 KiB per thread).
inline double read_bandwidth_gbs(int threads, size_t bytes = size_t{1} << 30, int passes = 10) {
    threads = std::max(1, threads);
    const size_t words_per_thread = (bytes / 8 / static_cast<size_t>(threads)) & ~size_t{511};
    const size_t words = words_per_thread * static_cast<size_t>(threads);
    std::unique_ptr<uint64_t, bw_detail::FreeDeleter> buf(
        static_cast<uint64_t*>(std::aligned_alloc(4096, words * 8)));
    if (!buf) return 0.0;
    uint64_t* p = buf.get();
#pragma omp parallel num_threads(threads)
    {
        const size_t t = static_cast<size_t>(omp_get_thread_num());
        uint64_t* s = p + t * words_per_thread;
        for (size_t i = 0; i < words_per_thread; ++i) s[i] = i * 0x9E3779B97F4A7C15ull + t;
    }
    double best = 0.0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < passes; ++pass) {
        uint64_t total = 0;
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            const size_t t = static_cast<size_t>(omp_get_thread_num());
            total += bw_detail::sum_words(p + t * words_per_thread, words_per_thread);
        }
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        sink = sink + total;
        best = std::max(best, static_cast<double>(words * 8) / sec / 1e9);
    }
    return best;
}

}  // namespace ds4::bench
