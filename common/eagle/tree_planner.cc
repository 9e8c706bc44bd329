#include "common/eagle/tree_planner.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace eagle {

TreePlanner::TreePlanner(CostCurve verify, CostCurve draft_level, PlannerOptions options)
    : verify_(std::move(verify)), draft_level_(std::move(draft_level)), o_(options) {
  EAGLE_CHECK(!verify_.empty() && !draft_level_.empty());
  o_.max_depth = std::clamp(o_.max_depth, 1, 32);
  o_.branching = std::clamp(o_.branching, 1, 32);
  o_.max_nodes = std::clamp(o_.max_nodes, 0, 256);
  tries_.assign(kBins, 0);
  hits_.assign(kBins, 0);
}

int TreePlanner::Bin(double p) {
  static constexpr double kEdges[kBins] = {0.02, 0.05, 0.1, 0.2, 0.3,  0.4, 0.5,
                                           0.6,  0.7,  0.8, 0.9, 0.95, 2};
  int b = 0;
  while (b + 1 < kBins && p >= kEdges[b]) ++b;
  return b;
}

double TreePlanner::Chance(double p) const {
  p = std::clamp(p, 0.0, 1.0);
  const int b = Bin(p);
  return std::clamp((hits_[b] + o_.prior_weight * p) / (tries_[b] + o_.prior_weight), 0.0, 1.0);
}

double TreePlanner::StepSeconds(int nodes, std::span<const int> level_rows) const {
  double draft = draft_level_.Seconds(commit_rows_);
  for (int rows : level_rows) draft += draft_level_.Seconds(rows);
  const double alone = verify_.Seconds(other_rows_ + 1);
  const double pass = alone + sessions_ * (verify_.Seconds(other_rows_ + nodes + 1) - alone);
  return pass + other_s_ + draft_scale_ * draft;
}

std::pair<double, int> TreePlanner::BestRate(std::span<const double> chances,
                                             std::span<const int> level_rows) const {
  double expected = 1;
  double best = expected / StepSeconds(0, level_rows);
  int best_n = 0;
  const int n_max = std::min<int>(o_.max_nodes, static_cast<int>(chances.size()));
  for (int n = 1; n <= n_max; ++n) {
    expected += chances[n - 1];
    const double rate = expected / StepSeconds(n, level_rows);
    if (rate > best) {
      best = rate;
      best_n = n;
    }
  }
  return {best, best_n};
}

int TreePlanner::Expand(std::span<const double> chances, std::span<const double> deepest,
                        std::span<const int> level_rows) {
  if (static_cast<int>(level_rows.size()) + 1 >= o_.max_depth || deepest.empty()) return 0;
  const double now = BestRate(chances, level_rows).first;
  double best = now;
  int best_k = 0;
  std::vector<double> hyp;
  std::vector<int> rows;
  for (int k : {1, 2, 4, 8}) {
    if (k > static_cast<int>(deepest.size())) break;
    // Expanding the k best deepest nodes, then (looking ahead) their best children for up to
    // two more levels, each child accepted with the session's mean top-1 chance.
    hyp.assign(chances.begin(), chances.end());
    rows.assign(level_rows.begin(), level_rows.end());
    std::vector<double> frontier(deepest.begin(), deepest.begin() + k);
    for (int ahead = 0; ahead < 3; ++ahead) {
      if (static_cast<int>(rows.size()) + 1 >= o_.max_depth) break;
      rows.push_back(k);
      for (double& c : frontier) {
        c *= top1_;
        hyp.push_back(c);
      }
      std::vector<double> sorted = hyp;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      const double rate = BestRate(sorted, rows).first;
      if (rate > best * (1 + 1e-9)) {
        best = rate;
        best_k = k;
      }
    }
  }
  return best_k;
}

int TreePlanner::Select(std::span<const double> chances, std::span<const int> level_rows) {
  level_rows_.assign(level_rows.begin(), level_rows.end());
  return BestRate(chances, level_rows).second;
}

bool TreePlanner::Speculate() {
  if (spec_seconds_ <= 0) return true;
  const double plain = 1 / (verify_.Seconds(other_rows_ + 1) + other_s_);
  if (spec_tokens_ / spec_seconds_ >= plain) {
    probe_interval_ = 0;
    return true;
  }
  if (off_steps_ >= o_.probe_steps << probe_interval_) {
    probe_interval_ = std::min(probe_interval_ + 1, 4);
    return true;
  }
  return false;
}

void TreePlanner::Observe(const DraftTree& tree, std::span<const float> probs,
                          std::span<const int32_t> accepted, const StepCost& cost) {
  const bool drafted = cost.draft_s > 0;
  off_steps_ = drafted ? 0 : off_steps_ + 1;
  const double r = o_.cost_rate;
  // Calibration along the accepted path: every child of an accepted node was tried.
  if (tree.size() > 1 && static_cast<int>(probs.size()) == tree.size()) {
    for (double& v : tries_) v *= o_.decay;
    for (double& v : hits_) v *= o_.decay;
    const std::vector<std::vector<int32_t>> children = tree.Children();
    int32_t node = 0;
    for (size_t d = 0;; ++d) {
      int32_t next = -1;
      for (int32_t kid : children[node]) {
        const int b = Bin(probs[kid]);
        tries_[b] += 1;
        if (d < accepted.size() && next < 0 && tree.tokens[kid] == accepted[d]) {
          hits_[b] += 1;
          next = kid;
        }
      }
      if (next < 0) break;
      node = next;
    }
    for (int i = 0; i < tree.size(); ++i) {
      if (!children[i].empty()) {
        top1_ = (1 - 0.05) * top1_ + 0.05 * Chance(probs[children[i][0]]);
      }
    }
  }
  // Costs.
  const int rows = cost.pass_rows > 0 ? cost.pass_rows : tree.size();
  verify_.Observe(rows, cost.verify_s, r);
  const double others = std::max(0, rows - tree.size());
  const double other_s = std::max(0.0, cost.other_s);
  other_rows_ = seen_ ? (1 - r) * other_rows_ + r * others : others;
  const double sessions = std::max(1, cost.pass_sequences);
  sessions_ = seen_ ? (1 - r) * sessions_ + r * sessions : sessions;
  other_s_ = seen_ ? (1 - r) * other_s_ + r * other_s : other_s;
  seen_ = true;
  if (drafted) {
    double pred = draft_level_.Seconds(commit_rows_);
    for (int lr : level_rows_) pred += draft_level_.Seconds(lr);
    if (pred > 0) {
      const double ratio = std::clamp(cost.draft_s / pred, 0.25, 4.0);
      draft_scale_ = std::clamp((1 - r) * draft_scale_ + r * ratio, 0.25, 4.0);
    }
    // A step's own commit is that of its tokens (the one measured may catch up on the prompt or
    // on steps without speculation).
    const double tokens = static_cast<double>(accepted.size() + 1);
    const double own_commit = draft_scale_ * draft_level_.Seconds(tokens);
    spec_tokens_ = o_.decay * spec_tokens_ + tokens;
    // The tree's extra rows lengthen the pass for every other session in it: charged here, a
    // session's speculation pays only when it adds more tokens than the pass loses in all.
    const double added =
        std::max(0.0, verify_.Seconds(rows) - verify_.Seconds(rows - tree.size() + 1));
    spec_seconds_ = o_.decay * spec_seconds_ + std::max(0.0, cost.draft_s - cost.commit_s) +
                    own_commit + cost.verify_s + other_s + (sessions - 1) * added;
  }
  level_rows_.clear();
}

}  // namespace eagle
