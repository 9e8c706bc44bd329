#include "common/model/llama_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/io/gguf.h"
#include "common/io/safetensors.h"
#include "common/model/tensor_utils.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// GGUF configuration.

absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufFile& g) {
  ASSIGN_OR_RETURN(std::string arch, g.GetString("general.architecture"));
  if (arch != "llama") {
    return absl::UnimplementedError(
        absl::StrCat(g.path(), ": architecture '", arch, "' is not supported (only 'llama')"));
  }
  LlamaConfig c;
  c.name = g.path();
  auto geti = [&](const std::string& k) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(int64_t v, g.GetInt(k));
    if (v < 0 || v > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(g.path(), ": metadata '", k, "' = ", v, " is out of range"));
    }
    return static_cast<int>(v);
  };
  ASSIGN_OR_RETURN(c.hidden_size, geti("llama.embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, geti("llama.feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_layers, geti("llama.block_count"));
  ASSIGN_OR_RETURN(c.num_heads, geti("llama.attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (g.Find("llama.attention.head_count_kv")) {
    ASSIGN_OR_RETURN(c.num_kv_heads, geti("llama.attention.head_count_kv"));
  }
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (g.Find("llama.attention.key_length")) {
    ASSIGN_OR_RETURN(c.head_dim, geti("llama.attention.key_length"));
  }
  if (g.Find("llama.context_length")) {
    ASSIGN_OR_RETURN(c.max_position, geti("llama.context_length"));
  }
  if (g.Find("llama.attention.layer_norm_rms_epsilon")) {
    ASSIGN_OR_RETURN(double eps, g.GetFloat("llama.attention.layer_norm_rms_epsilon"));
    c.rms_norm_eps = static_cast<float>(eps);
  }
  if (g.Find("llama.rope.freq_base")) {
    ASSIGN_OR_RETURN(c.rope_theta, g.GetFloat("llama.rope.freq_base"));
  }
  if (g.Find("llama.rope.scaling.type")) {
    ASSIGN_OR_RETURN(std::string t, g.GetString("llama.rope.scaling.type"));
    if (t == "linear") {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
      ASSIGN_OR_RETURN(c.rope_scaling.factor, g.GetFloat("llama.rope.scaling.factor"));
    } else if (t != "none") {
      return absl::UnimplementedError(
          absl::StrCat(g.path(), ": rope scaling '", t, "' is not supported"));
    }
  }
  const TensorRef* emb = g.FindTensor("token_embd.weight");
  if (emb == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": no token_embd.weight"));
  c.vocab_size = static_cast<int>(emb->rows());
  c.tied_embeddings = g.FindTensor("output.weight") == nullptr;
  c.rope_interleaved = true;
  if (g.Find("tokenizer.ggml.bos_token_id")) {
    ASSIGN_OR_RETURN(c.bos_id, geti("tokenizer.ggml.bos_token_id"));
  }
  if (g.Find("tokenizer.ggml.eos_token_id")) {
    ASSIGN_OR_RETURN(c.eos_id, geti("tokenizer.ggml.eos_token_id"));
  }
  return c;
}

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& g) {
  TokenizerData d;
  ASSIGN_OR_RETURN(d.model, g.GetString("tokenizer.ggml.model"));
  if (g.Find("tokenizer.ggml.pre")) {
    ASSIGN_OR_RETURN(d.pre, g.GetString("tokenizer.ggml.pre"));
  }
  const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->strs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": no tokenizer.ggml.tokens"));
  }
  d.tokens = tokens->strs;
  if (const GgufValue* v = g.Find("tokenizer.ggml.token_type")) {
    d.token_types.assign(v->ints.begin(), v->ints.end());
    if (d.token_types.size() != d.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(g.path(), ": token_type length mismatch"));
    }
  }
  if (const GgufValue* v = g.Find("tokenizer.ggml.merges")) d.merges = v->strs;
  if (const GgufValue* v = g.Find("tokenizer.ggml.scores"))
    d.scores.assign(v->floats.begin(), v->floats.end());
  if (const GgufValue* v = g.Find("tokenizer.ggml.bos_token_id"))
    d.bos_id = static_cast<int32_t>(v->i);
  if (const GgufValue* v = g.Find("tokenizer.ggml.eos_token_id"))
    d.eos_id = static_cast<int32_t>(v->i);
  if (const GgufValue* v = g.Find("tokenizer.ggml.eot_token_id"))
    d.extra_eos_ids.push_back(static_cast<int32_t>(v->i));
  if (const GgufValue* v = g.Find("tokenizer.ggml.add_bos_token")) d.add_bos = v->i != 0;
  if (const GgufValue* v = g.Find("tokenizer.ggml.add_space_prefix"))
    d.add_space_prefix = v->i != 0;
  if (const GgufValue* v = g.Find("tokenizer.chat_template")) d.chat_template = v->s;
  return d;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs fn(i) for every token; on several threads when there are enough tokens to pay for it.
template <typename Fn>
void ForTokens(int64_t num_tokens, const Fn& fn) {
  if (num_tokens < 4) {
    for (int64_t i = 0; i < num_tokens; ++i) fn(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < num_tokens; ++i) fn(i);
}

}  // namespace

std::string GgufTensorName(const std::string& hf) {
  static const std::map<std::string, std::string> kTop = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  if (auto it = kTop.find(hf); it != kTop.end()) return it->second;
  static const std::map<std::string, std::string> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const size_t dot = hf.find('.', prefix.size());
    const std::string idx = hf.substr(prefix.size(), dot - prefix.size());
    if (auto it = kLayer.find(hf.substr(dot + 1)); it != kLayer.end()) {
      return absl::StrCat("blk.", idx, ".", it->second);
    }
  }
  return hf;
}

// ---------------------------------------------------------------------------------------------
// KvCache

KvCache::KvCache(int num_layers, int num_kv_heads, int head_dim, int64_t capacity)
    : num_layers_(num_layers),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      capacity_(capacity),
      k_(new float[static_cast<size_t>(num_layers) * capacity * num_kv_heads * head_dim]),
      v_(new float[static_cast<size_t>(num_layers) * capacity * num_kv_heads * head_dim]) {}

void KvCache::StoreKeys(int layer, int64_t slot, const float* k) {
  for (int h = 0; h < num_kv_heads_; ++h) {
    float* base = kt(layer, h) + slot;
    for (int d = 0; d < head_dim_; ++d) base[d * capacity_] = k[h * head_dim_ + d];
  }
}

absl::Status KvCache::KeepPath(int64_t base, std::span<const int32_t> path) {
  if (base < 0 || base > length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("KeepPath: base ", base, " outside [0, ", length_, "]"));
  }
  int32_t prev = -1;
  for (int32_t p : path) {
    if (p <= prev || base + p >= length_) {
      return absl::InvalidArgumentError(absl::StrCat("KeepPath: path index ", p,
                                                     " is not increasing or "
                                                     "beyond the ",
                                                     length_ - base, " tree slots"));
    }
    prev = p;
  }
  for (int l = 0; l < num_layers_; ++l) {
    for (size_t j = 0; j < path.size(); ++j) {
      if (path[j] == static_cast<int32_t>(j)) continue;
      const int64_t dst = base + static_cast<int64_t>(j), src = base + path[j];
      for (int h = 0; h < num_kv_heads_; ++h) {
        float* col = kt(l, h);
        for (int d = 0; d < head_dim_; ++d) col[d * capacity_ + dst] = col[d * capacity_ + src];
      }
      std::memcpy(v(l, dst), v(l, src), kv_dim() * sizeof(float));
    }
  }
  length_ = base + static_cast<int64_t>(path.size());
  return absl::OkStatus();
}

absl::Status KvCache::Truncate(int64_t n) {
  if (n < 0 || n > length_) {
    return absl::InvalidArgumentError(absl::StrCat("Truncate: ", n, " outside [0, ", length_, "]"));
  }
  length_ = n;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Loading

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path,
                                                             const ModelOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    ASSIGN_OR_RETURN(std::string cfg_text, ReadFile((fs::path(path) / "config.json").string()));
    ASSIGN_OR_RETURN(LlamaConfig config,
                     ParseHfConfig(cfg_text, (fs::path(path) / "config.json").string()));
    std::shared_ptr<SafetensorsSet> st;
    {
      ASSIGN_OR_RETURN(auto s, SafetensorsSet::Open(path));
      st = std::move(s);
    }
    if (st->FindTensor("lm_head.weight") == nullptr) config.tied_embeddings = true;
    std::unique_ptr<Tokenizer> tok;
    if (auto data = LoadHfTokenizerData(path); data.ok()) {
      ASSIGN_OR_RETURN(tok, Tokenizer::Create(*std::move(data)));
    } else if (!absl::IsNotFound(data.status())) {
      return data.status();
    }
    SafetensorsSet* raw = st.get();
    return Create(
        config, [raw](const std::string& n) { return raw->FindTensor(n); }, st, std::move(tok),
        options);
  }
  std::shared_ptr<GgufFile> g;
  {
    ASSIGN_OR_RETURN(auto gg, GgufFile::Open(path));
    g = std::move(gg);
  }
  ASSIGN_OR_RETURN(LlamaConfig config, ConfigFromGguf(*g));
  ASSIGN_OR_RETURN(TokenizerData tdata, TokenizerDataFromGguf(*g));
  std::string chat_template = tdata.chat_template;
  auto tok = Tokenizer::Create(std::move(tdata));
  if (!tok.ok())
    return absl::Status(tok.status().code(), absl::StrCat(path, ": ", tok.status().message()));
  GgufFile* raw = g.get();
  auto model = Create(
      config, [raw](const std::string& n) { return raw->FindTensor(GgufTensorName(n)); }, g,
      *std::move(tok), options,
      [raw](const uint8_t* p, int64_t n) { raw->file().Release(p, static_cast<size_t>(n)); });
  if (!model.ok())
    return absl::Status(model.status().code(), absl::StrCat(path, ": ", model.status().message()));
  (*model)->chat_template_ = chat_template;
  return model;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    const LlamaConfig& config, const TensorLookup& lookup, std::shared_ptr<void> keepalive,
    std::unique_ptr<Tokenizer> tokenizer, const ModelOptions& options, const ReleaseFn& release) {
  RETURN_IF_ERROR(config.Validate());
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->config_ = config;
  m->keepalive_ = std::move(keepalive);
  m->tokenizer_ = std::move(tokenizer);
  if (m->tokenizer_ != nullptr && m->tokenizer_->vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", m->tokenizer_->vocab_size(),
                                                   " tokens but the model only ",
                                                   config.vocab_size));
  }
  const int64_t h = config.hidden_size, ffn = config.intermediate_size, v = config.vocab_size;
  const int64_t qd = config.q_dim(), kvd = config.kv_dim();
  auto mat = [&](const std::string& n, int64_t r, int64_t c) {
    return MatrixFromTensor(lookup(n), n, r, c);
  };
  auto stacked = [&](const std::vector<std::string>& names, const std::vector<int64_t>& rows,
                     int64_t c) -> absl::StatusOr<cpu::Linear> {
    std::vector<cpu::Matrix> parts;
    for (size_t i = 0; i < names.size(); ++i) {
      ASSIGN_OR_RETURN(cpu::Matrix raw, MatrixFromTensor(lookup(names[i]), names[i], rows[i], c));
      parts.push_back(raw);
    }
    ASSIGN_OR_RETURN(cpu::Linear l, cpu::Linear::CreateStacked(parts, options.precision));
    if (release && l.packed()) {
      for (const cpu::Matrix& raw : parts) release(raw.data, raw.rows * raw.row_bytes);
    }
    return l;
  };
  auto linear = [&](const std::string& n, int64_t r, int64_t c) { return stacked({n}, {r}, c); };
  auto vec = [&](const std::string& n, int64_t len) { return VectorFromTensor(lookup(n), n, len); };
  ASSIGN_OR_RETURN(m->embed_, mat("model.embed_tokens.weight", v, h));
  if (config.tied_embeddings) {
    ASSIGN_OR_RETURN(m->lm_head_, cpu::Linear::Create(m->embed_, options.precision));
    if (release && m->lm_head_.packed())
      release(m->embed_.data, m->embed_.rows * m->embed_.row_bytes);
  } else {
    ASSIGN_OR_RETURN(m->lm_head_, linear("lm_head.weight", v, h));
  }
  ASSIGN_OR_RETURN(m->final_norm_, vec("model.norm.weight", h));
  m->weight_bytes_ = m->lm_head_.bytes() + m->embed_.row_bytes;
  for (int l = 0; l < config.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Layer L;
    ASSIGN_OR_RETURN(L.attn_norm, vec(p + "input_layernorm.weight", h));
    ASSIGN_OR_RETURN(L.ffn_norm, vec(p + "post_attention_layernorm.weight", h));
    ASSIGN_OR_RETURN(L.wqkv, stacked({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                      p + "self_attn.v_proj.weight"},
                                     {qd, kvd, kvd}, h));
    ASSIGN_OR_RETURN(L.wo, linear(p + "self_attn.o_proj.weight", h, qd));
    ASSIGN_OR_RETURN(L.w_gate_up, stacked({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"},
                                          {ffn, ffn}, h));
    ASSIGN_OR_RETURN(L.w_down, linear(p + "mlp.down_proj.weight", h, ffn));
    for (const cpu::Linear* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) {
      m->weight_bytes_ += w->bytes();
    }
    m->layers_.push_back(std::move(L));
  }

  m->rope_ = Rope(config.head_dim, config.rope_theta, config.rope_scaling, config.max_position,
                  config.rope_interleaved);
  return m;
}

LlamaModel::~LlamaModel() = default;

std::unique_ptr<KvCache> LlamaModel::NewCache(int64_t capacity) const {
  return std::make_unique<KvCache>(config_.num_layers, config_.num_kv_heads, config_.head_dim,
                                   capacity);
}

std::string LlamaModel::dtype_summary() const {
  std::map<std::string, int> count;
  for (const Layer& L : layers_) {
    for (const cpu::Linear* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) {
      for (const cpu::Matrix& part : w->parts()) ++count[std::string(DTypeName(part.dtype))];
    }
  }
  std::string s = absl::StrCat("lm_head ", DTypeName(lm_head_.raw().dtype), "; layers");
  for (const auto& [k, n] : count) absl::StrAppend(&s, " ", n, "x", k);
  absl::StrAppend(&s, int8() ? "; compute: integer activations" : "; compute: f32 activations");
  return s;
}

void LlamaModel::Embed(int32_t token, float* out) const {
  DequantizeRowScalar(embed_.dtype, embed_.row(token), out, embed_.cols);
}

// ---------------------------------------------------------------------------------------------
// Forward

absl::StatusOr<ForwardResult> LlamaModel::Forward(KvCache& cache, const ForwardRequest& req) const {
  const LlamaConfig& c = config_;
  const int64_t t_len = static_cast<int64_t>(req.tokens.size());
  const int64_t base = cache.length();
  if (t_len == 0) return absl::InvalidArgumentError("Forward: no tokens");
  if (base + t_len > cache.capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat("Forward: ", base, " cached + ", t_len,
                                                     " new tokens exceed the KV capacity ",
                                                     cache.capacity()));
  }
  const bool tree = !req.parents.empty();
  if (tree && req.parents.size() != req.tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Forward: ", req.parents.size(), " parents for ", t_len, " tokens"));
  }
  for (int64_t i = 0; i < t_len; ++i) {
    if (req.tokens[i] < 0 || req.tokens[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("Forward: token id ", req.tokens[i],
                                                     " at index ", i, " is outside [0, ",
                                                     c.vocab_size, ")"));
    }
    if (tree && (req.parents[i] < -1 || req.parents[i] >= i)) {
      return absl::InvalidArgumentError(absl::StrCat("Forward: parent ", req.parents[i],
                                                     " of tree node ", i,
                                                     " must be -1 or a smaller index"));
    }
  }
  for (int layer : req.capture_layers) {
    if (layer < 0 || layer >= c.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: capture layer ", layer, " out of range"));
    }
  }
  // Positions and, for a tree, each node's visible tree slots (ancestors then itself).
  std::vector<int64_t> pos(t_len);
  std::vector<std::vector<int32_t>> visible(tree ? t_len : 0);
  for (int64_t i = 0; i < t_len; ++i) {
    if (!tree) {
      pos[i] = base + i;
      continue;
    }
    const int32_t p = req.parents[i];
    pos[i] = p < 0 ? base : pos[p] + 1;
    if (p >= 0) visible[i] = visible[p];
    visible[i].push_back(static_cast<int32_t>(i));
  }
  // Absolute cache slots of each tree node's visible tree tokens.
  std::vector<std::vector<int32_t>> slots(visible.size());
  for (size_t i = 0; i < visible.size(); ++i) {
    for (int32_t j : visible[i]) slots[i].push_back(static_cast<int32_t>(base + j));
  }
  if (pos.back() >= c.max_position || *std::max_element(pos.begin(), pos.end()) >= c.max_position) {
    return absl::OutOfRangeError(
        absl::StrCat("Forward: position beyond the model's context ", c.max_position));
  }

  const int64_t h = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim(), ffn = c.intermediate_size;
  const int hd = c.head_dim, nh = c.num_heads, group = c.num_heads / c.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  ForwardResult out;
  out.num_tokens = t_len;
  const int64_t qkv_dim = qd + 2 * kvd;
  std::vector<float> x(t_len * h), xn(t_len * h), qkv(t_len * qkv_dim), att(t_len * qd);
  std::vector<float> tmp(t_len * h), gate_up(t_len * 2 * ffn), act(t_len * ffn);
  for (int64_t i = 0; i < t_len; ++i) Embed(req.tokens[i], x.data() + i * h);
  const int64_t n_capture = static_cast<int64_t>(req.capture_layers.size());
  if (n_capture > 0) out.layer_features.resize(t_len * n_capture * h);

  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[l];
    for (int64_t ci = 0; ci < n_capture; ++ci) {
      if (req.capture_layers[ci] != l) continue;
      for (int64_t i = 0; i < t_len; ++i) {
        std::memcpy(out.layer_features.data() + (i * n_capture + ci) * h, x.data() + i * h,
                    h * sizeof(float));
      }
    }
    // Attention block: norm -> q, k, v -> RoPE -> cache -> attention -> out-proj -> residual.
    ForTokens(t_len, [&](int64_t i) {
      cpu::RmsNorm(x.data() + i * h, L.attn_norm.data(), c.rms_norm_eps, h, xn.data() + i * h);
    });
    L.wqkv.Apply(xn.data(), t_len, qkv.data());  // per token: [q | k | v]
    ForTokens(t_len, [&](int64_t i) {
      float* row = qkv.data() + i * qkv_dim;
      rope_.Apply(row, nh, pos[i]);
      rope_.Apply(row + qd, c.num_kv_heads, pos[i]);
      cache.StoreKeys(l, base + i, row + qd);
      std::memcpy(cache.v(l, base + i), row + qd + kvd, kvd * sizeof(float));
    });
    // Attention: each (token, kv head) pair attends for the query heads that share the kv head.
    // Visible slots in increasing order: the cached prefix, then (tree) the ancestors and the
    // node itself, or (chain) the earlier tokens of this request and itself.
#pragma omp parallel
    {
      std::vector<float> scores(static_cast<size_t>(group) * (base + t_len));
#pragma omp for collapse(2) schedule(static)
      for (int64_t i = 0; i < t_len; ++i) {
        for (int kvh = 0; kvh < c.num_kv_heads; ++kvh) {
          const float* qi = qkv.data() + i * qkv_dim + kvh * group * hd;
          float* o = att.data() + i * qd + kvh * group * hd;
          const float* kt = cache.kt(l, kvh);
          const float* vb = cache.v(l, 0) + kvh * hd;
          if (tree) {
            cpu::AttendGroup(qi, group, kt, cache.capacity(), vb, kvd, hd, base, slots[i].data(),
                             static_cast<int>(slots[i].size()), scale, scores.data(), o);
          } else {
            cpu::AttendGroup(qi, group, kt, cache.capacity(), vb, kvd, hd, base + i + 1, nullptr, 0,
                             scale, scores.data(), o);
          }
        }
      }
    }
    L.wo.Apply(att.data(), t_len, tmp.data());
    for (int64_t e = 0; e < t_len * h; ++e) x[e] += tmp[e];
    // MLP block: norm -> gate, up -> SwiGLU -> down -> residual.
    ForTokens(t_len, [&](int64_t i) {
      cpu::RmsNorm(x.data() + i * h, L.ffn_norm.data(), c.rms_norm_eps, h, xn.data() + i * h);
    });
    L.w_gate_up.Apply(xn.data(), t_len, gate_up.data());  // per token: [gate | up]
    ForTokens(t_len, [&](int64_t i) {
      const float* gu = gate_up.data() + i * 2 * ffn;
      cpu::SwiGlu(gu, gu + ffn, ffn, act.data() + i * ffn);
    });
    L.w_down.Apply(act.data(), t_len, tmp.data());
    for (int64_t e = 0; e < t_len * h; ++e) x[e] += tmp[e];
  }
  ForTokens(t_len, [&](int64_t i) {
    cpu::RmsNorm(x.data() + i * h, final_norm_.data(), c.rms_norm_eps, h, xn.data() + i * h);
  });
  if (req.return_features) out.features.assign(xn.begin(), xn.end());
  if (req.logits == LogitsMode::kAll) {
    out.logits.resize(t_len * c.vocab_size);
    lm_head_.Apply(xn.data(), t_len, out.logits.data());
  } else if (req.logits == LogitsMode::kLast) {
    out.logits.resize(c.vocab_size);
    lm_head_.Apply(xn.data() + (t_len - 1) * h, 1, out.logits.data());
  }
  cache.set_length(base + t_len);
  return out;
}

}  // namespace eagle
