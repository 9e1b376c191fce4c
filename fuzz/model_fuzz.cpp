// Fuzz target: ds4::Model::load on a file (GGUF reader through mmap, the
// hyperparameters from metadata, tensor binding and checks, the tokenizer
// from metadata, placement). A model that loads must then run: one token is
// decoded in a small session.
//
// A custom mutator aims at the header: a model file is almost all tensor
// data, so three mutations in four of an input that parses as GGUF change
// only its header (metadata and tensor directory, which may grow or shrink;
// the data section follows it unchanged).
#include <cstdint>
#include <cstring>
#include <vector>

#include "ds4/gguf.hpp"
#include "ds4/session.hpp"
#include "fuzz_common.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

size_t header_size(const uint8_t* data, size_t size) {
    try {
        return static_cast<size_t>(ds4::gguf::File::from_bytes({data, size}).data_offset());
    } catch (const ds4::Error&) {
        return 0;
    }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
    const size_t h = seed % 4 != 0 ? header_size(data, size) : 0;
    if (h == 0 || h >= size) return LLVMFuzzerMutate(data, size, max_size);
    std::vector<uint8_t> header(data, data + h);
    header.resize(2 * h);
    header.resize(LLVMFuzzerMutate(header.data(), h, header.size()));
    const size_t rest = size - h;
    if (header.size() + rest > max_size) return LLVMFuzzerMutate(data, size, max_size);
    std::memmove(data + header.size(), data + h, rest);
    std::memcpy(data, header.data(), header.size());
    return header.size() + rest;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = ds4::fuzz::write_input(data, size);
    try {
        const auto model = ds4::Model::load(path, ds4::fuzz::load_options());
        // Known: a session allocates the whole attention window the file
        // declares (up to 2^24 rows), whatever its context size.
        if (ds4::fuzz::skip_known() && model->config().sliding_window > 4096) return 0;
        ds4::Session session(model, {.context_size = 8});
        session.decode(0);
    } catch (const ds4::Error&) {
    }
    return 0;
}
