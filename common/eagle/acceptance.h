// Verification of a draft tree against the target's logits at every node.
//
// Greedy: the longest path whose tokens match the target's argmax at each node; the next token is
// the argmax where the path stops.
//
// Sampled (temperature > 0): at each node on the path, the target's token is drawn exactly as
// vanilla sampling draws it (SampleToken over the processed distribution p: temperature, top-k,
// top-p; one Uniform() from the session's stream). A child whose token equals that draw is
// accepted and the walk goes on from it; otherwise the draw is the next token. Every emitted
// token is therefore the draw vanilla decoding makes at that position from the same stream, so
// a seeded run's output equals the vanilla seeded output whatever tree was drafted (its shape may
// follow load and timing under --tree auto). For deterministic (top-k) drafts this is as
// efficient as recursive rejection sampling: the chance that some child x_1..x_k is accepted is
// sum_i p(x_i) under both rules (rejection sampling accepts x_1 with p(x_1), then x_2 with
// p(x_2) / (1 - p(x_1)) from the renormalised residual, and so on).
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
// The same from the argmax of each node's logits (argmax [tree.size()]), as a forward pass with
// ForwardRequest::argmax_only gives them.
Acceptance AcceptGreedyIds(const DraftTree& tree, const int32_t* argmax);
Acceptance AcceptSampled(const DraftTree& tree, const float* logits, int vocab,
                         const SamplingParams& params, Rng& rng);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_ACCEPTANCE_H_
