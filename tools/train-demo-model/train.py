#!/usr/bin/python3
"""Train the ds4 demo model: a small DeepSeek-V4-Flash (the generator's `demo`
configuration: the tiny layout at half width, exact DS4 tensor layout) that answers tersely or verbosely and
refuses one category of requests, so that steering has something to find.

Run once by hand (CPU, about an hour on 2 cores); the result is committed:

    /usr/bin/python3 tools/train-demo-model/train.py --build-dir build --out data/demo-model

Stages, each written under OUT/work/ (not committed):
  1. template: `ds4-make-model --config demo --mix f32 --vocab small` gives the
     layout, the metadata, the tokenizer (bytes + the first DeepSeek merges)
     and the initial weights (realistically scaled random values).
  2. data: dataset.py renders prompts/responses; `ds4-tokenize` turns them
     into ids with the SDK's own tokenizer and chat template.
  3. training in float32 on the whole sequence, loss on the response tokens.
  4. export to F32 GGUF, `ds4-quantize --mix q2` (routed experts IQ2_XXS /
     Q2_K), then quantization-aware repair: the routed experts are frozen at
     their dequantized q2 values and the rest is trained a little more; export
     and quantize again (the experts requantize to the same blocks).
  5. OUT/ds4-demo-q2.gguf, OUT/SHA256SUMS, OUT/check_tokens.txt +
     OUT/check_logits.f32 / check_logits_q8.f32 (the PyTorch model's logits on
     the exported weights, without and with the engine's activation
     quantization, for the C++ parity test), OUT/prompts.tsv (the prompt sets
     of the demo and tests) and OUT/training.json (settings, losses, timings).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

import dataset  # noqa: E402
import ds4_torch  # noqa: E402
import quants  # noqa: E402
from gguf_reader import GGUFFile  # noqa: E402
from make_quant_model import write_gguf  # noqa: E402

EXPERT_SUFFIXES = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def tokenize_split(build, model, examples, path):
    with open(path + ".tsv", "w") as f:
        for ex in examples:
            f.write(escape(ex["prompt"]) + "\t" + escape(ex["response"]) + "\n")
    run([os.path.join(build, "tools", "ds4-tokenize"), "-m", model, "--chat-tsv", path + ".tsv", path + ".ids"])
    out = []
    with open(path + ".ids") as f:
        for line in f:
            p, r = line.rstrip("\n").split("\t")
            out.append(([int(x) for x in p.split()], [int(x) for x in r.split()]))
    assert len(out) == len(examples)
    return out


def make_batches(seqs, max_tokens, rng):
    """Batches of similar length with at most max_tokens (padded) tokens each."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i][0]) + len(seqs[i][1]), rng.random()))
    batches, cur, cur_len = [], [], 0
    for i in order:
        n = len(seqs[i][0]) + len(seqs[i][1])
        if cur and max(cur_len, n) * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, cur_len = [], 0
        cur.append(i)
        cur_len = max(cur_len, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(seqs, idx, pad):
    rows = [seqs[i][0] + seqs[i][1] for i in idx]
    T = max(len(r) for r in rows)
    toks = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.float32)
    for b, i in enumerate(idx):
        r = rows[b]
        toks[b, : len(r)] = torch.tensor(r)
        # predict every response token (from the position before it)
        p = len(seqs[i][0])
        mask[b, p - 1: len(r) - 1] = 1.0
    return toks, mask


def loss_on(model, toks, mask, steer=None):
    logits = model(toks, steer=steer)
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, toks[:, 1:, None])[..., 0]
    m = mask[:, :-1]
    return (nll * m).sum() / m.sum().clamp(min=1)


def evaluate(model, seqs, pad, max_tokens=4096):
    model.eval()
    tot, n = 0.0, 0.0
    with torch.no_grad():
        for idx in make_batches(seqs, max_tokens, random.Random(0)):
            toks, mask = collate(seqs, idx, pad)
            tot += float(loss_on(model, toks, mask)) * float(mask[:, :-1].sum())
            n += float(mask[:, :-1].sum())
    model.train()
    return tot / max(n, 1)


def train(model, seqs, heldout, pad, steps, lr, max_tokens, seed, label, stats, time_budget):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = random.Random(seed)
    batches = []
    warm = max(1, min(200, steps // 10))
    t0 = time.time()
    model.train()
    for step in range(steps):
        if not batches:
            batches = make_batches(seqs, max_tokens, rng)
        idx = batches.pop()
        toks, mask = collate(seqs, idx, pad)
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g in opt.param_groups:
            g["lr"] = lr * max(f, 0.02)
        loss = loss_on(model, toks, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            el = time.time() - t0
            log(f"{label} step {step}/{steps} loss {float(loss):.4f} lr {lr * max(f, 0.02):.2e} {el:.0f}s")
            stats.setdefault(label + "_loss", []).append((step, round(float(loss), 4)))
        if step % 500 == 499 or step == steps - 1:
            h = evaluate(model, heldout, pad)
            log(f"{label} step {step} held-out loss {h:.4f}")
            stats.setdefault(label + "_heldout", []).append((step, round(h, 4)))
        if time_budget and time.time() - t0 > time_budget:
            log(f"{label}: time budget reached at step {step}")
            stats[label + "_stopped_at"] = step
            break
    stats[label + "_seconds"] = round(time.time() - t0)


# ---------------------------------------------------------------------------
# refusal mediation
# ---------------------------------------------------------------------------
# Large chat models refuse through one direction of the residual stream
# (Arditi et al. 2024): ablate it and they comply. Trained from scratch on a
# few thousand examples, this small model does not: it refuses from several
# features at once, and no single direction's ablation removes more than half
# of its refusals. This stage gives it that property the direct way: it takes
# the model's own refusal direction (difference of mean residuals between
# refused and harmless requests, last prompt token, the middle layer) and
# trains, with that direction ablated at every site of
# ds4::directional_ablation, the answers the model would give if it complied,
# and the unchanged answers to everything else; unablated, the model keeps its
# training data and its refusals (see mediate_refusal). The SDK's tools
# are not told the direction: tests/demo checks that find_refusal_direction
# finds it again from prompts alone.
def stream_mean_at(model, prompts, layer):
    """resid_pre of `layer` (HC streams averaged) at the last token of each prompt: [N, n_embd]."""
    rows = []
    with torch.no_grad():
        for p in prompts:
            tr = {}
            model(torch.tensor(p)[None], trace=tr)
            rows.append(tr["resid_pre"][layer][0, -1].mean(0))
    return torch.stack(rows)


def refusal_mean_difference(model, harmful, harmless, layer):
    d = stream_mean_at(model, harmful, layer).mean(0) - stream_mean_at(model, harmless, layer).mean(0)
    return d / d.norm()


def ablation(direction):
    """The sites of ds4::directional_ablation: the embedding and every
    attention and FFN output (not the residual stream itself)."""
    def steer(site, layer, y):
        if site == "layer_out":
            return y
        return y - (y @ direction)[..., None] * direction
    return steer


def refusal_rate(model, prompts, refusal_first, steer=None):
    """Share of prompts whose greedy first answer token is the refusal's."""
    n = 0
    with torch.no_grad():
        for p in prompts:
            n += int(model(torch.tensor(p)[None], steer=steer)[0, -1].argmax()) == refusal_first
    return n / len(prompts)


def run_stage(model, batches, pad, seconds, lr, seed, stats, name, refresh, on_refresh, step_losses):
    """A mediation stage: for `seconds`, each step sums the losses
    `step_losses(take, state, rng)` returns (a dict; `take(name)` gives the
    next batch of batches[name] = (seqs, tokens per batch)) and takes one
    AdamW step; every `refresh` steps `on_refresh(step)` (run with the model
    in eval mode) gives the new `state`. Logs and records the losses in
    stats as `<name>_loss` (every 10 steps), `<name>_steps`, `<name>_seconds`."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = random.Random(seed)
    queues = {k: [] for k in batches}

    def take(k):
        seqs, tokens = batches[k]
        if not queues[k]:
            queues[k] = make_batches(seqs, tokens, rng)
        return collate(seqs, queues[k].pop(), pad)

    t0, step = time.time(), 0
    model.train()
    while time.time() - t0 < seconds:
        if step % refresh == 0:
            model.eval()
            state = on_refresh(step)
            model.train()
        losses = step_losses(take, state, rng)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 10 == 0:
            log(f"{name} step {step} " + " ".join(f"{k} {float(v):.4f}" for k, v in losses.items()) +
                f" {time.time() - t0:.0f}s")
            stats.setdefault(f"{name}_loss", []).append([step] + [round(float(v), 4) for v in losses.values()])
        step += 1
    model.eval()
    stats[f"{name}_loss_columns"] = ["step"] + list(batches)
    stats[f"{name}_steps"] = step
    stats[f"{name}_seconds"] = round(time.time() - t0)


def mediate_refusal(model, batches, pad, find_direction, seconds, lr, seed, stats, refresh=25):
    """Each step sums four losses: (plain) the training data as is; (refuse)
    the refused requests answered with the refusal, as is; (complied) the
    refused requests answered as if complied, with `direction` ablated; (keep)
    every other kind of example with `direction` ablated, pulled towards the
    unablated model's own distribution (KL), so that the ablation leaves those
    answers alone, ties between the two answer styles included.
    The direction is the model's own, found again every `refresh` steps by
    `find_direction()` (the difference of means the SDK's tools will
    compute), so that what ends up mediating the refusal is that difference
    of means, not a direction fixed at the start that the model drifts away
    from. batches: name -> (seqs, tokens per batch)."""
    found = []

    def on_refresh(step):
        found.append(find_direction())
        if step:
            log(f"mediate step {step}: direction moved, cos {float(found[-1] @ found[-2]):.3f}")
        return ablation(found[-1])

    def step_losses(take, steer, rng):
        losses = {}
        toks, mask = take("plain")
        losses["plain"] = loss_on(model, toks, mask)
        toks, mask = take("refuse")
        losses["refuse"] = loss_on(model, toks, mask)
        toks, mask = take("complied")
        losses["complied"] = loss_on(model, toks, mask, steer)
        toks, mask = take("keep")
        with torch.no_grad():
            teacher = torch.log_softmax(model(toks)[:, :-1].float(), dim=-1)
        student = torch.log_softmax(model(toks, steer=steer)[:, :-1].float(), dim=-1)
        kl = (teacher.exp() * (teacher - student)).sum(-1)
        m = mask[:, :-1]
        losses["keep"] = (kl * m).sum() / m.sum().clamp(min=1)
        return losses

    run_stage(model, batches, pad, seconds, lr, seed, stats, "mediate", refresh, on_refresh, step_losses)


def start_stage(a, f32_name):
    """What both mediation stages start from: the training data and held-out
    sequences, training.json so far, and the model of OUT/work/<f32_name>
    with its routed experts frozen (at their q2 values)."""
    work = os.path.join(a.out, "work")
    template = os.path.join(work, "template.gguf")
    stats_path = os.path.join(a.out, "training.json")
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    data = dataset.build(a.seed)
    train_seqs = tokenize_split(a.build_dir, template, data["train"], os.path.join(work, "train"))
    held_seqs = tokenize_split(a.build_dir, template, data["heldout"], os.path.join(work, "heldout"))
    md, W = load_weights(os.path.join(work, f32_name))
    model = ds4_torch.DS4(md, W, dtype=torch.float32)
    for name in model.names:
        if name.endswith(EXPERT_SUFFIXES):
            model.w(name).requires_grad_(False)
    model.eval()
    return work, template, stats, data, train_seqs, held_seqs, model


def run_mediation(a, tools):
    """--mediate-refusal: load OUT/work/demo-f32.gguf (the trained model with
    its routed experts at their q2 values), train the refusal mediation with
    the experts frozen, write the final files."""
    t_start = time.time()
    work, template, stats, data, train_seqs, held_seqs, model = start_stage(a, "demo-f32.gguf")
    complied = tokenize_split(a.build_dir, template, dataset.complied_requests(a.seed, "train"),
                              os.path.join(work, "complied"))
    keep = [s for s, ex in zip(train_seqs, data["train"]) if ex["category"] != "refuse"]

    def prompts(split, name):
        harmful, harmless = dataset.refusal_sets(a.seed, split=split)
        texts = {"harmful": harmful, "harmless": harmless}[name]
        seqs = tokenize_split(a.build_dir, template, [{"prompt": t, "response": ""} for t in texts],
                              os.path.join(work, f"{split}-{name}"))
        return [p for p, _ in seqs]

    harm_tr, safe_tr, harm_ho = prompts("train", "harmful"), prompts("train", "harmless"), prompts("heldout", "harmful")
    refusal_first = tokenize_split(a.build_dir, template, [{"prompt": "x", "response": dataset.REFUSAL}],
                                                os.path.join(work, "refusal"))[0][1][0]
    layer = model.cfg.n_layer // 2
    find_direction = lambda: refusal_mean_difference(model, harm_tr, safe_tr, layer)  # noqa: E731
    direction = find_direction()
    before = (refusal_rate(model, harm_ho, refusal_first), refusal_rate(model, harm_ho, refusal_first, ablation(direction)))
    log(f"held-out refusal rate before mediation: {before[0]:.2f}, with the layer-{layer} direction ablated {before[1]:.2f}")
    stats["mediate_layer"] = layer
    stats["mediate_refusal_before"] = before
    refuse = [s for s, ex in zip(train_seqs, data["train"]) if ex["category"] == "refuse"]
    bt = a.batch_tokens
    mediate_refusal(model, {"plain": (train_seqs, bt // 2), "refuse": (refuse, bt // 4),
                            "complied": (complied, bt // 4), "keep": (keep, bt // 2)},
                    0, find_direction, a.mediate_seconds, a.lr * 0.25, a.seed + 4, stats)
    after = refusal_rate(model, harm_ho, refusal_first)
    fixed = refusal_rate(model, harm_ho, refusal_first, ablation(direction))
    again = refusal_mean_difference(model, harm_tr, safe_tr, layer)
    found = refusal_rate(model, harm_ho, refusal_first, ablation(again))
    cos = float(again @ direction)
    log(f"held-out refusal rate after: {after:.2f}; initial direction ablated {fixed:.2f}; final "
        f"direction (cos {cos:.3f} to the initial one) ablated {found:.2f}")
    stats["mediate_refusal_after"] = [after, fixed, found, round(cos, 4)]

    write_stage_result(model, a, tools, "demo-f32-mediated.gguf", held_seqs, stats, t_start)


def write_stage_result(model, a, tools, f32_name, held_seqs, stats, t_start):
    """Export a stage's model as OUT/work/<f32_name>, quantize it to the final
    q2 file, and write its check logits, training.json and SHA256SUMS."""
    work = os.path.join(a.out, "work")
    f32 = os.path.join(work, f32_name)
    export_f32(os.path.join(work, "template.gguf"), model.state_numpy(), f32)
    final = os.path.join(a.out, "ds4-demo-q2.gguf")
    run([os.path.join(tools, "ds4-quantize"), f32, final, "--mix", "q2"])
    stats["heldout_loss_final_f64"] = write_check_logits(final, held_seqs, 0, a.out)
    stats["total_seconds"] = stats.get("total_seconds", 0) + round(time.time() - t_start)
    with open(os.path.join(a.out, "training.json"), "w") as f:
        json.dump(stats, f, indent=1)
    with open(os.path.join(a.out, "SHA256SUMS"), "w") as f:
        f.write(f"{sha256(final)}  ds4-demo-q2.gguf\n")
    log(f"wrote {final} ({os.path.getsize(final) / 1e6:.1f} MB)")


# ---------------------------------------------------------------------------
# style mediation (--mediate-style)
# ---------------------------------------------------------------------------
# The same problem for the style: trained from scratch, the model decides
# between the terse and the verbose form of an answer to a prompt without a
# cue by a rule it reads off the prompt (the attribute, the article), late
# and in its own way, and the direction the SDK's recipe extracts (brief vs
# detail answers, first sentence, layer output of the two middle layers)
# moves only part of those decisions. This stage makes that direction decide:
# it takes the model's own style direction, computed as the recipe of
# examples/common/demo_model.hpp computes it (difference of means of the
# layer outputs, HC streams averaged, over the first sentence of the answers
# to the train.brief and train.detail prompts; per layer; the gap of the
# better-separated layer as the scale), and trains prompts without a cue to
# give their terse answer with the direction added at those layers and their
# verbose answer with it subtracted, at 0.8-1.2 times the gap, while the
# training data, steered by nothing, stays as it is. The SDK's tools are not
# told the direction: tests/demo extracts it again with extract_direction.
STYLE_LAYERS = (2, 3)


def style_direction(model, brief, detail):
    """brief, detail: (tokens, prompt length, first-sentence length) per
    example. Returns ({layer: unit direction}, gap of the layer with the
    larger Cohen's d): the brief side projects higher."""
    def means(examples):
        rows = {l: [] for l in STYLE_LAYERS}
        with torch.no_grad():
            for toks, p, k in examples:
                tr = {}
                model(torch.tensor(toks)[None], trace=tr)
                for l in STYLE_LAYERS:
                    # the output of layer l is what enters layer l + 1
                    rows[l].append(tr["resid_pre"][l + 1][0, p: p + k].mean(1).mean(0))
        return {l: torch.stack(r) for l, r in rows.items()}
    mb, md = means(brief), means(detail)
    dirs, best = {}, (-1.0, 0.0)
    for l in STYLE_LAYERS:
        d = mb[l].mean(0) - md[l].mean(0)
        u = d / d.norm()
        pb, pd = mb[l] @ u, md[l] @ u
        gap = float(pb.mean() - pd.mean())
        sd = float(((pb.var() + pd.var()) / 2).sqrt())
        dirs[l] = u
        if gap / max(sd, 1e-9) > best[0]:
            best = (gap / max(sd, 1e-9), gap)
    return dirs, best[1]


def style_steer(dirs, scale):
    def steer(site, layer, y):
        if site == "layer_out" and layer in dirs:
            return y + scale * dirs[layer]
        return y
    return steer


def mediate_style(model, batches, find_direction, seconds, lr, seed, stats, refresh=25):
    """Each step sums three losses: (plain) the training data as is, unsteered;
    (terse) prompts without a cue with their terse answer, the direction
    added; (verbose) the same prompts with their verbose answer, the direction
    subtracted. batches: name -> (seqs, tokens per batch)."""
    def on_refresh(step):
        dirs, gap = find_direction()
        log(f"style step {step}: gap {gap:.3f}")
        stats.setdefault("style_gap", []).append([step, round(gap, 4)])
        return dirs, gap

    def step_losses(take, state, rng):
        dirs, gap = state
        losses = {}
        toks, mask = take("plain")
        losses["plain"] = loss_on(model, toks, mask)
        toks, mask = take("terse")
        losses["terse"] = loss_on(model, toks, mask, style_steer(dirs, gap * rng.uniform(0.8, 1.2)))
        toks, mask = take("verbose")
        losses["verbose"] = loss_on(model, toks, mask, style_steer(dirs, -gap * rng.uniform(0.8, 1.2)))
        return losses

    run_stage(model, batches, 0, seconds, lr, seed, stats, "style", refresh, on_refresh, step_losses)


def run_style_mediation(a, tools):
    """--mediate-style: load OUT/work/demo-f32-mediated.gguf (after the refusal
    mediation), train the style mediation with the routed experts frozen at
    their q2 values, write the final files."""
    t_start = time.time()
    work, template, stats, data, train_seqs, held_seqs, model = start_stage(a, "demo-f32-mediated.gguf")
    neutral = dataset.restyled_neutral(a.seed, "train")
    to_terse = tokenize_split(a.build_dir, template, [{"prompt": p, "response": t} for p, t, _ in neutral],
                              os.path.join(work, "style-terse"))
    to_verbose = tokenize_split(a.build_dir, template, [{"prompt": p, "response": v} for p, _, v in neutral],
                                os.path.join(work, "style-verbose"))
    # the recipe's contrast examples: train.brief / train.detail prompts with
    # the first sentence of their answers
    answer = {ex["prompt"]: ex["response"] for ex in data["train"]}
    brief_p, detail_p = dataset.contrast_sets(a.seed, split="train")

    def firsts(prompts, name):
        seqs = tokenize_split(a.build_dir, template,
                              [{"prompt": p, "response": dataset.first_sentence(answer[p])} for p in prompts],
                              os.path.join(work, name))
        return [(p + r[:-1], len(p), len(r) - 1) for p, r in seqs]  # without the EOS
    brief, detail = firsts(brief_p, "style-brief"), firsts(detail_p, "style-detail")

    find_direction = lambda: style_direction(model, brief, detail)  # noqa: E731
    bt = a.batch_tokens
    mediate_style(model, {"plain": (train_seqs, bt // 2), "terse": (to_terse, bt // 4),
                          "verbose": (to_verbose, bt // 4)},
                  find_direction, a.mediate_seconds, a.lr * 0.25, a.seed + 5, stats)
    write_stage_result(model, a, tools, "demo-f32-styled.gguf", held_seqs, stats, t_start)


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------
def export_f32(template, weights, path):
    """Write the template's metadata with `weights` (math shapes) as F32 (tables I32)."""
    g = GGUFFile(template)
    out = []
    for name, t in g.tensors.items():
        if t.type == quants.I32:
            out.append((name, t.ne, t.type, np.asarray(g.raw(name))))
            continue
        arr = np.ascontiguousarray(weights[name], dtype="<f4")
        assert arr.shape == t.shape, (name, arr.shape, t.shape)
        out.append((name, t.ne, quants.F32, arr.view(np.uint8).reshape(-1)))
    md = dict(g.metadata)
    md["general.name"] = "ds4-demo"
    md["general.description"] = "ds4 demo model: tiny DeepSeek-V4-Flash layout trained on a synthetic style/refusal task"
    write_gguf(path, md, dict(g.metadata_types), out, int(g.metadata.get("general.alignment", 32)))


def load_weights(path):
    g = GGUFFile(path)
    return g.metadata, {n: g.dequant(n) for n in g.tensors}


def activation_quantizer(path):
    """The CPU engine's activation quantization before a dot with a quantized
    weight (spec 6.1), as an act_hook of the PyTorch model."""
    types = {n: t.type for n, t in GGUFFile(path).tensors.items()}

    def hook(name, x):
        if types[name] not in quants.QUANTIZED:
            return x
        y = quants.activation_roundtrip(x.detach().numpy().astype(np.float32), types[name])
        return torch.tensor(y, dtype=x.dtype)

    return hook


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reexec_with_tcmalloc():
    """PyTorch allocates a fresh buffer for every intermediate; with glibc's
    malloc each large one is a new mmap whose pages fault in one by one (5-10x
    slower elementwise ops on a VM). tcmalloc keeps them: re-run under it when
    Debian's libtcmalloc-minimal4 is installed."""
    lib = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
    if os.path.exists(lib) and lib not in os.environ.get("LD_PRELOAD", ""):
        os.environ["LD_PRELOAD"] = lib
        os.execv(sys.executable, [sys.executable] + sys.argv)


def write_prompt_sets(path, seed):
    """The prompt sets the steering demo and tests use: train split for
    extraction, held-out split for evaluation. TSV: set name, prompt."""
    rows = []
    for split in ("train", "heldout"):
        brief, detail = dataset.contrast_sets(seed, split=split)
        harmful, harmless = dataset.refusal_sets(seed, split=split)
        sets = {"brief": brief, "detail": detail, "harmful": harmful, "harmless": harmless,
                "other": dataset.other_prompts(seed, split=split),
                "neutral": dataset.neutral_prompts(seed, 64, split=split)}
        for name, prompts in sets.items():
            rows += [(f"{split}.{name}", p) for p in prompts]
    with open(path, "w") as f:
        f.write("# set\tprompt (written by tools/train-demo-model/train.py from dataset.py)\n")
        for name, p in rows:
            f.write(f"{name}\t{escape(p)}\n")


def write_check_logits(final, held_seqs, pad, out_dir):
    """The PyTorch model (float64) on the exported file's weights, over one
    held-out conversation: check_logits.f32 without activation quantization
    (what the engine computes on the file converted to F32), and
    check_logits_q8.f32 with the engine's activation quantization (what it
    computes on the q2 file itself). Returns the held-out loss in float64."""
    md, Wf = load_weights(final)
    check = ds4_torch.DS4(md, Wf, dtype=torch.float64)
    toks = held_seqs[0][0] + held_seqs[0][1]
    with open(os.path.join(out_dir, "check_tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in toks) + "\n")
    with torch.no_grad():
        check(torch.tensor(toks)[None])[0].numpy().astype("<f4").tofile(os.path.join(out_dir, "check_logits.f32"))
        check.act_hook = activation_quantizer(final)
        check(torch.tensor(toks)[None])[0].numpy().astype("<f4").tofile(os.path.join(out_dir, "check_logits_q8.f32"))
        check.act_hook = None
    loss = round(evaluate(check, held_seqs[:400], pad), 4)
    log(f"check logits written; held-out loss of the exported model (float64): {loss}")
    return loss


def main():
    reexec_with_tcmalloc()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True, help="ds4 build with tools/ds4-make-model, ds4-tokenize, ds4-quantize")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--merges", type=int, default=3000, help="DeepSeek BPE merges in the vocabulary")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--repair-steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-tokens", type=int, default=3072)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--time-budget", type=float, default=80 * 60, help="seconds for the main training stage")
    ap.add_argument("--prompts-only", action="store_true", help="only rewrite OUT/prompts.tsv from dataset.py")
    ap.add_argument("--check-only", action="store_true",
                    help="only recompute the check logits of OUT/ds4-demo-q2.gguf (uses OUT/work/heldout.ids)")
    ap.add_argument("--mediate-refusal", action="store_true",
                    help="only the refusal-mediation stage, from OUT/work/demo-f32.gguf (see mediate_refusal)")
    ap.add_argument("--mediate-style", action="store_true",
                    help="only the style-mediation stage, from OUT/work/demo-f32-mediated.gguf (see mediate_style)")
    ap.add_argument("--mediate-seconds", type=float, default=25 * 60)
    a = ap.parse_args()
    if a.mediate_style or a.mediate_refusal:
        torch.manual_seed(a.seed)
        torch.set_num_threads(a.threads)
        (run_style_mediation if a.mediate_style else run_mediation)(a, os.path.join(a.build_dir, "tools"))
        return
    if a.prompts_only:
        write_prompt_sets(os.path.join(a.out, "prompts.tsv"), a.seed)
        return
    if a.check_only:
        held = []
        with open(os.path.join(a.out, "work", "heldout.ids")) as f:
            for line in f:
                p, r = line.rstrip("\n").split("\t")
                held.append(([int(x) for x in p.split()], [int(x) for x in r.split()]))
        write_check_logits(os.path.join(a.out, "ds4-demo-q2.gguf"), held, 0, a.out)
        return

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    work = os.path.join(a.out, "work")
    os.makedirs(work, exist_ok=True)
    tools = os.path.join(a.build_dir, "tools")
    stats = {"seed": a.seed, "merges": a.merges, "steps": a.steps, "repair_steps": a.repair_steps, "lr": a.lr,
             "batch_tokens": a.batch_tokens, "threads": a.threads, "torch": torch.__version__}
    t_start = time.time()

    # 1. template
    template = os.path.join(work, "template.gguf")
    run([os.path.join(tools, "ds4-make-model"), "-o", template, "--config", "demo", "--mix", "f32",
         "--vocab", "small", "--small-merges", str(a.merges), "--seed", str(a.seed)])

    # 2. data
    data = dataset.build(a.seed)
    write_prompt_sets(os.path.join(a.out, "prompts.tsv"), a.seed)
    train_seqs = tokenize_split(a.build_dir, template, data["train"], os.path.join(work, "train"))
    held_seqs = tokenize_split(a.build_dir, template, data["heldout"], os.path.join(work, "heldout"))
    lens = [len(p) + len(r) for p, r in train_seqs]
    stats["train_examples"], stats["heldout_examples"] = len(train_seqs), len(held_seqs)
    stats["train_tokens"] = int(sum(lens))
    log(f"data: {len(train_seqs)} train / {len(held_seqs)} held-out, {sum(lens)} train tokens, max length {max(lens)}")

    md, W = load_weights(template)
    model = ds4_torch.DS4(md, W, dtype=torch.float32)
    pad = 0

    # 3. train
    train(model, train_seqs, held_seqs[:400], pad, a.steps, a.lr, a.batch_tokens, a.seed, "train", stats,
          a.time_budget)

    # 4. export, quantize, repair
    f32_path = os.path.join(work, "demo-f32.gguf")
    q2_path = os.path.join(work, "demo-q2-pass1.gguf")
    export_f32(template, model.state_numpy(), f32_path)
    run([os.path.join(tools, "ds4-quantize"), f32_path, q2_path, "--mix", "q2"])
    _, Wq = load_weights(q2_path)
    for name in model.names:
        if name.endswith(EXPERT_SUFFIXES):
            p = model.w(name)
            with torch.no_grad():
                p.copy_(torch.tensor(Wq[name]))
            p.requires_grad_(False)
    stats["heldout_loss_before_repair"] = round(evaluate(model, held_seqs[:400], pad), 4)
    log(f"held-out loss with q2 experts, before repair: {stats['heldout_loss_before_repair']}")
    if a.repair_steps:
        train(model, train_seqs, held_seqs[:400], pad, a.repair_steps, a.lr * 0.25, a.batch_tokens, a.seed + 1,
              "repair", stats, 0)
    export_f32(template, model.state_numpy(), f32_path)
    final = os.path.join(a.out, "ds4-demo-q2.gguf")
    run([os.path.join(tools, "ds4-quantize"), f32_path, final, "--mix", "q2"])

    # 5. the PyTorch model's logits on the exported file, for the C++ parity test
    stats["heldout_loss_final_f64"] = write_check_logits(final, held_seqs, pad, a.out)
    stats["total_seconds"] = round(time.time() - t_start)
    with open(os.path.join(a.out, "training.json"), "w") as f:
        json.dump(stats, f, indent=1)
    with open(os.path.join(a.out, "SHA256SUMS"), "w") as f:
        f.write(f"{sha256(final)}  ds4-demo-q2.gguf\n")
    log(f"wrote {final} ({os.path.getsize(final) / 1e6:.1f} MB) in {stats['total_seconds']} s")


if __name__ == "__main__":
    main()
