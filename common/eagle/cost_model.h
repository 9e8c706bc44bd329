// What a speculation step costs, as functions of the rows it computes: the target's forward pass
// over n rows (a tree of n nodes, plus whatever other sessions' rows share the pass) and one level
// of the draft head over n rows. Measured at start-up on the machine that runs them, then kept
// current from the steps actually run (a verifier under load, a CPU that changes its clock).
//
// A curve is piecewise linear between its measured points and extends beyond the last point along
// its last segment. Observe(rows, seconds) is a least-mean-squares step on that basis: with w the
// position of `rows` in its segment [a, b] and pred the curve's value there, the two end points
// move by the factors 1 + rate * (1 - w) * (r - 1) and 1 + rate * w * (r - 1), where r =
// seconds / pred (clamped to [1/4, 4], so that one outlier cannot swing the curve).
#ifndef EAGLE_COMMON_EAGLE_COST_MODEL_H_
#define EAGLE_COMMON_EAGLE_COST_MODEL_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

class EagleHead;
class LlamaModel;

class CostCurve {
 public:
  struct Point {
    int rows = 0;
    double seconds = 0;
  };
  CostCurve() = default;
  // Rows strictly increasing from >= 1, seconds > 0 and finite; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<CostCurve> FromPoints(std::vector<Point> points);

  bool empty() const { return points_.empty(); }
  const std::vector<Point>& points() const { return points_; }
  // The curve at `rows` (>= 0; 0 costs nothing). Empty curve: 0.
  double Seconds(double rows) const;
  // Moves the curve toward one measurement (see the header comment); rate in (0, 1].
  void Observe(double rows, double seconds, double rate = 0.1);

 private:
  // The segment [i, i + 1] that holds `rows` (the first or last one beyond the ends) and the
  // position w of rows in it.
  void Locate(double rows, int* i, double* w) const;
  std::vector<Point> points_;
};

// Row counts a start-up measurement covers: small trees densely, large ones sparsely.
std::vector<int> DefaultCostRows();

// Times the target's forward pass over a tree of each row count (a binary tree with full logits
// and the final-norm features, appended to a cached prefix of `prefix` tokens and rolled back),
// the median of `repeats` runs after one untimed run.
absl::StatusOr<CostCurve> MeasureForwardCost(const LlamaModel& model, std::span<const int> rows,
                                             int repeats = 3, int prefix = 64);

// Times one level of the draft head over each row count (the head's decoder layer and its LM
// head, as Draft runs them), on a draft cache holding `prefix` committed positions.
absl::StatusOr<CostCurve> MeasureDraftLevelCost(const EagleHead& head, std::span<const int> rows,
                                                int repeats = 3, int prefix = 64);

// What auto trees are sized from: the target's forward seconds by rows and one draft level's.
struct SpeculationCosts {
  CostCurve verify;
  CostCurve draft_level;
};
// Both curves over DefaultCostRows() (the verify curve only with a target).
absl::StatusOr<std::shared_ptr<const SpeculationCosts>> MeasureSpeculationCosts(
    const LlamaModel* target, const EagleHead& head, int repeats = 2);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_COST_MODEL_H_
