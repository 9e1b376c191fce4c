// Scale sweeps: run a prompt set at several scales and score each with a metric.
#include <algorithm>
#include <cstdio>

#include "core/error_internal.hpp"
#include "ds4/extraction.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "steering/extraction_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;
using namespace steering_detail;

namespace {

const char* metric_name(SweepMetric m) {
    switch (m) {
        case SweepMetric::ResponseLength: return "response_tokens";
        case SweepMetric::RefusalRate: return "refusal_rate";
        case SweepMetric::KlToUnsteered: return "kl_to_unsteered";
    }
    return "?";
}

size_t length_before_stop(const Generation& g, const std::vector<TokenId>& stops) {
    if (g.stopped_by_token && !g.tokens.empty() &&
        std::find(stops.begin(), stops.end(), g.tokens.back()) != stops.end())
        return g.tokens.size() - 1;
    return g.tokens.size();
}

bool starts_with_any(const std::vector<TokenId>& resp, const std::vector<std::vector<TokenId>>& prefixes) {
    for (const auto& p : prefixes)
        if (!p.empty() && resp.size() >= p.size() && std::equal(p.begin(), p.end(), resp.begin())) return true;
    return false;
}

}  // namespace

namespace steering_detail {

std::vector<std::vector<float>> teacher_forced_logits(Session& s, std::span<const TokenId> prompt,
                                                      std::span<const TokenId> continuation) {
    if (prompt.empty()) fail(ErrorCode::InvalidArgument, "teacher forcing needs a non-empty prompt");
    std::vector<TokenId> all(prompt.begin(), prompt.end());
    if (!continuation.empty()) all.insert(all.end(), continuation.begin(), continuation.end() - 1);
    s.reset();
    PrefillOptions po;
    po.all_logits = true;
    s.prefill(all, po);
    std::vector<std::vector<float>> out;
    for (size_t i = prompt.size() - 1; i < all.size(); ++i) {
        const auto l = s.logits_at(static_cast<int64_t>(i));
        out.emplace_back(l.begin(), l.end());
    }
    return out;
}

}  // namespace steering_detail

std::vector<SweepRow> sweep(const std::shared_ptr<const Model>& model, std::span<const std::vector<TokenId>> prompts,
                            const SteeringVector& vector, SweepMetric metric, const SweepOptions& o) {
    return sweep(model, prompts, std::span<const SteeringVector>(&vector, 1), metric, o);
}

std::vector<SweepRow> sweep(const std::shared_ptr<const Model>& model, std::span<const std::vector<TokenId>> prompts,
                            std::span<const SteeringVector> vectors, SweepMetric metric, const SweepOptions& o) {
    if (vectors.empty()) fail(ErrorCode::InvalidArgument, "sweep needs at least one vector");
    if (!model) fail(ErrorCode::InvalidArgument, "sweep: null model");
    if (prompts.empty() || o.scales.empty()) fail(ErrorCode::InvalidArgument, "sweep needs prompts and scales");
    if (metric == SweepMetric::RefusalRate && o.refusal_prefixes.empty())
        fail(ErrorCode::InvalidArgument, "the refusal-rate metric needs refusal_prefixes");
    int64_t ctx = o.context_size;
    if (ctx <= 0) {
        for (const auto& p : prompts) ctx = std::max<int64_t>(ctx, static_cast<int64_t>(p.size()));
        ctx += o.generation.max_tokens + 1;
    }
    Session s(model, {.context_size = ctx, .checkpoint_interval = 0, .max_checkpoints = 2});

    // Unsteered continuations, for the KL metric.
    std::vector<std::vector<std::vector<float>>> base_logits;
    std::vector<std::vector<TokenId>> base_cont;
    if (metric == SweepMetric::KlToUnsteered) {
        for (const auto& p : prompts) {
            s.reset();
            base_cont.push_back(generate(s, p, o.generation).tokens);
            base_logits.push_back(teacher_forced_logits(s, p, base_cont.back()));
        }
    }

    std::vector<SweepRow> rows;
    std::vector<SteeringVector> vs(vectors.begin(), vectors.end());
    for (float scale : o.scales) {
        SweepRow row;
        row.scale = scale;
        std::vector<SteeringHandle> hs;
        for (SteeringVector& v : vs) {
            v.set_scale(scale);
            hs.push_back(add_steering(s, v));
        }
        for (size_t i = 0; i < prompts.size(); ++i) {
            s.reset();
            double value = 0;
            if (metric == SweepMetric::KlToUnsteered) {
                const auto steered = teacher_forced_logits(s, prompts[i], base_cont[i]);
                for (size_t k = 0; k < steered.size(); ++k) value += kl_divergence(base_logits[i][k], steered[k]);
                value /= static_cast<double>(std::max<size_t>(1, steered.size()));
                row.responses.push_back(base_cont[i]);
            } else {
                const Generation g = generate(s, prompts[i], o.generation);
                if (metric == SweepMetric::ResponseLength)
                    value = static_cast<double>(length_before_stop(g, o.generation.stop_tokens));
                else
                    value = starts_with_any(g.tokens, o.refusal_prefixes) ? 1.0 : 0.0;
                row.responses.push_back(g.tokens);
            }
            row.per_prompt.push_back(value);
            row.mean += value;
        }
        row.mean /= static_cast<double>(prompts.size());
        for (SteeringHandle& h : hs) remove_steering(s, h);
        rows.push_back(std::move(row));
    }
    return rows;
}

std::string sweep_table(const std::vector<SweepRow>& rows, SweepMetric metric) {
    std::string out;
    char buf[128];
    std::snprintf(buf, sizeof buf, "%8s  %16s\n", "scale", metric_name(metric));
    out += buf;
    for (const auto& r : rows) {
        std::snprintf(buf, sizeof buf, "%8.3f  %16.4f\n", static_cast<double>(r.scale), r.mean);
        out += buf;
    }
    return out;
}

std::string sweep_csv(const std::vector<SweepRow>& rows, SweepMetric metric) {
    std::string out = "scale,prompt," + std::string(metric_name(metric)) + "\n";
    char buf[96];
    for (const auto& r : rows)
        for (size_t i = 0; i < r.per_prompt.size(); ++i) {
            std::snprintf(buf, sizeof buf, "%g,%zu,%.6g\n", static_cast<double>(r.scale), i, r.per_prompt[i]);
            out += buf;
        }
    return out;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
