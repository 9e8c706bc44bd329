#!/usr/bin/env python3
"""Trains an EAGLE-1/2 draft head for a LLaMA-family target from eagle-datagen shards, and
exports it in the published layout (config.json + model.safetensors, official tensor names, plus
the reduced draft vocabulary as d2t), loadable by eagle-cli --draft with no conversion.

Recipe (EAGLE-1, ../shared/docs/eagle.md section 5.2, adapted to CPU-sized data):
  input  (f_t + uniform noise, x_{t+1})  ->  head  ->  f_hat_{t+1}
  loss = SmoothL1(f_hat, f_{t+1}) + 0.1 * CE(softmax(lm_head(f_{t+1})) || lm_head(f_hat))
over response positions; the LM head is restricted to the draft vocabulary (the most frequent
response tokens). AdamW, linear warm-up then cosine decay, gradient-value clipping 0.5.
Validation: top-1 agreement of the draft's argmax with the target's (teacher-forced) on held-out
records, and the chain tau it implies, 1 + sum_{d=1..D} acc^d.

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

    def forward(self, tokens, feats):
        # tokens [B, S], feats [B, S, H] -> predicted features [B, S, H]
        b, s, _ = feats.shape
        u = self.fc(torch.cat([self.embed(tokens), feats], -1))
        pos = torch.arange(s)
        q = rope(self.q(u).view(b, s, self.heads, self.d).transpose(1, 2), pos, self.theta)
        k = rope(self.k(u).view(b, s, self.kv, self.d).transpose(1, 2), pos, self.theta)
        v = self.v(u).view(b, s, self.kv, self.d).transpose(1, 2)
        rep = self.heads // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = u + self.o(att.transpose(1, 2).reshape(b, s, -1))
        xn = self.post_norm(a)
        return a + self.down(F.silu(self.gate(xn)) * self.up(xn))


def make_batches(records, max_len, batch_seqs, rng):
    order = rng.permutation(len(records))
    for i in range(0, len(order), batch_seqs):
        yield [records[j] for j in order[i:i + batch_seqs]]


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

    def losses(toks, fin, ftgt, mask):
        pred = model(toks, fin)
        vloss = (F.smooth_l1_loss(pred, ftgt, reduction="none").mean(-1) * mask).sum() / mask.sum().clamp(min=1)
        with torch.no_grad():
            tgt_p = torch.softmax(ftgt @ lm_sub.T, -1)
        logp = torch.log_softmax(pred @ lm_sub.T, -1)
        ploss = (-(tgt_p * logp).sum(-1) * mask).sum() / mask.sum().clamp(min=1)
        acc = (((pred @ lm_sub.T).argmax(-1) == (ftgt @ lm_sub.T).argmax(-1)).float() * mask).sum() / mask.sum().clamp(min=1)
        return vloss, ploss, acc

    def validate():
        model.eval()
        tot = {"v": 0.0, "p": 0.0, "acc": 0.0, "n": 0.0}
        with torch.no_grad():
            for batch in make_batches(val, args.max_len, args.batch_seqs, np.random.default_rng(0)):
                toks, fin, ftgt, mask = collate(batch, args.max_len, 0.0, gen)
                v, p, a = losses(toks, fin, ftgt, mask)
                w = mask.sum().item()
                tot["v"] += v.item() * w
                tot["p"] += p.item() * w
                tot["acc"] += a.item() * w
                tot["n"] += w
        model.train()
        n = max(tot["n"], 1)
        acc = tot["acc"] / n
        return tot["v"] / n, tot["p"] / n, acc, 1 + sum(acc ** d for d in range(1, 6))

    history = []
    step = 0
    start = time.time()
    v0 = validate()
    history.append({"step": 0, "val_vloss": v0[0], "val_ploss": v0[1], "val_acc": v0[2], "val_tau5": v0[3]})
    print(f"step 0: val vloss {v0[0]:.4f} ploss {v0[1]:.3f} top-1 {v0[2]:.3f} tau(chain 5) {v0[3]:.2f}")
    epoch = 0
    while step < total:
        for batch in make_batches(train, args.max_len, args.batch_seqs, rng):
            if step >= total:
                break
            toks, fin, ftgt, mask = collate(batch, args.max_len, args.noise, gen)
            v, p, a = losses(toks, fin, ftgt, mask)
            loss = v + args.p_weight * p
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
                rec.update({"val_vloss": vv[0], "val_ploss": vv[1], "val_acc": vv[2], "val_tau5": vv[3]})
                print(f"\nstep {step}: val vloss {vv[0]:.4f} ploss {vv[1]:.3f} top-1 {vv[2]:.3f} "
                      f"tau(chain 5) {vv[3]:.2f}")
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
- final validation: feature SmoothL1 {last['val_vloss']:.4f}, token CE {last['val_ploss']:.3f}, teacher-forced top-1
  agreement {last['val_acc']:.3f}, implied chain tau (depth 5) {last['val_tau5']:.2f}
- command: `python3 tools/train/train_eagle.py --data {' '.join(args.data)} --out {args.out} --epochs {args.epochs}`
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
        ax[1].plot([h["step"] for h in va], [h["val_acc"] for h in va], "o-", label="val top-1")
        ax2 = ax[1].twinx()
        ax2.plot([h["step"] for h in va], [h["val_tau5"] for h in va], "s--", color="C1", label="implied tau")
        ax[1].set_xlabel("step"); ax[1].set_title("validation top-1 and implied tau"); ax[1].legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "training.png"), dpi=90)
    except ImportError:
        print("matplotlib not installed: no plot")
    print(f"exported {args.out}")


if __name__ == "__main__":
    main()
