// Reference quantizers for every weight type. Each one searches the
// parameters of its format for the least (importance-weighted) squared
// error; they are deterministic and write blocks that dequantize.cpp decodes.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "quant/iq2xxs_tables.hpp"
#include "quant/quant.hpp"

namespace ds4::quant {

namespace {

using ds4::detail::fail;

int nearest(float v) { return static_cast<int>(std::nearbyint(v)); }

// Fit x ~ scale * q - min with integer q in [0, nmax] and min >= 0, minimising
// sum w (scale q - min - x)^2. Candidate step sizes around (max - min) / nmax
// give the q; each candidate's scale and offset are then solved by weighted
// least squares and the best candidate is kept.
void fit_scale_min(const float* x, const float* w, int n, int nmax, float* scale, float* min) {
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    if (hi <= lo) {
        *scale = 0.0f;
        *min = -lo;
        return;
    }
    double best_err = std::numeric_limits<double>::infinity();
    float best_s = (hi - lo) / static_cast<float>(nmax), best_b = lo;
    for (int step = -10; step <= 10; ++step) {
        const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / (hi - lo);
        double sw = 0, sl = 0, sll = 0, sx = 0, slx = 0;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
            sw += w[i];
            sl += w[i] * q;
            sll += static_cast<double>(w[i]) * q * q;
            sx += static_cast<double>(w[i]) * x[i];
            slx += static_cast<double>(w[i]) * q * x[i];
        }
        const double det = sw * sll - sl * sl;
        if (det <= 0) continue;
        double s = (sw * slx - sl * sx) / det;
        double b = (sll * sx - sl * slx) / det;
        if (b > 0) {  // the format only subtracts: keep the offset <= 0
            b = 0;
            s = sll > 0 ? slx / sll : 0;
        }
        if (s <= 0) continue;
        double err = 0;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(nearest(static_cast<float>((x[i] - b) / s)), 0, nmax);
            const double e = s * q + b - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = static_cast<float>(s);
            best_b = static_cast<float>(b);
        }
    }
    *scale = best_s;
    *min = -best_b;
}

// The weights of the squared error: the caller's importance, or 1.
const float* weights_for(const float* importance, int64_t offset, int n, std::array<float, 256>& buf) {
    if (importance) return importance + offset;
    std::fill(buf.begin(), buf.begin() + n, 1.0f);
    return buf.data();
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK8_0;
        float amax = 0.0f;
        for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(v[j]));
        const float d = amax / 127.0f;
        const float id = d > 0 ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::lround(v[j] * id));
    }
}

void quantize_q4_K(const float* x, BlockQ4_K* y, int64_t nb, const float* importance) {
    std::array<float, 256> ones{};
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK_K;
        const float* w = weights_for(importance, i * kQK_K, kQK_K, ones);
        float sc[8], mn[8];
        for (int s = 0; s < 8; ++s) fit_scale_min(v + 32 * s, w + 32 * s, 32, 15, &sc[s], &mn[s]);
        const float max_sc = *std::max_element(sc, sc + 8), max_mn = *std::max_element(mn, mn + 8);
        const float d = max_sc / 63.0f, dmin = max_mn / 63.0f;
        BlockQ4_K& b = y[i];
        b.d = f32_to_f16(d);
        b.dmin = f32_to_f16(dmin);
        const float dq = f16_to_f32(b.d), dminq = f16_to_f32(b.dmin);
        uint8_t qs[8], qm[8];
        for (int s = 0; s < 8; ++s) {
            qs[s] = static_cast<uint8_t>(dq > 0 ? std::clamp(nearest(sc[s] / dq), 0, 63) : 0);
            qm[s] = static_cast<uint8_t>(dminq > 0 ? std::clamp(nearest(mn[s] / dminq), 0, 63) : 0);
        }
        std::memset(b.scales, 0, sizeof(b.scales));
        for (int j = 0; j < 8; ++j) {
            if (j < 4) {
                b.scales[j] = qs[j];
                b.scales[j + 4] = qm[j];
            } else {
                b.scales[j + 4] = static_cast<uint8_t>((qs[j] & 15) | ((qm[j] & 15) << 4));
                b.scales[j - 4] |= static_cast<uint8_t>((qs[j] >> 4) << 6);
                b.scales[j] |= static_cast<uint8_t>((qm[j] >> 4) << 6);
            }
        }
        uint8_t q[kQK_K];
        for (int s = 0; s < 8; ++s) {
            const float step = dq * qs[s], off = dminq * qm[s];
            for (int l = 0; l < 32; ++l)
                q[32 * s + l] = static_cast<uint8_t>(step > 0 ? std::clamp(nearest((v[32 * s + l] + off) / step), 0, 15) : 0);
        }
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

void quantize_q2_K(const float* x, BlockQ2_K* y, int64_t nb, const float* importance) {
    std::array<float, 256> ones{};
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK_K;
        const float* w = weights_for(importance, i * kQK_K, kQK_K, ones);
        float sc[16], mn[16];
        for (int s = 0; s < 16; ++s) fit_scale_min(v + 16 * s, w + 16 * s, 16, 3, &sc[s], &mn[s]);
        const float max_sc = *std::max_element(sc, sc + 16), max_mn = *std::max_element(mn, mn + 16);
        BlockQ2_K& b = y[i];
        b.d = f32_to_f16(max_sc / 15.0f);
        b.dmin = f32_to_f16(max_mn / 15.0f);
        const float dq = f16_to_f32(b.d), dminq = f16_to_f32(b.dmin);
        uint8_t q[kQK_K];
        for (int s = 0; s < 16; ++s) {
            const int qsc = dq > 0 ? std::clamp(nearest(sc[s] / dq), 0, 15) : 0;
            const int qmn = dminq > 0 ? std::clamp(nearest(mn[s] / dminq), 0, 15) : 0;
            b.scales[s] = static_cast<uint8_t>(qsc | (qmn << 4));
            const float step = dq * qsc, off = dminq * qmn;
            for (int l = 0; l < 16; ++l)
                q[16 * s + l] = static_cast<uint8_t>(step > 0 ? std::clamp(nearest((v[16 * s + l] + off) / step), 0, 3) : 0);
        }
        std::memset(b.qs, 0, sizeof(b.qs));
        for (int half = 0; half < 2; ++half)
            for (int pass = 0; pass < 4; ++pass)
                for (int l = 0; l < 32; ++l)
                    b.qs[32 * half + l] |= static_cast<uint8_t>(q[128 * half + 32 * pass + l] << (2 * pass));
    }
}

// ---- IQ2_XXS -------------------------------------------------------------------

// Grid magnitudes as floats, [entry][element].
const std::array<std::array<float, 8>, 256>& grid_values() {
    static const auto g = [] {
        std::array<std::array<float, 8>, 256> out{};
        for (int e = 0; e < 256; ++e)
            for (int j = 0; j < 8; ++j)
                out[static_cast<size_t>(e)][static_cast<size_t>(j)] =
                    static_cast<float>((kIq2xxsGrid[static_cast<size_t>(e)] >> (8 * j)) & 255);
        return out;
    }();
    return g;
}

// One group of 8 values: magnitudes a (sign already chosen) and weights w.
// For every grid entry e: p[e] = sum w a g_e, q[e] = sum w g_e^2, so that the
// error at group scale S is const - 2 S p[e] + S^2 q[e].
struct GroupFit {
    float p[256], q[256];
    void compute(const float* a, const float* w) {
        const auto& G = grid_values();
        for (int e = 0; e < 256; ++e) {
            float sp = 0, sq = 0;
            for (int j = 0; j < 8; ++j) {
                const float g = G[static_cast<size_t>(e)][static_cast<size_t>(j)];
                sp += w[j] * a[j] * g;
                sq += w[j] * g * g;
            }
            p[e] = sp;
            q[e] = sq;
        }
    }
    // Best entry at scale S and its error term (-2 S p + S^2 q).
    int best(float S, float* err) const {
        int be = 0;
        float bv = std::numeric_limits<float>::infinity();
        for (int e = 0; e < 256; ++e) {
            const float v = S * (S * q[e] - 2.0f * p[e]);
            if (v < bv) {
                bv = v;
                be = e;
            }
        }
        *err = bv;
        return be;
    }
};

// Signs for a group of 8: the sign of each value, with the number of
// negative signs made even (the format stores 7 sign bits, the 8th is their
// parity) by flipping the least important element. Returns the sign mask
// and writes the magnitudes to fit (negative for the flipped element).
uint8_t group_signs(const float* x, const float* w, float* a) {
    uint8_t mask = 0;
    for (int j = 0; j < 8; ++j) {
        a[j] = std::fabs(x[j]);
        if (x[j] < 0) mask = static_cast<uint8_t>(mask | (1u << j));
    }
    if (__builtin_popcount(mask) & 1) {
        int k = 0;
        float least = std::numeric_limits<float>::infinity();
        for (int j = 0; j < 8; ++j) {
            const float imp = w[j] * x[j] * x[j];
            if (imp < least) {
                least = imp;
                k = j;
            }
        }
        mask = static_cast<uint8_t>(mask ^ (1u << k));
        a[k] = -a[k];
    }
    return mask;
}

void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t nb, const float* importance) {
    std::array<float, 256> ones{};
    constexpr int kCandidates = 12;
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK_K;
        const float* w = weights_for(importance, i * kQK_K, kQK_K, ones);
        float a[kQK_K];
        uint8_t masks[32];
        GroupFit fits[32];
        float sub_scale[8];
        for (int g = 0; g < 32; ++g) {
            masks[g] = group_signs(v + 8 * g, w + 8 * g, a + 8 * g);
            fits[g].compute(a + 8 * g, w + 8 * g);
        }
        // Per sub-block of 32: the scale S with the least error over candidates
        // around max|x| / 43 (the largest grid magnitude), then refined by least squares.
        for (int sb = 0; sb < 8; ++sb) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[32 * sb + j]));
            float best_S = 0, best_err = std::numeric_limits<float>::infinity();
            for (int c = 0; c < kCandidates && amax > 0; ++c) {
                const float S = amax / 43.0f * (0.55f + 0.08f * static_cast<float>(c));
                float err = 0, sp = 0, sq = 0;
                for (int g = 0; g < 4; ++g) {
                    float e;
                    const int k = fits[4 * sb + g].best(S, &e);
                    err += e;
                    sp += fits[4 * sb + g].p[k];
                    sq += fits[4 * sb + g].q[k];
                }
                if (err < best_err) {
                    best_err = err;
                    best_S = S;
                }
                // The least-squares scale for these entries is a candidate too.
                if (sq > 0 && sp > 0) {
                    const float S2 = sp / sq;
                    float err2 = 0;
                    for (int g = 0; g < 4; ++g) {
                        float e;
                        fits[4 * sb + g].best(S2, &e);
                        err2 += e;
                    }
                    if (err2 < best_err) {
                        best_err = err2;
                        best_S = S2;
                    }
                }
            }
            sub_scale[sb] = best_S;
        }
        // Super-block scale: S_sb = d (2 s + 1) / 8 with s in 0..15.
        const float max_S = *std::max_element(sub_scale, sub_scale + 8);
        BlockIQ2_XXS& b = y[i];
        b.d = f32_to_f16(max_S * 8.0f / 31.0f);
        const float d = f16_to_f32(b.d);
        for (int sb = 0; sb < 8; ++sb) {
            int s = 0;
            if (d > 0) {
                // The 4-bit scale with the least error for this sub-block.
                float best = std::numeric_limits<float>::infinity();
                const int s0 = std::clamp(nearest((8.0f * sub_scale[sb] / d - 1.0f) / 2.0f), 0, 15);
                for (int cand = std::max(0, s0 - 1); cand <= std::min(15, s0 + 1); ++cand) {
                    const float S = d * static_cast<float>(2 * cand + 1) / 8.0f;
                    float err = 0;
                    for (int g = 0; g < 4; ++g) {
                        float e;
                        fits[4 * sb + g].best(S, &e);
                        err += e;
                    }
                    if (err < best) {
                        best = err;
                        s = cand;
                    }
                }
            }
            const float S = d * static_cast<float>(2 * s + 1) / 8.0f;
            uint32_t idx = 0, signs = 0;
            for (int g = 0; g < 4; ++g) {
                float e;
                const int k = d > 0 ? fits[4 * sb + g].best(S, &e) : 0;
                idx |= static_cast<uint32_t>(k) << (8 * g);
                signs |= static_cast<uint32_t>(masks[4 * sb + g] & 127) << (7 * g);
            }
            const uint32_t aux = signs | (static_cast<uint32_t>(s) << 28);
            std::memcpy(&b.qs[4 * sb], &idx, 4);
            std::memcpy(&b.qs[4 * sb + 2], &aux, 4);
        }
    }
}

}  // namespace

void quantize_row(DType type, const float* src, void* dst, int64_t n, const float* importance) {
    const auto info = dtype_info(static_cast<uint32_t>(type));
    if (!info || !info->computable || type == DType::Q8_K)
        fail(ErrorCode::InvalidArgument, "no quantizer for type %s", std::string(dtype_name(type)).c_str());
    if (n < 0 || n % info->block_elems != 0)
        fail(ErrorCode::InvalidArgument, "quantize %s: %lld values is not a multiple of the block size %u",
             std::string(dtype_name(type)).c_str(), static_cast<long long>(n), info->block_elems);
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(src[i]))
            fail(ErrorCode::InvalidArgument, "quantize %s: value %lld is not finite", std::string(dtype_name(type)).c_str(),
                 static_cast<long long>(i));
        if (importance && !(importance[i] >= 0 && std::isfinite(importance[i])))
            fail(ErrorCode::InvalidArgument, "quantize %s: importance %lld is negative or not finite",
                 std::string(dtype_name(type)).c_str(), static_cast<long long>(i));
    }
    switch (type) {
        case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
        case DType::F16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) {
                if (std::fabs(src[i]) > 65504.0f)
                    fail(ErrorCode::InvalidArgument, "quantize F16: value %lld (%g) is outside the F16 range",
                         static_cast<long long>(i), static_cast<double>(src[i]));
                h[i] = f32_to_f16(src[i]);
            }
            return;
        }
        case DType::BF16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
            return;
        }
        case DType::Q8_0: quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n / kQK8_0); return;
        case DType::Q2_K: quantize_q2_K(src, static_cast<BlockQ2_K*>(dst), n / kQK_K, importance); return;
        case DType::Q4_K: quantize_q4_K(src, static_cast<BlockQ4_K*>(dst), n / kQK_K, importance); return;
        case DType::IQ2_XXS: quantize_iq2_xxs(src, static_cast<BlockIQ2_XXS*>(dst), n / kQK_K, importance); return;
        default: fail(ErrorCode::InvalidArgument, "no quantizer for type %s", std::string(dtype_name(type)).c_str());
    }
}

}  // namespace ds4::quant
