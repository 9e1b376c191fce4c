#!/usr/bin/python3
"""The trainer's PyTorch model against the independent NumPy reference
(tests/reference/ds4_ref.py), on a generated F32 model of the demo layout with
random weights, over a sequence long enough to cross the sliding window, both
compression ratios and the indexer's top-k.

    /usr/bin/python3 test_ds4_torch.py BUILD_DIR

Exit 0 on agreement, 1 on a mismatch. (The engine against the PyTorch model on
the shipped file is tests/demo: EngineReproducesTheTrainersLogits.)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "reference"))

import ds4_ref  # noqa: E402
import ds4_torch  # noqa: E402
from gguf_reader import GGUFFile  # noqa: E402

TOKENS = 160  # > the demo layout's 128-token raw window
TOLERANCE = 1e-3  # max |torch - ref| / max |ref| per position, both in float64


def main():
    build = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo-f32.gguf")
        subprocess.run([os.path.join(build, "tools", "ds4-make-model"), "-o", path, "--config", "demo", "--mix", "f32",
                        "--vocab", "small", "--small-merges", "3000", "--seed", "11"], check=True)
        g = GGUFFile(path)
        model = ds4_torch.DS4(g.metadata, {n: g.dequant(n) for n in g.tensors}, dtype=torch.float64)
        toks = np.random.default_rng(5).integers(0, model.cfg.n_vocab, TOKENS)
        trace = {}
        with torch.no_grad():
            got = model(torch.tensor(toks)[None], trace=trace)[0].numpy()
        ref = ds4_ref.Model(path, act_quant=False).logits([int(t) for t in toks])
        err = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
        same = float((got.argmax(1) == ref.argmax(1)).mean())
        topk_layers = sorted(trace.get("topk", {}))
        print(f"{TOKENS} tokens: max relative error {err.max():.2e} (position {err.argmax()}), "
              f"argmax agreement {same:.3f}, indexer layers {topk_layers}")
        ok = err.max() < TOLERANCE and same == 1.0 and topk_layers
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
