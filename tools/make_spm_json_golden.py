#!/usr/bin/env python3
"""Builds the golden data for SentencePiece-style tokenizer.json files (no tokenizer.model), used by
tests/unit/tokenizer_test.cc.

Hugging Face writes SentencePiece vocabularies (LLaMA-2, Mistral, TinyLlama, ...) into
tokenizer.json as a BPE model over Unicode characters with byte fallback, a Metaspace
pre-tokenizer or a Prepend/Replace normalizer, and a Replace/ByteFallback/Fuse/Strip decoder.
This script converts tests/data/tiny_spm.model with transformers' LlamaTokenizerFast (4.56, as
`save_pretrained` writes it) and then writes, for each of the shapes real checkpoints use, the
ids that Hugging Face `tokenizers` gives (special tokens parsed, no post-processing) and the text
that its decoder gives back (special tokens kept).

Outputs (under tests/data/):
  spm_json_tokenizer.json      the converted tokenizer.json (the variants replace its
                               normalizer, pre_tokenizer and decoder)
  tokenizer_golden_spm_json.jsonl
                               {"variant": {normalizer, pre_tokenizer, decoder}, "text", "ids",
                               "decoded"} per line

    python3 -m venv /tmp/gold && /tmp/gold/bin/pip install tokenizers sentencepiece protobuf \
        transformers==4.56.2
    /tmp/gold/bin/python tools/make_spm_json_golden.py
"""

import argparse
import json
import os
import tempfile

from tokenizers import Tokenizer
from transformers import LlamaTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

SP = "\u2581"
DECODER_LLAMA = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": SP}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}

VARIANTS = [
    # LLaMA-2, Mistral-7B, TinyLlama: the legacy conversion.
    {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": SP},
        {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
     "pre_tokenizer": None, "decoder": DECODER_LLAMA},
    # transformers' non-legacy conversion (legacy=False, add_prefix_space).
    {"normalizer": None,
     "pre_tokenizer": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first",
                       "split": False},
     "decoder": DECODER_LLAMA},
    # tokenizers' SentencePieceBPETokenizer: Metaspace both ways, split into words.
    {"normalizer": None,
     "pre_tokenizer": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "always",
                       "split": True},
     "decoder": {"type": "Metaspace", "replacement": SP, "prepend_scheme": "always",
                 "split": True}},
    # What transformers 4.56 writes for this model (no dummy prefix in its conversion).
    "as-converted",
]

TEXTS = ["", "hello", "Hello world!", " leading space", "trailing space ", "two  spaces",
         "The quick brown fox.", "tokenization tokenizers", "12345 678", "caf\u00e9 \u00fcber",
         "emoji \U0001f600 here", "\u4e2d\u6587", "new\nline", "tab\there", "a<tool>b",
         "x" * 40, "It's a dog's life.", "unseen zyzzyva qwxv", "\u00e9\u00e9\u00e9",
         "def main():\n    return 0", "<s>Hello</s>", "Hello <s> world", " <s> x",
         "<s> leading", "\u2581already marked", "snow \u2603 man \u00ff", "<0x41> literal"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DATA)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fast = LlamaTokenizerFast(vocab_file=os.path.join(DATA, "tiny_spm.model"), legacy=True,
                                  from_slow=True)
        fast.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            base = json.load(f)
    base["post_processor"] = None
    with open(os.path.join(args.out, "spm_json_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(base, f, ensure_ascii=False, separators=(",", ":"))
    lines = 0
    with open(os.path.join(args.out, "tokenizer_golden_spm_json.jsonl"), "w",
              encoding="utf-8") as f:
        for variant in VARIANTS:
            spec = dict(base)
            if variant == "as-converted":
                variant = {k: base[k] for k in ("normalizer", "pre_tokenizer", "decoder")}
            spec.update(variant)
            tok = Tokenizer.from_str(json.dumps(spec))
            for text in TEXTS:
                ids = tok.encode(text, add_special_tokens=False).ids
                decoded = tok.decode(ids, skip_special_tokens=False)
                f.write(json.dumps({"variant": variant, "text": text, "ids": ids,
                                    "decoded": decoded}, ensure_ascii=False) + "\n")
                lines += 1
    print(f"wrote {lines} golden lines")


if __name__ == "__main__":
    main()
