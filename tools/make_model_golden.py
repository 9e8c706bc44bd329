#!/usr/bin/env python3
"""Golden logits for the default model from an independent implementation: Hugging Face
transformers running SmolLM2-135M-Instruct in float32 on the weights dequantized from the same
GGUF file (transformers dequantizes GGUF tensors with the `gguf` package on load).

Writes tests/data/model_golden.json with, per prompt: the token ids (tokenized by transformers'
own tokenizer built from the GGUF), and per position the reference top-20 ids with logits, the
logits of 64 fixed vocabulary ids, the top-2 margin, and a 64-token greedy continuation.

Run (once, needs torch + transformers + gguf):
  python tools/make_model_golden.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three prime numbers greater than 50.",
    "def fibonacci(n):",
    "Translate 'good morning' into Spanish and German.",
]

def main():
    gguf = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    d, name = os.path.split(os.path.abspath(gguf))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    probe_ids = np.random.default_rng(7).choice(vocab, size=64, replace=False).tolist()
    cases = []
    for i, p in enumerate(PROMPTS):
        if i % 2 == 0:  # chat-formatted prompt
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True)
        else:
            text = p
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            gen = model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        cont = gen[0, len(ids):].tolist()
        # Top-2 margin of the reference at each continuation step (where a lower-precision run may
        # legitimately pick the other token).
        with torch.no_grad():
            full = model(gen[:, :-1]).logits[0].float().numpy() if len(cont) > 0 else None
        greedy_margins = []
        for step in range(len(cont)):
            row = full[len(ids) - 1 + step]
            top2 = np.sort(row)[-2:]
            greedy_margins.append(float(top2[1] - top2[0]))
        positions = []
        for t in range(len(ids)):
            row = logits[t]
            top = np.argsort(-row, kind="stable")[:20]
            positions.append({
                "top_ids": top.tolist(),
                "top_logits": [float(row[j]) for j in top],
                "probe_logits": [float(row[j]) for j in probe_ids],
                "margin": float(row[top[0]] - row[top[1]]),
            })
        cases.append({"text": text, "ids": ids, "positions": positions, "greedy": cont,
                      "greedy_margins": greedy_margins})
        print(f"prompt {i}: {len(ids)} tokens, continuation {tok.decode(cont)!r}")
    out = {"model": name, "probe_ids": probe_ids, "reference": "transformers float32 on dequantized GGUF",
           "cases": cases}
    path = os.path.join(ROOT, "tests", "data", "model_golden.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", path, os.path.getsize(path), "bytes")

if __name__ == "__main__":
    main()
