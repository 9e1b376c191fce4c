// bench/steering: decode cost of hooks and steering on a full-width model.
//
// Decodes the same tokens from the same prefix with (a) no hook, (b) one
// steering vector on every layer (projection edit at the FFN output, the
// reference engine's setting), (c) a capture hook recording the FFN output of
// every layer. Configurations are interleaved over several rounds and the
// median is reported, so drift of the machine affects all alike. The issue's
// target: steering costs < 2% of decode time.
//
// usage: ds4-bench-steering [--layers N] [--mix q2] [--prefill N] [--decode N] [--rounds N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_models.hpp"
#include "ds4/capture.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"

namespace {

double decode_seconds(ds4::Session& s, const ds4::Snapshot& start, const std::vector<ds4::TokenId>& tokens) {
    s.restore(start, {.allow_steering_mismatch = true});
    const auto t0 = std::chrono::steady_clock::now();
    for (ds4::TokenId t : tokens) s.decode(t);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int layers = 4, prefill = 128, decode = 32, rounds = 5;
    std::string mix = "q2";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--layers") layers = std::atoi(v.c_str());
        else if (a == "--mix") mix = v;
        else if (a == "--prefill") prefill = std::atoi(v.c_str());
        else if (a == "--decode") decode = std::atoi(v.c_str());
        else if (a == "--rounds") rounds = std::atoi(v.c_str());
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    try {
        auto model = ds4::Model::load(ds4::bench::full_width_model(layers, mix));
        const auto& cfg = model->config();
        ds4::SessionOptions so;
        so.context_size = prefill + decode + 1;
        so.checkpoint_interval = 0;
        ds4::Session s(model, so);
        s.prefill(ds4::bench::random_tokens(prefill, cfg.n_vocab, 1));
        const ds4::Snapshot start = s.snapshot();
        const auto tokens = ds4::bench::random_tokens(decode, cfg.n_vocab, 2);

        ds4::SteeringVector v(cfg.n_layer, cfg.n_embd, ds4::SteeringSite::FfnOut, ds4::SteeringOp::Project, 0.5f);
        std::vector<float> dir(static_cast<size_t>(cfg.n_embd));
        for (size_t i = 0; i < dir.size(); ++i) dir[i] = std::sin(0.37f * static_cast<float>(i) + 1.0f);
        for (int l = 0; l < cfg.n_layer; ++l) v.set_direction(l, dir);
        v.normalize();

        std::vector<double> none, steer, capture;
        for (int r = 0; r < rounds; ++r) {
            s.clear_hooks();
            none.push_back(decode_seconds(s, start, tokens));
            ds4::SteeringHandle h = ds4::add_steering(s, v);
            steer.push_back(decode_seconds(s, start, tokens));
            ds4::remove_steering(s, h);
            auto rec = std::make_shared<ds4::ActivationRecorder>(
                std::vector<ds4::ActivationRecorder::Point>{{ds4::HookPoint::FfnOut, {}}});
            s.add_hook(rec);
            capture.push_back(decode_seconds(s, start, tokens));
            s.clear_hooks();
        }
        const double t0 = median(none), t1 = median(steer), t2 = median(capture);
        std::printf("%s %dL, %d decode tokens after %d, median of %d rounds\n", mix.c_str(), layers, decode, prefill, rounds);
        std::printf("%-28s %10s %10s\n", "configuration", "tok/s", "overhead");
        std::printf("%-28s %10.3f %9s\n", "no hooks", decode / t0, "-");
        std::printf("%-28s %10.3f %8.2f%%\n", "steering, all layers", decode / t1, 100 * (t1 - t0) / t0);
        std::printf("%-28s %10.3f %8.2f%%\n", "capture hook, all layers", decode / t2, 100 * (t2 - t0) / t0);
        std::printf("\nconfiguration,tok_s,overhead_percent\nnone,%g,0\nsteering,%g,%g\ncapture,%g,%g\n", decode / t0,
                    decode / t1, 100 * (t1 - t0) / t0, decode / t2, 100 * (t2 - t0) / t0);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-bench-steering: %s\n", e.what());
        return 1;
    }
}
