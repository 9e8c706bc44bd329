#include "common/eagle/acceptance.h"

#include <algorithm>

namespace eagle {

Acceptance AcceptGreedy(const DraftTree& tree, const float* logits, int vocab) {
  const auto children = tree.Children();
  Acceptance a;
  int32_t node = 0;
  a.path.push_back(0);
  while (true) {
    const int32_t want = Argmax(logits + static_cast<int64_t>(node) * vocab, vocab);
    int32_t next = -1;
    for (int32_t c : children[node]) {
      if (tree.tokens[c] == want) {
        next = c;
        break;
      }
    }
    if (next < 0) {
      a.next_token = want;
      return a;
    }
    node = next;
    a.path.push_back(node);
  }
}

Acceptance AcceptSampled(const DraftTree& tree, const float* logits, int vocab,
                         const SamplingParams& params, Rng& rng) {
  if (params.greedy()) return AcceptGreedy(tree, logits, vocab);
  const auto children = tree.Children();
  Acceptance a;
  int32_t node = 0;
  a.path.push_back(0);
  while (true) {
    Distribution p = ProcessLogits(logits + static_cast<int64_t>(node) * vocab, vocab, params);
    if (children[node].empty()) {
      // Nothing drafted here: sample from the unmodified target distribution.
      const double u = rng.Uniform();
      double cum = 0;
      a.next_token = -1;
      for (size_t i = 0; i < p.ids.size(); ++i) {
        if (p.probs[i] <= 0) continue;
        a.next_token = p.ids[i];  // the last token with mass, should rounding leave u >= sum
        cum += p.probs[i];
        if (u < cum) break;
      }
      return a;
    }
    int32_t accepted = -1;
    for (int32_t c : children[node]) {
      const auto it = std::find(p.ids.begin(), p.ids.end(), tree.tokens[c]);
      const double px = it == p.ids.end() ? 0.0 : p.probs[it - p.ids.begin()];
      if (rng.Uniform() < px) {
        accepted = c;
        break;
      }
      if (px > 0) {
        // Rejected: zero it and renormalise (the residual max(0, p - delta_x), normalised).
        p.probs[it - p.ids.begin()] = 0.0f;
        double sum = 0;
        for (float q : p.probs) sum += q;
        if (sum <= 0) {
          // The rejected child held all the mass (possible only through rounding): take it.
          accepted = c;
          break;
        }
        for (float& q : p.probs) q = static_cast<float>(q / sum);
      }
    }
    if (accepted < 0) {
      // Every child rejected: sample the residual.
      const double u = rng.Uniform();
      double cum = 0;
      a.next_token = -1;
      for (size_t i = 0; i < p.ids.size(); ++i) {
        if (p.probs[i] <= 0) continue;
        a.next_token = p.ids[i];
        cum += p.probs[i];
        if (u < cum) break;
      }
      return a;
    }
    node = accepted;
    a.path.push_back(node);
  }
}

}  // namespace eagle
