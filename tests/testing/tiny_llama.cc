#include "tests/testing/tiny_llama.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace eagle::testing {
namespace {

template <typename B>
void Put(std::vector<uint8_t>& out, const B& b) {
  const auto* p = reinterpret_cast<const uint8_t*>(&b);
  out.insert(out.end(), p, p + sizeof(B));
}

void PutStr(std::vector<uint8_t>& out, const std::string& s) {
  Put(out, static_cast<uint64_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

// GPT-2's byte -> unicode code point table, UTF-8 encoded.
std::string ByteToken(int b) {
  std::vector<int> bs;
  for (int i = '!'; i <= '~'; ++i) bs.push_back(i);
  for (int i = 0xA1; i <= 0xAC; ++i) bs.push_back(i);
  for (int i = 0xAE; i <= 0xFF; ++i) bs.push_back(i);
  int cp = -1, extra = 0;
  for (int i = 0; i < 256; ++i) {
    const bool direct = std::find(bs.begin(), bs.end(), i) != bs.end();
    const int c = direct ? i : 256 + extra++;
    if (i == b) cp = c;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

struct Tensors {
  std::map<std::string, TensorRef> refs;
  std::map<std::string, std::vector<uint8_t>> bytes;
};

std::shared_ptr<Tensors> RandomTensors(const TinyConfig& c) {
  auto t = std::make_shared<Tensors>();
  std::mt19937_64 rng(c.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int hd = c.hidden / c.heads;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, float scale, DType dt,
                 bool norm) {
    std::vector<float> x(rows * cols);
    for (float& v : x) v = norm ? 1.0f + 0.1f * normal(rng) : scale * normal(rng);
    t->bytes[name] = Quantize(dt, x.data(), rows * cols);
    TensorRef r;
    r.name = name;
    r.dtype = dt;
    r.dims = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    r.nbytes = static_cast<int64_t>(t->bytes[name].size());
    t->refs[name] = r;
  };
  const float s = 1.0f / std::sqrt(static_cast<float>(c.hidden));
  add("model.embed_tokens.weight", c.vocab, c.hidden, 1.0f, c.dtype, false);
  if (!c.tied) add("lm_head.weight", c.vocab, c.hidden, s, c.dtype, false);
  add("model.norm.weight", 1, c.hidden, 0, DType::kF32, true);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "input_layernorm.weight", 1, c.hidden, 0, DType::kF32, true);
    add(p + "post_attention_layernorm.weight", 1, c.hidden, 0, DType::kF32, true);
    add(p + "self_attn.q_proj.weight", c.heads * hd, c.hidden, s, c.dtype, false);
    add(p + "self_attn.k_proj.weight", c.kv_heads * hd, c.hidden, s, c.dtype, false);
    add(p + "self_attn.v_proj.weight", c.kv_heads * hd, c.hidden, s, c.dtype, false);
    add(p + "self_attn.o_proj.weight", c.hidden, c.heads * hd, s, c.dtype, false);
    add(p + "mlp.gate_proj.weight", c.ffn, c.hidden, s, c.dtype, false);
    add(p + "mlp.up_proj.weight", c.ffn, c.hidden, s, c.dtype, false);
    add(p + "mlp.down_proj.weight", c.hidden, c.ffn, 1.0f / std::sqrt(static_cast<float>(c.ffn)),
        c.dtype, false);
  }
  if (c.nan_weight) {  // the loader checks vectors (norms) for NaN, not matrices
    EAGLE_CHECK(c.dtype == DType::kF32);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(t->bytes.at(c.tied ? "model.embed_tokens.weight" : "lm_head.weight").data(), &nan,
                sizeof(nan));
  }
  for (auto& [name, r] : t->refs) r.data = t->bytes[name].data();
  return t;
}

LlamaConfig ToConfig(const TinyConfig& c) {
  LlamaConfig cfg;
  cfg.name = "tiny";
  cfg.vocab_size = c.vocab;
  cfg.hidden_size = c.hidden;
  cfg.intermediate_size = c.ffn;
  cfg.num_layers = c.layers;
  cfg.num_heads = c.heads;
  cfg.num_kv_heads = c.kv_heads;
  cfg.head_dim = c.hidden / c.heads;
  cfg.rope_theta = 10000;
  cfg.max_position = c.max_position;
  cfg.tied_embeddings = c.tied;
  cfg.rope_interleaved = c.interleaved_rope;
  cfg.eos_id = c.vocab - 1;
  return cfg;
}

// One tensor for WriteSafetensors: name, dtype string, shape, raw bytes.
struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

absl::Status WriteSafetensors(const std::string& path, const std::vector<StTensor>& tensors) {
  std::string header = "{";
  uint64_t off = 0;
  for (const StTensor& e : tensors) {
    std::string shape;
    for (int64_t d : e.shape) absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
    absl::StrAppend(&header, header.size() > 1 ? "," : "", "\"", e.name, "\":{\"dtype\":\"",
                    e.dtype, "\",\"shape\":[", shape, "],\"data_offsets\":[", off, ",",
                    off + e.bytes.size(), "]}");
    off += e.bytes.size();
  }
  header += "}";
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const StTensor& e : tensors) {
    f.write(reinterpret_cast<const char*>(e.bytes.data()),
            static_cast<std::streamsize>(e.bytes.size()));
  }
  if (!f) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

std::vector<uint8_t> FloatBytes(const std::vector<float>& x) {
  std::vector<uint8_t> b(x.size() * 4);
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

}  // namespace

std::vector<uint8_t> Quantize(DType t, const float* x, int64_t n) {
  std::vector<uint8_t> out;
  switch (t) {
    case DType::kF32:
      out.resize(n * 4);
      std::memcpy(out.data(), x, n * 4);
      return out;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) Put(out, FloatToHalf(x[i]));
      return out;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) Put(out, FloatToBf16(x[i]));
      return out;
    case DType::kQ8_0:
      out.resize(n / kQK * sizeof(BlockQ8_0));
      QuantizeRowQ8_0(x, n, out.data());
      return out;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kQK; ++b) {
        const float* v = x + b * kQK;
        float amax = 0, mx = 0;
        for (int j = 0; j < kQK; ++j) {
          if (std::fabs(v[j]) > amax) {
            amax = std::fabs(v[j]);
            mx = v[j];
          }
        }
        const float d = mx / -8, id = d != 0 ? 1.0f / d : 0;
        BlockQ4_0 blk;
        blk.d = FloatToHalf(d);
        for (int j = 0; j < kQK / 2; ++j) {
          const uint8_t a = std::min(15, static_cast<int>(v[j] * id + 8.5f));
          const uint8_t c = std::min(15, static_cast<int>(v[j + kQK / 2] * id + 8.5f));
          blk.qs[j] = a | (c << 4);
        }
        Put(out, blk);
      }
      return out;
    case DType::kQ4_1:
      for (int64_t b = 0; b < n / kQK; ++b) {
        const float* v = x + b * kQK;
        float mn = v[0], mx = v[0];
        for (int j = 1; j < kQK; ++j) {
          mn = std::min(mn, v[j]);
          mx = std::max(mx, v[j]);
        }
        const float d = (mx - mn) / 15, id = d != 0 ? 1.0f / d : 0;
        BlockQ4_1 blk;
        blk.d = FloatToHalf(d);
        blk.m = FloatToHalf(mn);
        for (int j = 0; j < kQK / 2; ++j) {
          const uint8_t a = std::min(15, static_cast<int>((v[j] - mn) * id + 0.5f));
          const uint8_t c = std::min(15, static_cast<int>((v[j + kQK / 2] - mn) * id + 0.5f));
          blk.qs[j] = a | (c << 4);
        }
        Put(out, blk);
      }
      return out;
    default:
      std::abort();
  }
}

absl::StatusOr<std::unique_ptr<LlamaModel>> MakeTinyLlama(
    const TinyConfig& c, std::map<std::string, std::vector<float>>* weights) {
  auto t = RandomTensors(c);
  if (weights != nullptr) {
    for (const auto& [name, ref] : t->refs) {
      std::vector<float> v(ref.numel());
      DequantizeRowScalar(ref.dtype, ref.data, v.data(), ref.numel());
      (*weights)[name] = std::move(v);
    }
  }
  Tensors* raw = t.get();
  return LlamaModel::Create(
      ToConfig(c),
      [raw](const std::string& n) -> const TensorRef* {
        auto it = raw->refs.find(n);
        return it == raw->refs.end() ? nullptr : &it->second;
      },
      t, nullptr,
      [&] {
        ModelOptions mo;
        mo.precision = c.precision;
        mo.device = c.device;
        mo.comm = c.comm;
        return mo;
      }());
}

void GgufWriter::AddString(const std::string& k, const std::string& v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{8});
  PutStr(kv_, v);
  ++n_kv_;
}
void GgufWriter::AddU32(const std::string& k, uint32_t v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{4});
  Put(kv_, v);
  ++n_kv_;
}
void GgufWriter::AddF32(const std::string& k, float v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{6});
  Put(kv_, v);
  ++n_kv_;
}
void GgufWriter::AddBool(const std::string& k, bool v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{7});
  Put(kv_, static_cast<uint8_t>(v));
  ++n_kv_;
}
void GgufWriter::AddStrings(const std::string& k, const std::vector<std::string>& v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{9});
  Put(kv_, uint32_t{8});
  Put(kv_, static_cast<uint64_t>(v.size()));
  for (const auto& s : v) PutStr(kv_, s);
  ++n_kv_;
}
void GgufWriter::AddI32s(const std::string& k, const std::vector<int32_t>& v) {
  PutStr(kv_, k);
  Put(kv_, uint32_t{9});
  Put(kv_, uint32_t{5});
  Put(kv_, static_cast<uint64_t>(v.size()));
  for (int32_t x : v) Put(kv_, x);
  ++n_kv_;
}
void GgufWriter::AddTensor(const std::string& name, DType t, std::vector<int64_t> dims,
                           std::vector<uint8_t> data) {
  tensors_.push_back({name, t, std::move(dims), std::move(data)});
}

std::vector<uint8_t> GgufWriter::Serialize() const {
  std::vector<uint8_t> out;
  Put(out, uint32_t{0x46554747});
  Put(out, uint32_t{3});
  Put(out, static_cast<uint64_t>(tensors_.size()));
  Put(out, n_kv_);
  out.insert(out.end(), kv_.begin(), kv_.end());
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const T& t : tensors_) {
    PutStr(out, t.name);
    Put(out, static_cast<uint32_t>(t.dims.size()));
    for (auto it = t.dims.rbegin(); it != t.dims.rend(); ++it) Put(out, static_cast<uint64_t>(*it));
    Put(out, static_cast<uint32_t>(t.type));
    Put(out, offset);
    offsets.push_back(offset);
    offset += (t.data.size() + 31) / 32 * 32;
  }
  out.resize((out.size() + 31) / 32 * 32, 0);
  const size_t start = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(start + offsets[i], 0);
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  return out;
}

absl::Status GgufWriter::Write(const std::string& path) const {
  const auto bytes = Serialize();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// llama.cpp's convert_hf_to_gguf permute(): within each head, row half * hd / 2 + i moves to
// row 2 * i + half.
std::vector<uint8_t> PermuteRows(const std::vector<uint8_t>& bytes, int64_t rows, int heads) {
  const int64_t row_bytes = static_cast<int64_t>(bytes.size()) / rows;
  const int64_t hd = rows / heads;
  std::vector<uint8_t> out(bytes.size());
  for (int h = 0; h < heads; ++h) {
    for (int half = 0; half < 2; ++half) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const int64_t src = h * hd + half * (hd / 2) + i, dst = h * hd + 2 * i + half;
        std::memcpy(out.data() + dst * row_bytes, bytes.data() + src * row_bytes, row_bytes);
      }
    }
  }
  return out;
}

absl::Status WriteTinyHfDir(const TinyConfig& cin, const std::string& dir) {
  TinyConfig c = cin;
  c.vocab = std::max(c.vocab, 257);
  auto t = RandomTensors(c);
  std::vector<StTensor> tensors;
  for (auto& [name, ref] : t->refs) {
    const char* dt = ref.dtype == DType::kF32 ? "F32" : ref.dtype == DType::kF16 ? "F16" : "BF16";
    tensors.push_back({name, dt, ref.dims, t->bytes[name]});
  }
  RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", tensors));
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":" << c.vocab
      << ",\"hidden_size\":" << c.hidden << ",\"intermediate_size\":" << c.ffn
      << ",\"num_hidden_layers\":" << c.layers << ",\"num_attention_heads\":" << c.heads
      << ",\"num_key_value_heads\":" << c.kv_heads
      << ",\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"max_position_embeddings\":"
      << c.max_position << ",\"tie_word_embeddings\":" << (c.tied ? "true" : "false")
      << ",\"bos_token_id\":256,\"eos_token_id\":256}";
  if (!cfg) return absl::InternalError("cannot write " + dir);
  return absl::OkStatus();
}

absl::Status WriteTinyGguf(const TinyConfig& cin, const std::string& path, bool permute_qk) {
  TinyConfig c = cin;
  c.vocab = std::max(c.vocab, 257);
  auto t = RandomTensors(c);
  if (permute_qk) {
    for (auto& [name, ref] : t->refs) {
      if (name.find("q_proj") != std::string::npos)
        t->bytes[name] = PermuteRows(t->bytes[name], ref.dims[0], c.heads);
      if (name.find("k_proj") != std::string::npos)
        t->bytes[name] = PermuteRows(t->bytes[name], ref.dims[0], c.kv_heads);
    }
  }
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddU32("llama.block_count", c.layers);
  w.AddU32("llama.context_length", c.max_position);
  w.AddU32("llama.embedding_length", c.hidden);
  w.AddU32("llama.feed_forward_length", c.ffn);
  w.AddU32("llama.attention.head_count", c.heads);
  w.AddU32("llama.attention.head_count_kv", c.kv_heads);
  w.AddF32("llama.rope.freq_base", 10000.0f);
  w.AddF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.AddString("tokenizer.ggml.model", "gpt2");
  w.AddString("tokenizer.ggml.pre", "smollm");
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(ByteToken(b));
    types.push_back(1);
  }
  tokens.push_back("<|endoftext|>");
  types.push_back(3);
  while (static_cast<int>(tokens.size()) < c.vocab) {
    tokens.push_back(absl::StrCat("<|extra_", tokens.size(), "|>"));
    types.push_back(4);
  }
  w.AddStrings("tokenizer.ggml.tokens", tokens);
  w.AddI32s("tokenizer.ggml.token_type", types);
  w.AddStrings("tokenizer.ggml.merges", {});
  w.AddU32("tokenizer.ggml.bos_token_id", 256);
  w.AddU32("tokenizer.ggml.eos_token_id", 256);
  for (auto& [name, ref] : t->refs) {
    const std::string g = GgufTensorName(name);
    w.AddTensor(g, ref.dtype, ref.dims, t->bytes[name]);
  }
  return w.Write(path);
}

absl::StatusOr<std::unique_ptr<EagleHead>> MakeRandomEagleHead(const LlamaModel& target,
                                                               uint64_t seed, bool fc_bias) {
  const LlamaConfig& tc = target.config();
  EagleHeadConfig c;
  c.hidden_size = tc.hidden_size;
  c.intermediate_size = 2 * tc.hidden_size;
  c.num_heads = tc.num_heads;
  c.num_kv_heads = tc.num_kv_heads;
  c.head_dim = tc.hidden_size / tc.num_heads;
  c.vocab_size = tc.vocab_size;
  c.max_position = tc.max_position;
  c.fc_bias = fc_bias;
  auto t = std::make_shared<Tensors>();
  uint64_t s = seed;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, float scale) {
    std::vector<float> x = RandomNormal(rows * cols, ++s, scale);
    if (scale == 0) std::fill(x.begin(), x.end(), 1.0f);
    t->bytes[name] = Quantize(DType::kF32, x.data(), rows * cols);
    TensorRef r;
    r.name = name;
    r.dtype = DType::kF32;
    r.dims = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    r.nbytes = static_cast<int64_t>(t->bytes[name].size());
    t->refs[name] = r;
  };
  const int64_t h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const float sc = 1.0f / std::sqrt(static_cast<float>(h));
  add("fc.weight", h, 2 * h, sc);
  if (fc_bias) add("fc.bias", 1, h, 0.1f);
  add("layers.0.self_attn.q_proj.weight", qd, h, sc);
  add("layers.0.self_attn.k_proj.weight", kvd, h, sc);
  add("layers.0.self_attn.v_proj.weight", kvd, h, sc);
  add("layers.0.self_attn.o_proj.weight", h, qd, sc);
  add("layers.0.mlp.gate_proj.weight", c.intermediate_size, h, sc);
  add("layers.0.mlp.up_proj.weight", c.intermediate_size, h, sc);
  add("layers.0.mlp.down_proj.weight", h, c.intermediate_size, sc);
  add("layers.0.post_attention_layernorm.weight", 1, h, 0.0f);
  for (auto& [name, ref] : t->refs) ref.data = t->bytes[name].data();
  Tensors* raw = t.get();
  return EagleHead::Create(
      c,
      [raw](const std::string& n) -> const TensorRef* {
        auto it = raw->refs.find(n);
        return it == raw->refs.end() ? nullptr : &it->second;
      },
      t, target);
}

absl::Status WriteEagleHeadDir(const std::string& dir, int hidden, int intermediate, int heads,
                               int kv_heads, int vocab, bool fc_bias, uint64_t seed) {
  const int64_t h = hidden, qd = hidden, kvd = static_cast<int64_t>(hidden / heads) * kv_heads;
  std::vector<StTensor> entries;
  uint64_t s = seed;
  const float sc = 1.0f / std::sqrt(static_cast<float>(h));
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> x = scale == 0 ? std::vector<float>(n, 1.0f) : RandomNormal(n, ++s, scale);
    entries.push_back({name, "F32", std::move(shape), FloatBytes(x)});
  };
  add("fc.weight", {h, 2 * h}, sc);
  if (fc_bias) add("fc.bias", {h}, 0.05f);
  add("layers.0.self_attn.q_proj.weight", {qd, h}, sc);
  add("layers.0.self_attn.k_proj.weight", {kvd, h}, sc);
  add("layers.0.self_attn.v_proj.weight", {kvd, h}, sc);
  add("layers.0.self_attn.o_proj.weight", {h, qd}, sc);
  add("layers.0.mlp.gate_proj.weight", {intermediate, h}, sc);
  add("layers.0.mlp.up_proj.weight", {intermediate, h}, sc);
  add("layers.0.mlp.down_proj.weight", {h, intermediate}, sc);
  add("layers.0.post_attention_layernorm.weight", {h}, 0.0f);
  RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", entries));
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":" << hidden
      << ",\"intermediate_size\":" << intermediate << ",\"num_attention_heads\":" << heads
      << ",\"num_key_value_heads\":" << kv_heads
      << ",\"num_hidden_layers\":1,\"vocab_size\":" << vocab
      << ",\"rms_norm_eps\":1e-05,\"max_position_embeddings\":8192,\"rope_theta\":10000.0,\"bias\":"
      << (fc_bias ? "true" : "false") << ",\"torch_dtype\":\"float32\"}";
  if (!cfg) return absl::InternalError("cannot write " + dir);
  return absl::OkStatus();
}

absl::Status WriteEagle3HeadDir(const std::string& dir, int hidden, int intermediate, int heads,
                                int kv_heads, int vocab, int draft_vocab, uint64_t seed) {
  const int64_t h = hidden, qd = hidden, kvd = static_cast<int64_t>(hidden / heads) * kv_heads;
  std::vector<StTensor> entries;
  uint64_t s = seed;
  const float sc = 1.0f / std::sqrt(static_cast<float>(h));
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> x = scale == 0 ? std::vector<float>(n, 1.0f) : RandomNormal(n, ++s, scale);
    entries.push_back({name, "F32", std::move(shape), FloatBytes(x)});
  };
  const int stride = vocab / draft_vocab;
  std::vector<int64_t> d2t(draft_vocab);
  std::vector<uint8_t> t2d(vocab, 0);
  for (int i = 0; i < draft_vocab; ++i) {
    d2t[i] = static_cast<int64_t>(i) * stride - i;
    t2d[i * stride] = 1;
  }
  std::vector<uint8_t> d2t_bytes(d2t.size() * 8);
  std::memcpy(d2t_bytes.data(), d2t.data(), d2t_bytes.size());
  entries.push_back({"d2t", "I64", {draft_vocab}, std::move(d2t_bytes)});
  entries.push_back({"t2d", "BOOL", {vocab}, std::move(t2d)});
  add("fc.weight", {h, 3 * h}, sc / 2);
  add("midlayer.self_attn.q_proj.weight", {qd, 2 * h}, sc);
  add("midlayer.self_attn.k_proj.weight", {kvd, 2 * h}, sc);
  add("midlayer.self_attn.v_proj.weight", {kvd, 2 * h}, sc);
  add("midlayer.self_attn.o_proj.weight", {h, qd}, sc);
  add("midlayer.mlp.gate_proj.weight", {intermediate, h}, sc);
  add("midlayer.mlp.up_proj.weight", {intermediate, h}, sc);
  add("midlayer.mlp.down_proj.weight", {h, intermediate}, sc);
  add("midlayer.input_layernorm.weight", {h}, 0.0f);
  add("midlayer.hidden_norm.weight", {h}, 0.0f);
  add("midlayer.post_attention_layernorm.weight", {h}, 0.0f);
  add("norm.weight", {h}, 0.0f);
  add("lm_head.weight", {draft_vocab, h}, sc);
  RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", entries));
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":" << hidden
      << ",\"intermediate_size\":" << intermediate << ",\"num_attention_heads\":" << heads
      << ",\"num_key_value_heads\":" << kv_heads
      << ",\"num_hidden_layers\":1,\"vocab_size\":" << vocab
      << ",\"draft_vocab_size\":" << draft_vocab
      << ",\"rms_norm_eps\":1e-05,\"max_position_embeddings\":2048,\"torch_dtype\":\"float16\"}";
  if (!cfg) return absl::InternalError("cannot write " + dir);
  return absl::OkStatus();
}

std::vector<float> RandomNormal(int64_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::string TempDir() {
  std::string tmpl =
      (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") + "/eagle_test_XXXXXX";
  char* p = mkdtemp(tmpl.data());
  return p ? std::string(p) : std::string("/tmp");
}

CommandResult RunCommand(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::vector<pid_t> ChildPids(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  pid_t c;
  while (f >> c) out.push_back(c);
  return out;
}

bool ProcessGone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  return line.empty() || line.find(") Z ") != std::string::npos;
}

}  // namespace eagle::testing
