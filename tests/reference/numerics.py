"""Small numeric building blocks of the DS4 forward pass (spec model.md 3.2-3.4, 6.1).

Everything here is plain NumPy on float64 (or float32) arrays; the storage
round trips (FP8 E4M3, FP4 E2M1, f16) are explicit.
"""
from __future__ import annotations

import math

import numpy as np

NEG_INF = -1e30


# --------------------------------------------------------------------------
# norms and activations
# --------------------------------------------------------------------------
def rms_norm(x, w=None, eps=1e-6):
    """x * w / sqrt(mean(x^2) + eps) over the last axis (sum of squares in f64)."""
    x = np.asarray(x)
    ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)
    y = x * (1.0 / np.sqrt(ms + eps)).astype(x.dtype)
    if w is not None:
        y = y * w
    return y


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def silu(x):
    return x * sigmoid(x)


def softplus(x):
    """x if x > 20; exp(x) if x < -20; else log1p(exp(x))  (spec 3.5.1)."""
    x = np.asarray(x, dtype=np.float64)
    mid = np.log1p(np.exp(np.clip(x, -20, 20)))
    return np.where(x > 20, x, np.where(x < -20, np.exp(np.minimum(x, 0)), mid))


def f16_round(x):
    return np.asarray(x).astype(np.float16).astype(np.asarray(x).dtype)


# --------------------------------------------------------------------------
# nearest value in a sorted non-negative table, ties to the even index
# --------------------------------------------------------------------------
def _nearest_even(table, a):
    """a >= 0, a <= table[-1]; returns table value nearest to a, ties -> even index."""
    hi = np.searchsorted(table, a, side="left")
    hi = np.clip(hi, 0, len(table) - 1)
    lo = np.maximum(hi - 1, 0)
    dlo = a - table[lo]
    dhi = table[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    idx = np.where(pick_hi, hi, lo)
    return table[idx]


def _e4m3fn_table():
    vals = []
    for code in range(127):               # 0x00..0x7e: all finite non-negative codes
        e = code >> 3
        m = code & 7
        if e == 0:
            vals.append(m * 2.0 ** -9)    # subnormal: m/8 * 2^-6
        else:
            vals.append((1 + m / 8.0) * 2.0 ** (e - 7))
    t = np.array(vals, dtype=np.float64)
    assert np.all(np.diff(t) > 0) and t[-1] == 448.0
    return t


E4M3_TABLE = _e4m3fn_table()
E2M1_TABLE = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def e4m3_round(y):
    """Round |y| <= 448 to the nearest finite e4m3fn value (ties to even code), sign kept."""
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * _nearest_even(E4M3_TABLE, np.abs(y))


def e2m1_round(y):
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * _nearest_even(E2M1_TABLE, np.abs(y))


def pow2_ceil_log2(r):
    """2^ceil(log2(r)) for r > 0, exact (via frexp)."""
    r = np.asarray(r, dtype=np.float64)
    m, e = np.frexp(r)                    # r = m * 2^e, m in [0.5, 1)
    e = np.where(m == 0.5, e - 1, e)
    return np.ldexp(1.0, e)


def fp8_e4m3_roundtrip(x, block=64):
    """E4M3 simulation on blocks of `block` values along the last axis (spec 3.4.3 step 2):
    amax = max(|x|, 1e-4), scale = 2^ceil(log2(amax/448)), x -> E4M3(clamp(x/scale, +-448))*scale."""
    x = np.asarray(x)
    sh = x.shape
    xb = x.reshape(-1, block).astype(np.float64)
    amax = np.maximum(np.max(np.abs(xb), axis=1), 1e-4)
    scale = pow2_ceil_log2(np.float32(amax) / np.float32(448.0))
    y = np.clip(xb / scale[:, None], -448.0, 448.0)
    return (e4m3_round(y) * scale[:, None]).reshape(sh).astype(x.dtype)


def fp4_e2m1_roundtrip(x, block=32):
    """FP4 E2M1 simulation on blocks of 32 (spec 3.4.5): amax floored at 7.052966104933725e-38,
    scale = 2^ceil(log2(amax/6)), nearest of {0,.5,1,1.5,2,3,4,6} of clamp(x/scale, +-6)."""
    x = np.asarray(x)
    sh = x.shape
    xb = x.reshape(-1, block).astype(np.float64)
    amax = np.maximum(np.max(np.abs(xb), axis=1), 7.052966104933725e-38)
    scale = pow2_ceil_log2(np.float32(amax) / np.float32(6.0))
    y = np.clip(xb / scale[:, None], -6.0, 6.0)
    return (e2m1_round(y) * scale[:, None]).reshape(sh).astype(x.dtype)


def hadamard_matrix(n):
    """Unnormalized Sylvester Walsh-Hadamard matrix (natural order), H[i,j] = (-1)^popcount(i&j)."""
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n
    return h


_HAD_CACHE = {}


def hadamard(x):
    """Normalized WHT along the last axis: H x / sqrt(n)."""
    n = x.shape[-1]
    if n not in _HAD_CACHE:
        _HAD_CACHE[n] = hadamard_matrix(n) / math.sqrt(n)
    return (x @ _HAD_CACHE[n].T).astype(x.dtype)


def indexer_qat(x):
    """Hadamard + FP4 round trip along the last axis (spec 3.4.5)."""
    return fp4_e2m1_roundtrip(hadamard(x), 32)


# --------------------------------------------------------------------------
# RoPE (spec 3.4.2)
# --------------------------------------------------------------------------
class Rope:
    """Tail-only, adjacent-pair RoPE with optional YaRN frequency blend (no magnitude scaling)."""

    def __init__(self, n_rot, base, yarn=False, factor=1.0, n_ctx_orig=0, beta_fast=32.0, beta_slow=1.0,
                 f32_incremental=False):
        self.n_rot = n_rot
        self.base = float(base)
        self.yarn = yarn
        self.f32_incremental = f32_incremental
        self.freq_scale = 1.0 / factor if yarn else 1.0
        k = np.arange(n_rot // 2, dtype=np.float64)
        if yarn:
            def corr(beta):
                return n_rot * math.log(n_ctx_orig / (beta * 2 * math.pi)) / (2 * math.log(self.base))
            lo = max(0.0, math.floor(corr(beta_fast)))
            hi = min(n_rot - 1.0, math.ceil(corr(beta_slow)))
            self.lo, self.hi = lo, hi
            self.ramp = 1.0 - np.clip((k - lo) / max(0.001, hi - lo), 0.0, 1.0)
        else:
            self.ramp = np.ones_like(k)
        self.inv_freq = self.base ** (-2.0 * k / n_rot)
        self._cache = {}

    def angles(self, pos):
        th = self._cache.get(pos)
        if th is not None:
            return th
        if self.f32_incremental:
            # CPU numerics of spec 6.1: theta built as theta *= base^(-2/n_rot) in f32
            step = np.float32(self.base) ** np.float32(-2.0 / self.n_rot)
            ext = np.empty(self.n_rot // 2, dtype=np.float32)
            t = np.float32(pos)
            for i in range(self.n_rot // 2):
                ext[i] = t
                t = np.float32(t * step)
            ramp = self.ramp.astype(np.float32)
            th32 = (np.float32(self.freq_scale) * ext) * (np.float32(1) - ramp) + ext * ramp
            c = np.cos(th32.astype(np.float64)).astype(np.float32).astype(np.float64)
            s = np.sin(th32.astype(np.float64)).astype(np.float32).astype(np.float64)
        else:
            ext = pos * self.inv_freq
            th64 = ext * self.freq_scale * (1.0 - self.ramp) + ext * self.ramp
            c, s = np.cos(th64), np.sin(th64)
        th = (c, s)
        self._cache[pos] = th
        return th

    def apply(self, x, pos, inverse=False):
        """Rotate the last n_rot dims of x (..., D) at position pos (rotation by -theta if inverse)."""
        c, s = self.angles(pos)
        if inverse:
            s = -s
        y = x.copy()
        t = x[..., x.shape[-1] - self.n_rot:]
        x0 = t[..., 0::2]
        x1 = t[..., 1::2]
        y[..., x.shape[-1] - self.n_rot::2] = x0 * c - x1 * s
        y[..., x.shape[-1] - self.n_rot + 1::2] = x0 * s + x1 * c
        return y


# --------------------------------------------------------------------------
# mHC (spec 3.2, 3.3)
# --------------------------------------------------------------------------
def hc_split_sinkhorn(m, scale, base, n_hc=4, iters=20, eps=1e-6):
    """m: 2n+n^2 mix logits -> pre (n), post (n), M (n x n, M[i][j] = source j into destination i)."""
    s0, s1, s2 = scale
    pre = sigmoid(m[:n_hc] * s0 + base[:n_hc]) + eps
    post = 2.0 * sigmoid(m[n_hc:2 * n_hc] * s1 + base[n_hc:2 * n_hc])
    # storage index k = 2n + i + n*j  -> reshape (j, i) then transpose to M[i, j]
    lg = (m[2 * n_hc:] * s2 + base[2 * n_hc:]).reshape(n_hc, n_hc).T
    # a. per source column j: softmax over destinations i, + eps
    e = np.exp(lg - lg.max(axis=0, keepdims=True))
    M = e / e.sum(axis=0, keepdims=True) + eps
    # b. row normalization
    M = M / (M.sum(axis=1, keepdims=True) + eps)
    # c. iters-1 times: columns then rows
    for _ in range(iters - 1):
        M = M / (M.sum(axis=0, keepdims=True) + eps)
        M = M / (M.sum(axis=1, keepdims=True) + eps)
    return pre, post, M
