// bench/instructions: how many of each AVX-512 instruction the quantized
// kernels are built from one core retires per cycle (their throughput).
//
// The IQ2_XXS and K-quant kernels are compute bound from the caches, and this
// VM exposes no hardware counters, so their limits are estimated by counting
// instructions per super-block against these rates (docs/performance.md).
// Each instruction runs in 12 independent chains on register values (enough
// to hide its latency); a cycle is timed by a chain of dependent scalar adds
// (one cycle each on every x86 core), so the printed clock is the core's
// clock while it runs. Single thread; pin it with taskset for a steady clock.
//
// usage: ds4-bench-instructions [--iters N]   (default 20000000 per instruction)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/avx512_intrinsics.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Nanoseconds per cycle: 16 dependent adds per iteration.
double ns_per_cycle(int64_t iters) {
    uint64_t r = 1;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < iters; ++i) {
        asm volatile(
            "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t"
            "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t"
            "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t"
            "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0"
            : "+r"(r));
    }
    return seconds_since(t0) * 1e9 / (static_cast<double>(iters) * 16);
}

#define DS4_AVX512_TARGET \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx512bitalg,gfni")))

// One function per instruction: 12 chains v_k = OP(v_k, t), kept in registers
// (the empty asm statements stop the compiler from folding or spilling them).
#define DS4_THROUGHPUT(name, OP)                                                                                 \
    DS4_AVX512_TARGET double name(int64_t iters) {                                                             \
        __m512i v0 = _mm512_set1_epi32(1), v1 = _mm512_set1_epi32(2), v2 = _mm512_set1_epi32(3);               \
        __m512i v3 = _mm512_set1_epi32(4), v4 = _mm512_set1_epi32(5), v5 = _mm512_set1_epi32(6);               \
        __m512i v6 = _mm512_set1_epi32(7), v7 = _mm512_set1_epi32(8), v8 = _mm512_set1_epi32(9);               \
        __m512i v9 = _mm512_set1_epi32(10), v10 = _mm512_set1_epi32(11), v11 = _mm512_set1_epi32(12);          \
        __m512i t = _mm512_set1_epi8(3);                                                                       \
        asm volatile("" : "+v"(t));                                                                            \
        const auto t0 = Clock::now();                                                                          \
        for (int64_t i = 0; i < iters; ++i) {                                                                  \
            v0 = OP(v0, t), v1 = OP(v1, t), v2 = OP(v2, t), v3 = OP(v3, t), v4 = OP(v4, t), v5 = OP(v5, t);    \
            v6 = OP(v6, t), v7 = OP(v7, t), v8 = OP(v8, t), v9 = OP(v9, t), v10 = OP(v10, t), v11 = OP(v11, t); \
            asm volatile("" : "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3), "+v"(v4), "+v"(v5));                    \
            asm volatile("" : "+v"(v6), "+v"(v7), "+v"(v8), "+v"(v9), "+v"(v10), "+v"(v11));                   \
        }                                                                                                      \
        return seconds_since(t0) * 1e9 / (static_cast<double>(iters) * 12);                                   \
    }

#define OP_ADD(x, t) _mm512_add_epi32(x, t)
#define OP_TERNLOG(x, t) _mm512_ternarylogic_epi64(x, t, t, 0x96)
#define OP_PERMB(x, t) _mm512_permutexvar_epi8(t, x)
#define OP_PERMT2B(x, t) _mm512_permutex2var_epi8(x, t, x)
#define OP_PERMW(x, t) _mm512_permutexvar_epi16(t, x)
#define OP_PERMT2D(x, t) _mm512_permutex2var_epi32(x, t, x)
#define OP_PSHUFB(x, t) _mm512_shuffle_epi8(x, t)
#define OP_UNPACKLBW(x, t) _mm512_unpacklo_epi8(x, t)
#define OP_MULTISHIFT(x, t) _mm512_multishift_epi64_epi8(t, x)
#define OP_GF2P8AFFINE(x, t) _mm512_gf2p8affine_epi64_epi8(x, t, 0)
#define OP_DPBUSD(x, t) _mm512_dpbusd_epi32(x, t, t)
#define OP_DPWSSD(x, t) _mm512_dpwssd_epi32(x, t, t)
#define OP_MADDUBSW(x, t) _mm512_maddubs_epi16(x, t)
#define OP_MULLW(x, t) _mm512_mullo_epi16(x, t)
#define OP_MULLD(x, t) _mm512_mullo_epi32(x, t)
#define OP_CVTDQ2PS(x, t) _mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_xor_si512(x, t)))
// A mask from VPSHUFBITQMB consumed by a masked subtract: the pair the
// IQ2_XXS kernel spends per 64 values on its signs.
#define OP_BITSHUFFLE_SUB(x, t) _mm512_mask_sub_epi8(x, _mm512_bitshuffle_epi64_mask(x, t), t, x)

DS4_THROUGHPUT(add_epi32, OP_ADD)
DS4_THROUGHPUT(ternlog, OP_TERNLOG)
DS4_THROUGHPUT(permb, OP_PERMB)
DS4_THROUGHPUT(permt2b, OP_PERMT2B)
DS4_THROUGHPUT(permw, OP_PERMW)
DS4_THROUGHPUT(permt2d, OP_PERMT2D)
DS4_THROUGHPUT(pshufb, OP_PSHUFB)
DS4_THROUGHPUT(unpacklbw, OP_UNPACKLBW)
DS4_THROUGHPUT(multishift, OP_MULTISHIFT)
DS4_THROUGHPUT(gf2p8affine, OP_GF2P8AFFINE)
DS4_THROUGHPUT(dpbusd, OP_DPBUSD)
DS4_THROUGHPUT(dpwssd, OP_DPWSSD)
DS4_THROUGHPUT(maddubsw, OP_MADDUBSW)
DS4_THROUGHPUT(mullw, OP_MULLW)
DS4_THROUGHPUT(mulld, OP_MULLD)
DS4_THROUGHPUT(cvtdq2ps, OP_CVTDQ2PS)
DS4_THROUGHPUT(bitshuffle_sub, OP_BITSHUFFLE_SUB)

struct Entry {
    const char* name;  // the instructions of one chain step
    double (*run)(int64_t);
};

}  // namespace

int main(int argc, char** argv) {
    int64_t iters = 20000000;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = std::atoll(argv[++i]);
        } else {
            std::fprintf(stderr, "unknown option %s (see the header of bench/instructions.cpp)\n", argv[i]);
            return 2;
        }
    }
    if (iters <= 0) {
        std::fprintf(stderr, "--iters must be positive\n");
        return 2;
    }
    const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") &&
                           __builtin_cpu_supports("avx512bitalg") && __builtin_cpu_supports("gfni");
    if (!supported) {
        std::printf("this CPU lacks one of AVX-512 F/BW/VL/DQ/VNNI/VBMI/BITALG or GFNI: nothing to measure\n");
        return 0;
    }
    const double cycle_ns = ns_per_cycle(iters);
    std::printf("core clock while running: %.2f GHz (dependent scalar adds)\n", 1.0 / cycle_ns);
    const Entry entries[] = {
        {"vpaddd", add_epi32},
        {"vpternlogq", ternlog},
        {"vpermb", permb},
        {"vpermt2b", permt2b},
        {"vpermw", permw},
        {"vpermt2d", permt2d},
        {"vpshufb", pshufb},
        {"vpunpcklbw", unpacklbw},
        {"vpmultishiftqb", multishift},
        {"vgf2p8affineqb", gf2p8affine},
        {"vpdpbusd", dpbusd},
        {"vpdpwssd", dpwssd},
        {"vpmaddubsw", maddubsw},
        {"vpmullw", mullw},
        {"vpmulld", mulld},
        {"vpxord + vcvtdq2ps", cvtdq2ps},
        {"vpshufbitqmb + masked vpsubb", bitshuffle_sub},
    };
    std::printf("%-28s %12s %14s\n", "instruction (zmm)", "cycles/step", "steps/cycle");
    for (const Entry& e : entries) {
        const double cycles = e.run(iters) / cycle_ns;
        std::printf("%-28s %12.3f %14.2f\n", e.name, cycles, 1.0 / cycles);
    }
    return 0;
}
