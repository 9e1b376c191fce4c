// The published dtype mixes (spec 2.7) and requantizing a DS4 model file.
#include "ds4/quantize.hpp"

#include <string>
#include <vector>

#include "core/error_internal.hpp"
#include "ds4/gguf.hpp"
#include "quant/quant.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool ends_with_any(std::string_view s, std::initializer_list<std::string_view> suffixes) {
    for (auto x : suffixes)
        if (ends_with(s, x)) return true;
    return false;
}

}  // namespace

WeightMix weight_mix_from_name(std::string_view name) {
    if (name == "f32") return WeightMix::F32;
    if (name == "q2") return WeightMix::Q2;
    if (name == "q4") return WeightMix::Q4;
    fail(ErrorCode::InvalidArgument, "unknown weight mix '%.*s' (expected f32, q2 or q4)", static_cast<int>(name.size()),
         name.data());
}

DType tensor_type_for_mix(std::string_view name, size_t n_dims, WeightMix mix) {
    if (ends_with(name, "ffn_gate_tid2eid.weight")) return DType::I32;
    if (n_dims == 1) return DType::F32;  // norms, HC scales and bases, sinks, router bias
    if (mix == WeightMix::F32) return DType::F32;
    if (ends_with_any(name, {"ffn_gate_exps.weight", "ffn_up_exps.weight"}))
        return mix == WeightMix::Q2 ? DType::IQ2_XXS : DType::Q4_K;
    if (ends_with(name, "ffn_down_exps.weight")) return mix == WeightMix::Q2 ? DType::Q2_K : DType::Q4_K;
    // The indexer's projections are F16 although one ends like the attention's q_b.
    if (name == "token_embd.weight" || name == "output_hc_fn.weight" ||
        ends_with_any(name, {".hc_attn_fn.weight", ".hc_ffn_fn.weight", "_compressor_ape.weight",
                             "_compressor_kv.weight", "_compressor_gate.weight", ".indexer.attn_q_b.weight",
                             ".indexer.proj.weight", ".ffn_gate_inp.weight"}))
        return DType::F16;
    if (name == "output.weight" ||
        ends_with_any(name, {".attn_q_a.weight", ".attn_q_b.weight", ".attn_kv.weight", ".attn_output_a.weight",
                             ".attn_output_b.weight", ".ffn_gate_shexp.weight", ".ffn_up_shexp.weight",
                             ".ffn_down_shexp.weight"}))
        return DType::Q8_0;
    fail(ErrorCode::InvalidArgument, "tensor '%.*s' is not part of the DeepSeek-V4-Flash layout",
         static_cast<int>(name.size()), name.data());
}

void quantize_model(const std::string& in_path, const std::string& out_path, WeightMix mix) {
    const gguf::File f = gguf::File::open(in_path);
    gguf::Writer w(f.alignment());
    for (const auto& [k, v] : f.metadata())
        if (k != "general.alignment") w.set(k, v);

    for (const auto& t : f.tensors()) {
        const DType to = tensor_type_for_mix(t.name, t.shape.size(), mix);
        if (to == t.type) {
            w.add_tensor(t.name, t.type, t.shape, {t.data, static_cast<size_t>(t.n_bytes)});
            continue;
        }
        if (to == DType::I32 || !dtype_info(static_cast<uint32_t>(t.type))->computable)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' has type %s, which cannot be converted to %s",
                 in_path.c_str(), t.name.c_str(), dtype_name(t.type).data(), dtype_name(to).data());
        const int64_t cols = static_cast<int64_t>(t.shape[0]);
        const int64_t block = dtype_info(static_cast<uint32_t>(to))->block_elems;
        if (cols % block != 0)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' rows have %lld values, not a multiple of the %s block (%lld)",
                 in_path.c_str(), t.name.c_str(), static_cast<long long>(cols), dtype_name(to).data(),
                 static_cast<long long>(block));
        int64_t rows = 1;
        for (size_t i = 1; i < t.shape.size(); ++i) rows *= static_cast<int64_t>(t.shape[i]);
        const gguf::TensorInfo* tp = &t;
        w.add_tensor_deferred(t.name, to, t.shape, [tp, to, rows, cols](std::span<uint8_t> out) {
            const size_t in_row = quant::row_bytes(tp->type, cols), out_row = quant::row_bytes(to, cols);
#pragma omp parallel
            {
                std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 16)
                for (int64_t r = 0; r < rows; ++r) {
                    quant::dequantize_row(tp->type, tp->data + r * in_row, row.data(), cols);
                    quant::quantize_row(to, row.data(), out.data() + r * out_row, cols);
                }
            }
        });
    }
    w.write(out_path);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
