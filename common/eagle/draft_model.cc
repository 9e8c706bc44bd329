#include "common/eagle/draft_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/cpu/kernels.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

// Indices of the k largest values (ties: lower index first), in descending order.
std::vector<int32_t> TopK(const float* x, int n, int k) {
  // One pass keeping a sorted array of the best k (k is small: tree branching).
  k = std::min(k, n);
  std::vector<int32_t> best;
  best.reserve(k + 1);
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  for (int32_t i = 0; i < n; ++i) {
    if (static_cast<int>(best.size()) == k && !better(i, best.back())) continue;
    auto pos = std::upper_bound(best.begin(), best.end(), i, better);
    best.insert(pos, i);
    if (static_cast<int>(best.size()) > k) best.pop_back();
  }
  return best;
}

// log-softmax values of the given ids.
std::vector<float> LogProbs(const float* x, int n, std::span<const int32_t> ids) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  thread_local std::vector<float> tmp;
  tmp.assign(x, x + n);
  const float sum = cpu::ExpShiftSum(tmp.data(), n, mx);
  const float lse = mx + std::log(sum);
  std::vector<float> out;
  for (int32_t id : ids) out.push_back(x[id] - lse);
  return out;
}

}  // namespace

absl::StatusOr<TreeMode> ParseTreeMode(const std::string& name) {
  for (TreeMode m : {TreeMode::kChain, TreeMode::kStatic, TreeMode::kDynamic, TreeMode::kAuto}) {
    if (name == TreeModeName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tree mode '", name, "': must be auto, chain, static or dynamic"));
}

const char* TreeModeName(TreeMode mode) {
  switch (mode) {
    case TreeMode::kChain:
      return "chain";
    case TreeMode::kStatic:
      return "static";
    case TreeMode::kDynamic:
      return "dynamic";
    case TreeMode::kAuto:
      return "auto";
  }
  return "?";
}

absl::Status ValidateTreeOptions(const TreeOptions& o) {
  if (o.depth < 1 || o.depth > 32)
    return absl::InvalidArgumentError("tree depth must be in [1, 32]");
  if (o.mode == TreeMode::kDynamic) {
    if (o.top_k < 1 || o.top_k > 32) return absl::InvalidArgumentError("top_k must be in [1, 32]");
    if (o.total_tokens < 2 || o.total_tokens > 256) {
      return absl::InvalidArgumentError("total_tokens must be in [2, 256]");
    }
  }
  if (o.mode == TreeMode::kStatic && !o.choices.empty()) {
    RETURN_IF_ERROR(BuildStaticShape(o.choices).status());
  }
  if (o.mode == TreeMode::kAuto) {
    const PlannerOptions& p = o.planner;
    if (p.max_nodes < 0 || p.max_nodes > 256) {
      return absl::InvalidArgumentError("auto: max_nodes must be in [0, 256]");
    }
    if (p.max_depth < 1 || p.max_depth > 32 || p.branching < 1 || p.branching > 32) {
      return absl::InvalidArgumentError("auto: max_depth and branching must be in [1, 32]");
    }
  }
  return absl::OkStatus();
}

EagleDraftModel::EagleDraftModel(const EagleHead* head, int64_t capacity)
    : head_(head), cache_(head->NewCache(capacity)) {}

absl::Status EagleDraftModel::Commit(std::span<const float> features,
                                     std::span<const int32_t> next_tokens) {
  const int64_t hs = head_->config().hidden_size, n = static_cast<int64_t>(next_tokens.size());
  const int64_t fw = head_->target_feature_width();
  if (n == 0) return absl::OkStatus();
  if (static_cast<int64_t>(features.size()) != n * fw) {
    return absl::InvalidArgumentError("Commit: features and tokens disagree");
  }
  const int64_t base = cache_->length();
  std::vector<int64_t> positions(n), n_prefix(n);
  for (int64_t i = 0; i < n; ++i) {
    positions[i] = base + i;
    n_prefix[i] = base + i + 1;  // causal: itself and everything before
  }
  std::vector<float> out(n * hs);
  std::vector<float> logits(head_->draft_vocab_size());
  // Logits are needed only for the last position.
  if (n > 1) {
    HeadBatch head_part{next_tokens.subspan(0, n - 1),
                        features.subspan(0, (n - 1) * fw),
                        true,
                        std::span<const int64_t>(positions).subspan(0, n - 1),
                        std::span<const int64_t>(n_prefix).subspan(0, n - 1),
                        {}};
    RETURN_IF_ERROR(head_->Forward(*cache_, head_part, out.data(), nullptr));
  }
  HeadBatch last{next_tokens.subspan(n - 1),
                 features.subspan((n - 1) * fw),
                 true,
                 std::span<const int64_t>(positions).subspan(n - 1),
                 std::span<const int64_t>(n_prefix).subspan(n - 1),
                 {}};
  last_feature_.resize(hs);
  RETURN_IF_ERROR(head_->Forward(*cache_, last, last_feature_.data(), logits.data()));
  last_logits_ = std::move(logits);
  last_token_ = next_tokens.back();
  return absl::OkStatus();
}

absl::Status EagleDraftModel::ForwardLevel(std::vector<Node>& tree, std::span<const int32_t> nodes,
                                           std::span<const float> parent_features, int depth,
                                           std::vector<float>* features,
                                           std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(nodes.size());
  const int64_t stable = committed_len_;
  const int64_t base = cache_->length();
  std::vector<int32_t> tokens(n);
  std::vector<int64_t> positions(n, stable + depth - 1), n_prefix(n, stable);
  std::vector<std::vector<int32_t>> extra(n);
  for (int64_t i = 0; i < n; ++i) {
    const Node& node = tree[nodes[i]];
    tokens[i] = node.token;
    // Ancestors' slots (depth >= 1 nodes only: the root is the last committed position).
    std::vector<int32_t> chain;
    for (int32_t p = node.parent; p > 0; p = tree[p].parent) chain.push_back(tree[p].slot);
    std::reverse(chain.begin(), chain.end());
    chain.push_back(static_cast<int32_t>(base + i));
    extra[i] = std::move(chain);
    tree[nodes[i]].slot = static_cast<int32_t>(base + i);
  }
  features->resize(n * head_->config().hidden_size);
  logits->resize(n * head_->draft_vocab_size());
  HeadBatch b{tokens, parent_features, false, positions, n_prefix, extra};
  return head_->Forward(*cache_, b, features->data(), logits->data());
}

absl::StatusOr<DraftTree> EagleDraftModel::Draft(int32_t root, const TreeOptions& options) {
  RETURN_IF_ERROR(ValidateTreeOptions(options));
  if (root != last_token_) {
    return absl::FailedPreconditionError(
        absl::StrCat("Draft: root ", root, " is not the last committed token ", last_token_));
  }
  committed_len_ = cache_->length();
  // A depth-d node sits at position committed + d - 1: near the end of the context, draft less.
  const int room = static_cast<int>(std::min<int64_t>(64, head_->max_position() - committed_len_));
  if (room <= 0) return DraftTree{{root}, {-1}};
  absl::StatusOr<DraftTree> tree;
  switch (options.mode) {
    case TreeMode::kChain: {
      TreeChoices chain;
      for (int d = 1; d <= std::min(options.depth, room); ++d)
        chain.push_back(std::vector<int>(d, 0));
      tree = DraftStatic(root, chain);
      break;
    }
    case TreeMode::kStatic: {
      TreeChoices choices;
      for (const auto& c : options.choices.empty() ? McSim7b63() : options.choices) {
        if (static_cast<int>(c.size()) <= room) choices.push_back(c);
      }
      tree = DraftStatic(root, choices);
      break;
    }
    case TreeMode::kAuto:
      return absl::InvalidArgumentError("Draft: auto trees are planned by StepDrafter");
    case TreeMode::kDynamic: {
      TreeOptions o = options;
      // The first level comes from the committed position; expansions add one level each.
      o.depth = std::min(options.depth, room - 1);
      tree = DraftDynamic(root, o);
      break;
    }
  }
  // Tree KV is never kept: the next Commit recomputes accepted positions from target features.
  RETURN_IF_ERROR(cache_->Truncate(committed_len_));
  return tree;
}

absl::StatusOr<DraftTree> DraftModel::DraftPlanned(int32_t root, DraftPolicy& /*policy*/,
                                                   int max_depth, std::vector<float>* probs) {
  probs->clear();
  TreeOptions o;
  o.depth = std::clamp(max_depth, 1, 3);
  ASSIGN_OR_RETURN(DraftTree tree, Draft(root, o));
  return tree.TrimToDepth(max_depth);
}

absl::StatusOr<DraftTree> EagleDraftModel::DraftPlanned(int32_t root, DraftPolicy& policy,
                                                        int max_depth, std::vector<float>* probs) {
  if (root != last_token_) {
    return absl::FailedPreconditionError(
        absl::StrCat("Draft: root ", root, " is not the last committed token ", last_token_));
  }
  committed_len_ = cache_->length();
  const int room =
      static_cast<int>(std::min<int64_t>({64, max_depth, head_->max_position() - committed_len_}));
  probs->assign(1, 1.0f);
  if (room <= 0) return DraftTree{{root}, {-1}};
  const int64_t hs = head_->config().hidden_size;
  const int vocab = head_->draft_vocab_size();
  const int k = std::min(policy.branching(), vocab);
  // The pool of drafted nodes; index 0 is the root.
  std::vector<Node> pool{{root, -1}};
  std::vector<double> chance{1.0};
  std::vector<int> depth{0};
  std::vector<std::vector<float>> feats{last_feature_};
  auto add_children = [&](int32_t parent, const float* logits) {
    const auto top = TopK(logits, vocab, k);
    const auto lp = LogProbs(logits, vocab, top);
    for (int j = 0; j < static_cast<int>(top.size()); ++j) {
      const float p = std::exp(lp[j]);
      pool.push_back({head_->ToTarget(top[j]), parent});
      chance.push_back(chance[parent] * policy.Chance(p));
      depth.push_back(depth[parent] + 1);
      probs->push_back(p);
    }
  };
  add_children(0, last_logits_.data());
  // Indices of the pool by descending chance (ties: lower index, so a parent precedes its child).
  auto ranked = [&](int at_depth) {
    std::vector<int32_t> idx;
    for (int32_t i = 1; i < static_cast<int32_t>(pool.size()); ++i) {
      if (at_depth < 0 || depth[i] == at_depth) idx.push_back(i);
    }
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int32_t a, int32_t b) { return chance[a] > chance[b]; });
    return idx;
  };
  auto chances_of = [&](const std::vector<int32_t>& idx) {
    std::vector<double> c;
    for (int32_t i : idx) c.push_back(chance[i]);
    return c;
  };
  std::vector<int> level_rows;
  for (int d = 1; d < room; ++d) {
    const std::vector<int32_t> deepest = ranked(d);
    const int e = std::min<int>(
        policy.Expand(chances_of(ranked(-1)), chances_of(deepest), level_rows), deepest.size());
    if (e <= 0) break;
    const std::vector<int32_t> frontier(deepest.begin(), deepest.begin() + e);
    std::vector<float> pf;
    for (int32_t i : frontier) {
      const auto& f = feats[pool[i].parent];
      pf.insert(pf.end(), f.begin(), f.end());
    }
    std::vector<float> out_f, out_l;
    RETURN_IF_ERROR(ForwardLevel(pool, frontier, pf, d, &out_f, &out_l));
    level_rows.push_back(e);
    feats.resize(pool.size());
    for (int j = 0; j < e; ++j) {
      feats[frontier[j]].assign(out_f.begin() + j * hs, out_f.begin() + (j + 1) * hs);
      add_children(frontier[j], out_l.data() + j * vocab);
    }
  }
  RETURN_IF_ERROR(cache_->Truncate(committed_len_));
  // The best n nodes, in pool order (parents first).
  std::vector<int32_t> best = ranked(-1);
  const int n =
      std::clamp(policy.Select(chances_of(best), level_rows), 0, static_cast<int>(best.size()));
  best.resize(n);
  std::sort(best.begin(), best.end());
  std::vector<int32_t> new_index(pool.size(), -1);
  new_index[0] = 0;
  DraftTree out{{root}, {-1}};
  std::vector<float> all = std::move(*probs);
  probs->assign(1, 1.0f);
  for (int32_t i : best) {
    const int32_t parent = new_index[pool[i].parent];
    if (parent < 0) continue;
    new_index[i] = static_cast<int32_t>(out.tokens.size());
    out.tokens.push_back(pool[i].token);
    out.parents.push_back(parent);
    probs->push_back(all[i]);
  }
  return out;
}

absl::StatusOr<DraftTree> EagleDraftModel::DraftStatic(int32_t root, const TreeChoices& choices) {
  ASSIGN_OR_RETURN(StaticShape shape, BuildStaticShape(choices));
  const int64_t hs = head_->config().hidden_size;
  const int vocab = head_->draft_vocab_size();
  const int t = static_cast<int>(shape.parents.size());
  std::vector<Node> tree(t);
  tree[0] = {root, -1};
  std::vector<int32_t> depth(t, 0);
  std::vector<bool> has_children(t, false);
  for (int i = 1; i < t; ++i) {
    depth[i] = depth[shape.parents[i]] + 1;
    has_children[shape.parents[i]] = true;
    tree[i].parent = shape.parents[i];
  }
  // Candidates of each expanded node: top-max_rank of its logits; its output feature.
  std::vector<std::vector<int32_t>> cands(t);
  std::vector<std::vector<float>> feats(t);
  cands[0] = TopK(last_logits_.data(), vocab, shape.max_rank);
  feats[0] = last_feature_;
  for (int d = 1; d <= shape.depth; ++d) {
    // Assign tokens to depth-d nodes from their parents' candidates.
    std::vector<int32_t> level;
    for (int i = 1; i < t; ++i) {
      if (depth[i] != d) continue;
      const auto& pc = cands[shape.parents[i]];
      if (shape.ranks[i] >= static_cast<int>(pc.size())) {
        return absl::InvalidArgumentError("static tree rank exceeds the vocabulary");
      }
      tree[i].token = head_->ToTarget(pc[shape.ranks[i]]);
      if (has_children[i]) level.push_back(i);
    }
    if (level.empty()) continue;
    std::vector<float> pf;
    for (int32_t i : level) {
      const auto& f = feats[shape.parents[i]];
      pf.insert(pf.end(), f.begin(), f.end());
    }
    std::vector<float> out_f, out_l;
    RETURN_IF_ERROR(ForwardLevel(tree, level, pf, d, &out_f, &out_l));
    for (size_t j = 0; j < level.size(); ++j) {
      cands[level[j]] = TopK(out_l.data() + j * vocab, vocab, shape.max_rank);
      feats[level[j]].assign(out_f.begin() + j * hs, out_f.begin() + (j + 1) * hs);
    }
  }
  DraftTree out;
  for (const Node& n : tree) {
    out.tokens.push_back(n.token);
    out.parents.push_back(n.parent);
  }
  return out;
}

absl::StatusOr<DraftTree> EagleDraftModel::DraftDynamic(int32_t root, const TreeOptions& o) {
  const int64_t hs = head_->config().hidden_size;
  const int vocab = head_->draft_vocab_size();
  const int k = std::min(o.top_k, vocab);
  // The pool: every candidate with its cumulative log-probability; index 0 is the root.
  std::vector<Node> pool;
  pool.push_back({root, -1});
  std::vector<std::vector<float>> feats(1, last_feature_);
  // Depth 1: the root's top-k.
  const auto top = TopK(last_logits_.data(), vocab, k);
  const auto lp = LogProbs(last_logits_.data(), vocab, top);
  std::vector<int32_t> frontier;
  for (int j = 0; j < k; ++j) {
    pool.push_back({head_->ToTarget(top[j]), 0, -1, lp[j]});
    frontier.push_back(static_cast<int32_t>(pool.size() - 1));
  }
  for (int level = 1; level <= o.depth; ++level) {
    std::vector<float> pf;
    for (int32_t i : frontier) {
      const auto& f = feats[pool[i].parent];
      pf.insert(pf.end(), f.begin(), f.end());
    }
    std::vector<float> out_f, out_l;
    RETURN_IF_ERROR(ForwardLevel(pool, frontier, pf, level, &out_f, &out_l));
    feats.resize(pool.size());
    struct Cand {
      float score;
      int32_t parent, token;
    };
    std::vector<Cand> cands;
    for (size_t j = 0; j < frontier.size(); ++j) {
      feats[frontier[j]].assign(out_f.begin() + j * hs, out_f.begin() + (j + 1) * hs);
      const float* lg = out_l.data() + j * vocab;
      const auto ctop = TopK(lg, vocab, k);
      const auto clp = LogProbs(lg, vocab, ctop);
      for (int c = 0; c < k; ++c) {
        cands.push_back({pool[frontier[j]].score + clp[c], frontier[j], head_->ToTarget(ctop[c])});
      }
    }
    // All k^2 candidates join the pool; the best k by cumulative score form the next frontier.
    const int32_t first = static_cast<int32_t>(pool.size());
    for (const Cand& c : cands) pool.push_back({c.token, c.parent, -1, c.score});
    std::vector<int32_t> order(cands.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return cands[a].score > cands[b].score; });
    frontier.clear();
    for (int j = 0; j < k && j < static_cast<int>(order.size()); ++j)
      frontier.push_back(first + order[j]);
    feats.resize(pool.size());
  }
  // Rerank: the best total_tokens - 1 candidates by cumulative score, in pool order (parents
  // first), keeping only nodes whose parent is kept.
  std::vector<int32_t> idx(pool.size() - 1);
  std::iota(idx.begin(), idx.end(), 1);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int32_t a, int32_t b) { return pool[a].score > pool[b].score; });
  idx.resize(std::min<size_t>(idx.size(), o.total_tokens - 1));
  std::sort(idx.begin(), idx.end());
  std::vector<int32_t> new_index(pool.size(), -1);
  new_index[0] = 0;
  DraftTree out;
  out.tokens.push_back(root);
  out.parents.push_back(-1);
  for (int32_t i : idx) {
    const int32_t parent = new_index[pool[i].parent];
    if (parent < 0) continue;
    new_index[i] = static_cast<int32_t>(out.tokens.size());
    out.tokens.push_back(pool[i].token);
    out.parents.push_back(parent);
  }
  return out;
}

}  // namespace eagle
