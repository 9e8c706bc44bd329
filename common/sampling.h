// Token sampling: greedy, temperature, top-k, top-p; seeded and reproducible.
//
// The processed distribution (temperature, then top-k, then top-p, renormalised) is exposed on
// its own so that speculative acceptance can use exactly the distribution vanilla sampling uses.
#ifndef EAGLE_COMMON_SAMPLING_H_
#define EAGLE_COMMON_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace eagle {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no limit
  float top_p = 1.0f;        // 1 = no limit
  uint64_t seed = 0;
  bool greedy() const { return temperature <= 0.0f; }
};

absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab_size);

// Index of the largest logit; the lowest index wins ties.
int32_t Argmax(const float* logits, int n);

// The distribution sampling draws from, with probabilities that sum to 1. With top-k or top-p the
// candidates are sorted by probability (descending, ties by id); without, ids[0] is the argmax.
struct Distribution {
  std::vector<int32_t> ids;
  std::vector<float> probs;
};
Distribution ProcessLogits(const float* logits, int n, const SamplingParams& p);

// SplitMix64-seeded xoshiro256** generator: identical streams on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  double Uniform();  // [0, 1)
 private:
  uint64_t s_[4];
};

// One draw from d, the way vanilla sampling makes it: a lone candidate is returned without
// consuming the stream; otherwise one Uniform() u picks the first id whose cumulative probability
// (in d's order) exceeds u.
int32_t SampleToken(const Distribution& d, Rng& rng);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  int32_t Sample(const float* logits, int n);
  // Draws from an explicit distribution.
  int32_t SampleFrom(const Distribution& d);
  Rng& rng() { return rng_; }
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  Rng rng_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_SAMPLING_H_
