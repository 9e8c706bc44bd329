#!/usr/bin/env python3
"""Writes tests/data/heldout_prompts.jsonl: a fixed held-out split of ../shared/data/train.

Rule: per source, the 8 prompts with the smallest sha256(id) (prompts of 20..2000 characters).
Training data generation must skip every id in this file (tools and trainer read it).
Run: python3 tools/make_heldout.py [path/to/shared/data/train]
"""
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PER_SOURCE = 8

def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "train")
    by_source = {}
    for name in sorted(os.listdir(src)):
        if not name.endswith(".jsonl") or name == "mix_v1.jsonl":
            continue
        with open(os.path.join(src, name)) as f:
            for line in f:
                r = json.loads(line)
                if not 20 <= len(r["prompt"]) <= 2000:
                    continue
                h = hashlib.sha256(r["id"].encode()).hexdigest()
                by_source.setdefault(r["source"], []).append((h, r))
    out = os.path.join(ROOT, "tests", "data", "heldout_prompts.jsonl")
    n = 0
    with open(out, "w") as f:
        for source in sorted(by_source):
            for _, r in sorted(by_source[source], key=lambda x: x[0])[:PER_SOURCE]:
                f.write(json.dumps({"id": r["id"], "category": source, "prompt": r["prompt"]}) + "\n")
                n += 1
    print(f"wrote {n} held-out prompts to {out}")

if __name__ == "__main__":
    main()
