#!/usr/bin/env python3
"""Tests of the draft-head trainer (tools/train/train_eagle.py): the fused soft cross-entropy
against autograd's log_softmax formulation, the training-time-test attention mask against a
per-position reference, the shard reader's refusal of damaged files, and the export/load round
trip of the published layout. Exits 77 (ctest: skipped) where torch is not installed."""
import argparse
import os
import struct
import sys
import tempfile
import unittest
import zlib

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("torch/numpy not installed: skipped (scripts/train_default_head.sh makes .venv-train)")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "train"))
import train_eagle as te  # noqa: E402


class SoftCrossEntropyTest(unittest.TestCase):
    def test_matches_log_softmax_formulation(self):
        g = torch.Generator().manual_seed(1)
        logits = (torch.randn(37, 301, generator=g, dtype=torch.float64) * 4).requires_grad_()
        target = torch.softmax(torch.randn(37, 301, generator=g, dtype=torch.float64) * 3, -1)
        weight = torch.rand(37, generator=g).double()
        fused = (te.SoftCrossEntropy.apply(logits, target) * weight).sum()
        (g_fused,) = torch.autograd.grad(fused, logits)
        ref = (-(target * torch.log_softmax(logits, -1)).sum(-1) * weight).sum()
        (g_ref,) = torch.autograd.grad(ref, logits)
        self.assertLess(abs(fused.item() - ref.item()), 1e-9 * abs(ref.item()))
        self.assertLess((g_fused - g_ref).abs().max().item(), 1e-12)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(2)
        logits = torch.randn(5, 11, generator=g, dtype=torch.float64, requires_grad=True)
        target = torch.softmax(torch.randn(5, 11, generator=g, dtype=torch.float64), -1)
        self.assertTrue(torch.autograd.gradcheck(lambda x: te.SoftCrossEntropy.apply(x, target), (logits,)))

    def test_bfloat16_logits_get_bfloat16_gradients(self):
        logits = torch.randn(4, 64).bfloat16().requires_grad_()
        target = torch.softmax(torch.randn(4, 64), -1)
        te.SoftCrossEntropy.apply(logits, target).sum().backward()
        self.assertEqual(logits.grad.dtype, torch.bfloat16)
        # Each row's gradient is softmax - target, which sums to zero.
        self.assertLess(logits.grad.float().sum(-1).abs().max().item(), 0.02)

    def test_large_logits_stay_finite(self):
        logits = torch.tensor([[1e4, 0.0, -1e4]], requires_grad=True)
        target = torch.tensor([[0.5, 0.5, 0.0]])
        loss = te.SoftCrossEntropy.apply(logits, target)
        loss.sum().backward()
        self.assertAlmostEqual(loss.item(), 5e3, places=2)
        self.assertTrue(torch.isfinite(logits.grad).all())


class TttAttentionTest(unittest.TestCase):
    def reference(self, q, keys, values, k, d):
        """Position by position: step k at t sees step-1 keys at <= t-k+1 and the step-j key at t-k+j."""
        b, h, s, _ = q.shape
        out = torch.zeros_like(q)
        for t in range(s):
            ks, vs = [], []
            for u in range(0, t - k + 2):
                ks.append(keys[0][:, :, u])
                vs.append(values[0][:, :, u])
            for j in range(2, k + 1):
                u = t - k + j
                if u >= 0:
                    ks.append(keys[j - 1][:, :, u])
                    vs.append(values[j - 1][:, :, u])
            if not ks or t < k - 1:
                continue  # no committed prefix: the trainer masks these rows out of the loss
            kk, vv = torch.stack(ks, 2), torch.stack(vs, 2)
            w = torch.softmax((q[:, :, t:t + 1] @ kk.transpose(-1, -2)) / d ** 0.5, -1)
            out[:, :, t] = (w @ vv)[:, :, 0]
        return out

    def test_steps_match_reference(self):
        g = torch.Generator().manual_seed(3)
        b, h, s, d = 2, 3, 9, 8
        keys = [torch.randn(b, h, s, d, generator=g, dtype=torch.float64) for _ in range(3)]
        values = [torch.randn(b, h, s, d, generator=g, dtype=torch.float64) for _ in range(3)]
        q = torch.randn(b, h, s, d, generator=g, dtype=torch.float64)
        for k in (1, 2, 3):
            got = te.ttt_attention(q, keys[:k], values[:k], k, d)
            ref = self.reference(q, keys, values, k, d)
            # The trainer takes the softmax of steps > 1 in float32.
            self.assertLess((got[:, :, k - 1:] - ref[:, :, k - 1:]).abs().max().item(), 1e-5, f"step {k}")


def write_shard(path, hidden, records):
    with open(path, "wb") as f:
        f.write(b"EAGLEDT1" + struct.pack("<4I", 1, hidden, 1, 0))
        for toks, plen, feats in records:
            payload = np.asarray(toks, np.int32).tobytes() + np.asarray(feats, np.float16).tobytes()
            f.write(struct.pack("<4I", 0x52454344, len(toks), plen, zlib.crc32(payload)) + payload)


class ShardReaderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "s.bin")
        rng = np.random.default_rng(0)
        self.records = [([1, 2, 3, 4], 2, rng.standard_normal((4, 6))), ([5, 6, 7], 1, rng.standard_normal((3, 6)))]
        write_shard(self.path, 6, self.records)

    def tearDown(self):
        self.dir.cleanup()

    def test_reads_records(self):
        hidden, layers, recs = te.read_shard(self.path)
        self.assertEqual((hidden, layers, len(recs)), (6, [], 2))
        self.assertEqual(recs[1][0].tolist(), [5, 6, 7])
        self.assertEqual(recs[1][1], 1)
        np.testing.assert_array_equal(recs[0][2], self.records[0][2].astype(np.float16))
        self.assertEqual(len(te.read_shard(self.path, limit=1)[2]), 1)

    def test_torn_tail_is_dropped(self):
        size = os.path.getsize(self.path)
        with open(self.path, "r+b") as f:
            f.truncate(size - 5)
        self.assertEqual(len(te.read_shard(self.path)[2]), 1)

    def test_flipped_byte_is_refused(self):
        with open(self.path, "r+b") as f:
            f.seek(24 + 16 + 4)  # inside the first record's tokens
            f.write(b"\x7f")
        with self.assertRaises(SystemExit) as e:
            te.read_shard(self.path)
        self.assertIn("checksum", str(e.exception.code))

    def test_other_file_is_refused(self):
        with open(self.path, "r+b") as f:
            f.write(b"GGUF")
        with self.assertRaises(SystemExit) as e:
            te.read_shard(self.path)
        self.assertIn("not an eagle-datagen shard", str(e.exception.code))


class ExportTest(unittest.TestCase):
    def test_round_trip(self):
        torch.manual_seed(4)
        h, vocab = 16, 40
        emb = np.random.default_rng(1).standard_normal((vocab, h)).astype(np.float32)
        model = te.EagleHead(h, 24, 4, 2, 1e-5, 10000.0, emb)
        ids = np.array([0, 3, 4, 9, 17, 39], dtype=np.int64)
        with tempfile.TemporaryDirectory() as out:
            args = argparse.Namespace(out=out, p_weight=0.1, noise=0.1, lr=1e-3, warmup=1, batch_seqs=2, max_len=8,
                                      epochs=1, ttt_steps=2, ttt_decay=0.8, bf16=False, layers=[])
            history = [{"step": 0, "stage": 1, "init": ""},
                       {"step": 1, "val_vloss": 0.5, "val_ploss": 1.0, "val_acc": 0.4,
                        "val_acc_by_depth": [0.4, 0.3, 0.2], "val_tau3": 1.5}]
            cfg = {"ffn": 24, "heads": 4, "kv_heads": 2, "eps": 1e-5, "rope_theta": 10000.0, "ctx": 64}
            te.export(model, args, h, cfg, vocab, ids, history, 1.0, 10, 100, 50, 0.9, 2, quiet=True)
            from safetensors.torch import load_file
            names = set(load_file(os.path.join(out, "model.safetensors")))
            self.assertIn("layers.0.self_attn.q_proj.weight", names)
            self.assertIn("fc.bias", names)
            self.assertIn("d2t", names)
            sd, got_ids = te.load_head(out, False, vocab)
        np.testing.assert_array_equal(got_ids, ids)
        for name, p in model.state_dict().items():
            if name == "embed.weight":
                continue
            self.assertLess((sd[name] - p).abs().max().item(), 2e-3 * max(1.0, p.abs().max().item()), name)


if __name__ == "__main__":
    unittest.main()
