// Auto trees: the cost curves (interpolation, online updates, measurement on a tiny model), the
// planner's acceptance calibration and its decisions (how many nodes, how deep, when to stop
// speculating and when to probe again), and losslessness of auto trees at T = 0.
#include "common/eagle/tree_planner.h"

#include <random>

#include "common/eagle/speculative.h"
#include "common/eagle/step_drafter.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

CostCurve Curve(std::vector<CostCurve::Point> p) {
  auto c = CostCurve::FromPoints(std::move(p));
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(CostCurveTest, InterpolatesAndExtendsItsLastSegment) {
  const CostCurve c = Curve({{1, 1.0}, {4, 2.5}, {8, 6.5}});
  EXPECT_DOUBLE_EQ(c.Seconds(0), 0);
  EXPECT_DOUBLE_EQ(c.Seconds(1), 1.0);
  EXPECT_DOUBLE_EQ(c.Seconds(2), 1.5);
  EXPECT_DOUBLE_EQ(c.Seconds(6), 4.5);
  EXPECT_DOUBLE_EQ(c.Seconds(12), 10.5);  // slope 1 per row past the last point
  EXPECT_DOUBLE_EQ(c.Seconds(0.5), 0.5);
}

TEST(CostCurveTest, RefusesBadPoints) {
  EXPECT_FALSE(CostCurve::FromPoints({{0, 1.0}}).ok());
  EXPECT_FALSE(CostCurve::FromPoints({{2, 1.0}, {2, 2.0}}).ok());
  EXPECT_FALSE(CostCurve::FromPoints({{1, 1.0}, {2, -1.0}}).ok());
  EXPECT_FALSE(CostCurve::FromPoints({{1, std::nan("")}}).ok());
  EXPECT_TRUE(CostCurve::FromPoints({}).ok());
}

TEST(CostCurveTest, ObservationsMoveTheCurveToTheMachinesCost) {
  // The machine got twice as slow at 4 rows and above, not at 1 row.
  CostCurve c = Curve({{1, 1.0}, {4, 2.0}, {16, 5.0}});
  for (int i = 0; i < 200; ++i) {
    c.Observe(1, 1.0);
    c.Observe(4, 4.0);
    c.Observe(16, 10.0);
  }
  EXPECT_NEAR(c.Seconds(1), 1.0, 0.05);
  EXPECT_NEAR(c.Seconds(4), 4.0, 0.1);
  EXPECT_NEAR(c.Seconds(16), 10.0, 0.2);
  // One absurd measurement moves it by a bounded factor only.
  const double before = c.Seconds(4);
  c.Observe(4, 1e6, 0.1);
  EXPECT_LT(c.Seconds(4), before * 1.31);
}

TEST(CostCurveTest, MeasuresATinyModelAndHead) {
  testing::TinyConfig tc;
  auto target = testing::MakeTinyLlama(tc);
  ASSERT_TRUE(target.ok());
  auto head = testing::MakeRandomEagleHead(**target, 7);
  ASSERT_TRUE(head.ok());
  const std::vector<int> rows = {1, 2, 4, 8};
  auto v = MeasureForwardCost(**target, rows, 1, 16);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->points().size(), 4u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(v->points()[i].rows, rows[i]);
    EXPECT_GT(v->points()[i].seconds, 0);
  }
  auto d = MeasureDraftLevelCost(**head, rows, 1, 16);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->points().size(), 4u);
  EXPECT_FALSE(MeasureForwardCost(**target, std::vector<int>{4, 2}).ok());
  EXPECT_FALSE(MeasureDraftLevelCost(**head, std::vector<int>{1, 1000}).ok());
}

// A chain tree root -> 1 -> 2 -> ... with the given draft probabilities.
DraftTree Chain(int nodes) {
  DraftTree t{{0}, {-1}};
  for (int i = 1; i <= nodes; ++i) {
    t.tokens.push_back(i);
    t.parents.push_back(i - 1);
  }
  return t;
}

TEST(TreePlannerTest, CalibratesTheDraftsConfidenceFromAcceptance) {
  TreePlanner p(Curve({{1, 1e-3}, {64, 2e-3}}), Curve({{1, 1e-5}, {64, 2e-5}}));
  EXPECT_NEAR(p.Chance(0.9), 0.9, 1e-9);  // the prior: the draft is calibrated
  // A draft that is confident and wrong: nodes at p = 0.92 are never accepted.
  const DraftTree t = Chain(1);
  for (int i = 0; i < 100; ++i) {
    TreePlanner::StepCost c;
    c.draft_s = 1e-4;
    c.verify_s = 1e-3;
    p.Observe(t, std::vector<float>{1.0f, 0.92f}, {}, c);
  }
  EXPECT_LT(p.Chance(0.92), 0.1);
  EXPECT_NEAR(p.Chance(0.5), 0.5, 1e-9);  // other bins untouched
  // And one that is always right at p = 0.35.
  for (int i = 0; i < 100; ++i) {
    TreePlanner::StepCost c;
    c.draft_s = 1e-4;
    c.verify_s = 1e-3;
    const std::vector<int32_t> accepted = {1};
    p.Observe(t, std::vector<float>{1.0f, 0.35f}, accepted, c);
  }
  EXPECT_GT(p.Chance(0.35), 0.9);
}

TEST(TreePlannerTest, TreeSizeFollowsTheCostOfRows) {
  const std::vector<double> chances = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05};
  const CostCurve draft = Curve({{1, 1e-5}, {64, 1e-5}});
  // Rows nearly free (memory-bound): verify them all.
  TreePlanner flat(Curve({{1, 10e-3}, {64, 10.5e-3}}), draft);
  EXPECT_EQ(flat.Select(chances, {}), 10);
  // Each row costs as much as a whole step: verify nothing.
  TreePlanner steep(Curve({{1, 10e-3}, {64, 640e-3}}), draft);
  EXPECT_EQ(steep.Select(chances, {}), 0);
  // In between (each row 20% of a step): a node pays while its chance beats the rate it
  // dilutes, which here keeps the first five (4.5 tokens in 20 ms).
  TreePlanner mid(Curve({{1, 10e-3}, {64, 136e-3}}), draft);
  EXPECT_EQ(mid.Select(chances, {}), 5);
}

TEST(TreePlannerTest, TreesShrinkWhenOtherSessionsFillTheComputeBoundPass) {
  // Flat up to 16 rows (memory bound), then 1 ms per row (compute bound).
  const CostCurve verify = Curve({{1, 10e-3}, {16, 12e-3}, {256, 250e-3}});
  const std::vector<double> chances = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05};
  TreePlanner alone(verify, Curve({{1, 1e-5}, {64, 1e-5}}));
  TreePlanner loaded(verify, Curve({{1, 1e-5}, {64, 1e-5}}));
  TreePlanner::StepCost c;
  c.draft_s = 1e-5;
  c.verify_s = 60e-3;
  c.pass_rows = 59;  // seven other sessions' trees of 8 share the pass
  c.pass_sequences = 8;
  for (int i = 0; i < 100; ++i) loaded.Observe(Chain(2), {}, {}, c);
  const int n_alone = alone.Select(chances, {});
  const int n_loaded = loaded.Select(chances, {});
  // Alone, rows cost 0.13 ms each against a 10 ms step: all but the 0.05 node pay. Loaded, a
  // row costs 8 x 1 ms of the pass: only the likelier nodes do.
  EXPECT_EQ(n_alone, 9);
  EXPECT_GE(n_loaded, 1);
  EXPECT_LE(n_loaded, 6) << "alone " << n_alone;
}

TEST(TreePlannerTest, ExpandsWhileTheNextLevelPays) {
  const CostCurve verify = Curve({{1, 10e-3}, {64, 11e-3}});
  // A head level costing a tenth of a step: expand a confident node, not an unlikely one.
  TreePlanner p(verify, Curve({{1, 1e-3}, {64, 2e-3}}));
  EXPECT_GT(p.Expand(std::vector<double>{0.95, 0.02}, std::vector<double>{0.95, 0.02}, {}), 0);
  EXPECT_EQ(p.Expand(std::vector<double>{0.01}, std::vector<double>{0.01}, {}), 0);
  // A head level as dear as a target step: never.
  TreePlanner dear(verify, Curve({{1, 20e-3}, {64, 40e-3}}));
  EXPECT_EQ(dear.Expand(std::vector<double>{0.95}, std::vector<double>{0.95}, {}), 0);
  // At the depth bound: stop.
  PlannerOptions shallow;
  shallow.max_depth = 2;
  TreePlanner bound(verify, Curve({{1, 1e-3}, {64, 2e-3}}), shallow);
  EXPECT_EQ(bound.Expand(std::vector<double>{0.95}, std::vector<double>{0.95}, std::vector<int>{1}),
            0);
}

TEST(TreePlannerTest, TurnsSpeculationOffWhenItDoesNotPayAndProbesLater) {
  PlannerOptions o;
  o.probe_steps = 4;
  TreePlanner p(Curve({{1, 10e-3}, {64, 20e-3}}), Curve({{1, 1e-3}, {64, 2e-3}}), o);
  EXPECT_TRUE(p.Speculate());  // nothing measured yet
  // Speculative steps that accept nothing and cost 3x a plain step.
  TreePlanner::StepCost spec;
  spec.draft_s = 20e-3;
  spec.verify_s = 10e-3;
  p.Observe(Chain(3), {}, {}, spec);
  TreePlanner::StepCost plain;
  plain.verify_s = 10e-3;
  std::vector<int> on_steps;
  for (int step = 0; step < 40; ++step) {
    if (p.Speculate()) {
      on_steps.push_back(step);
      p.Observe(Chain(3), {}, {}, spec);
    } else {
      p.Observe(DraftTree{{0}, {-1}}, {}, {}, plain);
    }
  }
  // Probes after 4, then 8, then 16 plain steps.
  EXPECT_EQ(on_steps, (std::vector<int>{4, 13, 30}));
  // probe_steps 0: every step speculates.
  o.probe_steps = 0;
  TreePlanner always(Curve({{1, 10e-3}, {64, 20e-3}}), Curve({{1, 1e-3}, {64, 2e-3}}), o);
  always.Observe(Chain(3), {}, {}, spec);
  EXPECT_TRUE(always.Speculate());
}

TEST(TreePlannerTest, ControlADraftThatPaysStaysOn) {
  // The control for the test above: speculation that pays (3 tokens per step at 1.3x a plain
  // step's cost) stays on, so that test does not pass for a planner that always says no.
  PlannerOptions o;
  o.probe_steps = 4;
  TreePlanner p(Curve({{1, 10e-3}, {64, 20e-3}}), Curve({{1, 1e-3}, {64, 2e-3}}), o);
  TreePlanner::StepCost spec;
  spec.draft_s = 2e-3;
  spec.verify_s = 10e-3;
  const std::vector<int32_t> accepted = {1, 2};
  int on = 0;
  for (int step = 0; step < 40; ++step) {
    if (p.Speculate()) {
      ++on;
      p.Observe(Chain(3), {}, accepted, spec);
    }
  }
  EXPECT_EQ(on, 40);
}

TEST(TreePlannerTest, UnderLoadATreeIsChargedTheTimeItCostsTheOtherSessions) {
  // Rows cost 3 ms each past the first. Alone, 3 tokens in 20 ms beat 1 in 10 ms. In a pass with
  // 7 other sessions (7 rows) the same tree takes 41 ms against a plain step's 31 ms, which
  // alone would still pay, but it also costs the 7 others 9 ms each: 3 tokens per 104 ms
  // against 1 per 31 ms, so speculation turns off.
  PlannerOptions o;
  o.probe_steps = 4;
  const CostCurve verify = Curve({{1, 10e-3}, {64, 199e-3}});
  const std::vector<int32_t> accepted = {1, 2};
  auto on_steps = [&](int sessions) {
    TreePlanner p(verify, Curve({{1, 1e-4}, {64, 2e-4}}), o);
    TreePlanner::StepCost spec, plain;
    spec.draft_s = 1e-3;
    spec.pass_sequences = plain.pass_sequences = sessions;
    spec.pass_rows = sessions - 1 + 4;
    plain.pass_rows = sessions;
    spec.verify_s = verify.Seconds(spec.pass_rows);
    plain.verify_s = verify.Seconds(plain.pass_rows);
    int on = 0;
    for (int step = 0; step < 40; ++step) {
      if (p.Speculate()) {
        ++on;
        p.Observe(Chain(3), {}, accepted, spec);
      } else {
        p.Observe(DraftTree{{0}, {-1}}, {}, {}, plain);
      }
    }
    return on;
  };
  EXPECT_EQ(on_steps(1), 40);
  EXPECT_LT(on_steps(8), 10);
}

TEST(AutoTreeTest, DraftIsRefusedAndOptionsChecked) {
  testing::TinyConfig c;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  auto head = testing::MakeRandomEagleHead(**target, 3);
  ASSERT_TRUE(head.ok());
  EagleDraftModel d(head->get(), 64);
  ASSERT_TRUE(d.Commit(std::vector<float>(64, 0.1f), std::vector<int32_t>{5}).ok());
  TreeOptions to;
  to.mode = TreeMode::kAuto;
  EXPECT_EQ(d.Draft(5, to).status().code(), absl::StatusCode::kInvalidArgument);
  to.planner.max_depth = 0;
  EXPECT_FALSE(ValidateTreeOptions(to).ok());
  EXPECT_EQ(*ParseTreeMode("auto"), TreeMode::kAuto);
  EXPECT_FALSE(ParseTreeMode("bushy").ok());
}

}  // namespace
}  // namespace eagle
