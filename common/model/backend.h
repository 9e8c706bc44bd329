// The seam between the LLaMA forward pass and the device that runs it.
//
// LlamaModel::ForwardBatch is written once, over two pieces:
// - BatchPlan (host side, device-agnostic): the rows of one pass (every request's tokens,
//   concatenated), each with its sequence, position, KV slot and, for a tree node, the KV slots
//   of its ancestors and itself; planned by PlanBatch from the requests and their caches.
// - ModelBackend: what holds the weights as held, makes each sequence's KV store, keeps the
//   preallocated workspace of a pass (Acquire/Release: allocated once per shape, grown when a
//   pass has more rows, reused afterwards) and runs the ops of one forward over a workspace:
//   embedding, the attention and MLP blocks of a layer, the final norm and the LM head, plus
//   reads of the residual stream and the normed hidden state for EAGLE features.
// The CPU backend (cpu_backend.h) is the numerical reference; every op is batch invariant (a
// row's result does not depend on the other rows of the pass).
#ifndef EAGLE_COMMON_MODEL_BACKEND_H_
#define EAGLE_COMMON_MODEL_BACKEND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/kv_cache.h"

namespace eagle {

enum class LogitsMode { kNone, kLast, kAll };

struct ForwardRequest {
  std::span<const int32_t> tokens;  // [T] token ids
  // [T] or empty. Empty: a causal chain (prefill / decode). Otherwise a tree: parents[i] is the
  // index of i's parent within this request (parents[i] < i), or -1 for a child of the last
  // cached token. Token i then sits at position length + depth(i) and sees the cached prefix,
  // its ancestors and itself.
  std::span<const int32_t> parents;
  LogitsMode logits = LogitsMode::kAll;
  // With logits kLast or kAll: only each of those rows' argmax (ForwardResult::argmax, the first
  // index of the maximum, as eagle::Argmax gives) and no logits: what greedy sampling needs. A
  // tensor-parallel backend then exchanges each rank's (maximum, index) instead of its logits.
  bool argmax_only = false;
  bool return_features = false;         // final-norm hidden states (EAGLE-1/2 feature)
  std::span<const int> capture_layers;  // inputs of these layers (EAGLE-3 features)

  // The features a draft head takes: the inputs of `layers` (EAGLE-3), or with none the
  // final-norm hidden states (EAGLE-1/2). `layers` must outlive the request.
  void WantFeatures(std::span<const int> layers) {
    if (layers.empty()) {
      return_features = true;
    } else {
      capture_layers = layers;
    }
  }
};

// One row of a pass: a token of one request.
struct BatchRow {
  int32_t token = 0;
  int32_t seq = 0;    // index of its request (and cache) in the batch
  int64_t pos = 0;    // RoPE position
  int64_t slot = 0;   // the KV slot it writes
  bool tree = false;  // a tree node: it sees the cached prefix and `slots`
  // Tree only: the absolute KV slots of its ancestors within the request, then its own.
  std::vector<int32_t> slots;
};

struct BatchPlan {
  std::vector<BatchRow> rows;
  std::vector<int64_t> first_row;  // [sequences + 1]: request s owns rows [first_row[s], [s+1])
  int64_t max_visible = 0;         // the most KV slots any row attends over
  int64_t num_rows() const { return static_cast<int64_t>(rows.size()); }
  int64_t num_sequences() const { return static_cast<int64_t>(first_row.size()) - 1; }
};

// The rows of `requests` after the current contents of `caches` (one per request; the requests
// already checked by LlamaModel::CheckRequest).
BatchPlan PlanBatch(std::span<KvCache* const> caches, std::span<const ForwardRequest> requests);

// A pass's activations, in the backend's memory. Opaque to the model.
class Workspace {
 public:
  virtual ~Workspace() = default;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual std::string name() const = 0;
  // Bytes of weights one decoded token reads, as this backend holds them (the matrices and one
  // embedding row): the numerator of the decode roof.
  virtual int64_t weight_bytes() const = 0;
  // A KV store for one sequence of up to `capacity` tokens.
  virtual std::unique_ptr<KvCache> NewCache(int64_t capacity) const = 0;
  // A workspace with room for `rows` rows: a released one when there is one (grown if needed),
  // else a new one. Safe to call from several threads.
  virtual absl::StatusOr<std::unique_ptr<Workspace>> Acquire(int64_t rows) const = 0;
  virtual void Release(std::unique_ptr<Workspace> workspace) const = 0;

  // Each op returns an error only where the device can fail (the CPU backend never does); a
  // pass that fails leaves its caches' slots after their lengths undefined.
  // The residual stream x of every row := the embedding of its token.
  virtual absl::Status Embed(const BatchPlan& plan, Workspace& ws) const = 0;
  // x += attention(norm(x)) for layer `layer`, writing each row's key and value at its slot of
  // its sequence's cache.
  virtual absl::Status Attention(int layer, const BatchPlan& plan, std::span<KvCache* const> caches,
                                 Workspace& ws) const = 0;
  // x += mlp(norm(x)) for layer `layer`.
  virtual absl::Status Mlp(int layer, const BatchPlan& plan, Workspace& ws) const = 0;
  // The normed hidden state h := final_norm(x) of every row.
  virtual absl::Status FinalNorm(const BatchPlan& plan, Workspace& ws) const = 0;
  // Copies rows [row, row + n) of x (the residual stream: a layer's input) or of h to `out`
  // ([n, hidden] f32, host memory).
  virtual absl::Status ReadResidual(const Workspace& ws, int64_t row, int64_t n,
                                    float* out) const = 0;
  virtual absl::Status ReadNormed(const Workspace& ws, int64_t row, int64_t n,
                                  float* out) const = 0;
  // LM head over h of the given rows: out [rows.size(), vocab] f32, host memory.
  virtual absl::Status Logits(Workspace& ws, std::span<const int64_t> rows, float* out) const = 0;
  // Whether Argmax is the backend's own (a vocabulary split across ranks reduces it without
  // gathering logits); otherwise the model takes the argmax of Logits on the host.
  virtual bool ReducesArgmax() const { return false; }
  // out [rows.size()]: the argmax of each row's logits, equal to eagle::Argmax over Logits'
  // output whenever those logits hold no NaN.
  virtual absl::Status Argmax(Workspace& ws, std::span<const int64_t> rows, int32_t* out) const;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_MODEL_BACKEND_H_
