// Arithmetic peak probe: the roofline prefill is measured against.
//
// Each thread runs a loop of independent multiply-add chains (12 vector
// accumulators, enough to cover the instruction latency) on values that stay
// in registers, so the loop is limited by the vector units alone. Two kinds:
//  - f32 FMA (AVX-512 if the CPU has it, else AVX2+FMA): the "FMA peak";
//  - int8 dot products (VPDPBUSD, AVX-512 VNNI; 0 where the CPU lacks it):
//    the instruction the quantized kernels spend their multiply-adds in.
// Results are multiply-adds per second (GMAC/s, one FMA lane = one MAC;
// FLOP/s is twice that), the best of a few passes, all threads together.
#pragma once

#include <omp.h>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace ds4::bench {

namespace peak_detail {

constexpr int kChains = 12;

__attribute__((target("avx512f"))) inline float fma_avx512(int64_t iters) {
    __m512 a[kChains];
    for (int k = 0; k < kChains; ++k) a[k] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(k));
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i)
        for (int k = 0; k < kChains; ++k) a[k] = _mm512_fmadd_ps(a[k], m, c);
    for (int k = 1; k < kChains; ++k) a[0] = _mm512_add_ps(a[0], a[k]);
    alignas(64) float out[16];
    _mm512_store_ps(out, a[0]);
    return out[0] + out[15];
}

__attribute__((target("avx2,fma"))) inline float fma_avx2(int64_t iters) {
    __m256 a[kChains];
    for (int k = 0; k < kChains; ++k) a[k] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(k));
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i)
        for (int k = 0; k < kChains; ++k) a[k] = _mm256_fmadd_ps(a[k], m, c);
    for (int k = 1; k < kChains; ++k) a[0] = _mm256_add_ps(a[0], a[k]);
    alignas(32) float out[8];
    _mm256_store_ps(out, a[0]);
    return out[0] + out[7];
}

__attribute__((target("avx512f,avx512vnni"))) inline float dpbusd_avx512(int64_t iters) {
    __m512i a[kChains];
    for (int k = 0; k < kChains; ++k) a[k] = _mm512_set1_epi32(k);
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
    for (int64_t i = 0; i < iters; ++i)
        for (int k = 0; k < kChains; ++k) a[k] = _mm512_dpbusd_epi32(a[k], x, y);
    for (int k = 1; k < kChains; ++k) a[0] = _mm512_add_epi32(a[0], a[k]);
    alignas(64) int32_t out[16];
    _mm512_store_si512(out, a[0]);
    return static_cast<float>(out[0] + out[15]);
}

// Best of `passes` runs of `kernel(iters)` on `threads` threads, in MAC/s.
template <class Kernel>
double best_rate(Kernel kernel, int64_t iters, double macs_per_iter, int threads, int passes = 3) {
    double best = 0;
    volatile float sink = 0;
    for (int p = 0; p < passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
        {
            const float v = kernel(iters);
#pragma omp critical
            sink = sink + v;
        }
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, macs_per_iter * static_cast<double>(iters) * threads / sec);
    }
    return best;
}

}  // namespace peak_detail

struct ComputePeak {
    double fma_gmacs = 0;   // f32 FMA, all threads
    double int8_gmacs = 0;  // VPDPBUSD, all threads (0: not available)
    const char* fma_isa = "none";
};

inline ComputePeak compute_peak(int threads) {
    using namespace peak_detail;
    constexpr int64_t kIters = 20'000'000;  // ~0.1-0.3 s per pass on one core
    ComputePeak p;
    if (__builtin_cpu_supports("avx512f")) {
        p.fma_gmacs = best_rate(fma_avx512, kIters, kChains * 16.0, threads) / 1e9;
        p.fma_isa = "avx512";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        p.fma_gmacs = best_rate(fma_avx2, kIters, kChains * 8.0, threads) / 1e9;
        p.fma_isa = "avx2";
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"))
        p.int8_gmacs = best_rate(dpbusd_avx512, kIters, kChains * 64.0, threads) / 1e9;
    return p;
}

}  // namespace ds4::bench
