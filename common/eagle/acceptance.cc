#include "common/eagle/acceptance.h"

namespace eagle {

namespace {
// The greedy walk: from the root, follow the child whose token is the target's choice at the
// node (`want(node)`), until no child is; that choice is then the next token.
template <typename Want>
Acceptance WalkGreedy(const DraftTree& tree, Want want_at) {
  const auto children = tree.Children();
  Acceptance a;
  int32_t node = 0;
  a.path.push_back(0);
  while (true) {
    const int32_t want = want_at(node);
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
}  // namespace

Acceptance AcceptGreedy(const DraftTree& tree, const float* logits, int vocab) {
  return WalkGreedy(tree, [&](int32_t node) {
    return Argmax(logits + static_cast<int64_t>(node) * vocab, vocab);
  });
}

Acceptance AcceptGreedyIds(const DraftTree& tree, const int32_t* argmax) {
  return WalkGreedy(tree, [&](int32_t node) { return argmax[node]; });
}

Acceptance AcceptSampled(const DraftTree& tree, const float* logits, int vocab,
                         const SamplingParams& params, Rng& rng) {
  if (params.greedy()) return AcceptGreedy(tree, logits, vocab);
  const auto children = tree.Children();
  Acceptance a;
  int32_t node = 0;
  a.path.push_back(0);
  while (true) {
    const Distribution p =
        ProcessLogits(logits + static_cast<int64_t>(node) * vocab, vocab, params);
    const int32_t want = SampleToken(p, rng);
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

}  // namespace eagle
