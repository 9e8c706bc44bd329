#include "common/eagle/step_drafter.h"

#include <algorithm>

#include "common/check.h"
#include "common/model/llama_model.h"
#include "common/status_macros.h"
#include "common/timing.h"

namespace eagle {

absl::StatusOr<std::shared_ptr<const SpeculationCosts>> ResolveCosts(
    const TreeOptions& options, const CostCurve* verifier_curve, const LlamaModel* target) {
  auto costs = std::make_shared<SpeculationCosts>();
  if (options.costs != nullptr) *costs = *options.costs;
  if (verifier_curve != nullptr && !verifier_curve->empty()) costs->verify = *verifier_curve;
  if (costs->verify.empty()) {
    if (target == nullptr) {
      return absl::FailedPreconditionError("auto trees: no measured verify cost");
    }
    ASSIGN_OR_RETURN(costs->verify, MeasureForwardCost(*target, DefaultCostRows()));
  }
  if (costs->draft_level.empty()) {
    std::vector<CostCurve::Point> prior = costs->verify.points();
    for (auto& p : prior) p.seconds *= 0.1;
    ASSIGN_OR_RETURN(costs->draft_level, CostCurve::FromPoints(std::move(prior)));
  }
  return std::shared_ptr<const SpeculationCosts>(std::move(costs));
}

StepDrafter::StepDrafter(DraftModel* draft, const TreeOptions& options,
                         std::shared_ptr<const SpeculationCosts> costs)
    : draft_(draft), options_(options) {
  if (options.mode == TreeMode::kAuto) {
    EAGLE_CHECK(costs != nullptr && !costs->verify.empty() && !costs->draft_level.empty());
    planner_ = std::make_unique<TreePlanner>(costs->verify, costs->draft_level, options.planner);
  }
}

void StepDrafter::Commit(std::span<const float> features, std::span<const int32_t> next_tokens) {
  pending_features_.insert(pending_features_.end(), features.begin(), features.end());
  pending_tokens_.insert(pending_tokens_.end(), next_tokens.begin(), next_tokens.end());
}

absl::StatusOr<DraftTree> StepDrafter::Next(int32_t root, int64_t room) {
  const auto t0 = Clock::now();
  seconds_ = 0;
  commit_seconds_ = 0;
  probs_.clear();
  if (planner_ != nullptr && !planner_->Speculate()) {
    tree_ = DraftTree{{root}, {-1}};
    return tree_;
  }
  if (planner_ != nullptr) planner_->SetCommit(static_cast<int>(pending_tokens_.size()));
  if (!pending_tokens_.empty()) {
    RETURN_IF_ERROR(draft_->Commit(pending_features_, pending_tokens_));
    pending_features_.clear();
    pending_tokens_.clear();
  }
  commit_seconds_ = SecondsSince(t0);
  if (planner_ != nullptr) {
    const int depth = static_cast<int>(std::clamp<int64_t>(room, 0, 64));
    ASSIGN_OR_RETURN(tree_, draft_->DraftPlanned(root, *planner_, depth, &probs_));
    // A draft model that drafts deeper than asked is trimmed (and not calibrated from).
    const std::vector<int32_t> depths = tree_.Depths();
    if (*std::max_element(depths.begin(), depths.end()) > room) {
      tree_ = tree_.TrimToDepth(room);
      probs_.clear();
    }
  } else {
    ASSIGN_OR_RETURN(DraftTree drafted, draft_->Draft(root, options_));
    tree_ = drafted.TrimToDepth(room);
  }
  seconds_ = SecondsSince(t0);
  return tree_;
}

void StepDrafter::Observe(std::span<const int32_t> accepted, double verify_s, int pass_rows,
                          int pass_sequences, double other_s) {
  if (planner_ == nullptr) return;
  TreePlanner::StepCost c;
  c.draft_s = seconds_;
  c.commit_s = commit_seconds_;
  c.verify_s = verify_s;
  c.pass_rows = pass_rows;
  c.pass_sequences = pass_sequences;
  c.other_s = other_s;
  planner_->Observe(tree_, probs_, accepted, c);
}

}  // namespace eagle
