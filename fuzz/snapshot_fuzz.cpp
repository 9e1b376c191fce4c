// Fuzz target: Session::load (zstd snapshot files) into a session of the
// micro model, allowing steering mismatches so the whole payload is read. A
// snapshot that loads must leave a usable session: one more token is decoded.
//
// A custom mutator reaches the payload parser: a byte mutation of a zstd
// frame almost never decompresses, so three inputs in four that are valid
// snapshot files have their payload mutated uncompressed and recompressed
// under the same header (the fourth, and any other input, get libFuzzer's own
// mutations, which exercise the header and the frame).
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "ds4/session.hpp"
#include "fuzz_common.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

constexpr size_t kHeader = 24;  // magic (8), version (4), reserved (4), payload size (8)
constexpr unsigned long long kMaxPayload = 64u << 20;

bool payload(const uint8_t* data, size_t size, std::vector<uint8_t>& raw) {
    if (size < kHeader || std::memcmp(data, "DS4SNAP", 8) != 0) return false;
    const unsigned long long n = ZSTD_getFrameContentSize(data + kHeader, size - kHeader);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > kMaxPayload) return false;
    raw.resize(static_cast<size_t>(n));
    const size_t got = ZSTD_decompress(raw.data(), raw.size(), data + kHeader, size - kHeader);
    return !ZSTD_isError(got) && got == raw.size();
}

// The header of `data` (payload size updated) and `raw` compressed, if it fits.
size_t repack(uint8_t* data, size_t max_size, const std::vector<uint8_t>& raw) {
    std::vector<uint8_t> z(ZSTD_compressBound(raw.size()));
    const size_t zn = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 1);
    if (ZSTD_isError(zn) || kHeader + zn > max_size) return 0;
    const uint64_t n = raw.size();
    std::memcpy(data + 16, &n, 8);
    std::memcpy(data + kHeader, z.data(), zn);
    return kHeader + zn;
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
    std::vector<uint8_t> raw;
    if (seed % 4 != 0 && payload(data, size, raw)) {
        const size_t n = raw.size();
        raw.resize(2 * n + 64);
        raw.resize(LLVMFuzzerMutate(raw.data(), n, raw.size()));
        if (const size_t out = repack(data, max_size, raw)) return out;
    }
    return LLVMFuzzerMutate(data, size, max_size);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // Known: the reader allocates the payload size the file declares (up to
    // 2^40 bytes) before decompressing.
    uint64_t declared = 0;
    if (size >= kHeader) std::memcpy(&declared, data + 16, 8);
    if (ds4::fuzz::skip_known() && declared > kMaxPayload) return 0;
    const std::string path = ds4::fuzz::write_input(data, size);
    ds4::Session session(ds4::fuzz::micro_model(), {.context_size = 64});
    try {
        session.load(path, {.allow_steering_mismatch = true});
        session.decode(0);
    } catch (const ds4::Error&) {
    }
    return 0;
}
