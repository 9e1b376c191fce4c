#include "engine/snapshot_io.hpp"

#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error_internal.hpp"

namespace ds4::engine {

using detail::fail;

namespace {

constexpr char kMagic[8] = {'D', 'S', '4', 'S', 'N', 'A', 'P', '\0'};
constexpr uint64_t kMaxPayload = uint64_t{1} << 40;

class Out {
public:
    template <class T>
    void put(T v) {
        const size_t at = buf.size();
        buf.resize(at + sizeof(T));
        std::memcpy(buf.data() + at, &v, sizeof(T));
    }
    template <class T>
    void put_array(const std::vector<T>& v) {
        put<uint64_t>(v.size());
        const size_t at = buf.size();
        buf.resize(at + v.size() * sizeof(T));
        if (!v.empty()) std::memcpy(buf.data() + at, v.data(), v.size() * sizeof(T));
    }
    std::vector<uint8_t> buf;
};

class In {
public:
    In(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}
    template <class T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    template <class T>
    void get_array(std::vector<T>& v, uint64_t expect, const char* what) {
        const uint64_t n = get<uint64_t>(what);
        if (n != expect)
            fail(ErrorCode::CorruptFile, "%s: snapshot %s has %llu entries, expected %llu", path_.c_str(), what,
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(expect));
        if (n > (n_ - pos_) / sizeof(T)) need(n * sizeof(T), what);
        v.resize(static_cast<size_t>(n));
        if (n) std::memcpy(v.data(), p_ + pos_, static_cast<size_t>(n) * sizeof(T));
        pos_ += static_cast<size_t>(n) * sizeof(T);
    }
    void need(uint64_t k, const char* what) const {
        if (k > n_ - pos_)
            fail(ErrorCode::CorruptFile, "%s: snapshot truncated while reading %s", path_.c_str(), what);
    }
    bool done() const { return pos_ == n_; }

private:
    const uint8_t* p_;
    size_t n_, pos_ = 0;
    const std::string& path_;
};

void put_compressor(Out& o, const CompressorState& c) {
    o.put<uint32_t>(static_cast<uint32_t>(c.ratio));
    o.put<uint32_t>(static_cast<uint32_t>(c.lanes));
    o.put<uint32_t>(static_cast<uint32_t>(c.dim));
    o.put_array(c.kv);
    o.put_array(c.score);
    o.put<uint64_t>(static_cast<uint64_t>(c.n_rows));
    o.put_array(c.rows);
}

void get_compressor(In& in, CompressorState& c, int64_t n_tokens, const std::string& path, int layer) {
    const uint32_t ratio = in.get<uint32_t>("compressor ratio");
    const uint32_t lanes = in.get<uint32_t>("compressor lanes");
    const uint32_t dim = in.get<uint32_t>("compressor width");
    if (static_cast<int>(ratio) != c.ratio || static_cast<int>(lanes) != c.lanes || static_cast<int>(dim) != c.dim)
        fail(ErrorCode::InvalidArgument, "%s: snapshot layer %d compressor (%u/%u/%u) does not match the model",
             path.c_str(), layer, ratio, lanes, dim);
    in.get_array(c.kv, c.kv.size(), "compressor values");
    in.get_array(c.score, c.score.size(), "compressor scores");
    const uint64_t rows = in.get<uint64_t>("compressed row count");
    if (rows != static_cast<uint64_t>(n_tokens / c.ratio))
        fail(ErrorCode::CorruptFile, "%s: snapshot layer %d holds %llu compressed rows for %lld tokens", path.c_str(),
             layer, static_cast<unsigned long long>(rows), static_cast<long long>(n_tokens));
    c.n_rows = static_cast<int64_t>(rows);
    in.get_array(c.rows, rows * c.dim, "compressed rows");
}

}  // namespace

void write_snapshot_file(const std::string& path, const Snapshot::Impl& s, const ModelConfig& cfg) {
    Out o;
    o.put<uint64_t>(s.model_fingerprint);
    o.put<uint64_t>(s.steering_fingerprint);
    for (int v : {cfg.n_layer, cfg.n_embd, cfg.n_vocab, cfg.head_dim, cfg.sliding_window, cfg.indexer_head_dim})
        o.put<uint32_t>(static_cast<uint32_t>(v));
    o.put_array(s.tokens);
    o.put_array(s.decoded);
    o.put_array(s.logits);
    for (const auto& L : s.state.layers) {
        o.put<uint8_t>(static_cast<uint8_t>((L.compressed ? 1 : 0) | (L.indexed ? 2 : 0)));
        o.put_array(L.raw);
        if (L.compressed) put_compressor(o, L.attn);
        if (L.indexed) put_compressor(o, L.indexer);
    }
    std::vector<uint8_t> z(ZSTD_compressBound(o.buf.size()));
    const size_t zn = ZSTD_compress(z.data(), z.size(), o.buf.data(), o.buf.size(), 3);
    if (ZSTD_isError(zn)) fail(ErrorCode::Internal, "%s: zstd compression failed: %s", path.c_str(), ZSTD_getErrorName(zn));

    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(ErrorCode::IoError, "%s: cannot create: %s", tmp.c_str(), std::strerror(errno));
    const uint32_t version = kSnapshotFormatVersion, reserved = 0;
    const uint64_t raw_size = o.buf.size();
    bool ok = std::fwrite(kMagic, 1, 8, f) == 8 && std::fwrite(&version, 4, 1, f) == 1 &&
              std::fwrite(&reserved, 4, 1, f) == 1 && std::fwrite(&raw_size, 8, 1, f) == 1 &&
              std::fwrite(z.data(), 1, zn, f) == zn;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail(ErrorCode::IoError, "%s: cannot write snapshot: %s", path.c_str(), std::strerror(errno));
    }
}

void read_snapshot_file(const std::string& path, Snapshot::Impl& s, const ModelConfig& cfg) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(ErrorCode::IoError, "%s: cannot open snapshot: %s", path.c_str(), std::strerror(errno));
    std::vector<uint8_t> file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (file.size() < 24 || std::memcmp(file.data(), kMagic, 8) != 0)
        fail(ErrorCode::CorruptFile, "%s: not a ds4 snapshot file", path.c_str());
    uint32_t version;
    uint64_t raw_size;
    std::memcpy(&version, file.data() + 8, 4);
    std::memcpy(&raw_size, file.data() + 16, 8);
    if (version != kSnapshotFormatVersion)
        fail(ErrorCode::UnsupportedModel, "%s: snapshot format version %u is not supported (this build reads %u)",
             path.c_str(), version, kSnapshotFormatVersion);
    const unsigned long long content = ZSTD_getFrameContentSize(file.data() + 24, file.size() - 24);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != raw_size ||
        raw_size > kMaxPayload)
        fail(ErrorCode::CorruptFile, "%s: snapshot payload header is corrupt", path.c_str());
    std::vector<uint8_t> buf(static_cast<size_t>(raw_size));
    const size_t got = ZSTD_decompress(buf.data(), buf.size(), file.data() + 24, file.size() - 24);
    if (ZSTD_isError(got) || got != raw_size)
        fail(ErrorCode::CorruptFile, "%s: snapshot payload does not decompress: %s", path.c_str(),
             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");

    In in(buf.data(), buf.size(), path);
    s.model_fingerprint = in.get<uint64_t>("model fingerprint");
    s.steering_fingerprint = in.get<uint64_t>("steering fingerprint");
    const char* names[] = {"layer count", "width", "vocabulary", "head dim", "window", "indexer head dim"};
    const int want[] = {cfg.n_layer, cfg.n_embd, cfg.n_vocab, cfg.head_dim, cfg.sliding_window, cfg.indexer_head_dim};
    for (int i = 0; i < 6; ++i) {
        const uint32_t v = in.get<uint32_t>(names[i]);
        if (v != static_cast<uint32_t>(want[i]))
            fail(ErrorCode::InvalidArgument, "%s: snapshot %s is %u, the model has %d", path.c_str(), names[i], v,
                 want[i]);
    }
    const uint64_t n_tok = in.get<uint64_t>("token count");
    if (n_tok > (uint64_t{1} << 40)) fail(ErrorCode::CorruptFile, "%s: snapshot token count is corrupt", path.c_str());
    {
        in.need(n_tok * sizeof(TokenId), "tokens");
        s.tokens.resize(static_cast<size_t>(n_tok));
        for (auto& t : s.tokens) {
            t = in.get<TokenId>("tokens");
            if (t < 0 || t >= cfg.n_vocab)
                fail(ErrorCode::CorruptFile, "%s: snapshot holds token %d outside the vocabulary", path.c_str(), t);
        }
    }
    in.get_array(s.decoded, n_tok, "token phases");
    for (uint8_t ph : s.decoded)
        if (ph > 1) fail(ErrorCode::CorruptFile, "%s: snapshot token phase flag is corrupt", path.c_str());
    in.get_array(s.logits, n_tok ? static_cast<uint64_t>(cfg.n_vocab) : 0, "logits");
    s.state.init(cfg);
    s.state.n_past = static_cast<int64_t>(n_tok);
    for (int il = 0; il < cfg.n_layer; ++il) {
        auto& L = s.state.layers[static_cast<size_t>(il)];
        const uint8_t flags = in.get<uint8_t>("layer flags");
        if (flags != static_cast<uint8_t>((L.compressed ? 1 : 0) | (L.indexed ? 2 : 0)))
            fail(ErrorCode::InvalidArgument, "%s: snapshot layer %d has another kind than the model's", path.c_str(), il);
        in.get_array(L.raw, L.raw.size(), "raw window");
        if (L.compressed) get_compressor(in, L.attn, static_cast<int64_t>(n_tok), path, il);
        if (L.indexed) get_compressor(in, L.indexer, static_cast<int64_t>(n_tok), path, il);
    }
    if (!in.done()) fail(ErrorCode::CorruptFile, "%s: snapshot has trailing bytes", path.c_str());
}

}  // namespace ds4::engine
