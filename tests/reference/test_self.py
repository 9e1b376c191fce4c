#!/usr/bin/python3
"""Unit checks of the reference's own pieces (no engine involved).

    /usr/bin/python3 tests/reference/test_self.py [-v]
"""
from __future__ import annotations

import math
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quants  # noqa: E402
from ds4_ref import Compressor, Steer, apply_op, apply_steering  # noqa: E402
from gguf_reader import GGUFFile  # noqa: E402
from iq2xxs_tables import IQ2XXS_GRID, KSIGNS_IQ2XS  # noqa: E402
from numerics import (E4M3_TABLE, Rope, e2m1_round, e4m3_round, fp4_e2m1_roundtrip,  # noqa: E402
                      fp8_e4m3_roundtrip, hadamard, hadamard_matrix, hc_split_sinkhorn, indexer_qat,
                      rms_norm, sigmoid, softplus)

RNG = np.random.default_rng(1234)


def f16_bytes(x):
    return np.array([x], dtype="<f2").tobytes()


class TestFP8(unittest.TestCase):
    def test_table(self):
        self.assertEqual(len(E4M3_TABLE), 127)
        self.assertEqual(E4M3_TABLE[-1], 448.0)
        self.assertEqual(E4M3_TABLE[1], 2.0 ** -9)          # smallest subnormal
        self.assertEqual(E4M3_TABLE[8], 2.0 ** -6)          # smallest normal
        self.assertEqual(E4M3_TABLE[56], 1.0)               # code 0x38

    def test_known_values(self):
        cases = {
            1.0: 1.0, 1.0625: 1.0,           # tie between codes 56 (1.0) and 57 (1.125) -> even code
            1.1875: 1.25,                    # tie between 57 (1.125) and 58 (1.25) -> even
            17.0: 16.0, 19.0: 20.0,          # ties at step 2 in [16, 32): 16 (even) / 20 (even)
            300.0: 288.0, 440.0: 448.0, 448.0: 448.0,
            0.75 * 2 ** -9: 2 ** -9,         # subnormal rounding
            0.5 * 2 ** -9: 0.0,              # tie between code 0 and 1 -> 0
            1.5 * 2 ** -9: 2 * 2 ** -9,      # tie between 1 and 2 -> 2
            -3.3: -3.25, 0.0: 0.0,
        }
        for x, want in cases.items():
            self.assertEqual(float(e4m3_round(np.array([x]))[0]), want, msg=f"e4m3({x})")

    def test_block_roundtrip(self):
        # amax = 448 -> scale 1 -> representable values pass unchanged
        x = E4M3_TABLE[::2].copy()          # 64 codes, the largest is 448
        np.testing.assert_array_equal(fp8_e4m3_roundtrip(x, 64), x)
        # amax = 900 -> scale 2^ceil(log2(900/448)) = 4; 900/4 = 225 -> 224 (step 16 in [128, 256))
        y = np.zeros(64)
        y[0], y[1], y[2] = 900.0, 3.0, 5.0
        out = fp8_e4m3_roundtrip(y, 64)
        self.assertEqual(out[0], 896.0)

    def test_block_roundtrip_exact_small(self):
        y = np.zeros(64)
        y[0], y[1], y[2] = 900.0, 3.0, 5.0
        out = fp8_e4m3_roundtrip(y, 64)
        self.assertEqual(out[1], 3.0)
        self.assertEqual(out[2], 5.0)          # 1.25 exact

    def test_amax_floor(self):
        x = np.full(64, 1e-7)
        out = fp8_e4m3_roundtrip(x, 64)       # scale = 2^ceil(log2(1e-4/448)) = 2^-22
        s = 2.0 ** -22
        self.assertAlmostEqual(out[0], float(e4m3_round(np.array([1e-7 / s]))[0]) * s)

    def test_idempotent_and_error(self):
        x = RNG.standard_normal((50, 64)) * np.exp(RNG.uniform(-5, 5, (50, 1)))
        y = fp8_e4m3_roundtrip(x, 64)
        np.testing.assert_array_equal(fp8_e4m3_roundtrip(y, 64), y)
        amax = np.abs(x).max(1, keepdims=True)
        self.assertTrue(np.all(np.abs(y - x) <= amax * 2.0 ** -3 + 1e-300))


class TestFP4(unittest.TestCase):
    def test_known_values(self):
        cases = {0.25: 0.0, 0.3: 0.5, 0.75: 1.0, 1.25: 1.0, 1.75: 2.0, 2.5: 2.0, 3.5: 4.0, 5.0: 4.0,
                 5.5: 6.0, 6.0: 6.0, -2.5: -2.0, -0.74: -0.5}
        for x, want in cases.items():
            self.assertEqual(float(e2m1_round(np.array([x]))[0]), want, msg=f"e2m1({x})")

    def test_block(self):
        x = np.zeros(32)
        x[:4] = [6.0, 2.5, -1.25, 0.3]           # amax 6 -> scale 1
        np.testing.assert_array_equal(fp4_e2m1_roundtrip(x, 32)[:4], [6.0, 2.0, -1.0, 0.5])
        x2 = x * 8                                # scale 8
        np.testing.assert_array_equal(fp4_e2m1_roundtrip(x2, 32)[:4], [48.0, 16.0, -8.0, 4.0])
        x3 = x.copy()
        x3[0] = 7.0                               # amax 7 -> scale 2: 7/2 = 3.5 -> 4 (tie -> even idx 6) -> 8
        self.assertEqual(fp4_e2m1_roundtrip(x3, 32)[0], 8.0)
        self.assertEqual(fp4_e2m1_roundtrip(x3, 32)[1], 2.0)   # 1.25 -> 1.0 -> 2

    def test_zero_block(self):
        np.testing.assert_array_equal(fp4_e2m1_roundtrip(np.zeros(32), 32), np.zeros(32))


class TestHadamard(unittest.TestCase):
    def test_orthogonal(self):
        H = hadamard_matrix(128)
        np.testing.assert_array_equal(H @ H.T, 128 * np.eye(128))
        self.assertTrue(np.all(H[0] == 1) and np.all(H[:, 0] == 1))

    def test_butterfly_order(self):
        # spec: butterflies with strides 1, 2, ..., 64 (a, b -> a + b, a - b), natural order
        x = RNG.standard_normal(128)
        y = x.copy()
        h = 1
        while h < 128:
            for i in range(0, 128, 2 * h):
                for j in range(i, i + h):
                    a, b = y[j], y[j + h]
                    y[j], y[j + h] = a + b, a - b
            h *= 2
        np.testing.assert_allclose(hadamard(x), y * 0.08838834764831845, rtol=1e-13, atol=1e-13)

    def test_involution_and_norm(self):
        x = RNG.standard_normal((3, 128))
        np.testing.assert_allclose(hadamard(hadamard(x)), x, atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(hadamard(x), axis=1), np.linalg.norm(x, axis=1), rtol=1e-12)

    def test_indexer_qat_is_fp4_after_hadamard(self):
        x = RNG.standard_normal(128)
        y = indexer_qat(x)
        hx = hadamard(x)
        for b in range(4):
            blk = hx[32 * b:32 * b + 32]
            scale = 2.0 ** math.ceil(math.log2(np.abs(blk).max() / 6))
            self.assertTrue(np.all(np.isin(np.abs(y[32 * b:32 * b + 32]) / scale,
                                           [0, 0.5, 1, 1.5, 2, 3, 4, 6])))


class TestSinkhorn(unittest.TestCase):
    def test_doubly_stochastic(self):
        for _ in range(20):
            m = RNG.standard_normal(24)
            scale = RNG.uniform(0.1, 1, 3)
            base = RNG.standard_normal(24)
            pre, post, M = hc_split_sinkhorn(m, scale, base, 4, 20, 1e-6)
            np.testing.assert_allclose(M.sum(axis=1), 1.0, atol=1e-5)   # last step: rows
            np.testing.assert_allclose(M.sum(axis=0), 1.0, atol=2e-3)
            self.assertTrue(np.all(M > 0))
            self.assertTrue(np.all((pre > 1e-6) & (pre < 1 + 1e-6)))
            self.assertTrue(np.all((post > 0) & (post < 2)))

    def test_storage_order(self):
        # M[i][j] = weight of source j into destination i, storage index 8 + i + 4j.
        m = np.zeros(24)
        base = np.zeros(24)
        base[8 + 2 + 4 * 1] = 30.0          # strongly favour source 1 -> destination 2
        _, _, M = hc_split_sinkhorn(m, np.ones(3), base, 4, 20, 1e-6)
        self.assertGreater(M[2, 1], 0.9)
        self.assertTrue(np.all(np.delete(M[2], 1) < 0.03) and np.all(np.delete(M[:, 1], 2) < 0.03))
        np.testing.assert_allclose(np.delete(np.delete(M, 2, 0), 1, 1), 1 / 3, atol=0.03)

    def test_pre_post(self):
        m = np.zeros(24)
        base = np.zeros(24)
        pre, post, _ = hc_split_sinkhorn(m, np.ones(3), base)
        np.testing.assert_allclose(pre, 0.5 + 1e-6)
        np.testing.assert_allclose(post, 1.0)


class TestRope(unittest.TestCase):
    def ropes(self):
        return [Rope(64, 10000.0),
                Rope(64, 160000.0, yarn=True, factor=16, n_ctx_orig=65536, beta_fast=32, beta_slow=1),
                Rope(64, 160000.0, yarn=True, factor=16, n_ctx_orig=65536, beta_fast=32, beta_slow=1,
                     f32_incremental=True)]

    def test_yarn_corr_dims(self):
        r = self.ropes()[1]
        self.assertEqual((r.lo, r.hi), (15, 25))
        self.assertEqual(r.ramp[15], 1.0)
        self.assertEqual(r.ramp[25], 0.0)
        self.assertAlmostEqual(r.ramp[20], 0.5)

    def test_inverse(self):
        x = RNG.standard_normal((4, 512))
        for r in self.ropes():
            tol = 1e-6 if r.f32_incremental else 1e-12     # f32 cos/sin: c^2 + s^2 = 1 only to ~1e-7
            for pos in (0, 1, 77, 1000, 65535):
                y = r.apply(x, pos)
                np.testing.assert_allclose(r.apply(y, pos, inverse=True), x, atol=tol * 10)
                np.testing.assert_array_equal(y[:, :448], x[:, :448])      # only the tail rotates
                np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=tol)

    def test_pos0_identity_and_pairs(self):
        r = Rope(64, 10000.0)
        x = RNG.standard_normal(128)
        np.testing.assert_allclose(r.apply(x, 0), x)
        # pair 0 (dims 64, 65) rotates by theta = pos exactly
        y = r.apply(x, 3)
        c, s = math.cos(3), math.sin(3)
        self.assertAlmostEqual(y[64], x[64] * c - x[65] * s)
        self.assertAlmostEqual(y[65], x[64] * s + x[65] * c)

    def test_relative(self):
        r = Rope(64, 10000.0)
        q = RNG.standard_normal(128)
        k = RNG.standard_normal(128)
        a = r.apply(q, 50) @ r.apply(k, 40)
        b = r.apply(q, 110) @ r.apply(k, 100)
        self.assertAlmostEqual(a, b, places=9)

    def test_yarn_frequencies(self):
        r = self.ropes()[1]
        c, s = r.angles(1000)
        th = np.arctan2(s, c)
        k = np.arange(32)
        ext = 1000 * 160000.0 ** (-2 * k / 64)
        want = np.where(k <= 15, ext, np.where(k >= 25, ext / 16, None))
        for i in list(range(0, 16)) + list(range(25, 32)):
            self.assertAlmostEqual(math.remainder(th[i] - want[i], 2 * math.pi), 0.0, places=9)


class TestDequant(unittest.TestCase):
    def test_f16_bf16_f32(self):
        v = np.array([1.5, -2.25, 65504.0, 6e-8], dtype=np.float32)
        np.testing.assert_array_equal(quants.dequantize(v.astype("<f2").tobytes(), quants.F16, 4),
                                      v.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(quants.dequantize(v.tobytes(), quants.F32, 4), v)
        bf = (v.view(np.uint32) >> 16).astype("<u2")
        np.testing.assert_array_equal(quants.dequantize(bf.tobytes(), quants.BF16, 4)[:2], [1.5, -2.25])

    def test_q8_0(self):
        q = np.arange(-16, 16, dtype=np.int8)
        blk = f16_bytes(0.5) + q.tobytes()
        np.testing.assert_array_equal(quants.dequantize(blk * 2, quants.Q8_0, 64), np.tile(q * 0.5, 2))

    def test_q2_k(self):
        scales = RNG.integers(0, 256, 16, dtype=np.uint8)
        qs = RNG.integers(0, 256, 64, dtype=np.uint8)
        d, dmin = 0.25, 0.125
        blk = scales.tobytes() + qs.tobytes() + f16_bytes(d) + f16_bytes(dmin)
        got = quants.dequantize(blk, quants.Q2_K, 256)
        want = np.zeros(256)
        for n in range(2):                      # spec 2.1 formula, element by element
            for p in range(4):
                for l in range(32):
                    S = int(scales[8 * n + 2 * p + (1 if l >= 16 else 0)])
                    want[128 * n + 32 * p + l] = d * (S & 15) * ((int(qs[32 * n + l]) >> (2 * p)) & 3) \
                        - dmin * (S >> 4)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    def test_q4_k(self):
        s = RNG.integers(0, 256, 12, dtype=np.uint8)
        qs = RNG.integers(0, 256, 128, dtype=np.uint8)
        d, dmin = 0.5, 0.0625
        blk = f16_bytes(d) + f16_bytes(dmin) + s.tobytes() + qs.tobytes()
        got = quants.dequantize(blk, quants.Q4_K, 256)

        def sm(j):
            s_ = [int(x) for x in s]
            if j < 4:
                return s_[j] & 63, s_[j + 4] & 63
            return (s_[j + 4] & 15) | ((s_[j - 4] >> 6) << 4), (s_[j + 4] >> 4) | ((s_[j] >> 6) << 4)
        want = np.zeros(256)
        for c in range(4):
            sc0, m0 = sm(2 * c)
            sc1, m1 = sm(2 * c + 1)
            for l in range(32):
                want[64 * c + l] = d * sc0 * (int(qs[32 * c + l]) & 15) - dmin * m0
                want[64 * c + 32 + l] = d * sc1 * (int(qs[32 * c + l]) >> 4) - dmin * m1
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    def test_iq2_xxs_tables(self):
        self.assertEqual(len(IQ2XXS_GRID), 256)
        self.assertEqual(IQ2XXS_GRID[0], 0x0808080808080808)
        mags = np.array(IQ2XXS_GRID, dtype="<u8").view(np.uint8)
        self.assertTrue(set(mags.tolist()) <= {8, 25, 43})
        self.assertEqual(len(set(IQ2XXS_GRID)), 256)
        for i, sgn in enumerate(KSIGNS_IQ2XS):       # 7 sign bits + even-parity bit
            self.assertEqual(sgn & 127, i)
            self.assertEqual(bin(sgn).count("1") % 2, 0)

    def test_iq2_xxs(self):
        d = 0.5
        qs = np.zeros(16, dtype=np.uint32)           # 8 sub-blocks x (a0, a1)
        # sub-block 0: grid ids (0, 1, 2, 255), sign ids (0, 1, 127, 5), scale nibble 3
        qs[0] = 0 | (1 << 8) | (2 << 16) | (255 << 24)
        qs[1] = 0 | (1 << 7) | (127 << 14) | (5 << 21) | (3 << 28)
        # sub-block 5: grid 17 everywhere, no signs, scale nibble 15
        qs[10] = 17 * 0x01010101
        qs[11] = 15 << 28
        blk = f16_bytes(d) + qs.astype("<u4").tobytes()
        got = quants.dequantize(blk, quants.IQ2_XXS, 256)

        def grid(i):
            return [(IQ2XXS_GRID[i] >> (8 * j)) & 255 for j in range(8)]

        def signs(i):
            s = KSIGNS_IQ2XS[i]
            return [-1 if (s >> j) & 1 else 1 for j in range(8)]
        db = d * (0.5 + 3) * 0.25
        for l, (g, sg) in enumerate([(0, 0), (1, 1), (2, 127), (255, 5)]):
            want = [db * a * b for a, b in zip(grid(g), signs(sg))]
            np.testing.assert_allclose(got[8 * l:8 * l + 8], want)
        np.testing.assert_allclose(got[160:192], np.tile(d * 15.5 * 0.25 * np.array(grid(17)), 4))
        np.testing.assert_array_equal(got[32:160], 0 * got[32:160] + d * 0.5 * 0.25 * 8)   # zeros -> grid 0, +


class TestFixtureQuantizers(unittest.TestCase):
    """make_quant_model.py's quantizers decode (with quants.py) close to their input."""

    def test_roundtrips(self):
        import make_quant_model as mq
        x = RNG.standard_normal(4096).astype(np.float32) * 0.05
        cases = [(quants.Q8_0, 0.01), (quants.Q4_K, 0.12), (quants.Q2_K, 0.5), (quants.IQ2_XXS, 0.6),
                 (quants.F16, 1e-3)]
        for t, tol in cases:
            raw = mq.encode(x, t)
            self.assertEqual(raw.size, 4096 // quants.block_info(t)[0] * quants.block_info(t)[1])
            y = quants.dequantize(raw, t, 4096)
            err = np.sqrt(np.mean((y - x) ** 2) / np.mean(x ** 2))
            self.assertLess(err, tol, msg=quants.TYPE_NAMES[t])

    def test_q8_0_exact_on_grid(self):
        import make_quant_model as mq
        q = RNG.integers(-127, 128, 64).astype(np.float32)
        q[0], q[32] = 127, -127
        x = q * np.float32(0.5)
        np.testing.assert_array_equal(quants.dequantize(mq.encode(x, quants.Q8_0), quants.Q8_0, 64), x)

    def test_iq2_xxs_picks_codewords(self):
        import make_quant_model as mq
        # a block built from codewords with an even number of negative signs round-trips exactly
        g = np.array(IQ2XXS_GRID, dtype="<u8").view(np.uint8).reshape(256, 8).astype(np.float32)
        idx = RNG.integers(0, 256, 32)
        signs = np.ones((32, 8), dtype=np.float32)
        signs[:, 0] = signs[:, 3] = -1
        x = (g[idx] * signs).reshape(-1)
        x[:8] = g[255] * signs[0]                   # contains 43 so the sub-block scale is exact
        for b in range(8):
            x[32 * b:32 * b + 8] = g[255] * signs[0]
        y = quants.dequantize(mq.encode(x * 0.01, quants.IQ2_XXS), quants.IQ2_XXS, 256)
        np.testing.assert_allclose(y / y[0] * x[0], x, rtol=1e-6)


class TestActivationQuant(unittest.TestCase):
    def test_q8_0(self):
        x = np.linspace(-1, 1, 64).astype(np.float32)
        y = quants.q8_0_roundtrip(x)
        d = np.float16(1 / 127)
        self.assertTrue(np.all(np.abs(y - x) <= float(d) * 0.51 + 1e-6))
        self.assertEqual(y[0], -127 * float(d))
        np.testing.assert_array_equal(quants.q8_0_roundtrip(np.zeros(32)), np.zeros(32))
        q = np.arange(-16, 16).astype(np.float32)                 # integers with amax 16 -> d = 16/127
        y = quants.q8_0_roundtrip(q, f16_scale=False)
        np.testing.assert_allclose(y, np.rint(q / (16 / 127)) * np.float32(16 / 127), rtol=1e-6)

    def test_q8_k(self):
        x = RNG.standard_normal(512).astype(np.float32)
        y = quants.q8_k_roundtrip(x)
        for b in range(2):
            xb = x[256 * b:256 * b + 256]
            mx = xb[np.argmax(np.abs(xb))]
            d = 1 / (-127 / mx)
            self.assertTrue(np.all(np.abs(y[256 * b:256 * b + 256] - xb) <= abs(d) * 0.5 + 1e-6))
            self.assertAlmostEqual(float(y[256 * b + np.argmax(np.abs(xb))]), float(mx), places=5)
        np.testing.assert_array_equal(quants.q8_k_roundtrip(np.zeros(256)), np.zeros(256))


class TestMisc(unittest.TestCase):
    def test_rms_norm(self):
        x = np.array([3.0, 4.0])
        np.testing.assert_allclose(rms_norm(x, None, 0.0), x / math.sqrt(12.5))
        np.testing.assert_allclose(rms_norm(x, np.array([2.0, 0.5]), 0.0), x / math.sqrt(12.5) * [2, 0.5])

    def test_softplus_sigmoid(self):
        x = np.array([-30.0, -20.5, -1.0, 0.0, 3.0, 20.5, 50.0])
        sp = softplus(x)
        np.testing.assert_allclose(sp[[2, 3, 4]], np.log1p(np.exp(x[[2, 3, 4]])))
        self.assertEqual(sp[-1], 50.0)
        self.assertAlmostEqual(sp[0], math.exp(-30.0))
        np.testing.assert_allclose(sigmoid(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])

    def test_compressor_ratio4_overlap(self):
        D = 2
        c = Compressor(4, 2, D, np.float64)
        rows = []
        for pos in range(8):
            kv = np.array([pos, pos, 100 + pos, 100 + pos], dtype=np.float64)   # lane A | lane B
            out = c.push(kv, np.zeros(4), pos)
            if out is not None:
                rows.append(out)
        self.assertEqual(len(rows), 2)
        # window 0: only the current tokens' lane B (prev lane A empty): mean(100..103)
        np.testing.assert_allclose(rows[0], [101.5, 101.5])
        # window 1: lane A of tokens 0..3 (values 0..3) and lane B of tokens 4..7 (104..107)
        np.testing.assert_allclose(rows[1], [(0 + 1 + 2 + 3 + 104 + 105 + 106 + 107) / 8] * 2)

    def test_compressor_softmax_per_dim(self):
        c = Compressor(16, 1, 2, np.float64)
        out = None
        for pos in range(16):
            sc = np.array([0.0, 50.0 if pos == 5 else 0.0])
            out = c.push(np.array([pos, pos], dtype=np.float64), sc, pos)
            if pos < 15:
                self.assertIsNone(out)
        np.testing.assert_allclose(out, [7.5, 5.0])

    def test_steering_ops(self):
        v = np.array([3.0, 4.0]) / 5
        y = np.array([1.0, 2.0])
        np.testing.assert_allclose(apply_op("add", 2.0, v, y), y + 2 * v)
        p = apply_op("project", -1.0, 2 * v, y)  # removes the component, whatever |v|
        self.assertAlmostEqual(p @ v, 0.0)
        self.assertAlmostEqual(apply_op("project", 1.0, v, y) @ v, 2 * (y @ v))  # doubles it
        np.testing.assert_allclose(apply_op("ablate", 7.0, 2 * v, y), p)
        self.assertAlmostEqual(apply_op("clamp", 0.3, 2 * v, y) @ v, 0.6)  # 0.3 times |2v|
        Y = np.stack([y, 2 * y])
        np.testing.assert_allclose(apply_op("project", 0.5, v, Y)[1], apply_op("project", 0.5, v, 2 * y))
        st = [Steer("ffn_out", "add", {3: v}, 1.0, layers=(2, 4), positions=(0, 10))]
        np.testing.assert_allclose(apply_steering(st, "ffn_out", 3, 5, y), y + v)
        np.testing.assert_allclose(apply_steering(st, "ffn_out", 3, 10, y), y)
        np.testing.assert_allclose(apply_steering(st, "attn_out", 3, 5, y), y)


class TestGGUF(unittest.TestCase):
    def test_roundtrip(self):
        def s(x):
            b = x.encode()
            return struct.pack("<Q", len(b)) + b
        kv = [("general.architecture", 8, s("deepseek4")),
              ("a.u32", 4, struct.pack("<I", 7)),
              ("a.f32", 6, struct.pack("<f", 1.5)),
              ("a.bool", 7, b"\x01"),
              ("a.arr", 9, struct.pack("<IQ", 5, 3) + struct.pack("<3i", 0, 4, 16)),
              ("a.strs", 9, struct.pack("<IQ", 8, 2) + s("x") + s("yz")),
              ("general.alignment", 4, struct.pack("<I", 64))]
        t1 = np.arange(6, dtype="<f4").reshape(2, 3)
        t2 = np.array([1.0, -2.0], dtype="<f2")
        body = struct.pack("<IIQQ", 0x46554747, 3, 2, len(kv))
        for k, t, v in kv:
            body += s(k) + struct.pack("<I", t) + v
        body += s("t1") + struct.pack("<I", 2) + struct.pack("<QQ", 3, 2) + struct.pack("<IQ", 0, 0)
        body += s("t2") + struct.pack("<I", 1) + struct.pack("<Q", 2) + struct.pack("<IQ", 1, 64)
        pad = (-len(body)) % 64
        data = t1.tobytes() + b"\0" * (64 - 24) + t2.tobytes()
        with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as f:
            f.write(body + b"\0" * pad + data)
            path = f.name
        try:
            g = GGUFFile(path)
            self.assertEqual(g.metadata["general.architecture"], "deepseek4")
            self.assertEqual(g.metadata["a.u32"], 7)
            self.assertEqual(g.metadata["a.f32"], 1.5)
            self.assertEqual(g.metadata["a.bool"], True)
            self.assertEqual(list(g.metadata["a.arr"]), [0, 4, 16])
            self.assertEqual(g.metadata["a.strs"], ["x", "yz"])
            self.assertEqual(g.tensors["t1"].shape, (2, 3))
            np.testing.assert_array_equal(g.dequant("t1"), t1)
            np.testing.assert_array_equal(g.dequant("t2"), [1.0, -2.0])
            del g
        finally:
            os.unlink(path)


class TestTinyModel(unittest.TestCase):
    """Smoke test on the tiny F32 model if present (DS4_TINY_MODEL or /work/models/tiny-f32.gguf)."""
    path = os.environ.get("DS4_TINY_MODEL", "/work/models/tiny-f32.gguf")

    @unittest.skipUnless(os.path.exists(path), "tiny model not found")
    def test_incremental_equals_full(self):
        import ds4_ref
        m = ds4_ref.Model(self.path)
        toks = [5, 17, 300, 2, 9, 1000, 44, 3, 8, 8, 8, 12, 600, 7, 1, 0, 33, 21]
        full = m.logits(toks)
        st = m.new_state()
        part = m.logits(toks[:7], state=st)
        rest = m.logits(toks[7:], state=st)
        np.testing.assert_array_equal(np.concatenate([part, rest]), full)
        self.assertTrue(np.all(np.isfinite(full)))
        # steering with scale 0 / zero directions is a no-op; project on ffn_out changes logits
        d = np.zeros((m.cfg.n_layer, m.cfg.n_embd))
        np.testing.assert_array_equal(m.logits(toks[:4], steering=[ds4_ref.Steer("ffn_out", "project", d)]),
                                      full[:4])
        d[2] = RNG.standard_normal(m.cfg.n_embd)
        d[2] /= np.linalg.norm(d[2])
        steered = m.logits(toks[:4], steering=[ds4_ref.Steer("ffn_out", "project", d, 1.0)])
        self.assertGreater(np.abs(steered - full[:4]).max(), 1e-4)


if __name__ == "__main__":
    unittest.main()
