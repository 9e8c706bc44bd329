#include "common/eagle/verify_step.h"

#include "common/eagle/draft_model.h"
#include "common/status_macros.h"

namespace eagle {

std::vector<int32_t> VerifiedStep::tokens() const {
  std::vector<int32_t> t(accepted);
  t.push_back(next_token);
  return t;
}

namespace {
// The accepted path's KV entries kept, its tokens and features gathered.
absl::StatusOr<VerifiedStep> Finish(const DraftTree& tree, const Acceptance& acc,
                                    const float* features, int64_t width, KvCache& cache,
                                    int64_t base) {
  RETURN_IF_ERROR(cache.KeepPath(base, acc.path));
  VerifiedStep step;
  step.next_token = acc.next_token;
  step.accepted.reserve(acc.path.size() - 1);
  for (size_t j = 1; j < acc.path.size(); ++j) step.accepted.push_back(tree.tokens[acc.path[j]]);
  if (width > 0) {
    step.features.reserve(acc.path.size() * width);
    for (int32_t node : acc.path) {
      step.features.insert(step.features.end(), features + node * width,
                           features + (node + 1) * width);
    }
  }
  return step;
}
}  // namespace

absl::StatusOr<VerifiedStep> VerifyTree(const DraftTree& tree, const float* logits, int vocab,
                                        const float* features, int64_t width, KvCache& cache,
                                        int64_t base, const SamplingParams& sampling, Rng& rng,
                                        const AcceptFn& accept) {
  const Acceptance acc = accept ? accept(tree, logits, vocab, sampling, rng)
                                : AcceptSampled(tree, logits, vocab, sampling, rng);
  return Finish(tree, acc, features, width, cache, base);
}

absl::StatusOr<VerifiedStep> VerifyTreeGreedy(const DraftTree& tree, const int32_t* argmax,
                                              const float* features, int64_t width, KvCache& cache,
                                              int64_t base) {
  return Finish(tree, AcceptGreedyIds(tree, argmax), features, width, cache, base);
}

absl::Status CommitStep(DraftModel& draft, const VerifiedStep& step) {
  return draft.Commit(step.features, step.tokens());
}

}  // namespace eagle
