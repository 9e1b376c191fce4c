// bench/matvec: weight bytes streamed per second by the matrix kernels, as a
// fraction of the machine's read bandwidth (the roofline).
//
// First a read-only bandwidth probe (bandwidth.hpp: >= 1 GiB, 1 thread and
// every thread count asked for). Then, for each weight type at the model's
// shapes (experts 4096->2048 and 2048->4096 in Q2_K, Q4_K and IQ2_XXS;
// attention 4096->1024, 1024->32768 and 8192->4096 in Q8_0; F16, BF16 and F32
// at 4096->1024), for n = 1, 4, 16, 64 tokens and each thread count:
// kernels::matmul over many copies of the matrix (>= 512 MiB in all) cycled
// so that each call reads its weights from memory; the figure is the median
// call. Activations are prepared once per shape and n (their quantization is
// not timed). Prints a table and optionally CSV. Other processes on the
// machine distort the 2-thread figures badly (a descheduled OpenMP thread
// stalls the whole call): the load average is printed at start and end.
//
// usage: ds4-bench-matvec [--isa scalar|avx2|avx512] [--threads 1,2] [--n 1,4,16,64]
//                         [--types q8_0,q2_k,...] [--ws-mib 512] [--min-time 0.5] [--csv FILE] [--no-pin]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "bandwidth.hpp"
#include "kernel_bench.hpp"

namespace {

struct Shape {
    ds4::DType type;
    int64_t cols, rows;  // cols -> rows (input width -> output width)
    const char* use;
};

std::vector<Shape> default_shapes() {
    using ds4::DType;
    std::vector<Shape> s;
    for (DType t : {DType::IQ2_XXS, DType::Q2_K, DType::Q4_K}) {
        s.push_back({t, 4096, 2048, "expert gate/up"});
        s.push_back({t, 2048, 4096, "expert down"});
    }
    s.push_back({DType::Q8_0, 4096, 1024, "attention"});
    s.push_back({DType::Q8_0, 1024, 32768, "attention"});
    s.push_back({DType::Q8_0, 8192, 4096, "attention"});
    for (DType t : {DType::F16, DType::BF16, DType::F32}) s.push_back({t, 4096, 1024, "dense"});
    return s;
}

struct Result {
    std::string type, use;
    int64_t cols, rows, n;
    int threads;
    double mib, us, gbs, frac, gops;
};

}  // namespace

int main(int argc, char** argv) {
    using namespace ds4;
    std::string isa_name, types, csv_path;
    bool pin = true;
    std::vector<int> threads = {1, omp_get_num_procs()};
    std::vector<int> ns = {1, 4, 16, 64};
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
            std::fprintf(stderr, "unknown option %s (see the header of bench/matvec.cpp)\n", a.c_str());
            return 2;
        }
    }
    if (threads.size() == 2 && threads[0] == threads[1]) threads.pop_back();
    try {
        if (!isa_name.empty()) kernels::set_active_isa(bench::isa_from_name(isa_name));
        const int n_cpus = omp_get_num_procs();  // before pinning narrows this thread to one CPU
        if (pin) bench::pin_openmp_threads(*std::max_element(threads.begin(), threads.end()));
        std::vector<Shape> shapes = default_shapes();
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
        std::map<int, double> bw;
        for (int t : threads) {
            bw[t] = bench::read_bandwidth_gbs(t);
            std::printf("read bandwidth, %d thread%s: %.2f GB/s\n", t, t == 1 ? "" : "s", bw[t]);
        }
        std::printf("\n%-8s %-15s %13s %8s %4s %3s %10s %8s %6s %8s\n", "type", "use", "cols->rows", "MiB", "n",
                    "thr", "us/call", "GB/s", "%bw", "GOP/s");
        std::vector<Result> results;
        for (const Shape& s : shapes) {
            const bench::WeightSet ws(s.type, s.rows, s.cols, static_cast<size_t>(ws_mib * 1048576.0));
            for (int n : ns) {
                const auto xf = bench::random_activations(static_cast<int64_t>(n) * s.cols, 7);
                kernels::Activations act;
                act.prepare(s.type, xf.data(), n, s.cols);
                std::vector<float> y(static_cast<size_t>(n) * static_cast<size_t>(s.rows));
                for (int t : threads) {
                    omp_set_num_threads(t);
                    const double sec = bench::time_per_call(
                        [&](size_t i) { kernels::matmul(ws.matrix(i), act, y.data()); }, min_time, 3);
                    Result r;
                    r.type = std::string(dtype_name(s.type));
                    r.use = s.use;
                    r.cols = s.cols;
                    r.rows = s.rows;
                    r.n = n;
                    r.threads = t;
                    r.mib = static_cast<double>(ws.bytes()) / 1048576.0;
                    r.us = sec * 1e6;
                    r.gbs = static_cast<double>(ws.bytes()) / sec / 1e9;
                    r.frac = r.gbs / bw[t];
                    r.gops = 2.0 * static_cast<double>(s.rows) * static_cast<double>(s.cols) * n / sec / 1e9;
                    results.push_back(r);
                    const std::string shape = std::to_string(s.cols) + "->" + std::to_string(s.rows);
                    std::printf("%-8s %-15s %13s %8.2f %4d %3d %10.1f %8.2f %5.0f%% %8.1f\n", r.type.c_str(), s.use,
                                shape.c_str(), r.mib, n, t, r.us, r.gbs, 100.0 * r.frac, r.gops);
                    std::fflush(stdout);
                }
            }
        }
        std::printf("load average %.2f at end\n", bench::load_average());
        if (!csv_path.empty()) {
            std::ofstream csv(csv_path);
            csv << "isa,type,use,cols,rows,n,threads,mib,us_per_call,gb_s,fraction_of_bandwidth,gop_s,bandwidth_gb_s\n";
            for (const auto& r : results)
                csv << kernels::isa_name(kernels::active_isa()) << ',' << r.type << ',' << r.use << ',' << r.cols << ','
                    << r.rows << ',' << r.n << ',' << r.threads << ',' << r.mib << ',' << r.us << ',' << r.gbs << ','
                    << r.frac << ',' << r.gops << ',' << bw[r.threads] << '\n';
            std::printf("CSV written to %s\n", csv_path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
