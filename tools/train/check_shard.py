#!/usr/bin/env python3
"""Checks an eagle-datagen shard against Hugging Face transformers, an implementation independent
of ours: for the first --records records, the stored final-norm features (and, in --eagle3
shards, the stored inputs of the captured layers) are compared with transformers' hidden states
of the same tokens. Prints the worst relative error and cosine per record; exits 1 above --tol.

  python3 tools/train/check_shard.py --data .cache/train/shard0.bin \\
      --model .cache/models --gguf-file SmolLM2-135M-Instruct.Q4_1.gguf
Needs: torch, numpy, transformers, gguf (pip).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_eagle import read_shard  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def compare(got, ref):
    rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    cos = (got * ref).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
    return rel, float(cos.min())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="eagle-datagen shard")
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache/models"),
                    help="Hugging Face directory or the folder of the GGUF file")
    ap.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf",
                    help="GGUF file name inside --model ('' for a safetensors checkpoint)")
    ap.add_argument("--records", type=int, default=3, help="records to check")
    ap.add_argument("--max-tokens", type=int, default=256, help="tokens per record checked")
    ap.add_argument("--tol", type=float, default=2e-3, help="largest relative error accepted")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM
    hidden, layers, recs = read_shard(args.data, args.records)
    kw = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, **kw)
    worst = 0.0
    for r, (toks, _, feats, lf) in enumerate(recs):
        n = min(len(toks), args.max_tokens)
        with torch.no_grad():
            hs = model(torch.tensor(toks[:n], dtype=torch.long)[None], output_hidden_states=True).hidden_states
        # hidden_states[i] is the input of layer i; the last one has the final norm applied.
        rel, cos = compare(feats[:n].astype(np.float32), hs[-1][0].numpy())
        line = f"record {r}: {n} tokens, final-norm features: max rel err {rel:.2e}, min cosine {cos:.5f}"
        worst = max(worst, rel)
        if layers:
            ref = torch.cat([hs[l][0] for l in layers], -1).numpy()
            rel, cos = compare(lf[:n].astype(np.float32), ref)
            line += f"; inputs of layers {layers}: max rel err {rel:.2e}, min cosine {cos:.5f}"
            worst = max(worst, rel)
        print(line)
    print(f"worst relative error {worst:.2e} (tolerance {args.tol})")
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
