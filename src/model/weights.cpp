// Weights::bind — look up every tensor the config implies and check its
// shape and type, so that a mismatched file fails at load with the tensor's
// name instead of misbehaving later.
#include "model/weights.hpp"

#include <cstring>

#include "core/error_internal.hpp"
#include "quant/quant.hpp"

namespace ds4::model {

using detail::fail;

namespace {

enum class Kind {
    Matmul,  // any type the matmul kernels support
    Plain,   // F32 / F16 / BF16 (the spec's F16 tensors; F32 in test models)
    Vector,  // small f32 vectors (F32, F16 or BF16 accepted, converted to f32)
    Index,   // I32
};

bool type_ok(Kind kind, DType t) {
    switch (kind) {
        case Kind::Matmul:
            return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q2_K ||
                   t == DType::Q4_K || t == DType::IQ2_XXS;
        case Kind::Plain:
        case Kind::Vector: return t == DType::F32 || t == DType::F16 || t == DType::BF16;
        case Kind::Index: return t == DType::I32;
    }
    return false;
}

const char* kind_types(Kind kind) {
    switch (kind) {
        case Kind::Matmul: return "F32, F16, BF16, Q8_0, Q2_K, Q4_K or IQ2_XXS";
        case Kind::Plain:
        case Kind::Vector: return "F32, F16 or BF16";
        case Kind::Index: return "I32";
    }
    return "?";
}

std::string shape_str(const std::vector<uint64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

class Binder {
public:
    Binder(const gguf::File& f, Weights& w) : f_(f), w_(w) {}

    const gguf::TensorInfo* find(const std::string& name) const { return f_.find_tensor(name); }

    const gguf::TensorInfo& get(const std::string& name, Kind kind, std::vector<uint64_t> shape) {
        f_.check_not_truncated();  // binding may read the data
        const gguf::TensorInfo* t = f_.find_tensor(name);
        if (!t)
            fail(ErrorCode::UnsupportedModel, "%s: required tensor '%s' %s is missing", f_.path().c_str(),
                 name.c_str(), shape_str(shape).c_str());
        if (t->shape != shape)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' has shape %s, the metadata implies %s",
                 f_.path().c_str(), name.c_str(), t->shape_string().c_str(), shape_str(shape).c_str());
        if (!type_ok(kind, t->type))
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' has type %s, expected %s", f_.path().c_str(),
                 name.c_str(), std::string(dtype_name(t->type)).c_str(), kind_types(kind));
        if (reinterpret_cast<uintptr_t>(t->data) % 4 != 0)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' data is not 4-byte aligned (general.alignment too small)",
                 f_.path().c_str(), name.c_str());
        return *t;
    }

    Matrix matrix(const std::string& name, Kind kind, int64_t rows, int64_t cols, bool routed = false) {
        const auto& t = get(name, kind, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)});
        return to_matrix(t, rows, cols, routed);
    }

    Matrix to_matrix(const gguf::TensorInfo& t, int64_t rows, int64_t cols, bool routed) {
        const DTypeInfo info = dtype_info(t.type);
        if (cols % info.block_elems != 0)
            fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' rows of %lld are not a whole number of %s blocks",
                 f_.path().c_str(), t.name.c_str(), static_cast<long long>(cols), std::string(info.name).c_str());
        Matrix m;
        m.type = t.type;
        m.data = t.data;
        m.rows = rows;
        m.cols = cols;
        m.row_bytes = static_cast<size_t>(cols / info.block_elems) * info.block_bytes;
        (routed ? w_.routed_expert_bytes : w_.other_bytes) += t.n_bytes;
        return m;
    }

    std::vector<float> vec(const std::string& name, std::vector<uint64_t> shape) {
        const auto& t = get(name, Kind::Vector, shape);
        std::vector<float> out(static_cast<size_t>(t.n_elements));
        quant::dequantize_row(t.type, t.data, out.data(), static_cast<int64_t>(t.n_elements));
        w_.other_bytes += t.n_bytes;
        return out;
    }

    ExpertMatrices experts(const std::string& name, int64_t n_expert, int64_t rows, int64_t cols) {
        const auto& t = get(name, Kind::Matmul,
                            {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), static_cast<uint64_t>(n_expert)});
        const Matrix m = to_matrix(t, rows, cols, true);
        ExpertMatrices e;
        e.type = m.type;
        e.data = t.data;
        e.n_expert = n_expert;
        e.rows = rows;
        e.cols = cols;
        e.row_bytes = m.row_bytes;
        return e;
    }

    const gguf::File& file() const { return f_; }

private:
    const gguf::File& f_;
    Weights& w_;
};

std::string blk(int il, const char* suffix) { return "blk." + std::to_string(il) + "." + suffix; }

HcMixWeights bind_hc(Binder& b, const std::string& prefix, int mix, int64_t flat, int n_scale) {
    HcMixWeights h;
    h.fn = b.matrix(prefix + "_fn.weight", Kind::Plain, mix, flat);
    h.scale = b.vec(prefix + "_scale.weight", {static_cast<uint64_t>(n_scale)});
    h.base = b.vec(prefix + "_base.weight", {static_cast<uint64_t>(mix)});
    return h;
}

CompressorWeights bind_compressor(Binder& b, int il, const char* prefix, int ratio, int lanes, int dim,
                                  int64_t n_embd) {
    CompressorWeights c;
    c.ratio = ratio;
    c.lanes = lanes;
    c.dim = dim;
    const int64_t width = static_cast<int64_t>(lanes) * dim;
    const std::string p = blk(il, prefix);
    c.kv = b.matrix(p + "_kv.weight", Kind::Plain, width, n_embd);
    c.gate = b.matrix(p + "_gate.weight", Kind::Plain, width, n_embd);
    c.ape = b.vec(p + "_ape.weight", {static_cast<uint64_t>(width), static_cast<uint64_t>(ratio)});
    c.norm = b.vec(p + "_norm.weight", {static_cast<uint64_t>(dim)});
    return c;
}

}  // namespace

Weights Weights::bind(const gguf::File& file, const ModelConfig& cfg) {
    Weights w;
    Binder b(file, w);
    const int64_t d = cfg.n_embd, V = cfg.n_vocab, hc = cfg.hc_count, mix = cfg.hc_mix_size();
    const int64_t flat = hc * d;
    const auto U = [](int64_t x) { return static_cast<uint64_t>(x); };

    const auto& embd = b.get("token_embd.weight", Kind::Matmul, {U(d), U(V)});
    w.token_embd = &embd;
    w.embd_row_bytes = static_cast<size_t>(*dtype_row_bytes(embd.type, U(d)));
    w.other_bytes += embd.n_bytes;
    w.output_hc.fn = b.matrix("output_hc_fn.weight", Kind::Plain, hc, flat);
    w.output_hc.scale = b.vec("output_hc_scale.weight", {1});
    w.output_hc.base = b.vec("output_hc_base.weight", {U(hc)});
    w.output_norm = b.vec("output_norm.weight", {U(d)});
    w.output = b.matrix("output.weight", Kind::Matmul, V, d);

    const int64_t H = cfg.n_head, hd = cfg.head_dim, ql = cfg.q_lora_rank, ol = cfg.o_lora_rank,
                  G = cfg.o_groups, E = cfg.n_expert, ff = cfg.expert_ff;
    w.layers.resize(static_cast<size_t>(cfg.n_layer));
    for (int il = 0; il < cfg.n_layer; ++il) {
        LayerWeights& L = w.layers[static_cast<size_t>(il)];
        L.index = il;
        L.ratio = cfg.compress_ratio(il);
        L.hc_attn = bind_hc(b, blk(il, "hc_attn"), static_cast<int>(mix), flat, 3);
        L.hc_ffn = bind_hc(b, blk(il, "hc_ffn"), static_cast<int>(mix), flat, 3);
        L.attn_norm = b.vec(blk(il, "attn_norm.weight"), {U(d)});
        L.q_a = b.matrix(blk(il, "attn_q_a.weight"), Kind::Matmul, ql, d);
        L.q_a_norm = b.vec(blk(il, "attn_q_a_norm.weight"), {U(ql)});
        L.q_b = b.matrix(blk(il, "attn_q_b.weight"), Kind::Matmul, H * hd, ql);
        L.kv = b.matrix(blk(il, "attn_kv.weight"), Kind::Matmul, hd, d);
        L.kv_norm = b.vec(blk(il, "attn_kv_a_norm.weight"), {U(hd)});
        L.sinks = b.vec(blk(il, "attn_sinks.weight"), {U(H)});
        L.out_a = b.matrix(blk(il, "attn_output_a.weight"), Kind::Matmul, G * ol, (H / G) * hd);
        L.out_b = b.matrix(blk(il, "attn_output_b.weight"), Kind::Matmul, d, G * ol);
        if (L.ratio != 0) {
            L.compressed = true;
            L.compressor = bind_compressor(b, il, "attn_compressor", L.ratio, cfg.compress_lanes(il), cfg.head_dim, d);
        }
        if (cfg.has_indexer(il)) {
            L.indexer = true;
            const int64_t ih = cfg.indexer_heads, ihd = cfg.indexer_head_dim;
            L.indexer_q_b = b.matrix(blk(il, "indexer.attn_q_b.weight"), Kind::Plain, ih * ihd, ql);
            L.indexer_proj = b.matrix(blk(il, "indexer.proj.weight"), Kind::Plain, ih, d);
            L.indexer_compressor =
                bind_compressor(b, il, "indexer_compressor", L.ratio, cfg.compress_lanes(il), cfg.indexer_head_dim, d);
        }
        L.ffn_norm = b.vec(blk(il, "ffn_norm.weight"), {U(d)});
        L.router = b.matrix(blk(il, "ffn_gate_inp.weight"), Kind::Plain, E, d);
        if (b.find(blk(il, "exp_probs_b.bias"))) L.router_bias = b.vec(blk(il, "exp_probs_b.bias"), {U(E)});
        L.gate_exps = b.experts(blk(il, "ffn_gate_exps.weight"), E, ff, d);
        L.up_exps = b.experts(blk(il, "ffn_up_exps.weight"), E, ff, d);
        L.down_exps = b.experts(blk(il, "ffn_down_exps.weight"), E, d, ff);
        if (L.gate_exps.type != L.up_exps.type)
            fail(ErrorCode::UnsupportedModel, "%s: tensors '%s' (%s) and '%s' (%s) must have the same type",
                 file.path().c_str(), blk(il, "ffn_gate_exps.weight").c_str(),
                 std::string(dtype_name(L.gate_exps.type)).c_str(), blk(il, "ffn_up_exps.weight").c_str(),
                 std::string(dtype_name(L.up_exps.type)).c_str());
        L.gate_sh = b.matrix(blk(il, "ffn_gate_shexp.weight"), Kind::Matmul, ff, d);
        L.up_sh = b.matrix(blk(il, "ffn_up_shexp.weight"), Kind::Matmul, ff, d);
        L.down_sh = b.matrix(blk(il, "ffn_down_shexp.weight"), Kind::Matmul, d, ff);
        if (cfg.is_hash_layer(il)) {
            const auto& t = b.get(blk(il, "ffn_gate_tid2eid.weight"), Kind::Index, {U(cfg.n_expert_used), U(V)});
            L.tid2eid = reinterpret_cast<const int32_t*>(t.data);
            // Every routed id must name an expert; check once here, not per token.
            for (uint64_t i = 0; i < t.n_elements; ++i) {
                int32_t e;
                std::memcpy(&e, t.data + 4 * i, 4);
                if (e < 0 || e >= E)
                    fail(ErrorCode::UnsupportedModel, "%s: tensor '%s' entry %llu is expert %d, outside [0, %lld)",
                         file.path().c_str(), t.name.c_str(), static_cast<unsigned long long>(i), e,
                         static_cast<long long>(E));
            }
            w.other_bytes += t.n_bytes;
        }
    }
    return w;
}

void Weights::embed(int32_t token, float* out, int n_embd) const {
    quant::dequantize_row(token_embd->type, token_embd->data + static_cast<size_t>(token) * embd_row_bytes, out,
                          n_embd);
}

}  // namespace ds4::model
