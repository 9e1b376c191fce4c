// bench/quantize: how fast the reference quantizers turn f32 weights into each
// weight type (MB of f32 input per second, one thread). The model generator
// and ds4-quantize spend most of their time here, IQ2_XXS above all (its
// quantizer searches the 256-entry grid for every group of 8 values).
//
// usage: ds4-bench-quantize [--mib N] [--types IQ2_XXS,Q2_K,...]
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "ds4/dtype.hpp"
#include "list_options.hpp"
#include "quant/quant.hpp"

int main(int argc, char** argv) {
    double mib = 8;
    std::string types = "Q8_0,Q4_K,Q2_K,IQ2_XXS";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--mib") mib = std::atof(argv[i + 1]);
        else if (a == "--types") types = argv[i + 1];
        else {
            std::fprintf(stderr, "unknown option %s (see the header of bench/quantize.cpp)\n", argv[i]);
            return 2;
        }
    }
    const int64_t n = std::max<int64_t>(256, static_cast<int64_t>(mib * 1024 * 1024 / 4) / 256 * 256);
    std::vector<float> x(static_cast<size_t>(n));
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, 0.02f);
    for (float& v : x) v = g(rng);

    std::printf("type      MB f32 in    seconds    MB/s\n");
    for (const std::string& name : ds4::bench::split_list(types)) {
        const auto t = ds4::dtype_from_name(name);
        if (!t) {
            std::fprintf(stderr, "unknown type %s\n", name.c_str());
            return 2;
        }
        std::vector<uint8_t> q(static_cast<size_t>(*ds4::dtype_row_bytes(*t, static_cast<uint64_t>(n))));
        const auto t0 = std::chrono::steady_clock::now();
        ds4::quant::quantize_row(*t, x.data(), q.data(), n);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double mb = static_cast<double>(n) * 4 / 1e6;
        std::printf("%-8s %9.1f %10.3f %7.1f\n", name.c_str(), mb, s, mb / s);
    }
    return 0;
}
