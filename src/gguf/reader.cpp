// gguf::File — a GGUF v3 reader over a read-only private memory mapping.
//
// Nothing read from the file is trusted: every count is checked against the
// bytes that remain before anything is allocated, every size computation is
// overflow-checked, and every tensor must lie inside the data section at an
// aligned offset. Failures throw ds4::Error naming the file and the key or
// tensor concerned.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "core/error_internal.hpp"
#include "ds4/gguf.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace gguf {

using detail::fail;
using detail::format;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 8;
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kDefaultAlignment = 32;

// Owns the bytes: either an mmap (with the file kept open, to notice a
// truncation) or a heap copy.
struct Mapping {
    const uint8_t* data = nullptr;
    size_t size = 0;
    bool mapped = false;
    int fd = -1;
    std::vector<uint8_t> owned;

    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
        if (mapped && data) munmap(const_cast<uint8_t*>(data), size);
        if (fd >= 0) ::close(fd);
    }
};

// Bounds-checked little-endian cursor.
class Cursor {
public:
    Cursor(const uint8_t* data, size_t size, const std::string& path)
        : p_(data), size_(size), path_(path) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    template <class T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t len = read<uint64_t>(what);
        if (len > remaining())
            fail(ErrorCode::CorruptFile, "%s: %s: string length %llu at offset %zu runs past the end of the file",
                 path_.c_str(), what, static_cast<unsigned long long>(len), pos_ - 8);
        std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return s;
    }

    void need(size_t n, const char* what) const {
        if (n > remaining())
            fail(ErrorCode::CorruptFile, "%s: truncated while reading %s at offset %zu (need %zu bytes, %zu left)",
                 path_.c_str(), what, pos_, n, remaining());
    }

private:
    const uint8_t* p_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& path_;
};

// Smallest number of bytes one element of the type can occupy on disk; used
// to reject absurd counts before allocating.
size_t min_encoded_size(ValueType t) {
    switch (t) {
        case ValueType::U8:
        case ValueType::I8:
        case ValueType::Bool: return 1;
        case ValueType::U16:
        case ValueType::I16: return 2;
        case ValueType::U32:
        case ValueType::I32:
        case ValueType::F32: return 4;
        case ValueType::U64:
        case ValueType::I64:
        case ValueType::F64:
        case ValueType::String: return 8;
        case ValueType::Array: return 12;
    }
    return 1;
}

bool valid_value_type(uint32_t t) { return t <= 12; }

Value read_value(Cursor& c, ValueType type, const std::string& key, const std::string& path, int depth) {
    const std::string what = "value of '" + key + "'";
    switch (type) {
        case ValueType::U8: return Value::u8(c.read<uint8_t>(what.c_str()));
        case ValueType::I8: return Value::i8(c.read<int8_t>(what.c_str()));
        case ValueType::U16: return Value::u16(c.read<uint16_t>(what.c_str()));
        case ValueType::I16: return Value::i16(c.read<int16_t>(what.c_str()));
        case ValueType::U32: return Value::u32(c.read<uint32_t>(what.c_str()));
        case ValueType::I32: return Value::i32(c.read<int32_t>(what.c_str()));
        case ValueType::F32: return Value::f32(c.read<float>(what.c_str()));
        case ValueType::U64: return Value::u64(c.read<uint64_t>(what.c_str()));
        case ValueType::I64: return Value::i64(c.read<int64_t>(what.c_str()));
        case ValueType::F64: return Value::f64(c.read<double>(what.c_str()));
        case ValueType::Bool: {
            const uint8_t b = c.read<uint8_t>(what.c_str());
            if (b > 1)
                fail(ErrorCode::CorruptFile, "%s: metadata key '%s': bool byte is %u (must be 0 or 1)",
                     path.c_str(), key.c_str(), unsigned{b});
            return Value::boolean(b != 0);
        }
        case ValueType::String: return Value::string(c.read_string(what.c_str()));
        case ValueType::Array: {
            if (depth >= kMaxArrayDepth)
                fail(ErrorCode::CorruptFile, "%s: metadata key '%s': arrays nested deeper than %d",
                     path.c_str(), key.c_str(), kMaxArrayDepth);
            const uint32_t et = c.read<uint32_t>(what.c_str());
            if (!valid_value_type(et))
                fail(ErrorCode::CorruptFile, "%s: metadata key '%s': unknown array element type %u",
                     path.c_str(), key.c_str(), et);
            const uint64_t count = c.read<uint64_t>(what.c_str());
            const ValueType elem = static_cast<ValueType>(et);
            if (count > c.remaining() / min_encoded_size(elem))
                fail(ErrorCode::CorruptFile,
                     "%s: metadata key '%s': array of %llu %s elements cannot fit in the %zu bytes left",
                     path.c_str(), key.c_str(), static_cast<unsigned long long>(count),
                     std::string(value_type_name(elem)).c_str(), c.remaining());
            std::vector<Value> items;
            items.reserve(static_cast<size_t>(count));
            for (uint64_t i = 0; i < count; ++i) items.push_back(read_value(c, elem, key, path, depth + 1));
            return Value::array(elem, std::move(items));
        }
    }
    fail(ErrorCode::CorruptFile, "%s: metadata key '%s': unknown value type", path.c_str(), key.c_str());
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

struct File::Impl {
    std::string path;
    uint32_t version = 0;
    uint64_t alignment = kDefaultAlignment;
    uint64_t data_offset = 0;
    std::unique_ptr<Mapping> map;
    std::vector<std::pair<std::string, Value>> kv;
    std::unordered_map<std::string, size_t> kv_index;
    std::vector<TensorInfo> tensors;
    std::unordered_map<std::string, size_t> tensor_index;

    void parse(const OpenOptions& options);
    void check_not_truncated() const;
};

void File::Impl::check_not_truncated() const {
    if (map->fd < 0) return;
    struct stat st {};
    if (fstat(map->fd, &st) != 0) fail(ErrorCode::IoError, "%s: cannot stat: %s", path.c_str(), std::strerror(errno));
    if (static_cast<uint64_t>(st.st_size) < map->size)
        fail(ErrorCode::CorruptFile,
             "%s: the file was truncated from %zu to %lld bytes while it was open; replace a model file by renaming "
             "a new file over it, never truncate or rewrite it in place",
             path.c_str(), map->size, static_cast<long long>(st.st_size));
}

void File::Impl::parse(const OpenOptions& options) {
    const uint8_t* base = map->data;
    const size_t size = map->size;
    Cursor c(base, size, path);

    const uint32_t magic = c.read<uint32_t>("magic");
    if (magic != kMagic)
        fail(ErrorCode::CorruptFile, "%s: not a GGUF file (magic 0x%08x, expected 0x%08x \"GGUF\")", path.c_str(),
             magic, kMagic);
    version = c.read<uint32_t>("version");
    if (version != 3)
        fail(ErrorCode::UnsupportedModel, "%s: GGUF version %u is not supported (only version 3)", path.c_str(),
             version);
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    // A key needs at least 8 (length) + 4 (type) + 1 byte of value.
    if (n_kv > c.remaining() / 13)
        fail(ErrorCode::CorruptFile, "%s: metadata count %llu cannot fit in a file of %zu bytes", path.c_str(),
             static_cast<unsigned long long>(n_kv), size);

    kv.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.read_string("metadata key");
        const uint32_t t = c.read<uint32_t>(("type of '" + key + "'").c_str());
        if (!valid_value_type(t))
            fail(ErrorCode::CorruptFile, "%s: metadata key '%s' has unknown value type %u", path.c_str(), key.c_str(),
                 t);
        Value v = read_value(c, static_cast<ValueType>(t), key, path, 0);
        if (kv_index.count(key))
            fail(ErrorCode::CorruptFile, "%s: duplicate metadata key '%s'", path.c_str(), key.c_str());
        kv_index.emplace(key, kv.size());
        kv.emplace_back(std::move(key), std::move(v));
    }

    if (auto it = kv_index.find("general.alignment"); it != kv_index.end()) {
        const Value& a = kv[it->second].second;
        if (!a.is_integer())
            fail(ErrorCode::CorruptFile, "%s: metadata key 'general.alignment' must be an integer, not %s",
                 path.c_str(), std::string(value_type_name(a.type())).c_str());
        const uint64_t al = a.as_uint("general.alignment");
        if (al == 0 || (al & (al - 1)) != 0 || al > (uint64_t{1} << 30))
            fail(ErrorCode::CorruptFile, "%s: metadata key 'general.alignment' = %llu is not a power of two <= 2^30",
                 path.c_str(), static_cast<unsigned long long>(al));
        alignment = al;
    }

    // name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
    if (n_tensors > c.remaining() / 32)
        fail(ErrorCode::CorruptFile, "%s: tensor count %llu cannot fit in a file of %zu bytes", path.c_str(),
             static_cast<unsigned long long>(n_tensors), size);
    tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        TensorInfo t;
        t.name = c.read_string("tensor name");
        const char* nm = t.name.c_str();
        const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims == 0 || n_dims > kMaxDims)
            fail(ErrorCode::CorruptFile, "%s: tensor '%s' has %u dimensions (must be 1..%u)", path.c_str(), nm,
                 n_dims, kMaxDims);
        t.shape.resize(n_dims);
        uint64_t elems = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            t.shape[d] = c.read<uint64_t>("tensor shape");
            if (t.shape[d] == 0 || t.shape[d] > (uint64_t{1} << 62))
                fail(ErrorCode::CorruptFile, "%s: tensor '%s' dimension %u is %llu", path.c_str(), nm, d,
                     static_cast<unsigned long long>(t.shape[d]));
            if (!checked_mul(elems, t.shape[d], &elems) || elems > (uint64_t{1} << 62))
                fail(ErrorCode::CorruptFile, "%s: tensor '%s' element count overflows (shape %s)", path.c_str(), nm,
                     t.shape_string().c_str());
        }
        t.n_elements = elems;
        const uint32_t type_id = c.read<uint32_t>("tensor type");
        const auto info = dtype_info(type_id);
        if (!info)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' has unknown type id %u", path.c_str(), nm, type_id);
        if (options.require_computable_types && !info->computable)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' has type %s, which ds4 cannot compute with",
                 path.c_str(), nm, std::string(info->name).c_str());
        t.type = static_cast<DType>(type_id);
        if (t.shape[0] % info->block_elems != 0)
            fail(ErrorCode::CorruptFile, "%s: tensor '%s' (%s) row length %llu is not a multiple of the block size %u",
                 path.c_str(), nm, std::string(info->name).c_str(), static_cast<unsigned long long>(t.shape[0]),
                 info->block_elems);
        if (!checked_mul(elems / info->block_elems, info->block_bytes, &t.n_bytes))
            fail(ErrorCode::CorruptFile, "%s: tensor '%s' byte size overflows", path.c_str(), nm);
        t.offset = c.read<uint64_t>("tensor offset");
        if (t.offset % alignment != 0)
            fail(ErrorCode::CorruptFile, "%s: tensor '%s' offset %llu is not aligned to %llu", path.c_str(), nm,
                 static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(alignment));
        if (tensor_index.count(t.name))
            fail(ErrorCode::CorruptFile, "%s: duplicate tensor name '%s'", path.c_str(), nm);
        tensor_index.emplace(t.name, tensors.size());
        tensors.push_back(std::move(t));
    }

    const uint64_t header_end = c.pos();
    data_offset = (header_end + alignment - 1) / alignment * alignment;
    if (!tensors.empty() && data_offset > size)
        fail(ErrorCode::CorruptFile, "%s: data section would start at %llu, past the end of the file (%zu bytes)",
             path.c_str(), static_cast<unsigned long long>(data_offset), size);
    const uint64_t data_size = tensors.empty() ? 0 : size - data_offset;
    for (TensorInfo& t : tensors) {
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            fail(ErrorCode::CorruptFile,
                 "%s: tensor '%s' data [%llu, +%llu bytes) lies outside the data section (%llu bytes); the file is "
                 "truncated or corrupt",
                 path.c_str(), t.name.c_str(), static_cast<unsigned long long>(t.offset),
                 static_cast<unsigned long long>(t.n_bytes), static_cast<unsigned long long>(data_size));
        t.data = base + data_offset + t.offset;
    }
}

File File::open(const std::string& path, const OpenOptions& options) {
    auto impl = std::make_shared<Impl>();
    impl->path = path;
    impl->map = std::make_unique<Mapping>();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO is refused, not waited on
    if (fd < 0) fail(ErrorCode::IoError, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
    impl->map->fd = fd;  // closed by the mapping
    // The mapping's size is the size now; check_not_truncated compares later sizes with it.
    struct stat st {};
    if (fstat(fd, &st) != 0) fail(ErrorCode::IoError, "%s: cannot stat: %s", path.c_str(), std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(ErrorCode::IoError, "%s: not a regular file", path.c_str());
    if (st.st_size == 0) fail(ErrorCode::CorruptFile, "%s: empty file, not a GGUF file", path.c_str());
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE | (options.populate ? MAP_POPULATE : 0), fd, 0);
    if (p == MAP_FAILED) fail(ErrorCode::IoError, "%s: mmap failed: %s", path.c_str(), std::strerror(errno));
    impl->map->data = static_cast<const uint8_t*>(p);
    impl->map->size = static_cast<size_t>(st.st_size);
    impl->map->mapped = true;
    impl->check_not_truncated();  // a truncation racing the mapping
    impl->parse(options);
    File f;
    f.impl_ = std::move(impl);
    return f;
}

File File::from_bytes(std::span<const uint8_t> bytes, std::string name) {
    auto impl = std::make_shared<Impl>();
    impl->path = std::move(name);
    impl->map = std::make_unique<Mapping>();
    impl->map->owned.assign(bytes.begin(), bytes.end());
    impl->map->data = impl->map->owned.data();
    impl->map->size = impl->map->owned.size();
    impl->parse(OpenOptions{});
    File f;
    f.impl_ = std::move(impl);
    return f;
}

void File::check_not_truncated() const { impl_->check_not_truncated(); }
const std::string& File::path() const noexcept { return impl_->path; }
uint32_t File::version() const noexcept { return impl_->version; }
uint64_t File::alignment() const noexcept { return impl_->alignment; }
uint64_t File::data_offset() const noexcept { return impl_->data_offset; }
uint64_t File::file_size() const noexcept { return impl_->map->size; }

const std::vector<std::pair<std::string, Value>>& File::metadata() const noexcept { return impl_->kv; }

const Value* File::find(std::string_view key) const noexcept {
    auto it = impl_->kv_index.find(std::string(key));
    return it == impl_->kv_index.end() ? nullptr : &impl_->kv[it->second].second;
}

const Value& File::get(std::string_view key) const {
    if (const Value* v = find(key)) return *v;
    fail(ErrorCode::UnsupportedModel, "%s: required metadata key '%s' is missing", impl_->path.c_str(),
         std::string(key).c_str());
}

const std::vector<TensorInfo>& File::tensors() const noexcept { return impl_->tensors; }

const TensorInfo* File::find_tensor(std::string_view name) const noexcept {
    auto it = impl_->tensor_index.find(std::string(name));
    return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
    if (const TensorInfo* t = find_tensor(name)) return *t;
    fail(ErrorCode::UnsupportedModel, "%s: required tensor '%s' is missing", impl_->path.c_str(),
         std::string(name).c_str());
}

std::span<const uint8_t> File::bytes() const noexcept { return {impl_->map->data, impl_->map->size}; }

std::string TensorInfo::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

}  // namespace gguf
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
