// Drafting: the interface the speculative loop talks to, and its EAGLE implementation.
//
// The pairing rule: the draft consumes (target feature of position t, token t+1). Commit() gives
// it the target features of newly committed positions and the tokens that follow them; Draft()
// then proposes a tree rooted at the last of those tokens (the next token, already sampled but
// not yet seen by the target).
#ifndef EAGLE_COMMON_EAGLE_DRAFT_MODEL_H_
#define EAGLE_COMMON_EAGLE_DRAFT_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/draft_tree.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/tree_planner.h"

namespace eagle {

// kAuto: each step's tree sized from measured costs and the session's acceptance (tree_planner.h).
enum class TreeMode { kChain, kStatic, kDynamic, kAuto };
// "chain", "static", "dynamic", "auto".
absl::StatusOr<TreeMode> ParseTreeMode(const std::string& name);
const char* TreeModeName(TreeMode mode);

// The fixed modes' defaults (chain of 3, dynamic top-k 4 of 12 tokens) are the fastest fixed
// settings measured on small CPUs (README, "Speculative decoding").
struct TreeOptions {
  TreeMode mode = TreeMode::kChain;
  int depth = 3;           // chain length; dynamic: expansion levels after the first
  int top_k = 4;           // dynamic: branching per level
  int total_tokens = 12;   // dynamic: tree size including the root
  TreeChoices choices;     // static: empty = mc_sim_7b_63
  PlannerOptions planner;  // auto: the planner's bounds
  // auto: measured costs (either curve empty, or null: measured when a generation starts).
  std::shared_ptr<const SpeculationCosts> costs;
};
absl::Status ValidateTreeOptions(const TreeOptions& o);

class DraftModel {
 public:
  virtual ~DraftModel() = default;
  // Which target features Commit() takes: empty = the final-norm hidden state (EAGLE-1/2);
  // otherwise the inputs of these target layers, concatenated (EAGLE-3).
  virtual std::vector<int> feature_layers() const { return {}; }
  // Appends committed positions: features [n, width] of target positions t..t+n-1 and the tokens
  // at t+1..t+n.
  virtual absl::Status Commit(std::span<const float> features,
                              std::span<const int32_t> next_tokens) = 0;
  // Proposes a tree rooted at `root`, which must be the last committed next token. kAuto is
  // not a shape: the generation loops plan it (StepDrafter) and ask for static trees.
  virtual absl::StatusOr<DraftTree> Draft(int32_t root, const TreeOptions& options) = 0;
  // An auto draft: its levels and size decided by `policy` (tree_planner.h), at most
  // `max_depth` deep. `probs` gets each node's draft probability (the root's is 1). This default
  // drafts a chain of up to 3 and leaves `probs` empty (no calibration).
  virtual absl::StatusOr<DraftTree> DraftPlanned(int32_t root, DraftPolicy& policy, int max_depth,
                                                 std::vector<float>* probs);
};

// EAGLE-1/2 drafting with an EagleHead: chain, static (EAGLE-1) and dynamic (EAGLE-2) trees.
class EagleDraftModel final : public DraftModel {
 public:
  EagleDraftModel(const EagleHead* head, int64_t capacity);
  std::vector<int> feature_layers() const override { return head_->feature_layers(); }
  absl::Status Commit(std::span<const float> features,
                      std::span<const int32_t> next_tokens) override;
  absl::StatusOr<DraftTree> Draft(int32_t root, const TreeOptions& options) override;
  // EAGLE-2's expansion, level by level as `policy` decides, then its best nodes.
  absl::StatusOr<DraftTree> DraftPlanned(int32_t root, DraftPolicy& policy, int max_depth,
                                         std::vector<float>* probs) override;
  int64_t committed() const { return cache_->length(); }

 private:
  struct Node {
    int32_t token;
    int32_t parent;     // index in the tree (0 = root)
    int32_t slot = -1;  // draft KV slot once forwarded
    float score = 0;    // cumulative log-probability (dynamic)
  };
  // Forwards `nodes` (all at one depth), whose parents' output features are given, returning
  // their output features [n, H] and logits [n, V].
  absl::Status ForwardLevel(std::vector<Node>& tree, std::span<const int32_t> nodes,
                            std::span<const float> parent_features, int depth,
                            std::vector<float>* features, std::vector<float>* logits);
  absl::StatusOr<DraftTree> DraftStatic(int32_t root, const TreeChoices& choices);
  absl::StatusOr<DraftTree> DraftDynamic(int32_t root, const TreeOptions& o);

  const EagleHead* head_;
  std::unique_ptr<CpuKvCache> cache_;
  int64_t committed_len_ = 0;  // draft KV length before the current tree's nodes
  int32_t last_token_ = -1;
  std::vector<float> last_feature_;  // [H] draft output at the last committed position
  std::vector<float> last_logits_;   // [V] its logits: candidates for the root's children
};

}  // namespace eagle

#endif  // EAGLE_COMMON_EAGLE_DRAFT_MODEL_H_
