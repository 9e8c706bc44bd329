#include "common/eagle/draft_tree.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace eagle {

DraftTree DraftTree::TrimToDepth(int64_t max_depth) const {
  DraftTree out;
  const auto depths = Depths();
  std::vector<int32_t> remap(size(), -1);
  for (int i = 0; i < size(); ++i) {
    if (depths[i] > max_depth) continue;
    remap[i] = out.size();
    out.tokens.push_back(tokens[i]);
    out.parents.push_back(i == 0 ? -1 : remap[parents[i]]);
  }
  return out;
}

std::vector<int32_t> DraftTree::Depths() const {
  std::vector<int32_t> d(tokens.size(), 0);
  for (size_t i = 1; i < tokens.size(); ++i) d[i] = d[parents[i]] + 1;
  return d;
}

std::vector<std::vector<int32_t>> DraftTree::Children() const {
  std::vector<std::vector<int32_t>> c(tokens.size());
  for (size_t i = 1; i < tokens.size(); ++i) c[parents[i]].push_back(static_cast<int32_t>(i));
  return c;
}

std::vector<std::vector<int32_t>> DraftTree::Paths() const {
  const auto children = Children();
  std::vector<std::vector<int32_t>> paths;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!children[i].empty()) continue;
    std::vector<int32_t> p;
    for (int32_t n = static_cast<int32_t>(i); n >= 0; n = parents[n]) p.push_back(n);
    std::reverse(p.begin(), p.end());
    paths.push_back(std::move(p));
  }
  return paths;
}

std::vector<uint8_t> DraftTree::AttentionMask() const {
  const size_t t = tokens.size();
  std::vector<uint8_t> m(t * t, 0);
  for (size_t i = 0; i < t; ++i) {
    if (i > 0)
      std::copy(m.begin() + parents[i] * t, m.begin() + (parents[i] + 1) * t, m.begin() + i * t);
    m[i * t + i] = 1;
  }
  return m;
}

absl::Status DraftTree::Validate(int vocab_size, int max_nodes) const {
  if (tokens.empty()) return absl::InvalidArgumentError("draft tree is empty");
  if (tokens.size() != parents.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft tree has ", tokens.size(), " tokens but ", parents.size(), " parents"));
  }
  if (static_cast<int>(tokens.size()) > max_nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft tree has ", tokens.size(), " nodes; the limit is ", max_nodes));
  }
  if (parents[0] != -1) return absl::InvalidArgumentError("draft tree root must have parent -1");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("draft token ", tokens[i], " at node ", i,
                                                     " is outside [0, ", vocab_size, ")"));
    }
    if (i > 0 && (parents[i] < 0 || parents[i] >= static_cast<int32_t>(i))) {
      return absl::InvalidArgumentError(absl::StrCat("node ", i, " has parent ", parents[i],
                                                     ": parents must precede their children"));
    }
  }
  // Siblings must carry distinct tokens (acceptance matches children by token).
  std::map<std::pair<int32_t, int32_t>, int> seen;
  for (size_t i = 1; i < tokens.size(); ++i) {
    if (!seen.emplace(std::make_pair(parents[i], tokens[i]), 0).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", i, " repeats token ", tokens[i], " among its siblings"));
    }
  }
  return absl::OkStatus();
}

const TreeChoices& McSim7b63() {
  static const TreeChoices* kChoices = new TreeChoices{{0},
                                                       {1},
                                                       {2},
                                                       {3},
                                                       {0, 0},
                                                       {0, 1},
                                                       {0, 2},
                                                       {1, 0},
                                                       {1, 1},
                                                       {2, 0},
                                                       {2, 1},
                                                       {3, 0},
                                                       {0, 0, 0},
                                                       {0, 0, 1},
                                                       {0, 0, 2},
                                                       {0, 1, 0},
                                                       {0, 1, 1},
                                                       {0, 2, 0},
                                                       {0, 2, 1},
                                                       {1, 0, 0},
                                                       {0, 0, 0, 0},
                                                       {0, 0, 0, 1},
                                                       {0, 0, 0, 2},
                                                       {0, 0, 0, 0, 0},
                                                       {0, 0, 0, 0, 1}};
  return *kChoices;
}

absl::StatusOr<TreeChoices> ParseTreeChoices(const std::string& text) {
  TreeChoices out;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_array()) return absl::InvalidArgumentError("tree choices must be a list of lists");
    for (const auto& path : j) {
      if (!path.is_array() || path.empty()) {
        return absl::InvalidArgumentError("each tree choice must be a non-empty list of ranks");
      }
      std::vector<int> p;
      for (const auto& r : path) {
        if (!r.is_number_integer() || r.get<int>() < 0 || r.get<int>() > 63) {
          return absl::InvalidArgumentError("tree choice ranks must be integers in [0, 63]");
        }
        p.push_back(r.get<int>());
      }
      out.push_back(std::move(p));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad tree choices: ", e.what()));
  }
  return out;
}

absl::StatusOr<StaticShape> BuildStaticShape(const TreeChoices& choices) {
  TreeChoices sorted = choices;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  StaticShape s;
  s.parents.push_back(-1);
  s.ranks.push_back(-1);
  std::map<std::vector<int>, int32_t> index;
  index[{}] = 0;
  for (const auto& path : sorted) {
    if (path.empty()) return absl::InvalidArgumentError("empty tree choice");
    std::vector<int> prefix(path.begin(), path.end() - 1);
    auto it = index.find(prefix);
    if (it == index.end()) {
      return absl::InvalidArgumentError("tree choice has no parent path in the list");
    }
    index[path] = static_cast<int32_t>(s.parents.size());
    s.parents.push_back(it->second);
    s.ranks.push_back(path.back());
    s.max_rank = std::max(s.max_rank, path.back() + 1);
    s.depth = std::max(s.depth, static_cast<int>(path.size()));
  }
  return s;
}

}  // namespace eagle
