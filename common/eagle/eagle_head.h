// EAGLE draft heads on the CPU backend.
//
// EAGLE-1/2 (the "feature extrapolator"):
//   u = fc([E(x_{t+1}) ; f_t]) (+ bias)          E: the target's embedding, f_t: target feature
//   a = u + Attn(u)                               no input norm (features are post-norm)
//   g = a + MLP(RMSNorm_post(a))                  g predicts f_{t+1}
//   logits = lm_head_target(g)                    no final norm
// Published layout: config.json + model.safetensors with fc.weight, fc.bias,
// layers.0.self_attn.{q,k,v,o}_proj.weight, layers.0.post_attention_layernorm.weight,
// layers.0.mlp.{gate,up,down}_proj.weight (an embed_tokens.weight is ignored: the target's is
// used).
//
// EAGLE-3 (config.json has draft_vocab_size):
//   x = fc([l_low ; l_mid ; l_high]) for target features (inputs of target layers 2, L/2, L-3),
//       or the previous draft output g (un-normalised) inside a tree
//   z = [RMSNorm_in(E(x_{t+1})) ; RMSNorm_hidden(x)]        2H wide
//   a = x + o_proj(Attn(q, k, v of z))
//   g = a + MLP(RMSNorm_post(a))
//   logits = lm_head(RMSNorm_final(g)) over the draft vocabulary; target id = i + d2t[i]
// Names: d2t, t2d, fc.weight, midlayer.self_attn.*, midlayer.{input_layernorm,hidden_norm,
// post_attention_layernorm}.weight, midlayer.mlp.*, norm.weight, lm_head.weight.
//
// Thread contract: immutable after Load; Forward is const (one caller per KvCache). Its matrix
// products run on ModelOptions::pool, or on the target's pool when none is given.
#ifndef EAGLE_COMMON_EAGLE_EAGLE_HEAD_H_
#define EAGLE_COMMON_EAGLE_EAGLE_HEAD_H_

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/linear.h"
#include "common/model/llama_model.h"
#include "common/model/rope.h"

namespace eagle {

struct EagleHeadConfig {
  enum class Kind { kEagle1, kEagle3 };
  Kind kind = Kind::kEagle1;
  int draft_vocab_size = 0;  // EAGLE-3
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  float rms_norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int max_position = 4096;
  bool fc_bias = true;
};

// The target layers whose inputs EAGLE-3 fuses (low, mid, high), for a target of `num_layers`.
std::vector<int> Eagle3FeatureLayers(int num_layers);

// Parses an EAGLE head's config.json (LLaMA keys, optional "bias").
absl::StatusOr<EagleHeadConfig> ParseEagleHeadConfig(const std::string& json_text,
                                                     const std::string& path);

// One batch of draft positions. Position i pairs feature features[i] with token tokens[i], sits
// at RoPE position positions[i], is written to cache slot cache.length() + i, and attends to
// the cache slots [0, n_prefix[i]) and then the slots listed in extra[i] (increasing; the
// batch's own slots included as needed).
struct HeadBatch {
  std::span<const int32_t> tokens;  // [n]
  // [n, hidden]; EAGLE-3 target features (from_target) are [n, 3 * hidden].
  std::span<const float> features;
  bool from_target = false;
  std::span<const int64_t> positions;           // [n]
  std::span<const int64_t> n_prefix;            // [n]
  std::span<const std::vector<int32_t>> extra;  // [n] or empty (no extra slots)
};

class EagleHead {
 public:
  static absl::StatusOr<std::unique_ptr<EagleHead>> Load(const std::string& dir,
                                                         const LlamaModel& target,
                                                         const ModelOptions& options = {});
  using TensorLookup = LlamaModel::TensorLookup;
  static absl::StatusOr<std::unique_ptr<EagleHead>> Create(const EagleHeadConfig& config,
                                                           const TensorLookup& lookup,
                                                           std::shared_ptr<void> keepalive,
                                                           const LlamaModel& target,
                                                           const ModelOptions& options = {});

  const EagleHeadConfig& config() const { return config_; }
  // The pool its products run on (null: the calling thread alone).
  cpu::ThreadPool* pool() const { return pool_.get(); }
  // Target layers whose inputs form this head's features (EAGLE-3), or empty: the target's
  // final-norm hidden state (EAGLE-1/2).
  std::vector<int> feature_layers() const;
  // Width of the target features Commit() takes.
  int target_feature_width() const {
    return config_.kind == EagleHeadConfig::Kind::kEagle3 ? 3 * config_.hidden_size
                                                          : config_.hidden_size;
  }

  // Reduced draft vocabulary (FR-Spec / EAGLE-3 d2t style): draft logits cover only these target
  // ids (strictly increasing), so each draft step multiplies by |ids| rows of the LM head instead
  // of the whole vocabulary. Loaded from a "d2t" tensor (int64, target = i + d2t[i]) when the
  // checkpoint has one. Empty = the full vocabulary.
  absl::Status SetDraftVocab(std::vector<int32_t> ids);
  int draft_vocab_size() const {
    return draft_ids_.empty() ? config_.vocab_size : static_cast<int>(draft_ids_.size());
  }
  int32_t ToTarget(int32_t draft_id) const {
    return draft_ids_.empty() ? draft_id : draft_ids_[draft_id];
  }
  std::unique_ptr<CpuKvCache> NewCache(int64_t capacity) const;
  // Positions the head can embed: [0, max_position()).
  int64_t max_position() const { return rope_.max_position(); }

  // Runs the batch; writes g to out_features [n, hidden] and, if out_logits is not null, the
  // draft-vocabulary logits to out_logits [n, draft_vocab_size()].
  absl::Status Forward(CpuKvCache& cache, const HeadBatch& batch, float* out_features,
                       float* out_logits) const;

 private:
  struct Scratch;
  EagleHead() = default;
  // Forward's pieces, as in the paper: the batch checked; the input projection (EAGLE-1/2:
  // fc over [E(x) ; f]; EAGLE-3: fc over fused features, then [norm(E) ; norm(u)]) into q, k, v;
  // the attention block (RoPE, the head's KV, out-projection, residual); the MLP block writing
  // g; and the draft logits over g.
  static Scratch& ThreadScratch();
  absl::Status CheckBatch(const KvCache& cache, const HeadBatch& b) const;
  void AddFcBias(int64_t n, float* u) const;
  void ProjectInputs(const HeadBatch& b, Scratch& w) const;
  void Attention(CpuKvCache& cache, const HeadBatch& b, Scratch& w) const;
  void Mlp(int64_t n, Scratch& w, float* out_features) const;
  void DraftLogits(int64_t n, const float* g, Scratch& w, float* out_logits) const;

  EagleHeadConfig config_;
  std::shared_ptr<void> keepalive_;
  std::list<std::vector<uint8_t>> owned_;  // requantized weights (stable addresses)
  const LlamaModel* target_ = nullptr;
  cpu::Linear fc_;                                            // [H, 2H]
  std::vector<float> fc_bias_;                                // [H] or empty
  cpu::Linear wqkv_;                                          // [q_dim + 2 kv_dim, H]
  cpu::Linear wo_;                                            // [H, q_dim]
  cpu::Linear w_gate_up_;                                     // [2 I, H]
  cpu::Linear w_down_;                                        // [H, I]
  std::vector<float> post_norm_;                              // [H]
  std::vector<float> input_norm_, hidden_norm_, final_norm_;  // [H] each, EAGLE-3 only
  Rope rope_;
  cpu::Precision precision_ = cpu::Precision::kAuto;
  std::shared_ptr<cpu::ThreadPool> pool_;  // options.pool, else the target's
  std::vector<int32_t> draft_ids_;         // [Vd] target ids of the draft vocabulary, or empty
  cpu::Linear draft_lm_head_;              // [Vd, H] rows of the target's LM head
};

// A 4-position draft-head forward on a scratch cache from made-up target features, with every
// output feature and draft logit checked to be finite (the drafter runs it before SERVING).
absl::Status WarmUp(const EagleHead& head);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_EAGLE_HEAD_H_
