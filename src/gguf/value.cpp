// gguf::Value — typed metadata values and their checked accessors.
#include <cmath>
#include <limits>

#include "core/error_internal.hpp"
#include "ds4/gguf.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace gguf {

using detail::fail;

std::string_view value_type_name(ValueType t) noexcept {
    switch (t) {
        case ValueType::U8: return "u8";
        case ValueType::I8: return "i8";
        case ValueType::U16: return "u16";
        case ValueType::I16: return "i16";
        case ValueType::U32: return "u32";
        case ValueType::I32: return "i32";
        case ValueType::F32: return "f32";
        case ValueType::Bool: return "bool";
        case ValueType::String: return "string";
        case ValueType::Array: return "array";
        case ValueType::U64: return "u64";
        case ValueType::I64: return "i64";
        case ValueType::F64: return "f64";
    }
    return "?";
}

Value Value::array(ValueType element_type, std::vector<Value> items) {
    for (const Value& v : items)
        if (v.type() != element_type)
            fail(ErrorCode::InvalidArgument, "gguf array of %s holds a %s element",
                 std::string(value_type_name(element_type)).c_str(),
                 std::string(value_type_name(v.type())).c_str());
    auto arr = std::make_shared<Array>();
    arr->element_type = element_type;
    arr->items = std::move(items);
    return Value(ValueType::Array, std::shared_ptr<const Array>(std::move(arr)));
}

Value Value::array_of_strings(const std::vector<std::string>& items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (const auto& s : items) v.push_back(Value::string(s));
    return array(ValueType::String, std::move(v));
}

Value Value::array_of_i32(std::span<const int32_t> items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (int32_t x : items) v.push_back(Value::i32(x));
    return array(ValueType::I32, std::move(v));
}

Value Value::array_of_u32(std::span<const uint32_t> items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (uint32_t x : items) v.push_back(Value::u32(x));
    return array(ValueType::U32, std::move(v));
}

Value Value::array_of_f32(std::span<const float> items) {
    std::vector<Value> v;
    v.reserve(items.size());
    for (float x : items) v.push_back(Value::f32(x));
    return array(ValueType::F32, std::move(v));
}

bool Value::is_integer() const noexcept {
    switch (type_) {
        case ValueType::U8:
        case ValueType::I8:
        case ValueType::U16:
        case ValueType::I16:
        case ValueType::U32:
        case ValueType::I32:
        case ValueType::U64:
        case ValueType::I64: return true;
        default: return false;
    }
}

bool Value::is_float() const noexcept { return type_ == ValueType::F32 || type_ == ValueType::F64; }

namespace {
[[noreturn]] void wrong_type(std::string_view what, ValueType have, const char* want) {
    fail(ErrorCode::UnsupportedModel, "metadata key '%s' has type %s, expected %s",
         std::string(what.empty() ? "?" : what).c_str(), std::string(value_type_name(have)).c_str(),
         want);
}
}  // namespace

int64_t Value::as_int(std::string_view what) const {
    if (!is_integer()) wrong_type(what, type_, "an integer");
    if (const auto* u = std::get_if<uint64_t>(&data_)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail(ErrorCode::UnsupportedModel, "metadata key '%s' value %llu does not fit in int64",
                 std::string(what).c_str(), static_cast<unsigned long long>(*u));
        return static_cast<int64_t>(*u);
    }
    return std::get<int64_t>(data_);
}

uint64_t Value::as_uint(std::string_view what) const {
    if (!is_integer()) wrong_type(what, type_, "an unsigned integer");
    if (const auto* i = std::get_if<int64_t>(&data_)) {
        if (*i < 0)
            fail(ErrorCode::UnsupportedModel, "metadata key '%s' is negative (%lld)",
                 std::string(what).c_str(), static_cast<long long>(*i));
        return static_cast<uint64_t>(*i);
    }
    return std::get<uint64_t>(data_);
}

double Value::as_double(std::string_view what) const {
    if (is_float()) return std::get<double>(data_);
    if (is_integer()) {
        if (const auto* u = std::get_if<uint64_t>(&data_)) return static_cast<double>(*u);
        return static_cast<double>(std::get<int64_t>(data_));
    }
    wrong_type(what, type_, "a number");
}

bool Value::as_bool(std::string_view what) const {
    if (type_ == ValueType::Bool) return std::get<bool>(data_);
    if (is_integer()) {
        const uint64_t v = as_uint(what);
        if (v <= 1) return v == 1;
    }
    wrong_type(what, type_, "a bool");
}

const std::string& Value::as_string(std::string_view what) const {
    if (type_ != ValueType::String) wrong_type(what, type_, "a string");
    return std::get<std::string>(data_);
}

const Array& Value::as_array(std::string_view what) const {
    if (type_ != ValueType::Array) wrong_type(what, type_, "an array");
    return *std::get<std::shared_ptr<const Array>>(data_);
}

bool Value::operator==(const Value& other) const {
    if (type_ != other.type_) return false;
    if (type_ == ValueType::Array) {
        const Array& a = as_array();
        const Array& b = other.as_array();
        return a.element_type == b.element_type && a.items == b.items;
    }
    if (is_float()) {
        const double a = std::get<double>(data_), b = std::get<double>(other.data_);
        return a == b || (std::isnan(a) && std::isnan(b));
    }
    return data_ == other.data_;
}

}  // namespace gguf
DS4_INLINE_NAMESPACE_END
}  // namespace ds4
