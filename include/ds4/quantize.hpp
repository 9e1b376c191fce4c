// ds4 — the published DeepSeek-V4-Flash dtype mixes and requantizing a model
// file into one of them (like llama.cpp's llama-quantize, for the DS4 layout).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "ds4/dtype.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

// Tensor types of a model file (spec section 2.7).
enum class WeightMix {
    F32,  // every tensor F32 (tid2eid I32): the exact-comparison test model
    Q2,   // published q2 mix: routed gate/up IQ2_XXS, down Q2_K; attention, shared expert and
          // LM head Q8_0; HC, router, compressors, indexer and embedding F16; vectors F32
    Q4,   // published q4 mix: routed experts Q4_K; the rest as Q2
};

// Parses "f32", "q2", "q4"; throws ds4::Error otherwise.
WeightMix weight_mix_from_name(std::string_view name);

// The type the tensor `name` (a DS4 GGUF tensor name, n_dims dimensions) has in `mix`.
// Throws ds4::Error for a name that is not part of the DS4 layout.
DType tensor_type_for_mix(std::string_view name, size_t n_dims, WeightMix mix);

// Rewrite the model at in_path with every tensor converted to its type in
// `mix` (dequantize, then quantize with the reference quantizers). Metadata
// is copied; the file is written atomically.
void quantize_model(const std::string& in_path, const std::string& out_path, WeightMix mix);

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
