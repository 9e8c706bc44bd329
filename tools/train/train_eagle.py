#!/usr/bin/env python3
"""Trains an EAGLE draft head for a LLaMA-family target from eagle-datagen shards, and exports it
in the published layout (config.json + model.safetensors, official tensor names, plus the reduced
draft vocabulary as d2t), loadable by eagle-cli --draft with no conversion.

--arch eagle1 (default), the EAGLE-1 recipe (../shared/docs/eagle.md section 5.2, adapted to
CPU-sized data); the head serves EAGLE-1 static and EAGLE-2 dynamic trees:
  input  (f_t + uniform noise, x_{t+1})  ->  head  ->  f_hat_{t+1}
  loss = SmoothL1(f_hat, f_{t+1}) + 0.1 * CE(softmax(lm_head(f_{t+1})) || lm_head(f_hat))
over response positions; the LM head is the target's, restricted to the draft vocabulary (the
most frequent response tokens).
--arch eagle3, the EAGLE-3 recipe (section 5.3): the input is fc(inputs of target layers 2, L/2,
L-3), which needs shards from `eagle-datagen --eagle3 1`; the head has its own final norm and LM
head over the draft vocabulary (started from the target's rows) and is trained on the token
cross-entropy only (positions whose next token is in the draft vocabulary); exported with
EAGLE-3's names (midlayer.*, norm, lm_head, d2t, t2d).
Both: AdamW, linear warm-up then cosine decay, gradient-value clipping 0.5. Training-time test
(EAGLE-3's idea, --ttt-steps K): the head is also unrolled K-1 more steps on its own outputs, with
the attention pattern of drafting, loss weights 0.8^(k-1). A head in the published layout is
written after every validation, so an interrupted run leaves one behind.
Validation: top-1 agreement of the draft's argmax with the target's at draft depths 1-3 on
held-out records (a fixed hash of each record's ordinal picks them, so a grown shard keeps the
split), and the chain tau they imply, 1 + a1 + a1 a2 + a1 a2 a3.

Example:
  python3 tools/train/train_eagle.py --data .cache/train/shard0.bin --out heads/smollm2-eagle \\
      --epochs 3 --threads 2
Needs: torch, numpy, safetensors, gguf (pip); matplotlib for the plots (optional).
"""
import argparse
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read_shard(path, limit=None):
    """(hidden, layers, records) from an eagle-datagen shard (common/eagle/train_data.h); each
    record is (tokens int32[n], prompt_len, features f16[n, H], layer features f16[n, L*H] or
    None), the first `limit` only if given. Version 2 shards (eagle-datagen --eagle3 1) hold the inputs of L target layers too."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:8] != b"EAGLEDT1":
            sys.exit(f"{path}: not an eagle-datagen shard")
        version, hidden, dtype, n_layers = struct.unpack("<4I", head[8:])
        if not ((version == 1 and n_layers == 0) or (version == 2 and 0 < n_layers <= 64)) or dtype != 1:
            sys.exit(f"{path}: unsupported version/dtype")
        layers = list(struct.unpack(f"<{n_layers}I", f.read(4 * n_layers))) if n_layers else []
        row = hidden * (1 + n_layers)
        records = []
        while limit is None or len(records) < limit:
            rh = f.read(16)
            if len(rh) < 16:
                break
            magic, n, prompt_len, crc = struct.unpack("<4I", rh)
            if magic != 0x52454344:
                sys.exit(f"{path}: bad record header")
            payload = f.read(n * 4 + n * row * 2)
            if len(payload) < n * 4 + n * row * 2:
                break  # torn tail of a running writer
            if zlib.crc32(payload) != crc:
                sys.exit(f"{path}: checksum mismatch")
            toks = np.frombuffer(payload[: n * 4], dtype=np.int32)
            feats = np.frombuffer(payload[n * 4: n * 4 + n * hidden * 2], dtype=np.float16).reshape(n, hidden)
            lf = (np.frombuffer(payload[n * 4 + n * hidden * 2:], dtype=np.float16).reshape(n, n_layers * hidden)
                  if n_layers else None)
            records.append((toks, prompt_len, feats, lf))
    return hidden, layers, records


def load_target_weights(gguf_path):
    """Embedding [V, H] and LM head [V, H] (tied for SmolLM2) as float32, from the GGUF."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    r = GGUFReader(gguf_path)
    tensors = {t.name: t for t in r.tensors}
    def get(name):
        t = tensors[name]
        return np.ascontiguousarray(dequantize(t.data, t.tensor_type).reshape(
            [int(x) for x in reversed(t.shape)]).astype(np.float32))
    emb = get("token_embd.weight")
    head = get("output.weight") if "output.weight" in tensors else emb
    meta = {k: r.fields[k] for k in r.fields}
    def scalar(key, default):
        if key not in meta:
            return default
        fld = meta[key]
        return fld.parts[fld.data[0]].tolist()[0]
    cfg = {"heads": scalar("llama.attention.head_count", 9), "kv_heads": scalar("llama.attention.head_count_kv", 3),
           "ffn": scalar("llama.feed_forward_length", 1536), "eps": scalar("llama.attention.layer_norm_rms_epsilon", 1e-5),
           "rope_theta": scalar("llama.rope.freq_base", 10000.0), "ctx": scalar("llama.context_length", 2048),
           "L": scalar("llama.block_count", 0)}
    return emb, head, cfg


class RMSNorm(torch.nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(h))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = pos[:, None].float() * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def ttt_attention(q, keys, values, k, d):
    """Attention of unrolled step k (1-based) with the pattern of drafting. q [B, h, S, d]; keys and
    values hold steps 1..k, each [B, h, S, d]. Step 1 is causal. Step k > 1 at position t sees
    step-1 keys at positions <= t-k+1 (the committed prefix) and the step-j key at position t-k+j
    for j = 2..k (its own draft ancestors)."""
    s = q.shape[2]
    if k == 1:
        return F.scaled_dot_product_attention(q, keys[0], values[0], is_causal=True)
    scale = 1.0 / math.sqrt(d)
    s1 = (q @ keys[0].transpose(-1, -2)) * scale  # [B, h, S, S]
    allowed = torch.ones(s, s, dtype=torch.bool).tril(-(k - 1))
    s1 = s1.masked_fill(~allowed, float("-inf"))
    diag_scores, diag_values = [], []
    for j in range(2, k + 1):
        shift = k - j  # step-j key at position t - shift
        kj = torch.cat([torch.zeros_like(keys[j - 1][:, :, :shift]), keys[j - 1][:, :, : s - shift]], 2)
        vj = torch.cat([torch.zeros_like(values[j - 1][:, :, :shift]), values[j - 1][:, :, : s - shift]], 2)
        diag_scores.append(((q * kj).sum(-1, keepdim=True)) * scale)
        diag_values.append(vj)
    sc = torch.cat([s1] + diag_scores, -1)
    # Rows with no visible prefix (t < k-1) are invalid (masked out of the loss): keep them finite.
    sc = torch.nan_to_num(sc, neginf=-1e30)
    w = torch.softmax(sc.float(), -1).to(q.dtype)
    att = w[..., :s] @ values[0]
    for j, vj in enumerate(diag_values):
        att = att + w[..., s + j: s + j + 1] * vj
    return att


class SoftCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy of logits [N, V] against target distributions [N, V] (rows summing to
    1): logsumexp(l) - sum(t * l). The gradient softmax(l) - t is formed in place from the saved
    exponentials, which saves log_softmax's output, the product tensor and two [N, V] passes of the
    autograd formulation (float32 arithmetic for 16-bit logits)."""

    @staticmethod
    def forward(ctx, logits, target):
        lf = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
        mx = lf.amax(-1, keepdim=True)
        e = torch.exp(lf - mx)
        s = e.sum(-1, keepdim=True)
        ctx.save_for_backward(e, s, target)
        ctx.dtype = logits.dtype
        return (mx + s.log()).squeeze(-1) - (target * lf).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        e, s, target = ctx.saved_tensors
        return e.div(s).sub_(target).mul_(grad[:, None]).to(ctx.dtype), None


class EagleHead(torch.nn.Module):
    """EAGLE-1/2 head: fc([E(x); f]) -> decoder layer without input norm; target embedding.
    Its outputs are features; the target's LM head turns them into tokens."""

    eagle3 = False

    def __init__(self, h, ffn, heads, kv_heads, eps, theta, emb, attn_in=None):
        super().__init__()
        self.h, self.heads, self.kv, self.d, self.theta = h, heads, kv_heads, h // heads, theta
        attn_in = attn_in or h
        self.embed = torch.nn.Embedding.from_pretrained(torch.from_numpy(emb), freeze=True)
        self.fc = torch.nn.Linear(2 * h, h, bias=True)
        self.q = torch.nn.Linear(attn_in, heads * self.d, bias=False)
        self.k = torch.nn.Linear(attn_in, kv_heads * self.d, bias=False)
        self.v = torch.nn.Linear(attn_in, kv_heads * self.d, bias=False)
        self.o = torch.nn.Linear(heads * self.d, h, bias=False)
        self.post_norm = RMSNorm(h, eps)
        self.gate = torch.nn.Linear(h, ffn, bias=False)
        self.up = torch.nn.Linear(h, ffn, bias=False)
        self.down = torch.nn.Linear(ffn, h, bias=False)

    def step_input(self, emb, x, first):
        """(attention input, residual) of one step from the token embeddings and the feature."""
        u = self.fc(torch.cat([emb, x], -1))
        return u, u

    def forward(self, tokens, feats, steps=1):
        """tokens [B, S] (x_{t+1}), feats [B, S, F] (the target's feature at t) -> [p_1, ..., p_steps],
        each [B, S, H].

        p_1[t] predicts the next feature from the target's. For k > 1 (training-time test), step k
        at position t takes the previous step's output p_{k-1}[t-1] instead, as drafting at depth k
        does, and attends as the drafter's KV cache lets it (ttt_attention). p_k[t] predicts the
        same target as p_1[t]; it is valid for t >= k-1.
        """
        b, s, _ = feats.shape
        pos = torch.arange(s)
        rep = self.heads // self.kv
        emb = self.embed(tokens)
        keys, values, preds = [], [], []
        inp = feats
        for k in range(1, steps + 1):
            if k > 1:
                inp = torch.cat([torch.zeros_like(preds[-1][:, :1]), preds[-1][:, :-1]], 1)
            z, resid = self.step_input(emb, inp, k == 1)
            q = rope(self.q(z).view(b, s, self.heads, self.d).transpose(1, 2), pos, self.theta)
            kk = rope(self.k(z).view(b, s, self.kv, self.d).transpose(1, 2), pos, self.theta)
            vv = self.v(z).view(b, s, self.kv, self.d).transpose(1, 2)
            keys.append(kk.repeat_interleave(rep, 1))
            values.append(vv.repeat_interleave(rep, 1))
            att = ttt_attention(q, keys, values, k, self.d)
            a = resid + self.o(att.transpose(1, 2).reshape(b, s, -1))
            xn = self.post_norm(a)
            preds.append(a + self.down(F.silu(self.gate(xn)) * self.up(xn)))
        return preds


class Eagle3Head(EagleHead):
    """EAGLE-3 head (../shared/docs/eagle.md 1.3): fc(3H -> H, no bias) fuses the target's low, mid
    and high layer inputs; the attention sees [RMSNorm(E(x)); RMSNorm(f)] (2H wide), the residual
    is f; its own final norm and LM head over the draft vocabulary; un-normalized outputs are fed
    to the next step."""

    eagle3 = True

    def __init__(self, h, ffn, heads, kv_heads, eps, theta, emb, n_fused, lm_rows):
        super().__init__(h, ffn, heads, kv_heads, eps, theta, emb, attn_in=2 * h)
        self.fc = torch.nn.Linear(n_fused * h, h, bias=False)
        self.input_norm = RMSNorm(h, eps)
        self.hidden_norm = RMSNorm(h, eps)
        self.norm = RMSNorm(h, eps)
        self.lm_head = torch.nn.Linear(h, lm_rows.shape[0], bias=False)
        with torch.no_grad():
            self.lm_head.weight.copy_(lm_rows)  # start from the target's LM head rows

    def step_input(self, emb, x, first):
        if first:
            x = self.fc(x)
        return torch.cat([self.input_norm(emb), self.hidden_norm(x)], -1), x

    def logits(self, g):
        return self.lm_head(self.norm(g))


def make_batches(records, max_len, batch_seqs, rng):
    """Batches of records of similar length (little padding), in random order."""
    order = rng.permutation(len(records))
    # Sort within windows of 64 batches by length, then shuffle the batches.
    window = 64 * batch_seqs
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda j: min(len(records[j][0]), max_len))
        batches += [chunk[i:i + batch_seqs] for i in range(0, len(chunk), batch_seqs)]
    for k in rng.permutation(len(batches)):
        yield [records[j] for j in batches[k]]


def collate(batch, max_len, noise, gen, eagle3=False):
    """Pairs (input feature at t, x_{t+1}) -> the target's final-norm feature f_{t+1} (whose LM-head
    distribution is the token at t+2); mask = response positions. The input feature is f_t, or with
    eagle3 the fused layer inputs at t. Also returns the recorded tokens x_{t+2} (-1 past the end)."""
    n = min(max_len, max(len(r[0]) for r in batch)) - 1
    h = batch[0][2].shape[1]
    width = batch[0][3].shape[1] if eagle3 else h
    toks = torch.zeros(len(batch), n, dtype=torch.long)
    nxt = torch.full((len(batch), n), -1, dtype=torch.long)
    fin = torch.zeros(len(batch), n, width)
    ftgt = torch.zeros(len(batch), n, h)
    mask = torch.zeros(len(batch), n)
    for i, (t, plen, f, lf) in enumerate(batch):
        m = min(len(t), max_len) - 1
        ff = torch.from_numpy(f[: m + 1].astype(np.float32))
        toks[i, :m] = torch.from_numpy(t[1: m + 1].astype(np.int64))
        nxt[i, : m - 1] = torch.from_numpy(t[2: m + 1].astype(np.int64))
        fin[i, :m] = torch.from_numpy(lf[:m].astype(np.float32)) if eagle3 else ff[:m]
        ftgt[i, :m] = ff[1: m + 1]
        pos = torch.arange(1, m + 1)
        mask[i, :m] = (pos >= plen).float()
    if noise > 0:
        fin = fin + (torch.rand(fin.shape, generator=gen) - 0.5) * 2 * noise
    return toks, fin, ftgt, mask, nxt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="eagle-datagen shard files")
    ap.add_argument("--arch", choices=["eagle1", "eagle3"], default="eagle1",
                    help="eagle1: EAGLE-1/2 head on the final-norm feature (feature regression + token "
                         "CE); eagle3: EAGLE-3 head on the fused inputs of three target layers (token CE "
                         "only, own LM head), needs shards from eagle-datagen --eagle3 1")
    ap.add_argument("--gguf", default=os.path.join(ROOT, ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                    help="target GGUF (embedding, LM head and shapes come from it)")
    ap.add_argument("--out", required=True, help="output head directory")
    ap.add_argument("--epochs", type=float, default=3, help="passes over the training records")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    ap.add_argument("--batch-seqs", type=int, default=8, help="sequences per step")
    ap.add_argument("--max-len", type=int, default=512, help="sequence length cap")
    ap.add_argument("--draft-vocab", type=int, default=8192, help="draft vocabulary size (0 = full)")
    ap.add_argument("--noise", type=float, default=None,
                    help="uniform input-feature noise half-width (default 0.1 for eagle1, 0 for eagle3)")
    ap.add_argument("--p-weight", type=float, default=0.1, help="weight of the token cross-entropy")
    ap.add_argument("--val-frac", type=float, default=0.05, help="fraction of records held out")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--ttt-steps", type=int, default=1,
                    help="training-time test (EAGLE-3): unroll the head this many draft steps on its own "
                         "predicted features; 1 = the EAGLE-1 recipe")
    ap.add_argument("--ttt-decay", type=float, default=0.8, help="weight of unrolled step k: decay^(k-1)")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast for the head's matmuls (faster on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=100, help="validate every N steps")
    ap.add_argument("--max-records", type=int, default=0,
                    help="use only the first N records of the shards (0 = all), e.g. to retrace a stage "
                         "of a head trained while the shard was smaller")
    ap.add_argument("--init", default="",
                    help="start from this exported head (same --arch; its draft vocabulary is kept), "
                         "e.g. to go on training on a grown shard")
    args = ap.parse_args()
    eagle3 = args.arch == "eagle3"
    if args.noise is None:
        args.noise = 0.0 if eagle3 else 0.1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    records = []
    hidden, layers = None, None
    for path in args.data:
        if args.max_records and len(records) >= args.max_records:
            break
        h, lay, recs = read_shard(path, args.max_records - len(records) if args.max_records else None)
        if hidden is not None and (h, lay) != (hidden, layers):
            sys.exit(f"{path}: hidden size/layers {h}/{lay} differ from the other shards' {hidden}/{layers}")
        hidden, layers = h, lay
        records += recs
    args.layers = layers
    if eagle3 and len(layers) != 3:
        sys.exit("--arch eagle3 needs shards with three captured layers (eagle-datagen --eagle3 1)")
    # Held-out split by each record's ordinal in the shards (a multiplicative hash), so records
    # appended later by a resumed eagle-datagen never move a record between the splits.
    is_val = [((i * 2654435761) % 2**32) / 2**32 < args.val_frac for i in range(len(records))]
    val = [r for r, v in zip(records, is_val) if v]
    train = [r for r, v in zip(records, is_val) if not v]
    if not val or not train:
        sys.exit(f"{len(records)} records give {len(train)} training and {len(val)} validation records: "
                 "generate more or change --val-frac")
    n_tok = sum(len(r[0]) for r in train)
    n_resp = sum(len(r[0]) - r[1] for r in train)
    print(f"{len(train)} training records ({n_tok} tokens, {n_resp} response tokens), {len(val)} validation")

    emb, lm_head_np, cfg = load_target_weights(args.gguf)
    vocab = emb.shape[0]
    # Draft vocabulary: the most frequent response tokens (plus the end-of-turn tokens).
    counts = np.zeros(vocab, dtype=np.int64)
    for t, p, *_ in train:
        np.add.at(counts, t[p:], 1)
    nd = vocab if args.draft_vocab <= 0 else min(args.draft_vocab, vocab)
    ids = np.sort(np.argsort(-counts, kind="stable")[:nd]).astype(np.int64)
    init = load_head(args.init, eagle3, vocab) if args.init else None
    if init is not None:
        ids = init[1]
    coverage = counts[ids].sum() / max(1, counts.sum())
    print(f"draft vocabulary: {len(ids)} tokens cover {100 * coverage:.2f}% of response tokens")
    lm_sub = torch.from_numpy(lm_head_np[ids])  # [Vd, H]

    in_draft = torch.zeros(vocab + 1, dtype=torch.bool)  # index -1 (no next token): False
    in_draft[torch.from_numpy(ids)] = True
    if eagle3:
        if cfg["L"] and layers != [2, cfg["L"] // 2, cfg["L"] - 3]:
            sys.exit(f"shard layers {layers} are not EAGLE-3's [2, L/2, L-3] for L = {cfg['L']}")
        model = Eagle3Head(hidden, cfg["ffn"], cfg["heads"], cfg["kv_heads"], cfg["eps"], cfg["rope_theta"], emb,
                           len(layers), lm_sub.clone())
    else:
        model = EagleHead(hidden, cfg["ffn"], cfg["heads"], cfg["kv_heads"], cfg["eps"], cfg["rope_theta"], emb)
    if init is not None:
        missing, unexpected = model.load_state_dict(init[0], strict=False)
        if unexpected or set(missing) != {"embed.weight"}:
            sys.exit(f"{args.init}: does not fit this head (missing {missing}, unexpected {unexpected})")
        print(f"started from {args.init}")
    pw = 1.0 if eagle3 else args.p_weight
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    print(f"head parameters: {sum(p.numel() for p in params) / 1e6:.2f} M")
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / args.batch_seqs)
    total = max(1, int(steps_per_epoch * args.epochs))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    gen = torch.Generator().manual_seed(args.seed)

    def losses(toks, fin, ftgt, mask, nxt, steps):
        """Per unrolled step k: feature SmoothL1 (eagle1; 0 for eagle3), token soft CE, top-1
        agreement (response positions t >= k-1 only). eagle3, as EAGLE-3's trainer: the token loss
        skips positions whose next token is outside the draft vocabulary."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            preds = model(toks, fin, steps)
        out = []
        # The target's distribution and argmax over the draft vocabulary at every response position,
        # computed once for all unrolled steps (step k drops the first k-1 positions).
        sel_all = mask.reshape(-1) > 0
        with torch.no_grad():
            tgt_logits_all = ftgt.reshape(-1, ftgt.shape[-1])[sel_all] @ lm_sub.T
            tgt_p_all = torch.softmax(tgt_logits_all, -1)
            tgt_top_all = tgt_logits_all.argmax(-1)
        # Every step's token loss runs over the same rows (sel_all); step k weighs out its first k-1
        # positions instead of indexing them away, so the [N, Vd] target rows are never copied.
        pos_all = torch.arange(mask.shape[1]).expand_as(mask).reshape(-1)[sel_all]
        ok_all = in_draft[nxt.reshape(-1)[sel_all]] if eagle3 else None
        for k, pred in enumerate(preds, start=1):
            pred = pred.float()
            m = mask.clone()
            m[:, : k - 1] = 0
            if eagle3:
                vloss = torch.zeros(())
            else:
                vloss = (F.smooth_l1_loss(pred, ftgt, reduction="none").mean(-1) * m).sum() / m.sum().clamp(min=1)
            keep = pos_all >= k - 1
            n = max(int(keep.sum()), 1)
            p_sel = pred.reshape(-1, pred.shape[-1])[sel_all]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model.logits(p_sel) if eagle3 else p_sel @ lm_sub.T
            row = SoftCrossEntropy.apply(logits, tgt_p_all)
            # eagle3, as EAGLE-3's trainer: the token loss skips positions whose next token is
            # outside the draft vocabulary.
            w = (keep & ok_all).float() if eagle3 else keep.float()
            ploss = (row * w).sum() / w.sum().clamp(min=1)
            hit = (logits.detach().max(-1).indices == tgt_top_all) & keep
            acc = hit.float().sum() / n
            out.append((vloss, ploss, acc, float(n)))
        return out

    def validate():
        """Validation losses and top-1 agreement at each draft depth 1..3 (depth d: the head's own
        predictions as inputs, as when drafting), and the chain tau they imply:
        1 + a1 + a1 a2 + a1 a2 a3."""
        model.eval()
        depth = 3
        tot = [{"v": 0.0, "p": 0.0, "acc": 0.0, "n": 0.0} for _ in range(depth)]
        with torch.no_grad():
            for batch in make_batches(val, args.max_len, args.batch_seqs, np.random.default_rng(0)):
                toks, fin, ftgt, mask, nxt = collate(batch, args.max_len, 0.0, gen, eagle3)
                for d, (v, p, a, w) in enumerate(losses(toks, fin, ftgt, mask, nxt, depth)):
                    tot[d]["v"] += v.item() * w
                    tot[d]["p"] += p.item() * w
                    tot[d]["acc"] += a.item() * w
                    tot[d]["n"] += w
        model.train()
        accs = [t["acc"] / max(t["n"], 1) for t in tot]
        tau, prod = 1.0, 1.0
        for a in accs:
            prod *= a
            tau += prod
        return tot[0]["v"] / max(tot[0]["n"], 1), tot[0]["p"] / max(tot[0]["n"], 1), accs, tau

    # A run that goes on from an exported head continues that head's history (its steps first), so
    # the history and the plot cover every stage; a "stage" entry marks where each run began.
    history, offset = [], 0
    prior = os.path.join(args.init, "training_history.json") if args.init else ""
    if prior and os.path.exists(prior):
        history = json.load(open(prior))
        offset = max((h["step"] for h in history), default=0)
        if not any("stage" in h for h in history):  # a head from before stages were recorded
            history.insert(0, {"step": 0, "stage": 1, "init": ""})
    history.append({"step": offset, "stage": 1 + sum(1 for h in history if "stage" in h),
                    "train_records": len(train), "response_tokens": n_resp, "lr": args.lr,
                    "epochs": args.epochs, "init": args.init})
    step = 0
    start = time.time()
    def val_record(step, vv):
        return {"step": offset + step, "val_vloss": vv[0], "val_ploss": vv[1], "val_acc": vv[2][0],
                "val_acc_by_depth": vv[2], "val_tau3": vv[3]}

    def val_line(step, vv):
        return (f"step {step}: val vloss {vv[0]:.4f} ploss {vv[1]:.3f} top-1 by depth "
                f"{' '.join(f'{a:.3f}' for a in vv[2])} tau(chain 3) {vv[3]:.2f}")

    v0 = validate()
    history.append(val_record(0, v0))
    print(val_line(0, v0))
    epoch = 0
    while step < total:
        for batch in make_batches(train, args.max_len, args.batch_seqs, rng):
            if step >= total:
                break
            toks, fin, ftgt, mask, nxt = collate(batch, args.max_len, args.noise, gen, eagle3)
            per_step = losses(toks, fin, ftgt, mask, nxt, args.ttt_steps)
            loss = sum((args.ttt_decay ** k) * (v + pw * p) for k, (v, p, _, _) in enumerate(per_step))
            v, p, a, _ = per_step[0]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, 0.5)
            opt.step()
            sched.step()
            step += 1
            el = time.time() - start
            rec = {"step": offset + step, "loss": loss.item(), "vloss": v.item(), "ploss": p.item(), "acc": a.item()}
            if step % args.eval_every == 0 or step == total:
                vv = validate()
                rec.update(val_record(step, vv))
                print("\n" + val_line(step, vv))
            history.append(rec)
            if "val_acc" in rec and step < total:
                # A usable head after every validation, so an interrupted run leaves one behind.
                export(model, args, hidden, cfg, vocab, ids, history, time.time() - start, len(train), n_tok,
                       n_resp, coverage, len(val), quiet=True)
            eta = el / step * (total - step)
            print(f"\r[{step}/{total}] epoch {epoch} loss {loss.item():.4f} (v {v.item():.4f} p {p.item():.3f}) "
                  f"acc {a.item():.3f} lr {sched.get_last_lr()[0]:.2e} {el / 60:.1f} min, ETA {eta / 60:.1f} min",
                  end="", flush=True)
        epoch += 1
    print()
    elapsed = time.time() - start
    export(model, args, hidden, cfg, vocab, ids, history, elapsed, len(train), n_tok, n_resp, coverage, len(val))


def plot_history(plt, history, p_weight, path):
    """Loss (raw and a 200-step running mean) and validation top-1 by depth and implied tau
    against the step; dotted lines and labels mark where each later stage began."""
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    tr = [h for h in history if "loss" in h]
    va = [h for h in history if "val_acc" in h]
    stages = [h for h in history if "stage" in h]
    steps, loss = np.array([h["step"] for h in tr]), np.array([h["loss"] for h in tr])
    ax[0].plot(steps, loss, lw=0.4, alpha=0.35, color="tab:blue", label="train loss")
    if len(loss) >= 200:
        mean = np.convolve(loss, np.ones(200) / 200, mode="valid")
        ax[0].plot(steps[199:], mean, lw=1.2, color="tab:blue", label="train loss, 200-step mean")
    ax[0].plot([h["step"] for h in va], [h["val_vloss"] + p_weight * h["val_ploss"] for h in va], "o-", ms=3,
               color="tab:orange", label="val loss")
    ax[0].set_xlabel("step"); ax[0].set_yscale("log"); ax[0].legend(loc="upper right"); ax[0].set_title("loss")
    for d in range(len(va[-1]["val_acc_by_depth"])):
        ax[1].plot([h["step"] for h in va], [h["val_acc_by_depth"][d] for h in va], "o-", ms=3,
                   label=f"val top-1, depth {d + 1}")
    ax2 = ax[1].twinx()
    ax2.plot([h["step"] for h in va], [h["val_tau3"] for h in va], "s--", color="k", ms=3, label="implied tau (chain 3)")
    ax2.set_ylabel("tau"); ax2.legend(loc="upper left")
    ax[1].set_xlabel("step"); ax[1].set_title("validation top-1 and implied tau"); ax[1].legend(loc="lower right")
    for h in stages[1:]:
        for a in ax:
            a.axvline(h["step"], color="gray", ls=":", lw=1)
        ax[0].annotate(f" stage {h['stage']}: {h.get('train_records', '?')} records", (h["step"], 0.03),
                       xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="left", fontsize=7,
                       color="dimgray", bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_head(path, eagle3, vocab):
    """(state dict in this trainer's names, draft vocabulary ids) of a head exported by export()."""
    from safetensors.torch import load_file
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    if ("draft_vocab_size" in cfg) != eagle3:
        sys.exit(f"{path}: not an {'EAGLE-3' if eagle3 else 'EAGLE-1/2'} head (see --arch)")
    t = load_file(os.path.join(path, "model.safetensors"))
    d2t = t.pop("d2t", None)
    t.pop("t2d", None)
    ids = (np.arange(len(d2t), dtype=np.int64) + d2t.numpy()) if d2t is not None else np.arange(vocab, dtype=np.int64)
    prefix = "midlayer." if eagle3 else "layers.0."
    names = {"self_attn.q_proj.weight": "q.weight", "self_attn.k_proj.weight": "k.weight",
             "self_attn.v_proj.weight": "v.weight", "self_attn.o_proj.weight": "o.weight",
             "post_attention_layernorm.weight": "post_norm.weight", "mlp.gate_proj.weight": "gate.weight",
             "mlp.up_proj.weight": "up.weight", "mlp.down_proj.weight": "down.weight",
             "input_layernorm.weight": "input_norm.weight", "hidden_norm.weight": "hidden_norm.weight"}
    sd = {}
    for k, v in t.items():
        if k.startswith(prefix) and k[len(prefix):] in names:
            sd[names[k[len(prefix):]]] = v.float()
        else:
            sd[k] = v.float()  # fc.*, norm.weight, lm_head.weight keep their names
    return sd, ids


def export(model, args, hidden, cfg, vocab, ids, history, elapsed, n_train, n_tok, n_resp, coverage, n_val,
           quiet=False):
    from safetensors.torch import save_file
    os.makedirs(args.out, exist_ok=True)
    sd = model.state_dict()
    base = {"fc.weight": sd["fc.weight"],
            "self_attn.q_proj.weight": sd["q.weight"], "self_attn.k_proj.weight": sd["k.weight"],
            "self_attn.v_proj.weight": sd["v.weight"], "self_attn.o_proj.weight": sd["o.weight"],
            "post_attention_layernorm.weight": sd["post_norm.weight"],
            "mlp.gate_proj.weight": sd["gate.weight"], "mlp.up_proj.weight": sd["up.weight"],
            "mlp.down_proj.weight": sd["down.weight"]}
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": cfg["ffn"],
              "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["kv_heads"], "num_hidden_layers": 1,
              "vocab_size": vocab, "rms_norm_eps": cfg["eps"], "rope_theta": cfg["rope_theta"],
              "max_position_embeddings": cfg["ctx"], "torch_dtype": "float16"}
    if model.eagle3:
        # EAGLE-3's published names (midlayer.*, own norm and lm_head, d2t and t2d).
        out = {("fc.weight" if k == "fc.weight" else "midlayer." + k): v for k, v in base.items()}
        out.update({"midlayer.input_layernorm.weight": sd["input_norm.weight"],
                    "midlayer.hidden_norm.weight": sd["hidden_norm.weight"],
                    "norm.weight": sd["norm.weight"], "lm_head.weight": sd["lm_head.weight"]})
        out = {k: v.float().contiguous() if k.endswith("norm.weight") else v.to(torch.float16).contiguous()
               for k, v in out.items()}
        out["d2t"] = torch.from_numpy(ids - np.arange(len(ids), dtype=np.int64))
        t2d = np.zeros(vocab, dtype=bool)
        t2d[ids] = True
        out["t2d"] = torch.from_numpy(t2d)
        config.update({"architectures": ["LlamaForCausalLMEagle3"], "draft_vocab_size": int(len(ids)),
                       "target_hidden_size": hidden, "bias": False})
    else:
        out = {("fc.weight" if k == "fc.weight" else "layers.0." + k): v for k, v in base.items()}
        out = {k: v.to(torch.float16).contiguous() for k, v in out.items()}
        out["layers.0.post_attention_layernorm.weight"] = sd["post_norm.weight"].float().contiguous()
        out["fc.bias"] = sd["fc.bias"].float().contiguous()
        if len(ids) < vocab:
            out["d2t"] = torch.from_numpy(ids - np.arange(len(ids), dtype=np.int64))
        config.update({"bias": True, "eagle_draft_vocab_size": int(len(ids))})
    save_file(out, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    json.dump(history, open(os.path.join(args.out, "training_history.json"), "w"))
    last = [h for h in history if "val_acc" in h][-1]
    if model.eagle3:
        title = "EAGLE-3 head"
        recipe = (f"soft cross-entropy against the target's distribution over the draft vocabulary "
                  f"(positions whose next token is in it), input = fc(inputs of target layers {args.layers}), "
                  f"uniform noise +-{args.noise}")
    else:
        title = "EAGLE-1/2 head"
        recipe = f"SmoothL1 on features + {args.p_weight} x soft cross-entropy, uniform noise +-{args.noise}"
    stages = [h for h in history if "stage" in h]
    stage_lines = "".join(
        f"- stage {h['stage']} of {len(stages)} began at step {h['step']}: {h.get('train_records', '?')} training "
        f"records ({h.get('response_tokens', '?')} response tokens), lr {h.get('lr', '?')}, {h.get('epochs', '?')} epochs"
        + (f", from {h['init']}" if h["init"] else "") + "\n" for h in stages) if len(stages) > 1 else ""
    with open(os.path.join(args.out, "TRAINING.md"), "w") as f:
        f.write(f"""# {title} for SmolLM2-135M-Instruct

Made by `tools/train/train_eagle.py` from `eagle-datagen` shards (self-distilled: the target's own
greedy and sampled (T=0.7, top-p 0.95, every third prompt) responses to prompts from
`../shared/data/train`, held-out split `tests/data/heldout_prompts.jsonl` excluded).

- data: {n_train} training records ({n_tok} tokens, {n_resp} response tokens), {n_val} validation records
- draft vocabulary: {len(ids)} most frequent response tokens ({100 * coverage:.2f}% of response tokens)
- recipe: {recipe},
  AdamW lr {args.lr} (warm-up {args.warmup}, cosine), batch {args.batch_seqs} sequences, max length {args.max_len},
  clip value 0.5, {args.epochs} epochs = {history[-1]['step'] - stages[-1]['step']} steps
{stage_lines}- time: {elapsed / 60:.1f} min on {torch.get_num_threads()} CPU threads
- training-time test: {args.ttt_steps} unrolled step(s), weights {args.ttt_decay}^(k-1); bf16 autocast: {args.bf16}
- final validation: feature SmoothL1 {last['val_vloss']:.4f}, token CE {last['val_ploss']:.3f}, top-1 agreement
  with the target at draft depth 1/2/3 (the head fed its own predictions beyond depth 1)
  {' / '.join(f'{a:.3f}' for a in last['val_acc_by_depth'])}, implied chain tau (depth 3) {last['val_tau3']:.2f}
- command: `python3 tools/train/train_eagle.py {' '.join(sys.argv[1:])}`
""")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plot_history(plt, history, args.p_weight, os.path.join(args.out, "training.png"))
    except ImportError:
        print("matplotlib not installed: no plot")
    if not quiet:
        print(f"exported {args.out}")


if __name__ == "__main__":
    main()
