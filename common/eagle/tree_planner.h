// Trees sized from measured costs (`--tree auto`): each step drafts the tree that maximises this
// session's expected tokens per second, from no speculation at all up to `max_nodes` nodes.
//
// Acceptance model. As EAGLE-2 observes, the draft's probability of a token predicts whether the
// target accepts it; here that prediction is calibrated per session. A(p) is the chance that a
// drafted node of draft probability p is accepted given that its parent was, estimated in bins
// of p from the steps seen (counts decay by `decay` per step, each bin leaning on the prior
// A(p) = p with weight `prior_weight`). A node's chance c is the product of A along its path, and
// a tree's expected tokens per step are 1 (the bonus or correction token) plus the sum of its
// nodes' chances. Since c never grows along a path, the best tree of n nodes from a drafted pool
// is its n nodes of highest chance.
//
// Costs. A step of n nodes after L head levels costs
//     commit + sum of the L levels' D(rows) + V(o + 1) + S * (V(o + n + 1) - V(o + 1)) + fixed,
// with V the target's forward by rows, o the other sessions' rows in the same pass and S the
// sessions in it (both means of the passes seen): a row this session adds delays every session
// of the pass, so under load, when the pass is compute bound, its rows cost S times as much and
// trees shrink. D is one head level by rows (both CostCurves, measured at start and kept current; D
// is scaled by the ratio of measured to predicted draft time), and `fixed` the rest of a step
// (network, sampling), measured. The rate of a plan is its expected tokens over its cost.
//
// Drafting (DraftPolicy, driven by EagleDraftModel::DraftPlanned): the root's candidates come
// from the commit; after each level the planner compares the best rate reachable now with the
// best rate if the k most likely nodes of the deepest level were expanded, their children
// assumed to be accepted with the session's mean top-1 calibrated chance; it expands while that
// wins (k in 1, 2, 4, 8), then keeps the n nodes whose rate is best (n = 0 included).
//
// Off. Before drafting, a session whose speculative steps have run at a lower rate than a plain
// step would (decayed; a speculative step's seconds include the time its tree's extra rows add
// to the pass times the other sessions in it, so that under load a session does not gain at
// the others' expense) skips the draft and the head's commit: commits wait until
// speculation resumes. After `probe_steps` such steps it speculates once to refresh the
// estimates; the interval doubles (up to 16 times) while probes find that it does not pay.
#ifndef EAGLE_COMMON_EAGLE_TREE_PLANNER_H_
#define EAGLE_COMMON_EAGLE_TREE_PLANNER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/eagle/cost_model.h"
#include "common/eagle/draft_tree.h"

namespace eagle {

struct PlannerOptions {
  int max_nodes = 48;  // largest tree, root excluded
  int max_depth = 8;
  int branching = 8;  // candidates kept per expanded node
  double decay = 0.98;
  double prior_weight = 2;
  int probe_steps = 8;
  double cost_rate = 0.1;  // how fast measured costs move the curves and scales
};

// The decisions of one planned draft, asked level by level by the draft model.
class DraftPolicy {
 public:
  virtual ~DraftPolicy() = default;
  // Candidates kept per expanded node.
  virtual int branching() const = 0;
  // Calibrated chance that a node of draft probability p is accepted given that its parent is.
  virtual double Chance(double p) const = 0;
  // After `levels` head forwards over the rows in `level_rows` (root level excluded): `chances`
  // holds the chance of every drafted node, `deepest` those of the deepest depth's nodes, both
  // in descending order. Returns how many of the best deepest nodes to expand (0: stop).
  virtual int Expand(std::span<const double> chances, std::span<const double> deepest,
                     std::span<const int> level_rows) = 0;
  // How many of the best nodes (`chances`, descending) to verify.
  virtual int Select(std::span<const double> chances, std::span<const int> level_rows) = 0;
};

class TreePlanner final : public DraftPolicy {
 public:
  // `verify`: the target's forward seconds by rows; `draft_level`: one head level's seconds by
  // rows. Both must be non-empty.
  TreePlanner(CostCurve verify, CostCurve draft_level, PlannerOptions options = {});

  // Whether the next step should draft at all (see "Off" above).
  bool Speculate();
  // The rows of the head's commit before this step's draft.
  void SetCommit(int rows) { commit_rows_ = rows; }

  int branching() const override { return o_.branching; }
  double Chance(double p) const override;
  int Expand(std::span<const double> chances, std::span<const double> deepest,
             std::span<const int> level_rows) override;
  int Select(std::span<const double> chances, std::span<const int> level_rows) override;

  // What a step cost.
  struct StepCost {
    double draft_s = 0;      // the head's commit and draft (0: no draft this step)
    double commit_s = 0;     // the commit's part of draft_s
    double verify_s = 0;     // the target's forward pass (and acceptance)
    int pass_rows = 0;       // rows of the whole pass the tree shared (0: only this tree's)
    int pass_sequences = 0;  // sessions in that pass (0: this one alone)
    double other_s = 0;      // the rest of the step: network, sampling, streaming
  };
  // After the step: the tree as verified, the draft probability of each of its nodes (empty when
  // not known: no calibration from this step), the accepted draft tokens and the costs.
  void Observe(const DraftTree& tree, std::span<const float> probs,
               std::span<const int32_t> accepted, const StepCost& cost);

  // Predicted seconds of a step of `nodes` nodes after head levels over `level_rows`.
  double StepSeconds(int nodes, std::span<const int> level_rows) const;
  // Best (rate, n) over the first n of `chances` (descending), n in [0, max_nodes].
  std::pair<double, int> BestRate(std::span<const double> chances,
                                  std::span<const int> level_rows) const;
  const CostCurve& verify_cost() const { return verify_; }
  double draft_scale() const { return draft_scale_; }
  const PlannerOptions& options() const { return o_; }

 private:
  static constexpr int kBins = 13;
  static int Bin(double p);

  CostCurve verify_;
  CostCurve draft_level_;
  PlannerOptions o_;
  std::vector<double> tries_, hits_;  // [kBins] decayed counts
  double top1_ = 0.5;                 // mean calibrated chance of an expanded node's best child
  double draft_scale_ = 1;            // measured / predicted draft seconds
  double other_rows_ = 0;             // other sessions' rows in the pass (mean)
  double sessions_ = 1;               // sessions in the pass (mean)
  double other_s_ = 0;                // the fixed part of a step (mean)
  bool seen_ = false;
  int commit_rows_ = 0;
  std::vector<int> level_rows_;  // the last draft's levels (for the draft scale)
  // Measured rates of speculative steps: decayed sums of tokens and seconds.
  double spec_tokens_ = 0, spec_seconds_ = 0;
  int off_steps_ = 0;
  int probe_interval_ = 0;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_TREE_PLANNER_H_
