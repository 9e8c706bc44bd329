// Verification of a draft tree against the target's logits at every node: greedy (longest path
// that matches the target's argmax) and lossless sampling for deterministic (top-k) drafts: at a
// node with target distribution p, children are tried in order, each accepted with probability
// p(x) given the earlier ones were rejected (p(x) is zeroed and p renormalised on rejection); the
// next token comes from the residual p, or from the unmodified p at a node with no children.
// The target distribution is the one vanilla sampling uses (temperature, top-k, top-p).
#ifndef EAGLE_COMMON_EAGLE_ACCEPTANCE_H_
#define EAGLE_COMMON_EAGLE_ACCEPTANCE_H_

#include <cstdint>
#include <vector>

#include "common/eagle/draft_tree.h"
#include "common/sampling.h"

namespace eagle {

struct Acceptance {
  std::vector<int32_t> path;  // accepted node indices, starting with the root (0)
  int32_t next_token = -1;    // the bonus (whole path accepted) or correction token
};

// logits: [tree.size(), vocab] f32, row i = the target's logits at node i.
Acceptance AcceptGreedy(const DraftTree& tree, const float* logits, int vocab);
Acceptance AcceptSampled(const DraftTree& tree, const float* logits, int vocab,
                         const SamplingParams& params, Rng& rng);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_ACCEPTANCE_H_
