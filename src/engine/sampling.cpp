// Sampling over logits (runtime spec section 3).
#include "ds4/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error_internal.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

uint64_t Rng::next() {
    uint64_t x = state_;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state_ = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float Rng::uniform() { return static_cast<float>((next() >> 40) & 0xFFFFFF) / 16777216.0f; }

TokenId argmax(std::span<const float> logits) {
    if (logits.empty()) detail::fail(ErrorCode::InvalidArgument, "argmax of empty logits");
    size_t best = 0;
    float bv = logits[0];
    for (size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > bv || (std::isnan(bv) && !std::isnan(logits[i]))) {
            bv = logits[i];
            best = i;
        }
    return static_cast<TokenId>(best);
}

TokenId sample(std::span<const float> logits, const SamplingParams& p, Rng& rng) {
    if (logits.empty()) detail::fail(ErrorCode::InvalidArgument, "sample from empty logits");
    if (!(p.temperature > 0)) return argmax(logits);
    const float top_p = (p.top_p > 0 && p.top_p <= 1) ? p.top_p : 1.0f;
    const float min_p = p.min_p > 0 ? p.min_p : 0.0f;
    const float T = p.temperature;
    float lmax = -INFINITY;
    size_t n_finite = 0;
    for (float l : logits)
        if (std::isfinite(l)) {
            lmax = std::max(lmax, l);
            ++n_finite;
        }
    if (n_finite == 0) return argmax(logits);

    if (p.top_k <= 0 && top_p >= 1.0f) {
        // One pass over the vocabulary in id order (no sort).
        const float wmax = 1.0f;  // exp((lmax - lmax)/T)
        double sum = 0;
        for (float l : logits) {
            if (!std::isfinite(l)) continue;
            const float w = std::exp((l - lmax) / T);
            if (w >= min_p * wmax) sum += w;
        }
        if (!std::isfinite(sum) || sum <= 0) return argmax(logits);
        float r = rng.uniform() * static_cast<float>(sum);
        TokenId last = -1;
        for (size_t i = 0; i < logits.size(); ++i) {
            const float l = logits[i];
            if (!std::isfinite(l)) continue;
            const float w = std::exp((l - lmax) / T);
            if (w < min_p * wmax) continue;
            last = static_cast<TokenId>(i);
            r -= w;
            if (r <= 0) return last;
        }
        return last >= 0 ? last : argmax(logits);
    }

    // Candidates in descending logit order (ties: lower id first).
    std::vector<TokenId> cand;
    cand.reserve(n_finite);
    for (size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i])) cand.push_back(static_cast<TokenId>(i));
    auto by_logit = [&](TokenId a, TokenId b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    if (p.top_k > 0) {
        const size_t k = std::min<size_t>({static_cast<size_t>(p.top_k), size_t{1024}, cand.size()});
        std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(k), cand.end(), by_logit);
        cand.resize(k);
    } else {
        std::sort(cand.begin(), cand.end(), by_logit);
    }
    std::vector<float> w(cand.size());
    double total = 0;
    for (size_t i = 0; i < cand.size(); ++i) {
        w[i] = std::exp((logits[cand[i]] - lmax) / T);
        total += w[i];
    }
    // min-p then top-p over the tempered probabilities; the top candidate stays.
    size_t kept = 0;
    double cum = 0;
    const float pmax = w[0];
    for (size_t i = 0; i < cand.size(); ++i) {
        if (i > 0 && w[i] < min_p * pmax) break;
        cum += w[i];
        kept = i + 1;
        if (cum / total >= top_p) break;
    }
    float r = rng.uniform() * static_cast<float>(cum);
    for (size_t i = 0; i < kept; ++i) {
        r -= w[i];
        if (r <= 0) return cand[i];
    }
    return cand[kept - 1];
}

namespace {
double log_normalizer(std::span<const float> logits) {
    float lmax = -INFINITY;
    for (float l : logits)
        if (std::isfinite(l)) lmax = std::max(lmax, l);
    double s = 0;
    for (float l : logits)
        if (std::isfinite(l)) s += std::exp(static_cast<double>(l) - lmax);
    return lmax + std::log(s);
}
}  // namespace

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, int n) {
    if (n <= 0 || logits.empty()) return {};
    const double z = log_normalizer(logits);
    std::vector<TokenId> ids;
    for (size_t i = 0; i < logits.size(); ++i)
        if (!std::isnan(logits[i])) ids.push_back(static_cast<TokenId>(i));
    const size_t k = std::min<size_t>(static_cast<size_t>(n), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<long>(k), ids.end(), [&](TokenId a, TokenId b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    std::vector<TokenLogprob> out;
    for (size_t i = 0; i < k; ++i)
        out.push_back({ids[i], logits[ids[i]], static_cast<float>(logits[ids[i]] - z)});
    return out;
}

float token_logprob(std::span<const float> logits, TokenId id) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size())
        detail::fail(ErrorCode::InvalidArgument, "token %d is outside the logits (%zu)", id, logits.size());
    return static_cast<float>(logits[static_cast<size_t>(id)] - log_normalizer(logits));
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
