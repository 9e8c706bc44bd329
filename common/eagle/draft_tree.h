// Draft token trees: the root (the last sampled token, not yet in the target's KV cache) and draft
// nodes, each with a parent. Nodes are in topological order (a parent before its children) and
// siblings in the order acceptance tries them (draft rank).
#ifndef EAGLE_COMMON_EAGLE_DRAFT_TREE_H_
#define EAGLE_COMMON_EAGLE_DRAFT_TREE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace eagle {

struct DraftTree {
  std::vector<int32_t> tokens;   // [T] token ids; tokens[0] is the root
  std::vector<int32_t> parents;  // [T] parent index; parents[0] = -1, else parents[i] < i

  int size() const { return static_cast<int>(tokens.size()); }
  // Depth of each node (root 0).
  std::vector<int32_t> Depths() const;
  // Children of each node, in index order.
  std::vector<std::vector<int32_t>> Children() const;
  // Root-to-leaf paths (node indices), leaves in index order.
  std::vector<std::vector<int32_t>> Paths() const;
  // [T*T] row-major: mask[i*T + j] = 1 iff j is i or an ancestor of i.
  std::vector<uint8_t> AttentionMask() const;
  // Checks structure and token range; a precise error otherwise.
  absl::Status Validate(int vocab_size, int max_nodes) const;
  // The tree without the nodes deeper than max_depth (near the end of the context).
  DraftTree TrimToDepth(int64_t max_depth) const;
};

// A static tree shape (EAGLE-1): each path lists child ranks from the root, e.g. {0, 1} is the
// root's top-1 child's top-2 child. Paths of length n need their length-(n-1) prefix present.
using TreeChoices = std::vector<std::vector<int>>;

// EAGLE-1's default tree, mc_sim_7b_63: 25 draft nodes, depth 5, ranks up to 3.
const TreeChoices& McSim7b63();

// Parses "[[0],[1],[0,0]]"-style text.
absl::StatusOr<TreeChoices> ParseTreeChoices(const std::string& text);

// The static tree shape as parents over nodes sorted by (length, lexicographic), with the rank
// of each node among its parent's candidates. Index 0 is the root (rank -1).
struct StaticShape {
  std::vector<int32_t> parents;
  std::vector<int32_t> ranks;
  int max_rank = 0;  // largest rank + 1: how many candidates each expanded node needs
  int depth = 0;
};
absl::StatusOr<StaticShape> BuildStaticShape(const TreeChoices& choices);

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_DRAFT_TREE_H_
