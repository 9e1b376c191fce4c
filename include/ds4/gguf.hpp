// ds4 — GGUF v3 files: a memory-mapped reader that never trusts its input, and
// a writer.
//
// The reader validates everything it is told by the file (sizes, offsets,
// counts, type ids, alignment) before using it, and reports problems as
// ds4::Error{CorruptFile | UnsupportedModel | IoError} naming the file and the
// key or tensor concerned. Tensor data stays in the mapping: TensorInfo::data
// points into it and is valid while the File (or a copy of it) is alive.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ds4/dtype.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace gguf {

// Metadata value types (GGUF ids).
enum class ValueType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};

std::string_view value_type_name(ValueType t) noexcept;

class Value;

struct Array {
    ValueType element_type = ValueType::U8;
    std::vector<Value> items;
};

// One metadata value. Scalars are stored widened (all signed integers as
// int64, unsigned as uint64, floats as double) next to their on-disk type.
class Value {
public:
    Value() : type_(ValueType::U8), data_(uint64_t{0}) {}

    static Value u8(uint8_t v) { return Value(ValueType::U8, uint64_t{v}); }
    static Value i8(int8_t v) { return Value(ValueType::I8, int64_t{v}); }
    static Value u16(uint16_t v) { return Value(ValueType::U16, uint64_t{v}); }
    static Value i16(int16_t v) { return Value(ValueType::I16, int64_t{v}); }
    static Value u32(uint32_t v) { return Value(ValueType::U32, uint64_t{v}); }
    static Value i32(int32_t v) { return Value(ValueType::I32, int64_t{v}); }
    static Value u64(uint64_t v) { return Value(ValueType::U64, v); }
    static Value i64(int64_t v) { return Value(ValueType::I64, v); }
    static Value f32(float v) { return Value(ValueType::F32, double{v}); }
    static Value f64(double v) { return Value(ValueType::F64, v); }
    static Value boolean(bool v) { return Value(ValueType::Bool, v); }
    static Value string(std::string v) { return Value(ValueType::String, std::move(v)); }
    static Value array(ValueType element_type, std::vector<Value> items);
    // Convenience builders for homogeneous arrays.
    static Value array_of_strings(const std::vector<std::string>& items);
    static Value array_of_i32(std::span<const int32_t> items);
    static Value array_of_u32(std::span<const uint32_t> items);
    static Value array_of_f32(std::span<const float> items);

    ValueType type() const noexcept { return type_; }
    bool is_integer() const noexcept;
    bool is_float() const noexcept;
    bool is_string() const noexcept { return type_ == ValueType::String; }
    bool is_array() const noexcept { return type_ == ValueType::Array; }
    bool is_bool() const noexcept { return type_ == ValueType::Bool; }

    // Checked accessors. They throw ds4::Error(UnsupportedModel) when the
    // value has another type or does not fit; `what` names the key in the
    // message.
    int64_t as_int(std::string_view what = {}) const;
    uint64_t as_uint(std::string_view what = {}) const;
    // Accepts any float or integer type.
    double as_double(std::string_view what = {}) const;
    bool as_bool(std::string_view what = {}) const;
    const std::string& as_string(std::string_view what = {}) const;
    const Array& as_array(std::string_view what = {}) const;

    bool operator==(const Value& other) const;

private:
    using Storage = std::variant<uint64_t, int64_t, double, bool, std::string,
                                 std::shared_ptr<const Array>>;
    Value(ValueType t, Storage d) : type_(t), data_(std::move(d)) {}
    ValueType type_;
    Storage data_;
};

struct TensorInfo {
    std::string name;
    DType type = DType::F32;
    std::vector<uint64_t> shape;  // GGUF `ne`: shape[0] is the contiguous dim
    uint64_t offset = 0;          // relative to the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;  // into the mapping

    uint64_t ne(size_t i) const { return i < shape.size() ? shape[i] : 1; }
    std::string shape_string() const;  // "[4096, 1024]"
};

struct OpenOptions {
    // Refuse tensors whose type ds4 cannot compute with (default: accept any
    // known GGUF type so that tools can inspect foreign files).
    bool require_computable_types = false;
    // Map every page at open (MAP_POPULATE): slower to open, but the first
    // pass over the weights does not pay a page fault per 4 KiB.
    bool populate = false;
};

// A parsed, memory-mapped GGUF file. Cheap to copy (shared mapping).
class File {
public:
    static File open(const std::string& path, const OpenOptions& options = {});
    // Parse an in-memory image (used by tests and fuzzing). The bytes are
    // copied into an owned buffer.
    static File from_bytes(std::span<const uint8_t> bytes, std::string name = "<memory>");

    const std::string& path() const noexcept;
    uint32_t version() const noexcept;
    uint64_t alignment() const noexcept;
    uint64_t data_offset() const noexcept;  // start of the data section in the file
    uint64_t file_size() const noexcept;

    // Metadata in file order.
    const std::vector<std::pair<std::string, Value>>& metadata() const noexcept;
    const Value* find(std::string_view key) const noexcept;
    // Throws ds4::Error(NotFound... reported as UnsupportedModel) naming the key.
    const Value& get(std::string_view key) const;

    const std::vector<TensorInfo>& tensors() const noexcept;
    const TensorInfo* find_tensor(std::string_view name) const noexcept;
    const TensorInfo& tensor(std::string_view name) const;  // throws naming the tensor

    // The whole mapped file (read-only).
    std::span<const uint8_t> bytes() const noexcept;
    // Throws CorruptFile if the file is now shorter than when it was mapped:
    // reading a tensor past the new end would be SIGBUS. Model::load checks
    // before it reads tensor data; after load nothing can (see Model::load).
    void check_not_truncated() const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
};

// Writes a GGUF v3 file. Metadata keys and tensors are written in insertion
// order; tensor data is aligned to `alignment` (written as general.alignment
// when it is not the default 32).
class Writer {
public:
    explicit Writer(uint64_t alignment = 32);

    // Replaces an existing key of the same name.
    void set(std::string key, Value value);
    // Copies `bytes` (must be exactly the size implied by type and shape).
    void add_tensor(std::string name, DType type, std::vector<uint64_t> shape,
                    std::span<const uint8_t> bytes);
    void add_tensor_f32(std::string name, std::vector<uint64_t> shape, std::span<const float> values);
    // Deferred data: `fill` is called during write() with a buffer of exactly
    // the tensor's size, so large models are generated without holding every
    // tensor in memory at once.
    using Filler = std::function<void(std::span<uint8_t> out)>;
    void add_tensor_deferred(std::string name, DType type, std::vector<uint64_t> shape, Filler fill);

    // Write to a file atomically (a uniquely named temporary file in the same
    // folder, synced and renamed into place): never left partial.
    void write(const std::string& path) const;
    // Serialize to memory.
    std::vector<uint8_t> to_bytes() const;

    size_t n_tensors() const noexcept { return tensors_.size(); }

private:
    struct PendingTensor {
        std::string name;
        DType type;
        std::vector<uint64_t> shape;
        uint64_t n_bytes;
        std::vector<uint8_t> bytes;  // empty when `fill` is set
        Filler fill;
    };
    uint64_t alignment_;
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<PendingTensor> tensors_;
    template <class Sink>
    void emit(Sink& sink) const;
    void check_new_tensor(const std::string& name, DType type, const std::vector<uint64_t>& shape,
                          uint64_t* n_bytes) const;
};

}  // namespace gguf
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
