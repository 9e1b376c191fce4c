#!/usr/bin/python3
"""Write a quantized copy of a DS4 F32 GGUF with the spec's tensor types (model.md
2.2-2.5, 2.7), using simple NumPy quantizers -- a test fixture for the engine's
quantized paths that does not depend on the engine's own quantizers.

  q2: routed gate/up IQ2_XXS, routed down Q2_K
  q4: routed gate/up/down Q4_K
  both: attention projections, shared expert, LM head Q8_0; embedding, HC fn,
        router, compressors, indexer F16; vectors F32; hash table I32.

The quantizers are plain min/max (K-quants) and nearest-codeword (IQ2_XXS)
searches: valid blocks, not llama.cpp's optimized ones.

  /usr/bin/python3 tests/reference/make_quant_model.py IN-f32.gguf OUT.gguf --mix q2
"""
from __future__ import annotations

import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quants  # noqa: E402
from gguf_reader import T_ARR, T_STR, GGUFFile, _NP_SCALAR, _SCALAR  # noqa: E402
from iq2xxs_tables import IQ2XXS_GRID, KSIGNS_IQ2XS  # noqa: E402


def f16(x):
    return np.asarray(x, dtype=np.float32).astype("<f2")


# --------------------------------------------------------------------------
# quantizers: x [n] float32 (n % block == 0) -> raw bytes
# --------------------------------------------------------------------------
def quant_q8_0(x):
    xb = x.reshape(-1, 32)
    d = f16(np.abs(xb).max(1) / 127).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d[:, None] > 0, np.rint(xb / d[:, None]), 0)
    q = np.clip(q, -127, 127).astype(np.int8)
    out = np.empty((xb.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.reshape(-1)


def _kquant_scales(xs, nlevels, sbits):
    """xs [nb, nsub, sub]: per sub-block value = d*sc*q - dmin*m, q in [0, nlevels-1],
    sc, m in [0, 2^sbits-1]. Returns d, dmin (f16-rounded f32), sc, m (int), q (int)."""
    smax = (1 << sbits) - 1
    lo = np.minimum(xs.min(2), 0.0)
    hi = xs.max(2)
    scale = (hi - lo) / (nlevels - 1)
    mins = -lo
    d = f16(scale.max(1) / smax).astype(np.float32)
    dmin = f16(mins.max(1) / smax).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.rint(scale / d[:, None]), 0)
        m = np.where(dmin[:, None] > 0, np.rint(mins / dmin[:, None]), 0)
    sc = np.clip(sc, 0, smax).astype(np.int64)
    m = np.clip(m, 0, smax).astype(np.int64)
    step = d[:, None] * sc
    off = dmin[:, None] * m
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(step[:, :, None] > 0, np.rint((xs + off[:, :, None]) / step[:, :, None]), 0)
    q = np.clip(q, 0, nlevels - 1).astype(np.int64)
    return d, dmin, sc, m, q


def quant_q4_k(x):
    xs = x.reshape(-1, 8, 32)
    nb = xs.shape[0]
    d, dmin, sc, m, q = _kquant_scales(xs, 16, 6)
    s = np.zeros((nb, 12), dtype=np.int64)
    for j in range(4):
        s[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        s[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        s[:, j + 8] = (sc[:, j + 4] & 15) | ((m[:, j + 4] & 15) << 4)
    qf = q.reshape(nb, 256)
    qs = np.zeros((nb, 128), dtype=np.int64)
    for c in range(4):
        qs[:, 32 * c:32 * c + 32] = qf[:, 64 * c:64 * c + 32] | (qf[:, 64 * c + 32:64 * c + 64] << 4)
    out = np.empty((nb, 144), dtype=np.uint8)
    out[:, 0:2] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 2:4] = f16(dmin).view(np.uint8).reshape(-1, 2)
    out[:, 4:16] = s.astype(np.uint8)
    out[:, 16:] = qs.astype(np.uint8)
    return out.reshape(-1)


def quant_q2_k(x):
    xs = x.reshape(-1, 16, 16)           # sub-block j = elements [16j, 16j+16)
    nb = xs.shape[0]
    d, dmin, sc, m, q = _kquant_scales(xs, 4, 4)
    scales = (sc | (m << 4)).astype(np.uint8)
    qf = q.reshape(nb, 256)
    qs = np.zeros((nb, 64), dtype=np.int64)
    for n in range(2):
        for p in range(4):
            qs[:, 32 * n:32 * n + 32] |= qf[:, 128 * n + 32 * p:128 * n + 32 * p + 32] << (2 * p)
    out = np.empty((nb, 84), dtype=np.uint8)
    out[:, 0:16] = scales
    out[:, 16:80] = qs.astype(np.uint8)
    out[:, 80:82] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 82:84] = f16(dmin).view(np.uint8).reshape(-1, 2)
    return out.reshape(-1)


_GRID = np.array(IQ2XXS_GRID, dtype="<u8").view(np.uint8).reshape(256, 8).astype(np.float64)
_SIGN_INDEX = {int(s): i for i, s in enumerate(KSIGNS_IQ2XS)}


def quant_iq2_xxs(x):
    xb = x.reshape(-1, 8, 4, 8).astype(np.float64)     # block, sub-block, group, element
    nb = xb.shape[0]
    neg = xb < 0
    a = np.abs(xb)
    # even number of negative signs per group: flip the smallest magnitude if odd
    odd = neg.sum(3) % 2 == 1
    kmin = np.argmin(a, axis=3)
    fl = np.zeros_like(neg)
    np.put_along_axis(fl, kmin[..., None], odd[..., None], axis=3)
    neg ^= fl
    s_b = a.reshape(nb, 8, 32).max(2) / 43.0               # per sub-block scale so max -> 43
    d = f16(s_b.max(1) / (0.25 * 15.5)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.where(d[:, None] > 0, np.rint(s_b / (0.25 * d[:, None]) - 0.5), 0)
    ls = np.clip(ls, 0, 15).astype(np.int64)
    unit = d[:, None] * 0.25 * (0.5 + ls)                   # [nb, 8]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(unit[:, :, None, None] > 0, a / unit[:, :, None, None], 0).reshape(-1, 8)
    dist = (t * t).sum(1)[:, None] - 2 * t @ _GRID.T + (_GRID * _GRID).sum(1)[None, :]
    gi = np.argmin(dist, axis=1).reshape(nb, 8, 4)
    bits = (neg[..., :7].astype(np.int64) << np.arange(7)).sum(3)   # [nb, 8, 4] 7 explicit sign bits
    a0 = (gi << (8 * np.arange(4))).sum(2)
    a1 = (bits << (7 * np.arange(4))).sum(2) | (ls << 28)
    words = np.stack([a0, a1], axis=2).reshape(nb, 16).astype("<u4")
    out = np.empty((nb, 66), dtype=np.uint8)
    out[:, 0:2] = f16(d).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = words.view(np.uint8).reshape(nb, 64)
    return out.reshape(-1)


QUANTIZERS = {quants.Q8_0: quant_q8_0, quants.Q4_K: quant_q4_k, quants.Q2_K: quant_q2_k,
              quants.IQ2_XXS: quant_iq2_xxs}


def encode(x, ttype):
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if ttype == quants.F32:
        return x.astype("<f4").view(np.uint8)
    if ttype == quants.F16:
        return x.astype("<f2").view(np.uint8)
    return QUANTIZERS[ttype](x)


# --------------------------------------------------------------------------
# tensor type rule (spec 2.2-2.5 dtype columns, 2.7)
# --------------------------------------------------------------------------
Q8_NAMES = ("attn_q_a.weight", "attn_q_b.weight", "attn_kv.weight", "attn_output_a.weight",
            "attn_output_b.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight")


def type_for(name, ne, orig_type, mix):
    if orig_type == quants.I32:
        return quants.I32
    short = name.split(".", 2)[2] if name.startswith("blk.") else name     # e.g. "indexer.attn_q_b.weight"
    if name == "output.weight" or short in Q8_NAMES:
        return quants.Q8_0
    if short in ("ffn_gate_exps.weight", "ffn_up_exps.weight"):
        return quants.IQ2_XXS if mix == "q2" else quants.Q4_K
    if short == "ffn_down_exps.weight":
        return quants.Q2_K if mix == "q2" else quants.Q4_K
    if len(ne) == 1:
        return quants.F32
    return quants.F16       # embedding, HC fn, router, compressor ape/kv/gate, indexer


# --------------------------------------------------------------------------
# GGUF writer
# --------------------------------------------------------------------------
def _w_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _w_value(vtype, etype, v):
    if vtype == T_STR:
        return _w_str(v)
    if vtype == T_ARR:
        out = struct.pack("<IQ", etype, len(v))
        if etype in _NP_SCALAR:
            return out + np.asarray(v).astype(_NP_SCALAR[etype]).tobytes()
        return out + b"".join(_w_value(etype, None, x) for x in v)
    return struct.pack(_SCALAR[vtype][0], v)


def write_gguf(path, metadata, metadata_types, tensors, align=32):
    """tensors: list of (name, ne, type, raw bytes)"""
    head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        vt, et = metadata_types[k]
        head += _w_str(k) + struct.pack("<I", vt) + _w_value(vt, et, v)
    off = 0
    offs = []
    for name, ne, t, raw in tensors:
        offs.append(off)
        head += _w_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        head += struct.pack("<IQ", t, off)
        off += (len(raw) + align - 1) // align * align
    with open(path, "wb") as f:
        f.write(head)
        f.write(b"\0" * ((-len(head)) % align))
        for (name, ne, t, raw), o in zip(tensors, offs):
            b = np.asarray(raw, dtype=np.uint8).tobytes()
            f.write(b)
            f.write(b"\0" * ((-len(b)) % align))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--mix", choices=("q2", "q4", "f16"), required=True)
    a = ap.parse_args(argv)
    g = GGUFFile(a.src)
    align = int(g.metadata.get("general.alignment", 32))
    out = []
    for name, t in g.tensors.items():
        tt = type_for(name, t.ne, t.type, a.mix) if a.mix != "f16" else (
            t.type if t.type == quants.I32 or len(t.ne) == 1 else quants.F16)
        if tt == quants.I32:
            raw = np.asarray(g.raw(name))
        else:
            raw = encode(g.dequant(name), tt)
        out.append((name, t.ne, tt, raw))
    md = dict(g.metadata)
    mt = dict(g.metadata_types)
    if "general.name" in md:
        md["general.name"] = f"{md['general.name']}-{a.mix}-ref"
    write_gguf(a.dst, md, mt, out, align)
    print(f"wrote {a.dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
