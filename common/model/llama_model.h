// The LLaMA-family target model on the CPU backend: prefill, incremental decode and forward over
// a token tree appended to a cached prefix, returning logits and, on request, EAGLE features.
//
// Ownership: the model owns its (memory-mapped) weights; a KvCache belongs to one sequence and
// is owned by the caller; the thread pool is shared (ModelOptions::pool). Thread contract: after
// Load, Forward is const and may be called from one thread at a time per KvCache; its parallel
// loops run on the model's pool with the calling thread taking part (common/cpu/thread_pool.h).
#ifndef EAGLE_COMMON_MODEL_LLAMA_MODEL_H_
#define EAGLE_COMMON_MODEL_LLAMA_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/cpu/linear.h"
#include "common/cpu/thread_pool.h"
#include "common/io/tensor_ref.h"
#include "common/model/llama_config.h"
#include "common/model/rope.h"
#include "common/tokenizer.h"

namespace eagle {

// Per-sequence key/value cache. Slots [0, length) hold committed tokens; a tree forward writes
// its T tokens at [length, length + T) and KeepPath then keeps one root-to-leaf path.
class KvCache {
 public:
  KvCache(int num_layers, int num_kv_heads, int head_dim, int64_t capacity);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t bytes() const { return 2 * static_cast<int64_t>(num_layers_) * capacity_ * kv_dim() * 4; }
  // Keeps the tree slots base + path[j] at base + j (path strictly increasing, within the tokens
  // written after base) and sets length = base + path.size().
  absl::Status KeepPath(int64_t base, std::span<const int32_t> path);
  // Drops everything at or after slot n.
  absl::Status Truncate(int64_t n);

  // Keys are stored transposed per head, [head_dim, capacity], so that attention scores for 16
  // consecutive slots are vertical FMAs: element d of slot s is kt(l, h)[d * capacity() + s].
  float* kt(int layer, int kv_head) { return k_.get() + KeyBase(layer, kv_head); }
  const float* kt(int layer, int kv_head) const { return k_.get() + KeyBase(layer, kv_head); }
  // Writes the keys of all heads of one slot (k: [num_kv_heads * head_dim]).
  void StoreKeys(int layer, int64_t slot, const float* k);
  // Values: [capacity, num_kv_heads * head_dim] per layer.
  float* v(int layer, int64_t slot) { return v_.get() + (layer * capacity_ + slot) * kv_dim(); }
  const float* v(int layer, int64_t slot) const {
    return v_.get() + (layer * capacity_ + slot) * kv_dim();
  }
  void set_length(int64_t n) { length_ = n; }

 private:
  int64_t kv_dim() const { return static_cast<int64_t>(num_kv_heads_) * head_dim_; }
  int64_t KeyBase(int layer, int kv_head) const {
    return (static_cast<int64_t>(layer) * num_kv_heads_ + kv_head) * head_dim_ * capacity_;
  }
  int num_layers_;
  int num_kv_heads_;
  int head_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::unique_ptr<float[]> k_;  // [layers, kv_heads, head_dim, capacity] f32
  std::unique_ptr<float[]> v_;  // [layers, capacity, kv_heads * head_dim] f32
};

enum class LogitsMode { kNone, kLast, kAll };

// The GGUF (llama.cpp) name of a tensor given its Hugging Face name, e.g.
// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight". Unknown names map to
// themselves.
std::string GgufTensorName(const std::string& hf_name);

struct ForwardRequest {
  std::span<const int32_t> tokens;  // [T] token ids
  // [T] or empty. Empty: a causal chain (prefill / decode). Otherwise a tree: parents[i] is the
  // index of i's parent within this request (parents[i] < i), or -1 for a child of the last
  // cached token. Token i then sits at position length + depth(i) and sees the cached prefix,
  // its ancestors and itself.
  std::span<const int32_t> parents;
  LogitsMode logits = LogitsMode::kAll;
  bool return_features = false;         // final-norm hidden states (EAGLE-1/2 feature)
  std::span<const int> capture_layers;  // inputs of these layers (EAGLE-3 features)
};

struct ForwardResult {
  int64_t num_tokens = 0;
  std::vector<float> logits;          // [T or 1, vocab] f32 (per LogitsMode)
  std::vector<float> features;        // [T, hidden] f32 if requested
  std::vector<float> layer_features;  // [T, capture_layers.size() * hidden] f32 if requested
};

struct ModelOptions {
  // kAuto: 15-bit integer activations with Q4_0/Q4_1/Q8_0 weights on CPUs with AVX-512 VNNI
  // (fast path), f32 otherwise. kInt8 is faster and less accurate (llama.cpp's scheme). kF32 is
  // the numerical reference (matches Hugging Face transformers to ~1e-4).
  cpu::Precision precision = cpu::Precision::kAuto;
  // The threads that run the forward pass's parallel loops, shared by everything a process
  // loads (a drafter's target and head use one pool). Null: the calling thread alone.
  std::shared_ptr<cpu::ThreadPool> pool;
};

class LlamaModel {
 public:
  // Loads a GGUF file or a Hugging Face directory (config.json + *.safetensors + tokenizer).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path,
                                                          const ModelOptions& options = {});
  // Builds a model from tensors with Hugging Face names (model.layers.N.self_attn.q_proj.weight,
  // ...). `keepalive` owns whatever backs the TensorRefs. `tokenizer` may be null.
  // `release`, if set, is called with the stored bytes of each matrix right after it has been
  // repacked (those bytes are not read again but for embedding rows), so that a memory-mapped
  // checkpoint's pages can be dropped and resident memory holds one copy of the weights.
  using TensorLookup = std::function<const TensorRef*(const std::string&)>;
  using ReleaseFn = std::function<void(const uint8_t*, int64_t)>;
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(const LlamaConfig& config,
                                                            const TensorLookup& lookup,
                                                            std::shared_ptr<void> keepalive,
                                                            std::unique_ptr<Tokenizer> tokenizer,
                                                            const ModelOptions& options = {},
                                                            const ReleaseFn& release = nullptr);

  ~LlamaModel();

  const LlamaConfig& config() const { return config_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // Chat template text from the model, if any.
  const std::string& chat_template() const { return chat_template_; }
  std::unique_ptr<KvCache> NewCache(int64_t capacity) const;
  // Bytes of weights read per decoded token (all matrices as held + one embedding row).
  int64_t weight_bytes() const { return weight_bytes_; }
  // True when any matrix runs on the int8 path.
  bool int8() const { return lm_head_.packed() || (!layers_.empty() && layers_[0].wqkv.packed()); }
  std::string dtype_summary() const;
  // A 64-bit hash (hex) of the architecture, tokenizer and embedding: equal for the same model
  // loaded at any precision, different for another model.
  std::string Fingerprint() const;

  absl::StatusOr<ForwardResult> Forward(KvCache& cache, const ForwardRequest& request) const;
  // Several sequences in one pass (continuous batching): the matmuls run over all requests'
  // tokens together, attention per sequence. Each result equals what Forward would return for
  // that request alone, bit for bit (the kernels are batch invariant). Each cache at most once.
  absl::StatusOr<std::vector<ForwardResult>> ForwardBatch(
      std::span<KvCache* const> caches, std::span<const ForwardRequest> requests) const;
  // The checks Forward applies to one request: token ids, tree parents, KV capacity, context.
  absl::Status CheckRequest(const KvCache& cache, const ForwardRequest& request) const;

  // The pool the forward pass runs on (null: the calling thread alone).
  cpu::ThreadPool* pool() const { return pool_.get(); }
  const std::shared_ptr<cpu::ThreadPool>& shared_pool() const { return pool_; }

  // Embedding row and LM head, for draft heads that share them.
  void Embed(int32_t token, float* out) const;
  const cpu::Linear& lm_head() const { return lm_head_; }

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;  // [hidden]
    cpu::Linear wqkv;                        // q, k, v stacked: [q_dim + 2 kv_dim, H]
    cpu::Linear wo;                          // [H, q_dim]
    cpu::Linear w_gate_up;                   // gate, up stacked: [2 I, H]
    cpu::Linear w_down;                      // [H, I]
  };
  LlamaModel() = default;

  LlamaConfig config_;
  std::shared_ptr<void> keepalive_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
  cpu::Matrix embed_;              // [V, H] (stored blocks; rows dequantized on lookup)
  cpu::Linear lm_head_;            // [V, H]
  std::vector<float> final_norm_;  // [H]
  std::vector<Layer> layers_;
  Rope rope_;
  int64_t weight_bytes_ = 0;
  std::shared_ptr<cpu::ThreadPool> pool_;
};

// A prefill of a few tokens and a 4-node tree forward on a scratch cache, with every logit and
// feature checked to be finite. Services run it before they report SERVING, so that a process
// whose weights or kernels are broken on this CPU exits instead of taking traffic.
absl::Status WarmUp(const LlamaModel& model);

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_LLAMA_MODEL_H_
