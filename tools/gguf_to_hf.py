#!/usr/bin/env python3
"""Writes a LLaMA-family GGUF's weights as a Hugging Face directory (config.json +
model.safetensors) in bf16, f16 or f32, to measure the float weight paths on the same model.

The q/k rows that llama.cpp's converter permutes for its interleaved RoPE are permuted back to
Hugging Face's rotate-half order, so both files hold the same model. Quantized tensors are
dequantized by the `gguf` package (PyPI) and rounded to the chosen type (bf16: round to nearest
even). No tokenizer is written: the directory is for eagle-bench and token-level tools.

  python3 tools/gguf_to_hf.py MODEL.gguf OUT_DIR [--dtype bf16|f16|f32]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def hf_name(name):
    if name in NAMES:
        return NAMES[name]
    parts = name.split(".")  # blk.N.kind.weight
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER:
        return f"model.layers.{parts[1]}.{LAYER[parts[2]]}.{parts[3]}"
    raise ValueError(f"unknown tensor {name}")


def unpermute(w, heads):
    # llama.cpp moved HF row h*hd + half*hd/2 + i to h*hd + 2*i + half; move it back.
    rows = w.shape[0]
    hd = rows // heads
    return w.reshape(heads, hd // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def to_bytes(a, dtype):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "f32":
        return a.tobytes(), "F32"
    if dtype == "f16":
        return a.astype(np.float16).tobytes(), "F16"
    u = a.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even
    return rounded.astype(np.uint16).tobytes(), "BF16"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    args = ap.parse_args()
    r = GGUFReader(args.gguf)

    def field(key):
        f = r.fields[key]
        return f.parts[f.data[0]].tolist()[0]

    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    heads = int(field(f"{arch}.attention.head_count"))
    kv_heads = int(field(f"{arch}.attention.head_count_kv"))
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)]) if w.ndim == 1 and len(t.shape) > 1 \
            else w
        if ".attn_q." in t.name:
            w = unpermute(w, heads)
        elif ".attn_k." in t.name:
            w = unpermute(w, kv_heads)
        tensors[hf_name(t.name)] = w
    tied = "lm_head.weight" not in tensors
    emb = tensors["model.embed_tokens.weight"]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": int(field(f"{arch}.embedding_length")),
        "intermediate_size": int(field(f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(field(f"{arch}.block_count")),
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": float(field(f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(f"{arch}.rope.freq_base")),
        "max_position_embeddings": int(field(f"{arch}.context_length")),
        "vocab_size": int(emb.shape[0]), "tie_word_embeddings": tied,
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[args.dtype],
    }
    for key, name in (("tokenizer.ggml.bos_token_id", "bos_token_id"),
                      ("tokenizer.ggml.eos_token_id", "eos_token_id")):
        if key in r.fields:
            config[name] = int(field(key))
    os.makedirs(args.out, exist_ok=True)
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data, dt = to_bytes(tensors[name], args.dtype)
        header[name] = {"dtype": dt, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"{args.out}: {len(tensors)} tensors, {offset / 1e6:.1f} MB {args.dtype}", file=sys.stderr)


if __name__ == "__main__":
    main()
