// The CPU backend: the numerical reference. Weights as held by the CPU kernels (cpu::Linear:
// repacked for the integer path (AVX-512 VNNI or AVX2), or f32), KvCache for each sequence, and
// per-pass workspaces kept in a free list. Every op is the kernels of common/cpu run on the shared
// thread pool, batch invariant and bit-identical for every pool size.
#ifndef EAGLE_COMMON_MODEL_CPU_BACKEND_H_
#define EAGLE_COMMON_MODEL_CPU_BACKEND_H_

#include <memory>
#include <mutex>
#include <vector>

#include "common/cpu/linear.h"
#include "common/cpu/thread_pool.h"
#include "common/dist/communicator.h"
#include "common/model/backend.h"
#include "common/model/llama_config.h"
#include "common/model/rope.h"

namespace eagle {

// One rank's share of a tensor-parallel model (Megatron-style) for CpuBackend: its `config` holds
// this rank's heads, KV heads and FFN width (hidden size and vocabulary stay whole); the layers'
// matrices are its slices: wqkv its q heads and KV heads (rows), wo the matching columns,
// gate/up its rows of the FFN, down the matching columns, and lm_head its rows
// [rank * vocab_chunk, min(vocab, (rank + 1) * vocab_chunk)). The o and down projections end
// with one AllReduceSum each (rows * hidden floats); Logits gathers every rank's share of the
// vocabulary (AllGather of rows * vocab_chunk floats), and Argmax only each rank's (maximum,
// index) per row (AllGather of rows * 8 bytes). Every rank runs every op of every pass
// in the same order.
struct TensorParallelShare {
  std::shared_ptr<Communicator> comm;
  int64_t vocab_chunk = 0;
};

class CpuBackend final : public ModelBackend {
 public:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;  // [hidden]
    cpu::Linear wqkv;                        // q, k, v stacked: [q_dim + 2 kv_dim, H]
    cpu::Linear wo;                          // [H, q_dim]
    cpu::Linear w_gate_up;                   // gate, up stacked: [2 I, H]
    cpu::Linear w_down;                      // [H, I]
  };
  struct Weights {
    cpu::Matrix embed;              // [V, H] (stored blocks; rows dequantized on lookup)
    cpu::Linear lm_head;            // [V, H], or a rank's rows of it (tensor parallel)
    std::vector<float> final_norm;  // [H]
    std::vector<Layer> layers;
  };
  // `pool` null: every op runs on the calling thread alone.
  CpuBackend(const LlamaConfig& config, Weights weights, std::shared_ptr<cpu::ThreadPool> pool,
             TensorParallelShare tp = {});

  std::string name() const override { return tp_.comm != nullptr ? "cpu-tp" : "cpu"; }
  int64_t weight_bytes() const override;
  std::unique_ptr<KvCache> NewCache(int64_t capacity) const override;
  absl::StatusOr<std::unique_ptr<Workspace>> Acquire(int64_t rows) const override;
  void Release(std::unique_ptr<Workspace> workspace) const override;
  absl::Status Embed(const BatchPlan& plan, Workspace& ws) const override;
  absl::Status Attention(int layer, const BatchPlan& plan, std::span<KvCache* const> caches,
                         Workspace& ws) const override;
  absl::Status Mlp(int layer, const BatchPlan& plan, Workspace& ws) const override;
  absl::Status FinalNorm(const BatchPlan& plan, Workspace& ws) const override;
  absl::Status ReadResidual(const Workspace& ws, int64_t row, int64_t n, float* out) const override;
  absl::Status ReadNormed(const Workspace& ws, int64_t row, int64_t n, float* out) const override;
  absl::Status Logits(Workspace& ws, std::span<const int64_t> rows, float* out) const override;
  // Tensor parallel only: each rank's argmax over its rows of the LM head, then an AllGather of
  // one (maximum, index) pair per row and rank (8 bytes) instead of the rank's logits.
  bool ReducesArgmax() const override { return tp_.comm != nullptr; }
  absl::Status Argmax(Workspace& ws, std::span<const int64_t> rows, int32_t* out) const override;

  // The host weights, for what runs beside the target on the CPU (draft heads share the
  // embedding and the LM head) and for descriptions.
  const Weights& weights() const { return w_; }
  void EmbedToken(int32_t token, float* out) const;
  const LlamaConfig& config() const { return config_; }
  const Rope& rope() const { return rope_; }
  cpu::ThreadPool* pool() const { return pool_.get(); }
  const std::shared_ptr<cpu::ThreadPool>& shared_pool() const { return pool_; }
  // Workspaces made so far (tests: a steady shape reuses one).
  int workspaces_made() const;

 private:
  // This rank's LM head (all of it without tensor parallelism) over h of the given rows, gathered
  // so that one matmul serves them all: out [rows.size(), lm_head rows].
  void ApplyLmHead(Workspace& ws, std::span<const int64_t> rows, float* out) const;
  struct CpuWorkspace;
  const LlamaConfig config_;
  const Weights w_;
  const Rope rope_;
  const std::shared_ptr<cpu::ThreadPool> pool_;
  const TensorParallelShare tp_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<Workspace>> free_;  // guarded by mu_
  mutable int made_ = 0;                                  // guarded by mu_
};

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_CPU_BACKEND_H_
