#include "common/eagle/eagle_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/io/safetensors.h"
#include "common/model/tensor_utils.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

// Entry i of an int64 d2t tensor. Safetensors data offsets need not be 8-byte aligned, so the
// value is copied out rather than loaded through an int64_t pointer.
int64_t D2tOffset(const TensorRef& d2t, int64_t i) {
  int64_t v;
  std::memcpy(&v, d2t.data + i * sizeof(int64_t), sizeof v);
  return v;
}

namespace fs = std::filesystem;

}  // namespace

absl::StatusOr<EagleHeadConfig> ParseEagleHeadConfig(const std::string& text,
                                                     const std::string& path) {
  ASSIGN_OR_RETURN(LlamaConfig lc, ParseHfConfig(text, path));
  EagleHeadConfig c;
  c.hidden_size = lc.hidden_size;
  c.intermediate_size = lc.intermediate_size;
  c.num_heads = lc.num_heads;
  c.num_kv_heads = lc.num_kv_heads;
  // EAGLE computes head_dim as hidden / heads, ignoring any config head_dim.
  c.head_dim = lc.num_heads > 0 ? lc.hidden_size / lc.num_heads : 0;
  c.vocab_size = lc.vocab_size;
  c.rms_norm_eps = lc.rms_norm_eps;
  c.rope_theta = lc.rope_theta;
  c.rope_scaling = lc.rope_scaling;
  c.max_position = lc.max_position;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (j.contains("bias") && j["bias"].is_boolean()) c.fc_bias = j["bias"].get<bool>();
    if (j.contains("draft_vocab_size")) {
      if (!j["draft_vocab_size"].is_number_integer()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": draft_vocab_size is not an integer"));
      }
      c.kind = EagleHeadConfig::Kind::kEagle3;
      c.draft_vocab_size = j["draft_vocab_size"].get<int>();
      // EAGLE-3's fc has no bias unless the config says so; RoPE base defaults to 10000 (the
      // draft config's, never the target's).
      c.fc_bias = j.contains("bias") && j["bias"].is_boolean() && j["bias"].get<bool>();
      if (!j.contains("rope_theta")) c.rope_theta = 10000.0;
      if (j.contains("target_hidden_size") && j["target_hidden_size"].is_number_integer() &&
          j["target_hidden_size"].get<int>() != c.hidden_size) {
        return absl::UnimplementedError(
            absl::StrCat(path, ": target_hidden_size != hidden_size is not supported"));
      }
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad config.json: ", e.what()));
  }
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.head_dim % 2 != 0 || c.head_dim > 256) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad EAGLE head dimensions"));
  }
  return c;
}

absl::StatusOr<std::unique_ptr<EagleHead>> EagleHead::Load(const std::string& dir,
                                                           const LlamaModel& target,
                                                           const ModelOptions& options) {
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  std::ifstream in(cfg_path);
  if (!in) return absl::NotFoundError(absl::StrCat(cfg_path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  ASSIGN_OR_RETURN(EagleHeadConfig config, ParseEagleHeadConfig(ss.str(), cfg_path));
  std::shared_ptr<SafetensorsSet> st;
  {
    ASSIGN_OR_RETURN(auto s, SafetensorsSet::Open(dir));
    st = std::move(s);
  }
  SafetensorsSet* raw = st.get();
  auto head = Create(
      config, [raw](const std::string& n) { return raw->FindTensor(n); }, st, target, options);
  if (!head.ok()) {
    return absl::Status(head.status().code(), absl::StrCat(dir, ": ", head.status().message()));
  }
  return head;
}

absl::StatusOr<std::unique_ptr<EagleHead>> EagleHead::Create(const EagleHeadConfig& config,
                                                             const TensorLookup& lookup,
                                                             std::shared_ptr<void> keepalive,
                                                             const LlamaModel& target,
                                                             const ModelOptions& options) {
  const LlamaConfig& tc = target.config();
  if (config.hidden_size != tc.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head hidden size ", config.hidden_size, " does not match the target's ", tc.hidden_size));
  }
  if (config.vocab_size != 0 && config.vocab_size != tc.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("head vocabulary ", config.vocab_size,
                                                   " does not match the target's ", tc.vocab_size));
  }
  auto h = std::unique_ptr<EagleHead>(new EagleHead());
  h->config_ = config;
  h->config_.vocab_size = tc.vocab_size;
  h->keepalive_ = std::move(keepalive);
  h->target_ = &target;
  const int64_t hs = config.hidden_size, ffn = config.intermediate_size;
  const int64_t qd = static_cast<int64_t>(config.num_heads) * config.head_dim;
  const int64_t kvd = static_cast<int64_t>(config.num_kv_heads) * config.head_dim;
  // On the integer paths, float head weights are requantized to Q8_0 (owned by the head) so that
  // draft steps run on the int8 kernels; this changes draft numerics only, never the output.
  const bool requantize = options.precision != cpu::Precision::kF32;
  auto stacked = [&](const std::vector<std::string>& names, const std::vector<int64_t>& rows,
                     int64_t cols) -> absl::StatusOr<cpu::Linear> {
    std::vector<cpu::Matrix> parts;
    for (size_t i = 0; i < names.size(); ++i) {
      ASSIGN_OR_RETURN(cpu::Matrix m, MatrixFromTensor(lookup(names[i]), names[i], rows[i], cols));
      const bool is_float =
          m.dtype == DType::kF32 || m.dtype == DType::kF16 || m.dtype == DType::kBF16;
      if (requantize && is_float && cols % 64 == 0) {
        auto& buf =
            h->owned_.emplace_back(static_cast<size_t>(m.rows * cols / kQK * sizeof(BlockQ8_0)));
        std::vector<float> row(cols);
        for (int64_t r = 0; r < m.rows; ++r) {
          DequantizeRowScalar(m.dtype, m.row(r), row.data(), cols);
          QuantizeRowQ8_0(row.data(), cols, buf.data() + r * RowBytes(DType::kQ8_0, cols));
        }
        m.dtype = DType::kQ8_0;
        m.data = buf.data();
        m.row_bytes = RowBytes(DType::kQ8_0, cols);
      }
      parts.push_back(m);
    }
    return cpu::Linear::CreateStacked(parts, options.precision);
  };
  const bool e3 = config.kind == EagleHeadConfig::Kind::kEagle3;
  ASSIGN_OR_RETURN(h->fc_, stacked({"fc.weight"}, {hs}, e3 ? 3 * hs : 2 * hs));
  if (config.fc_bias) {
    ASSIGN_OR_RETURN(h->fc_bias_, VectorFromTensor(lookup("fc.bias"), "fc.bias", hs));
  } else if (lookup("fc.bias") != nullptr) {
    return absl::InvalidArgumentError(
        "the checkpoint has fc.bias but config.json says bias: false");
  }
  const std::string p = e3 ? "midlayer." : "layers.0.";
  const int64_t attn_in = e3 ? 2 * hs : hs;
  ASSIGN_OR_RETURN(h->wqkv_, stacked({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                      p + "self_attn.v_proj.weight"},
                                     {qd, kvd, kvd}, attn_in));
  ASSIGN_OR_RETURN(h->wo_, stacked({p + "self_attn.o_proj.weight"}, {hs}, qd));
  ASSIGN_OR_RETURN(h->w_gate_up_,
                   stacked({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, {ffn, ffn}, hs));
  ASSIGN_OR_RETURN(h->w_down_, stacked({p + "mlp.down_proj.weight"}, {hs}, ffn));
  ASSIGN_OR_RETURN(h->post_norm_, VectorFromTensor(lookup(p + "post_attention_layernorm.weight"),
                                                   p + "post_attention_layernorm.weight", hs));
  if (e3) {
    ASSIGN_OR_RETURN(h->input_norm_, VectorFromTensor(lookup(p + "input_layernorm.weight"),
                                                      p + "input_layernorm.weight", hs));
    ASSIGN_OR_RETURN(h->hidden_norm_, VectorFromTensor(lookup(p + "hidden_norm.weight"),
                                                       p + "hidden_norm.weight", hs));
    ASSIGN_OR_RETURN(h->final_norm_, VectorFromTensor(lookup("norm.weight"), "norm.weight", hs));
    const int vd = config.draft_vocab_size;
    if (vd <= 0 || vd > tc.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("draft_vocab_size ", vd, " out of range"));
    }
    ASSIGN_OR_RETURN(h->draft_lm_head_, stacked({"lm_head.weight"}, {vd}, hs));
    const TensorRef* d2t = lookup("d2t");
    if (vd < tc.vocab_size && d2t == nullptr) {
      return absl::InvalidArgumentError("EAGLE-3 head with a reduced vocabulary has no d2t");
    }
    std::vector<int32_t> ids(vd);
    for (int i = 0; i < vd; ++i) ids[i] = i;
    if (d2t != nullptr) {
      if (d2t->dtype != DType::kI64 || d2t->numel() != vd) {
        return absl::InvalidArgumentError("d2t must be int64 [draft_vocab_size]");
      }
      for (int i = 0; i < vd; ++i) {
        const int64_t id = i + D2tOffset(*d2t, i);
        if (id < 0 || id >= tc.vocab_size || (i > 0 && id <= ids[i - 1])) {
          return absl::InvalidArgumentError("d2t must map to increasing target ids");
        }
        ids[i] = static_cast<int32_t>(id);
      }
    }
    h->draft_ids_ = std::move(ids);
  } else if (lookup(p + "input_layernorm.weight") != nullptr) {
    return absl::InvalidArgumentError(
        "layers.0.input_layernorm.weight present: not an EAGLE-1/2 head (they have no input norm)");
  }
  // The draft's own RoPE base and scaling, but a table as long as the target's context.
  h->rope_ = Rope(config.head_dim, config.rope_theta, config.rope_scaling,
                  std::max(config.max_position, tc.max_position), /*interleaved=*/false);
  h->precision_ = options.precision;
  h->pool_ = options.pool != nullptr ? options.pool : target.shared_pool();
  if (const TensorRef* d2t = lookup("d2t"); d2t != nullptr && !e3) {
    if (d2t->dtype != DType::kI64 || d2t->dims.size() != 1) {
      return absl::InvalidArgumentError("d2t must be a 1-D int64 tensor");
    }
    std::vector<int32_t> ids(d2t->dims[0]);
    for (size_t i = 0; i < ids.size(); ++i) {
      const int64_t id = static_cast<int64_t>(i) + D2tOffset(*d2t, static_cast<int64_t>(i));
      if (id < 0 || id >= tc.vocab_size)
        return absl::InvalidArgumentError("d2t maps outside the vocabulary");
      ids[i] = static_cast<int32_t>(id);
    }
    RETURN_IF_ERROR(h->SetDraftVocab(std::move(ids)));
  }
  return h;
}

absl::Status EagleHead::SetDraftVocab(std::vector<int32_t> ids) {
  if (config_.kind == EagleHeadConfig::Kind::kEagle3) {
    return absl::FailedPreconditionError("an EAGLE-3 head has its own draft vocabulary (d2t)");
  }
  if (ids.empty()) {
    draft_ids_.clear();
    draft_lm_head_ = cpu::Linear();
    return absl::OkStatus();
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= config_.vocab_size || (i > 0 && ids[i] <= ids[i - 1])) {
      return absl::InvalidArgumentError(
          "draft vocabulary ids must be strictly increasing target ids");
    }
  }
  // Row views of the target's LM head, one per run of consecutive ids.
  const cpu::Matrix& full = target_->lm_head().raw();
  std::vector<cpu::Matrix> parts;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i + 1;
    while (j < ids.size() && ids[j] == ids[j - 1] + 1) ++j;
    cpu::Matrix m = full;
    m.data = full.row(ids[i]);
    m.rows = static_cast<int64_t>(j - i);
    parts.push_back(m);
    i = j;
  }
  ASSIGN_OR_RETURN(draft_lm_head_, cpu::Linear::CreateStacked(parts, precision_));
  draft_ids_ = std::move(ids);
  return absl::OkStatus();
}

std::vector<int> Eagle3FeatureLayers(int num_layers) { return {2, num_layers / 2, num_layers - 3}; }

std::vector<int> EagleHead::feature_layers() const {
  if (config_.kind != EagleHeadConfig::Kind::kEagle3) return {};
  return Eagle3FeatureLayers(target_->config().num_layers);
}

std::unique_ptr<CpuKvCache> EagleHead::NewCache(int64_t capacity) const {
  return std::make_unique<CpuKvCache>(nullptr, 1, config_.num_kv_heads, config_.head_dim, capacity);
}

// A forward's activations, one set per thread (heads run on many handler threads at once),
// grown to the largest batch seen and reused: every buffer is written before it is read.
struct EagleHead::Scratch {
  std::vector<float> in;  // [n, 2H] the fc's or the decoder layer's input
  std::vector<float> u;   // [n, H] the decoder layer's residual stream
  std::vector<float> qkv, att, tmp, xn, gate_up, act, scores, e;
};

EagleHead::Scratch& EagleHead::ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

absl::Status EagleHead::CheckBatch(const KvCache& cache, const HeadBatch& b) const {
  const EagleHeadConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t base = cache.length();
  if (n == 0) return absl::InvalidArgumentError("draft head: empty batch");
  const bool e3 = c.kind == EagleHeadConfig::Kind::kEagle3;
  const int64_t fw = e3 && b.from_target ? 3 * c.hidden_size : c.hidden_size;
  if (static_cast<int64_t>(b.features.size()) != n * fw || b.positions.size() != b.tokens.size() ||
      b.n_prefix.size() != b.tokens.size() ||
      (!b.extra.empty() && b.extra.size() != b.tokens.size())) {
    return absl::InvalidArgumentError("draft head: batch arrays disagree in length");
  }
  if (base + n > cache.capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "draft head: ", base, " + ", n, " positions exceed the KV capacity ", cache.capacity()));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("draft head: token ", b.tokens[i], " out of range"));
    }
    if (b.positions[i] < 0 || b.positions[i] >= rope_.max_position()) {
      return absl::OutOfRangeError(absl::StrCat("draft head: position ", b.positions[i],
                                                " beyond its context ", rope_.max_position()));
    }
    if (b.n_prefix[i] < 0 || b.n_prefix[i] > base + n) {
      return absl::InvalidArgumentError("draft head: prefix beyond the written slots");
    }
    if (!b.extra.empty()) {
      for (int32_t s : b.extra[i]) {
        if (s < 0 || s >= base + n) return absl::InvalidArgumentError("draft head: bad extra slot");
      }
    }
  }
  return absl::OkStatus();
}

void EagleHead::AddFcBias(int64_t n, float* u) const {
  if (fc_bias_.empty()) return;
  const int64_t hs = config_.hidden_size;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < hs; ++j) u[i * hs + j] += fc_bias_[j];
  }
}

void EagleHead::ProjectInputs(const HeadBatch& b, Scratch& w) const {
  const EagleHeadConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size()), hs = c.hidden_size;
  w.in.resize(n * 2 * hs);
  if (c.kind != EagleHeadConfig::Kind::kEagle3) {
    // EAGLE-1/2: u = fc([E(x) ; f]) (+ bias); the attention's input is u itself (no norm).
    for (int64_t i = 0; i < n; ++i) {
      target_->Embed(b.tokens[i], w.in.data() + i * 2 * hs);
      std::memcpy(w.in.data() + i * 2 * hs + hs, b.features.data() + i * hs, hs * sizeof(float));
    }
    fc_.Apply(w.in.data(), n, w.u.data(), pool_.get());
    AddFcBias(n, w.u.data());
    wqkv_.Apply(w.u.data(), n, w.qkv.data(), pool_.get());
    return;
  }
  // EAGLE-3: u = fc(fused target features), or the previous draft output; the attention's
  // input is [norm(E(x)) ; norm(u)].
  if (b.from_target) {
    fc_.Apply(b.features.data(), n, w.u.data(), pool_.get());
    AddFcBias(n, w.u.data());
  } else {
    std::memcpy(w.u.data(), b.features.data(), n * hs * sizeof(float));
  }
  w.e.resize(hs);
  for (int64_t i = 0; i < n; ++i) {
    target_->Embed(b.tokens[i], w.e.data());
    cpu::RmsNorm(w.e.data(), input_norm_.data(), c.rms_norm_eps, static_cast<int>(hs),
                 w.in.data() + i * 2 * hs);
    cpu::RmsNorm(w.u.data() + i * hs, hidden_norm_.data(), c.rms_norm_eps, static_cast<int>(hs),
                 w.in.data() + i * 2 * hs + hs);
  }
  wqkv_.Apply(w.in.data(), n, w.qkv.data(), pool_.get());
}

void EagleHead::Attention(CpuKvCache& cache, const HeadBatch& b, Scratch& w) const {
  const EagleHeadConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size()), hs = c.hidden_size, hd = c.head_dim;
  const int64_t qd = static_cast<int64_t>(c.num_heads) * hd, kvd = c.num_kv_heads * hd;
  const int64_t qkv_dim = qd + 2 * kvd, base = cache.length();
  const int group = c.num_heads / c.num_kv_heads;
  for (int64_t i = 0; i < n; ++i) {
    float* row = w.qkv.data() + i * qkv_dim;
    rope_.Apply(row, c.num_heads, b.positions[i]);
    rope_.Apply(row + qd, c.num_kv_heads, b.positions[i]);
    cache.StoreKeys(0, base + i, row + qd);
    std::memcpy(cache.v(0, base + i), row + qd + kvd, kvd * sizeof(float));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  w.scores.resize(static_cast<size_t>(group) * (base + n + 1));
  for (int64_t i = 0; i < n; ++i) {
    for (int kvh = 0; kvh < c.num_kv_heads; ++kvh) {
      const std::vector<int32_t>* ex = b.extra.empty() ? nullptr : &b.extra[i];
      cpu::AttendGroup(w.qkv.data() + i * qkv_dim + kvh * group * hd, group, cache.kt(0, kvh),
                       cache.capacity(), cache.v(0, 0) + kvh * hd, kvd, static_cast<int>(hd),
                       b.n_prefix[i], ex ? ex->data() : nullptr,
                       ex ? static_cast<int>(ex->size()) : 0, scale, w.scores.data(),
                       w.att.data() + i * qd + kvh * group * hd);
    }
  }
  wo_.Apply(w.att.data(), n, w.tmp.data(), pool_.get());
  for (int64_t e = 0; e < n * hs; ++e) w.u[e] += w.tmp[e];  // u is now a
}

void EagleHead::Mlp(int64_t n, Scratch& w, float* out_features) const {
  const EagleHeadConfig& c = config_;
  const int64_t hs = c.hidden_size, ffn = c.intermediate_size;
  // g = a + MLP(RMSNorm_post(a))
  for (int64_t i = 0; i < n; ++i) {
    cpu::RmsNorm(w.u.data() + i * hs, post_norm_.data(), c.rms_norm_eps, static_cast<int>(hs),
                 w.xn.data() + i * hs);
  }
  w_gate_up_.Apply(w.xn.data(), n, w.gate_up.data(), pool_.get());
  for (int64_t i = 0; i < n; ++i) {
    const float* gu = w.gate_up.data() + i * 2 * ffn;
    cpu::SwiGlu(gu, gu + ffn, static_cast<int>(ffn), w.act.data() + i * ffn);
  }
  w_down_.Apply(w.act.data(), n, w.tmp.data(), pool_.get());
  for (int64_t e = 0; e < n * hs; ++e) out_features[e] = w.u[e] + w.tmp[e];
}

void EagleHead::DraftLogits(int64_t n, const float* g, Scratch& w, float* out_logits) const {
  const EagleHeadConfig& c = config_;
  const int64_t hs = c.hidden_size;
  if (c.kind == EagleHeadConfig::Kind::kEagle3) {
    for (int64_t i = 0; i < n; ++i) {
      cpu::RmsNorm(g + i * hs, final_norm_.data(), c.rms_norm_eps, static_cast<int>(hs),
                   w.xn.data() + i * hs);
    }
    draft_lm_head_.Apply(w.xn.data(), n, out_logits, pool_.get());
  } else if (draft_ids_.empty()) {
    target_->lm_head().Apply(g, n, out_logits, pool_.get());
  } else {
    draft_lm_head_.Apply(g, n, out_logits, pool_.get());
  }
}

absl::Status EagleHead::Forward(CpuKvCache& cache, const HeadBatch& b, float* out_features,
                                float* out_logits) const {
  RETURN_IF_ERROR(CheckBatch(cache, b));
  const EagleHeadConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size()), hs = c.hidden_size;
  const int64_t qd = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kvd = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  Scratch& w = ThreadScratch();
  w.u.resize(n * hs);
  w.qkv.resize(n * (qd + 2 * kvd));
  w.att.resize(n * qd);
  w.tmp.resize(n * hs);
  w.xn.resize(n * hs);
  w.gate_up.resize(n * 2 * c.intermediate_size);
  w.act.resize(n * c.intermediate_size);
  ProjectInputs(b, w);
  Attention(cache, b, w);
  Mlp(n, w, out_features);
  cache.set_length(cache.length() + n);
  if (out_logits != nullptr) DraftLogits(n, out_features, w, out_logits);
  return absl::OkStatus();
}

absl::Status WarmUp(const EagleHead& head) {
  constexpr int kPositions = 4;
  const int width = head.target_feature_width();
  std::vector<float> features(static_cast<size_t>(kPositions) * width);
  for (size_t i = 0; i < features.size(); ++i) {
    features[i] = 0.01f * static_cast<float>(i % 97) - 0.48f;
  }
  const int32_t vocab = head.config().vocab_size;
  const std::vector<int32_t> tokens = {1 % vocab, 2 % vocab, 3 % vocab, 4 % vocab};
  const std::vector<int64_t> positions = {0, 1, 2, 3};
  const std::vector<int64_t> n_prefix = {1, 2, 3, 4};  // causal
  HeadBatch batch;
  batch.tokens = tokens;
  batch.features = features;
  batch.from_target = true;
  batch.positions = positions;
  batch.n_prefix = n_prefix;
  std::unique_ptr<CpuKvCache> cache = head.NewCache(8);
  std::vector<float> out_features(static_cast<size_t>(kPositions) * head.config().hidden_size);
  std::vector<float> logits(static_cast<size_t>(kPositions) * head.draft_vocab_size());
  RETURN_IF_ERROR(head.Forward(*cache, batch, out_features.data(), logits.data()));
  RETURN_IF_ERROR(CheckFinite(out_features, "draft-head feature"));
  return CheckFinite(logits, "draft-head logit");
}

}  // namespace eagle
