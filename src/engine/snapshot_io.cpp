#include "engine/snapshot_io.hpp"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <span>

#include "core/error_internal.hpp"
#include "core/file_io.hpp"

namespace ds4::engine {

using detail::fail;

namespace {

constexpr char kMagic[8] = {'D', 'S', '4', 'S', 'N', 'A', 'P', '\0'};
constexpr const char* kShapeNames[6] = {"layer count", "width", "vocabulary", "head dim", "window", "indexer head dim"};

// The fixed header, little-endian, 88 bytes.
struct Header {
    char magic[8];
    uint32_t version;
    uint32_t reserved;  // 0
    uint64_t model_fingerprint;
    uint64_t steering_fingerprint;
    uint32_t shape[6];  // kShapeNames
    uint64_t n_tokens;
    uint64_t payload_bytes;     // the state, uncompressed
    uint64_t compressed_bytes;  // the zstd frame after the header: the rest of the file
    uint64_t checksum;          // XXH3-64 of the header's bytes [0, 80), then the zstd frame
};
static_assert(sizeof(Header) == 88 && offsetof(Header, checksum) == 80);
constexpr size_t kMinHeader = offsetof(Header, model_fingerprint);  // magic + version
// A sanity bound above any context (keeps every size computation far from overflow).
constexpr uint64_t kMaxTokens = uint64_t{1} << 32;
// A zstd block regenerates at most 128 KiB and takes at least 4 bytes (an RLE
// block): no frame expands more than this.
constexpr uint64_t kZstdMaxExpansion = (uint64_t{128} << 10) / 4;

std::array<uint32_t, 6> model_shape(const ModelConfig& c) {
    return {static_cast<uint32_t>(c.n_layer),      static_cast<uint32_t>(c.n_embd),
            static_cast<uint32_t>(c.n_vocab),      static_cast<uint32_t>(c.head_dim),
            static_cast<uint32_t>(c.sliding_window), static_cast<uint32_t>(c.indexer_head_dim)};
}

uint64_t checksum(const Header& h, std::span<const uint8_t> body) {
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &h, offsetof(Header, checksum));
    XXH3_64bits_update(&st, body.data(), body.size());
    return XXH3_64bits_digest(&st);
}

// ---- payload: every array of the state in a fixed order ----------------------

// Visits the arrays in file order: tokens, their phases, the logits, then per
// layer the raw window and the compressor and indexer state. Every length
// follows from the model and the token count.
template <class Visit, class Compressor>
void visit_compressor(Visit& visit, Compressor& c) {
    visit(c.kv);
    visit(c.score);
    visit(c.rows);
}

template <class Visit, class Snap>
void visit_payload(Visit& visit, Snap& s) {
    visit(s.tokens);
    visit(s.decoded);
    visit(s.logits);
    for (auto& L : s.state.layers) {
        visit(L.raw);
        if (L.compressed) visit_compressor(visit, L.attn);
        if (L.indexed) visit_compressor(visit, L.indexer);
    }
}

// Adds up the bytes of arrays (saturating: an absurd total matches no file).
struct CountBytes {
    uint64_t bytes = 0;
    template <class T>
    void operator()(const std::vector<T>& v) { (*this)(v, v.size()); }
    template <class T>
    void operator()(const std::vector<T>&, uint64_t count) {
        uint64_t b = 0;
        if (__builtin_mul_overflow(count, sizeof(T), &b) || __builtin_add_overflow(bytes, b, &bytes)) bytes = UINT64_MAX;
    }
};

struct Resize {
    template <class T>
    void operator()(std::vector<T>& v, uint64_t count) { v.assign(static_cast<size_t>(count), T{}); }
};

struct Pack {
    std::vector<uint8_t> out;
    template <class T>
    void operator()(const std::vector<T>& v) {
        const auto* p = reinterpret_cast<const uint8_t*>(v.data());
        out.insert(out.end(), p, p + v.size() * sizeof(T));
    }
};

struct Unpack {
    std::span<const uint8_t> in;
    template <class T>
    void operator()(std::vector<T>& v) {
        const size_t n = v.size() * sizeof(T);
        if (n > in.size()) fail(ErrorCode::Internal, "snapshot payload shorter than its arrays");
        if (n) std::memcpy(v.data(), in.data(), n);
        in = in.subspan(n);
    }
};

// The arrays that grow with the token count, for `n` tokens (the others are
// sized by TimelineState::init): `size(array, count)` resizes an array
// (Resize) or only adds up the bytes it would take (CountBytes).
template <class Size>
void size_growing_arrays(Snapshot::Impl& s, uint64_t n_vocab, uint64_t n, Size& size) {
    size(s.tokens, n);
    size(s.decoded, n);
    size(s.logits, n ? n_vocab : 0);
    for (auto& L : s.state.layers) {
        if (L.compressed) size(L.attn.rows, n / L.attn.ratio * L.attn.dim);
        if (L.indexed) size(L.indexer.rows, n / L.indexer.ratio * L.indexer.dim);
    }
}

// Payload bytes of `n` tokens, computed without allocating anything sized by `n`.
uint64_t payload_bytes(Snapshot::Impl& s, const ModelConfig& cfg, uint64_t n) {
    s = Snapshot::Impl{};
    s.state.init(cfg);
    CountBytes count;
    visit_payload(count, s);  // the arrays of the model's size; the growing ones are empty
    size_growing_arrays(s, static_cast<uint64_t>(cfg.n_vocab), n, count);
    return count.bytes;
}

// Sizes the growing arrays of `s` (shaped by payload_bytes) for `n` tokens.
void shape_for(Snapshot::Impl& s, const ModelConfig& cfg, uint64_t n) {
    Resize resize;
    size_growing_arrays(s, static_cast<uint64_t>(cfg.n_vocab), n, resize);
    s.state.n_past = static_cast<int64_t>(n);
    for (auto& L : s.state.layers) {
        if (L.compressed) L.attn.n_rows = static_cast<int64_t>(n) / L.attn.ratio;
        if (L.indexed) L.indexer.n_rows = static_cast<int64_t>(n) / L.indexer.ratio;
    }
}

// ---- reading: header checks, each before what it bounds ------------------------

Header read_header(const detail::InputFile& f) {
    const char* path = f.path().c_str();
    Header h{};
    if (f.size() < kMinHeader) fail(ErrorCode::CorruptFile, "%s: not a ds4 snapshot file (too short)", path);
    f.read_at(0, &h, kMinHeader);
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
        fail(ErrorCode::CorruptFile, "%s: not a ds4 snapshot file", path);
    if (h.version != kSnapshotFormatVersion)
        fail(ErrorCode::UnsupportedModel,
             "%s: snapshot format version %u is not supported (this build reads version %u only; save the session "
             "again with this build)",
             path, h.version, kSnapshotFormatVersion);
    if (f.size() < sizeof(Header)) fail(ErrorCode::CorruptFile, "%s: snapshot header is truncated", path);
    f.read_at(0, &h, sizeof(Header));
    if (h.reserved != 0) fail(ErrorCode::CorruptFile, "%s: snapshot header is corrupt (reserved field set)", path);
    return h;
}

void check_model(const Header& h, const SnapshotTarget& t, const char* path) {
    const auto want = model_shape(t.cfg);
    for (size_t i = 0; i < want.size(); ++i)
        if (h.shape[i] != want[i])
            fail(ErrorCode::InvalidArgument, "%s: snapshot %s is %u, the model has %u", path, kShapeNames[i],
                 h.shape[i], want[i]);
    if (h.model_fingerprint != t.model_fingerprint)
        fail(ErrorCode::InvalidArgument, "%s: snapshot belongs to another model (fingerprint %016llx, this model is %016llx)",
             path, static_cast<unsigned long long>(h.model_fingerprint),
             static_cast<unsigned long long>(t.model_fingerprint));
    if (h.n_tokens > static_cast<uint64_t>(t.max_tokens))
        fail(ErrorCode::ContextFull, "%s: snapshot holds %llu tokens, more than this session's context (%lld)", path,
             static_cast<unsigned long long>(h.n_tokens), static_cast<long long>(t.max_tokens));
    if (h.n_tokens > kMaxTokens)
        fail(ErrorCode::CorruptFile, "%s: snapshot token count %llu is corrupt", path,
             static_cast<unsigned long long>(h.n_tokens));
}

void check_sizes(const Header& h, uint64_t payload, uint64_t file_size, const char* path) {
    if (h.payload_bytes != payload)
        fail(ErrorCode::CorruptFile, "%s: snapshot declares %llu bytes of state; %llu tokens of this model take %llu",
             path, static_cast<unsigned long long>(h.payload_bytes), static_cast<unsigned long long>(h.n_tokens),
             static_cast<unsigned long long>(payload));
    if (h.payload_bytes / kZstdMaxExpansion > h.compressed_bytes)
        fail(ErrorCode::CorruptFile, "%s: snapshot declares %llu bytes of state, more than %llu compressed bytes can hold",
             path, static_cast<unsigned long long>(h.payload_bytes),
             static_cast<unsigned long long>(h.compressed_bytes));
    if (h.compressed_bytes > ZSTD_compressBound(payload))
        fail(ErrorCode::CorruptFile, "%s: snapshot declares %llu compressed bytes, more than %llu bytes of state need",
             path, static_cast<unsigned long long>(h.compressed_bytes), static_cast<unsigned long long>(payload));
    if (h.compressed_bytes != file_size - sizeof(Header))
        fail(ErrorCode::CorruptFile, "%s: snapshot declares %llu compressed bytes, the file holds %llu after its header",
             path, static_cast<unsigned long long>(h.compressed_bytes),
             static_cast<unsigned long long>(file_size - sizeof(Header)));
}

std::vector<uint8_t> decompress(std::span<const uint8_t> z, uint64_t payload, const char* path) {
    if (ZSTD_getFrameContentSize(z.data(), z.size()) != payload)
        fail(ErrorCode::CorruptFile, "%s: snapshot payload header is corrupt", path);
    std::vector<uint8_t> out(static_cast<size_t>(payload));
    const size_t got = ZSTD_decompress(out.data(), out.size(), z.data(), z.size());
    if (ZSTD_isError(got) || got != payload)
        fail(ErrorCode::CorruptFile, "%s: snapshot payload does not decompress: %s", path,
             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
    return out;
}

void check_contents(const Snapshot::Impl& s, const ModelConfig& cfg, const char* path) {
    for (TokenId t : s.tokens)
        if (t < 0 || t >= cfg.n_vocab)
            fail(ErrorCode::CorruptFile, "%s: snapshot holds token %d outside the vocabulary", path, t);
    for (uint8_t ph : s.decoded)
        if (ph > 1) fail(ErrorCode::CorruptFile, "%s: snapshot token phase flag is corrupt", path);
}

}  // namespace

void write_snapshot_file(const std::string& path, const Snapshot::Impl& s, const ModelConfig& cfg) {
    CountBytes count;
    visit_payload(count, s);
    Pack pack;
    pack.out.reserve(static_cast<size_t>(count.bytes));
    visit_payload(pack, s);
    std::vector<uint8_t> z(ZSTD_compressBound(pack.out.size()));
    const size_t zn = ZSTD_compress(z.data(), z.size(), pack.out.data(), pack.out.size(), 3);
    if (ZSTD_isError(zn)) fail(ErrorCode::Internal, "%s: zstd compression failed: %s", path.c_str(), ZSTD_getErrorName(zn));
    z.resize(zn);

    Header h{};
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kSnapshotFormatVersion;
    h.model_fingerprint = s.model_fingerprint;
    h.steering_fingerprint = s.steering_fingerprint;
    const auto shape = model_shape(cfg);
    std::copy(shape.begin(), shape.end(), h.shape);
    h.n_tokens = s.tokens.size();
    h.payload_bytes = pack.out.size();
    h.compressed_bytes = z.size();
    h.checksum = checksum(h, z);
    detail::AtomicFileWriter out(path);
    out.write(&h, sizeof h);
    out.write(z.data(), z.size());
    out.commit();
}

void read_snapshot_file(const std::string& path, Snapshot::Impl& s, const SnapshotTarget& target) {
    const detail::InputFile f(path, "snapshot");
    const Header h = read_header(f);
    check_model(h, target, path.c_str());
    check_sizes(h, payload_bytes(s, target.cfg, h.n_tokens), f.size(), path.c_str());
    std::vector<uint8_t> z(static_cast<size_t>(h.compressed_bytes));
    f.read_at(sizeof(Header), z.data(), z.size());
    if (checksum(h, z) != h.checksum)
        fail(ErrorCode::CorruptFile, "%s: snapshot checksum does not match: the file is corrupt", path.c_str());
    shape_for(s, target.cfg, h.n_tokens);
    const std::vector<uint8_t> payload = decompress(z, h.payload_bytes, path.c_str());
    Unpack unpack{payload};
    visit_payload(unpack, s);
    s.model_fingerprint = h.model_fingerprint;
    s.steering_fingerprint = h.steering_fingerprint;
    check_contents(s, target.cfg, path.c_str());
}

}  // namespace ds4::engine
