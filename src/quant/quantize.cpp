// Reference quantizers for every weight type ds4 writes. Each one searches the
// parameters of its format for the least squared error, weighted by the
// optional importance, and writes blocks that dequantize.cpp decodes. All of
// them are deterministic (no randomness, no dependence on threads).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error_internal.hpp"
#include "core/half.hpp"
#include "quant/iq2xxs_tables.hpp"
#include "quant/quant.hpp"

namespace ds4::quant {

namespace {

using ds4::detail::fail;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kF16Max = 65504.0f;

// Round to nearest, ties to even (the default rounding mode's rule, but without
// a libm call: adding 1.5 * 2^23 leaves no fraction bits). |result| <= 4e6.
inline int nearest(float v) {
    v = std::min(std::max(v, -4.0e6f), 4.0e6f);
    return static_cast<int>((v + 12582912.0f) - 12582912.0f);
}

std::string type_name(DType t) { return std::string(dtype_name(t)); }

// A super-block scale stored as f16; fails if it does not fit.
uint16_t scale_to_f16(float d, DType type) {
    if (!(d <= kF16Max))
        fail(ErrorCode::InvalidArgument, "quantize %s: values too large for the format (block scale %g > %g)",
             type_name(type).c_str(), static_cast<double>(d), static_cast<double>(kF16Max));
    return f32_to_f16(d);
}

// The weights of the squared error of one block: the caller's importance, or
// 1. A block whose importance is all zero is weighted uniformly (any result
// would do; this one is still a good fit).
const float* block_weights(const float* importance, int64_t offset, int n, float* buf) {
    if (importance) {
        const float* w = importance + offset;
        for (int i = 0; i < n; ++i)
            if (w[i] > 0) return w;
    }
    std::fill(buf, buf + n, 1.0f);
    return buf;
}

// ---- Q8_0 --------------------------------------------------------------------
// The absmax scale is what every Q8_0 producer writes; with 255 levels the
// rounding error dominates any scale search.

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK8_0;
        float amax = 0.0f;
        for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(v[j]));
        y[i].d = scale_to_f16(amax / 127.0f, DType::Q8_0);
        const float d = f16_to_f32(y[i].d);
        const float id = d > 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::clamp(nearest(v[j] * id), -127, 127));
    }
}

// ---- Q2_K / Q4_K -----------------------------------------------------------------
// value = d * sc * q - dmin * m with q in [0, qmax] and integer sub-block scale
// sc and min m in [0, smax]. First every sub-block gets the continuous
// (scale, min) of least error; then the two super-block scales and the
// integer sub-block parameters are searched together.

struct KQuantFormat {
    int sub;   // values per sub-block
    int nsub;  // sub-blocks per super-block
    int qmax;  // largest quant
    int smax;  // largest sub-block scale / min
};
constexpr KQuantFormat kQ4K{32, 8, 15, 63};
constexpr KQuantFormat kQ2K{16, 16, 3, 15};

// Level of x under scale * q - min: the nearest, within [0, qmax].
inline int level_of(float x, int qmax, float inv_scale, float min) {
    return std::clamp(nearest((x + min) * inv_scale), 0, qmax);
}

// Weighted error of x ~ scale * q - min with q the nearest level; *lowest (if
// given) receives the lowest level used.
float level_error(const float* x, const float* w, int n, int qmax, float scale, float min, int* lowest = nullptr) {
    float err = 0;
    if (scale <= 0) {
        for (int i = 0; i < n; ++i) err += w[i] * (x[i] + min) * (x[i] + min);
        if (lowest) *lowest = 0;
        return err;
    }
    const float inv = 1.0f / scale;
    int lo = qmax;
    for (int i = 0; i < n; ++i) {
        const int q = level_of(x[i], qmax, inv, min);
        lo = std::min(lo, q);
        const float e = scale * static_cast<float>(q) - min - x[i];
        err += w[i] * e * e;
    }
    if (lowest) *lowest = lo;
    return err;
}

// Least-squares (scale, offset) for the levels q: x ~ scale * q + offset, with
// offset <= 0 (the format only subtracts). When the best offset is positive,
// the same line is reached by raising every level by c and lowering the
// offset by c * scale, if the levels have room; otherwise the offset is 0.
// False if degenerate.
bool solve_scale_offset(const float* x, const float* w, uint8_t* q, int n, int qmax, float* scale, float* offset) {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    int top = 0;
    for (int i = 0; i < n; ++i) {
        const double wi = w[i], qi = q[i];
        sw += wi;
        sq += wi * qi;
        sqq += wi * qi * qi;
        sx += wi * x[i];
        sqx += wi * qi * x[i];
        top = std::max(top, static_cast<int>(q[i]));
    }
    const double det = sw * sqq - sq * sq;
    double s = 0, b = 1;
    if (det > 1e-12 * sw * sqq) {
        s = (sw * sqx - sq * sx) / det;
        b = (sqq * sx - sq * sqx) / det;
    }
    if (b > 0 && s > 0) {
        const double c = std::ceil(b / s);
        if (top + c <= qmax) {
            for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(q[i] + static_cast<int>(c));
            b -= c * s;
        }
    }
    if (b > 0) {  // best with no offset
        b = 0;
        if (sqq <= 0) return false;
        s = sqx / sqq;
    }
    if (!(s > 0)) return false;
    *scale = static_cast<float>(s);
    *offset = static_cast<float>(std::min(b, 0.0));
    return true;
}

// Continuous fit of one sub-block: scale > 0 (or 0) and min >= 0 minimising
// sum w (scale q - min - x)^2. Candidate level spacings around the range / qmax
// give level assignments; each is solved by least squares and improved by
// re-assigning levels until the error stops falling.
void fit_scale_min(const float* x, const float* w, int n, int qmax, float* scale, float* min) {
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    *scale = 0.0f;
    *min = -lo;
    if (hi <= lo) return;
    float best = level_error(x, w, n, qmax, (hi - lo) / static_cast<float>(qmax), -lo);
    *scale = (hi - lo) / static_cast<float>(qmax);
    uint8_t q[kQK_K];
    // Spacings: the range spans qmax - 1 .. qmax + 1 levels in tenths, or any
    // smaller whole number of levels (values on a coarser lattice, such as
    // already quantized ones, are then recovered exactly).
    for (int c = -10; c <= 10 + qmax - 2; ++c) {
        const float levels = c <= 10 ? static_cast<float>(qmax) + 0.1f * static_cast<float>(c)
                                     : static_cast<float>(c - 10);
        const float inv = levels / (hi - lo);
        for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(level_of(x[i], qmax, inv, -lo));
        float s, b;
        if (!solve_scale_offset(x, w, q, n, qmax, &s, &b)) continue;
        for (int iter = 0; iter < 4; ++iter) {
            const float err = level_error(x, w, n, qmax, s, -b);
            if (err >= best) break;
            best = err;
            *scale = s;
            *min = -b;
            const float is = 1.0f / s;
            bool changed = false;
            for (int i = 0; i < n; ++i) {
                const auto qi = static_cast<uint8_t>(level_of(x[i], qmax, is, -b));
                changed |= qi != q[i];
                q[i] = qi;
            }
            if (!changed || !solve_scale_offset(x, w, q, n, qmax, &s, &b)) break;
        }
    }
    // Canonical form: when level 0 is unused, move every level down (and the
    // min with them) as far as the min allows; the values do not change.
    if (*scale > 0) {
        int lowest;
        level_error(x, w, n, qmax, *scale, *min, &lowest);
        const int shift = std::min(lowest, static_cast<int>(std::floor(*min / *scale + 1e-3f)));
        if (shift > 0) *min = std::max(0.0f, *min - static_cast<float>(shift) * *scale);
    }
}

// Integer scale and min of one sub-block under super-block scales (d, dmin):
// the rounded continuous values and their neighbours, by exact error.
//
// The result is kept canonical: level 0 is used unless the min is 0. (Values
// x = s q - m with no q at 0 are also x = s (q - 1) - (m - s); the continuous
// fit returns the form that uses level 0, so requantizing canonical blocks
// finds the same integers again.) Only when no neighbour is canonical does
// the best other one win.
float best_integer_scale_min(const float* x, const float* w, const KQuantFormat& f, float sc, float mn, float d,
                             float dmin, int* isc, int* imn) {
    const int s0 = d > 0 ? std::clamp(nearest(sc / d), 0, f.smax) : 0;
    const int m0 = dmin > 0 ? std::clamp(nearest(mn / dmin), 0, f.smax) : 0;
    float best = kInf, best_any = kInf;
    int any_s = s0, any_m = m0;
    for (int s = std::max(0, s0 - 1); s <= std::min(f.smax, s0 + 1); ++s) {
        if (s != s0 && d <= 0) continue;
        for (int m = std::max(0, m0 - 1); m <= std::min(f.smax, m0 + 1); ++m) {
            if (m != m0 && dmin <= 0) continue;
            int lowest;
            const float err = level_error(x, w, f.sub, f.qmax, d * static_cast<float>(s), dmin * static_cast<float>(m),
                                          &lowest);
            if ((lowest == 0 || m == 0) && err < best) {
                best = err;
                *isc = s;
                *imn = m;
            }
            if (err < best_any) {
                best_any = err;
                any_s = s;
                any_m = m;
            }
        }
    }
    if (best == kInf) {
        *isc = any_s;
        *imn = any_m;
        return best_any;
    }
    return best;
}

// Candidates for a super-block scale D of the sub-block values v[] (scales or
// mins): the largest value maps to k = smax, smax - 1, ..., smax / 2; they are
// ranked by the weighted error of rounding every v to a multiple of D (weights
// wt) and the best kSuperTries are returned as f16. Values on such a lattice
// (already quantized ones) give the exact D.
constexpr int kSuperTries = 3;
int super_scale_candidates(const float* v, const float* wt, const KQuantFormat& f, DType type, uint16_t* out) {
    const float vmax = *std::max_element(v, v + f.nsub);
    if (!(vmax > 0)) {
        out[0] = 0;
        return 1;
    }
    float err[kSuperTries];
    int n = 0;
    for (int k = f.smax; 2 * k >= f.smax; --k) {
        const uint16_t dh = scale_to_f16(vmax / static_cast<float>(k), type);
        const float D = f16_to_f32(dh);
        if (!(D > 0)) continue;
        float e = 0;
        for (int s = 0; s < f.nsub; ++s) {
            const float r = v[s] - D * static_cast<float>(std::clamp(nearest(v[s] / D), 0, f.smax));
            e += wt[s] * r * r;
        }
        // Keep the list sorted by error (first found wins ties).
        int pos = n;
        while (pos > 0 && e < err[pos - 1]) --pos;
        if (pos >= kSuperTries) continue;
        for (int j = std::min(n, kSuperTries - 1); j > pos; --j) {
            err[j] = err[j - 1];
            out[j] = out[j - 1];
        }
        err[pos] = e;
        out[pos] = dh;
        n = std::min(n + 1, kSuperTries);
    }
    if (n == 0) out[n++] = 0;
    return n;
}

// One super-block: integer scales/mins (sc[], mn[]) and levels q[] for d, dmin.
void quantize_k_block(const float* x, const float* w, const KQuantFormat& f, DType type, uint16_t* d16,
                      uint16_t* dmin16, int* isc, int* imn, uint8_t* q) {
    float sc[16], mn[16];
    for (int s = 0; s < f.nsub; ++s) fit_scale_min(x + f.sub * s, w + f.sub * s, f.sub, f.qmax, &sc[s], &mn[s]);
    // Sensitivity of each sub-block's error to its scale and to its min.
    float wsc[16], wmn[16];
    for (int s = 0; s < f.nsub; ++s) {
        wsc[s] = wmn[s] = 0;
        for (int l = 0; l < f.sub; ++l) {
            const float wi = w[f.sub * s + l], xi = x[f.sub * s + l];
            wsc[s] += wi * xi * xi;
            wmn[s] += wi;
        }
    }
    uint16_t cand_d[kSuperTries], cand_m[kSuperTries];
    const int nd = super_scale_candidates(sc, wsc, f, type, cand_d);
    const int nm = super_scale_candidates(mn, wmn, f, type, cand_m);
    float best = kInf;
    int tsc[16], tmn[16];
    for (int a = 0; a < nd; ++a) {
        for (int b = 0; b < nm; ++b) {
            const float d = f16_to_f32(cand_d[a]), dmin = f16_to_f32(cand_m[b]);
            float err = 0;
            for (int s = 0; s < f.nsub && err < best; ++s)
                err += best_integer_scale_min(x + f.sub * s, w + f.sub * s, f, sc[s], mn[s], d, dmin, &tsc[s], &tmn[s]);
            if (err < best) {
                best = err;
                *d16 = cand_d[a];
                *dmin16 = cand_m[b];
                std::copy(tsc, tsc + f.nsub, isc);
                std::copy(tmn, tmn + f.nsub, imn);
            }
        }
    }
    const float d = f16_to_f32(*d16), dmin = f16_to_f32(*dmin16);
    for (int s = 0; s < f.nsub; ++s) {
        const float step = d * static_cast<float>(isc[s]), off = dmin * static_cast<float>(imn[s]);
        const float inv = step > 0 ? 1.0f / step : 0.0f;
        for (int l = 0; l < f.sub; ++l)
            q[f.sub * s + l] = static_cast<uint8_t>(step > 0 ? level_of(x[f.sub * s + l], f.qmax, inv, off) : 0);
    }
}

void quantize_q4_K(const float* x, BlockQ4_K* y, int64_t nb, const float* importance) {
    float ones[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        const float* w = block_weights(importance, i * kQK_K, kQK_K, ones);
        int sc[16], mn[16];
        uint8_t q[kQK_K];
        BlockQ4_K& b = y[i];
        quantize_k_block(x + i * kQK_K, w, kQ4K, DType::Q4_K, &b.d, &b.dmin, sc, mn, q);
        // Scales 0..3 and mins 0..3 in bytes 0..7 (low 6 bits); scales and
        // mins 4..7 as nibbles in bytes 8..11 with their top 2 bits in the top
        // bits of bytes 0..7.
        for (int j = 0; j < 4; ++j) {
            b.scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
            b.scales[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
            b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

void quantize_q2_K(const float* x, BlockQ2_K* y, int64_t nb, const float* importance) {
    float ones[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        const float* w = block_weights(importance, i * kQK_K, kQK_K, ones);
        int sc[16], mn[16];
        uint8_t q[kQK_K];
        BlockQ2_K& b = y[i];
        quantize_k_block(x + i * kQK_K, w, kQ2K, DType::Q2_K, &b.d, &b.dmin, sc, mn, q);
        for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<uint8_t>(sc[s] | (mn[s] << 4));
        // Byte l of each 128-value half holds values l, l+32, l+64, l+96 of it.
        for (int half = 0; half < 2; ++half)
            for (int l = 0; l < 32; ++l) {
                const uint8_t* h = q + 128 * half + l;
                b.qs[32 * half + l] = static_cast<uint8_t>(h[0] | (h[32] << 2) | (h[64] << 4) | (h[96] << 6));
            }
    }
}

// ---- IQ2_XXS -----------------------------------------------------------------------
// value = d * (2 s + 1) / 8 * g * sign, per sub-block of 32 values a 4-bit s,
// per group of 8 values one of 256 grid points g (magnitudes 8, 25, 43) and 7
// sign bits (the 8th sign makes the count of negative signs even).
//
// For a group with magnitudes a (signs taken from x) and weights w, the error
// of grid point e at sub-block scale S is C - 2 S p_e + S^2 q_e with
// p_e = sum w a g_e and q_e = sum w g_e^2. As S grows the best point moves
// along the upper-left convex hull of the points (q_e, p_e): from the largest
// p (small S) to the smallest q (large S). Computing that hull once per group
// makes the best point at any S a short lookup, the best continuous scale of a
// sub-block exact, and the search over d and the 4-bit scales cheap.

struct Iq2Tables {
    alignas(64) float g[8][256];   // magnitude of element j of point e
    alignas(64) float g2[8][256];  // its square
    alignas(64) float gg[256];     // sum over j of g^2
};

const Iq2Tables& iq2_tables() {
    static const Iq2Tables t = [] {
        Iq2Tables r{};
        for (int e = 0; e < 256; ++e) {
            for (int j = 0; j < 8; ++j) {
                const auto m = static_cast<float>((kIq2xxsGrid[static_cast<size_t>(e)] >> (8 * j)) & 255);
                r.g[j][e] = m;
                r.g2[j][e] = m * m;
                r.gg[e] += m * m;
            }
        }
        return r;
    }();
    return t;
}

// The hull of one group: points in order of increasing S; point k is the
// best for S in [brk[k-1], brk[k]].
struct GroupHull {
    int n = 0;
    uint8_t e[256];
    float p[256], q[256], brk[256];
    int at(float S) const {
        int k = 0;
        while (k + 1 < n && S > brk[k]) ++k;
        return k;
    }
    float err(int k, float S) const { return S * (S * q[k] - 2.0f * p[k]); }
};

// > 0 when P lies to the right of (below) the line A -> B in the (q, p) plane.
inline float turn(float aq, float ap, float bq, float bp, float pq, float pp) {
    return (bq - aq) * (pp - ap) - (bp - ap) * (pq - aq);
}

// Appends to h the hull points strictly outside segment a -> b, in order, from
// the candidates cand[0..n) (reordered in place).
void hull_between(int a, int b, int* cand, int n, const float* q, const float* p, GroupHull& h) {
    if (n == 0) return;
    int c = -1;
    float most = 0;
    for (int i = 0; i < n; ++i) {
        const float t = turn(q[a], p[a], q[b], p[b], q[cand[i]], p[cand[i]]);
        if (t < most) {
            most = t;
            c = cand[i];
        }
    }
    if (c < 0) return;
    // Partition: [outside a->c | outside c->b | rest].
    int n1 = 0;
    for (int i = 0; i < n; ++i)
        if (cand[i] != c && turn(q[a], p[a], q[c], p[c], q[cand[i]], p[cand[i]]) < 0) std::swap(cand[i], cand[n1++]);
    int n2 = n1;
    for (int i = n1; i < n; ++i)
        if (cand[i] != c && turn(q[c], p[c], q[b], p[b], q[cand[i]], p[cand[i]]) < 0) std::swap(cand[i], cand[n2++]);
    hull_between(a, c, cand, n1, q, p, h);
    h.e[h.n++] = static_cast<uint8_t>(c);
    hull_between(c, b, cand + n1, n2 - n1, q, p, h);
}

void build_hull(const float* q, const float* p, GroupHull& h) {
    int a = 0, b = 0;
    for (int e = 1; e < 256; ++e) {
        if (p[e] > p[a] || (p[e] == p[a] && q[e] < q[a])) a = e;
        if (q[e] < q[b] || (q[e] == q[b] && p[e] > p[b])) b = e;
    }
    h.n = 0;
    h.e[h.n++] = static_cast<uint8_t>(a);
    if (a != b) {
        int cand[256];
        int n = 0;
        for (int e = 0; e < 256; ++e)
            if (turn(q[a], p[a], q[b], p[b], q[e], p[e]) < 0) cand[n++] = e;
        hull_between(a, b, cand, n, q, p, h);
        h.e[h.n++] = static_cast<uint8_t>(b);
    }
    float last = 0;
    for (int k = 0; k < h.n; ++k) {
        h.p[k] = p[h.e[k]];
        h.q[k] = q[h.e[k]];
        if (k > 0) {
            // Points k-1 and k are equally good at this S; rounding must not
            // make the breakpoints decrease.
            const float dq = h.q[k - 1] - h.q[k];
            const float s = dq > 0 ? 2.0f * (h.p[k - 1] - h.p[k]) / dq : last;
            last = std::max(last, s);
            h.brk[k - 1] = last;
        }
    }
}

// Signs of a group: those of x, except that the count of negative signs must
// be even. With an odd count, point e pays for flipping its cheapest element,
// the j of least w |x_j| g_ej (the error grows by 4 S w |x_j| g_ej), so its
// p_e becomes sum w |x| g_e - 2 min_j w |x_j| g_ej: still linear in S, so the
// hull search stays exact. Returns the sign bits of x and whether one of them
// must be flipped.
uint32_t group_signs(const float* x, bool* odd) {
    uint32_t mask = 0;
    for (int j = 0; j < 8; ++j)
        if (x[j] < 0) mask |= 1u << j;
    *odd = __builtin_popcount(mask) & 1;
    return mask;
}

// The element of point e that flips sign in an odd group.
int flipped_element(const float* wa, uint64_t grid) {
    int k = 0;
    float least = kInf;
    for (int j = 0; j < 8; ++j) {
        const float c = wa[j] * static_cast<float>((grid >> (8 * j)) & 255);
        if (c < least) {
            least = c;
            k = j;
        }
    }
    return k;
}

struct Iq2Work {
    GroupHull hull[32];
};

// Error of sub-block sb (groups 4 sb .. 4 sb + 3) at scale S.
float subblock_error(const Iq2Work& w, int sb, float S) {
    float err = 0;
    for (int g = 4 * sb; g < 4 * sb + 4; ++g) err += w.hull[g].err(w.hull[g].at(S), S);
    return err;
}

// The exact best continuous scale of a sub-block: walk the breakpoints of its
// four groups; between two of them the points are fixed and the error is a
// parabola in S.
float subblock_best_scale(const Iq2Work& w, int sb) {
    const GroupHull* h = &w.hull[4 * sb];
    int k[4] = {0, 0, 0, 0};
    float P = 0, Q = 0;
    for (int g = 0; g < 4; ++g) {
        P += h[g].p[0];
        Q += h[g].q[0];
    }
    float lo = 0, best_s = 0, best_err = 0;
    for (;;) {
        int next_g = -1;
        float next = kInf;
        for (int g = 0; g < 4; ++g)
            if (k[g] + 1 < h[g].n && h[g].brk[k[g]] < next) {
                next = h[g].brk[k[g]];
                next_g = g;
            }
        if (Q > 0) {
            const float S = std::clamp(P / Q, lo, next);
            const float err = S * (S * Q - 2.0f * P);
            if (err < best_err) {
                best_err = err;
                best_s = S;
            }
        }
        if (next_g < 0) break;
        const GroupHull& hg = h[next_g];
        P += hg.p[k[next_g] + 1] - hg.p[k[next_g]];
        Q += hg.q[k[next_g] + 1] - hg.q[k[next_g]];
        ++k[next_g];
        lo = next;
    }
    return best_s;
}

// Best 4-bit scale of sub-block sb for super-block scale d (near the
// continuous optimum S), and its error.
float subblock_best_nibble(const Iq2Work& w, int sb, float S, float d, int* nibble) {
    const int s0 = std::clamp(nearest((8.0f * S / d - 1.0f) * 0.5f), 0, 15);
    float best = kInf;
    for (int s = std::max(0, s0 - 1); s <= std::min(15, s0 + 1); ++s) {
        const float err = subblock_error(w, sb, d * static_cast<float>(2 * s + 1) * 0.125f);
        if (err < best) {
            best = err;
            *nibble = s;
        }
    }
    return best;
}

float superblock_error(const Iq2Work& w, const float* S, float d, int* nibbles) {
    float err = 0;
    for (int sb = 0; sb < 8; ++sb) err += subblock_best_nibble(w, sb, S[sb], d, &nibbles[sb]);
    return err;
}

void quantize_iq2_xxs(const float* x, BlockIQ2_XXS* y, int64_t nb, const float* importance) {
    const Iq2Tables& T = iq2_tables();
    std::vector<Iq2Work> work_buf(1);  // ~100 KB: not on the stack
    Iq2Work& work = work_buf[0];
    float ones[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        const float* v = x + i * kQK_K;
        const float* w = block_weights(importance, i * kQK_K, kQK_K, ones);
        const bool uniform = w == ones;
        uint32_t signs[32];
        bool odd[32];
        for (int g = 0; g < 32; ++g) {
            const float* xg = v + 8 * g;
            const float* wg = w + 8 * g;
            signs[g] = group_signs(xg, &odd[g]);
            float wa[8];
            for (int j = 0; j < 8; ++j) wa[j] = wg[j] * std::fabs(xg[j]);
            alignas(64) float p[256], q[256];
            for (int e = 0; e < 256; ++e) p[e] = wa[0] * T.g[0][e];
            for (int j = 1; j < 8; ++j)
                for (int e = 0; e < 256; ++e) p[e] += wa[j] * T.g[j][e];
            if (odd[g]) {
                alignas(64) float m[256];
                for (int e = 0; e < 256; ++e) m[e] = wa[0] * T.g[0][e];
                for (int j = 1; j < 8; ++j)
                    for (int e = 0; e < 256; ++e) m[e] = std::min(m[e], wa[j] * T.g[j][e]);
                for (int e = 0; e < 256; ++e) p[e] -= 2.0f * m[e];
            }
            if (uniform) {
                std::memcpy(q, T.gg, sizeof(q));
            } else {
                for (int e = 0; e < 256; ++e) q[e] = wg[0] * T.g2[0][e];
                for (int j = 1; j < 8; ++j)
                    for (int e = 0; e < 256; ++e) q[e] += wg[j] * T.g2[j][e];
            }
            build_hull(q, p, work.hull[g]);
        }
        float S[8];
        for (int sb = 0; sb < 8; ++sb) S[sb] = subblock_best_scale(work, sb);
        const float smax = *std::max_element(S, S + 8);

        BlockIQ2_XXS& b = y[i];
        int nib[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        b.d = 0;
        if (smax > 0) {
            // d: the largest sub-block exactly at nibble 15, 14, ..., and small
            // steps around that; then least-squares refinement of d for the
            // chosen points and nibbles.
            float best = kInf;
            int tn[8];
            auto consider = [&](float d) {
                const uint16_t dh = scale_to_f16(d, DType::IQ2_XXS);
                const float dq = f16_to_f32(dh);
                if (!(dq > 0)) return;
                const float err = superblock_error(work, S, dq, tn);
                if (err < best) {
                    best = err;
                    b.d = dh;
                    std::copy(tn, tn + 8, nib);
                }
            };
            for (int s = 15; s >= 12; --s) consider(8.0f * smax / static_cast<float>(2 * s + 1));
            for (int k = -3; k <= 3; ++k) consider(8.0f * smax / 31.0f * (1.0f + 0.02f * static_cast<float>(k)));
            for (int iter = 0; iter < 3; ++iter) {
                const float d = f16_to_f32(b.d);
                double num = 0, den = 0;
                for (int sb = 0; sb < 8; ++sb) {
                    const float c = static_cast<float>(2 * nib[sb] + 1) * 0.125f;
                    const float Ssb = d * c;
                    for (int g = 4 * sb; g < 4 * sb + 4; ++g) {
                        const int k = work.hull[g].at(Ssb);
                        num += static_cast<double>(c) * work.hull[g].p[k];
                        den += static_cast<double>(c) * c * work.hull[g].q[k];
                    }
                }
                if (!(den > 0)) break;
                const uint16_t before = b.d;
                consider(static_cast<float>(num / den));
                if (b.d == before) break;
            }
        }
        const float d = f16_to_f32(b.d);
        for (int sb = 0; sb < 8; ++sb) {
            const float Ssb = d * static_cast<float>(2 * nib[sb] + 1) * 0.125f;
            uint32_t idx = 0, aux = static_cast<uint32_t>(nib[sb]) << 28;
            for (int g = 0; g < 4; ++g) {
                const int gi = 4 * sb + g;
                const GroupHull& h = work.hull[gi];
                const int e = h.e[h.at(Ssb)];
                uint32_t mask = signs[gi];
                if (odd[gi]) {
                    float wa[8];
                    for (int j = 0; j < 8; ++j) wa[j] = w[8 * gi + j] * std::fabs(v[8 * gi + j]);
                    mask ^= 1u << flipped_element(wa, kIq2xxsGrid[static_cast<size_t>(e)]);
                }
                idx |= static_cast<uint32_t>(e) << (8 * g);
                aux |= (mask & 127) << (7 * g);
            }
            std::memcpy(&b.qs[4 * sb], &idx, 4);
            std::memcpy(&b.qs[4 * sb + 2], &aux, 4);
        }
    }
}

// ---- F16 / BF16 ----------------------------------------------------------------------

void quantize_f16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        y[i] = f32_to_f16(x[i]);
        if ((y[i] & 0x7FFFu) == 0x7C00u)
            fail(ErrorCode::InvalidArgument, "quantize F16: value %lld (%g) is outside the F16 range",
                 static_cast<long long>(i), static_cast<double>(x[i]));
    }
}

void quantize_bf16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        y[i] = f32_to_bf16(x[i]);
        if ((y[i] & 0x7FFFu) == 0x7F80u)
            fail(ErrorCode::InvalidArgument, "quantize BF16: value %lld (%g) is outside the BF16 range",
                 static_cast<long long>(i), static_cast<double>(x[i]));
    }
}

}  // namespace

void quantize_row(DType type, const float* src, void* dst, int64_t n, const float* importance) {
    int block = 0;
    switch (type) {
        case DType::F32:
        case DType::F16:
        case DType::BF16: block = 1; break;
        case DType::Q8_0: block = kQK8_0; break;
        case DType::Q2_K:
        case DType::Q4_K:
        case DType::IQ2_XXS: block = kQK_K; break;
        default: fail(ErrorCode::InvalidArgument, "no quantizer for type %s", type_name(type).c_str());
    }
    if (n < 0 || n % block != 0)
        fail(ErrorCode::InvalidArgument, "quantize %s: %lld values is not a multiple of the block size %d",
             type_name(type).c_str(), static_cast<long long>(n), block);
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(src[i]))
            fail(ErrorCode::InvalidArgument, "quantize %s: value %lld is not finite", type_name(type).c_str(),
                 static_cast<long long>(i));
        if (importance && !(importance[i] >= 0 && std::isfinite(importance[i])))
            fail(ErrorCode::InvalidArgument, "quantize %s: importance %lld is negative or not finite",
                 type_name(type).c_str(), static_cast<long long>(i));
    }
    switch (type) {
        case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
        case DType::F16: quantize_f16(src, static_cast<uint16_t*>(dst), n); return;
        case DType::BF16: quantize_bf16(src, static_cast<uint16_t*>(dst), n); return;
        case DType::Q8_0: quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n / kQK8_0); return;
        case DType::Q2_K: quantize_q2_K(src, static_cast<BlockQ2_K*>(dst), n / kQK_K, importance); return;
        case DType::Q4_K: quantize_q4_K(src, static_cast<BlockQ4_K*>(dst), n / kQK_K, importance); return;
        case DType::IQ2_XXS: quantize_iq2_xxs(src, static_cast<BlockIQ2_XXS*>(dst), n / kQK_K, importance); return;
        default: break;
    }
}

}  // namespace ds4::quant
