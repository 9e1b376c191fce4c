"""Weight dequantizers and activation quantizers in NumPy (spec model.md 2.1, 6.1).

Block layouts (little endian, standard GGML):
  Q8_0    32 values, 34 B : f16 d; i8 q[32]
  Q2_K   256 values, 84 B : u8 scales[16]; u8 qs[64]; f16 d; f16 dmin
  Q4_K   256 values, 144 B: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
  IQ2_XXS 256 values, 66 B: f16 d; u16 qs[32]
"""
from __future__ import annotations

import numpy as np

from iq2xxs_tables import IQ2XXS_GRID, KSIGNS_IQ2XS

F32, F16, Q4_0, Q4_1 = 0, 1, 2, 3
Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K = 8, 10, 11, 12, 13, 14, 15
IQ2_XXS = 16
I8, I16, I32, I64, F64 = 24, 25, 26, 27, 28
BF16 = 30

TYPE_NAMES = {F32: "F32", F16: "F16", Q8_0: "Q8_0", Q2_K: "Q2_K", Q4_K: "Q4_K",
              IQ2_XXS: "IQ2_XXS", I32: "I32", BF16: "BF16", Q8_K: "Q8_K"}

_BLOCKS = {
    F32: (1, 4), F16: (1, 2), BF16: (1, 2), I32: (1, 4), I8: (1, 1), I16: (1, 2),
    I64: (1, 8), F64: (1, 8),
    Q8_0: (32, 34), Q2_K: (256, 84), Q4_K: (256, 144), IQ2_XXS: (256, 66),
    Q8_K: (256, 292),
}

QUANTIZED = (Q8_0, Q2_K, Q4_K, IQ2_XXS)


def block_info(ttype):
    if ttype not in _BLOCKS:
        raise ValueError(f"unsupported GGUF tensor type {ttype}")
    return _BLOCKS[ttype]


def _f16(b):
    """bytes [..., 2] -> float32"""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


# --------------------------------------------------------------------------
# weight dequantization
# --------------------------------------------------------------------------
def deq_f32(raw, n):
    return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32)


def deq_f16(raw, n):
    return np.frombuffer(raw, dtype="<f2", count=n).astype(np.float32)


def deq_bf16(raw, n):
    u = np.frombuffer(raw, dtype="<u2", count=n).astype(np.uint32) << 16
    return u.view(np.float32)


def deq_q8_0(raw, n):
    b = np.asarray(raw, dtype=np.uint8).reshape(-1, 34)
    d = _f16(b[:, 0:2])
    q = b[:, 2:34].view(np.int8).astype(np.float32)
    return (d[:, None] * q).reshape(-1)[:n]


def deq_q2_k(raw, n):
    b = np.asarray(raw, dtype=np.uint8).reshape(-1, 84)
    nb = b.shape[0]
    scales = b[:, 0:16]
    qs = b[:, 16:80]
    d = _f16(b[:, 80:82])
    dmin = _f16(b[:, 82:84])
    out = np.empty((nb, 2, 4, 32), dtype=np.float32)   # [block, half n, pass p, lane l]
    for nh in range(2):
        q = qs[:, 32 * nh:32 * nh + 32]
        for p in range(4):
            qq = ((q >> (2 * p)) & 3).astype(np.float32)             # [nb, 32]
            s_lo = scales[:, 8 * nh + 2 * p]
            s_hi = scales[:, 8 * nh + 2 * p + 1]
            S = np.concatenate([np.repeat(s_lo[:, None], 16, 1), np.repeat(s_hi[:, None], 16, 1)], axis=1)
            out[:, nh, p, :] = (d[:, None] * (S & 15).astype(np.float32) * qq
                                - dmin[:, None] * (S >> 4).astype(np.float32))
    return out.reshape(-1)[:n]


def q4k_scale_min(s):
    """s: [nb, 12] uint8 -> sc, mn: [nb, 8] (get_scale_min_k4)."""
    s = s.astype(np.int32)
    sc = np.empty((s.shape[0], 8), dtype=np.int32)
    mn = np.empty((s.shape[0], 8), dtype=np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            mn[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 15) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def deq_q4_k(raw, n):
    b = np.asarray(raw, dtype=np.uint8).reshape(-1, 144)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    dmin = _f16(b[:, 2:4])
    sc, mn = q4k_scale_min(b[:, 4:16])
    qs = b[:, 16:144]
    out = np.empty((nb, 4, 2, 32), dtype=np.float32)
    for c in range(4):
        q = qs[:, 32 * c:32 * c + 32]
        lo = (q & 15).astype(np.float32)
        hi = (q >> 4).astype(np.float32)
        out[:, c, 0, :] = d[:, None] * sc[:, 2 * c, None] * lo - dmin[:, None] * mn[:, 2 * c, None]
        out[:, c, 1, :] = d[:, None] * sc[:, 2 * c + 1, None] * hi - dmin[:, None] * mn[:, 2 * c + 1, None]
    return out.reshape(-1)[:n]


_GRID = np.array(IQ2XXS_GRID, dtype="<u8").view(np.uint8).reshape(256, 8).astype(np.float32)
_SIGNS = np.array(KSIGNS_IQ2XS, dtype=np.uint8)
_SIGN_PM = np.where((_SIGNS[:, None] >> np.arange(8)[None, :]) & 1, -1.0, 1.0).astype(np.float32)  # [128, 8]


def deq_iq2_xxs(raw, n):
    b = np.asarray(raw, dtype=np.uint8).reshape(-1, 66)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    qs = np.ascontiguousarray(b[:, 2:66]).view("<u4").reshape(nb, 8, 2)   # [nb, sub-block, (a0, a1)]
    a0 = qs[:, :, 0]
    a1 = qs[:, :, 1]
    db = d[:, None] * (0.5 + (a1 >> 28).astype(np.float32)) * 0.25           # [nb, 8]
    out = np.empty((nb, 8, 4, 8), dtype=np.float32)
    for l in range(4):
        gi = (a0 >> (8 * l)) & 255
        si = (a1 >> (7 * l)) & 127
        out[:, :, l, :] = db[:, :, None] * _GRID[gi] * _SIGN_PM[si]
    return out.reshape(-1)[:n]


def dequantize(raw, ttype, n):
    if isinstance(raw, (bytes, bytearray)):
        raw = np.frombuffer(raw, dtype=np.uint8)
    raw = np.asarray(raw, dtype=np.uint8)
    if ttype == F32:
        return deq_f32(raw, n)
    if ttype == F16:
        return deq_f16(raw, n)
    if ttype == BF16:
        return deq_bf16(raw, n)
    if ttype == Q8_0:
        return deq_q8_0(raw, n)
    if ttype == Q2_K:
        return deq_q2_k(raw, n)
    if ttype == Q4_K:
        return deq_q4_k(raw, n)
    if ttype == IQ2_XXS:
        return deq_iq2_xxs(raw, n)
    if ttype == I32:
        return np.frombuffer(raw, dtype="<i4", count=n).copy()
    raise ValueError(f"dequantize: unsupported type {ttype}")


# --------------------------------------------------------------------------
# activation quantization round trips (spec 6.1: the CPU engine quantizes the
# activation before a quantized dot; the dot is then exactly sum(w_deq * x_hat)
# up to float summation order).
# --------------------------------------------------------------------------
def f16_round(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def q8_0_roundtrip(x, f16_scale=True):
    """Q8_0 activation quantization along the last axis (length % 32 == 0):
    d = amax/127, q = round-to-nearest-even(x/d); the block scale is stored as f16
    (block_q8_0.d) when f16_scale."""
    x = np.asarray(x, dtype=np.float32)
    sh = x.shape
    xb = x.reshape(-1, 32)
    amax = np.max(np.abs(xb), axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d[:, None] > 0, np.rint(xb / d[:, None]), 0.0).astype(np.float32)
    q = np.clip(q, -127, 127)
    ds = f16_round(d) if f16_scale else d
    return (q * ds[:, None]).reshape(sh).astype(np.float32)


def q8_k_roundtrip(x):
    """Q8_K activation quantization along the last axis (length % 256 == 0):
    max = signed value of largest magnitude, iscale = -127/max,
    q = min(127, round(iscale*x)), d = 1/iscale (f32)."""
    x = np.asarray(x, dtype=np.float32)
    sh = x.shape
    xb = x.reshape(-1, 256)
    idx = np.argmax(np.abs(xb), axis=1)
    mx = xb[np.arange(xb.shape[0]), idx]
    out = np.zeros_like(xb)
    nz = mx != 0
    iscale = np.zeros_like(mx)
    iscale[nz] = np.float32(-127.0) / mx[nz]
    q = np.minimum(127.0, np.rint(iscale[:, None] * xb)).astype(np.float32)
    d = np.zeros_like(mx)
    d[nz] = np.float32(1.0) / iscale[nz]
    out[nz] = q[nz] * d[nz, None]
    return out.reshape(sh).astype(np.float32)


def activation_roundtrip(x, wtype, f16_scale=True):
    """Quantize an activation as the CPU engine does before a dot with a weight of
    type wtype: Q8_0 weights -> Q8_0 activations; K/IQ quants -> Q8_K."""
    if wtype == Q8_0:
        return q8_0_roundtrip(x, f16_scale)
    if wtype in (Q2_K, Q4_K, IQ2_XXS):
        return q8_k_roundtrip(x)
    return x
