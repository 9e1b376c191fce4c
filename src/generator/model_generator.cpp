// Synthetic DS4 models: every tensor of spec section 2 with the metadata of
// section 1, random weights from a seed.
#include "ds4/model_generator.hpp"

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "ds4/gguf.hpp"
#include "generator/vocab_source.hpp"
#include "quant/blocks.hpp"
#include "quant/quant.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace {

using gguf::Value;

// ---- deterministic randomness: one stream per (seed, tensor, row) ----------

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s, uint64_t seed) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

struct Stream {
    uint64_t s;
    Stream(uint64_t seed, const std::string& name, uint64_t row) : s(hash_name(name, seed) ^ (row * 0xD1B54A32D192ED03ull)) {
        splitmix(s);
    }
    uint64_t u64() { return splitmix(s); }
    double uniform() { return static_cast<double>(u64() >> 11) * 0x1.0p-53; }
    float normal() {
        const double u1 = uniform() + 1e-300, u2 = uniform();
        return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
};

// ---- tensor recipes -----------------------------------------------------------

// How the values of a tensor are drawn.
struct Recipe {
    float mean = 0;  // values = mean + std * N(0, 1)
    float std = 1;
};

class Builder {
public:
    Builder(const GeneratorOptions& o, gguf::Writer& w) : o_(o), w_(w) {}

    // A weight of the type its name has in the mix; rows of shape[0] values.
    void tensor(const std::string& name, std::vector<uint64_t> shape, Recipe r) {
        const DType type = tensor_type_for_mix(name, shape.size(), o_.mix);
        const uint64_t cols = shape[0];
        uint64_t rows = 1;
        for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
        const size_t row_bytes = quant::row_bytes(type, static_cast<int64_t>(cols));
        const uint64_t seed = o_.seed;
        const bool random_blocks = o_.random_quant_blocks && dtype_info(type).quantized;
        w_.add_tensor_deferred(name, type, shape, [=](std::span<uint8_t> out) {
#pragma omp parallel for schedule(dynamic, 16)
            for (int64_t row = 0; row < static_cast<int64_t>(rows); ++row) {
                Stream st(seed, name, static_cast<uint64_t>(row));
                uint8_t* dst = out.data() + static_cast<size_t>(row) * row_bytes;
                if (random_blocks) {
                    random_quant_row(type, dst, static_cast<int64_t>(cols), r, st);
                    continue;
                }
                std::vector<float> v(static_cast<size_t>(cols));
                for (auto& x : v) x = r.mean + r.std * st.normal();
                quant::quantize_row(type, v.data(), dst, static_cast<int64_t>(cols));
            }
        });
    }

    void i32_table(const std::string& name, std::vector<uint64_t> shape, std::vector<int32_t> values) {
        w_.add_tensor(name, DType::I32, std::move(shape),
                      {reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(int32_t)});
    }

private:
    // Random valid blocks whose values have roughly mean r.mean = 0 and std r.std.
    static void random_quant_row(DType type, uint8_t* dst, int64_t cols, Recipe r, Stream& st) {
        auto fill_random = [&](uint8_t* p, size_t n) {
            for (size_t i = 0; i < n; i += 8) {
                const uint64_t x = st.u64();
                std::memcpy(p + i, &x, std::min<size_t>(8, n - i));
            }
        };
        switch (type) {
            case DType::Q8_0: {
                auto* b = reinterpret_cast<quant::BlockQ8_0*>(dst);
                for (int64_t i = 0; i < cols / quant::kQK8_0; ++i) {
                    b[i].d = f32_to_f16(r.std / 73.3f);
                    for (int j = 0; j < quant::kQK8_0; ++j)
                        b[i].qs[j] = static_cast<int8_t>(static_cast<int>(st.u64() % 255) - 127);
                }
                break;
            }
            case DType::IQ2_XXS: {
                auto* b = reinterpret_cast<quant::BlockIQ2_XXS*>(dst);
                for (int64_t i = 0; i < cols / quant::kQK_K; ++i) {
                    fill_random(reinterpret_cast<uint8_t*>(b[i].qs), sizeof(b[i].qs));
                    b[i].d = f32_to_f16(r.std / 67.0f);
                }
                break;
            }
            case DType::Q2_K: {
                auto* b = reinterpret_cast<quant::BlockQ2_K*>(dst);
                for (int64_t i = 0; i < cols / quant::kQK_K; ++i) {
                    fill_random(b[i].scales, sizeof(b[i].scales));
                    fill_random(b[i].qs, sizeof(b[i].qs));
                    b[i].d = f32_to_f16(r.std / 13.9f);
                    b[i].dmin = f32_to_f16(1.5f * r.std / 13.9f);
                }
                break;
            }
            case DType::Q4_K: {
                auto* b = reinterpret_cast<quant::BlockQ4_K*>(dst);
                for (int64_t i = 0; i < cols / quant::kQK_K; ++i) {
                    fill_random(b[i].scales, sizeof(b[i].scales));
                    fill_random(b[i].qs, sizeof(b[i].qs));
                    b[i].d = f32_to_f16(r.std / 258.0f);
                    b[i].dmin = f32_to_f16(7.5f * r.std / 258.0f);
                }
                break;
            }
            default:
                detail::fail(ErrorCode::InvalidArgument, "generator: no random blocks for %s",
                             std::string(dtype_name(type)).c_str());
        }
    }

    const GeneratorOptions& o_;
    gguf::Writer& w_;
};

std::string blk(int il, const char* s) { return "blk." + std::to_string(il) + "." + s; }

void check_generatable(const ModelConfig& c) {
    auto need = [](bool ok, const char* what) {
        if (!ok) detail::fail(ErrorCode::InvalidArgument, "generator: %s", what);
    };
    need(c.n_layer >= 1 && c.n_embd >= 1 && c.n_vocab >= 1, "layers, width and vocabulary must be positive");
    need(c.head_dim > c.n_rot && c.n_rot % 2 == 0, "head_dim must exceed an even n_rot");
    need(c.n_head % c.o_groups == 0, "n_head must be a multiple of o_groups");
    need(c.n_expert_used <= c.n_expert, "n_expert_used must be <= n_expert");
    need(static_cast<int>(c.compress_ratios.size()) >= c.n_layer, "compress_ratios needs one entry per layer");
    need(static_cast<int>(c.swiglu_clamp.size()) >= c.n_layer, "swiglu_clamp needs one entry per layer");
}

}  // namespace

ModelConfig tiny_model_config() {
    ModelConfig c = ModelConfig::published();
    c.name = "ds4-tiny";
    c.n_layer = 6;
    c.n_embd = 256;
    c.n_vocab = 1024;
    c.n_head = 4;
    c.head_dim = 128;
    c.n_rot = 64;
    c.q_lora_rank = 128;
    c.o_lora_rank = 64;
    c.o_groups = 2;
    c.n_expert = 16;
    c.n_expert_used = 4;
    c.expert_ff = 256;
    c.n_hash_layers = 3;
    c.swiglu_clamp.assign(6, 10.0f);
    c.sliding_window = 16;
    c.indexer_heads = 4;
    c.indexer_head_dim = 128;
    c.indexer_top_k = 8;
    c.compress_ratios = {0, 0, 4, 16, 4, 16};
    c.context_length = 4096;
    return c;
}

ModelConfig demo_model_config() {
    ModelConfig c = tiny_model_config();
    c.name = "ds4-demo";
    c.q_lora_rank = 64;
    c.n_expert = 8;
    c.n_expert_used = 2;
    // The published raw-attention window. The tiny config's 16 tokens keep
    // its tests short; a trained model needs to see a whole prompt token by
    // token to copy from it (with 16, the object of "how do I make X?" is
    // out of the window before the answer names it, and only pooled,
    // compressed entries remain, so the model recalls a training object
    // instead).
    c.sliding_window = 128;
    return c;
}

ModelConfig full_width_model_config(int n_layers) {
    if (n_layers < 1) detail::fail(ErrorCode::InvalidArgument, "full-width model needs >= 1 layer");
    ModelConfig c = ModelConfig::published();
    c.name = "ds4-full-width-" + std::to_string(n_layers) + "L";
    c.n_layer = n_layers;
    c.n_hash_layers = 1;
    c.swiglu_clamp.assign(static_cast<size_t>(n_layers), 10.0f);
    c.compress_ratios.clear();
    for (int il = 0; il < n_layers; ++il) c.compress_ratios.push_back(il == 0 ? 0 : (il % 2 == 1 ? 4 : 128));
    return c;
}

void generate_model(const GeneratorOptions& options, const std::string& path) {
    GeneratorOptions o = options;
    ModelConfig& c = o.config;
    gguf::Writer w;
    generator::VocabData vocab;
    if (o.vocab != VocabKind::None) {
        vocab = generator::load_vocab(o.vocab, o.small_vocab_merges);
        c.n_vocab = static_cast<int>(vocab.size());
    }
    check_generatable(c);

    // ---- metadata (spec 1.1) ----
    const std::string p = "deepseek4.";
    w.set("general.architecture", Value::string("deepseek4"));
    w.set("general.name", Value::string(c.name.empty() ? "ds4-generated" : c.name));
    w.set("general.description", Value::string("synthetic DeepSeek-V4-Flash layout, seed " + std::to_string(o.seed)));
    auto u32 = [&](const char* k, int64_t v) { w.set(p + k, Value::u32(static_cast<uint32_t>(v))); };
    auto f32 = [&](const char* k, float v) { w.set(p + k, Value::f32(v)); };
    u32("block_count", c.n_layer);
    u32("context_length", c.context_length > 0 ? c.context_length : 4096);
    u32("embedding_length", c.n_embd);
    u32("vocab_size", c.n_vocab);
    u32("attention.head_count", c.n_head);
    u32("attention.head_count_kv", 1);
    u32("attention.key_length", c.head_dim);
    u32("attention.value_length", c.head_dim);
    u32("rope.dimension_count", c.n_rot);
    u32("attention.q_lora_rank", c.q_lora_rank);
    u32("attention.output_lora_rank", c.o_lora_rank);
    u32("attention.output_group_count", c.o_groups);
    u32("expert_count", c.n_expert);
    u32("expert_used_count", c.n_expert_used);
    u32("expert_shared_count", 1);
    u32("expert_feed_forward_length", c.expert_ff);
    u32("hash_layer_count", c.n_hash_layers);
    f32("expert_weights_scale", c.expert_weights_scale);
    w.set(p + "expert_weights_norm", Value::boolean(true));
    w.set(p + "swiglu_clamp_exp", Value::array_of_f32(c.swiglu_clamp));
    f32("attention.layer_norm_rms_epsilon", c.norm_eps);
    f32("hyper_connection.epsilon", c.hc_eps);
    u32("hyper_connection.count", c.hc_count);
    u32("hyper_connection.sinkhorn_iterations", c.hc_sinkhorn_iters);
    u32("attention.sliding_window", c.sliding_window);
    u32("attention.indexer.head_count", c.indexer_heads);
    u32("attention.indexer.key_length", c.indexer_head_dim);
    u32("attention.indexer.top_k", c.indexer_top_k);
    std::vector<uint32_t> ratios(c.compress_ratios.begin(), c.compress_ratios.begin() + c.n_layer);
    w.set(p + "attention.compress_ratios", Value::array_of_u32(ratios));
    f32("rope.freq_base", c.rope_base);
    f32("attention.compress_rope_freq_base", c.compress_rope_base);
    f32("rope.scaling.factor", c.yarn_factor);
    u32("rope.scaling.original_context_length", c.yarn_orig_ctx);
    f32("rope.scaling.yarn_beta_fast", c.yarn_beta_fast);
    f32("rope.scaling.yarn_beta_slow", c.yarn_beta_slow);
    if (o.vocab != VocabKind::None) generator::write_vocab(w, vocab);

    // ---- tensors (spec 2.2-2.5) ----
    auto U = [](int64_t x) { return static_cast<uint64_t>(x); };
    auto inv_sqrt = [](int64_t n) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))); };

    Builder b(o, w);
    const int64_t d = c.n_embd, V = c.n_vocab, hc = c.hc_count, mix = c.hc_mix_size(), HD = hc * d;
    const int64_t H = c.n_head, hd = c.head_dim, ql = c.q_lora_rank, ol = c.o_lora_rank, G = c.o_groups,
                  E = c.n_expert, K = c.n_expert_used, ff = c.expert_ff;
    b.tensor("token_embd.weight", {U(d), U(V)}, {0, 1});
    b.tensor("output_hc_base.weight", {U(hc)}, {0, 0.5f});
    b.tensor("output_hc_fn.weight", {U(HD), U(hc)}, {0, inv_sqrt(HD)});
    b.tensor("output_hc_scale.weight", {1}, {1, 0.1f});
    b.tensor("output_norm.weight", {U(d)}, {1, 0.05f});
    b.tensor("output.weight", {U(d), U(V)}, {0, 2 * inv_sqrt(d)});

    for (int il = 0; il < c.n_layer; ++il) {
        for (const char* sub : {"hc_attn", "hc_ffn"}) {
            const std::string s(sub);
            b.tensor(blk(il, (s + "_fn.weight").c_str()), {U(HD), U(mix)}, {0, inv_sqrt(HD)});
            b.tensor(blk(il, (s + "_scale.weight").c_str()), {3}, {1, 0.1f});
            b.tensor(blk(il, (s + "_base.weight").c_str()), {U(mix)}, {0, 0.5f});
        }
        b.tensor(blk(il, "attn_norm.weight"), {U(d)}, {1, 0.05f});
        b.tensor(blk(il, "attn_q_a.weight"), {U(d), U(ql)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "attn_q_a_norm.weight"), {U(ql)}, {1, 0.05f});
        b.tensor(blk(il, "attn_q_b.weight"), {U(ql), U(H * hd)}, {0, inv_sqrt(ql)});
        b.tensor(blk(il, "attn_kv.weight"), {U(d), U(hd)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "attn_kv_a_norm.weight"), {U(hd)}, {1, 0.05f});
        b.tensor(blk(il, "attn_sinks.weight"), {U(H)}, {0, 1});
        b.tensor(blk(il, "attn_output_a.weight"), {U((H / G) * hd), U(G * ol)}, {0, inv_sqrt((H / G) * hd)});
        b.tensor(blk(il, "attn_output_b.weight"), {U(G * ol), U(d)}, {0, 0.5f * inv_sqrt(G * ol)});
        const int ratio = c.compress_ratio(il);
        auto compressor = [&](const char* prefix, int dim) {
            const int64_t Wd = static_cast<int64_t>(c.compress_lanes(il)) * dim;
            const std::string pre(prefix);
            b.tensor(blk(il, (pre + "_ape.weight").c_str()), {U(Wd), U(ratio)}, {0, 0.5f});
            b.tensor(blk(il, (pre + "_kv.weight").c_str()), {U(d), U(Wd)}, {0, inv_sqrt(d)});
            b.tensor(blk(il, (pre + "_gate.weight").c_str()), {U(d), U(Wd)}, {0, inv_sqrt(d)});
            b.tensor(blk(il, (pre + "_norm.weight").c_str()), {U(dim)}, {1, 0.05f});
        };
        if (ratio != 0) compressor("attn_compressor", c.head_dim);
        if (c.has_indexer(il)) {
            const int64_t ih = c.indexer_heads, ihd = c.indexer_head_dim;
            b.tensor(blk(il, "indexer.attn_q_b.weight"), {U(ql), U(ih * ihd)}, {0, inv_sqrt(ql)});
            b.tensor(blk(il, "indexer.proj.weight"), {U(d), U(ih)}, {0, inv_sqrt(d)});
            compressor("indexer_compressor", c.indexer_head_dim);
        }
        b.tensor(blk(il, "ffn_norm.weight"), {U(d)}, {1, 0.05f});
        b.tensor(blk(il, "ffn_gate_inp.weight"), {U(d), U(E)}, {0, 2 * inv_sqrt(d)});
        if (o.router_bias && !c.is_hash_layer(il)) b.tensor(blk(il, "exp_probs_b.bias"), {U(E)}, {0, 0.1f});
        b.tensor(blk(il, "ffn_gate_exps.weight"), {U(d), U(ff), U(E)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "ffn_up_exps.weight"), {U(d), U(ff), U(E)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "ffn_down_exps.weight"), {U(ff), U(d), U(E)}, {0, 0.5f * inv_sqrt(ff)});
        b.tensor(blk(il, "ffn_gate_shexp.weight"), {U(d), U(ff)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "ffn_up_shexp.weight"), {U(d), U(ff)}, {0, inv_sqrt(d)});
        b.tensor(blk(il, "ffn_down_shexp.weight"), {U(ff), U(d)}, {0, 0.5f * inv_sqrt(ff)});
        if (c.is_hash_layer(il)) {
            // Distinct experts per token, drawn from the seed.
            std::vector<int32_t> table(static_cast<size_t>(V * K));
            Stream st(o.seed, blk(il, "ffn_gate_tid2eid.weight"), 0);
            std::vector<int32_t> perm(static_cast<size_t>(E));
            for (int64_t t = 0; t < V; ++t) {
                for (int64_t e = 0; e < E; ++e) perm[static_cast<size_t>(e)] = static_cast<int32_t>(e);
                for (int64_t k = 0; k < K; ++k) {
                    const int64_t j = k + static_cast<int64_t>(st.u64() % static_cast<uint64_t>(E - k));
                    std::swap(perm[static_cast<size_t>(k)], perm[static_cast<size_t>(j)]);
                    table[static_cast<size_t>(t * K + k)] = perm[static_cast<size_t>(k)];
                }
            }
            b.i32_table(blk(il, "ffn_gate_tid2eid.weight"), {U(K), U(V)}, std::move(table));
        }
    }
    w.write(path);
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
