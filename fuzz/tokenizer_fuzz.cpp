// Fuzz target: the tokenizer (src/tokenizer/) with the full DeepSeek V4
// vocabulary. The first byte picks the mode, the rest is the input:
//   0, 1  encode arbitrary bytes (1: with allow_special); decode must give
//         the bytes back, and without allow_special no control token appears
//   2     decode arbitrary 32-bit ids (out-of-range ids are an error)
//   3     the same ids, valid ones kept, through StreamDecoder: the pieces it
//         emits, joined, are the decoded text
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "ds4/error.hpp"
#include "ds4/tokenizer.hpp"
#include "generator/vocab_source.hpp"

namespace {

const ds4::Tokenizer& tokenizer() {
    static const ds4::Tokenizer tok = [] {
        auto v = ds4::generator::load_vocab(ds4::VocabKind::Full, 0);
        return ds4::Tokenizer::from_vocab(std::move(v.tokens), std::move(v.merges), std::move(v.types));
    }();
    return tok;
}

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "tokenizer property violated: %s\n", what);
        std::abort();
    }
}

void encode(std::string_view text, bool allow_special) {
    const ds4::Tokenizer& tok = tokenizer();
    const auto ids = tok.encode(text, {.allow_special = allow_special});
    check(tok.decode(ids) == text, "decode(encode(text)) == text");
    if (!allow_special)
        for (ds4::TokenId id : ids)
            check(tok.token_type(id) != ds4::TokenType::Control && tok.token_type(id) != ds4::TokenType::UserDefined,
                  "no control token without allow_special");
}

std::vector<ds4::TokenId> ids_of(std::string_view bytes) {
    std::vector<ds4::TokenId> ids(bytes.size() / sizeof(ds4::TokenId));
    if (!ids.empty()) std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(ds4::TokenId));
    return ids;
}

void stream(std::vector<ds4::TokenId> ids) {
    const ds4::Tokenizer& tok = tokenizer();
    const auto n = static_cast<ds4::TokenId>(tok.vocab_size());
    for (auto& id : ids) id = static_cast<ds4::TokenId>(static_cast<uint32_t>(id) % static_cast<uint32_t>(n));
    ds4::StreamDecoder dec(tok);
    std::string joined;
    for (ds4::TokenId id : ids) joined += dec.push(id);
    joined += dec.flush();
    check(joined == tok.decode(ids), "StreamDecoder pieces joined == decode(ids)");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    tokenizer();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (data[0] % 4) {
            case 0: encode(rest, false); break;
            case 1: encode(rest, true); break;
            case 2: tokenizer().decode(ids_of(rest)); break;
            case 3: stream(ids_of(rest)); break;
        }
    } catch (const ds4::Error& e) {
        check(data[0] % 4 == 2, "only decoding out-of-range ids may throw");
    }
    return 0;
}
