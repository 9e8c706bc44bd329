#!/usr/bin/env python3
"""Builds tests/data/tokenizer_golden_normalizers.jsonl, used by tests/unit/tokenizer_test.cc.

Each line is {"normalizer": <tokenizer.json "normalizer" value>, "text": ..., "ids": [...]}: the
SmolLM2 vocabulary of tests/data/smollm2_tokenizer.json behind that normalizer, encoded by
Hugging Face `tokenizers` with special tokens parsed and no post-processing.

    /opt/gold/bin/python tools/make_normalizer_golden.py   (a venv with `tokenizers`)
"""

import argparse
import json
import os

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

NORMALIZERS = [
    {"type": "Sequence", "normalizers": []},  # what transformers writes for a GGUF vocabulary
    {"type": "NFC"},                           # Qwen2
    {"type": "NFD"},
    {"type": "NFKC"},
    {"type": "NFKD"},
    {"type": "Lowercase"},
    {"type": "Strip", "strip_left": True, "strip_right": True},
    {"type": "Strip", "strip_left": False, "strip_right": True},
    {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]},
    {"type": "Prepend", "prepend": "> "},
    {"type": "Replace", "pattern": {"String": " "}, "content": "_"},
    {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
    {"type": "Replace", "pattern": {"Regex": "\\p{N}"}, "content": "#"},
    {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Strip", "strip_left": True, "strip_right": False}, {"type": "Lowercase"}]},
]

# Texts that tell the normalizers apart, then a sample of the existing golden texts.
TEXTS = [
    "caf\u00e9 vs cafe\u0301",                      # composed and decomposed e-acute
    "\ufb01ne \ufb02ow \u2460 \u00bd x\u00b2",        # ligatures, circled one, fractions, superscript
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\u0064\u0074\u0068 \u3000 ideographic space",
    "\u00c0\u00c9\u00ce\u00d5\u00dc \u0391\u0392\u0393 \u0416\u0417 MiXeD CaSe",
    "  \t leading and trailing whitespace \u00a0\n",
    "``quoted'' and  double  spaces  and 12345 digits",
    "\u1e9b\u0323 \u212b \u2126 \u0130stanbul",
    "<|im_start|>user\nCaf\u00e9 \ufb01<|im_end|>",
    "",
    "   ",
    "Emoji \U0001F985\U0001F1EB\U0001F1F7 and CJK \u4e16\u754c\u3053\u3093\u306b\u3061\u306f",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(DATA, "tokenizer_golden_normalizers.jsonl"))
    parser.add_argument("--sample", type=int, default=40, help="existing golden texts to add")
    args = parser.parse_args()
    with open(os.path.join(DATA, "smollm2_tokenizer.json"), encoding="utf-8") as f:
        base = json.load(f)
    texts = list(TEXTS)
    with open(os.path.join(DATA, "tokenizer_golden.jsonl"), encoding="utf-8") as f:
        golden = [json.loads(line)["text"] for line in f if line.strip()]
    step = max(1, len(golden) // args.sample)
    texts += golden[::step][: args.sample]
    lines = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for normalizer in NORMALIZERS:
            spec = dict(base)
            spec["normalizer"] = normalizer
            tok = Tokenizer.from_str(json.dumps(spec))
            for text in texts:
                ids = tok.encode(text, add_special_tokens=False).ids
                out.write(json.dumps({"normalizer": normalizer, "text": text, "ids": ids},
                                     ensure_ascii=False) + "\n")
                lines += 1
    print(f"{args.out}: {lines} lines ({len(NORMALIZERS)} normalizers x {len(texts)} texts)")


if __name__ == "__main__":
    main()
