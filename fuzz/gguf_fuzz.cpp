// Fuzz target: the GGUF reader (src/gguf/) on arbitrary bytes, through
// File::from_bytes (an exact-size heap copy, so AddressSanitizer sees any read
// past the end; File::open's mmap path is exercised by the model target).
// Everything a parsed File exposes is read back: every metadata value through
// its checked accessor, every tensor's first and last byte, the lookups.
#include <cstdint>
#include <cstdlib>

#include "ds4/error.hpp"
#include "ds4/gguf.hpp"

namespace {

using ds4::gguf::Value;
using ds4::gguf::ValueType;

uint64_t touch(const Value& v) {
    switch (v.type()) {
        case ValueType::String: return v.as_string().size();
        case ValueType::Array: {
            uint64_t h = 0;
            for (const Value& item : v.as_array().items) h += touch(item);
            return h;
        }
        case ValueType::Bool: return v.as_bool();
        case ValueType::F32:
        case ValueType::F64: return static_cast<uint64_t>(v.as_double() != 0);
        default: return v.is_integer() ? static_cast<uint64_t>(v.as_double() != 0) : 0;
    }
}

uint64_t touch(const ds4::gguf::File& f) {
    uint64_t h = f.version() + f.alignment() + f.data_offset() + f.file_size();
    for (const auto& [key, value] : f.metadata()) {
        if (f.find(key) == nullptr) std::abort();  // every key can be found
        h += touch(value);
    }
    for (const auto& t : f.tensors()) {
        if (f.find_tensor(t.name) == nullptr) std::abort();
        h += t.shape_string().size() + t.ne(0) + t.ne(7);
        if (t.n_bytes > 0) h += t.data[0] + t.data[t.n_bytes - 1];
    }
    return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        volatile uint64_t sink = touch(ds4::gguf::File::from_bytes({data, size}, "fuzz-input"));
        (void)sink;
    } catch (const ds4::Error&) {
    }
    return 0;
}
