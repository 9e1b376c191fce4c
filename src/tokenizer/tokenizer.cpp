// Byte-level BPE over the pre-tokenizer's pieces (runtime spec 1.5-1.8).
#include "ds4/tokenizer.hpp"

#include <algorithm>
#include <mutex>
#include <array>
#include <atomic>
#include <functional>
#include <unordered_map>

#include "core/error_internal.hpp"
#include "ds4/gguf.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;
using tokenizer::byte_map;

struct Tokenizer::Impl {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::unordered_map<std::string_view, TokenId> ids;  // views into `tokens`
    // Merge table: (left, right) -> (rank, merged id).
    std::unordered_map<uint64_t, std::pair<int32_t, TokenId>> merges;
    std::array<TokenId, 256> byte_token{};
    // Control tokens matched in text when EncodeOptions::allow_special is set,
    // grouped by their first byte, longest first.
    std::array<std::vector<TokenId>, 256> specials_by_byte;
    Specials specials;
    // Identity for the per-thread piece cache (an address could be reused).
    uint64_t instance = next_instance();

    static uint64_t next_instance() {
        static std::atomic<uint64_t> n{0};
        return ++n;
    }

    static uint64_t key(TokenId a, TokenId b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

    bool is_control(TokenId id) const {
        const int32_t t = types[static_cast<size_t>(id)];
        return t == static_cast<int32_t>(TokenType::Control) || t == static_cast<int32_t>(TokenType::UserDefined);
    }

    void bpe(std::string_view piece, std::vector<TokenId>& out) const;
    void encode_plain(std::string_view text, std::vector<TokenId>& out) const;
    void encode_chunk(std::string_view text, std::vector<TokenId>& out) const;
};

namespace {

struct Node {
    TokenId id;
    int32_t prev, next;
};

struct Candidate {
    int32_t rank;
    int32_t pos;  // left node (node indices increase left to right)
    TokenId left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

// Merge adjacent symbols, lowest rank first and leftmost on ties, until no
// adjacent pair has a merge.
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<TokenId>& out) const {
    const size_t n = piece.size();
    if (n == 1) {
        out.push_back(byte_token[static_cast<unsigned char>(piece[0])]);
        return;
    }
    thread_local std::vector<Node> nodes;
    thread_local std::vector<Candidate> heap;  // min-heap on (rank, pos), kept between calls for its capacity
    nodes.resize(n);
    for (size_t i = 0; i < n; ++i)
        nodes[i] = {byte_token[static_cast<unsigned char>(piece[i])], static_cast<int32_t>(i) - 1,
                    i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
    heap.clear();
    auto offer = [&](int32_t left) {
        if (left < 0) return;
        const int32_t right = nodes[static_cast<size_t>(left)].next;
        if (right < 0) return;
        const TokenId a = nodes[static_cast<size_t>(left)].id, b = nodes[static_cast<size_t>(right)].id;
        auto it = merges.find(key(a, b));
        if (it != merges.end()) {
            heap.push_back({it->second.first, left, a, b});
            std::push_heap(heap.begin(), heap.end(), std::greater<Candidate>{});
        }
    };
    for (size_t i = 0; i + 1 < n; ++i) offer(static_cast<int32_t>(i));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<Candidate>{});
        const Candidate c = heap.back();
        heap.pop_back();
        Node& l = nodes[static_cast<size_t>(c.pos)];
        if (l.id != c.left || l.next < 0) continue;  // stale: the left symbol changed or was absorbed
        Node& r = nodes[static_cast<size_t>(l.next)];
        if (r.id != c.right) continue;
        l.id = merges.at(key(c.left, c.right)).second;
        r.id = -1;  // absorbed
        l.next = r.next;
        if (r.next >= 0) nodes[static_cast<size_t>(r.next)].prev = c.pos;
        offer(l.prev);
        offer(c.pos);
    }
    for (int32_t i = 0; i >= 0; i = nodes[static_cast<size_t>(i)].next) out.push_back(nodes[static_cast<size_t>(i)].id);
}

namespace {

// Per-thread cache of the BPE result of short pieces (words repeat a lot).
// Keyed by tokenizer instance so that two vocabularies never share entries.
struct PieceCache {
    uint64_t owner = 0;
    std::unordered_map<std::string, std::vector<TokenId>> map;
};
constexpr size_t kCacheMaxPiece = 32;
constexpr size_t kCacheMaxEntries = 1 << 16;

// Long texts are pre-tokenized in chunks cut right after a newline that is
// followed by a printable ASCII character: no piece of the split can span
// such a point (every pattern that takes a newline ends its match there or
// continues only with whitespace), so the pieces are the same as for the
// whole text, and the split's buffers stay small.
size_t next_chunk_end(std::string_view text, size_t begin) {
    constexpr size_t kChunk = 1 << 16;
    if (text.size() - begin <= kChunk) return text.size();
    for (size_t i = begin + kChunk; i + 1 < text.size(); ++i)
        if (text[i] == '\n' && text[i + 1] > ' ' && text[i + 1] < 0x7F) return i + 1;
    return text.size();
}

}  // namespace

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
    for (size_t b = 0; b < text.size();) {
        const size_t e = next_chunk_end(text, b);
        encode_chunk(text.substr(b, e - b), out);
        b = e;
    }
}

void Tokenizer::Impl::encode_chunk(std::string_view text, std::vector<TokenId>& out) const {
    thread_local std::vector<tokenizer::Piece> pieces;
    thread_local PieceCache cache;
    if (cache.owner != instance) {
        cache.map.clear();
        cache.owner = instance;
    }
    pieces.clear();
    tokenizer::pre_tokenize(text, pieces);
    std::string key;
    for (const auto& p : pieces) {
        const std::string_view piece = text.substr(p.begin, p.end - p.begin);
        if (piece.size() > kCacheMaxPiece) {
            bpe(piece, out);
            continue;
        }
        key.assign(piece);
        auto it = cache.map.find(key);
        if (it == cache.map.end()) {
            if (cache.map.size() >= kCacheMaxEntries) cache.map.clear();
            std::vector<TokenId> ids;
            bpe(piece, ids);
            it = cache.map.emplace(key, std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    }
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_vocab(std::vector<std::string> tokens, std::vector<std::string> merges,
                                std::vector<int32_t> types) {
    Tokenizer t;
    Impl& im = *t.impl_;
    if (tokens.empty()) fail(ErrorCode::UnsupportedModel, "tokenizer: the vocabulary is empty");
    if (tokens.size() > static_cast<size_t>(INT32_MAX)) fail(ErrorCode::UnsupportedModel, "tokenizer: vocabulary too large");
    if (!types.empty() && types.size() != tokens.size())
        fail(ErrorCode::UnsupportedModel, "tokenizer: %zu token types for %zu tokens", types.size(), tokens.size());
    if (types.empty()) types.assign(tokens.size(), static_cast<int32_t>(TokenType::Normal));
    im.tokens = std::move(tokens);
    im.types = std::move(types);
    im.ids.reserve(im.tokens.size());
    for (size_t i = 0; i < im.tokens.size(); ++i) {
        if (im.tokens[i].empty()) fail(ErrorCode::UnsupportedModel, "tokenizer: token %zu is an empty string", i);
        im.ids.emplace(std::string_view(im.tokens[i]), static_cast<TokenId>(i));  // first occurrence wins
    }
    // Every byte must be a token of its own (byte-level BPE has no fallback).
    const auto& bm = byte_map();
    for (int b = 0; b < 256; ++b) {
        std::string sym;
        tokenizer::append_utf8(sym, bm.to_cp[static_cast<size_t>(b)]);
        auto it = im.ids.find(sym);
        if (it == im.ids.end())
            fail(ErrorCode::UnsupportedModel, "tokenizer: the vocabulary has no token for byte 0x%02x ('%s')", b, sym.c_str());
        im.byte_token[static_cast<size_t>(b)] = it->second;
    }
    im.merges.reserve(merges.size());
    std::string joined;
    for (size_t r = 0; r < merges.size(); ++r) {
        const std::string& m = merges[r];
        const size_t sp = m.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= m.size())
            fail(ErrorCode::UnsupportedModel, "tokenizer: merge %zu ('%s') is not 'LEFT RIGHT'", r, m.c_str());
        const std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
        joined.assign(a);
        joined.append(b);
        auto ia = im.ids.find(a), ib = im.ids.find(b), ij = im.ids.find(joined);
        if (ia == im.ids.end() || ib == im.ids.end() || ij == im.ids.end())
            fail(ErrorCode::UnsupportedModel, "tokenizer: merge %zu ('%s') names a symbol that is not in the vocabulary", r,
                 m.c_str());
        im.merges[Impl::key(ia->second, ib->second)] = {static_cast<int32_t>(r), ij->second};  // a repeat keeps the later rank
    }
    for (size_t i = 0; i < im.tokens.size(); ++i)
        if (im.is_control(static_cast<TokenId>(i)))
            im.specials_by_byte[static_cast<unsigned char>(im.tokens[i][0])].push_back(static_cast<TokenId>(i));
    for (auto& v : im.specials_by_byte)
        std::stable_sort(v.begin(), v.end(), [&](TokenId x, TokenId y) {
            return im.tokens[static_cast<size_t>(x)].size() > im.tokens[static_cast<size_t>(y)].size();
        });
    auto need = [&](const char* text, const char* what) {
        auto it = im.ids.find(text);
        if (it == im.ids.end()) fail(ErrorCode::UnsupportedModel, "tokenizer: the %s token '%s' is missing", what, text);
        return it->second;
    };
    Specials& s = im.specials;
    s.bos = need("<｜begin▁of▁sentence｜>", "BOS");
    s.eos = need("<｜end▁of▁sentence｜>", "EOS");
    s.user = need("<｜User｜>", "User");
    s.assistant = need("<｜Assistant｜>", "Assistant");
    s.think = need("<think>", "think");
    s.end_think = need("</think>", "end-think");
    s.dsml = need("｜DSML｜", "DSML");
    return t;
}

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
    auto strings = [&](const char* key) {
        const gguf::Array& a = file.get(key).as_array(key);
        std::vector<std::string> out;
        out.reserve(a.items.size());
        for (const auto& v : a.items) out.push_back(v.as_string(key));
        return out;
    };
    std::vector<std::string> tokens = strings("tokenizer.ggml.tokens");
    std::vector<std::string> merges = file.find("tokenizer.ggml.merges") ? strings("tokenizer.ggml.merges")
                                                                         : std::vector<std::string>{};
    std::vector<int32_t> types;
    if (const auto* tv = file.find("tokenizer.ggml.token_type")) {
        const gguf::Array& a = tv->as_array("tokenizer.ggml.token_type");
        types.reserve(a.items.size());
        for (const auto& v : a.items) types.push_back(static_cast<int32_t>(v.as_int("tokenizer.ggml.token_type")));
    }
    try {
        return from_vocab(std::move(tokens), std::move(merges), std::move(types));
    } catch (const Error& e) {
        throw Error(e.code(), file.path() + ": " + e.what());
    }
}

size_t Tokenizer::vocab_size() const noexcept { return impl_->tokens.size(); }
const Tokenizer::Specials& Tokenizer::specials() const noexcept { return impl_->specials; }

void Tokenizer::encode_append(std::string_view text, std::vector<TokenId>& out, const EncodeOptions& options) const {
    const Impl& im = *impl_;
    if (!options.allow_special) {
        im.encode_plain(text, out);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        TokenId hit = -1;
        for (TokenId id : im.specials_by_byte[static_cast<unsigned char>(text[i])]) {
            const std::string& s = im.tokens[static_cast<size_t>(id)];
            if (text.compare(i, s.size(), s) == 0) {
                hit = id;
                break;  // longest first
            }
        }
        if (hit < 0) {
            ++i;
            continue;
        }
        if (start < i) im.encode_plain(text.substr(start, i - start), out);
        out.push_back(hit);
        i += im.tokens[static_cast<size_t>(hit)].size();
        start = i;
    }
    if (start < text.size()) im.encode_plain(text.substr(start), out);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 4);
    encode_append(text, out, options);
    return out;
}

std::vector<std::string> Tokenizer::split(std::string_view text) const {
    std::vector<tokenizer::Piece> pieces;
    tokenizer::pre_tokenize(text, pieces);
    std::vector<std::string> out;
    for (const auto& p : pieces) out.emplace_back(text.substr(p.begin, p.end - p.begin));
    return out;
}

const std::string& Tokenizer::token_string(TokenId id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size())
        fail(ErrorCode::InvalidArgument, "token id %d is outside the vocabulary of %zu tokens", id, impl_->tokens.size());
    return impl_->tokens[static_cast<size_t>(id)];
}

TokenType Tokenizer::token_type(TokenId id) const {
    token_string(id);  // range check
    return static_cast<TokenType>(impl_->types[static_cast<size_t>(id)]);
}

std::optional<TokenId> Tokenizer::find(std::string_view s) const {
    auto it = impl_->ids.find(s);
    if (it == impl_->ids.end()) return std::nullopt;
    return it->second;
}

std::string Tokenizer::token_bytes(TokenId id) const {
    const std::string& s = token_string(id);
    if (impl_->is_control(id)) return s;
    const auto& bm = byte_map();
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        size_t len;
        const char32_t cp = tokenizer::decode_utf8(s, i, &len);
        i += len;
        if (cp < bm.from_cp.size() && bm.from_cp[cp] >= 0) out += static_cast<char>(bm.from_cp[cp]);
        // Code points outside the byte map have no bytes (the reference drops them).
    }
    return out;
}

std::string Tokenizer::decode(std::span<const TokenId> ids) const {
    std::string out;
    for (TokenId id : ids) out += token_bytes(id);
    return out;
}

size_t utf8_complete_prefix(std::string_view b) noexcept {
    const size_t n = b.size();
    // Walk back over at most 3 continuation bytes to a lead byte.
    size_t i = n;
    int cont = 0;
    while (i > 0 && cont < 4 && (static_cast<unsigned char>(b[i - 1]) & 0xC0) == 0x80) {
        --i;
        ++cont;
    }
    if (i == 0) return n;  // only continuation bytes: nothing can complete them
    const auto lead = static_cast<unsigned char>(b[i - 1]);
    int need = 1;
    if (lead >= 0xC2 && lead <= 0xDF) need = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) need = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) need = 4;
    if (need > 1 && cont + 1 < need) return i - 1;  // hold from the lead byte on
    return n;
}

std::string StreamDecoder::push(TokenId id) {
    pending_ += tok_->token_bytes(id);
    const size_t k = utf8_complete_prefix(pending_);
    std::string out = pending_.substr(0, k);
    pending_.erase(0, k);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    out.swap(pending_);
    return out;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
