// The vocabularies a generated model can embed: the full DeepSeek V4 table
// (data/tokenizer, assembled into the library) or a small one made of the
// 256 byte symbols, the first merges of the DeepSeek BPE and the specials.
#include "generator/vocab_source.hpp"

#include <zstd.h>

#include <set>
#include <string_view>
#include <unordered_set>

#include "core/error_internal.hpp"
#include "tokenizer/utf8.hpp"

extern "C" {
extern const unsigned char ds4_vocab_tsv_zst[], ds4_vocab_tsv_zst_end[];
extern const unsigned char ds4_merges_txt_zst[], ds4_merges_txt_zst_end[];
}

namespace ds4::generator {

using ds4::detail::fail;

namespace {

std::string decompress(const unsigned char* begin, const unsigned char* end, const char* what) {
    const size_t n = static_cast<size_t>(end - begin);
    const unsigned long long size = ZSTD_getFrameContentSize(begin, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1ull << 31))
        fail(ErrorCode::Internal, "embedded %s data is not a zstd frame of known size", what);
    std::string out(static_cast<size_t>(size), '\0');
    const size_t got = ZSTD_decompress(out.data(), out.size(), begin, n);
    if (ZSTD_isError(got) || got != out.size()) fail(ErrorCode::Internal, "embedded %s data does not decompress", what);
    return out;
}

template <class F>
void for_each_line(const std::string& text, F&& f) {
    size_t i = 0;
    while (i < text.size()) {
        size_t j = text.find('\n', i);
        if (j == std::string::npos) j = text.size();
        f(std::string_view(text).substr(i, j - i));
        i = j + 1;
    }
}

struct FullVocab {
    VocabData v;
    FullVocab() {
        const std::string tsv = decompress(ds4_vocab_tsv_zst, ds4_vocab_tsv_zst_end, "vocabulary");
        for_each_line(tsv, [&](std::string_view line) {
            const size_t tab = line.find('\t');
            if (tab == std::string_view::npos) fail(ErrorCode::Internal, "embedded vocabulary: line without a type");
            v.types.push_back(line[0] == '3' ? 3 : 1);
            v.tokens.emplace_back(line.substr(tab + 1));
        });
        const std::string merges = decompress(ds4_merges_txt_zst, ds4_merges_txt_zst_end, "merges");
        for_each_line(merges, [&](std::string_view line) { v.merges.emplace_back(line); });
    }
};

const VocabData& full_vocab() {
    static const FullVocab f;
    return f.v;
}

}  // namespace

VocabData load_vocab(VocabKind kind, int small_merges) {
    if (kind == VocabKind::None) return {};
    const VocabData& full = full_vocab();
    if (kind == VocabKind::Full) return full;
    if (small_merges < 0 || static_cast<size_t>(small_merges) > full.merges.size())
        fail(ErrorCode::InvalidArgument, "small vocabulary: %d merges asked, the DeepSeek BPE has %zu", small_merges,
             full.merges.size());
    // Byte symbols first (ids 0..255 in byte order), then each merge's result
    // in rank order, then the control tokens of the full table.
    VocabData v;
    std::unordered_set<std::string> seen;
    const auto& bm = tokenizer::byte_map();
    for (int b = 0; b < 256; ++b) {
        std::string sym;
        tokenizer::append_utf8(sym, bm.to_cp[static_cast<size_t>(b)]);
        seen.insert(sym);
        v.tokens.push_back(std::move(sym));
        v.types.push_back(1);
    }
    for (int r = 0; r < small_merges; ++r) {
        const std::string& m = full.merges[static_cast<size_t>(r)];
        const size_t sp = m.find(' ');
        std::string joined = m.substr(0, sp) + m.substr(sp + 1);
        // A merge is usable only if both of its parts are already symbols.
        if (!seen.count(m.substr(0, sp)) || !seen.count(m.substr(sp + 1))) continue;
        v.merges.push_back(m);
        if (seen.insert(joined).second) {
            v.tokens.push_back(std::move(joined));
            v.types.push_back(1);
        }
    }
    for (size_t i = 0; i < full.tokens.size(); ++i) {
        if (full.types[i] != 3) continue;
        const std::string& t = full.tokens[i];
        if (t.find("place▁holder") != std::string::npos || t.find("ds4▁reserved") != std::string::npos) continue;
        if (seen.insert(t).second) {
            v.tokens.push_back(t);
            v.types.push_back(3);
        }
    }
    return v;
}

void write_vocab(gguf::Writer& w, const VocabData& v) {
    using gguf::Value;
    w.set("tokenizer.ggml.model", Value::string("gpt2"));
    w.set("tokenizer.ggml.pre", Value::string("deepseek-v3"));
    w.set("tokenizer.ggml.tokens", Value::array_of_strings(v.tokens));
    w.set("tokenizer.ggml.merges", Value::array_of_strings(v.merges));
    w.set("tokenizer.ggml.token_type", Value::array_of_i32(v.types));
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        if (v.tokens[i] == "<｜begin▁of▁sentence｜>") w.set("tokenizer.ggml.bos_token_id", Value::u32(static_cast<uint32_t>(i)));
        if (v.tokens[i] == "<｜end▁of▁sentence｜>") w.set("tokenizer.ggml.eos_token_id", Value::u32(static_cast<uint32_t>(i)));
    }
}

}  // namespace ds4::generator
