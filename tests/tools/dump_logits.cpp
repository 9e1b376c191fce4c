// ds4-dump-logits: run the engine over a token sequence and write the logits
// after every token as a .npy file (float32 [n_tokens, vocab]), optionally the
// indexer selections as JSON. Used by the parity tests against the NumPy
// reference.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "engine/session_impl.hpp"

namespace {

void write_npy(const std::string& path, const std::vector<float>& data, size_t rows, size_t cols) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                         std::to_string(cols) + "), }";
    const size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    std::ofstream f(path, std::ios::binary);
    const char magic[] = "\x93NUMPY\x01\x00";
    f.write(magic, 8);
    const uint16_t hl = static_cast<uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&hl), 2);
    f.write(header.data(), static_cast<long>(header.size()));
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<long>(data.size() * sizeof(float)));
    if (!f) throw ds4::Error(ds4::ErrorCode::IoError, path + ": write failed");
}

std::vector<ds4::TokenId> parse_tokens(const std::string& s) {
    std::vector<ds4::TokenId> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(static_cast<ds4::TokenId>(std::stol(item)));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path, out, topk_out, tokens_arg, mode = "prefill";
    int random_n = 0, chunk = 64;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--tokens") tokens_arg = next();
        else if (a == "--random") random_n = std::atoi(next().c_str());
        else if (a == "--seed") seed = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--mode") mode = next();
        else if (a == "--chunk") chunk = std::atoi(next().c_str());
        else if (a == "--out") out = next();
        else if (a == "--topk-out") topk_out = next();
        else if (model_path.empty()) model_path = a;
        else {
            std::fprintf(stderr, "ds4-dump-logits: unexpected argument '%s'\n", a.c_str());
            return 2;
        }
    }
    if (model_path.empty() || out.empty()) {
        std::fprintf(stderr,
                     "usage: ds4-dump-logits MODEL.gguf (--tokens 1,2,3 | --random N [--seed S]) --out L.npy "
                     "[--mode prefill|decode] [--chunk N] [--topk-out SEL.json]\n");
        return 2;
    }
    try {
        auto model = ds4::Model::load(model_path);
        std::vector<ds4::TokenId> toks = parse_tokens(tokens_arg);
        if (random_n > 0) {
            std::mt19937_64 rng(seed);
            toks.resize(static_cast<size_t>(random_n));
            for (auto& t : toks) t = static_cast<ds4::TokenId>(rng() % static_cast<uint64_t>(model->config().n_vocab));
        }
        ds4::Session s(model, {.context_size = static_cast<int64_t>(toks.size()) + 1, .prefill_chunk = chunk});
        s.impl().forward.set_trace_indexer(!topk_out.empty());
        const size_t V = static_cast<size_t>(model->config().n_vocab);
        std::vector<float> logits(toks.size() * V);
        if (mode == "prefill") {
            s.prefill(toks, ds4::PrefillOptions{.all_logits = true, .progress = nullptr});
            for (size_t i = 0; i < toks.size(); ++i) {
                auto l = s.logits_at(static_cast<int64_t>(i));
                std::copy(l.begin(), l.end(), logits.begin() + static_cast<long>(i * V));
            }
        } else {
            for (size_t i = 0; i < toks.size(); ++i) {
                s.decode(toks[i]);
                std::copy(s.logits().begin(), s.logits().end(), logits.begin() + static_cast<long>(i * V));
            }
        }
        write_npy(out, logits, toks.size(), V);
        if (!topk_out.empty()) {
            std::ofstream f(topk_out);
            f << "[";
            bool first = true;
            for (const auto& tr : s.impl().forward.indexer_trace()) {
                f << (first ? "" : ",") << "\n{\"layer\": " << tr.layer << ", \"pos\": " << tr.pos << ", \"rows\": [";
                for (size_t k = 0; k < tr.rows.size(); ++k) f << (k ? "," : "") << tr.rows[k];
                f << "]}";
                first = false;
            }
            f << "\n]\n";
        }
        std::string list;
        for (size_t i = 0; i < toks.size(); ++i) list += (i ? "," : "") + std::to_string(toks[i]);
        std::printf("%s\n", list.c_str());
    } catch (const ds4::Error& e) {
        std::fprintf(stderr, "ds4-dump-logits: %s\n", e.what());
        return 1;
    }
    return 0;
}
