#!/usr/bin/env python3
"""Trains an EAGLE-1/2 draft head for a LLaMA-family target from eagle-datagen shards, and
exports it in the published layout (config.json + model.safetensors, official tensor names, plus
the reduced draft vocabulary as d2t), loadable by eagle-cli --draft with no conversion.

Recipe (EAGLE-1, ../shared/docs/eagle.md section 5.2, adapted to CPU-sized data):
  input  (f_t + uniform noise, x_{t+1})  ->  head  ->  f_hat_{t+1}
  loss = SmoothL1(f_hat, f_{t+1}) + 0.1 * CE(softmax(lm_head(f_{t+1})) || lm_head(f_hat))
over response positions; the LM head is restricted to the draft vocabulary (the most frequent
response tokens). AdamW, linear warm-up then cosine decay, gradient-value clipping 0.5.
Training-time test (EAGLE-3's idea, --ttt-steps K): the head is also unrolled K-1 more steps on
its own predicted features, with the attention pattern of drafting, loss weights 0.8^(k-1).
Validation: top-1 agreement of the draft's argmax with the target's at draft depths 1-3 on
held-out records, and the chain tau they imply, 1 + a1 + a1 a2 + a1 a2 a3.

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


def read_shard(path):
    """Yields (tokens int32[n], prompt_len, features f16[n, H]) from an eagle-datagen shard."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:8] != b"EAGLEDT1":
            sys.exit(f"{path}: not an eagle-datagen shard")
        version, hidden, dtype, _ = struct.unpack("<4I", head[8:])
        if version != 1 or dtype != 1:
            sys.exit(f"{path}: unsupported version/dtype")
        records = []
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                break
            magic, n, prompt_len, crc = struct.unpack("<4I", rh)
            if magic != 0x52454344:
                sys.exit(f"{path}: bad record header")
            payload = f.read(n * 4 + n * hidden * 2)
            if len(payload) < n * 4 + n * hidden * 2:
                break  # torn tail of a running writer
            if zlib.crc32(payload) != crc:
                sys.exit(f"{path}: checksum mismatch")
            toks = np.frombuffer(payload[: n * 4], dtype=np.int32)
            feats = np.frombuffer(payload[n * 4:], dtype=np.float16).reshape(n, hidden)
            records.append((toks, prompt_len, feats))
    return hidden, records


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
           "rope_theta": scalar("llama.rope.freq_base", 10000.0), "ctx": scalar("llama.context_length", 2048)}
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


class EagleHead(torch.nn.Module):
    """EAGLE-1/2 head: fc([E(x); f]) -> decoder layer without input norm; target embedding."""

    def __init__(self, h, ffn, heads, kv_heads, eps, theta, emb):
        super().__init__()
        self.h, self.heads, self.kv, self.d, self.theta = h, heads, kv_heads, h // heads, theta
        self.embed = torch.nn.Embedding.from_pretrained(torch.from_numpy(emb), freeze=True)
        self.fc = torch.nn.Linear(2 * h, h, bias=True)
        self.q = torch.nn.Linear(h, heads * self.d, bias=False)
        self.k = torch.nn.Linear(h, kv_heads * self.d, bias=False)
        self.v = torch.nn.Linear(h, kv_heads * self.d, bias=False)
        self.o = torch.nn.Linear(heads * self.d, h, bias=False)
        self.post_norm = RMSNorm(h, eps)
        self.gate = torch.nn.Linear(h, ffn, bias=False)
        self.up = torch.nn.Linear(h, ffn, bias=False)
        self.down = torch.nn.Linear(ffn, h, bias=False)

    def forward(self, tokens, feats, steps=1):
        """tokens [B, S] (x_{t+1}), feats [B, S, H] (f_t) -> [p_1, ..., p_steps], each [B, S, H].

        p_1[t] predicts f_{t+1} from the true f_t. For k > 1 (training-time test, EAGLE-3), step k
        at position t takes the previous step's prediction p_{k-1}[t-1] instead of f_t, as
        drafting at depth k does, and attends as the drafter's KV cache lets it: to step-1 keys at
        positions <= t-k+1 (the committed prefix) and to the step-j key at position t-k+j for
        j = 2..k (its own draft ancestors). p_k[t] also predicts f_{t+1}; it is valid for t >= k-1.
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
            u = self.fc(torch.cat([emb, inp], -1))
            q = rope(self.q(u).view(b, s, self.heads, self.d).transpose(1, 2), pos, self.theta)
            kk = rope(self.k(u).view(b, s, self.kv, self.d).transpose(1, 2), pos, self.theta)
            vv = self.v(u).view(b, s, self.kv, self.d).transpose(1, 2)
            kk, vv = kk.repeat_interleave(rep, 1), vv.repeat_interleave(rep, 1)
            keys.append(kk)
            values.append(vv)
            if k == 1:
                att = F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
            else:
                scale = 1.0 / math.sqrt(self.d)
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
                # Rows with no visible prefix (t < k-1) are invalid (masked out of the loss):
                # keep them finite.
                sc = torch.nan_to_num(sc, neginf=-1e30)
                w = torch.softmax(sc.float(), -1).to(q.dtype)
                att = w[..., :s] @ values[0]
                for j, vj in enumerate(diag_values):
                    att = att + w[..., s + j: s + j + 1] * vj
            a = u + self.o(att.transpose(1, 2).reshape(b, s, -1))
            xn = self.post_norm(a)
            preds.append(a + self.down(F.silu(self.gate(xn)) * self.up(xn)))
        return preds


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


def collate(batch, max_len, noise, gen):
    """Pairs (f_t, x_{t+1}) -> target f_{t+1}; mask = response positions."""
    n = min(max_len, max(len(t) for t, _, _ in batch)) - 1
    h = batch[0][2].shape[1]
    toks = torch.zeros(len(batch), n, dtype=torch.long)
    fin = torch.zeros(len(batch), n, h)
    ftgt = torch.zeros(len(batch), n, h)
    mask = torch.zeros(len(batch), n)
    for i, (t, plen, f) in enumerate(batch):
        m = min(len(t), max_len) - 1
        ff = torch.from_numpy(f[: m + 1].astype(np.float32))
        toks[i, :m] = torch.from_numpy(t[1: m + 1].astype(np.int64))
        fin[i, :m] = ff[:m]
        ftgt[i, :m] = ff[1: m + 1]
        pos = torch.arange(1, m + 1)
        mask[i, :m] = (pos >= plen).float()
    if noise > 0:
        fin = fin + (torch.rand(fin.shape, generator=gen) - 0.5) * 2 * noise
    return toks, fin, ftgt, mask


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="eagle-datagen shard files")
    ap.add_argument("--gguf", default=os.path.join(ROOT, ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                    help="target GGUF (embedding, LM head and shapes come from it)")
    ap.add_argument("--out", required=True, help="output head directory")
    ap.add_argument("--epochs", type=float, default=3, help="passes over the training records")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    ap.add_argument("--batch-seqs", type=int, default=8, help="sequences per step")
    ap.add_argument("--max-len", type=int, default=512, help="sequence length cap")
    ap.add_argument("--draft-vocab", type=int, default=8192, help="draft vocabulary size (0 = full)")
    ap.add_argument("--noise", type=float, default=0.1, help="uniform input-feature noise half-width")
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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    records = []
    hidden = None
    for path in args.data:
        hidden, recs = read_shard(path)
        records += recs
    rng.shuffle(records)
    n_val = max(1, int(len(records) * args.val_frac))
    val, train = records[:n_val], records[n_val:]
    n_tok = sum(len(t) for t, _, _ in train)
    n_resp = sum(len(t) - p for t, p, _ in train)
    print(f"{len(train)} training records ({n_tok} tokens, {n_resp} response tokens), {len(val)} validation")

    emb, lm_head_np, cfg = load_target_weights(args.gguf)
    vocab = emb.shape[0]
    # Draft vocabulary: the most frequent response tokens (plus the end-of-turn tokens).
    counts = np.zeros(vocab, dtype=np.int64)
    for t, p, _ in train:
        np.add.at(counts, t[p:], 1)
    nd = vocab if args.draft_vocab <= 0 else min(args.draft_vocab, vocab)
    ids = np.sort(np.argsort(-counts, kind="stable")[:nd]).astype(np.int64)
    coverage = counts[ids].sum() / max(1, counts.sum())
    print(f"draft vocabulary: {nd} tokens cover {100 * coverage:.2f}% of response tokens")
    lm_sub = torch.from_numpy(lm_head_np[ids])  # [Vd, H]

    model = EagleHead(hidden, cfg["ffn"], cfg["heads"], cfg["kv_heads"], cfg["eps"], cfg["rope_theta"], emb)
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    print(f"head parameters: {sum(p.numel() for p in params) / 1e6:.2f} M")
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / args.batch_seqs)
    total = max(1, int(steps_per_epoch * args.epochs))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    gen = torch.Generator().manual_seed(args.seed)

    def losses(toks, fin, ftgt, mask, steps):
        """Per unrolled step k: feature SmoothL1, token soft CE, top-1 agreement (response
        positions t >= k-1 only)."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            preds = model(toks, fin, steps)
        out = []
        for k, pred in enumerate(preds, start=1):
            pred = pred.float()
            m = mask.clone()
            m[:, : k - 1] = 0
            vloss = (F.smooth_l1_loss(pred, ftgt, reduction="none").mean(-1) * m).sum() / m.sum().clamp(min=1)
            # The token losses only at response positions (the LM head dominates the cost).
            sel = m.reshape(-1) > 0
            p_sel, t_sel = pred.reshape(-1, pred.shape[-1])[sel], ftgt.reshape(-1, ftgt.shape[-1])[sel]
            with torch.no_grad():
                tgt_logits = t_sel @ lm_sub.T
                tgt_p = torch.softmax(tgt_logits, -1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = p_sel @ lm_sub.T
            logp = torch.log_softmax(logits.float(), -1)
            n = max(int(sel.sum()), 1)
            ploss = -(tgt_p * logp).sum() / n
            acc = (logits.argmax(-1) == tgt_logits.argmax(-1)).float().sum() / n
            out.append((vloss, ploss, acc, float(sel.sum())))
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
                toks, fin, ftgt, mask = collate(batch, args.max_len, 0.0, gen)
                for d, (v, p, a, w) in enumerate(losses(toks, fin, ftgt, mask, depth)):
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

    history = []
    step = 0
    start = time.time()
    def val_record(step, vv):
        return {"step": step, "val_vloss": vv[0], "val_ploss": vv[1], "val_acc": vv[2][0],
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
            toks, fin, ftgt, mask = collate(batch, args.max_len, args.noise, gen)
            per_step = losses(toks, fin, ftgt, mask, args.ttt_steps)
            loss = sum((args.ttt_decay ** k) * (v + args.p_weight * p) for k, (v, p, _, _) in enumerate(per_step))
            v, p, a, _ = per_step[0]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, 0.5)
            opt.step()
            sched.step()
            step += 1
            el = time.time() - start
            rec = {"step": step, "loss": loss.item(), "vloss": v.item(), "ploss": p.item(), "acc": a.item()}
            if step % args.eval_every == 0 or step == total:
                vv = validate()
                rec.update(val_record(step, vv))
                print("\n" + val_line(step, vv))
            history.append(rec)
            eta = el / step * (total - step)
            print(f"\r[{step}/{total}] epoch {epoch} loss {loss.item():.4f} (v {v.item():.4f} p {p.item():.3f}) "
                  f"acc {a.item():.3f} lr {sched.get_last_lr()[0]:.2e} {el / 60:.1f} min, ETA {eta / 60:.1f} min",
                  end="", flush=True)
        epoch += 1
    print()
    elapsed = time.time() - start
    export(model, args, hidden, cfg, vocab, ids, history, elapsed, len(train), n_tok, n_resp, coverage, len(val))


def export(model, args, hidden, cfg, vocab, ids, history, elapsed, n_train, n_tok, n_resp, coverage, n_val):
    from safetensors.torch import save_file
    os.makedirs(args.out, exist_ok=True)
    sd = model.state_dict()
    out = {
        "fc.weight": sd["fc.weight"], "fc.bias": sd["fc.bias"],
        "layers.0.self_attn.q_proj.weight": sd["q.weight"],
        "layers.0.self_attn.k_proj.weight": sd["k.weight"],
        "layers.0.self_attn.v_proj.weight": sd["v.weight"],
        "layers.0.self_attn.o_proj.weight": sd["o.weight"],
        "layers.0.post_attention_layernorm.weight": sd["post_norm.weight"],
        "layers.0.mlp.gate_proj.weight": sd["gate.weight"],
        "layers.0.mlp.up_proj.weight": sd["up.weight"],
        "layers.0.mlp.down_proj.weight": sd["down.weight"],
    }
    out = {k: v.to(torch.float16).contiguous() for k, v in out.items()}
    out["layers.0.post_attention_layernorm.weight"] = sd["post_norm.weight"].float().contiguous()
    out["fc.bias"] = sd["fc.bias"].float().contiguous()
    if len(ids) < vocab:
        out["d2t"] = torch.from_numpy(ids - np.arange(len(ids), dtype=np.int64))
    save_file(out, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": hidden, "intermediate_size": cfg["ffn"],
              "num_attention_heads": cfg["heads"], "num_key_value_heads": cfg["kv_heads"], "num_hidden_layers": 1,
              "vocab_size": vocab, "rms_norm_eps": cfg["eps"], "rope_theta": cfg["rope_theta"],
              "max_position_embeddings": cfg["ctx"], "bias": True, "torch_dtype": "float16",
              "eagle_draft_vocab_size": int(len(ids))}
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    json.dump(history, open(os.path.join(args.out, "training_history.json"), "w"))
    last = [h for h in history if "val_acc" in h][-1]
    with open(os.path.join(args.out, "TRAINING.md"), "w") as f:
        f.write(f"""# EAGLE-1/2 head for SmolLM2-135M-Instruct

Made by `tools/train/train_eagle.py` from `eagle-datagen` shards (self-distilled: the target's own
greedy and sampled (T=0.7, top-p 0.95, every third prompt) responses to prompts from
`../shared/data/train`, held-out split `tests/data/heldout_prompts.jsonl` excluded).

- data: {n_train} training records ({n_tok} tokens, {n_resp} response tokens), {n_val} validation records
- draft vocabulary: {len(ids)} most frequent response tokens ({100 * coverage:.2f}% of response tokens)
- recipe: SmoothL1 on features + {args.p_weight} x soft cross-entropy, uniform noise +-{args.noise},
  AdamW lr {args.lr} (warm-up {args.warmup}, cosine), batch {args.batch_seqs} sequences, max length {args.max_len},
  clip value 0.5, {args.epochs} epochs = {history[-1]['step']} steps
- time: {elapsed / 60:.1f} min on {torch.get_num_threads()} CPU threads
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
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        tr = [h for h in history if "loss" in h]
        va = [h for h in history if "val_acc" in h]
        ax[0].plot([h["step"] for h in tr], [h["loss"] for h in tr], lw=0.6, label="train loss")
        ax[0].plot([h["step"] for h in va], [h["val_vloss"] + args.p_weight * h["val_ploss"] for h in va], "o-", label="val loss")
        ax[0].set_xlabel("step"); ax[0].set_yscale("log"); ax[0].legend(); ax[0].set_title("loss")
        for d in range(len(va[-1]["val_acc_by_depth"])):
            ax[1].plot([h["step"] for h in va], [h["val_acc_by_depth"][d] for h in va], "o-", ms=3,
                       label=f"val top-1, depth {d + 1}")
        ax2 = ax[1].twinx()
        ax2.plot([h["step"] for h in va], [h["val_tau3"] for h in va], "s--", color="k", ms=3, label="implied tau (chain 3)")
        ax2.set_ylabel("tau"); ax2.legend(loc="upper left")
        ax[1].set_xlabel("step"); ax[1].set_title("validation top-1 and implied tau"); ax[1].legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "training.png"), dpi=90)
    except ImportError:
        print("matplotlib not installed: no plot")
    print(f"exported {args.out}")


if __name__ == "__main__":
    main()
