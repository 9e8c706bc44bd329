// The verifier's engine: sessions (one KV cache and sampler each) over one target model, and a
// scheduler thread that batches the pending work of all sessions (prefills, tree verifications,
// plain decode steps) into shared forward passes (continuous batching). Knows nothing of gRPC:
// the service adapters (verifier/service.cc) call it.
//
// Thread contract: every public method may be called from any thread. Open/Verify return
// futures fulfilled by the engine thread; a session takes one request at a time.
#ifndef EAGLE_VERIFIER_ENGINE_H_
#define EAGLE_VERIFIER_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/cost_model.h"
#include "common/eagle/draft_tree.h"
#include "common/eagle/verify_step.h"
#include "common/model/llama_model.h"
#include "common/sampling.h"

namespace eagle::verifier {

struct EngineOptions {
  int64_t kv_budget_bytes = int64_t{4} << 30;  // all sessions' KV caches together
  int max_sessions = 256;
  int max_tree_nodes = 256;     // per Verify
  int max_batch_tokens = 1024;  // tokens per forward pass (one larger prefill runs alone)
  int max_prompt_tokens = 0;    // 0 = the model's context
};

struct OpenParams {
  std::vector<int32_t> prompt;  // prompt, followed by resumed tokens if any
  SamplingParams sampling;
  int max_tokens = 128;             // KV is reserved for prompt + max_tokens + one tree
  bool want_features = true;        // false for plain generation
  std::vector<int> feature_layers;  // empty = final-norm hidden states
  std::string request_id;
};

struct OpenResult {
  uint64_t session_id = 0;
  int32_t first_token = -1;
  int prompt_tokens = 0;
  int64_t feature_width = 0;
  std::vector<float> features;  // [prompt_tokens, feature_width] (empty without features)
  CostCurve forward_cost;       // the engine's forward cost at the time (forward_cost())
};

// The verified step (accepted tokens, next token, the features of the root and each accepted
// node) and the pass it ran in.
struct VerifyOutput : VerifiedStep {
  double seconds = 0;       // the forward pass this step shared (wall time)
  int batch_sequences = 0;  // sessions in that forward pass
  int pass_rows = 0;        // rows of that pass, all sessions' together
};

struct EngineStats {
  int active_sessions = 0;
  int64_t kv_bytes = 0;           // reserved by open sessions
  int64_t kv_bytes_released = 0;  // given back by closed sessions since the engine started
  int queue_depth = 0;            // requests waiting for the engine thread
};

// Observers for metrics (called on the engine thread; keep them cheap).
struct EngineHooks {
  std::function<void(int sequences, int tokens, double seconds)> on_batch;
  std::function<void(int accepted, int tree_nodes)> on_verify;
};

class Engine {
 public:
  Engine(const LlamaModel* model, const EngineOptions& options, EngineHooks hooks = {});
  ~Engine();  // stops the engine thread; pending requests fail with CANCELLED
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admission control happens here, before any work: RESOURCE_EXHAUSTED when the KV budget or the
  // session limit is reached, INVALID_ARGUMENT for a bad prompt or parameters, UNAVAILABLE while
  // draining. The future yields the first token (and the prompt's features). When admitted,
  // *session_id is set at once, so that a caller who gives up before the prefill is done can
  // still Close the session.
  std::future<absl::StatusOr<OpenResult>> Open(OpenParams params, uint64_t* session_id = nullptr);
  // Verifies `tree` (root = the token the previous step named) as step `step` (0, 1, ...).
  // A forward pass that fails closes its sessions: UNAVAILABLE when a tensor-parallel group
  // broke (retry on the restarted verifier), INTERNAL otherwise; Open fails the same way.
  std::future<absl::StatusOr<VerifyOutput>> Verify(uint64_t session, int64_t step, DraftTree tree);
  // Frees the session (idempotent; a pending request of it fails with CANCELLED).
  void Close(uint64_t session);
  // Open sessions with no request in flight for longer than `seconds`.
  std::vector<uint64_t> IdleSessions(double seconds) const;
  // Refuses new sessions with UNAVAILABLE from now on.
  void Drain();
  bool draining() const;

  // The forward pass's seconds by rows: set once measured (MeasureForwardCost), then moved
  // toward every pass of tree verifications only (CostCurve::Observe). Sessions get it on Open.
  void SetForwardCost(CostCurve curve);
  CostCurve forward_cost() const;

  EngineStats stats() const;
  const LlamaModel& model() const { return *model_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Session;
  struct Work;
  void Loop();
  void ReleaseLocked(Session& s);  // mu_ held
  void DoneLocked(Session& s);     // mu_ held: the session's request is over
  // One forward pass over the batch, and each work item finished, failed or (a prefill with
  // chunks left) left in `batch`.
  void RunBatch(std::vector<std::unique_ptr<Work>>& batch);
  // RunBatch's pieces: drops (and fails) work of closed sessions; the KV cache of a session's
  // first pass; the forward request of a work item; the end of a prefill chunk (true when the
  // whole prompt is in and the Open answered); the verify step of a tree, answered.
  std::vector<Work*> DropClosed(std::vector<std::unique_ptr<Work>>& batch);
  KvCache* NewSessionCache(Session& s);
  static ForwardRequest RequestFor(const Work& w);
  bool FinishOpenChunk(Work& w, ForwardResult& fr);
  absl::Status FinishVerify(Work& w, ForwardResult& fr, int64_t base, double seconds,
                            int batch_sequences, int pass_rows);

  const LlamaModel* model_;
  const EngineOptions options_;
  const EngineHooks hooks_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  int64_t kv_bytes_ = 0;
  int64_t kv_bytes_released_ = 0;
  std::map<uint64_t, std::shared_ptr<Session>> sessions_;
  std::deque<std::unique_ptr<Work>> queue_;
  mutable std::mutex cost_mu_;
  CostCurve forward_cost_;  // cost_mu_
  std::thread thread_;
};

}  // namespace eagle::verifier

#endif  // EAGLE_VERIFIER_ENGINE_H_
