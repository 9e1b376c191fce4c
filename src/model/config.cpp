// ModelConfig: read the deepseek4.* hyperparameters and check that they
// describe a model the engine can run.
#include <algorithm>
#include <cmath>

#include "core/error_internal.hpp"
#include "ds4/config.hpp"
#include "ds4/gguf.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

namespace {

constexpr const char* kPrefix = "deepseek4.";

class MetaReader {
public:
    explicit MetaReader(const gguf::File& f) : f_(f) {}

    std::string key(const char* suffix) const { return std::string(kPrefix) + suffix; }

    const gguf::Value& need(const char* suffix) const { return f_.get(key(suffix)); }
    const gguf::Value* find(const char* suffix) const { return f_.find(key(suffix)); }

    int integer(const char* suffix, int64_t lo, int64_t hi) const {
        const std::string k = key(suffix);
        const int64_t v = f_.get(k).as_int(k);
        if (v < lo || v > hi)
            fail(ErrorCode::UnsupportedModel, "%s: metadata key '%s' = %lld is outside [%lld, %lld]",
                 f_.path().c_str(), k.c_str(), static_cast<long long>(v), static_cast<long long>(lo),
                 static_cast<long long>(hi));
        return static_cast<int>(v);
    }

    float real(const char* suffix, double lo, double hi) const {
        const std::string k = key(suffix);
        const double v = f_.get(k).as_double(k);
        if (!std::isfinite(v) || v < lo || v > hi)
            fail(ErrorCode::UnsupportedModel, "%s: metadata key '%s' = %g is outside [%g, %g]", f_.path().c_str(),
                 k.c_str(), v, lo, hi);
        return static_cast<float>(v);
    }

    std::vector<double> numbers(const char* suffix, size_t min_len) const {
        const std::string k = key(suffix);
        const gguf::Array& a = f_.get(k).as_array(k);
        if (a.items.size() < min_len)
            fail(ErrorCode::UnsupportedModel, "%s: metadata key '%s' has %zu entries, the model has %zu layers",
                 f_.path().c_str(), k.c_str(), a.items.size(), min_len);
        std::vector<double> out;
        out.reserve(a.items.size());
        for (const auto& v : a.items) out.push_back(v.as_double(k));
        return out;
    }

    const std::string& path() const { return f_.path(); }

private:
    const gguf::File& f_;
};

}  // namespace

ModelConfig ModelConfig::from_gguf(const gguf::File& file) {
    if (const auto* arch = file.find("general.architecture")) {
        const std::string& a = arch->as_string("general.architecture");
        if (a != "deepseek4")
            fail(ErrorCode::UnsupportedModel, "%s: general.architecture is '%s', expected 'deepseek4'",
                 file.path().c_str(), a.c_str());
    }
    MetaReader m(file);
    using L = ModelConfig::Limits;
    ModelConfig c;
    if (const auto* n = file.find("general.name"); n && n->is_string()) c.name = n->as_string();
    c.n_layer = m.integer("block_count", 1, L::layers);
    c.n_embd = m.integer("embedding_length", 1, L::width);
    c.n_vocab = m.integer("vocab_size", 1, L::vocab);
    c.n_head = m.integer("attention.head_count", 1, L::heads);
    const int n_head_kv = m.integer("attention.head_count_kv", 1, L::heads);
    if (n_head_kv != 1)
        fail(ErrorCode::UnsupportedModel, "%s: metadata key 'deepseek4.attention.head_count_kv' = %d; DS4 uses one "
             "shared KV row", m.path().c_str(), n_head_kv);
    c.head_dim = m.integer("attention.key_length", 2, L::head_dim);
    const int value_len = m.integer("attention.value_length", 2, L::head_dim);
    if (value_len != c.head_dim)
        fail(ErrorCode::UnsupportedModel, "%s: 'deepseek4.attention.value_length' (%d) must equal key_length (%d)",
             m.path().c_str(), value_len, c.head_dim);
    c.n_rot = m.integer("rope.dimension_count", 2, c.head_dim);
    if (c.n_rot % 2 != 0)
        fail(ErrorCode::UnsupportedModel, "%s: 'deepseek4.rope.dimension_count' = %d must be even", m.path().c_str(),
             c.n_rot);
    c.q_lora_rank = m.integer("attention.q_lora_rank", 1, L::width);
    c.o_lora_rank = m.integer("attention.output_lora_rank", 1, L::width);
    c.o_groups = m.integer("attention.output_group_count", 1, c.n_head);
    if (c.n_head % c.o_groups != 0)
        fail(ErrorCode::UnsupportedModel, "%s: head_count %d is not a multiple of output_group_count %d",
             m.path().c_str(), c.n_head, c.o_groups);
    c.n_expert = m.integer("expert_count", 1, L::experts);
    c.n_expert_used = m.integer("expert_used_count", 1, std::min(c.n_expert, L::experts_used));
    c.n_expert_shared = m.integer("expert_shared_count", 1, 1);
    c.expert_ff = m.integer("expert_feed_forward_length", 1, L::width);
    c.n_hash_layers = m.integer("hash_layer_count", 0, c.n_layer);
    c.expert_weights_scale = m.real("expert_weights_scale", 1e-6, 1e6);
    if (const auto* norm = m.find("expert_weights_norm"); norm && !norm->as_bool("deepseek4.expert_weights_norm"))
        fail(ErrorCode::UnsupportedModel, "%s: 'deepseek4.expert_weights_norm' must be true", m.path().c_str());
    for (const char* k : {"expert_group_count", "expert_group_used_count"})
        if (const auto* g = m.find(k); g && g->as_int(m.key(k)) != 0)
            fail(ErrorCode::UnsupportedModel, "%s: '%s' must be 0 (no group-limited routing)", m.path().c_str(),
                 m.key(k).c_str());
    for (double v : m.numbers("swiglu_clamp_exp", static_cast<size_t>(c.n_layer))) {
        if (!std::isfinite(v) || v <= 0)
            fail(ErrorCode::UnsupportedModel, "%s: 'deepseek4.swiglu_clamp_exp' has a non-positive entry %g",
                 m.path().c_str(), v);
        c.swiglu_clamp.push_back(static_cast<float>(v));
    }
    c.swiglu_clamp.resize(static_cast<size_t>(c.n_layer));
    c.norm_eps = m.real("attention.layer_norm_rms_epsilon", 1e-30, 1.0);
    c.hc_eps = m.real("hyper_connection.epsilon", 1e-30, 1.0);
    c.hc_count = m.integer("hyper_connection.count", 1, L::hc_streams);
    c.hc_sinkhorn_iters = m.integer("hyper_connection.sinkhorn_iterations", 1, L::sinkhorn_iters);
    c.sliding_window = m.integer("attention.sliding_window", 1, L::window);
    for (double v : m.numbers("attention.compress_ratios", static_cast<size_t>(c.n_layer))) {
        if (v != std::floor(v) || v < 0 || v == 1 || v > L::compress_ratio)
            fail(ErrorCode::UnsupportedModel,
                 "%s: 'deepseek4.attention.compress_ratios' entry %g is not 0 or an integer ratio in [2, %d]",
                 m.path().c_str(), v, L::compress_ratio);
        c.compress_ratios.push_back(static_cast<int>(v));
    }
    c.compress_ratios.resize(static_cast<size_t>(c.n_layer));
    bool any_indexer = false, any_compressed = false;
    for (int r : c.compress_ratios) {
        any_indexer |= r == 4;
        any_compressed |= r != 0;
    }
    if (any_indexer) {
        c.indexer_heads = m.integer("attention.indexer.head_count", 1, L::heads);
        c.indexer_head_dim = m.integer("attention.indexer.key_length", 32, L::head_dim);
        if ((c.indexer_head_dim & (c.indexer_head_dim - 1)) != 0 || c.indexer_head_dim < c.n_rot)
            fail(ErrorCode::UnsupportedModel,
                 "%s: 'deepseek4.attention.indexer.key_length' = %d must be a power of two >= 32 and >= the RoPE "
                 "dimension count %d",
                 m.path().c_str(), c.indexer_head_dim, c.n_rot);
        c.indexer_top_k = m.integer("attention.indexer.top_k", 1, L::top_k);
    }
    c.rope_base = m.real("rope.freq_base", 1.0001, 1e12);
    if (any_compressed) {
        c.compress_rope_base = m.real("attention.compress_rope_freq_base", 1.0001, 1e12);
        c.yarn_factor = m.real("rope.scaling.factor", 1.0, 1e6);
        c.yarn_orig_ctx = m.integer("rope.scaling.original_context_length", 1, int64_t{1} << 30);
        c.yarn_beta_fast = m.real("rope.scaling.yarn_beta_fast", 1e-6, 1e6);
        c.yarn_beta_slow = m.real("rope.scaling.yarn_beta_slow", 1e-6, 1e6);
    }
    if (const auto* ctx = m.find("context_length")) {
        c.context_length = ctx->as_int("deepseek4.context_length");
        if (c.context_length < 0)
            fail(ErrorCode::UnsupportedModel, "%s: metadata key 'deepseek4.context_length' = %lld is negative",
                 m.path().c_str(), static_cast<long long>(c.context_length));
    }
    return c;
}

ModelConfig ModelConfig::published() {
    ModelConfig c;
    c.name = "DeepSeek-V4-Flash";
    c.n_layer = 43;
    c.n_embd = 4096;
    c.n_vocab = 129280;
    c.n_head = 64;
    c.head_dim = 512;
    c.n_rot = 64;
    c.q_lora_rank = 1024;
    c.o_lora_rank = 1024;
    c.o_groups = 8;
    c.n_expert = 256;
    c.n_expert_used = 6;
    c.n_expert_shared = 1;
    c.expert_ff = 2048;
    c.n_hash_layers = 3;
    c.expert_weights_scale = 1.5f;
    c.swiglu_clamp.assign(43, 10.0f);
    c.norm_eps = 1e-6f;
    c.hc_eps = 1e-6f;
    c.hc_count = 4;
    c.hc_sinkhorn_iters = 20;
    c.sliding_window = 128;
    c.indexer_heads = 64;
    c.indexer_head_dim = 128;
    c.indexer_top_k = 512;
    for (int il = 0; il < 43; ++il) c.compress_ratios.push_back(il < 2 ? 0 : (il % 2 == 0 ? 4 : 128));
    c.rope_base = 10000.0f;
    c.compress_rope_base = 160000.0f;
    c.yarn_factor = 16.0f;
    c.yarn_orig_ctx = 65536;
    c.yarn_beta_fast = 32.0f;
    c.yarn_beta_slow = 1.0f;
    c.context_length = 1048576;
    return c;
}

void ModelConfig::require_published_shape() const {
    const ModelConfig p = published();
    auto check = [](const char* what, double have, double want) {
        if (std::fabs(have - want) > 1e-6 * std::max(1.0, std::fabs(want)))
            fail(ErrorCode::UnsupportedModel, "metadata '%s' = %g, the published DeepSeek-V4-Flash has %g", what,
                 have, want);
    };
    check("block_count", n_layer, p.n_layer);
    check("embedding_length", n_embd, p.n_embd);
    check("vocab_size", n_vocab, p.n_vocab);
    check("attention.head_count", n_head, p.n_head);
    check("attention.key_length", head_dim, p.head_dim);
    check("rope.dimension_count", n_rot, p.n_rot);
    check("attention.q_lora_rank", q_lora_rank, p.q_lora_rank);
    check("attention.output_lora_rank", o_lora_rank, p.o_lora_rank);
    check("attention.output_group_count", o_groups, p.o_groups);
    check("expert_count", n_expert, p.n_expert);
    check("expert_used_count", n_expert_used, p.n_expert_used);
    check("expert_feed_forward_length", expert_ff, p.expert_ff);
    check("hash_layer_count", n_hash_layers, p.n_hash_layers);
    check("expert_weights_scale", expert_weights_scale, p.expert_weights_scale);
    check("attention.layer_norm_rms_epsilon", norm_eps, p.norm_eps);
    check("hyper_connection.epsilon", hc_eps, p.hc_eps);
    check("hyper_connection.count", hc_count, p.hc_count);
    check("hyper_connection.sinkhorn_iterations", hc_sinkhorn_iters, p.hc_sinkhorn_iters);
    check("attention.sliding_window", sliding_window, p.sliding_window);
    check("attention.indexer.head_count", indexer_heads, p.indexer_heads);
    check("attention.indexer.key_length", indexer_head_dim, p.indexer_head_dim);
    check("attention.indexer.top_k", indexer_top_k, p.indexer_top_k);
    check("rope.freq_base", rope_base, p.rope_base);
    check("attention.compress_rope_freq_base", compress_rope_base, p.compress_rope_base);
    check("rope.scaling.factor", yarn_factor, p.yarn_factor);
    check("rope.scaling.original_context_length", static_cast<double>(yarn_orig_ctx),
          static_cast<double>(p.yarn_orig_ctx));
    check("rope.scaling.yarn_beta_fast", yarn_beta_fast, p.yarn_beta_fast);
    check("rope.scaling.yarn_beta_slow", yarn_beta_slow, p.yarn_beta_slow);
    for (int il = 0; il < n_layer; ++il) {
        check("attention.compress_ratios[]", compress_ratio(il), p.compress_ratio(il));
        check("swiglu_clamp_exp[]", swiglu_clamp[static_cast<size_t>(il)], 10.0);
    }
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
