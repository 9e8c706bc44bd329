#!/usr/bin/env python3
"""Builds the tokenizer golden data used by tests/unit/tokenizer_test.cc.

Run with the golden venv (it has Hugging Face `tokenizers`, `gguf` and `sentencepiece`):

    /opt/gold/bin/python tools/make_tokenizer_golden.py

Outputs (under tests/data/ unless --out is given):
  smollm2_tokenizer.json         HF tokenizer.json reconstructed from the GGUF vocabulary
                                 (BPE vocab + merges, Digits+ByteLevel pre-tokenizer, ByteLevel
                                 decoder, type-3 tokens as special added tokens).
  smollm2_tokenizer_config.json  bos/eos/add_bos/chat_template from the GGUF metadata.
  tokenizer_golden.jsonl         {"text": ..., "ids": [...]} per line, encoded by HF `tokenizers`
                                 with added special tokens parsed and no post-processing;
                                 "roundtrip": false marks texts that do not decode back (a byte
                                 whose alphabet character is missing from the vocabulary).
  tokenizer_golden_llama-bpe.jsonl, tokenizer_golden_qwen2.jsonl
                                 the same texts and vocabulary behind the LLaMA-3 / Qwen2 Split
                                 regex pre-tokenizers.
  tiny_spm.model                 a small SentencePiece BPE model (byte fallback) trained here.
  tiny_spm_golden.jsonl          {"text": ..., "ids": [...]} encoded by the sentencepiece library.
"""

import argparse
import io
import json
import os
import random
import sys

import gguf
import sentencepiece as spm
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GGUF = os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "tests", "data")


LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gguf_field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def build_hf_tokenizer_json(reader):
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    merges = gguf_field(reader, "tokenizer.ggml.merges")
    model = gguf_field(reader, "tokenizer.ggml.model")
    pre = gguf_field(reader, "tokenizer.ggml.pre")
    if model != "gpt2" or pre != "smollm":
        sys.exit(f"expected a gpt2/smollm GGUF vocabulary, got model={model!r} pre={pre!r}")
    if len(tokens) != len(types):
        sys.exit("token_type length differs from tokens length")
    vocab = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            sys.exit(f"duplicate token {t!r} at {i} and {vocab[t]}")
        vocab[t] = i
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (3, 4):
            added.append({
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": ty == 4,
                "special": ty == 3,
            })
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": True},
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": list(merges),
        },
    }


def build_tokenizer_config(reader):
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    bos = gguf_field(reader, "tokenizer.ggml.bos_token_id")
    eos = gguf_field(reader, "tokenizer.ggml.eos_token_id")
    cfg = {
        "add_bos_token": bool(gguf_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "bos_token": tokens[bos] if bos is not None else None,
        "eos_token": {"content": tokens[eos], "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False} if eos is not None else None,
        "chat_template": gguf_field(reader, "tokenizer.chat_template", None),
        "tokenizer_class": "GPT2Tokenizer",
    }
    return cfg


def golden_texts():
    t = []
    # Empty, single bytes / characters.
    t += ["", " ", "a", "A", "0", "\n", "\t", "\r", "\x00", "\x01", "\x1f", "\x7f", "~", "'",
          "\u00a0", "\u00ff", "\u0100", "\u00ad", "\ufffd", "\U0010ffff", "\u2028", "\u0085",
          # Bytes whose alphabet character SmolLM2's vocabulary lacks: dropped by tokenizers.
          "\x04", "a\x06b", "x\x13\x14\x16\x1dy"]
    # Whitespace runs, including trailing and leading.
    t += ["  ", "   ", "\n\n", "\n\n\n", "\t\t", " \t \n", "hello ", "hello  ", "hello   world",
          "  hello", "\thello\t", "hello\n", "hello\n\n", "a\r\nb", "a\r\n\r\nb", "line1\nline2\n",
          "x \n y", "end with tab\t", "mixed \t\n \t\n", "a" + " " * 17 + "b", " " * 40,
          "\n" * 9 + "x", "word\u00a0word", "word\u2009thin", "ideo\u3000space", "nel\u0085x",
          "zw\u200bsp", "bom\ufeffx", "ls\u2028ps\u2029x", "vt\x0bff\x0cx", "ogham\u1680x"]
    # Digits and numbers.
    t += ["1", "12", "123", "1234", "12345", "1234567890", "3.14159", "-42", "+1e-10",
          "1,000,000", "2024-01-15", "12:30:45", "0x1F", "0b1010", "v1.2.3", "abc123def",
          "a1b2c3", "99 bottles", "  42  ", "3rd 4th 21st", "\u00b2\u00b3\u00b9", "\u00bd\u00be",
          "\u216b\u2160", "\u0663\u0664\u0665", "\uff11\uff12\uff13", "\u0967\u0968", "\u2460\u2461",
          "123456789012345678901234567890", "$19.99", "100%", "1/2", "#1"]
    # Contractions and case.
    t += ["it's", "you're", "we've", "I'm", "they'll", "he'd", "don't", "IT'S", "YOU'RE",
          "THEY'LL", "We'Ve", "'s", "'re", "'LL", " 's", "o'clock", "rock 'n' roll",
          "Hello World", "HELLO WORLD", "hElLo WoRlD", "CamelCaseIdentifier", "snake_case_name",
          "SCREAMING_SNAKE", "kebab-case-name", "''", "'''", "\"quoted\"", "\u2018curly\u2019",
          "\u201cdouble\u201d", "'\u017f test", "DON'T", "it'S", "abc\r\r\n", "...\n\n\nnext",
          "  \r\n  x", "!!\n\n", "x1234567", "\u212a'd", "he said:'ll'"]
    # Scripts.
    t += ["caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00dcbergr\u00f6\u00dfe",
          "stra\u00dfe", "\u0130stanbul", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
          "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
          "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
          "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
          "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
          "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c",
          "\u30ab\u30bf\u30ab\u30ca", "\uc548\ub155\ud558\uc138\uc694", "\u1100\u1161\u11a8",
          "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
          "\u0532\u0561\u0580\u0565\u0582", "\u12a0\u121b\u122d\u129b",
          "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd", "\u0c24\u0c46\u0c32\u0c41\u0c17\u0c41",
          "Ti\u1ebfng Vi\u1ec7t", "\u0f56\u0f7c\u0f51\u0f0b", "\u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6",
          "\U00010348\U00010349", "\U0001d400\U0001d401", "e\u0301\u0302\u0303\u0304",
          "a\u0308\u0323", "\u0915\u094d\u0937", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d",
          "\u00c5ngstr\u00f6m \u212b", "\ufb01 ligature", "\u2126\u03a9", "\u01c4\u01c5\u01c6",
          "\u1e9e\u00df", "\U0001e030\U0001e031", "\u0d9a\u0dca\u200d\u0dbb"]
    # Emoji.
    t += ["\U0001f600", "\U0001f44b\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
          "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5", "1\ufe0f\u20e3",
          "\u2764\ufe0f", "\u263a", "I \u2764\ufe0f NY", "\U0001f9d1\U0001f3ff\u200d\U0001f4bb",
          "\U0001faf6\U0001fae8", "hi\U0001f600there", "\U0001f600 \U0001f600  \U0001f600",
          "\U0001f44d\U0001f3fb\U0001f44d\U0001f3fc\U0001f44d\U0001f3fd\U0001f44d\U0001f3fe\U0001f44d\U0001f3ff",
          "\U0001f469\U0001f3fe\u200d\u2695\ufe0f", "\u00a9\u00ae\u2122", "\u2190\u2192\u21d2\u2200\u2203"]
    # Special tokens inside text.
    t += ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
          "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
          "text<|im_end|>more", "<|im_start|><|im_end|>", "<<|im_end|>>", "<|im_start", "im_start|>",
          "<|im_start |>", " <|im_start|> ", "<|endoftext|><|endoftext|>", "<file_sep>main.py",
          "<repo_name>foo/bar<filename>x.py", "<jupyter_code>print(1)<jupyter_output>1",
          "<empty_output>", "<|IM_START|>", "a<|endoftext|>b<|im_start|>c", "<|im_end|>\n\n"]
    # Code.
    t += [
        "def foo(x):\n    return x * 2\n",
        "int main() {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "fn main() -> Result<(), Box<dyn Error>> {\n    println!(\"{}\", x?);\n    Ok(())\n}",
        "const f = (a, b) => a ?? b;  // nullish",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
        "<div class=\"container\"><p>Hello &amp; bye</p></div>",
        "#include <vector>\nstd::vector<int> v{1, 2, 3};",
        "if x != None and y == 'abc':\n        pass\n\n\n",
        "    indented\n        more\n            deeper",
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }",
        "$ ls -la | grep '^d' && echo \"done\" > /dev/null 2>&1",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "x <<= 3; y >>>= 1; z **= 2;",
        "/* comment */ // another\n# python comment\n-- sql comment",
        "\\begin{equation} E = mc^2 \\end{equation}",
        "a_b__c___d", "__init__", "@decorator\nclass A(B, metaclass=M): ...",
        "lambda: [x for x in range(10) if x % 2 == 0]",
        "public static void main(String[] args) throws IOException {}",
        "let mut v: Vec<u8> = Vec::with_capacity(1024);",
        "    \n    \n", "\t\tif (a) {\n\t\t\tb();\n\t\t}",
        "```python\nprint('hi')\n```", "<?php echo $x; ?>", "=> -> <- :: ... ..= ?.",
    ]
    # URLs, emails, misc punctuation.
    t += ["https://www.example.com/path/to/page?query=1&b=2#frag", "http://localhost:8080/",
          "user.name+tag@example.co.uk", "ftp://ftp.example.org/pub/file.tar.gz",
          "www.google.com", "C:\\Users\\name\\file.txt", "/usr/local/bin/python3",
          "!!!", "???", "...", "\u2026", "---", "***bold***", "(parens) [brackets] {braces}",
          "a.b,c;d:e!f?g", "tab\tseparated\tvalues", "semi;colon", "@mention #hashtag",
          "\u00bfQu\u00e9? \u00a1S\u00ed!", "\u300c\u5f15\u7528\u300d\u3002", "\u2014em dash\u2013en",
          "a  b   c    d", "The quick brown fox jumps over the lazy dog.",
          "Mr. Smith's car isn't here; it's at Mrs. Jones' house.",
          "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."]
    # Programmatic variety (fixed seed, deterministic).
    rng = random.Random(1234)
    pieces = ["hello", " world", "123", " 4567", "\n", "  ", "\t", "it's", "\u00e9", "\u4e2d\u6587",
              "\U0001f600", "<|im_end|>", "!", "?!", "foo_bar", "  \n", "\u0627\u0644", "9", " ",
              "'ll", "CAPS", "\u00a0", "x=1;", "\u200d", "\U0001f3fd"]
    for _ in range(60):
        n = rng.randint(1, 8)
        t.append("".join(rng.choice(pieces) for _ in range(n)))
    # Long-ish inputs.
    t.append(("The year 1987 saw 42 events. " * 12).strip())
    t.append("a" * 300)
    t.append("1234567890" * 20)
    t.append(" ".join(str(i) for i in range(100)))
    seen = set()
    out = []
    for s in t:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


SPM_CORPUS = """The quick brown fox jumps over the lazy dog.
A tokenizer splits text into pieces; pieces map to ids.
It's a sentencepiece model with byte fallback, trained on a tiny corpus.
Numbers like 12345 and 3.14 are split into digits.
Hello world! Hello again, world. Worlds collide when words wander.
Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe.
def main():\n    return 0
Tokenizers are fun; tokenization is everywhere: tokens, tokenizing, tokenized.
"""


def build_tiny_spm(out_dir):
    corpus = (SPM_CORPUS * 20).splitlines()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="bpe", vocab_size=400,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, character_coverage=1.0,
        user_defined_symbols=["<tool>"], num_threads=1, minloglevel=2)
    data = model.getvalue()
    with open(os.path.join(out_dir, "tiny_spm.model"), "wb") as f:
        f.write(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    texts = ["", "hello", "Hello world!", " leading space", "trailing space ", "two  spaces",
             "The quick brown fox.", "tokenization tokenizers", "12345 678", "caf\u00e9 \u00fcber",
             "emoji \U0001f600 here", "\u4e2d\u6587", "new\nline", "tab\there", "a<tool>b",
             "x" * 40, "It's a dog's life.", "unseen zyzzyva qwxv", "\u00e9\u00e9\u00e9",
             "def main():\n    return 0"]
    with open(os.path.join(out_dir, "tiny_spm_golden.jsonl"), "w", encoding="utf-8") as f:
        for s in texts:
            ids = sp.encode(s)
            f.write(json.dumps({"text": s, "ids": ids}, ensure_ascii=False) + "\n")
    return len(texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    reader = gguf.GGUFReader(args.gguf)
    tj = build_hf_tokenizer_json(reader)
    tj_path = os.path.join(args.out, "smollm2_tokenizer.json")
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    cfg_path = os.path.join(args.out, "smollm2_tokenizer_config.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(build_tokenizer_config(reader), f, ensure_ascii=False, indent=2)
        f.write("\n")

    tok = Tokenizer.from_file(tj_path)
    texts = golden_texts()
    golden_path = os.path.join(args.out, "tokenizer_golden.jsonl")
    with open(golden_path, "w", encoding="utf-8") as f:
        for s in texts:
            ids = tok.encode(s, add_special_tokens=False).ids
            back = tok.decode(ids, skip_special_tokens=False)
            line = {"text": s, "ids": ids}
            if back != s:
                if not any(c in s for c in "\x04\x06\x13\x14\x16\x1d"):
                    sys.exit(f"HF round trip failed for {s!r}: {back!r}")
                line["roundtrip"] = False  # A byte without a token was dropped.
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    # The same vocabulary behind the LLaMA-3 and Qwen2 pre-tokenizers (Split regex + ByteLevel
    # without regex; LLaMA-3 also sets ignore_merges), to check those regexes against HF too.
    variants = {"llama-bpe": (LLAMA3_REGEX, True), "qwen2": (QWEN2_REGEX, False)}
    for name, (regex, ignore_merges) in variants.items():
        vj = json.loads(json.dumps(tj))
        vj["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
            ],
        }
        vj["model"]["ignore_merges"] = ignore_merges
        vtok = Tokenizer.from_str(json.dumps(vj))
        path = os.path.join(args.out, f"tokenizer_golden_{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for s in texts:
                line = {"text": s, "ids": vtok.encode(s, add_special_tokens=False).ids}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    n_spm = build_tiny_spm(args.out)
    size_mb = os.path.getsize(tj_path) / 1e6
    print(f"wrote {tj_path} ({size_mb:.2f} MB), {cfg_path}, {golden_path} ({len(texts)} lines), "
          f"tiny_spm.model + tiny_spm_golden.jsonl ({n_spm} lines)")
    if size_mb > 4:
        print("warning: tokenizer.json is over 4 MB", file=sys.stderr)


if __name__ == "__main__":
    main()
