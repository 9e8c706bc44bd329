#include "common/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/cpu/kernels.h"

namespace eagle {

absl::Status ValidateSamplingParams(const SamplingParams& p, int vocab_size) {
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature ", p.temperature, " must be in [0, 100]"));
  }
  if (p.top_k < 0 || p.top_k > vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k ", p.top_k, " must be in [0, ", vocab_size, "]"));
  }
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) {
    return absl::InvalidArgumentError(absl::StrCat("top_p ", p.top_p, " must be in (0, 1]"));
  }
  return absl::OkStatus();
}

int32_t Argmax(const float* logits, int n) { return cpu::Argmax(logits, n); }

Distribution ProcessLogits(const float* logits, int n, const SamplingParams& p) {
  Distribution d;
  if (p.greedy()) {
    d.ids = {Argmax(logits, n)};
    d.probs = {1.0f};
    return d;
  }
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const double inv_t = 1.0 / p.temperature;
  std::vector<double> e;
  int keep = n;
  if ((p.top_k == 0 || p.top_k >= n) && p.top_p < 1.0f) {
    // Top-p alone (or with top_k = n): the shortest prefix of the tokens in `better` order whose
    // mass reaches top_p, found without sorting the whole vocabulary. The total mass is summed in
    // id order; then the best `sorted` tokens are selected (nth_element) and sorted, 8x more each
    // time until their mass reaches top_p (one round for a peaked distribution; a full sort at
    // worst).
    const double mx = logits[Argmax(logits, n)] * inv_t;
    double total = 0;
    for (int i = 0; i < n; ++i) total += std::exp(logits[i] * inv_t - mx);
    double cum = 0;
    int sorted = 0;
    keep = -1;
    while (keep < 0 && sorted < n) {
      const int next = std::min(n, std::max(256, sorted * 8));
      if (next < n) std::nth_element(idx.begin() + sorted, idx.begin() + next, idx.end(), better);
      std::sort(idx.begin() + sorted, idx.begin() + next, better);
      for (int i = sorted; i < next; ++i) {
        e.push_back(std::exp(logits[idx[i]] * inv_t - mx));
        cum += e.back() / total;
        if (cum >= p.top_p) {
          keep = i + 1;
          break;
        }
      }
      sorted = next;
    }
    if (keep < 0) keep = n;
    e.resize(keep);
  } else {
    if (p.top_k > 0 && p.top_k < n) {
      keep = p.top_k;
      std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), better);
    } else {
      // No truncation by rank: keep id order; only the maximum is needed for a stable softmax.
      std::swap(idx[0], idx[Argmax(logits, n)]);
    }
    const double mx = logits[idx[0]] * inv_t;
    e.resize(keep);
    double sum = 0;
    for (int i = 0; i < keep; ++i) {
      e[i] = std::exp(logits[idx[i]] * inv_t - mx);
      sum += e[i];
    }
    if (p.top_p < 1.0f) {  // top-k, then top-p within it
      double cum = 0;
      for (int i = 0; i < keep; ++i) {
        cum += e[i] / sum;
        if (cum >= p.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
  }
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += e[i];
  d.ids.assign(idx.begin(), idx.begin() + keep);
  d.probs.resize(keep);
  for (int i = 0; i < keep; ++i) d.probs[i] = static_cast<float>(e[i] / sum);
  return d;
}

namespace {
uint64_t SplitMix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = SplitMix(seed);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

int32_t SampleToken(const Distribution& d, Rng& rng) {
  if (d.ids.size() == 1) return d.ids[0];
  const double u = rng.Uniform();
  double cum = 0;
  int32_t last = d.ids[0];
  for (size_t i = 0; i < d.ids.size(); ++i) {
    if (d.probs[i] <= 0) continue;
    last = d.ids[i];  // the last token with mass, should rounding leave u >= sum
    cum += d.probs[i];
    if (u < cum) return d.ids[i];
  }
  return last;
}

int32_t Sampler::SampleFrom(const Distribution& d) { return SampleToken(d, rng_); }

int32_t Sampler::Sample(const float* logits, int n) {
  if (params_.greedy()) return Argmax(logits, n);
  return SampleFrom(ProcessLogits(logits, n, params_));
}

}  // namespace eagle
