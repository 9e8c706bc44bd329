#include "common/eagle/verify_step.h"

#include "common/eagle/draft_model.h"
#include "common/status_macros.h"

namespace eagle {

std::vector<int32_t> VerifiedStep::tokens() const {
  std::vector<int32_t> t(accepted);
  t.push_back(next_token);
  return t;
}

absl::StatusOr<VerifiedStep> VerifyTree(const DraftTree& tree, const float* logits, int vocab,
                                        const float* features, int64_t width, KvCache& cache,
                                        int64_t base, const SamplingParams& sampling, Rng& rng,
                                        const AcceptFn& accept) {
  const Acceptance acc = accept ? accept(tree, logits, vocab, sampling, rng)
                                : AcceptSampled(tree, logits, vocab, sampling, rng);
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

absl::Status CommitStep(DraftModel& draft, const VerifiedStep& step) {
  return draft.Commit(step.features, step.tokens());
}

}  // namespace eagle
