// bench/decode: prefill and decode speed of a full-width DS4 model.
//
// Generates (once, cached on disk) a model with the published dimensions and
// dtypes and a few layers (default 4: hash/ratio-0, ratio-4, ratio-128,
// ratio-4), prefills 512 tokens and decodes 64, and reports tokens/s, the
// weight bytes each decoded token read (counted by the engine), the achieved
// GB/s, that as a fraction of the machine's read bandwidth, and the
// projection to the 43-layer model. Prefill is reported as weight
// multiply-adds per second (counted by the engine) against the machine's
// measured f32 FMA and int8 dot-product peaks (compute_peak.hpp). Runs each
// mix and thread count asked for and prints a table and CSV.
//
// usage: ds4-bench-decode [--layers N] [--mix q2,q4] [--threads 1,2] [--prefill N] [--decode N]
//                         [--positions 1024,8192,32768] [--prefill-chunk 256] [--model-dir DIR] [--csv FILE]
//                         [--state-cache]
//
// --prefill-chunk: tokens per forward pass of the prefill (SessionOptions::
// prefill_chunk); larger chunks give each routed expert more tokens per call.
//
// --state-cache: the session state after each --positions prefill is saved
// next to the model (Session::save) and loaded instead of prefilled on later
// runs (the prompt is the same fixed random sequence, so the state is the
// same); a 32k prefill takes minutes on two cores, loading it a second.
// Prefill speed is then not measured for those positions (printed as 0).
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bandwidth.hpp"
#include "compute_peak.hpp"
#include "bench_models.hpp"
#include "list_options.hpp"
#include "ds4/model.hpp"
#include "ds4/model_generator.hpp"
#include "ds4/session.hpp"

namespace {

struct Row {
    std::string mix;
    int threads = 0;
    int64_t position = 0;  // decode position (context length before decoding)
    double prefill_tps = 0, decode_tps = 0;
    double prefill_gmacs = 0, fma_fraction = 0, int8_fraction = 0;  // prefill multiply-adds vs the peaks
    double bytes_per_token = 0, gbs = 0, fraction = 0;
    double tps_43 = 0;  // projection to 43 layers
    double state_bytes_per_token = 0;
};

}  // namespace

int main(int argc, char** argv) {
    int layers = 4, prefill = 512, decode = 64, prefill_chunk = 256;
    std::string mixes = "q2,q4", threads = "", positions = "", csv_path;
    bool state_cache = false;
    for (int i = 1; i < argc; ++i) {
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        const std::string a = argv[i];
        if (a == "--layers") layers = std::atoi(next().c_str());
        else if (a == "--mix") mixes = next();
        else if (a == "--threads") threads = next();
        else if (a == "--prefill") prefill = std::atoi(next().c_str());
        else if (a == "--decode") decode = std::atoi(next().c_str());
        else if (a == "--positions") positions = next();
        else if (a == "--prefill-chunk") prefill_chunk = std::atoi(next().c_str());
        else if (a == "--model-dir") setenv("DS4_BENCH_MODEL_DIR", next().c_str(), 1);
        else if (a == "--csv") csv_path = next();
        else if (a == "--state-cache") state_cache = true;
        else {
            std::fprintf(stderr, "unknown option %s (see the header of bench/decode.cpp)\n", a.c_str());
            return 2;
        }
    }
    if (layers < 1 || prefill < 1 || decode < 1 || prefill_chunk < 1) {
        std::fprintf(stderr, "--layers, --prefill, --decode and --prefill-chunk must be >= 1\n");
        return 2;
    }
    std::vector<int> thread_counts = threads.empty() ? std::vector<int>{1, omp_get_num_procs()} : ds4::bench::split_ints(threads);
    if (thread_counts.size() == 2 && thread_counts[0] == thread_counts[1]) thread_counts.pop_back();

    try {
        std::vector<Row> rows;
        const double bw = ds4::bench::read_bandwidth_gbs(omp_get_num_procs());
        std::printf("read bandwidth (all %d threads): %.2f GB/s\n", omp_get_num_procs(), bw);
        std::vector<ds4::bench::ComputePeak> peaks;
        for (int nt : thread_counts) {
            peaks.push_back(ds4::bench::compute_peak(nt));
            std::printf("compute peak (%d threads): f32 FMA (%s) %.1f GMAC/s, int8 VPDPBUSD %.1f GMAC/s\n", nt,
                        peaks.back().fma_isa, peaks.back().fma_gmacs, peaks.back().int8_gmacs);
        }
        for (const std::string& mix : ds4::bench::split_list(mixes)) {
            const std::string path = ds4::bench::full_width_model(layers, mix);
            for (size_t ti = 0; ti < thread_counts.size(); ++ti) {
                const int nt = thread_counts[ti];
                const ds4::bench::ComputePeak& peak = peaks[ti];
                ds4::ModelOptions mo;
                mo.n_threads = nt;
                auto model = ds4::Model::load(path, mo);
                const auto& cfg = model->config();
                std::vector<int64_t> starts = {prefill};
                for (int p : ds4::bench::split_ints(positions)) starts.push_back(p);
                for (int64_t start : starts) {
                    ds4::SessionOptions so;
                    so.context_size = start + decode + 1;
                    so.prefill_chunk = prefill_chunk;
                    so.checkpoint_interval = 0;
                    ds4::Session s(model, so);
                    const std::string snapshot =
                        path + ".state-" + std::to_string(start) + "-chunk" + std::to_string(so.prefill_chunk) + ".snap";
                    const bool cached = state_cache && start != prefill && std::filesystem::exists(snapshot);
                    if (cached) {
                        s.load(snapshot);
                    } else {
                        s.prefill(ds4::bench::random_tokens(start, cfg.n_vocab, 1));
                        if (state_cache && start != prefill) s.save(snapshot);
                    }
                    auto st = s.stats();
                    Row r;
                    r.mix = mix;
                    r.threads = nt;
                    r.position = start;
                    r.prefill_tps = cached ? 0.0 : static_cast<double>(st.prefill_tokens) / st.prefill_seconds;
                    if (!cached) {
                        r.prefill_gmacs = static_cast<double>(st.prefill_weight_macs) / st.prefill_seconds / 1e9;
                        r.fma_fraction = peak.fma_gmacs > 0 ? r.prefill_gmacs / peak.fma_gmacs : 0;
                        r.int8_fraction = peak.int8_gmacs > 0 ? r.prefill_gmacs / peak.int8_gmacs : 0;
                    }
                    s.reset_stats();
                    // Greedy decode (sampling is not part of the measurement).
                    for (int k = 0; k < decode; ++k) {
                        const auto lg = s.logits();
                        size_t best = 0;
                        for (size_t v = 1; v < lg.size(); ++v)
                            if (lg[v] > lg[best]) best = v;
                        s.decode(static_cast<ds4::TokenId>(best));
                    }
                    st = s.stats();
                    r.decode_tps = static_cast<double>(st.decode_tokens) / st.decode_seconds;
                    r.bytes_per_token = static_cast<double>(st.decode_weight_bytes) / static_cast<double>(st.decode_tokens);
                    r.gbs = r.bytes_per_token * r.decode_tps / 1e9;
                    r.fraction = r.gbs / bw;
                    // 43 layers: the per-layer bytes scale, the head and embedding do not.
                    const double head = static_cast<double>(cfg.n_vocab) * cfg.n_embd * 34.0 / 32.0;  // Q8_0 LM head
                    const double per_layer = (r.bytes_per_token - head) / layers;
                    const double bytes43 = head + per_layer * 43;
                    r.tps_43 = r.gbs * 1e9 / bytes43;
                    r.state_bytes_per_token = static_cast<double>(s.state_bytes()) / static_cast<double>(s.position());
                    rows.push_back(r);
                    std::printf(
                        "%s %dL threads=%d pos=%lld: prefill %.2f tok/s (%.1f GMAC/s: %.0f%% of the f32 FMA peak, "
                        "%.0f%% of the int8 peak), decode %.3f tok/s, %.1f MB/token, %.2f GB/s "
                        "(%.0f%% of bandwidth), 43-layer projection %.3f tok/s, state %.0f B/token\n",
                        mix.c_str(), layers, nt, static_cast<long long>(start), r.prefill_tps, r.prefill_gmacs,
                        100 * r.fma_fraction, 100 * r.int8_fraction, r.decode_tps,
                        r.bytes_per_token / 1e6, r.gbs, 100 * r.fraction, r.tps_43, r.state_bytes_per_token);
                    std::fflush(stdout);
                }
            }
        }
        std::ostringstream csv;
        csv << "mix,layers,threads,position,prefill_tok_s,decode_tok_s,weight_bytes_per_token,gb_s,fraction_of_bandwidth,"
               "decode_tok_s_43_layers,state_bytes_per_token,prefill_gmac_s,fraction_of_fma_peak,fraction_of_int8_peak\n";
        for (const Row& r : rows)
            csv << r.mix << ',' << layers << ',' << r.threads << ',' << r.position << ',' << r.prefill_tps << ','
                << r.decode_tps << ',' << r.bytes_per_token << ',' << r.gbs << ',' << r.fraction << ',' << r.tps_43 << ','
                << r.state_bytes_per_token << ',' << r.prefill_gmacs << ',' << r.fma_fraction << ','
                << r.int8_fraction << '\n';
        std::printf("\n%s", csv.str().c_str());
        if (!csv_path.empty()) std::ofstream(csv_path) << csv.str();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-bench-decode: %s\n", e.what());
        return 1;
    }
}
