#include "common/sampling.h"

#include <cmath>
#include <map>

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
