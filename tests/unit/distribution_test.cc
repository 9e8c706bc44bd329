// T > 0: speculative sampling keeps the target's distribution. On a tiny model with a 16-token
// vocabulary, the marginal distributions of the first three generated tokens are computed
// exactly from the target (by enumerating prefixes) and compared with 4000 speculative samples
// per setting by a chi-square test (cells with expected count < 5 merged; threshold at
// p = 1e-4 per test, 9 tests, fixed seeds: a false failure has probability ~1e-3 and, with the
// seeds fixed, the outcome is deterministic). A deliberately broken acceptance rule (a rejected
// draft is not removed from the residual) fails the same test.
#include <cmath>
#include <map>

#include "common/eagle/speculative.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

constexpr int kVocab = 16;

// P(next token) after `prefix`, as vanilla sampling would draw it.
std::vector<double> NextDistribution(const LlamaModel& m, const std::vector<int32_t>& prefix,
                                     const SamplingParams& sp) {
  auto cache = m.NewCache(static_cast<int64_t>(prefix.size()));
  ForwardRequest req;
  req.tokens = prefix;
  req.logits = LogitsMode::kLast;
  auto r = m.Forward(*cache, req);
  EXPECT_TRUE(r.ok());
  const Distribution d = ProcessLogits(r->logits.data(), kVocab, sp);
  std::vector<double> p(kVocab, 0.0);
  for (size_t i = 0; i < d.ids.size(); ++i) p[d.ids[i]] = d.probs[i];
  return p;
}

// Exact marginals of the first three generated tokens.
std::vector<std::vector<double>> ExactMarginals(const LlamaModel& m,
                                                const std::vector<int32_t>& prompt,
                                                const SamplingParams& sp) {
  std::vector<std::vector<double>> marg(3, std::vector<double>(kVocab, 0.0));
  const auto p1 = NextDistribution(m, prompt, sp);
  for (int a = 0; a < kVocab; ++a) {
    if (p1[a] == 0) continue;
    marg[0][a] += p1[a];
    auto pa = prompt;
    pa.push_back(a);
    const auto p2 = NextDistribution(m, pa, sp);
    for (int b = 0; b < kVocab; ++b) {
      if (p2[b] == 0) continue;
      marg[1][b] += p1[a] * p2[b];
      auto pb = pa;
      pb.push_back(b);
      const auto p3 = NextDistribution(m, pb, sp);
      for (int c = 0; c < kVocab; ++c) marg[2][c] += p1[a] * p2[b] * p3[c];
    }
  }
  return marg;
}

// Chi-square statistic and degrees of freedom, merging cells with expected count < 5.
std::pair<double, int> ChiSquare(const std::vector<int>& counts, const std::vector<double>& p,
                                 int n) {
  double chi = 0, small_e = 0, small_o = 0;
  int cells = 0;
  for (int i = 0; i < kVocab; ++i) {
    const double e = p[i] * n;
    if (e < 5) {
      small_e += e;
      small_o += counts[i];
      continue;
    }
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++cells;
  }
  if (small_e > 0) {
    chi += (small_o - small_e) * (small_o - small_e) / std::max(small_e, 1e-9);
    ++cells;
  }
  return {chi, cells - 1};
}

// Upper critical value of chi-square at p = 1e-4 (Wilson-Hilferty approximation).
double Critical(int dof) {
  const double z = 3.719;  // standard normal quantile at 1 - 1e-4
  const double k = dof;
  return k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
}

// Counts of the first three tokens over `runs` speculative generations.
std::vector<std::vector<int>> SampleSpeculative(const LlamaModel& m, const EagleHead& head,
                                                const std::vector<int32_t>& prompt,
                                                const SamplingParams& sp, int runs,
                                                const AcceptFn& accept, bool auto_trees = false) {
  std::vector<std::vector<int>> counts(3, std::vector<int>(kVocab, 0));
  for (int r = 0; r < runs; ++r) {
    GenerateOptions o;
    o.max_tokens = 3;
    o.ignore_eos = true;
    o.sampling = sp;
    o.sampling.seed = 1000 + r;
    EagleDraftModel d(&head, 64);
    TreeOptions t;
    t.mode = TreeMode::kDynamic;
    t.depth = 2;
    t.top_k = 3;
    t.total_tokens = 8;
    if (auto_trees) {
      // Costs under which the planner drafts trees of several levels (rows nearly free).
      auto costs = std::make_shared<SpeculationCosts>();
      costs->verify = *CostCurve::FromPoints({{1, 1e-3}, {64, 1.01e-3}});
      costs->draft_level = *CostCurve::FromPoints({{1, 1e-7}, {64, 1e-7}});
      t.mode = TreeMode::kAuto;
      t.costs = std::move(costs);
      t.planner.probe_steps = 0;
    }
    auto g = GenerateSpeculative(m, d, prompt, o, t, nullptr, nullptr, accept);
    EXPECT_TRUE(g.ok());
    for (int i = 0; i < 3; ++i) ++counts[i][g->token_ids[i]];
  }
  return counts;
}

class DistributionTest : public ::testing::TestWithParam<SamplingParams> {
 protected:
  void SetUp() override {
    testing::TinyConfig c;
    c.vocab = kVocab;
    c.seed = 21;
    c.precision = cpu::Precision::kF32;
    auto m = testing::MakeTinyLlama(c);
    ASSERT_TRUE(m.ok());
    model_ = std::move(*m);
    auto h = testing::MakeRandomEagleHead(*model_, 5);
    ASSERT_TRUE(h.ok());
    head_ = std::move(*h);
  }
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<EagleHead> head_;
};

TEST_P(DistributionTest, FirstThreeTokensFollowTheTargetDistribution) {
  const SamplingParams sp = GetParam();
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const auto exact = ExactMarginals(*model_, prompt, sp);
  const int runs = 4000;
  const auto counts = SampleSpeculative(*model_, *head_, prompt, sp, runs, nullptr);
  for (int i = 0; i < 3; ++i) {
    const auto [chi, dof] = ChiSquare(counts[i], exact[i], runs);
    EXPECT_LT(chi, Critical(dof)) << "token " << i + 1 << ": chi2 " << chi << " with " << dof
                                  << " dof";
    std::printf("token %d: chi2 %.1f, %d dof, critical %.1f\n", i + 1, chi, dof, Critical(dof));
  }
}

// Auto trees, whose shape follows the acceptance seen so far, keep the distribution too.
TEST_F(DistributionTest, AutoTreesFollowTheTargetDistribution) {
  const SamplingParams sp{1.0f, 0, 1.0f, 0};
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const auto exact = ExactMarginals(*model_, prompt, sp);
  const int runs = 4000;
  const auto counts = SampleSpeculative(*model_, *head_, prompt, sp, runs, nullptr, true);
  for (int i = 0; i < 3; ++i) {
    const auto [chi, dof] = ChiSquare(counts[i], exact[i], runs);
    EXPECT_LT(chi, Critical(dof)) << "token " << i + 1 << ": chi2 " << chi << " with " << dof
                                  << " dof";
  }
}

// Temperature only; with top-k; with top-p.
INSTANTIATE_TEST_SUITE_P(Sampling, DistributionTest,
                         ::testing::Values(SamplingParams{1.0f, 0, 1.0f, 0},
                                           SamplingParams{0.8f, 5, 1.0f, 0},
                                           SamplingParams{1.3f, 0, 0.8f, 0}));

TEST_F(DistributionTest, BrokenAcceptanceRuleIsCaught) {
  // Broken: a rejected draft keeps its probability mass in the residual.
  AcceptFn broken = [](const DraftTree& tree, const float* logits, int vocab,
                       const SamplingParams& sp, Rng& rng) {
    const auto children = tree.Children();
    Acceptance a;
    a.path.push_back(0);
    int32_t node = 0;
    while (true) {
      const Distribution p = ProcessLogits(logits + node * vocab, vocab, sp);
      int32_t next = -1;
      for (int32_t c : children[node]) {
        const auto it = std::find(p.ids.begin(), p.ids.end(), tree.tokens[c]);
        const double px = it == p.ids.end() ? 0 : p.probs[it - p.ids.begin()];
        if (rng.Uniform() < px) {
          next = c;
          break;
        }
      }
      if (next < 0) {
        // Should sample the residual (rejected drafts removed); samples p instead.
        const double u = rng.Uniform();
        double cum = 0;
        for (size_t i = 0; i < p.ids.size(); ++i) {
          cum += p.probs[i];
          if (u < cum) {
            a.next_token = p.ids[i];
            break;
          }
        }
        return a;
      }
      node = next;
      a.path.push_back(node);
    }
  };
  const SamplingParams sp{1.0f, 0, 1.0f, 0};
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const auto exact = ExactMarginals(*model_, prompt, sp);
  const int runs = 4000;
  const auto counts = SampleSpeculative(*model_, *head_, prompt, sp, runs, broken);
  double worst = 0;
  for (int i = 0; i < 3; ++i) {
    const auto [chi, dof] = ChiSquare(counts[i], exact[i], runs);
    worst = std::max(worst, chi / Critical(dof));
  }
  std::printf("broken rule: worst chi2 / critical = %.1f\n", worst);
  EXPECT_GT(worst, 1.0) << "the broken rule was not detected";
}

}  // namespace
}  // namespace eagle
