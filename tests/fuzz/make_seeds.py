#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under tests/fuzz/corpus/ (committed; rerun to refresh).

Seeds are small valid inputs of each format, so that libFuzzer starts from the structure a real
file has: GGUF files with every metadata type, a tokenizer and a few tensors; safetensors files
with each dtype; texts for the tokenizer; the chat templates of tests/data/chat_templates plus
snippets; the normalizer specs of tests/data/tokenizer_golden_normalizers.jsonl with texts.
Crash reproducers of fixed bugs go under corpus/<target>/regressions/ by hand.
"""
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# ---- GGUF -------------------------------------------------------------------------------------
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gkv(key, typ, payload):
    return gstr(key) + struct.pack("<I", typ) + payload


def garray(elem_type, items, pack):
    return struct.pack("<IQ", elem_type, len(items)) + b"".join(pack(x) for x in items)


def gguf(kvs, tensors, version=3, alignment=32):
    """tensors: list of (name, dims, ggml_type, data bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    infos, blobs, offset = b"", b"", 0
    for name, dims, typ, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(
            struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", typ, offset)
        pad = (-len(data)) % alignment
        blobs += data + b"\0" * pad
        offset += len(data) + pad
    out = head + infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + blobs


def gguf_seeds():
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "H", "e", "l", "o", "Ġ", "He", "ll",
              "Hell", "Hello", "Ġw", "or", "ld", "!"]
    tok_kvs = [
        gkv("general.architecture", 8, gstr("llama")),
        gkv("tokenizer.ggml.model", 8, gstr("gpt2")),
        gkv("tokenizer.ggml.pre", 8, gstr("smollm")),
        gkv("tokenizer.ggml.tokens", 9, garray(8, tokens, gstr)),
        gkv("tokenizer.ggml.token_type", 9,
            garray(5, [3, 3, 3] + [1] * (len(tokens) - 3), lambda x: struct.pack("<i", x))),
        gkv("tokenizer.ggml.merges", 9, garray(8, ["H e", "l l", "He ll", "Hell o", "Ġ w"], gstr)),
        gkv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)),
        gkv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
        gkv("tokenizer.ggml.add_bos_token", 7, b"\0"),
        gkv("tokenizer.chat_template", 8, gstr("{% for m in messages %}{{ m.content }}{% endfor %}")),
    ]
    f32 = struct.pack("<8f", *range(8))
    f16 = struct.pack("<8e", *[0.5 * i for i in range(8)])
    q8_0 = struct.pack("<e", 0.25) + bytes(range(32))  # one block of 32
    q4_1 = struct.pack("<ee", 0.1, -0.5) + bytes(range(16))
    tensors = [("token_embd.weight", [4, 2], 0, f32), ("blk.0.attn_q.weight", [4, 2], 1, f16),
               ("blk.0.ffn_up.weight", [32, 1], 8, q8_0), ("blk.0.ffn_down.weight", [32, 1], 3, q4_1)]
    write("gguf", "tokenizer_and_tensors.gguf", gguf(tok_kvs, tensors))
    every_type = [
        gkv("u8", 0, b"\x07"), gkv("i8", 1, b"\xfe"), gkv("u16", 2, struct.pack("<H", 65535)),
        gkv("i16", 3, struct.pack("<h", -3)), gkv("u32", 4, struct.pack("<I", 7)),
        gkv("i32", 5, struct.pack("<i", -7)), gkv("f32", 6, struct.pack("<f", 1.5)),
        gkv("bool", 7, b"\x01"), gkv("str", 8, gstr("text")),
        gkv("arr_i64", 9, garray(11, [1, -2, 3], lambda x: struct.pack("<q", x))),
        gkv("arr_f64", 9, garray(12, [0.5, -1.0], lambda x: struct.pack("<d", x))),
        gkv("arr_bool", 9, garray(7, [1, 0], lambda x: bytes([x]))),
        gkv("u64", 10, struct.pack("<Q", 2**63)), gkv("i64", 11, struct.pack("<q", -(2**40))),
        gkv("f64", 12, struct.pack("<d", 2.25)),
        gkv("general.alignment", 4, struct.pack("<I", 64)),
    ]
    write("gguf", "every_metadata_type.gguf",
          gguf(every_type, [("t", [8], 0, f32)], alignment=64))
    write("gguf", "version2_empty.gguf", gguf([], [], version=2))
    write("gguf", "spm_tokenizer.gguf", gguf([
        gkv("tokenizer.ggml.model", 8, gstr("llama")),
        gkv("tokenizer.ggml.tokens", 9, garray(8, ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a"], gstr)),
        gkv("tokenizer.ggml.scores", 9, garray(6, [0, 0, 0, -1, -2, -3, -0.5],
                                              lambda x: struct.pack("<f", x))),
        gkv("tokenizer.ggml.token_type", 9, garray(5, [2, 3, 3, 1, 1, 1, 1],
                                                  lambda x: struct.pack("<i", x))),
        gkv("tokenizer.ggml.add_space_prefix", 7, b"\x01"),
    ], []))


# ---- safetensors ------------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, b"", 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs += data
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + blobs


def safetensors_seeds():
    write("safetensors", "dtypes.safetensors", safetensors([
        ("a.f32", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        ("b.f16", "F16", [3], struct.pack("<3e", 1, 2, 3)),
        ("c.bf16", "BF16", [2], b"\x80\x3f\x00\x40"),
        ("d.i64", "I64", [1], struct.pack("<q", 5)),
        ("e.i32", "I32", [2], struct.pack("<2i", 1, -1)),
        ("f.bool", "BOOL", [3], b"\x01\x00\x01"),
        ("g.i8", "I8", [2], b"\x01\xff"),
    ], {"format": "pt"}))
    write("safetensors", "scalar_and_empty.safetensors", safetensors([
        ("scalar", "F32", [], struct.pack("<f", 3.0)), ("empty", "F32", [0, 4], b"")]))


# ---- tokenizer ---------------------------------------------------------------------------------
def tokenizer_seeds():
    texts = ["Hello, world!", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
             "  leading spaces\tand\ttabs\n\n", "café naïve 日本語 🙂 x²", "1234567 3.14159",
             "don't we'll they're", "\xff\xfe invalid \xc3 bytes"]
    for i, t in enumerate(texts):
        raw = t.encode("utf-8", "surrogateescape") if "\xff" not in t else t.encode("latin-1")
        write("tokenizer", f"encode_{i}", bytes([0]) + raw)
        write("tokenizer", f"encode_special_{i}", bytes([1]) + raw)
    ids = [1, 9519, 198, 2, 0, 49151, 49152, -1, 216, 7353]
    write("tokenizer", "decode_ids", bytes([2]) + struct.pack(f"<{len(ids)}i", *ids))
    # The SentencePiece-style tokenizer.json (ops 3 and 4): byte fallback, <unk>, added tokens.
    for i, t in enumerate(texts + ["snow \u2603 man", "a<tool>b <s> \u2581x"]):
        raw = t.encode("utf-8", "surrogateescape") if "\xff" not in t else t.encode("latin-1")
        write("tokenizer", f"spm_json_encode_{i}", bytes([3]) + raw)
    ids = [1, 312, 348, 230, 156, 135, 2, 0, 3, 399, 400, -1, 230, 348, 199, 195]
    write("tokenizer", "spm_json_decode_ids", bytes([4]) + struct.pack(f"<{len(ids)}i", *ids))


# ---- chat templates ---------------------------------------------------------------------------
def jinja_seeds():
    for p in sorted((ROOT / "tests/data/chat_templates").glob("*.jinja")):
        write("jinja", p.stem, p.read_text())
    snippets = [
        "{{ messages[0]['content'] | upper }}{% if add_generation_prompt %}!{% endif %}",
        "{%- for m in messages -%}{{ loop.index }}:{{ m.role }}{{ '\\n' if not loop.last }}{%- endfor %}",
        "{% set ns = namespace(x=0) %}{% for i in range(5) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}",
        "{{ messages | tojson }}{{ (1, 2) }}{{ 'a' ~ 3 }}{{ 7 // 2 }}{{ 2 ** 3 }}{{ [1,2,3][1:] }}",
        "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}",
        "{{ strftime_now('%Y') }}{{ 'x' * 3 }}{{ 'a,b'.split(',') | join('-') }}",
        "{% generation %}{{ bos_token }}{% endgeneration %}{{ undefined_var is defined }}",
        "{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% else %}none{% endfor %}",
    ]
    for i, s in enumerate(snippets):
        write("jinja", f"snippet_{i}", s)


# ---- normalizers -------------------------------------------------------------------------------
def normalizer_seeds():
    seen = {}
    golden = ROOT / "tests/data/tokenizer_golden_normalizers.jsonl"
    for line in golden.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        d = json.loads(line)
        key = json.dumps(d["normalizer"], sort_keys=True)
        if key not in seen:
            seen[key] = json.dumps(d["normalizer"]) + "\n" + d["text"]
    for i, s in enumerate(seen.values()):
        write("normalizer", f"spec_{i}", s)


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    tokenizer_seeds()
    jinja_seeds()
    normalizer_seeds()
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())), "seeds")
