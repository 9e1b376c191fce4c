// Helpers shared by the kernel benchmarks: random valid weight matrices,
// many copies of one matrix cycled so that every call streams its weights
// from memory, timing, command-line lists and table/CSV output.
#pragma once

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.hpp"
#include "list_options.hpp"
#include "ds4/dtype.hpp"
#include "kernels/matmul.hpp"
#include "quant/blocks.hpp"
#include "quant/quant.hpp"

namespace ds4::bench {

// A weight type the matrix kernels support, by name (any case); exits otherwise.
inline DType dtype_from_name(const std::string& name) {
    const auto t = ds4::dtype_from_name(name);
    for (DType k : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q2_K, DType::Q4_K, DType::IQ2_XXS})
        if (t == k) return k;
    std::fprintf(stderr, "unknown type %s (f32, f16, bf16, q8_0, q2_k, q4_k, iq2_xxs)\n", name.c_str());
    std::exit(2);
}

inline kernels::Isa isa_from_name(const std::string& name) {
    for (auto isa : {kernels::Isa::Scalar, kernels::Isa::Avx2, kernels::Isa::Avx512})
        if (name == kernels::isa_name(isa)) return isa;
    std::fprintf(stderr, "unknown ISA %s (scalar, avx2, avx512)\n", name.c_str());
    std::exit(2);
}

// One row of `cols` values of `type` with random but valid content: random
// quants, and block scales of a plausible size (never NaN or infinity).
inline void random_row(DType type, int64_t cols, uint8_t* row, std::mt19937_64& rng) {
    using namespace ds4::quant;
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::uniform_real_distribution<float> ud(0.5f, 1.5f);
    const size_t rb = row_bytes(type, cols);
    for (size_t i = 0; i < rb; ++i) row[i] = static_cast<uint8_t>(rng());
    auto put16 = [](void* dst, uint16_t v) { std::memcpy(dst, &v, 2); };
    switch (type) {
        case DType::F32:
            for (int64_t i = 0; i < cols; ++i) {
                const float v = nd(rng);
                std::memcpy(row + 4 * i, &v, 4);
            }
            break;
        case DType::F16:
            for (int64_t i = 0; i < cols; ++i) put16(row + 2 * i, f32_to_f16(nd(rng)));
            break;
        case DType::BF16:
            for (int64_t i = 0; i < cols; ++i) put16(row + 2 * i, f32_to_bf16(nd(rng)));
            break;
        case DType::Q8_0:
            for (int64_t b = 0; b < cols / kQK8_0; ++b) {
                auto* blk = reinterpret_cast<BlockQ8_0*>(row) + b;
                put16(&blk->d, f32_to_f16(0.0002f * ud(rng)));
                for (auto& q : blk->qs)
                    if (q == -128) q = -127;
            }
            break;
        case DType::Q2_K:
            for (int64_t b = 0; b < cols / kQK_K; ++b) {
                auto* blk = reinterpret_cast<BlockQ2_K*>(row) + b;
                put16(&blk->d, f32_to_f16(0.002f * ud(rng)));
                put16(&blk->dmin, f32_to_f16(0.001f * ud(rng)));
            }
            break;
        case DType::Q4_K:
            for (int64_t b = 0; b < cols / kQK_K; ++b) {
                auto* blk = reinterpret_cast<BlockQ4_K*>(row) + b;
                put16(&blk->d, f32_to_f16(0.0005f * ud(rng)));
                put16(&blk->dmin, f32_to_f16(0.0005f * ud(rng)));
            }
            break;
        case DType::IQ2_XXS:
            for (int64_t b = 0; b < cols / kQK_K; ++b)
                put16(&reinterpret_cast<BlockIQ2_XXS*>(row)[b].d, f32_to_f16(0.001f * ud(rng)));
            break;
        default:
            std::fprintf(stderr, "no random rows for this type\n");
            std::exit(2);
    }
}

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

// `copies` copies of one random rows x cols matrix, back to back (each
// starting on a 4 KiB boundary), at least `min_bytes` in all. Cycling through
// them makes each call read its weights from memory rather than cache.
class WeightSet {
public:
    WeightSet(DType type, int64_t rows, int64_t cols, size_t min_bytes, uint64_t seed = 1)
        : type_(type), rows_(rows), cols_(cols) {
        const size_t rb = quant::row_bytes(type, cols);
        bytes_ = rb * static_cast<size_t>(rows);
        stride_ = (bytes_ + 4095) & ~size_t{4095};
        copies_ = std::max<size_t>(2, (min_bytes + bytes_ - 1) / bytes_);
        data_.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, stride_ * copies_)));
        if (!data_) {
            std::fprintf(stderr, "out of memory (%zu MiB)\n", stride_ * copies_ >> 20);
            std::exit(1);
        }
        std::mt19937_64 rng(seed);
        uint8_t* first = data_.get();
        for (int64_t r = 0; r < rows; ++r) random_row(type, cols, first + rb * static_cast<size_t>(r), rng);
        const int64_t n = static_cast<int64_t>(copies_);
#pragma omp parallel for schedule(static)
        for (int64_t i = 1; i < n; ++i) std::memcpy(data_.get() + stride_ * static_cast<size_t>(i), first, bytes_);
    }

    kernels::Matrix matrix(size_t i) const {
        return kernels::Matrix::make(type_, data_.get() + stride_ * (i % copies_), rows_, cols_);
    }
    size_t bytes() const { return bytes_; }  // of one copy
    size_t copies() const { return copies_; }
    size_t total_bytes() const { return bytes_ * copies_; }

private:
    DType type_;
    int64_t rows_, cols_;
    size_t bytes_ = 0, stride_ = 0, copies_ = 0;
    std::unique_ptr<uint8_t, FreeDeleter> data_;
};

inline std::vector<float> random_activations(int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(rng);
    return x;
}

// Calls fn(i) with i = 0, 1, 2, ... for at least `min_seconds` and at least
// `min_calls` calls (after `warmup` untimed calls); returns the median
// seconds per call. The median keeps the figure meaningful when other
// processes take the CPU now and then (an OpenMP call whose second thread is
// descheduled takes a whole time slice).
template <class Fn>
double time_per_call(Fn&& fn, double min_seconds, size_t min_calls, size_t warmup = 2) {
    size_t i = 0;
    for (; i < warmup; ++i) fn(i);
    std::vector<double> t;
    const auto start = std::chrono::steady_clock::now();
    double total = 0.0;
    do {
        const auto t0 = std::chrono::steady_clock::now();
        fn(i++);
        const auto t1 = std::chrono::steady_clock::now();
        t.push_back(std::chrono::duration<double>(t1 - t0).count());
        total = std::chrono::duration<double>(t1 - start).count();
    } while (total < min_seconds || t.size() < min_calls);
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    return t[t.size() / 2];
}

// Pins OpenMP thread i of a team of `threads` to the i-th CPU this process may
// run on (libgomp keeps its threads, so this holds for later regions).
// Unpinned, a third process on a small machine can leave both threads of a
// 2-thread region on one CPU, and every call then costs whole time slices.
inline void pin_openmp_threads(int threads) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
    if (cpus.empty()) return;
#pragma omp parallel num_threads(threads)
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[static_cast<size_t>(omp_get_thread_num()) % cpus.size()], &one);
        pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    }
}

// Load average over the last minute (to note how quiet the machine was).
inline double load_average() {
    double l = -1.0;
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &l) != 1) l = -1.0;
        std::fclose(f);
    }
    return l;
}

}  // namespace ds4::bench
