// bench/tokenizer: encode and decode speed of the DeepSeek tokenizer on a few
// MB of mixed text (the golden corpus of tests/data/tokenizer, repeated:
// prose in many languages, code, JSON, emoji, unusual whitespace).
//
// usage: ds4-bench-tokenizer [--mb N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "ds4/tokenizer.hpp"
#include "generator/vocab_source.hpp"

int main(int argc, char** argv) {
    double mb = 4;
    for (int i = 1; i + 1 < argc; i += 2)
        if (std::string(argv[i]) == "--mb") mb = std::atof(argv[i + 1]);
    const auto v = ds4::generator::load_vocab(ds4::VocabKind::Full, 0);
    const ds4::Tokenizer tok = ds4::Tokenizer::from_vocab(v.tokens, v.merges, v.types);

    std::ifstream in(std::string(DS4_BENCH_SOURCE_DIR) + "/tests/data/tokenizer/golden.tsv");
    std::string corpus, line;
    while (std::getline(in, line)) {
        const size_t tab = line.find('\t');
        for (size_t i = 0; i + 1 < tab; i += 2) corpus += static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16));
        corpus += '\n';
    }
    if (corpus.empty()) {
        std::fprintf(stderr, "no corpus (tests/data/tokenizer/golden.tsv)\n");
        return 1;
    }
    std::string text;
    while (text.size() < mb * 1e6) text += corpus;

    std::vector<ds4::TokenId> ids;
    tok.encode_append(text.substr(0, 100000), ids);  // warm up
    ids.clear();
    auto t0 = std::chrono::steady_clock::now();
    tok.encode_append(text, ids);
    const double enc = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    const std::string back = tok.decode(ids);
    const double dec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("text %.2f MB, %zu tokens (%.2f bytes/token)\n", text.size() / 1e6, ids.size(),
                static_cast<double>(text.size()) / static_cast<double>(ids.size()));
    std::printf("encode %.1f MB/s (single thread), decode %.1f MB/s, round trip %s\n", text.size() / 1e6 / enc,
                text.size() / 1e6 / dec, back == text ? "exact" : "DIFFERS");
    std::printf("\nbench,mb_per_s\nencode,%.2f\ndecode,%.2f\n", text.size() / 1e6 / enc, text.size() / 1e6 / dec);
    return back == text ? 0 : 1;
}
