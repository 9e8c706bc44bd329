// Generation against a verifier session: drafts trees with an EAGLE head (or sends root-only
// trees for plain decoding), sends them through a VerifierSession, streams accepted tokens, and
// survives a verifier restart by reopening the session with the tokens generated so far
// (resume). Knows nothing of gRPC: drafter/grpc_session.cc implements VerifierSession over the
// eagle.v1 protocol (the drafter's loop), verifier/engine_session.cc over the verifier's own
// engine (its plain Generate).
#ifndef EAGLE_COMMON_EAGLE_VERIFIER_LOOP_H_
#define EAGLE_COMMON_EAGLE_VERIFIER_LOOP_H_

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/draft_tree.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/speculative.h"
#include "common/eagle/step_drafter.h"
#include "common/eagle/verify_step.h"
#include "common/generate.h"

namespace eagle {

// One generation's session on a verifier.
class VerifierSession {
 public:
  virtual ~VerifierSession() = default;
  struct Opened {
    int32_t first_token = -1;
    int prompt_tokens = 0;
    std::vector<float> features;  // [prompt_tokens, width] (empty when width == 0)
    // The verifier's forward seconds by rows, as it measures them (empty: not sent).
    std::vector<CostCurve::Point> forward_cost;
  };
  // `resume`: tokens generated before a reconnect (appended to the prompt by the verifier).
  // `max_tokens` counts them too. `width` 0: no features wanted.
  virtual absl::StatusOr<Opened> Open(std::span<const int32_t> prompt,
                                      std::span<const int32_t> resume,
                                      const SamplingParams& sampling, int max_tokens,
                                      const std::vector<int>& feature_layers, int64_t width) = 0;
  struct Result : VerifiedStep {
    double verify_seconds = 0;  // the verifier's forward pass
    int pass_rows = 0;          // rows of that pass, all sessions' (0: not sent)
    int pass_sequences = 0;     // sessions in that pass (0: not sent)
  };
  // Sends step `step`'s tree; its result comes from the next Receive. One step in flight at a
  // time (FAILED_PRECONDITION otherwise), so that the loop can stream one step's tokens while the
  // verifier runs the next.
  virtual absl::Status Send(int64_t step, const DraftTree& tree) = 0;
  virtual absl::StatusOr<Result> Receive() = 0;
  // Ends the session (a step still in flight is waited for or cancelled).
  virtual void Close() = 0;
  // Bytes sent and received so far (protocol messages).
  virtual int64_t bytes_sent() const = 0;
  virtual int64_t bytes_received() const = 0;
};
using SessionFactory = std::function<std::unique_ptr<VerifierSession>()>;

struct VerifierLoopStats : SpeculativeStats {
  double network_seconds = 0;  // round trips minus the verifier's forward time
  int reconnects = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
};

struct VerifierLoopOptions {
  const EagleHead* head = nullptr;  // null: plain decoding (root-only trees)
  TreeOptions tree;
  double reconnect_seconds = 30;    // give up after the verifier is unreachable this long; 0:
                                    // no reconnect (the session's error is returned as is)
  std::function<bool()> cancelled;  // polled before each step
  // Called after each verify step with its draft, network and verify seconds.
  std::function<void(double draft, double network, double verify, int accepted)> on_step;
};

// A status worth a reconnect: the verifier went away (UNAVAILABLE, or a reset stream).
bool Retryable(const absl::Status& s);

absl::StatusOr<GenerateResult> GenerateWithVerifier(
    const LlamaModel& model, const SessionFactory& factory, std::span<const int32_t> prompt,
    const GenerateOptions& options, const VerifierLoopOptions& loop, const TokenCallback& on_token,
    VerifierLoopStats* stats);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_VERIFIER_LOOP_H_
