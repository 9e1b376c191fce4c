"""The DeepSeek-V4-Flash forward pass in PyTorch, trainable, for the demo model.

Written from the ds4 specification (shared/spec/model.md, sections 3.0-3.6):
mHC with Sinkhorn mixing, Q LoRA, one 512-wide (here head_dim-wide) KV row
shared by every head, partial RoPE (YaRN on compressed layers), the FP8 KV and
FP4/Hadamard indexer round trips, the overlapping ratio-4 compressor with its
indexer and top-k, the non-overlapping compressor of the other ratio, sink
attention, inverse RoPE, grouped output projection, sqrt-softplus routing with
selection-only bias, hash routing on the first layers, clamped SwiGLU, the
shared expert, HC collapse and the LM head.

Unlike the token-by-token NumPy reference (tests/reference/ds4_ref.py), this
module runs whole sequences at once ([batch, time]) with masks, so it can be
trained. The storage round trips (FP8, f16, FP4) are exact in the forward pass
and straight-through in the backward pass; the indexer's top-k selection is
not differentiable (the indexer keeps its initial weights).

The parameters are named after the GGUF tensors ("blk.3.attn_q_a.weight"),
with the math (row-major, [out, in]) shapes the GGUF reader returns.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------
ARCH = "deepseek4"


class Config:
    def __init__(self, md):
        def k(name):
            return md[f"{ARCH}.{name}"]

        self.n_layer = int(k("block_count"))
        self.n_embd = int(k("embedding_length"))
        self.n_vocab = int(k("vocab_size"))
        self.n_head = int(k("attention.head_count"))
        self.head_dim = int(k("attention.key_length"))
        self.n_rot = int(k("rope.dimension_count"))
        self.q_lora = int(k("attention.q_lora_rank"))
        self.o_lora = int(k("attention.output_lora_rank"))
        self.n_groups = int(k("attention.output_group_count"))
        self.n_expert = int(k("expert_count"))
        self.n_used = int(k("expert_used_count"))
        self.n_hash = int(k("hash_layer_count"))
        self.expert_scale = float(k("expert_weights_scale"))
        self.clamp = [float(x) for x in k("swiglu_clamp_exp")][: self.n_layer]
        self.eps = float(k("attention.layer_norm_rms_epsilon"))
        self.hc_eps = float(k("hyper_connection.epsilon"))
        self.n_hc = int(k("hyper_connection.count"))
        self.sinkhorn_iters = int(k("hyper_connection.sinkhorn_iterations"))
        self.window = int(k("attention.sliding_window"))
        self.idx_heads = int(k("attention.indexer.head_count"))
        self.idx_dim = int(k("attention.indexer.key_length"))
        self.idx_topk = int(k("attention.indexer.top_k"))
        self.ratios = [int(x) for x in k("attention.compress_ratios")][: self.n_layer]
        self.rope_base = float(k("rope.freq_base"))
        self.comp_rope_base = float(k("attention.compress_rope_freq_base"))
        self.yarn_factor = float(k("rope.scaling.factor"))
        self.yarn_orig_ctx = int(k("rope.scaling.original_context_length"))
        self.yarn_beta_fast = float(k("rope.scaling.yarn_beta_fast"))
        self.yarn_beta_slow = float(k("rope.scaling.yarn_beta_slow"))


# ---------------------------------------------------------------------------
# storage round trips: exact forward, straight-through backward
# ---------------------------------------------------------------------------
def _ste(x, y):
    """y in the forward pass, the identity's gradient in the backward pass."""
    return x + (y - x).detach() if x.requires_grad else y


def _e4m3_table():
    vals = []
    for code in range(127):  # every finite non-negative e4m3fn code
        e, m = code >> 3, code & 7
        vals.append(m * 2.0 ** -9 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7))
    return torch.tensor(vals, dtype=torch.float64)


_E4M3 = _e4m3_table()
_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def _nearest_even(table, a):
    """Nearest table value to a >= 0 (a <= table[-1]); ties go to the even index."""
    hi = torch.clamp(torch.bucketize(a, table), 0, len(table) - 1)
    lo = torch.clamp(hi - 1, min=0)
    dlo, dhi = a - table[lo], table[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    return table[torch.where(pick_hi, hi, lo)]


def _pow2_ceil(r):
    """2^ceil(log2(r)) exactly, r > 0."""
    m, e = torch.frexp(r)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(r), e)


def _block_roundtrip(x, block, qmax, floor, table):
    sh = x.shape
    xb = x.detach().reshape(-1, block).to(torch.float64)
    amax = torch.clamp(xb.abs().amax(dim=1), min=floor)
    scale = _pow2_ceil((amax.to(torch.float32) / torch.tensor(qmax, dtype=torch.float32)).to(torch.float64))
    y = torch.clamp(xb / scale[:, None], -qmax, qmax)
    q = torch.sign(y) * _nearest_even(table, y.abs()) * scale[:, None]
    return q.reshape(sh).to(x.dtype)


def fp8_roundtrip(x, block=64):
    """FP8 E4M3 simulation on blocks of 64 (spec 3.4.3): power-of-two block scale."""
    return _ste(x, _block_roundtrip(x, block, 448.0, 1e-4, _E4M3))


def fp4_roundtrip(x, block=32):
    """FP4 E2M1 simulation on blocks of 32 (spec 3.4.5)."""
    return _ste(x, _block_roundtrip(x, block, 6.0, 7.052966104933725e-38, _E2M1))


def f16_roundtrip(x):
    return _ste(x, x.detach().to(torch.float16).to(x.dtype))


def _hadamard(n, dtype):
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / math.sqrt(n)).to(dtype)


def indexer_roundtrip(x):
    """Hadamard rotation then FP4 (spec 3.4.5), along the last axis."""
    return fp4_roundtrip(x @ _hadamard(x.shape[-1], x.dtype).T, 32)


# ---------------------------------------------------------------------------
# small pieces
# ---------------------------------------------------------------------------
def rms_norm(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * w if w is not None else y


def softplus_spec(x):
    """x above 20, exp(x) below -20, log1p(exp(x)) between (spec 3.5.1)."""
    mid = torch.log1p(torch.exp(torch.clamp(x, -20, 20)))
    return torch.where(x > 20, x, torch.where(x < -20, torch.exp(torch.clamp(x, max=0)), mid))


class Rope:
    """Tail-only RoPE on adjacent pairs; YaRN frequency blend on compressed layers."""

    def __init__(self, n_rot, base, yarn=False, factor=1.0, n_ctx_orig=0, beta_fast=32.0, beta_slow=1.0):
        self.n_rot = n_rot
        k = np.arange(n_rot // 2, dtype=np.float64)
        self.freq_scale = 1.0 / factor if yarn else 1.0
        if yarn:
            def corr(beta):
                return n_rot * math.log(n_ctx_orig / (beta * 2 * math.pi)) / (2 * math.log(base))

            lo = max(0.0, math.floor(corr(beta_fast)))
            hi = min(n_rot - 1.0, math.ceil(corr(beta_slow)))
            self.ramp = 1.0 - np.clip((k - lo) / max(0.001, hi - lo), 0.0, 1.0)
        else:
            self.ramp = np.ones_like(k)
        self.inv_freq = base ** (-2.0 * k / n_rot)

    def cos_sin(self, positions, dtype):
        """positions: 1-D integer array -> cos, sin [len, n_rot/2]."""
        ext = np.asarray(positions, dtype=np.float64)[:, None] * self.inv_freq[None, :]
        th = ext * self.freq_scale * (1.0 - self.ramp) + ext * self.ramp
        return torch.tensor(np.cos(th), dtype=dtype), torch.tensor(np.sin(th), dtype=dtype)

    def apply(self, x, cos, sin, inverse=False):
        """x [..., T, (heads,) D] with cos/sin [T, n_rot/2] broadcast over the head axis by the caller."""
        if inverse:
            sin = -sin
        nope, tail = x[..., : -self.n_rot], x[..., -self.n_rot:]
        x0, x1 = tail[..., 0::2], tail[..., 1::2]
        r0 = x0 * cos - x1 * sin
        r1 = x0 * sin + x1 * cos
        return torch.cat([nope, torch.stack([r0, r1], dim=-1).flatten(-2)], dim=-1)


def _bcast(cs, x):
    """cos/sin [T, R] -> broadcastable against x [B, T, ..., R]."""
    extra = x.dim() - 3
    return cs.reshape(cs.shape[0], *([1] * extra), cs.shape[1])


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------
class DS4(torch.nn.Module):
    """weights: {gguf tensor name: numpy array (math shape)}; metadata: GGUF metadata dict."""

    FROZEN_SUFFIXES = ("ffn_gate_tid2eid.weight",)

    def __init__(self, metadata, weights, dtype=torch.float32):
        super().__init__()
        self.cfg = c = Config(metadata)
        self.dtype = dtype
        self.names = []
        self.params = torch.nn.ParameterDict()
        self.tables = {}
        for name, arr in weights.items():
            if name.endswith("ffn_gate_tid2eid.weight"):
                self.tables[name] = torch.tensor(np.asarray(arr), dtype=torch.long)
                continue
            p = torch.nn.Parameter(torch.tensor(np.asarray(arr, dtype=np.float64), dtype=dtype))
            # The indexer only selects rows (no gradient reaches it), the
            # router bias only steers selection: both keep their values.
            if ".indexer" in name or name.endswith("exp_probs_b.bias"):
                p.requires_grad_(False)
            self.params[self._key(name)] = p
            self.names.append(name)
        self.rope = []
        dense = Rope(c.n_rot, c.rope_base)
        comp = Rope(c.n_rot, c.comp_rope_base, yarn=True, factor=c.yarn_factor, n_ctx_orig=c.yarn_orig_ctx,
                    beta_fast=c.yarn_beta_fast, beta_slow=c.yarn_beta_slow)
        self.rope = [comp if r else dense for r in c.ratios]
        # Optional hook: a function (name, x) -> x applied to the input of
        # every matrix product with the weight `name` (activation quantization
        # when comparing with the CPU engine on a quantized file).
        self.act_hook = None

    @staticmethod
    def _key(name):
        return name.replace(".", "__")

    def w(self, name):
        return self.params[self._key(name)]

    def has(self, name):
        return self._key(name) in self.params

    def state_numpy(self):
        out = {n: self.w(n).detach().cpu().numpy() for n in self.names}
        out.update({n: t.numpy() for n, t in self.tables.items()})
        return out

    def mm(self, name, x, w=None):
        """x @ W^T for the GGUF matrix `name` (or its slice w)."""
        if self.act_hook is not None:
            x = self.act_hook(name, x)
        return x @ (self.w(name) if w is None else w).T

    # -- mHC (spec 3.1-3.3) ---------------------------------------------------
    def hc_pre(self, X, prefix):
        c = self.cfg
        n = c.n_hc
        z = rms_norm(X.flatten(-2), None, c.hc_eps)
        m = self.mm(prefix + "_fn.weight", z)
        s = self.w(prefix + "_scale.weight")
        base = self.w(prefix + "_base.weight")
        pre = torch.sigmoid(m[..., :n] * s[0] + base[:n]) + c.hc_eps
        post = 2.0 * torch.sigmoid(m[..., n:2 * n] * s[1] + base[n:2 * n])
        lg = (m[..., 2 * n:] * s[2] + base[2 * n:]).unflatten(-1, (n, n)).transpose(-1, -2)  # [.., i, j]
        M = torch.softmax(lg, dim=-2) + c.hc_eps
        M = M / (M.sum(dim=-1, keepdim=True) + c.hc_eps)
        for _ in range(c.sinkhorn_iters - 1):
            M = M / (M.sum(dim=-2, keepdim=True) + c.hc_eps)
            M = M / (M.sum(dim=-1, keepdim=True) + c.hc_eps)
        x_in = torch.einsum("btn,btne->bte", pre, X)
        return x_in, post, M

    @staticmethod
    def hc_post(X, y, post, M):
        return post[..., None] * y[..., None, :] + torch.einsum("btij,btje->btie", M, X)

    # -- compressor (spec 3.4.4) ----------------------------------------------
    def compress(self, u, prefix, ratio, width):
        """Pooled rows [B, T // ratio, width]; row j closes at position (j + 1) * ratio - 1."""
        B, T, _ = u.shape
        nc = T // ratio
        lanes = 2 if ratio == 4 else 1
        kv = self.mm(prefix + "_kv.weight", u)[:, : nc * ratio]
        ape = self.w(prefix + "_ape.weight")  # [ratio, lanes * width]
        sc = self.mm(prefix + "_gate.weight", u)[:, : nc * ratio] + ape.repeat(nc, 1)[None]
        kv = kv.reshape(B, nc, ratio, lanes * width)
        sc = sc.reshape(B, nc, ratio, lanes * width)
        if lanes == 2:
            # Window j pools lane B of its own tokens and lane A of window j-1.
            prev_kv = F.pad(kv[:, :-1, :, :width], (0, 0, 0, 0, 1, 0))
            prev_sc = F.pad(sc[:, :-1, :, :width], (0, 0, 0, 0, 1, 0), value=-math.inf)
            kv = torch.cat([prev_kv, kv[..., width:]], dim=2)
            sc = torch.cat([prev_sc, sc[..., width:]], dim=2)
        wts = torch.softmax(sc, dim=2)
        return (wts * kv).sum(dim=2)

    # -- attention (spec 3.4) -------------------------------------------------
    def attention(self, il, u, trace):
        c = self.cfg
        p = f"blk.{il}."
        B, T, _ = u.shape
        H, D = c.n_head, c.head_dim
        ratio = c.ratios[il]
        rope = self.rope[il]
        pos = np.arange(T)
        cos, sin = rope.cos_sin(pos, u.dtype)

        qrn = rms_norm(self.mm(p + "attn_q_a.weight", u), self.w(p + "attn_q_a_norm.weight"), c.eps)
        q = self.mm(p + "attn_q_b.weight", qrn).unflatten(-1, (H, D))
        q = rms_norm(q, None, c.eps)
        q = rope.apply(q, _bcast(cos, q), _bcast(sin, q))
        kv = rms_norm(self.mm(p + "attn_kv.weight", u), self.w(p + "attn_kv_a_norm.weight"), c.eps)
        kv = rope.apply(kv, cos, sin)
        kv = f16_roundtrip(self.fp8_nope(kv))

        # raw window: keys s with t - window < s <= t
        t_idx = torch.arange(T)
        diff = t_idx[:, None] - t_idx[None, :]
        raw_ok = (diff >= 0) & (diff < c.window)
        s_raw = torch.einsum("bthd,bsd->bhts", q, kv) / math.sqrt(D)
        s_raw = s_raw.masked_fill(~raw_ok, -math.inf)
        parts, values = [s_raw], [kv]

        if ratio and T >= ratio:
            rows = self.compress(u, p + "attn_compressor", ratio, D)
            nc = rows.shape[1]
            rows = rms_norm(rows, self.w(p + "attn_compressor_norm.weight"), c.eps)
            rpos = np.arange(nc) * ratio
            rc, rs = rope.cos_sin(rpos, u.dtype)
            rows = f16_roundtrip(self.fp8_nope(rope.apply(rows, rc, rs)))
            # row j is visible from position (j + 1) * ratio - 1 on
            visible = t_idx[:, None] >= torch.tensor((np.arange(nc) + 1) * ratio - 1)[None, :]  # [T, nc]
            allowed = visible[None].expand(B, T, nc)
            if ratio == 4:
                allowed = allowed & self.indexer_select(il, u, qrn, rows.shape[1], visible, trace)
            s_c = torch.einsum("bthd,bjd->bhtj", q, rows) / math.sqrt(D)
            s_c = s_c.masked_fill(~allowed[:, None], -math.inf)
            parts.append(s_c)
            values.append(rows)

        sinks = self.w(p + "attn_sinks.weight")
        s_sink = sinks[None, :, None, None].expand(B, H, T, 1)
        probs = torch.softmax(torch.cat(parts + [s_sink], dim=-1), dim=-1)
        o = torch.einsum("bhts,bsd->bthd", probs[..., :T], values[0])
        if len(values) > 1:
            o = o + torch.einsum("bhtj,bjd->bthd", probs[..., T:-1], values[1])
        o = rope.apply(o, _bcast(cos, o), _bcast(sin, o), inverse=True)

        # grouped output projection (spec 3.4.7)
        G = c.n_groups
        grp = o.reshape(B, T, G, -1)
        Wa = self.w(p + "attn_output_a.weight").reshape(G, c.o_lora, -1)
        if self.act_hook is not None:
            grp = self.act_hook(p + "attn_output_a.weight", grp)
        low = torch.einsum("btgk,gok->btgo", grp, Wa).flatten(-2)
        return self.mm(p + "attn_output_b.weight", low)

    def fp8_nope(self, x):
        nope = self.cfg.head_dim - self.cfg.n_rot
        return torch.cat([fp8_roundtrip(x[..., :nope]), x[..., nope:]], dim=-1)

    @torch.no_grad()
    def indexer_select(self, il, u, qrn, nc, visible, trace):
        """[B, T, nc] mask of the compressed rows the indexer keeps for each query (spec 3.4.5)."""
        c = self.cfg
        p = f"blk.{il}."
        B, T, _ = u.shape
        rope = self.rope[il]
        keys = self.compress(u, p + "indexer_compressor", 4, c.idx_dim)
        keys = rms_norm(keys, self.w(p + "indexer_compressor_norm.weight"), c.eps)
        rc, rs = rope.cos_sin(np.arange(nc) * 4, u.dtype)
        keys = f16_roundtrip(indexer_roundtrip(rope.apply(keys, rc, rs)))
        qi = self.mm(p + "indexer.attn_q_b.weight", qrn).unflatten(-1, (c.idx_heads, c.idx_dim))
        cos, sin = rope.cos_sin(np.arange(T), u.dtype)
        qi = indexer_roundtrip(rope.apply(qi, _bcast(cos, qi), _bcast(sin, qi)))
        wts = self.mm(p + "indexer.proj.weight", u) / math.sqrt(c.idx_dim * c.idx_heads)
        score = torch.einsum("bjk,bthk->btjh", keys, qi).clamp(min=0)
        score = torch.einsum("btjh,bth->btj", score, wts)
        score = score.masked_fill(~visible[None], -math.inf)
        order = torch.sort(score, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(-1, order, torch.arange(nc).expand_as(order).contiguous())
        keep = (rank < c.idx_topk) & visible[None]
        if trace is not None:
            trace.setdefault("topk", {})[il] = keep
        return keep

    # -- FFN (spec 3.5) -------------------------------------------------------
    def ffn(self, il, v, tokens, trace):
        c = self.cfg
        p = f"blk.{il}."
        logit = self.mm(p + "ffn_gate_inp.weight", v)
        prob = torch.sqrt(softplus_spec(logit))
        if il < c.n_hash:
            sel = self.tables[p + "ffn_gate_tid2eid.weight"][tokens][..., : c.n_used]
        else:
            score = prob.detach()
            if self.has(p + "exp_probs_b.bias"):
                score = score + self.w(p + "exp_probs_b.bias")
            # ties go to the lower expert index
            sel = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., : c.n_used]
        psel = torch.gather(prob, -1, sel)
        wsel = psel / torch.clamp(psel.sum(dim=-1, keepdim=True), min=6.103515625e-5) * c.expert_scale
        if trace is not None:
            trace.setdefault("experts", {})[il] = sel
        clamp = c.clamp[il]

        def swiglu(g, up):
            return F.silu(torch.clamp(g, max=clamp)) * torch.clamp(up, -clamp, clamp)

        flat = v.reshape(-1, v.shape[-1])
        fsel = sel.reshape(-1, c.n_used)
        fw = wsel.reshape(-1, c.n_used)
        moe = torch.zeros_like(flat)
        Wg, Wu, Wd = (self.w(p + f"ffn_{k}_exps.weight") for k in ("gate", "up", "down"))
        for e in range(c.n_expert):
            tok_idx, slot = torch.nonzero(fsel == e, as_tuple=True)
            if tok_idx.numel() == 0:
                continue
            x = flat[tok_idx]
            h = swiglu(self.mm(p + "ffn_gate_exps.weight", x, Wg[e]), self.mm(p + "ffn_up_exps.weight", x, Wu[e]))
            h = h * fw[tok_idx, slot][:, None]
            moe = moe.index_add(0, tok_idx, self.mm(p + "ffn_down_exps.weight", h, Wd[e]))
        shared = self.mm(p + "ffn_down_shexp.weight",
                         swiglu(self.mm(p + "ffn_gate_shexp.weight", v), self.mm(p + "ffn_up_shexp.weight", v)))
        return moe.reshape(v.shape) + shared

    # -- whole model (spec 3.0, 3.6) -------------------------------------------
    def forward(self, tokens, trace=None, steer=None, return_hidden=False):
        """tokens: LongTensor [B, T] -> logits [B, T, vocab]. trace: optional dict that
        collects per-layer values (resid_pre: the HC streams entering each layer;
        attn_out, ffn_out: the sublayer outputs). steer: optional function
        (site, layer, y) -> y at sites "embed" (the token embedding, which
        every HC stream of layer 0 starts from), "attn_out", "ffn_out" and
        "layer_out" (the HC streams a layer passes on, [B, T, n_hc, n_embd]:
        the engine's ResidPost)."""
        c = self.cfg
        e = self.w("token_embd.weight")[tokens]
        if steer is not None:
            e = steer("embed", 0, e)
        X = e[:, :, None, :].expand(-1, -1, c.n_hc, -1)
        for il in range(c.n_layer):
            p = f"blk.{il}."
            if trace is not None:
                trace.setdefault("resid_pre", {})[il] = X
            a_in, post, M = self.hc_pre(X, p + "hc_attn")
            y = self.attention(il, rms_norm(a_in, self.w(p + "attn_norm.weight"), c.eps), trace)
            if steer is not None:
                y = steer("attn_out", il, y)
            if trace is not None:
                trace.setdefault("attn_out", {})[il] = y
            X = self.hc_post(X, y, post, M)
            f_in, post, M = self.hc_pre(X, p + "hc_ffn")
            y = self.ffn(il, rms_norm(f_in, self.w(p + "ffn_norm.weight"), c.eps), tokens, trace)
            if steer is not None:
                y = steer("ffn_out", il, y)
            if trace is not None:
                trace.setdefault("ffn_out", {})[il] = y
            X = self.hc_post(X, y, post, M)
            if steer is not None:
                X = steer("layer_out", il, X)
        z = rms_norm(X.flatten(-2), None, c.hc_eps)
        pre = self.mm("output_hc_fn.weight", z)
        wts = torch.sigmoid(pre * self.w("output_hc_scale.weight")[0] + self.w("output_hc_base.weight")) + c.hc_eps
        h = torch.einsum("btn,btne->bte", wts, X)
        hn = rms_norm(h, self.w("output_norm.weight"), c.eps)
        if return_hidden:
            return hn
        return self.mm("output.weight", hn)
