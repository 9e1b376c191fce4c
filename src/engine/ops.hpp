// Numeric building blocks of the DS4 forward pass (model spec section 3).
// Each function states one formula of the spec; the layer code composes them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ds4/config.hpp"

namespace ds4::engine {

// y = x * w / sqrt(mean(x^2) + eps); w may be null (no weight). The sum of
// squares is accumulated in double. x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// Nearest value representable in FP8 E4M3 (fn variant: max 448, subnormal
// step 2^-9), ties to the even code. |x| must be <= 448.
float e4m3_round(float x);
// The KV-cache FP8 simulation: blocks of `block` values, scale = 2^ceil(log2(amax/448))
// with amax floored at 1e-4, each value -> E4M3(clamp(x/scale)) * scale.
void fp8_round_trip(float* x, int64_t n, int block = 64);

// Nearest FP4 E2M1 magnitude in {0, .5, 1, 1.5, 2, 3, 4, 6} (sign kept), ties
// to the even index. |x| must be <= 6.
float e2m1_round(float x);
// Indexer QAT: blocks of 32, scale = 2^ceil(log2(amax/6)), amax floored.
void fp4_round_trip(float* x, int64_t n, int block = 32);
// Walsh-Hadamard transform of n (power of two) values in Sylvester order,
// scaled by 1/sqrt(n).
void hadamard(float* x, int n);

// 2^ceil(log2(v)) for v > 0, computed exactly.
float pow2_ceil(float v);

// RoPE on the last n_rot dims of a vector, adjacent pairs (2k, 2k+1).
struct Rope {
    int n_rot = 0;
    double base = 10000;
    bool yarn = false;
    double factor = 1;
    double ramp_lo = 0, ramp_hi = 0;  // YaRN ramp bounds over the pair index

    static Rope for_layer(const ModelConfig& cfg, int layer);
    // cos/sin of every pair at `pos`: cs[2k] = cos, cs[2k+1] = sin.
    void angles(int64_t pos, float* cs) const;
};
// Rotate x[dim - n_rot .. dim) by the angles (or by their negatives).
void rope_apply(float* x, int dim, int n_rot, const float* cs, bool inverse);

float sigmoid(float x);
float silu(float x);
float softplus(float x);
// The clamped SwiGLU of the DS4 experts (spec 3.5.2), before the routing
// weight: silu(min(gate, limit)) * clamp(up, -limit, limit).
inline float clamped_swiglu(float gate, float up, float limit) {
    return silu(std::min(gate, limit)) * std::clamp(up, -limit, limit);
}

// mHC pre-mix split (spec 3.2 steps 3-5): from the mix vector m (2n + n*n
// values), write pre (n), post (n) and the Sinkhorn-normalised combine matrix
// comb[i + n*j] = weight of source stream j into destination stream i.
void hc_split(const float* m, const float* scale, const float* base, int n, int sinkhorn_iters, float eps,
              float* pre, float* post, float* comb);

}  // namespace ds4::engine
