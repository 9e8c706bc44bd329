// The draft side of a generation's steps, written once for the in-process generator
// (speculative.cc) and the drafter's loop over a verifier (verifier_loop.cc):
//   - the head's commits, queued until the next draft, so that a step without speculation costs
//     the head nothing (auto turns speculation off when it does not pay);
//   - each step's tree: from the fixed options, or drafted level by level as a TreePlanner
//     decides (TreeMode::kAuto), or (auto, when speculation does not pay) the root alone;
//   - the step's measured costs and accepted path, given back to the planner.
#ifndef EAGLE_COMMON_EAGLE_STEP_DRAFTER_H_
#define EAGLE_COMMON_EAGLE_STEP_DRAFTER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/verify_step.h"

namespace eagle {

// The costs an auto generation plans with: `options.costs` where it has a curve, else
// `verifier_curve` (what the verifier measured) or a measurement of `target` for the verify
// curve, and for the draft level a prior of a tenth of the verify curve (the planner rescales it
// from the first steps' measured draft times). Null target: no measurement (the curve must
// come from the options or the verifier).
absl::StatusOr<std::shared_ptr<const SpeculationCosts>> ResolveCosts(
    const TreeOptions& options, const CostCurve* verifier_curve, const LlamaModel* target);

class StepDrafter {
 public:
  // kAuto needs both curves in `costs`; other modes ignore it.
  StepDrafter(DraftModel* draft, const TreeOptions& options,
              std::shared_ptr<const SpeculationCosts> costs);

  // Queues (feature, following token) pairs for the head (DraftModel::Commit's contract).
  void Commit(std::span<const float> features, std::span<const int32_t> next_tokens);
  void Commit(const VerifiedStep& step) { Commit(step.features, step.tokens()); }
  // The next step's tree, rooted at `root` (the last queued token) and at most `room` deep:
  // commits what is queued and drafts, or (auto, when speculation does not pay) the root alone.
  absl::StatusOr<DraftTree> Next(int32_t root, int64_t room);
  // Seconds the last Next spent in the head (commit and draft).
  double last_seconds() const { return seconds_; }
  // After the tree Next returned was verified: its accepted draft tokens, the target's seconds,
  // the rows and sessions of the pass it shared (0: its own alone) and the rest of the step's
  // time.
  void Observe(std::span<const int32_t> accepted, double verify_s, int pass_rows,
               int pass_sequences, double other_s);
  // Null unless auto.
  const TreePlanner* planner() const { return planner_.get(); }

 private:
  DraftModel* draft_;
  TreeOptions options_;
  std::unique_ptr<TreePlanner> planner_;
  std::vector<float> pending_features_;
  std::vector<int32_t> pending_tokens_;
  DraftTree tree_;            // the last tree Next returned
  std::vector<float> probs_;  // its nodes' draft probabilities (auto)
  double seconds_ = 0;
  double commit_seconds_ = 0;  // the commit's part of seconds_
};

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_STEP_DRAFTER_H_
