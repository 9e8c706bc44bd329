#include "common/sampling.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "common/generate.h"
#include "gtest/gtest.h"

namespace eagle {
namespace {

TEST(SamplingTest, GreedyTakesLowestIdOnTies) {
  const float l[5] = {1, 3, 3, 2, -1};
  EXPECT_EQ(Argmax(l, 5), 1);
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.Sample(l, 5), 1);
}

TEST(SamplingTest, TopKTopPAndTemperature) {
  const float l[6] = {0, 1, 2, 3, 4, 5};
  SamplingParams p;
  p.temperature = 1;
  p.top_k = 3;
  auto d = ProcessLogits(l, 6, p);
  ASSERT_EQ(d.ids, (std::vector<int32_t>{5, 4, 3}));
  const double z = std::exp(0) + std::exp(-1) + std::exp(-2);
  EXPECT_NEAR(d.probs[0], 1 / z, 1e-6);
  p.top_k = 0;
  p.top_p = 0.7f;  // softmax of 0..5: 0.636, 0.234, ... -> {5, 4}
  d = ProcessLogits(l, 6, p);
  EXPECT_EQ(d.ids, (std::vector<int32_t>{5, 4}));
  EXPECT_NEAR(d.probs[0] + d.probs[1], 1.0, 1e-6);
  p.top_p = 1;
  p.temperature = 0.5f;
  d = ProcessLogits(l, 6, p);
  double sum = 0;
  for (float x : d.probs) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

// Top-p over a whole vocabulary against a full sort: peaked, moderate and flat logits, so the
// selection takes one round, several, and all of the vocabulary.
TEST(SamplingTest, TopPMatchesAFullSortOnALargeVocabulary) {
  const int n = 49152;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float spread : {8.0f, 2.0f, 0.0f}) {
    std::vector<float> l(n);
    for (float& x : l) x = spread * normal(rng);
    for (float top_p : {0.5f, 0.95f}) {
      SamplingParams p;
      p.temperature = 0.7f;
      p.top_p = top_p;
      p.top_k = spread == 2.0f ? n : 0;  // top_k = n is no truncation by rank
      const Distribution d = ProcessLogits(l.data(), n, p);
      std::vector<int32_t> idx(n);
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(),
                [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
      const double inv_t = 1.0 / p.temperature;
      const double mx = l[idx[0]] * inv_t;
      double total = 0;
      for (float x : l) total += std::exp(x * inv_t - mx);
      double cum = 0;
      size_t keep = 0;
      while (keep < idx.size() && cum < top_p) cum += std::exp(l[idx[keep++]] * inv_t - mx) / total;
      ASSERT_EQ(d.ids.size(), keep) << spread << " " << top_p;
      EXPECT_TRUE(std::equal(d.ids.begin(), d.ids.end(), idx.begin())) << spread << " " << top_p;
      for (size_t i = 0; i < keep; i += keep / 7 + 1) {
        EXPECT_NEAR(d.probs[i], std::exp(l[idx[i]] * inv_t - mx) / (total * cum), 1e-6);
      }
    }
  }
}

TEST(SamplingTest, SeededAndMatchesDistribution) {
  const float l[4] = {0, 1, 2, 0.5f};
  SamplingParams p;
  p.temperature = 1;
  p.seed = 7;
  Sampler a(p), b(p);
  std::map<int, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const int x = a.Sample(l, 4);
    ASSERT_EQ(x, b.Sample(l, 4));
    ++counts[x];
  }
  double z = 0;
  for (float v : l) z += std::exp(v);
  for (int i = 0; i < 4; ++i) {
    const double pi = std::exp(l[i]) / z;
    // 5 standard deviations.
    EXPECT_NEAR(counts[i] / double(n), pi, 5 * std::sqrt(pi * (1 - pi) / n)) << i;
  }
}

TEST(SamplingTest, ValidatesParams) {
  SamplingParams p;
  EXPECT_TRUE(ValidateSamplingParams(p, 10).ok());
  p.temperature = -1;
  EXPECT_FALSE(ValidateSamplingParams(p, 10).ok());
  p.temperature = NAN;
  EXPECT_FALSE(ValidateSamplingParams(p, 10).ok());
  p = {};
  p.top_k = 11;
  EXPECT_FALSE(ValidateSamplingParams(p, 10).ok());
  p = {};
  p.top_p = 0;
  EXPECT_FALSE(ValidateSamplingParams(p, 10).ok());
}

TEST(StopMatcherTest, HoldsBackPartialMatches) {
  StopMatcher m({"END", "\n\n"});
  bool stopped;
  EXPECT_EQ(m.Push("hello E", &stopped), "hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.Push("N", &stopped), "");
  EXPECT_EQ(m.Push("X", &stopped), "ENX");
  EXPECT_EQ(m.Push(" ok\n", &stopped), " ok");
  EXPECT_EQ(m.Push("\nmore", &stopped), "");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace eagle
