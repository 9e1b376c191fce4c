// hook_dump: run the ds4 engine over a token list and write every hook-point
// activation (all layers, all tokens, in token order) as raw little-endian f32
// files DIR/<point>.<layer>.f32, plus DIR/router_selection.<layer>.{i32,f32}
// (expert ids and weights) and DIR/<point>.<layer>.pos (i64 absolute position
// of each row). Uses only the public API (ds4/hook.hpp, model,
// session). Built on demand by compare_engine.py --stages against an existing
// build directory; not part of the library build.
//
//   hook_dump MODEL.gguf 1,2,3 OUTDIR [decode|prefill|split:A,B,..] [chunk] [SITE:OP:SCALE:FILE ...]
//
// split:A,B,...: successive prefill() calls of A, B, ... tokens, then decode()
// for the rest (checks the compressor state left by a prefill).
//
// Each SITE:OP:SCALE:FILE registers a steering vector (ds4/steering.hpp) read
// from a raw f32 file of n_layer x width values (zero rows = no direction).
// The logits of every token are written to DIR/logits.f32.
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ds4/error.hpp"
#include "ds4/hook.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"

namespace {

struct Dump : ds4::Hook {
    std::map<std::string, std::vector<float>> f32;
    std::map<std::string, std::vector<int32_t>> i32;
    std::map<std::string, std::vector<int64_t>> pos;
    bool wants(ds4::HookPoint p, int) const override { return p != ds4::HookPoint::Logits; }
    void on_activation(const ds4::ActivationView& v) override {
        const std::string key = std::string(ds4::hook_point_name(v.point)) + "." + std::to_string(v.layer);
        auto& p = pos[key];
        p.insert(p.end(), v.positions.begin(), v.positions.end());
        if (v.point == ds4::HookPoint::RouterSelection) {
            auto& ids = i32[key];
            auto& w = f32[key];
            ids.insert(ids.end(), v.experts, v.experts + v.rows * v.k);
            w.insert(w.end(), v.expert_weights, v.expert_weights + v.rows * v.k);
            return;
        }
        auto& d = f32[key];
        for (int64_t r = 0; r < v.rows; ++r) d.insert(d.end(), v.row(r), v.row(r) + v.width);
    }
};

template <class T>
void write_raw(const std::string& path, const std::vector<T>& v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
    if (!f) throw std::runtime_error(path + ": write failed");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: hook_dump MODEL.gguf TOKENS(1,2,3) OUTDIR [decode|prefill] [chunk]\n");
        return 2;
    }
    try {
        auto model = ds4::Model::load(argv[1]);
        std::vector<ds4::TokenId> toks;
        std::stringstream ss(argv[2]);
        std::string item;
        while (std::getline(ss, item, ','))
            if (!item.empty()) toks.push_back(static_cast<ds4::TokenId>(std::stol(item)));
        const std::string out = argv[3];
        const std::string mode = argc > 4 ? argv[4] : "decode";
        const int chunk = argc > 5 ? std::atoi(argv[5]) : 64;
        ds4::Session s(model, {.context_size = static_cast<int64_t>(toks.size()) + 1, .prefill_chunk = chunk});
        auto h = std::make_shared<Dump>();
        s.add_hook(h);
        const auto& cfg = model->config();
        for (int i = 6; i < argc; ++i) {
            const std::string spec = argv[i];
            std::vector<std::string> f;  // SITE, OP, SCALE; the rest is the file name
            size_t a = 0;
            for (int k = 0; k < 3; ++k) {
                const size_t b = spec.find(':', a);
                if (b == std::string::npos) throw std::runtime_error("bad steering spec " + spec);
                f.push_back(spec.substr(a, b - a));
                a = b + 1;
            }
            const std::string file = spec.substr(a);
            auto site = ds4::steering_site_from_name(f.at(0));
            auto op = ds4::steering_op_from_name(f.at(1));
            if (!site || !op) throw std::runtime_error("bad steering spec " + spec);
            const int width = *site == ds4::SteeringSite::RouterLogits ? cfg.n_expert : cfg.n_embd;
            std::vector<float> d(static_cast<size_t>(cfg.n_layer) * width);
            std::ifstream in(file, std::ios::binary);
            in.read(reinterpret_cast<char*>(d.data()), static_cast<std::streamsize>(d.size() * sizeof(float)));
            if (!in) throw std::runtime_error(file + ": short read");
            ds4::SteeringVector v(cfg.n_layer, width, *site, *op, std::stof(f.at(2)));
            for (int il = 0; il < cfg.n_layer; ++il) {
                std::span<const float> row(d.data() + static_cast<size_t>(il) * width, width);
                bool any = false;
                for (float x : row) any = any || x != 0.0f;
                if (any) v.set_direction(il, row);
            }
            ds4::add_steering(s, v);
        }
        std::vector<float> logits;
        if (mode.rfind("split:", 0) == 0) {
            // split:A,B,...: successive prefill() calls of A, B, ... tokens, then decode() the rest
            std::vector<size_t> parts;
            std::stringstream ps(mode.substr(6));
            std::string it;
            while (std::getline(ps, it, ',')) parts.push_back(static_cast<size_t>(std::stoul(it)));
            size_t at = 0;
            for (size_t n : parts) {
                n = std::min(n, toks.size() - at);
                s.prefill(std::span<const ds4::TokenId>(toks.data() + at, n), {.all_logits = true});
                for (size_t i = 0; i < n; ++i) {
                    auto l = s.logits_at(static_cast<int64_t>(i));
                    logits.insert(logits.end(), l.begin(), l.end());
                }
                at += n;
            }
            for (; at < toks.size(); ++at) {
                s.decode(toks[at]);
                logits.insert(logits.end(), s.logits().begin(), s.logits().end());
            }
        } else if (mode == "prefill") {
            s.prefill(toks, {.all_logits = true});
            for (size_t i = 0; i < toks.size(); ++i) {
                auto l = s.logits_at(static_cast<int64_t>(i));
                logits.insert(logits.end(), l.begin(), l.end());
            }
        } else {
            for (auto t : toks) {
                s.decode(t);
                logits.insert(logits.end(), s.logits().begin(), s.logits().end());
            }
        }
        write_raw(out + "/logits.f32", logits);
        for (auto& [k, v] : h->f32) write_raw(out + "/" + k + ".f32", v);
        for (auto& [k, v] : h->i32) write_raw(out + "/" + k + ".i32", v);
        for (auto& [k, v] : h->pos) write_raw(out + "/" + k + ".pos", v);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hook_dump: %s\n", e.what());
        return 1;
    }
    return 0;
}
