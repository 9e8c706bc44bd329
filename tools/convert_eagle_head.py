#!/usr/bin/env python3
"""Converts an EAGLE head published as pytorch_model.bin (EAGLE-1 heads, the EAGLE-3 LLaMA-3.1
head) into model.safetensors beside it, which eagle loads without torch.

Tensor names are kept (fc.*, layers.0.* / midlayer.*, d2t, t2d, norm, lm_head); a frozen copy of
the target embedding (embed_tokens.weight) is dropped (eagle uses the target's). fp16/bf16/fp32
are kept as they are; t2d (bool) is stored as BOOL, d2t as I64.

Run: python3 tools/convert_eagle_head.py HEAD_DIR     (needs: pip install torch safetensors)
"""
import os
import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    head = sys.argv[1]
    src = os.path.join(head, "pytorch_model.bin")
    dst = os.path.join(head, "model.safetensors")
    state = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    out = {}
    for name, t in state.items():
        if not torch.is_tensor(t):
            continue
        if name.endswith("embed_tokens.weight"):
            print(f"dropping {name} {tuple(t.shape)} (the target's embedding is used)")
            continue
        out[name] = t.contiguous()
        print(f"{name:55s} {str(t.dtype):15s} {tuple(t.shape)}")
    if not out:
        sys.exit(f"{src}: no tensors")
    save_file(out, dst, metadata={"format": "pt", "converted_from": "pytorch_model.bin"})
    print(f"wrote {dst} ({len(out)} tensors)")


if __name__ == "__main__":
    main()
