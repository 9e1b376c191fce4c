#include "ds4/dtype.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN
namespace {

struct Row {
    uint32_t id;
    DTypeInfo info;
};

// Block geometry of every GGUF type id (GGML's type traits).
constexpr std::array<Row, 31> kTypes = {{
    {0, {"F32", 1, 4, false, true}},
    {1, {"F16", 1, 2, false, true}},
    {2, {"Q4_0", 32, 18, true, false}},
    {3, {"Q4_1", 32, 20, true, false}},
    {6, {"Q5_0", 32, 22, true, false}},
    {7, {"Q5_1", 32, 24, true, false}},
    {8, {"Q8_0", 32, 34, true, true}},
    {9, {"Q8_1", 32, 36, true, false}},
    {10, {"Q2_K", 256, 84, true, true}},
    {11, {"Q3_K", 256, 110, true, false}},
    {12, {"Q4_K", 256, 144, true, true}},
    {13, {"Q5_K", 256, 176, true, false}},
    {14, {"Q6_K", 256, 210, true, false}},
    {15, {"Q8_K", 256, 292, true, true}},
    {16, {"IQ2_XXS", 256, 66, true, true}},
    {17, {"IQ2_XS", 256, 74, true, false}},
    {18, {"IQ3_XXS", 256, 98, true, false}},
    {19, {"IQ1_S", 256, 50, true, false}},
    {20, {"IQ4_NL", 32, 18, true, false}},
    {21, {"IQ3_S", 256, 110, true, false}},
    {22, {"IQ2_S", 256, 82, true, false}},
    {23, {"IQ4_XS", 256, 136, true, false}},
    {24, {"I8", 1, 1, false, false}},
    {25, {"I16", 1, 2, false, false}},
    {26, {"I32", 1, 4, false, true}},
    {27, {"I64", 1, 8, false, false}},
    {28, {"F64", 1, 8, false, false}},
    {29, {"IQ1_M", 256, 56, true, false}},
    {30, {"BF16", 1, 2, false, true}},
    {34, {"TQ1_0", 256, 54, true, false}},
    {35, {"TQ2_0", 256, 66, true, false}},
}};

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t type_id) noexcept {
    for (const Row& r : kTypes)
        if (r.id == type_id) return r.info;
    return std::nullopt;
}

DTypeInfo dtype_info(DType type) noexcept {
    auto info = dtype_info(static_cast<uint32_t>(type));
    return info ? *info : DTypeInfo{"?", 1, 1, false, false};
}

std::string_view dtype_name(DType type) noexcept { return dtype_info(type).name; }

std::optional<DType> dtype_from_name(std::string_view name) noexcept {
    std::string upper(name);
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    for (const Row& r : kTypes)
        if (r.info.name == upper) return static_cast<DType>(r.id);
    return std::nullopt;
}

std::optional<uint64_t> dtype_row_bytes(DType type, uint64_t n_elems) noexcept {
    const DTypeInfo info = dtype_info(type);
    if (n_elems % info.block_elems != 0) return std::nullopt;
    const uint64_t blocks = n_elems / info.block_elems;
    if (blocks != 0 && info.block_bytes > UINT64_MAX / blocks) return std::nullopt;
    return blocks * info.block_bytes;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
