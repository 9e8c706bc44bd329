// The LLaMA-family target model on the CPU backend: prefill, incremental decode and forward over
// a token tree appended to a cached prefix, returning logits and, on request, EAGLE features.
//
// Ownership: the model owns its (memory-mapped) weights; a KvCache belongs to one sequence and
// is owned by the caller; the thread pool is shared (ModelOptions::pool). Thread contract: after
// Load, Forward is const and may be called from one thread at a time per KvCache; its parallel
// loops run on the model's pool with the calling thread taking part (common/cpu/thread_pool.h).
#ifndef EAGLE_COMMON_MODEL_LLAMA_MODEL_H_
#define EAGLE_COMMON_MODEL_LLAMA_MODEL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu/kernels.h"
#include "common/cpu/linear.h"
#include "common/cpu/thread_pool.h"
#include "common/dist/communicator.h"
#include "common/io/tensor_ref.h"
#include "common/model/backend.h"
#include "common/model/cpu_backend.h"
#include "common/model/kv_cache.h"
#include "common/model/llama_config.h"
#include "common/model/rope.h"
#include "common/tokenizer.h"

namespace eagle {

// The GGUF (llama.cpp) name of a tensor given its Hugging Face name, e.g.
// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight". Unknown names map to
// themselves.
std::string GgufTensorName(const std::string& hf_name);

struct ForwardResult {
  int64_t num_tokens = 0;
  std::vector<float> logits;          // [T or 1, vocab] f32 (per LogitsMode), unless argmax_only
  std::vector<int32_t> argmax;        // [T or 1] (per LogitsMode) if argmax_only
  std::vector<float> features;        // [T, hidden] f32 if requested
  std::vector<float> layer_features;  // [T, capture_layers.size() * hidden] f32 if requested

  // What ForwardRequest::WantFeatures(layers) asked for.
  std::vector<float>& FeaturesFor(std::span<const int> layers) {
    return layers.empty() ? features : layer_features;
  }
};

struct ModelOptions {
  // kAuto: 15-bit integer activations with Q4_0/Q4_1/Q8_0 weights on CPUs with AVX-512 VNNI or
  // AVX2 (fast path), f32 otherwise. kInt8 is faster and less accurate (llama.cpp's scheme). kF32
  // is the numerical reference (matches Hugging Face transformers to ~1e-4).
  cpu::Precision precision = cpu::Precision::kAuto;
  // The threads that run the forward pass's parallel loops, shared by everything a process
  // loads (a drafter's target and head use one pool). Null: the calling thread alone.
  std::shared_ptr<cpu::ThreadPool> pool;
  // Where the forward pass runs: "cpu", or "cuda" / "cuda:N" (the CUDA backend, in a build with
  // -DEAGLE_WITH_CUDA=ON; the host copy of the weights stays for draft heads).
  std::string device = "cpu";
  // Tensor parallelism (CPU): this process is rank comm->rank() of comm->world_size() and holds
  // that rank's share of every layer (cpu_backend.h, TensorParallelShare). Every rank
  // must then make the same Forward calls in the same order. Null or a world of 1: the whole
  // model.
  std::shared_ptr<Communicator> comm;
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
  // Chat template text (Jinja) from the model, if any.
  const std::string& chat_template() const { return chat_template_; }
  // A built-in chat template by name ("chatml", "llama2", "llama3", "vicuna") that EncodeChat
  // uses instead of the model's own; empty (the default) = the model's own. Set once after
  // Load, before the model is shared (the services' --chat_template).
  void set_builtin_chat_template(std::string name) { builtin_chat_template_ = std::move(name); }
  const std::string& builtin_chat_template() const { return builtin_chat_template_; }
  std::unique_ptr<KvCache> NewCache(int64_t capacity) const;
  // Bytes of weights read per decoded token (all matrices as held + one embedding row).
  int64_t weight_bytes() const { return backend().weight_bytes(); }
  // True when any matrix runs on the int8 path.
  bool int8() const;
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
  cpu::ThreadPool* pool() const { return cpu_->pool(); }
  const std::shared_ptr<cpu::ThreadPool>& shared_pool() const { return cpu_->shared_pool(); }
  // What runs the forward pass (backend.h); the CPU backend today.
  const ModelBackend& backend() const {
    return device_ != nullptr ? *device_ : static_cast<const ModelBackend&>(*cpu_);
  }
  // The weights on the host, which the CPU backend runs on (and which draft heads share).
  const CpuBackend& cpu() const { return *cpu_; }

  // Embedding row and LM head, for draft heads that share them.
  void Embed(int32_t token, float* out) const { cpu_->EmbedToken(token, out); }
  // The whole LM head (under tensor parallelism too, where the backend holds a rank's rows).
  const cpu::Linear& lm_head() const {
    return full_lm_head_ != nullptr ? *full_lm_head_ : cpu_->weights().lm_head;
  }
  // The tensor-parallel group (null: the whole model in this process).
  Communicator* comm() const { return comm_.get(); }

  // Tensor parallelism with one scheduler (the verifier): every rank loads and warms up the
  // model (the same calls on every rank); then rank 0 calls LeadFollowers and each other rank
  // FollowLeader. From then on rank 0 alone calls ForwardBatch: each pass first broadcasts its
  // requests with its caches' ids, capacities, lengths and KeepPath moves (and the ids of the
  // caches destroyed since), and the followers run the same pass on their copies. While no pass
  // runs for `heartbeat`, rank 0 broadcasts an empty one, so that an idle group stays within the
  // collective timeout and a dead rank is noticed. `on_failure` is called once, from the failing
  // thread, when a collective fails (the group is then broken for good).
  absl::Status LeadFollowers(std::chrono::milliseconds heartbeat,
                             std::function<void(const absl::Status&)> on_failure);
  // Runs rank 0's passes until StopFollowers (OK) or a failure (its error).
  absl::Status FollowLeader() const;
  // Rank 0: ends the followers' loops and the heartbeat; later passes fail FAILED_PRECONDITION
  // (they would run collectives no follower joins).
  absl::Status StopFollowers();

 private:
  LlamaModel() = default;
  // ForwardBatch's pieces: the ops of the pass over the backend; EAGLE-3 features (layer
  // inputs); and the LM head over the rows that want logits, split back per request.
  absl::Status RunLayers(const BatchPlan& plan, std::span<KvCache* const> caches,
                         std::span<const ForwardRequest> reqs, Workspace& ws,
                         std::vector<ForwardResult>& out) const;
  absl::Status CaptureLayerInputs(int layer, const BatchPlan& plan,
                                  std::span<const ForwardRequest> reqs, const Workspace& ws,
                                  std::vector<ForwardResult>& out) const;
  absl::Status ComputeLogits(const BatchPlan& plan, std::span<const ForwardRequest> reqs,
                             Workspace& ws, std::vector<ForwardResult>& out) const;

  LlamaConfig config_;
  std::shared_ptr<void> keepalive_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
  std::string builtin_chat_template_;
  std::unique_ptr<CpuBackend> cpu_;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<cpu::Linear> full_lm_head_;  // tensor parallel only: for draft heads
  mutable std::mutex pass_mu_;  // tensor parallel: one pass at a time (collectives in order)
  // Leader and followers (LeadFollowers): guarded by pass_mu_.
  struct Leader;
  std::shared_ptr<Leader> leader_;
  bool stopped_following_ = false;  // guarded by pass_mu_: StopFollowers ran (no more passes)
  absl::Status BroadcastPass(std::span<KvCache* const> caches,
                             std::span<const ForwardRequest> reqs) const;
  void ReplicateCache(KvCache& cache) const;
  void GroupFailed(const absl::Status& s) const;
  std::unique_ptr<ModelBackend> device_;  // null: the forward pass runs on cpu_ (after cpu_:
                                          // destroyed first, it reads cpu_'s weights)
};

// The tensor-parallel degrees `config` can be split into (each divides its KV heads and FFN
// width), as " 1 2 4".
std::string TensorParallelDegrees(const LlamaConfig& config);

// -1 for "cpu", N for "cuda" (0) or "cuda:N"; INVALID_ARGUMENT otherwise.
absl::StatusOr<int> ParseDevice(const std::string& device);

// A prefill of a few tokens and a 4-node tree forward on a scratch cache, with every logit and
// feature checked to be finite. Services run it before they report SERVING, so that a process
// whose weights or kernels are broken on this CPU exits instead of taking traffic.
absl::Status WarmUp(const LlamaModel& model);

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_LLAMA_MODEL_H_
