#!/usr/bin/python3
"""Independent NumPy reference of the DeepSeek-V4-Flash forward pass (ds4 spec
/work/shared/spec/model.md, sections 1-4, 5 and 6.1), written from the spec text.

Token-by-token decode semantics (spec 3.0, 3.10): every token goes through all
layers, pushing its raw KV row and compressor updates before its own attention
reads the caches. Batch prefill (spec 3.7) is defined to give exactly this math,
so one code path serves both.

    m = Model("model.gguf")
    L = m.logits([1, 2, 3])                 # [n_tokens, vocab] float32
    L = m.logits(toks, trace=tr)            # tr = Trace(); tr.topk, tr.acts[...]
    L = m.logits(toks, steering=[Steer("ffn_out", "project", vec, scale=-1.0)])

CLI:
    /usr/bin/python3 ds4_ref.py MODEL.gguf --tokens 1,2,3 --out ref.npy [--topk-out sel.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quants  # noqa: E402
from gguf_reader import GGUFFile  # noqa: E402
from numerics import (NEG_INF, Rope, f16_round, fp8_e4m3_roundtrip, hc_split_sinkhorn,  # noqa: E402
                      indexer_qat, rms_norm, sigmoid, silu, softplus)

ARCH = "deepseek4"


# --------------------------------------------------------------------------
# configuration (spec 1.1; values read from GGUF metadata so scaled-down
# test models work)
# --------------------------------------------------------------------------
@dataclass
class Config:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: int
    head_dim: int
    n_rot: int
    q_lora: int
    o_lora: int
    n_groups: int
    n_expert: int
    n_used: int
    n_ff: int
    n_hash: int
    expert_scale: float
    clamp: list
    eps: float
    hc_eps: float
    n_hc: int
    sinkhorn_iters: int
    window: int
    idx_heads: int
    idx_dim: int
    idx_topk: int
    ratios: list
    rope_base: float
    comp_rope_base: float
    yarn_factor: float
    yarn_orig_ctx: int
    yarn_beta_fast: float
    yarn_beta_slow: float

    @staticmethod
    def from_gguf(g: GGUFFile) -> "Config":
        md = g.metadata

        def k(name, default=None):
            key = f"{ARCH}.{name}"
            if key in md:
                return md[key]
            if default is None:
                raise KeyError(f"missing metadata {key}")
            return default

        n_layer = int(k("block_count"))
        vocab = k("vocab_size", -1)
        if vocab == -1:
            vocab = g.tensors["token_embd.weight"].ne[1]
        return Config(
            n_layer=n_layer,
            n_embd=int(k("embedding_length")),
            n_vocab=int(vocab),
            n_head=int(k("attention.head_count")),
            head_dim=int(k("attention.key_length")),
            n_rot=int(k("rope.dimension_count")),
            q_lora=int(k("attention.q_lora_rank")),
            o_lora=int(k("attention.output_lora_rank")),
            n_groups=int(k("attention.output_group_count")),
            n_expert=int(k("expert_count")),
            n_used=int(k("expert_used_count")),
            n_ff=int(k("expert_feed_forward_length")),
            n_hash=int(k("hash_layer_count")),
            expert_scale=float(k("expert_weights_scale")),
            clamp=[float(x) for x in k("swiglu_clamp_exp")][:n_layer],
            eps=float(k("attention.layer_norm_rms_epsilon")),
            hc_eps=float(k("hyper_connection.epsilon")),
            n_hc=int(k("hyper_connection.count")),
            sinkhorn_iters=int(k("hyper_connection.sinkhorn_iterations")),
            window=int(k("attention.sliding_window")),
            idx_heads=int(k("attention.indexer.head_count")),
            idx_dim=int(k("attention.indexer.key_length")),
            idx_topk=int(k("attention.indexer.top_k")),
            ratios=[int(x) for x in k("attention.compress_ratios")][:n_layer],
            rope_base=float(k("rope.freq_base")),
            comp_rope_base=float(k("attention.compress_rope_freq_base")),
            yarn_factor=float(k("rope.scaling.factor")),
            yarn_orig_ctx=int(k("rope.scaling.original_context_length")),
            yarn_beta_fast=float(k("rope.scaling.yarn_beta_fast")),
            yarn_beta_slow=float(k("rope.scaling.yarn_beta_slow")),
        )


# --------------------------------------------------------------------------
# steering (spec 5.1 and the SDK's SteeringVector semantics)
# --------------------------------------------------------------------------
SITES = ("attn_out", "ffn_out", "layer_out", "layer_in", "router_logits")
OPS = ("add", "project", "ablate", "clamp")


@dataclass
class Steer:
    """One steering edit. `directions`: array [n_layer, width] (rows of zeros = no
    direction) or dict layer -> vector. Ops for row y, direction v, u = v/|v|:
    add y + s v; project y + s u (u.y); ablate y - u (u.y); clamp y + (s|v| - u.y) u
    (the SDK's one scale unit: positive towards the direction, project -1 removes
    the component, clamp sets it to s times the direction's length).
    `positions`: None (all) or (begin, end) absolute positions."""
    site: str
    op: str
    directions: object
    scale: float = 1.0
    layers: tuple = None          # (first, last) inclusive, None = all
    positions: tuple = None

    def direction(self, il):
        if isinstance(self.directions, dict):
            v = self.directions.get(il)
        else:
            v = self.directions[il]
        if v is None:
            return None
        v = np.asarray(v, dtype=np.float64)
        if not np.any(v):
            return None
        return v

    def applies(self, il, pos):
        if self.layers is not None and not (self.layers[0] <= il <= self.layers[1]):
            return False
        if self.positions is not None and not (self.positions[0] <= pos < self.positions[1]):
            return False
        return True


def apply_op(op, scale, v, y):
    """Apply a steering op to row(s) y (last axis)."""
    if op == "add":
        return y + scale * v
    length = np.linalg.norm(v)
    u = v / length
    if op == "project":
        return y + scale * np.multiply.outer(y @ u, u) if y.ndim > 1 else y + scale * u * (u @ y)
    if op == "ablate":
        return y - np.multiply.outer(y @ u, u) if y.ndim > 1 else y - u * (u @ y)
    if op == "clamp":
        target = scale * length
        return y + np.multiply.outer(target - y @ u, u) if y.ndim > 1 else y + (target - u @ y) * u
    raise ValueError(f"unknown steering op {op}")


def apply_steering(steering, site, il, pos, y):
    for st in steering or ():
        if st.site != site or not st.applies(il, pos):
            continue
        v = st.direction(il)
        if v is None:
            continue
        y = apply_op(st.op, st.scale, v, y)
    return y


# --------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------
@dataclass
class Trace:
    """Per-token records. topk: list of {"layer", "pos", "rows"} (indexer selections,
    only when the indexer ran). acts[(name, layer)] -> list of arrays, one per token.
    Names: resid_pre (HC streams entering the layer), attn_in, attn_out (before
    steering), ffn_in, router_logits, router_selection (ids, weights), ffn_out
    (MoE + shared, before steering), resid_post (HC streams after the layer),
    final_hidden (collapsed + output-normed, layer -1), hc_collapsed (layer -1)."""
    sites: tuple = ("attn_out", "ffn_out", "resid_post", "final_hidden")
    keep_scores: bool = False
    topk: list = field(default_factory=list)
    router_own: dict = field(default_factory=dict)   # (layer, pos) -> own selection where forced
    acts: dict = field(default_factory=dict)

    def rec(self, name, il, value):
        if name in self.sites:
            self.acts.setdefault((name, il), []).append(np.array(value, copy=True))

    def stacked(self, name, il):
        return np.stack(self.acts[(name, il)])


# --------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------
class Weight:
    """A dequantized matrix plus the GGUF type it came from (for activation
    quantization) -- math shape [out, in] (or [n_expert, out, in])."""

    def __init__(self, arr, wtype, dtype):
        self.w = np.ascontiguousarray(arr, dtype=dtype)
        self.type = wtype


class Model:
    def __init__(self, path, act_quant="auto", q8_0_f16_scale=True, rope_f32=False, dtype=np.float64,
                 forced_topk=None, forced_experts=None):
        """act_quant: quantize activations before quantized dots as the CPU engine
        does (spec 6.1): Q8_0 for Q8_0 weights, Q8_K for K/IQ quants.
        "auto" = on iff the file holds a quantized weight. rope_f32: build the RoPE
        angles incrementally in f32 (CPU numerics of spec 6.1) instead of exactly.
        forced_topk: optional {(layer, pos): rows} -- use these indexer selections
        instead of the reference's own (parity tests: stops one near-tied selection
        from cascading; the own selection is still computed and traced).
        forced_experts: optional {(layer, pos): expert ids} for the learned router
        (layers >= n_hash); the weights still come from the reference's own p."""
        self.forced_topk = forced_topk
        self.forced_experts = forced_experts
        self.g = GGUFFile(path)
        self.cfg = c = Config.from_gguf(self.g)
        self.dtype = dtype
        if act_quant == "auto":
            act_quant = any(t.type in quants.QUANTIZED for t in self.g.tensors.values())
        self.act_quant = bool(act_quant)
        self.q8_0_f16_scale = q8_0_f16_scale
        self.W = {}
        for name, t in self.g.tensors.items():
            if t.type == quants.I32:
                self.W[name] = self.g.dequant(name).astype(np.int64)
            else:
                self.W[name] = Weight(self.g.dequant(name), t.type, dtype)
        rope_dense = Rope(c.n_rot, c.rope_base, yarn=False, f32_incremental=rope_f32)
        rope_comp = Rope(c.n_rot, c.comp_rope_base, yarn=True, factor=c.yarn_factor,
                         n_ctx_orig=c.yarn_orig_ctx, beta_fast=c.yarn_beta_fast,
                         beta_slow=c.yarn_beta_slow, f32_incremental=rope_f32)
        self.rope = [rope_comp if r != 0 else rope_dense for r in c.ratios]

    # -- helpers --------------------------------------------------------------
    def w(self, name):
        return self.W[name]

    def has(self, name):
        return name in self.W

    def vec(self, name):
        return self.W[name].w

    def matvec(self, name_or_w, x):
        """y = W x with the CPU activation quantization when enabled."""
        W = self.W[name_or_w] if isinstance(name_or_w, str) else name_or_w
        return self._mv(W.w, W.type, x)

    def _mv(self, w, wtype, x):
        if self.act_quant and wtype in quants.QUANTIZED:
            x = quants.activation_roundtrip(np.asarray(x, dtype=np.float32), wtype,
                                            self.q8_0_f16_scale).astype(self.dtype)
        return w @ x

    # -- state (spec 4.1) -------------------------------------------------------
    def new_state(self):
        c = self.cfg
        layers = []
        for il in range(c.n_layer):
            r = c.ratios[il]
            st = {"raw": [], "raw_pos": []}
            if r:
                coff = 2 if r == 4 else 1
                D = c.head_dim
                st["comp"] = Compressor(r, coff, D, self.dtype)
                st["comp_rows"] = np.zeros((0, D), dtype=self.dtype)
                if r == 4:
                    st["icomp"] = Compressor(r, coff, c.idx_dim, self.dtype)
                    st["icomp_rows"] = np.zeros((0, c.idx_dim), dtype=self.dtype)
            layers.append(st)
        return {"layers": layers, "n_tokens": 0}

    # -- 3.1 / 3.2 / 3.3 mHC ------------------------------------------------------
    def hc_pre(self, X, prefix):
        c = self.cfg
        z = rms_norm(X.reshape(-1), None, c.hc_eps)
        m = self.matvec(prefix + "_fn.weight", z)
        pre, post, M = hc_split_sinkhorn(m, self.vec(prefix + "_scale.weight"), self.vec(prefix + "_base.weight"),
                                         c.n_hc, c.sinkhorn_iters, c.hc_eps)
        x_in = pre @ X
        return x_in, post, M

    @staticmethod
    def hc_post(X, y, post, M):
        return post[:, None] * y[None, :] + M @ X

    # -- 3.4 attention ----------------------------------------------------------------
    def attention(self, il, st, a_in, pos, trace, steering):
        c = self.cfg
        p = f"blk.{il}."
        # 3.4.1 projections
        u = rms_norm(a_in, self.vec(p + "attn_norm.weight"), c.eps)
        if trace:
            trace.rec("attn_in", il, u)
        return self.attention_core(il, st, u, pos, trace, steering)

    def attention_core(self, il, st, u, pos, trace=None, steering=None):
        """Attention from the normalized input u (spec 3.4.1 onwards); updates the layer state st."""
        c = self.cfg
        p = f"blk.{il}."
        ratio = c.ratios[il]
        rope = self.rope[il]
        H, D = c.n_head, c.head_dim
        qr = self.matvec(p + "attn_q_a.weight", u)
        qrn = rms_norm(qr, self.vec(p + "attn_q_a_norm.weight"), c.eps)
        q = self.matvec(p + "attn_q_b.weight", qrn).reshape(H, D)
        q = rms_norm(q, None, c.eps)
        kv = rms_norm(self.matvec(p + "attn_kv.weight", u), self.vec(p + "attn_kv_a_norm.weight"), c.eps)
        # 3.4.2 / 3.4.3 RoPE, FP8 on nope dims, f16 store, raw window
        q = rope.apply(q, pos)
        kv = rope.apply(kv, pos)
        kv = self.fp8_nope(kv)
        st["raw"].append(f16_round(kv))
        st["raw_pos"].append(pos)
        if len(st["raw"]) > c.window:
            del st["raw"][0]
            del st["raw_pos"][0]
        rows = [np.stack(st["raw"])]
        # 3.4.4 compressor(s)
        if ratio:
            row = st["comp"].push(self.matvec(p + "attn_compressor_kv.weight", u),
                                  self.matvec(p + "attn_compressor_gate.weight", u)
                                  + self.vec(p + "attn_compressor_ape.weight")[pos % ratio], pos)
            if row is not None:
                row = rms_norm(row, self.vec(p + "attn_compressor_norm.weight"), c.eps)
                row = rope.apply(row, pos + 1 - ratio)
                row = f16_round(self.fp8_nope(row))
                st["comp_rows"] = np.vstack([st["comp_rows"], row[None]])
            comp_rows = st["comp_rows"]
            if ratio == 4:
                krow = st["icomp"].push(self.matvec(p + "indexer_compressor_kv.weight", u),
                                        self.matvec(p + "indexer_compressor_gate.weight", u)
                                        + self.vec(p + "indexer_compressor_ape.weight")[pos % ratio], pos)
                if krow is not None:
                    krow = rms_norm(krow, self.vec(p + "indexer_compressor_norm.weight"), c.eps)
                    krow = rope.apply(krow, pos + 1 - ratio)
                    krow = f16_round(indexer_qat(krow))
                    st["icomp_rows"] = np.vstack([st["icomp_rows"], krow[None]])
                n_c = comp_rows.shape[0]
                if n_c > c.idx_topk:
                    sel, score = self.indexer(il, u, qrn, pos, st["icomp_rows"])
                    forced = self.forced_topk.get((il, pos)) if self.forced_topk else None
                    if trace is not None:
                        rec = {"layer": il, "pos": pos, "rows": [int(x) for x in sel]}
                        if trace.keep_scores:
                            rec["scores"] = [float(x) for x in score]
                        if forced is not None:
                            rec["forced"] = [int(x) for x in forced]
                        trace.topk.append(rec)
                    if forced is not None:
                        sel = np.asarray(forced, dtype=np.int64)
                    comp_rows = comp_rows[sel]
            if comp_rows.shape[0]:
                rows.append(comp_rows)
        K = np.concatenate(rows, axis=0)             # [n_rows, D]; K = V
        # 3.4.6 sink attention
        o = self.sink_attention(q, K, self.vec(p + "attn_sinks.weight"))
        # 3.4.7 inverse RoPE, grouped output projection
        o = rope.apply(o, pos, inverse=True)
        y = self.grouped_out(il, o)
        if trace:
            trace.rec("attn_out", il, y)
        return apply_steering(steering, "attn_out", il, pos, y)

    def fp8_nope(self, x):
        nope = self.cfg.head_dim - self.cfg.n_rot
        y = x.copy()
        y[..., :nope] = fp8_e4m3_roundtrip(x[..., :nope], 64)
        return y

    def indexer(self, il, u, qrn, pos, keys):
        """3.4.5: returns the top-k compressed row indices (score desc, ties -> lower index), sorted
        ascending, and the scores of all keys."""
        c = self.cfg
        p = f"blk.{il}."
        qi = self.matvec(p + "indexer.attn_q_b.weight", qrn).reshape(c.idx_heads, c.idx_dim)
        qi = self.rope[il].apply(qi, pos)
        qi = indexer_qat(qi)
        wts = self.matvec(p + "indexer.proj.weight", u) / math.sqrt(c.idx_dim * c.idx_heads)
        score = np.maximum(keys @ qi.T, 0.0) @ wts        # [n_keys]
        order = np.lexsort((np.arange(len(score)), -score))   # primary: score desc, then index asc
        return np.sort(order[:c.idx_topk]), score

    def sink_attention(self, q, K, sinks):
        s = (q @ K.T) / math.sqrt(self.cfg.head_dim)           # [H, n_rows]
        m = np.maximum(sinks, s.max(axis=1))
        e = np.exp(s - m[:, None])
        den = np.exp(sinks - m) + e.sum(axis=1)
        return (e @ K) / den[:, None]

    def grouped_out(self, il, o):
        c = self.cfg
        p = f"blk.{il}."
        Wa = self.w(p + "attn_output_a.weight")
        G = c.n_groups
        grp = o.reshape(G, -1)                                  # [G, (H/G)*D]
        low = np.concatenate([self._mv(Wa.w[g * c.o_lora:(g + 1) * c.o_lora], Wa.type, grp[g]) for g in range(G)])
        return self.matvec(p + "attn_output_b.weight", low)

    # -- 3.5 FFN --------------------------------------------------------------------
    def ffn(self, il, f_in, tok, pos, trace, steering):
        c = self.cfg
        p = f"blk.{il}."
        v = rms_norm(f_in, self.vec(p + "ffn_norm.weight"), c.eps)
        if trace:
            trace.rec("ffn_in", il, v)
        return self.ffn_core(il, v, tok, pos, trace, steering)

    def ffn_core(self, il, v, tok, pos, trace=None, steering=None):
        """MoE + shared expert from the normalized input v (spec 3.5.1, 3.5.2)."""
        c = self.cfg
        p = f"blk.{il}."
        logit = self.matvec(p + "ffn_gate_inp.weight", v)
        if trace:
            trace.rec("router_logits", il, logit)
        logit = apply_steering(steering, "router_logits", il, pos, logit)
        prob = np.sqrt(softplus(logit))
        if il < c.n_hash:
            sel = self.W[p + "ffn_gate_tid2eid.weight"][tok][:c.n_used]
        else:
            bias = self.vec(p + "exp_probs_b.bias") if self.has(p + "exp_probs_b.bias") else 0.0
            score = prob + bias
            sel = np.lexsort((np.arange(c.n_expert), -score))[:c.n_used]
            forced = self.forced_experts.get((il, pos)) if self.forced_experts else None
            if forced is not None:
                if trace is not None:
                    trace.router_own[(il, pos)] = [int(x) for x in sel]
                sel = np.asarray(forced, dtype=np.int64)
        wsel = prob[sel] / max(prob[sel].sum(), 6.103515625e-5) * c.expert_scale
        if trace:
            trace.rec("router_selection", il, np.concatenate([sel, wsel]))
        clamp = c.clamp[il]
        Wg = self.w(p + "ffn_gate_exps.weight")
        Wu = self.w(p + "ffn_up_exps.weight")
        Wd = self.w(p + "ffn_down_exps.weight")
        moe = np.zeros(c.n_embd, dtype=self.dtype)
        for e, we in zip(sel, wsel):
            g = self._mv(Wg.w[e], Wg.type, v)
            up = self._mv(Wu.w[e], Wu.type, v)
            h = silu(np.minimum(g, clamp)) * np.clip(up, -clamp, clamp) * we
            moe = moe + self._mv(Wd.w[e], Wd.type, h)
        g = self.matvec(p + "ffn_gate_shexp.weight", v)
        up = self.matvec(p + "ffn_up_shexp.weight", v)
        shared = self.matvec(p + "ffn_down_shexp.weight", silu(np.minimum(g, clamp)) * np.clip(up, -clamp, clamp))
        y = moe + shared
        if trace:
            trace.rec("ffn_out", il, y)
        return apply_steering(steering, "ffn_out", il, pos, y)

    # -- 3.6 output head ----------------------------------------------------------------
    def output_head(self, X, trace):
        c = self.cfg
        z = rms_norm(X.reshape(-1), None, c.hc_eps)
        pre = self.matvec("output_hc_fn.weight", z)
        wts = sigmoid(pre * self.vec("output_hc_scale.weight")[0] + self.vec("output_hc_base.weight")) + c.hc_eps
        h = wts @ X
        hn = rms_norm(h, self.vec("output_norm.weight"), c.eps)
        if trace:
            trace.rec("hc_collapsed", -1, h)
            trace.rec("final_hidden", -1, hn)
        return self.matvec("output.weight", hn)

    # -- 3.0 one token --------------------------------------------------------------------
    def forward_token(self, state, tok, trace=None, steering=None):
        c = self.cfg
        pos = state["n_tokens"]
        e = self.vec("token_embd.weight")[tok]
        X = np.repeat(e[None, :], c.n_hc, axis=0).astype(self.dtype)
        for il in range(c.n_layer):
            st = state["layers"][il]
            X = apply_steering(steering, "layer_in", il, pos, X)
            if trace:
                trace.rec("resid_pre", il, X)
            a_in, post, M = self.hc_pre(X, f"blk.{il}.hc_attn")
            y = self.attention(il, st, a_in, pos, trace, steering)
            X = self.hc_post(X, y, post, M)
            f_in, post, M = self.hc_pre(X, f"blk.{il}.hc_ffn")
            y = self.ffn(il, f_in, tok, pos, trace, steering)
            X = self.hc_post(X, y, post, M)
            X = apply_steering(steering, "layer_out", il, pos, X)
            if trace:
                trace.rec("resid_post", il, X)
        state["n_tokens"] = pos + 1
        return self.output_head(X, trace)

    def logits(self, tokens, trace=None, steering=None, state=None):
        state = state or self.new_state()
        out = np.empty((len(tokens), self.cfg.n_vocab), dtype=np.float32)
        for i, t in enumerate(tokens):
            if not 0 <= int(t) < self.cfg.n_vocab:
                raise ValueError(f"token {t} out of range")
            out[i] = self.forward_token(state, int(t), trace, steering)
        return out


class Compressor:
    """Compressor frontier state and pooling (spec 3.4.4).

    ratio 4 (coff 2): 8 rows x 2D; token written to row 4+slot; on emission the
    candidates are rows 0..3 lane A (cols :D, previous window) and rows 4..7 lane B
    (cols D:, current window), then rows 0..3 <- rows 4..7.
    other ratios (coff 1): `ratio` rows x D; token written to row slot."""

    def __init__(self, ratio, coff, D, dtype):
        self.ratio, self.coff, self.D = ratio, coff, D
        n = coff * ratio
        self.kv = np.zeros((n, coff * D), dtype=dtype)
        self.sc = np.full((n, coff * D), NEG_INF, dtype=dtype)

    def push(self, kv_t, sc_t, pos):
        r, D = self.ratio, self.D
        slot = pos % r
        row = r + slot if self.coff == 2 else slot
        self.kv[row] = kv_t
        self.sc[row] = sc_t
        if (pos + 1) % r:
            return None
        if self.coff == 2:
            vals = np.concatenate([self.kv[:r, :D], self.kv[r:, D:]], axis=0)
            scs = np.concatenate([self.sc[:r, :D], self.sc[r:, D:]], axis=0)
        else:
            vals, scs = self.kv, self.sc
        mx = scs.max(axis=0)
        w = np.exp(scs - mx[None, :])
        pooled = (w * vals).sum(axis=0) / w.sum(axis=0)
        pooled = np.where(mx <= NEG_INF, 0.0, pooled)
        if self.coff == 2:
            self.kv[:r] = self.kv[r:]
            self.sc[:r] = self.sc[r:]
        return pooled


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _parse_tokens(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", help="comma separated token ids")
    ap.add_argument("--tokens-file", help="file with comma/whitespace separated token ids")
    ap.add_argument("--out", required=True, help="logits .npy [n_tokens, vocab] float32")
    ap.add_argument("--topk-out", help="indexer selections JSON [{layer,pos,rows}]")
    ap.add_argument("--act-quant", choices=("auto", "on", "off"), default="auto",
                    help="quantize activations before quantized dots as the CPU engine (spec 6.1)")
    ap.add_argument("--q8-0-f32-scale", action="store_true", help="keep the Q8_0 activation scale in f32")
    ap.add_argument("--rope-f32", action="store_true", help="CPU-style incremental f32 RoPE angles (spec 6.1)")
    ap.add_argument("--f32", action="store_true", help="compute in float32 instead of float64")
    ap.add_argument("--steer", action="append", default=[],
                    help="SITE:OP:SCALE:FILE.f32 (FILE = raw f32 [n_layer, width]); repeatable")
    ap.add_argument("--trace-out", help=".npz with attn_out/ffn_out/resid_post/final_hidden per layer")
    a = ap.parse_args(argv)
    toks = _parse_tokens(a.tokens) if a.tokens else []
    if a.tokens_file:
        toks += [int(x) for x in open(a.tokens_file).read().replace(",", " ").split()]
    if not toks:
        ap.error("no tokens")
    aq = {"auto": "auto", "on": True, "off": False}[a.act_quant]
    t0 = time.time()
    m = Model(a.model, act_quant=aq, q8_0_f16_scale=not a.q8_0_f32_scale, rope_f32=a.rope_f32,
              dtype=np.float32 if a.f32 else np.float64)
    steering = []
    for s in a.steer:
        site, op, scale, path = s.split(":", 3)
        if site not in SITES or op not in OPS:
            ap.error(f"bad --steer {s}")
        d = np.fromfile(path, dtype="<f4")
        steering.append(Steer(site, op, d.reshape(m.cfg.n_layer, -1), float(scale)))
    tr = Trace() if (a.topk_out or a.trace_out) else None
    L = m.logits(toks, trace=tr, steering=steering)
    np.save(a.out, L)
    if a.topk_out:
        with open(a.topk_out, "w") as f:
            json.dump(tr.topk, f)
    if a.trace_out:
        np.savez(a.trace_out, **{f"{n}.{il}": np.stack(v) for (n, il), v in tr.acts.items()})
    print(f"ds4_ref: {len(toks)} tokens, {time.time() - t0:.1f}s, act_quant={m.act_quant}", file=sys.stderr)


if __name__ == "__main__":
    main()
