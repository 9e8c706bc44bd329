#include "common/eagle/cost_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/eagle_head.h"
#include "common/model/llama_model.h"
#include "common/status_macros.h"
#include "common/timing.h"

namespace eagle {

absl::StatusOr<CostCurve> CostCurve::FromPoints(std::vector<Point> points) {
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    if (p.rows < 1 || (i > 0 && p.rows <= points[i - 1].rows)) {
      return absl::InvalidArgumentError("cost curve: rows must increase from 1 or more");
    }
    if (!(p.seconds > 0) || !std::isfinite(p.seconds)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cost curve: ", p.seconds, " s at ", p.rows, " rows is not positive"));
    }
  }
  CostCurve c;
  c.points_ = std::move(points);
  return c;
}

void CostCurve::Locate(double rows, int* i, double* w) const {
  const int n = static_cast<int>(points_.size());
  int s = 0;
  while (s + 2 < n && rows > points_[s + 1].rows) ++s;
  *i = s;
  *w = (rows - points_[s].rows) / (points_[s + 1].rows - points_[s].rows);
}

double CostCurve::Seconds(double rows) const {
  if (points_.empty() || rows <= 0) return 0;
  if (points_.size() == 1) return points_[0].seconds * rows / points_[0].rows;
  if (rows < points_[0].rows) return points_[0].seconds * rows / points_[0].rows;
  int i = 0;
  double w = 0;
  Locate(rows, &i, &w);
  const double v = (1 - w) * points_[i].seconds + w * points_[i + 1].seconds;
  return std::max(v, points_[0].seconds * 1e-3);
}

void CostCurve::Observe(double rows, double seconds, double rate) {
  if (points_.empty() || !(rows > 0) || !(seconds > 0) || !std::isfinite(seconds)) return;
  const double pred = Seconds(rows);
  if (!(pred > 0)) return;
  const double r = std::clamp(seconds / pred, 0.25, 4.0);
  rate = std::clamp(rate, 0.0, 1.0);
  if (points_.size() == 1 || rows <= points_[0].rows) {
    points_[0].seconds *= 1 + rate * (r - 1);
    return;
  }
  int i = 0;
  double w = 0;
  Locate(rows, &i, &w);
  w = std::clamp(w, 0.0, 1.0);
  points_[i].seconds *= 1 + rate * (1 - w) * (r - 1);
  points_[i + 1].seconds *= 1 + rate * w * (r - 1);
}

std::vector<int> DefaultCostRows() { return {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}; }

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status CheckRows(std::span<const int> rows) {
  if (rows.empty()) return absl::InvalidArgumentError("cost measurement: no row counts");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 1 || rows[i] > 256 || (i > 0 && rows[i] <= rows[i - 1])) {
      return absl::InvalidArgumentError("cost measurement: rows must increase within [1, 256]");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CostCurve> MeasureForwardCost(const LlamaModel& model, std::span<const int> rows,
                                             int repeats, int prefix) {
  RETURN_IF_ERROR(CheckRows(rows));
  const LlamaConfig& c = model.config();
  const int64_t biggest = rows.back();
  prefix = static_cast<int>(std::clamp<int64_t>(prefix, 1, c.max_position - biggest));
  if (prefix + biggest > c.max_position) {
    return absl::InvalidArgumentError("cost measurement: the context is too short");
  }
  repeats = std::max(repeats, 1);
  std::unique_ptr<KvCache> cache = model.NewCache(prefix + biggest);
  std::vector<int32_t> prompt(prefix);
  for (int i = 0; i < prefix; ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 1) % c.vocab_size);
  ForwardRequest pre;
  pre.tokens = prompt;
  pre.logits = LogitsMode::kNone;
  RETURN_IF_ERROR(model.Forward(*cache, pre).status());
  std::vector<CostCurve::Point> points;
  for (int n : rows) {
    std::vector<int32_t> tokens(n), parents(n);
    for (int i = 0; i < n; ++i) {
      tokens[i] = static_cast<int32_t>((i * 31 + 5) % c.vocab_size);
      parents[i] = i == 0 ? -1 : (i - 1) / 2;
    }
    std::vector<double> ts;
    for (int r = 0; r <= repeats; ++r) {
      ForwardRequest req;
      req.tokens = tokens;
      req.parents = parents;
      req.logits = LogitsMode::kAll;
      req.return_features = true;
      const auto t = Clock::now();
      RETURN_IF_ERROR(model.Forward(*cache, req).status());
      if (r > 0) ts.push_back(SecondsSince(t));
      RETURN_IF_ERROR(cache->Truncate(prefix));
    }
    points.push_back({n, Median(ts)});
  }
  return CostCurve::FromPoints(std::move(points));
}

absl::StatusOr<CostCurve> MeasureDraftLevelCost(const EagleHead& head, std::span<const int> rows,
                                                int repeats, int prefix) {
  RETURN_IF_ERROR(CheckRows(rows));
  const int biggest = rows.back();
  if (biggest > head.draft_vocab_size()) {
    return absl::InvalidArgumentError("cost measurement: more rows than draft candidates");
  }
  prefix = static_cast<int>(std::clamp<int64_t>(prefix, 1, head.max_position() - 2));
  if (prefix + 2 > head.max_position()) {
    return absl::InvalidArgumentError("cost measurement: the head's context is too short");
  }
  repeats = std::max(repeats, 1);
  EagleDraftModel draft(&head, prefix + 2 * biggest + 2);
  const int64_t fw = head.target_feature_width();
  std::vector<float> features(prefix * fw);
  for (size_t i = 0; i < features.size(); ++i) features[i] = 0.01f * static_cast<float>(i % 97);
  std::vector<int32_t> tokens(prefix);
  for (int i = 0; i < prefix; ++i) {
    tokens[i] = static_cast<int32_t>((i * 7919 + 1) % head.config().vocab_size);
  }
  RETURN_IF_ERROR(draft.Commit(features, tokens));
  std::vector<CostCurve::Point> points;
  for (int n : rows) {
    // n children of the root, each with one child: one level of n rows is forwarded.
    TreeOptions o;
    o.mode = TreeMode::kStatic;
    for (int i = 0; i < n; ++i) o.choices.push_back({i});
    for (int i = 0; i < n; ++i) o.choices.push_back({i, 0});
    std::vector<double> ts;
    for (int r = 0; r <= repeats; ++r) {
      const auto t = Clock::now();
      RETURN_IF_ERROR(draft.Draft(tokens.back(), o).status());
      if (r > 0) ts.push_back(SecondsSince(t));
    }
    points.push_back({n, Median(ts)});
  }
  return CostCurve::FromPoints(std::move(points));
}

absl::StatusOr<std::shared_ptr<const SpeculationCosts>> MeasureSpeculationCosts(
    const LlamaModel* target, const EagleHead& head, int repeats) {
  auto costs = std::make_shared<SpeculationCosts>();
  const std::vector<int> rows = DefaultCostRows();
  if (target != nullptr) {
    ASSIGN_OR_RETURN(costs->verify, MeasureForwardCost(*target, rows, repeats));
  }
  ASSIGN_OR_RETURN(costs->draft_level, MeasureDraftLevelCost(head, rows, repeats));
  return std::shared_ptr<const SpeculationCosts>(std::move(costs));
}

}  // namespace eagle
