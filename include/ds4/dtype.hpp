// ds4 — tensor element types (the GGML/GGUF type ids).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

// Values are the GGUF on-disk type ids. Every id GGUF defines is listed so the
// reader can size any tensor; only some of them can be computed with
// (see DTypeInfo::computable).
enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
};

struct DTypeInfo {
    std::string_view name;
    uint32_t block_elems;  // elements per block (1 for plain types)
    uint32_t block_bytes;  // bytes per block
    bool quantized;
    bool computable;  // ds4 has dequantize/matmul support for it
};

// Info for a GGUF type id, or nullopt if the id is not a known GGUF type.
std::optional<DTypeInfo> dtype_info(uint32_t type_id) noexcept;
// Info for a known type. Never fails for an enumerator of DType.
DTypeInfo dtype_info(DType type) noexcept;
std::string_view dtype_name(DType type) noexcept;
// Parse "q8_0", "Q4_K", "iq2_xxs", "f16"... (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name) noexcept;

// Bytes of a row of `n_elems` elements; nullopt if n_elems is not a whole
// number of blocks or the size overflows.
std::optional<uint64_t> dtype_row_bytes(DType type, uint64_t n_elems) noexcept;

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
