// In-process speculative generation: a target LlamaModel verifies draft trees proposed by a
// DraftModel. At temperature 0 the output is bit-identical to GenerateVanilla's (the target's
// kernels are batch invariant); at T > 0 it keeps vanilla sampling's distribution.
#ifndef EAGLE_COMMON_EAGLE_SPECULATIVE_H_
#define EAGLE_COMMON_EAGLE_SPECULATIVE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/verify_step.h"
#include "common/generate.h"

namespace eagle {

struct SpeculativeStats {
  int steps = 0;                           // tree verifications
  int64_t accepted_drafts = 0;             // draft tokens accepted (bonus tokens not counted)
  int64_t tree_nodes = 0;                  // draft nodes verified (root excluded)
  std::vector<int64_t> accepted_at_depth;  // [d] steps that accepted a draft at depth d + 1
  int64_t plain_steps = 0;                 // steps without a draft (auto: it did not pay)
  double draft_seconds = 0;
  double verify_seconds = 0;
  // Records one verification: `tree_nodes` draft nodes (root excluded), `accepted` of them kept.
  void AddStep(int tree_nodes, int accepted) {
    ++steps;
    this->tree_nodes += tree_nodes;
    accepted_drafts += accepted;
    if (static_cast<int>(accepted_at_depth.size()) < accepted) accepted_at_depth.resize(accepted);
    for (int d = 0; d < accepted; ++d) ++accepted_at_depth[d];
  }
  // Mean tokens per step, bonus included (tau).
  double tau() const { return steps > 0 ? 1.0 + static_cast<double>(accepted_drafts) / steps : 0; }
};

absl::StatusOr<GenerateResult> GenerateSpeculative(
    const LlamaModel& target, DraftModel& draft, std::span<const int32_t> prompt,
    const GenerateOptions& options, const TreeOptions& tree_options, const TokenCallback& on_token,
    SpeculativeStats* stats, const AcceptFn& accept = nullptr);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_SPECULATIVE_H_
