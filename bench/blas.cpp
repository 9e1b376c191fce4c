// bench/blas: the hand-written kernels against dequantize + OpenBLAS sgemm
// (kernels::matmul_blas) for large batches, to find the batch size above
// which the BLAS path would be faster, if any.
//
// For each weight type at the model's shapes and n = 64, 128, 256, 512 tokens
// (1 and all threads): the kernels' time (matmul on prepared activations),
// the time to prepare (quantize) the activations, and matmul_blas's time on
// the f32 activations. Weights are cycled over >= 512 MiB of copies as in
// bench/matvec. "blas/kern" is the speedup of the BLAS path over kernels +
// preparation (> 1: BLAS faster).
//
// usage: ds4-bench-blas [--isa scalar|avx2|avx512] [--threads 1,2] [--n 64,128,256,512]
//                       [--types q8_0,...] [--ws-mib 512] [--min-time 0.5] [--csv FILE] [--no-pin]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "kernel_bench.hpp"
#include "kernels/matmul_blas.hpp"

namespace {

struct Shape {
    ds4::DType type;
    int64_t cols, rows;
};

struct Result {
    std::string type;
    int64_t cols, rows, n;
    int threads;
    double kern_ms, prep_ms, blas_ms;
};

}  // namespace

int main(int argc, char** argv) {
    using namespace ds4;
    std::string isa_name, types, csv_path;
    bool pin = true;
    std::vector<int> threads = {1, omp_get_num_procs()};
    std::vector<int> ns = {64, 128, 256, 512};
    double ws_mib = 512, min_time = 0.5;
    for (int i = 1; i < argc; ++i) {
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        const std::string a = argv[i];
        if (a == "--isa") isa_name = next();
        else if (a == "--threads") threads = bench::split_ints(next());
        else if (a == "--n") ns = bench::split_ints(next());
        else if (a == "--types") types = next();
        else if (a == "--ws-mib") ws_mib = std::atof(next().c_str());
        else if (a == "--min-time") min_time = std::atof(next().c_str());
        else if (a == "--csv") csv_path = next();
        else if (a == "--no-pin") pin = false;
        else {
            std::fprintf(stderr, "unknown option %s (see the header of bench/blas.cpp)\n", a.c_str());
            return 2;
        }
    }
    if (threads.size() == 2 && threads[0] == threads[1]) threads.pop_back();
    try {
        if (!isa_name.empty()) kernels::set_active_isa(bench::isa_from_name(isa_name));
        const int n_cpus = omp_get_num_procs();  // before pinning narrows this thread to one CPU
        if (pin) bench::pin_openmp_threads(*std::max_element(threads.begin(), threads.end()));
        std::vector<Shape> shapes;
        for (DType t : {DType::IQ2_XXS, DType::Q2_K, DType::Q4_K}) {
            shapes.push_back({t, 4096, 2048});
            shapes.push_back({t, 2048, 4096});
        }
        shapes.push_back({DType::Q8_0, 4096, 1024});
        shapes.push_back({DType::Q8_0, 1024, 32768});
        shapes.push_back({DType::Q8_0, 8192, 4096});
        shapes.push_back({DType::F16, 4096, 1024});
        if (!types.empty()) {
            std::vector<Shape> keep;
            for (const auto& t : bench::split_list(types)) {
                const DType want = bench::dtype_from_name(t);
                for (const auto& s : shapes)
                    if (s.type == want) keep.push_back(s);
            }
            shapes = keep;
        }
        std::printf("ISA %s, %d CPUs, load average %.2f at start\n", kernels::isa_name(kernels::active_isa()),
                    n_cpus, bench::load_average());
        std::printf("\n%-8s %13s %4s %3s %10s %9s %10s %9s %9s %9s\n", "type", "cols->rows", "n", "thr", "kern ms",
                    "prep ms", "blas ms", "kern GOP", "blas GOP", "blas/kern");
        std::vector<Result> results;
        for (const Shape& s : shapes) {
            const bench::WeightSet ws(s.type, s.rows, s.cols, static_cast<size_t>(ws_mib * 1048576.0));
            for (int n : ns) {
                const auto xf = bench::random_activations(static_cast<int64_t>(n) * s.cols, 11);
                std::vector<float> y(static_cast<size_t>(n) * static_cast<size_t>(s.rows));
                for (int t : threads) {
                    omp_set_num_threads(t);
                    kernels::Activations act;
                    act.prepare(s.type, xf.data(), n, s.cols);
                    const double prep = bench::time_per_call(
                        [&](size_t) { act.prepare(s.type, xf.data(), n, s.cols); }, min_time / 4, 3);
                    const double kern = bench::time_per_call(
                        [&](size_t i) { kernels::matmul(ws.matrix(i), act, y.data()); }, min_time, 3);
                    const double blas = bench::time_per_call(
                        [&](size_t i) { kernels::matmul_blas(ws.matrix(i), xf.data(), n, y.data()); }, min_time, 3);
                    Result r{std::string(dtype_name(s.type)), s.cols, s.rows, n, t, kern * 1e3, prep * 1e3, blas * 1e3};
                    results.push_back(r);
                    const double ops = 2.0 * static_cast<double>(s.rows) * static_cast<double>(s.cols) * n;
                    const std::string shape = std::to_string(s.cols) + "->" + std::to_string(s.rows);
                    std::printf("%-8s %13s %4d %3d %10.2f %9.2f %10.2f %9.1f %9.1f %9.2f\n", r.type.c_str(),
                                shape.c_str(), n, t, r.kern_ms, r.prep_ms, r.blas_ms, ops / kern / 1e9,
                                ops / blas / 1e9, (kern + prep) / blas);
                    std::fflush(stdout);
                }
            }
        }
        std::printf("load average %.2f at end\n", bench::load_average());
        if (!csv_path.empty()) {
            std::ofstream csv(csv_path);
            csv << "isa,type,cols,rows,n,threads,kernels_ms,prepare_ms,blas_ms\n";
            for (const auto& r : results)
                csv << kernels::isa_name(kernels::active_isa()) << ',' << r.type << ',' << r.cols << ',' << r.rows
                    << ',' << r.n << ',' << r.threads << ',' << r.kern_ms << ',' << r.prep_ms << ',' << r.blas_ms
                    << '\n';
            std::printf("CSV written to %s\n", csv_path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
