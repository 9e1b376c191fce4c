// gguf::Writer — writes GGUF v3 files.
#include <cstring>

#include "core/error_internal.hpp"
#include "core/file_io.hpp"
#include "ds4/gguf.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace gguf {

using detail::fail;

namespace {

class VectorSink {
public:
    explicit VectorSink(std::vector<uint8_t>& out) : out_(out) {}
    void write(const void* p, size_t n) {
        if (!n) return;
        const size_t at = out_.size();
        out_.resize(at + n);
        std::memcpy(out_.data() + at, p, n);
    }
    uint64_t pos() const { return out_.size(); }

private:
    std::vector<uint8_t>& out_;
};

class FileSink {
public:
    explicit FileSink(detail::AtomicFileWriter& out) : out_(out) {}
    void write(const void* p, size_t n) { out_.write(p, n); }
    uint64_t pos() const { return out_.bytes_written(); }

private:
    detail::AtomicFileWriter& out_;
};

template <class Sink, class T>
void put(Sink& s, T v) {
    s.write(&v, sizeof(v));
}

template <class Sink>
void put_string(Sink& s, const std::string& str) {
    put<Sink, uint64_t>(s, str.size());
    s.write(str.data(), str.size());
}

template <class Sink>
void put_value(Sink& s, const Value& v) {
    switch (v.type()) {
        case ValueType::U8: put<Sink, uint8_t>(s, static_cast<uint8_t>(v.as_uint())); break;
        case ValueType::I8: put<Sink, int8_t>(s, static_cast<int8_t>(v.as_int())); break;
        case ValueType::U16: put<Sink, uint16_t>(s, static_cast<uint16_t>(v.as_uint())); break;
        case ValueType::I16: put<Sink, int16_t>(s, static_cast<int16_t>(v.as_int())); break;
        case ValueType::U32: put<Sink, uint32_t>(s, static_cast<uint32_t>(v.as_uint())); break;
        case ValueType::I32: put<Sink, int32_t>(s, static_cast<int32_t>(v.as_int())); break;
        case ValueType::U64: put<Sink, uint64_t>(s, v.as_uint()); break;
        case ValueType::I64: put<Sink, int64_t>(s, v.as_int()); break;
        case ValueType::F32: put<Sink, float>(s, static_cast<float>(v.as_double())); break;
        case ValueType::F64: put<Sink, double>(s, v.as_double()); break;
        case ValueType::Bool: put<Sink, uint8_t>(s, v.as_bool() ? 1 : 0); break;
        case ValueType::String: put_string(s, v.as_string()); break;
        case ValueType::Array: {
            const Array& a = v.as_array();
            put<Sink, uint32_t>(s, static_cast<uint32_t>(a.element_type));
            put<Sink, uint64_t>(s, a.items.size());
            for (const Value& item : a.items) put_value(s, item);
            break;
        }
    }
}

template <class Sink>
void pad_to(Sink& s, uint64_t alignment) {
    static const uint8_t zeros[64] = {};
    uint64_t rem = s.pos() % alignment;
    if (!rem) return;
    uint64_t n = alignment - rem;
    while (n) {
        const uint64_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        s.write(zeros, static_cast<size_t>(k));
        n -= k;
    }
}

}  // namespace

Writer::Writer(uint64_t alignment) : alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (uint64_t{1} << 30))
        fail(ErrorCode::InvalidArgument, "gguf writer: alignment %llu is not a power of two <= 2^30",
             static_cast<unsigned long long>(alignment));
    if (alignment != 32) kv_.emplace_back("general.alignment", Value::u32(static_cast<uint32_t>(alignment)));
}

void Writer::set(std::string key, Value value) {
    if (key == "general.alignment")
        fail(ErrorCode::InvalidArgument, "gguf writer: set the alignment through the Writer constructor");
    for (auto& [k, v] : kv_)
        if (k == key) {
            v = std::move(value);
            return;
        }
    kv_.emplace_back(std::move(key), std::move(value));
}

void Writer::check_new_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape,
                              uint64_t* n_bytes) const {
    if (shape.empty() || shape.size() > 8)
        fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' needs 1..8 dimensions", name.c_str());
    for (const auto& t : tensors_)
        if (t.name == name) fail(ErrorCode::InvalidArgument, "gguf writer: duplicate tensor '%s'", name.c_str());
    uint64_t elems = 1;
    for (uint64_t d : shape) {
        if (d == 0 || __builtin_mul_overflow(elems, d, &elems))
            fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' has a zero or overflowing shape",
                 name.c_str());
    }
    const DTypeInfo info = dtype_info(type);
    if (shape[0] % info.block_elems != 0)
        fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' row length %llu is not a multiple of the %s block (%u)",
             name.c_str(), static_cast<unsigned long long>(shape[0]), std::string(info.name).c_str(),
             info.block_elems);
    if (__builtin_mul_overflow(elems / info.block_elems, uint64_t{info.block_bytes}, n_bytes))
        fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' is too large", name.c_str());
}

void Writer::add_tensor(std::string name, DType type, std::vector<uint64_t> shape, std::span<const uint8_t> bytes) {
    uint64_t n_bytes = 0;
    check_new_tensor(name, type, shape, &n_bytes);
    if (bytes.size() != n_bytes)
        fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' needs %llu bytes, got %zu", name.c_str(),
             static_cast<unsigned long long>(n_bytes), bytes.size());
    tensors_.push_back({std::move(name), type, std::move(shape), n_bytes,
                        std::vector<uint8_t>(bytes.begin(), bytes.end()), {}});
}

void Writer::add_tensor_f32(std::string name, std::vector<uint64_t> shape, std::span<const float> values) {
    add_tensor(std::move(name), DType::F32, std::move(shape),
               {reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()});
}

void Writer::add_tensor_deferred(std::string name, DType type, std::vector<uint64_t> shape, Filler fill) {
    uint64_t n_bytes = 0;
    check_new_tensor(name, type, shape, &n_bytes);
    if (!fill) fail(ErrorCode::InvalidArgument, "gguf writer: tensor '%s' has no data source", name.c_str());
    tensors_.push_back({std::move(name), type, std::move(shape), n_bytes, {}, std::move(fill)});
}

template <class Sink>
void Writer::emit(Sink& s) const {
    put<Sink, uint32_t>(s, 0x46554747u);
    put<Sink, uint32_t>(s, 3u);
    put<Sink, uint64_t>(s, tensors_.size());
    put<Sink, uint64_t>(s, kv_.size());
    for (const auto& [k, v] : kv_) {
        put_string(s, k);
        put<Sink, uint32_t>(s, static_cast<uint32_t>(v.type()));
        put_value(s, v);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        put_string(s, t.name);
        put<Sink, uint32_t>(s, static_cast<uint32_t>(t.shape.size()));
        for (uint64_t d : t.shape) put<Sink, uint64_t>(s, d);
        put<Sink, uint32_t>(s, static_cast<uint32_t>(t.type));
        put<Sink, uint64_t>(s, offset);
        offset += (t.n_bytes + alignment_ - 1) / alignment_ * alignment_;
    }
    pad_to(s, alignment_);
    std::vector<uint8_t> scratch;
    for (const auto& t : tensors_) {
        if (t.fill) {
            scratch.assign(static_cast<size_t>(t.n_bytes), 0);
            t.fill(std::span<uint8_t>(scratch));
            s.write(scratch.data(), scratch.size());
        } else {
            s.write(t.bytes.data(), t.bytes.size());
        }
        pad_to(s, alignment_);
    }
}

std::vector<uint8_t> Writer::to_bytes() const {
    std::vector<uint8_t> out;
    VectorSink s(out);
    emit(s);
    return out;
}

void Writer::write(const std::string& path) const {
    detail::AtomicFileWriter out(path);
    FileSink s(out);
    emit(s);
    out.commit();
}

}  // namespace gguf
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
