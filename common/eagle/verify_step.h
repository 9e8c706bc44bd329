// One verify step, written once: after the target has forwarded a draft tree, pick the accepted
// path (acceptance.h), keep only that path in the KV cache, and hand out what the draft head
// needs next: the path's tokens, the token after them, and the target features of the root and
// each accepted node. The in-process generator (speculative.cc) and the verifier engine
// (verifier/engine.cc) run it on the target's side; the drafter's loop (verifier_loop.cc) and the
// in-process generator commit its result to the draft head with CommitStep.
#ifndef EAGLE_COMMON_EAGLE_VERIFY_STEP_H_
#define EAGLE_COMMON_EAGLE_VERIFY_STEP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/acceptance.h"
#include "common/eagle/draft_tree.h"
#include "common/model/llama_model.h"
#include "common/sampling.h"

namespace eagle {

class DraftModel;

// The acceptance rule (AcceptSampled by default; tests substitute broken rules to show that the
// distribution test catches them).
using AcceptFn = std::function<Acceptance(const DraftTree&, const float* logits, int vocab,
                                          const SamplingParams&, Rng&)>;

struct VerifiedStep {
  std::vector<int32_t> accepted;  // accepted draft tokens in path order (the root excluded)
  int32_t next_token = -1;        // the bonus (whole path accepted) or correction token
  // [accepted.size() + 1, width]: the target features of the root and of each accepted node;
  // row i is followed in the sequence by tokens()[i]. Empty when no features were asked for.
  std::vector<float> features;

  // The tokens this step appends to the sequence: the accepted drafts, then next_token.
  std::vector<int32_t> tokens() const;
};

// Verifies `tree`, whose nodes were just forwarded into `cache` at slots [base, base +
// tree.size()): logits [tree.size(), vocab] f32; features [tree.size(), width] f32 (width 0: none
// wanted). Accepts a path with `accept` (AcceptSampled when null), keeps that path's KV entries
// (KvCache::KeepPath) and gathers its features. On error the cache is in an unknown state.
absl::StatusOr<VerifiedStep> VerifyTree(const DraftTree& tree, const float* logits, int vocab,
                                        const float* features, int64_t width, KvCache& cache,
                                        int64_t base, const SamplingParams& sampling, Rng& rng,
                                        const AcceptFn& accept = nullptr);

// VerifyTree for greedy sampling from the target's argmax at each node (argmax [tree.size()], a
// pass with ForwardRequest::argmax_only) instead of its logits.
absl::StatusOr<VerifiedStep> VerifyTreeGreedy(const DraftTree& tree, const int32_t* argmax,
                                              const float* features, int64_t width, KvCache& cache,
                                              int64_t base);

// Gives the draft head the step's (feature, following token) pairs.
absl::Status CommitStep(DraftModel& draft, const VerifiedStep& step);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_VERIFY_STEP_H_
