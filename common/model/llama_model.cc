#include "common/model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/cpu/kernels.h"
#include "common/cuda/cuda_backend.h"
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

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
    std::string chat_template;
    if (auto data = LoadHfTokenizerData(path); data.ok()) {
      chat_template = data->chat_template;
      ASSIGN_OR_RETURN(tok, Tokenizer::Create(*std::move(data)));
    } else if (!absl::IsNotFound(data.status())) {
      return data.status();
    }
    SafetensorsSet* raw = st.get();
    auto model = Create(
        config, [raw](const std::string& n) { return raw->FindTensor(n); }, st, std::move(tok),
        options);
    if (model.ok()) (*model)->chat_template_ = std::move(chat_template);
    return model;
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

std::string TensorParallelDegrees(const LlamaConfig& config) {
  std::string out;
  for (int d = 1; d <= config.num_kv_heads; ++d) {
    if (config.num_kv_heads % d == 0 && config.intermediate_size % d == 0 &&
        (config.q_dim() / d) % 32 == 0 && (config.intermediate_size / d) % 32 == 0) {
      absl::StrAppend(&out, " ", d);
    }
  }
  return out;
}

absl::StatusOr<int> ParseDevice(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  int index = -1;
  if (device.rfind("cuda:", 0) == 0 && absl::SimpleAtoi(device.substr(5), &index) && index >= 0) {
    return index;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device must be cpu, cuda or cuda:N, not \"", device, "\""));
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
  // Tensor parallel: this rank's share (Megatron-style; cpu_backend.h).
  const int world = options.comm != nullptr ? options.comm->world_size() : 1;
  const int rank = options.comm != nullptr ? options.comm->rank() : 0;
  LlamaConfig local = config;
  TensorParallelShare tp;
  if (world > 1) {
    if (ParseDevice(options.device).value_or(-1) >= 0) {
      return absl::UnimplementedError(
          "tensor parallelism runs on the CPU backend only in this build (--device cpu)");
    }
    if (config.num_kv_heads % world != 0 || config.intermediate_size % world != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor-parallel degree ", world, " must divide the KV heads (",
                       config.num_kv_heads, ") and the FFN width (", config.intermediate_size,
                       "); degrees that do:", TensorParallelDegrees(config)));
    }
    if ((qd / world) % 32 != 0 || (ffn / world) % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor-parallel degree ", world, " leaves each rank ", qd / world, " query columns and ",
          ffn / world, " FFN columns; the kernels need multiples of 32; degrees that do:",
          TensorParallelDegrees(config)));
    }
    local.num_heads = config.num_heads / world;
    local.num_kv_heads = config.num_kv_heads / world;
    local.intermediate_size = config.intermediate_size / world;
    m->comm_ = options.comm;
    tp.comm = options.comm;
    tp.vocab_chunk = (v + world - 1) / world;
    if (v - (world - 1) * tp.vocab_chunk <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor-parallel degree ", world, " leaves a rank no rows of a vocabulary of ", v));
    }
  }
  auto mat = [&](const std::string& n, int64_t r, int64_t c) {
    return MatrixFromTensor(lookup(n), n, r, c);
  };
  // This rank's rows [rank * rows / world, ...) and columns of a matrix, the columns on the
  // boundaries of the type's blocks.
  struct Share {
    bool rows = false, cols = false;
  };
  auto shard = [&](cpu::Matrix m, Share share,
                   const std::string& name) -> absl::StatusOr<cpu::Matrix> {
    if (world == 1) return m;
    if (share.rows) {
      const int64_t n = m.rows / world;
      m.data += rank * n * m.row_bytes;
      m.rows = n;
    }
    if (share.cols) {
      const int64_t n = m.cols / world, block = GetDTypeInfo(m.dtype).block_size;
      if (n % block != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor-parallel degree ", world, " splits ", name, " (", DTypeName(m.dtype),
            ", blocks of ", block, ") inside a block: ", m.cols, " columns / ", world, " = ", n));
      }
      m.data += RowBytes(m.dtype, rank * n);
      m.cols = n;
    }
    return m;
  };
  auto stacked = [&](const std::vector<std::string>& names, const std::vector<int64_t>& rows,
                     int64_t c, Share share = {}) -> absl::StatusOr<cpu::Linear> {
    std::vector<cpu::Matrix> parts;
    for (size_t i = 0; i < names.size(); ++i) {
      ASSIGN_OR_RETURN(cpu::Matrix raw, MatrixFromTensor(lookup(names[i]), names[i], rows[i], c));
      ASSIGN_OR_RETURN(raw, shard(raw, share, names[i]));
      parts.push_back(raw);
    }
    ASSIGN_OR_RETURN(cpu::Linear l, cpu::Linear::CreateStacked(parts, options.precision));
    if (release && l.packed()) {
      for (const cpu::Matrix& raw : parts) release(raw.data, raw.rows * raw.row_bytes);
    }
    return l;
  };
  auto linear = [&](const std::string& n, int64_t r, int64_t c, Share share = {}) {
    return stacked({n}, {r}, c, share);
  };
  auto vec = [&](const std::string& n, int64_t len) { return VectorFromTensor(lookup(n), n, len); };
  CpuBackend::Weights w;
  ASSIGN_OR_RETURN(w.embed, mat("model.embed_tokens.weight", v, h));
  cpu::Matrix head;
  if (config.tied_embeddings) {
    head = w.embed;
  } else {
    ASSIGN_OR_RETURN(head, mat("lm_head.weight", v, h));
  }
  if (world > 1) {
    // The rows of this rank's share of the vocabulary; the whole head stays for draft heads
    // (not released: the backend's share reads the same rows).
    ASSIGN_OR_RETURN(cpu::Linear full, cpu::Linear::Create(head, options.precision));
    m->full_lm_head_ = std::make_unique<cpu::Linear>(std::move(full));
    cpu::Matrix mine = head;
    mine.data += rank * tp.vocab_chunk * head.row_bytes;
    mine.rows = std::min<int64_t>(tp.vocab_chunk, v - rank * tp.vocab_chunk);
    ASSIGN_OR_RETURN(w.lm_head, cpu::Linear::Create(mine, options.precision));
  } else {
    ASSIGN_OR_RETURN(w.lm_head, cpu::Linear::Create(head, options.precision));
    if (release && w.lm_head.packed()) release(head.data, head.rows * head.row_bytes);
  }
  ASSIGN_OR_RETURN(w.final_norm, vec("model.norm.weight", h));
  for (int l = 0; l < config.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    CpuBackend::Layer L;
    ASSIGN_OR_RETURN(L.attn_norm, vec(p + "input_layernorm.weight", h));
    ASSIGN_OR_RETURN(L.ffn_norm, vec(p + "post_attention_layernorm.weight", h));
    // Whole heads per rank: q rows by query head, k and v rows by KV head (GQA: a rank's query
    // heads are the ones its KV heads serve); o and down by the matching columns.
    ASSIGN_OR_RETURN(L.wqkv, stacked({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                      p + "self_attn.v_proj.weight"},
                                     {qd, kvd, kvd}, h, {.rows = true}));
    ASSIGN_OR_RETURN(L.wo, linear(p + "self_attn.o_proj.weight", h, qd, {.cols = true}));
    ASSIGN_OR_RETURN(L.w_gate_up, stacked({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"},
                                          {ffn, ffn}, h, {.rows = true}));
    ASSIGN_OR_RETURN(L.w_down, linear(p + "mlp.down_proj.weight", h, ffn, {.cols = true}));
    w.layers.push_back(std::move(L));
  }
  m->cpu_ = std::make_unique<CpuBackend>(local, std::move(w), options.pool, std::move(tp));
  ASSIGN_OR_RETURN(const int gpu, ParseDevice(options.device));
  if (gpu >= 0) {
    ASSIGN_OR_RETURN(m->device_, MakeCudaBackend(*m->cpu_, gpu));
  }
  return m;
}

std::unique_ptr<KvCache> LlamaModel::NewCache(int64_t capacity) const {
  std::unique_ptr<KvCache> cache = backend().NewCache(capacity);
  if (comm_ != nullptr) {
    std::lock_guard<std::mutex> lock(pass_mu_);
    if (leader_ != nullptr) ReplicateCache(*cache);
  }
  return cache;
}

bool LlamaModel::int8() const {
  const CpuBackend::Weights& w = cpu_->weights();
  return w.lm_head.packed() || (!w.layers.empty() && w.layers[0].wqkv.packed());
}

std::string LlamaModel::dtype_summary() const {
  std::map<std::string, int> count;
  for (const CpuBackend::Layer& L : cpu_->weights().layers) {
    for (const cpu::Linear* w : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) {
      for (const cpu::Matrix& part : w->parts()) ++count[std::string(DTypeName(part.dtype))];
    }
  }
  std::string s = absl::StrCat("lm_head ", DTypeName(lm_head().raw().dtype), "; layers");
  for (const auto& [k, n] : count) absl::StrAppend(&s, " ", n, "x", k);
  absl::StrAppend(&s, int8() ? "; compute: integer activations" : "; compute: f32 activations");
  return s;
}

std::string LlamaModel::Fingerprint() const {
  // FNV-1a over the architecture, every token's bytes and 64 embedding rows spread over the
  // vocabulary: cheap, and different for any other model or tokenizer in practice.
  uint64_t hash = 1469598103934665603ull;
  auto mix = [&](const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  };
  const LlamaConfig& c = config_;
  const int64_t dims[] = {c.vocab_size, c.hidden_size,  c.intermediate_size, c.num_layers,
                          c.num_heads,  c.num_kv_heads, c.head_dim,          c.max_position};
  mix(dims, sizeof(dims));
  mix(&c.rope_theta, sizeof(c.rope_theta));
  if (tokenizer_ != nullptr) {
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
      const std::string t = tokenizer_->TokenBytes(id);
      mix(t.data(), t.size());
    }
  }
  std::vector<float> row(c.hidden_size);
  for (int i = 0; i < 64; ++i) {
    Embed(static_cast<int32_t>((static_cast<int64_t>(i) * 7919) % c.vocab_size), row.data());
    mix(row.data(), row.size() * sizeof(float));
  }
  return absl::StrFormat("%016x", hash);
}

// ---------------------------------------------------------------------------------------------
// Forward

absl::StatusOr<ForwardResult> LlamaModel::Forward(KvCache& cache, const ForwardRequest& req) const {
  KvCache* caches[1] = {&cache};
  ASSIGN_OR_RETURN(std::vector<ForwardResult> out,
                   ForwardBatch(caches, std::span<const ForwardRequest>(&req, 1)));
  return std::move(out[0]);
}

absl::Status LlamaModel::CheckRequest(const KvCache& cache, const ForwardRequest& req) const {
  const LlamaConfig& c = config_;
  const int64_t t_len = static_cast<int64_t>(req.tokens.size());
  const int64_t base = cache.length();
  if (cache.owner() != &backend()) {
    return absl::InvalidArgumentError(
        "Forward: the KV cache was not made by this model (LlamaModel::NewCache)");
  }
  if (!cache.allocated()) {
    return absl::ResourceExhaustedError("Forward: the KV cache could not be allocated");
  }
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
  int64_t max_depth = tree ? 0 : t_len - 1;
  std::vector<int64_t> depth(tree ? t_len : 0);
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
    if (tree) {
      depth[i] = req.parents[i] < 0 ? 0 : depth[req.parents[i]] + 1;
      max_depth = std::max(max_depth, depth[i]);
    }
  }
  for (int layer : req.capture_layers) {
    if (layer < 0 || layer >= c.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: capture layer ", layer, " out of range"));
    }
  }
  if (base + max_depth >= c.max_position) {
    return absl::OutOfRangeError(
        absl::StrCat("Forward: position beyond the model's context ", c.max_position));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ForwardResult>> LlamaModel::ForwardBatch(
    std::span<KvCache* const> caches, std::span<const ForwardRequest> reqs) const {
  const LlamaConfig& c = config_;
  if (caches.size() != reqs.size() || reqs.empty()) {
    return absl::InvalidArgumentError("ForwardBatch: one cache per request, at least one");
  }
  const int64_t n_seq = static_cast<int64_t>(reqs.size());
  for (int64_t s = 0; s < n_seq; ++s) {
    for (int64_t u = 0; u < s; ++u) {
      if (caches[u] == caches[s]) {
        return absl::InvalidArgumentError("ForwardBatch: a cache appears twice in one batch");
      }
    }
    RETURN_IF_ERROR(CheckRequest(*caches[s], reqs[s]));
  }
  const BatchPlan plan = PlanBatch(caches, reqs);
  std::unique_lock<std::mutex> one_pass(pass_mu_, std::defer_lock);
  if (comm_ != nullptr) {
    one_pass.lock();
    if (stopped_following_) {
      return absl::FailedPreconditionError("the tensor-parallel group was stopped");
    }
    if (leader_ != nullptr) RETURN_IF_ERROR(BroadcastPass(caches, reqs));
  }
  const ModelBackend& b = backend();
  ASSIGN_OR_RETURN(std::unique_ptr<Workspace> ws, b.Acquire(plan.num_rows()));
  std::vector<ForwardResult> out(n_seq);
  for (int64_t s = 0; s < n_seq; ++s) {
    out[s].num_tokens = static_cast<int64_t>(reqs[s].tokens.size());
    const int64_t n_capture = static_cast<int64_t>(reqs[s].capture_layers.size());
    if (n_capture > 0) out[s].layer_features.resize(out[s].num_tokens * n_capture * c.hidden_size);
  }
  absl::Status pass = RunLayers(plan, caches, reqs, *ws, out);
  if (!pass.ok() && leader_ != nullptr) GroupFailed(pass);
  b.Release(std::move(ws));
  RETURN_IF_ERROR(pass);
  for (int64_t s = 0; s < n_seq; ++s) {
    caches[s]->set_length(caches[s]->length() + out[s].num_tokens);
  }
  return out;
}

absl::Status LlamaModel::RunLayers(const BatchPlan& plan, std::span<KvCache* const> caches,
                                   std::span<const ForwardRequest> reqs, Workspace& ws,
                                   std::vector<ForwardResult>& out) const {
  const ModelBackend& b = backend();
  RETURN_IF_ERROR(b.Embed(plan, ws));
  for (int l = 0; l < config_.num_layers; ++l) {
    RETURN_IF_ERROR(CaptureLayerInputs(l, plan, reqs, ws, out));
    RETURN_IF_ERROR(b.Attention(l, plan, caches, ws));
    RETURN_IF_ERROR(b.Mlp(l, plan, ws));
  }
  RETURN_IF_ERROR(b.FinalNorm(plan, ws));
  for (int64_t s = 0; s < plan.num_sequences(); ++s) {
    if (!reqs[s].return_features) continue;
    out[s].features.resize(out[s].num_tokens * config_.hidden_size);
    RETURN_IF_ERROR(b.ReadNormed(ws, plan.first_row[s], out[s].num_tokens, out[s].features.data()));
  }
  return ComputeLogits(plan, reqs, ws, out);
}

absl::Status LlamaModel::CaptureLayerInputs(int layer, const BatchPlan& plan,
                                            std::span<const ForwardRequest> reqs,
                                            const Workspace& ws,
                                            std::vector<ForwardResult>& out) const {
  const int64_t h = config_.hidden_size;
  for (int64_t s = 0; s < plan.num_sequences(); ++s) {
    const auto& cap = reqs[s].capture_layers;
    const int64_t n_capture = static_cast<int64_t>(cap.size());
    for (int64_t ci = 0; ci < n_capture; ++ci) {
      if (cap[ci] != layer) continue;
      for (int64_t i = 0; i < out[s].num_tokens; ++i) {
        RETURN_IF_ERROR(backend().ReadResidual(
            ws, plan.first_row[s] + i, 1, out[s].layer_features.data() + (i * n_capture + ci) * h));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::ComputeLogits(const BatchPlan& plan, std::span<const ForwardRequest> reqs,
                                       Workspace& ws, std::vector<ForwardResult>& out) const {
  const int64_t vocab = config_.vocab_size;
  // The rows that want logits, and apart from them those that want only their argmax.
  std::vector<int64_t> rows, argmax_rows;
  for (int64_t s = 0; s < plan.num_sequences(); ++s) {
    std::vector<int64_t>& to = reqs[s].argmax_only ? argmax_rows : rows;
    if (reqs[s].logits == LogitsMode::kAll) {
      for (int64_t i = plan.first_row[s]; i < plan.first_row[s + 1]; ++i) to.push_back(i);
    } else if (reqs[s].logits == LogitsMode::kLast) {
      to.push_back(plan.first_row[s + 1] - 1);
    }
  }
  // Without an argmax of the backend's own, the argmax rows' logits come after the others' and
  // are reduced here.
  const bool reduce = backend().ReducesArgmax();
  const int64_t host_argmax_from = static_cast<int64_t>(rows.size());
  if (!reduce) rows.insert(rows.end(), argmax_rows.begin(), argmax_rows.end());
  std::vector<int32_t> ids(argmax_rows.size());
  if (reduce && !argmax_rows.empty()) {
    RETURN_IF_ERROR(backend().Argmax(ws, argmax_rows, ids.data()));
  }
  std::vector<float> logits(static_cast<int64_t>(rows.size()) * vocab);
  if (!rows.empty()) RETURN_IF_ERROR(backend().Logits(ws, rows, logits.data()));
  for (size_t k = 0; !reduce && k < ids.size(); ++k) {
    ids[k] = cpu::Argmax(logits.data() + (host_argmax_from + static_cast<int64_t>(k)) * vocab,
                         static_cast<int>(vocab));
  }
  int64_t j = 0, k = 0;
  for (int64_t s = 0; s < plan.num_sequences(); ++s) {
    const int64_t n = reqs[s].logits == LogitsMode::kAll    ? out[s].num_tokens
                      : reqs[s].logits == LogitsMode::kLast ? 1
                                                            : 0;
    if (reqs[s].argmax_only) {
      out[s].argmax.assign(ids.begin() + k, ids.begin() + k + n);
      k += n;
    } else {
      out[s].logits.assign(logits.begin() + j * vocab, logits.begin() + (j + n) * vocab);
      j += n;
    }
  }
  return absl::OkStatus();
}

absl::Status WarmUp(const LlamaModel& model) {
  const LlamaConfig& c = model.config();
  const int32_t vocab = static_cast<int32_t>(c.vocab_size);
  // 8 prompt tokens and a depth-2 tree after them, fewer where the context is that short.
  const int64_t prompt_len = std::clamp<int64_t>(c.max_position - 3, 1, 8);
  std::vector<int32_t> prompt(prompt_len);
  for (int64_t i = 0; i < prompt_len; ++i) {
    prompt[i] = static_cast<int32_t>((i * 7919 + 1) % vocab);
  }
  std::unique_ptr<KvCache> cache = model.NewCache(16);
  ForwardRequest prefill;
  prefill.tokens = prompt;
  prefill.return_features = true;
  ASSIGN_OR_RETURN(ForwardResult prefilled, model.Forward(*cache, prefill));
  RETURN_IF_ERROR(CheckFinite(prefilled.logits, "prefill logit"));
  RETURN_IF_ERROR(CheckFinite(prefilled.features, "prefill feature"));
  if (prompt_len + 3 > c.max_position) return absl::OkStatus();  // no room for the tree
  const std::vector<int32_t> tree_tokens = {1 % vocab, 2 % vocab, 3 % vocab, 4 % vocab};
  const std::vector<int32_t> parents = {-1, 0, 0, 1};
  ForwardRequest tree;
  tree.tokens = tree_tokens;
  tree.parents = parents;
  ASSIGN_OR_RETURN(ForwardResult verified, model.Forward(*cache, tree));
  return CheckFinite(verified.logits, "tree logit");
}

}  // namespace eagle
