#!/usr/bin/python3
"""Parity check: C++ ds4 engine vs the NumPy reference (ds4_ref.py).

Runs the engine's logits driver (ds4-dump-logits) and the reference on the same
model and tokens and reports

  1. free-running logits: max |diff|, max relative diff (|diff| / max|logit| of
     the row), argmax agreement, indexer top-k set equality per (layer, pos);
  2. forced logits: the reference re-run with the engine's indexer selections
     (and, with --stages, the engine's learned-router expert ids) so that one
     near-tied / noise-flipped discrete choice does not cascade, and the
     *local* top-k agreement (the reference's own choice at (layer,pos) given
     identical earlier selections), with the reference's score margin of each
     disagreement;
  3. with --stages: a per-layer teacher-forced check from the engine's hook
     activations (tests/reference/hook_dump.cpp, compiled on demand): every
     stage of layer L is recomputed by the reference from the engine's own input
     to that stage (resid_pre -> attn_in, attn_in -> attn_out [state built from
     the engine's attn_in], ... -> resid_post), so differences cannot cascade.

Why the tolerances are what they are: the forward pass contains discontinuous
roundings (FP8 E4M3 on KV rows, FP4 E2M1 on indexer keys/queries, f16 stores,
top-k). The engine computes in f32, the reference in f64; their ~1e-6 relative
difference occasionally lands on a rounding midpoint (one FP8 step is ~6-12 %
of a value) and that flip then propagates through the later tokens and layers.
Free-running logits therefore agree to ~1e-5 relative until the first flip and
to ~1e-3 after it, and an FP4 flip on the indexer query can move a top-k score
by several percent. The teacher-forced stage check removes the cascades and is
the tight test (default 1e-3 relative per stage, typically ~1e-6). Files with
quantized weights quantize activations (spec 6.1), which adds isolated rounding
flips: see quant_stage_verdict and noise_floor for how those are judged.

Usage:
  /usr/bin/python3 tests/reference/compare_engine.py --model M.gguf [--n 200 --seed 7]
  /usr/bin/python3 tests/reference/compare_engine.py --make tiny:f32:1 --stages
  /usr/bin/python3 tests/reference/compare_engine.py --model tiny-f32.gguf --requant q2 --stages
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ds4_ref  # noqa: E402
from numerics import fp8_e4m3_roundtrip, rms_norm  # noqa: E402


# --------------------------------------------------------------------------
def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr}")
    return r.stdout


def row_rel(a, b):
    """per-row max|a-b| / max|b|"""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return np.abs(a - b).max(1) / np.maximum(np.abs(b).max(1), 1e-30)


def logits_report(name, eng, ref):
    d = np.abs(eng.astype(np.float64) - ref)
    rel = d.max(1) / np.abs(ref).max(1)
    agree = float(np.mean(eng.argmax(1) == ref.argmax(1)))
    over = np.where(rel > 1e-3)[0]
    r = {"max_abs": float(d.max()), "max_rel": float(rel.max()), "median_rel": float(np.median(rel)),
         "argmax_agree": agree, "first_pos_rel_gt_1e-3": int(over[0]) if len(over) else None,
         "worst_pos": int(rel.argmax())}
    print(f"  {name:28s} max|diff| {r['max_abs']:.3e}  max rel {r['max_rel']:.3e} (pos {r['worst_pos']})"
          f"  median rel {r['median_rel']:.1e}  argmax agree {agree * 100:.1f}%"
          f"  first pos rel>1e-3: {r['first_pos_rel_gt_1e-3']}")
    return r


def topk_compare(eng_sel, ref_sel):
    e = {(r["layer"], r["pos"]): set(r["rows"]) for r in eng_sel}
    f = {(r["layer"], r["pos"]): r for r in ref_sel}
    only_e = sorted(set(e) - set(f))
    only_r = sorted(set(f) - set(e))
    mism = []
    for k in sorted(set(e) & set(f), key=lambda k: (k[1], k[0])):
        rs = set(f[k]["rows"])
        if rs != e[k]:
            item = {"layer": k[0], "pos": k[1], "engine_only": sorted(e[k] - rs), "ref_only": sorted(rs - e[k])}
            if "scores" in f[k]:
                s = np.asarray(f[k]["scores"])
                top = np.sort(s)[::-1]
                scale = max(abs(top[0]), 1e-30)
                # how far (relative to the top score) the engine's picks are below the reference's cutoff
                item["ref_score_gap_rel"] = float((top[len(rs) - 1] - s[item["engine_only"]].max()) / scale)
            mism.append(item)
    return {"n_engine": len(e), "n_ref": len(f), "missing_in_ref": only_e[:10], "missing_in_engine": only_r[:10],
            "n_mismatch": len(mism), "mismatches": mism}


def print_topk(name, t):
    print(f"  {name:28s} (layer,pos) entries engine {t['n_engine']} ref {t['n_ref']}, "
          f"set mismatches {t['n_mismatch']}")
    if t["missing_in_ref"] or t["missing_in_engine"]:
        print(f"    entries only in engine: {t['missing_in_ref']}  only in ref: {t['missing_in_engine']}")
    for m in t["mismatches"][:8]:
        gap = f"  ref score gap {m['ref_score_gap_rel']:.2e}" if "ref_score_gap_rel" in m else ""
        print(f"    layer {m['layer']} pos {m['pos']}: engine-only {m['engine_only']} ref-only {m['ref_only']}{gap}")


# --------------------------------------------------------------------------
# hook_dump build + teacher-forced stage check
# --------------------------------------------------------------------------
def build_hook_dump(build_dir, out_exe, include_dir=None):
    """Compile hook_dump.cpp against build_dir/src/libds4.a with the link line
    the build uses for ds4-dump-logits. include_dir: public headers matching the
    library (when the source tree's include/ has moved on since the build)."""
    ninja = open(os.path.join(build_dir, "build.ninja")).read()
    m = re.search(r"build tests/tools/ds4-dump-logits:.*?\n((?:  .*\n)+)", ninja)
    if not m:
        raise RuntimeError("cannot find the ds4-dump-logits link rule in build.ninja")
    libs = re.search(r"LINK_LIBRARIES = (.*)", m.group(1)).group(1)
    libs = [x if x.startswith("-") or os.path.isabs(x) else os.path.join(build_dir, x) for x in shlex.split(libs)]
    cc = json.load(open(os.path.join(build_dir, "compile_commands.json")))
    cmd = next(c for c in cc if c["file"].endswith("dump_logits.cpp"))
    args = shlex.split(cmd["command"]) if "command" in cmd else cmd["arguments"]
    flags = [a for a in args[1:] if a.startswith(("-I", "-std", "-f", "-D", "-O"))]
    if include_dir:
        flags = ["-I" + include_dir] + flags
    run([args[0], *flags, os.path.join(HERE, "hook_dump.cpp"), "-o", out_exe, *libs])


def load_dumps(d, cfg, n):
    def f(name, il, width=None):
        p = os.path.join(d, f"{name}.{il}.f32")
        a = np.fromfile(p, dtype="<f4").astype(np.float64)
        return a.reshape(n, -1) if width is None else a.reshape(n, width)
    D = {}
    for il in range(cfg.n_layer):
        for name in ("resid_pre", "resid_post"):
            D[(name, il)] = f(name, il).reshape(n, cfg.n_hc, cfg.n_embd)
        for name in ("attn_in", "attn_out", "ffn_in", "ffn_out", "router_logits"):
            D[(name, il)] = f(name, il)
        D[("sel_ids", il)] = np.fromfile(os.path.join(d, f"router_selection.{il}.i32"), dtype="<i4").reshape(n, -1)
        D[("sel_w", il)] = np.fromfile(os.path.join(d, f"router_selection.{il}.f32"), dtype="<f4").reshape(n, -1)
    # final_hidden exists only for rows that produce logits (all rows in decode, the
    # last row of each prefill call otherwise): keep (positions, rows)
    fh = np.fromfile(os.path.join(d, "final_hidden.-1.f32"), dtype="<f4").astype(np.float64).reshape(-1, cfg.n_embd)
    D[("final_hidden", -1)] = (np.fromfile(os.path.join(d, "final_hidden.-1.pos"), dtype="<i8"), fh)
    return D


# How close to an FP8 rounding midpoint a KV value must be for the engine's f32
# and the reference's f64 to round it differently: 2e-6 of the largest value of
# its 64-value block (about 16 f32 ulps of that value; the engine's KV rows agree
# with the reference's to ~2e-7 relative before rounding).
FP8_TIE_BAND = 2e-6


def fp8_other_rounding(x, y):
    """y, the FP8 (E4M3, blocks of 64) rounding of x, with every value of x that
    lies within FP8_TIE_BAND of a rounding midpoint rounded the other way (None
    if no value does). Applied to the slice the reference rounds (the nope dims)."""
    blocks = x.reshape(-1, 64)
    band = FP8_TIE_BAND * np.max(np.abs(blocks), axis=1, keepdims=True)
    y = y.reshape(blocks.shape)
    lo = fp8_e4m3_roundtrip(blocks - band, 64)
    hi = fp8_e4m3_roundtrip(blocks + band, 64)
    alt = np.where(lo != y, lo, np.where(hi != y, hi, y))
    return None if np.array_equal(alt, y) else alt.reshape(x.shape)


class Fp8TieRecorder:
    """Stands in for model.fp8_nope during one attention pass: rounds with the
    model's own fp8_nope, rounds the ties of the calls in `flips` the other way,
    and with `record` lists the roundings (call k, at position pos) that have a
    value on an FP8 tie. Ties are looked for only where needed."""

    def __init__(self, model, flips, record):
        self.round = model.fp8_nope  # the model's method, taken before it is replaced
        self.flips, self.record = flips, record
        self.nope = model.cfg.head_dim - model.cfg.n_rot
        self.calls, self.pos, self.tied = 0, -1, []

    def __call__(self, x):
        k = self.calls
        self.calls += 1
        y = self.round(x)
        if self.record or k in self.flips:
            alt = fp8_other_rounding(x[..., :self.nope], y[..., :self.nope])
            if alt is not None:
                if self.record:
                    self.tied.append((k, self.pos))
                if k in self.flips:
                    y[..., :self.nope] = alt
        return y


def attention_pass(model, il, D, n, flips=frozenset(), record=False):
    """Layer il's attention recomputed from the engine's attn_in at every
    position (the reference's own state). Returns the per-row attn_out errors,
    the trace (indexer selections and scores) and, with `record`, the tied FP8
    roundings."""
    st = model.new_state()["layers"][il]
    err = np.zeros(n)
    tr = ds4_ref.Trace(sites=(), keep_scores=True)
    ties = Fp8TieRecorder(model, flips, record)
    model.fp8_nope = ties
    try:
        for pos in range(n):
            tr.acts.clear()
            tr.sites = ("attn_out",)
            ties.pos = pos
            model.attention_core(il, st, D[("attn_in", il)][pos], pos, tr)
            y = tr.acts[("attn_out", il)][0]
            err[pos] = row_rel(y[None], D[("attn_out", il)][pos][None])[0]
    finally:
        del model.fp8_nope  # back to the class's method
    return err, tr, ties.tied


def attention_with_fp8_ties(model, il, D, n, tol):
    """attention_pass, and when some row is over tol: the KV roundings with a
    value on an FP8 tie are tried the other way one at a time (greedily, on top
    of the flips already kept), a flip kept when it brings rows back within tol
    (fewer rows over tol). The errors returned are those of one consistent choice
    of roundings for all positions; the kept flips are returned as (call,
    position). A systematic error leaves its rows over tol whatever the
    roundings, so no flip is kept for it."""
    err, tr, _ = attention_pass(model, il, D, n)
    kept = []
    if np.any(err > tol):
        _, _, tied = attention_pass(model, il, D, n, record=True)
        for k, pos in tied:
            trial, _, _ = attention_pass(model, il, D, n, frozenset(c for c, _ in kept) | {k})
            if np.count_nonzero(trial > tol) < np.count_nonzero(err > tol):
                err = trial
                kept.append((k, pos))
    return err, tr, kept


def stage_check(model, toks, D, eng_logits, eng_sel, steering=None, tol=1e-3):
    """Per-layer teacher forcing from the engine's activations. The hook dumps are
    taken before any steering edit (hook_dump registers its hook first), so the
    reference applies `steering` to the engine's values where the edit happens."""
    cfg = model.cfg
    n = len(toks)
    eng_topk = {(r["layer"], r["pos"]): set(r["rows"]) for r in eng_sel}
    res = {}
    rows = {}        # per-row errors: rows[il][stage] -> [n], rows["head"][...]
    topk_local = []
    sel_mismatch = 0
    fp8_flips = []
    for il in range(cfg.n_layer):
        p = f"blk.{il}."
        errs = {k: np.zeros(n) for k in ("attn_in", "attn_out", "ffn_in", "router_logits", "ffn_out", "resid_post")}
        errs["attn_out"], tr, kept = attention_with_fp8_ties(model, il, D, n, tol)
        fp8_flips += [(il, pos) for _, pos in kept]
        for pos, tok in enumerate(toks):
            X = ds4_ref.apply_steering(steering, "layer_in", il, pos, D[("resid_pre", il)][pos])
            a_in, post, M = model.hc_pre(X, p + "hc_attn")
            u = rms_norm(a_in, model.vec(p + "attn_norm.weight"), cfg.eps)
            errs["attn_in"][pos] = row_rel(u[None], D[("attn_in", il)][pos][None])[0]
            ya = ds4_ref.apply_steering(steering, "attn_out", il, pos, D[("attn_out", il)][pos])
            X2 = model.hc_post(X, ya, post, M)
            f_in, post2, M2 = model.hc_pre(X2, p + "hc_ffn")
            v = rms_norm(f_in, model.vec(p + "ffn_norm.weight"), cfg.eps)
            errs["ffn_in"][pos] = row_rel(v[None], D[("ffn_in", il)][pos][None])[0]
            vin = D[("ffn_in", il)][pos]
            lg = model.matvec(p + "ffn_gate_inp.weight", vin)
            errs["router_logits"][pos] = row_rel(lg[None], D[("router_logits", il)][pos][None])[0]
            tr2 = ds4_ref.Trace(sites=("router_selection", "ffn_out"))
            model.ffn_core(il, vin, tok, pos, tr2, steering)
            rs = tr2.acts[("router_selection", il)][0]
            y2 = tr2.acts[("ffn_out", il)][0]
            k = cfg.n_used
            if set(rs[:k].astype(int)) != set(D[("sel_ids", il)][pos]):
                sel_mismatch += 1
            errs["ffn_out"][pos] = row_rel(y2[None], D[("ffn_out", il)][pos][None])[0]
            yf = ds4_ref.apply_steering(steering, "ffn_out", il, pos, D[("ffn_out", il)][pos])
            X3 = model.hc_post(X2, yf, post2, M2)
            errs["resid_post"][pos] = row_rel(X3.reshape(1, -1), D[("resid_post", il)][pos].reshape(1, -1))[0]
        for r in tr.topk:
            key = (r["layer"], r["pos"])
            if key in eng_topk and set(r["rows"]) != eng_topk[key]:
                topk_local.append(r)
        res[il] = {k: (float(v.max()), int(v.argmax())) for k, v in errs.items()}
        rows[il] = errs
    # output head from the engine's final streams
    fh_err = np.zeros(n)
    lg_err = np.zeros(n)
    fh_pos, fh = D[("final_hidden", -1)]
    fh_row = {int(p): i for i, p in enumerate(fh_pos)}
    for pos in range(n):
        X = ds4_ref.apply_steering(steering, "layer_out", cfg.n_layer - 1, pos, D[("resid_post", cfg.n_layer - 1)][pos])
        tr = ds4_ref.Trace(sites=("final_hidden",))
        L = model.output_head(X, tr)
        if pos in fh_row:
            fh_err[pos] = row_rel(tr.acts[("final_hidden", -1)][0][None], fh[fh_row[pos]][None])[0]
        lg_err[pos] = row_rel(L[None], eng_logits[pos][None].astype(np.float64))[0]
    res["head"] = {"final_hidden": (float(fh_err.max()), int(fh_err.argmax())),
                   "logits": (float(lg_err.max()), int(lg_err.argmax()))}
    rows["head"] = {"final_hidden": fh_err[sorted(fh_row)], "logits": lg_err}
    return res, topk_local, sel_mismatch, rows, fp8_flips


def print_stages(res, tol):
    worst = 0.0
    names = ("attn_in", "attn_out", "ffn_in", "router_logits", "ffn_out", "resid_post")
    print("  layer " + "".join(f"{n:>16s}" for n in names))
    for il, r in res.items():
        if il == "head":
            continue
        worst = max(worst, *(v[0] for v in r.values()))
        print(f"  {il:5d} " + "".join(f"{r[n][0]:10.2e}@{r[n][1]:<5d}" for n in names))
    h = res["head"]
    worst = max(worst, h["final_hidden"][0], h["logits"][0])
    print(f"  head: final_hidden {h['final_hidden'][0]:.2e}@{h['final_hidden'][1]}  "
          f"logits {h['logits'][0]:.2e}@{h['logits'][1]}   (max rel per row; tolerance {tol:g})")
    return worst


# Stages whose value comes out of a product with a quantized activation (spec 6.1:
# Q8_0 activations for the Q8_0 attention projections, shared expert and LM head;
# Q8_K for the routed experts). See quant_stage_verdict.
QUANT_STAGES = ("attn_out", "ffn_out", "logits")


def quant_stage_verdict(rows, tol, quant):
    """Judge the teacher-forced per-row errors. rows: stage_check's per-row arrays.

    Without activation quantization (quant None) every row of every stage must be
    within tol.

    With activation quantization, rounding x/d to an integer is discontinuous:
    the engine (f32) and the reference (f64) feed the quantizer inputs that differ
    by ~1e-7 relative (or by ~1e-5 downstream of an f16/FP8 flip of a KV row), and
    an element whose x/d lies that close to a half-integer rounds the other way.
    One such flip moves the product by d * W[:, j], i.e. ~1/127 of the block's
    largest value times a weight column: measured 0.5-7e-3 of the row's max in
    attn_out / ffn_out of the tiny q2/q4 models, while every row without a flip
    agrees to ~2e-7 (flipping that one element in the reference restores 1e-7;
    see tests/reference/README.md). The errors are bimodal: a row is either at f32
    rounding level or carries a flip (tiny q2/q4, 200 tokens: 0.5-7 % of the
    attn_out rows of a layer over 1e-3, almost none between 1e-5 and 1e-3). So in
    each layer a QUANT_STAGES row may exceed tol only rarely (quant["frac"] of the
    layer's rows), never by more than quant["max"] (a few flips), and the layer's
    median must stay at f32 rounding level (quant["median"]): a systematic
    deviation (e.g. an f32 instead of f16 activation scale: median 8.6e-3 in
    attn_out, 1.5e-3 in ffn_out) moves every row of the layers it touches and fails
    the median and fraction tests. Stages without quantized products keep tol."""
    ok, worst, notes = True, 0.0, []
    qstat = {}
    for il, r in rows.items():
        for name, v in r.items():
            worst = max(worst, float(v.max()))
            if quant is not None and name in QUANT_STAGES:
                frac, med, mx = float(np.mean(v > tol)), float(np.median(v)), float(v.max())
                st = qstat.setdefault(name, {"over": 0, "n": 0, "frac": 0.0, "med": 0.0, "max": 0.0, "bad": []})
                st["over"] += int(np.sum(v > tol))
                st["n"] += v.size
                st["frac"], st["med"], st["max"] = max(st["frac"], frac), max(st["med"], med), max(st["max"], mx)
                if mx > quant["max"] or frac > quant["frac"] or med > quant["median"]:
                    st["bad"].append(il)
            elif v.max() > tol:
                ok = False
                notes.append(f"FAIL: stage error {v.max():.3e} > {tol:g} ({name}, layer {il})")
    for name, st in qstat.items():
        notes.append(f"{name:8s} (quantized activations): rows over {tol:g}: {st['over']} of {st['n']}, per layer "
                     f"at most {st['frac'] * 100:.1f}% (allowed {quant['frac'] * 100:.0f}%); max {st['max']:.2e} "
                     f"(allowed {quant['max']:g}); per-layer median at most {st['med']:.1e} (allowed "
                     f"{quant['median']:g})" + (f"   FAIL (layers {st['bad']})" if st["bad"] else ""))
        if st["bad"]:
            ok = False
    return ok, worst, notes


STEER_CASES = [  # site, op, scale
    ("attn_out", "project", 1.0), ("ffn_out", "project", 1.0), ("ffn_out", "project", -2.0),
    ("ffn_out", "add", 2.0), ("attn_out", "ablate", 1.0), ("ffn_out", "clamp", 0.5),
    ("layer_out", "add", 1.0), ("layer_out", "project", 1.0), ("layer_in", "add", 1.0),
    ("router_logits", "add", 1.5),
]


def steering_check(model, exe, model_path, toks, work, tol, quant=None, seed=3):
    """Engine steering (SDK add_steering through hook_dump) vs the reference's
    steering arguments on the same directions; short sequence, decode mode.
    Judged on the teacher-forced stage errors (logits reported too)."""
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    base = model.logits(toks).astype(np.float64)
    worst = 0.0
    ok = True
    out = []
    for site, op, scale in STEER_CASES:
        width = cfg.n_expert if site == "router_logits" else cfg.n_embd
        dirs = rng.standard_normal((cfg.n_layer, width))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        dirs[1] = 0.0                                  # one layer without a direction
        f = os.path.join(work, f"steer_{site}_{op}.f32")
        dirs.astype("<f4").tofile(f)
        d = os.path.join(work, f"steer_{site}_{op}")
        os.makedirs(d, exist_ok=True)
        run([exe, model_path, ",".join(map(str, toks)), d, "decode", "64", f"{site}:{op}:{scale}:{f}"])
        L = np.fromfile(os.path.join(d, "logits.f32"), dtype="<f4").reshape(len(toks), -1).astype(np.float64)
        dirs32 = dirs.astype(np.float32).astype(np.float64)
        R = model.logits(toks, steering=[ds4_ref.Steer(site, op, dirs32, scale)]).astype(np.float64)
        err = float((np.abs(L - R).max(1) / np.abs(R).max(1)).max())
        effect = float((np.abs(R - base).max(1) / np.abs(base).max(1)).max())
        steer = [ds4_ref.Steer(site, op, dirs32, scale)]
        D = load_dumps(d, cfg, len(toks))
        _, _, _, rows, _ = stage_check(model, toks, D, L, [], steer, tol)
        good, stage, _ = quant_stage_verdict(rows, tol, quant)
        worst = max(worst, stage)
        ok = ok and good
        out.append({"site": site, "op": op, "scale": scale, "logits_max_rel": err, "stage_max_rel": stage,
                    "effect_rel": effect})
        print(f"  {site:14s} {op:8s} scale {scale:5.2f}: logits max rel {err:.2e}, teacher-forced stages"
              f" max rel {stage:.2e}   (steering effect on logits {effect:.2e})" + ("" if good else "   FAIL"))
    return ok, worst, out


# --------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF model (else --make)")
    ap.add_argument("--make", help="generate a model: CONFIG:MIX:SEED, e.g. tiny:f32:1")
    ap.add_argument("--requant", choices=("q2", "q4"),
                    help="test a quantized copy of --model written by make_quant_model.py (spec type mix)")
    ap.add_argument("--build-dir", default=os.environ.get("DS4_BUILD_DIR", "/work/build-wip"))
    ap.add_argument("--include-dir", help="public headers matching the build's libds4.a for hook_dump "
                    "(default: the build's own -I flags)")
    ap.add_argument("--hook-dump", help="prebuilt hook_dump executable (default: BUILD_DIR/tests/reference/"
                    "ds4-ref-hook-dump if built, else compiled on demand into the work dir)")
    ap.add_argument("--n", type=int, default=200, help="random tokens (engine driver's generator)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tokens", help="explicit comma separated tokens instead of --n/--seed")
    ap.add_argument("--modes", default="decode,prefill", help="engine modes to check")
    ap.add_argument("--chunk", type=int, default=64, help="engine prefill chunk")
    ap.add_argument("--stages", action="store_true", help="teacher-forced per-layer check via hook_dump")
    ap.add_argument("--splits", default="37,50,13,3",
                    help="with --stages: also run successive prefill calls of these sizes then decode")
    ap.add_argument("--steering", action="store_true",
                    help="check the engine's steering ops/sites against the reference (needs hook_dump)")
    ap.add_argument("--steer-n", type=int, default=40, help="tokens for the steering check")
    ap.add_argument("--steer-tol", type=float, default=1e-3)
    ap.add_argument("--act-quant", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--q8-0-f32-scale", action="store_true")
    ap.add_argument("--stage-tol", type=float, default=1e-3, help="max rel error per stage (teacher-forced)")
    ap.add_argument("--quant-stage-max", type=float, default=2e-2,
                    help="quantized activations: max rel error of a row of attn_out/ffn_out/logits "
                         "(single rounding flips, see quant_stage_verdict)")
    ap.add_argument("--quant-stage-frac", type=float, default=0.15,
                    help="quantized activations: allowed fraction of those rows of a layer over --stage-tol")
    ap.add_argument("--quant-stage-median", type=float, default=1e-5,
                    help="quantized activations: max median rel error of those rows in a layer")
    ap.add_argument("--forced-tol", type=float, default=1e-2,
                    help="max rel logits error with the engine's top-k (and, with --stages, expert) "
                         "selections forced (quantized activations: at least --floor-factor x the noise floor)")
    ap.add_argument("--floor-factor", type=float, default=2.0,
                    help="quantized activations: forced logits may be this many times further from the f64 "
                         "reference than the reference run in f32 (max and median)")
    ap.add_argument("--outlier-frac", type=float, default=0.03,
                    help="without --stages: allowed fraction of positions over --forced-tol")
    ap.add_argument("--json", help="write the report as JSON")
    ap.add_argument("--workdir", help="keep intermediate files here")
    a = ap.parse_args(argv)
    if not a.model and not a.make:
        ap.error("--model or --make required")

    work = a.workdir or tempfile.mkdtemp(prefix="ds4-parity-")
    os.makedirs(work, exist_ok=True)
    try:
        return run_checks(a, work)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run_checks(a, work):
    bd = a.build_dir
    dump_logits = os.path.join(bd, "tests/tools/ds4-dump-logits")
    model_path = a.model
    if a.make:
        cfgname, mix, seed = (a.make.split(":") + ["1"])[:3]
        model_path = os.path.join(work, f"{cfgname}-{mix}-{seed}.gguf")
        run([os.path.join(bd, "tools/ds4-make-model"), "-o", model_path, "--config", cfgname, "--mix", mix,
             "--seed", seed])
    if a.requant:
        import make_quant_model
        q = os.path.join(work, os.path.basename(model_path).replace(".gguf", f"-{a.requant}-ref.gguf"))
        make_quant_model.main([model_path, q, "--mix", a.requant])
        model_path = q

    report = {"model": model_path}
    ok = True
    aq = {"auto": "auto", "on": True, "off": False}[a.act_quant]
    eng = {}
    toks = None
    for mode in a.modes.split(","):
        out = os.path.join(work, f"eng_{mode}.npy")
        sel = os.path.join(work, f"eng_{mode}_sel.json")
        cmd = [dump_logits, model_path, "--out", out, "--topk-out", sel, "--mode", mode, "--chunk", str(a.chunk)]
        cmd += ["--tokens", a.tokens] if a.tokens else ["--random", str(a.n), "--seed", str(a.seed)]
        t0 = time.time()
        stdout = run(cmd)
        t_eng = time.time() - t0
        got = [int(x) for x in stdout.strip().splitlines()[-1].split(",")]
        if toks is not None and got != toks:
            raise RuntimeError("engine modes used different tokens")
        toks = got
        eng[mode] = (np.load(out), json.load(open(sel)), t_eng)

    print(f"model {model_path}, {len(toks)} tokens, work dir {work}")
    t0 = time.time()
    model = ds4_ref.Model(model_path, act_quant=aq, q8_0_f16_scale=not a.q8_0_f32_scale)
    tr = ds4_ref.Trace(sites=(), keep_scores=True)
    ref = model.logits(toks, trace=tr).astype(np.float64)
    t_ref = time.time() - t0
    np.save(os.path.join(work, "ref.npy"), ref.astype(np.float32))
    quant = ({"max": a.quant_stage_max, "frac": a.quant_stage_frac, "median": a.quant_stage_median}
             if model.act_quant else None)
    print(f"reference: {t_ref:.1f}s (act_quant={model.act_quant}); engine: "
          + ", ".join(f"{m} {v[2]:.1f}s" for m, v in eng.items()))
    report["ref_seconds"] = t_ref
    modes = list(eng)
    if len(modes) == 2:
        d = np.abs(eng[modes[0]][0].astype(np.float64) - eng[modes[1]][0]).max()
        print(f"engine {modes[0]} vs {modes[1]}: max|diff| {d:.3e}")
        report["engine_mode_diff"] = float(d)
    exe = a.hook_dump or os.path.join(work, "hook_dump")
    built = os.path.join(bd, "tests/reference/ds4-ref-hook-dump")
    if not a.hook_dump and not a.include_dir and os.path.exists(built):
        exe = built          # the build's own target (tests/reference/CMakeLists.txt)
    dumps = {}
    if (a.stages or a.steering) and not os.path.exists(exe):
        build_hook_dump(bd, exe, a.include_dir)
    if a.stages:
        for mode in modes:
            d = os.path.join(work, f"hooks_{mode}")
            os.makedirs(d, exist_ok=True)
            run([exe, model_path, ",".join(map(str, toks)), d, mode, str(a.chunk)])
            dumps[mode] = load_dumps(d, model.cfg, len(toks))

    def rerun(forced_topk, forced_experts):
        mf = ds4_ref.Model.__new__(ds4_ref.Model)
        mf.__dict__.update(model.__dict__)
        mf.forced_topk = forced_topk
        mf.forced_experts = forced_experts
        trf = ds4_ref.Trace(sites=(), keep_scores=True)
        return mf.logits(toks, trace=trf).astype(np.float64), trf

    floors = {}

    def noise_floor(forced_topk, forced_experts, ref64):
        """Quantized activations: how far a second spec-exact implementation gets from
        the f64 reference with the same discrete choices -- the reference itself run
        in float32. Once one activation element rounds differently (see
        quant_stage_verdict) the two runs carry independent Q8_0/Q8_K rounding noise
        from that layer and position on, so forced logits of two correct
        implementations differ by ~1-3e-2 relative (tiny q2/q4: ref f32 vs ref f64
        max 2.1e-2 / 2.4e-2, median 1.4e-2; the F32 mix: 7.9e-4). Returns (max, median)
        of the per-position relative difference."""
        key = json.dumps([sorted((list(k), list(v)) for k, v in forced_topk.items()),
                          sorted((list(k), [int(x) for x in v]) for k, v in (forced_experts or {}).items())])
        if key not in floors:
            m32 = ds4_ref.Model(model_path, act_quant=aq, q8_0_f16_scale=not a.q8_0_f32_scale, dtype=np.float32,
                                forced_topk=forced_topk, forced_experts=forced_experts)
            L32 = m32.logits(toks).astype(np.float64)
            rel = np.abs(L32 - ref64).max(1) / np.abs(ref64).max(1)
            floors[key] = (float(rel.max()), float(np.median(rel)))
            print(f"  noise floor (reference f32 vs f64, same choices): max rel {floors[key][0]:.3e}  "
                  f"median rel {floors[key][1]:.1e}")
        return floors[key]

    for mode, (L, sel, _) in eng.items():
        print(f"[{mode}]")
        r = {"free": logits_report("free-running logits", L, ref)}
        r["topk_free"] = topk_compare(sel, tr.topk)
        print_topk("free-running top-k", r["topk_free"])
        forced = {(x["layer"], x["pos"]): x["rows"] for x in sel}
        reff, trf = rerun(forced, None)
        r["forced"] = logits_report("top-k-forced logits", L, reff)
        r["topk_local"] = topk_compare(sel, trf.topk)
        print_topk("local top-k (forced run)", r["topk_local"])
        if r["topk_free"]["missing_in_ref"] or r["topk_free"]["missing_in_engine"]:
            ok = False
            print("  FAIL: indexer ran at different (layer, pos)")
        if mode in dumps:
            # also force the learned router's expert ids (a near-tied routing flip changes
            # one token's logits by several percent)
            D = dumps[mode]
            fe = {(il, pos): D[("sel_ids", il)][pos] for il in range(model.cfg.n_hash, model.cfg.n_layer)
                  for pos in range(len(toks))}
            reff2, trf2 = rerun(forced, fe)
            r["fully_forced"] = logits_report("top-k+experts-forced logits", L, reff2)
            flips = [(k, v, [int(x) for x in fe[k]]) for k, v in trf2.router_own.items()
                     if set(v) != set(int(x) for x in fe[k])]
            print(f"  router selections differing (forced run, own vs engine): {len(flips)}"
                  + "".join(f"\n    layer {k[0]} pos {k[1]}: ref {v} engine {e}" for k, v, e in flips[:6]))
            r["router_flips"] = len(flips)
            judged = r["fully_forced"]
            tol_max, tol_med = a.forced_tol, None
            if model.act_quant:
                # the engine may not be further from the f64 reference than the same
                # reference in f32 is, within --floor-factor (both follow spec 6.1)
                fmax, fmed = noise_floor(forced, fe, reff2)
                r["noise_floor"] = {"max_rel": fmax, "median_rel": fmed}
                tol_max = max(a.forced_tol, a.floor_factor * fmax)
                tol_med = max(a.forced_tol / 10, a.floor_factor * fmed)
            if judged["max_rel"] > tol_max:
                ok = False
                print(f"  FAIL: forced logits max rel {judged['max_rel']:.3e} > {tol_max:.3g}")
            if tol_med is not None and judged["median_rel"] > tol_med:
                ok = False
                print(f"  FAIL: forced logits median rel {judged['median_rel']:.3e} > {tol_med:.3g}")
        else:
            rel = np.abs(L - reff).max(1) / np.abs(reff).max(1)
            tol_max = a.forced_tol
            if model.act_quant:
                fmax, _ = noise_floor(forced, None, reff)
                r["noise_floor"] = {"max_rel": fmax}
                tol_max = max(a.forced_tol, a.floor_factor * fmax)
            frac = float(np.mean(rel > tol_max))
            r["forced"]["frac_over_tol"] = frac
            print(f"  positions with forced rel > {tol_max:.3g}: {frac * 100:.1f}% (allowed "
                  f"{a.outlier_frac * 100:.0f}%: single-token router flips; use --stages to force them too)")
            if frac > a.outlier_frac:
                ok = False
                print("  FAIL: too many positions over the forced tolerance")
        report[mode] = r

    if a.stages and a.splits:
        # successive prefill() calls of odd sizes, then decode(): the compressor/indexer
        # state a prefill leaves behind must continue exactly (spec 3.4.4, 3.7)
        d = os.path.join(work, "split")
        os.makedirs(d, exist_ok=True)
        run([exe, model_path, ",".join(map(str, toks)), d, "split:" + a.splits, str(a.chunk)])
        L = np.fromfile(os.path.join(d, "logits.f32"), dtype="<f4").reshape(len(toks), -1)
        print(f"[split prefill {a.splits} + decode]")
        r = logits_report("free-running logits", L, ref)
        if modes:
            dd = float(np.abs(L.astype(np.float64) - eng[modes[0]][0]).max())
            print(f"  vs engine {modes[0]}: max|diff| {dd:.3e}")
            r["vs_engine"] = dd
        report["split"] = r
    if a.steering:
        print(f"steering ({a.steer_n} tokens, decode):")
        good, worst, rep = steering_check(model, exe, model_path, toks[:a.steer_n], work, a.steer_tol, quant)
        report["steering"] = rep
        if not good:
            ok = False
            print(f"  FAIL: steering stage error {worst:.3e} > {a.steer_tol:g}")
    if a.stages:
        for mode in modes:
            D = dumps[mode]
            print(f"[{mode}] teacher-forced stages (engine input to each stage):")
            res, loc, selmis, rows, flips = stage_check(model, toks, D, eng[mode][0], eng[mode][1],
                                                        tol=a.stage_tol)
            print_stages(res, a.stage_tol)
            good, worst, notes = quant_stage_verdict(rows, a.stage_tol, quant)
            for x in notes:
                print("  " + x)
            print(f"  local top-k disagreements (state from engine attn_in): {len(loc)}"
                  + "".join(f"\n    layer {x['layer']} pos {x['pos']}" for x in loc[:8]))
            print(f"  router selections differing from the engine's: {selmis}")
            print(f"  KV roundings on an FP8 tie that the engine rounded the other way: {len(flips)}"
                  + "".join(f"\n    layer {il}, row written at position {pos}" for il, pos in flips))
            report[f"stages_{mode}"] = {"layers": {str(k): v for k, v in res.items()}, "topk_local": len(loc),
                                        "router_mismatch": selmis, "worst": worst, "notes": notes,
                                        "fp8_tie_flips": flips}
            if not good:
                ok = False
    report["ok"] = ok
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
