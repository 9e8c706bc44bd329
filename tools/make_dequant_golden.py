#!/usr/bin/env python3
"""Writes tests/data/dequant_golden.json: random GGML blocks of every supported type and their
values as dequantized by the `gguf` Python package (an independent implementation).

Run: python tools/make_dequant_golden.py   (needs `pip install gguf numpy`)
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# (type, offsets of fp16 scale fields inside one block) -- random bytes elsewhere.
TYPES = {
    "Q4_0": (T.Q4_0, [0]),
    "Q4_1": (T.Q4_1, [0, 2]),
    "Q5_0": (T.Q5_0, [0]),
    "Q5_1": (T.Q5_1, [0, 2]),
    "Q8_0": (T.Q8_0, [0]),
    "Q2_K": (T.Q2_K, [80, 82]),
    "Q3_K": (T.Q3_K, [108]),
    "Q4_K": (T.Q4_K, [0, 2]),
    "Q5_K": (T.Q5_K, [0, 2]),
    "Q6_K": (T.Q6_K, [208]),
}

def main():
    from gguf.constants import GGML_QUANT_SIZES
    rng = np.random.default_rng(1234)
    out = {}
    for name, (qt, scale_offsets) in TYPES.items():
        block, size = GGML_QUANT_SIZES[qt]
        nblocks = 512 // block if block < 512 else 2
        raw = bytearray(rng.integers(0, 256, size=nblocks * size, dtype=np.uint8).tobytes())
        for b in range(nblocks):
            for off in scale_offsets:
                v = np.float16(rng.uniform(-0.05, 0.05)).tobytes()
                raw[b * size + off: b * size + off + 2] = v
        arr = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(1, -1)
        vals = dequantize(arr, qt).reshape(-1).astype(np.float32)
        out[name] = {"hex": bytes(raw).hex(), "values": [float(x) for x in vals]}
    for name, dt in (("F16", np.float16),):
        x = rng.normal(size=64).astype(dt)
        out[name] = {"hex": x.tobytes().hex(), "values": [float(v) for v in x.astype(np.float32)]}
    x = rng.normal(size=64).astype(np.float32)
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)
    out["BF16"] = {"hex": bf.tobytes().hex(),
                   "values": [float(v) for v in (bf.astype(np.uint32) << 16).view(np.float32)]}
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "dequant_golden.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", path)

if __name__ == "__main__":
    main()
