// EAGLE speculative decoding on tiny random models: trees (readable with letter tokens),
// acceptance rules, and losslessness: at temperature 0 the speculative output equals vanilla
// output token for token, for chain, static and dynamic trees, with a random EAGLE head and with
// an oracle drafter that gets long paths accepted.
#include "common/eagle/speculative.h"

#include <cmath>
#include <map>
#include <random>

#include "common/eagle/acceptance.h"
#include "common/eagle/cost_model.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

// Letter tokens: 'a' = 0, 'b' = 1, ...
constexpr int32_t L(char c) { return c - 'a'; }

TEST(DraftTreeTest, MasksPathsAndDepthsWithLetters) {
  //        a
  //      b   c
  //     d e   f
  DraftTree t{{L('a'), L('b'), L('c'), L('d'), L('e'), L('f')}, {-1, 0, 0, 1, 1, 2}};
  ASSERT_TRUE(t.Validate(26, 64).ok());
  EXPECT_EQ(t.Depths(), (std::vector<int32_t>{0, 1, 1, 2, 2, 2}));
  EXPECT_EQ(t.Paths(), (std::vector<std::vector<int32_t>>{{0, 1, 3}, {0, 1, 4}, {0, 2, 5}}));
  const auto m = t.AttentionMask();
  // Row e (4) sees a, b, e.
  EXPECT_EQ(std::vector<uint8_t>(m.begin() + 4 * 6, m.begin() + 5 * 6),
            (std::vector<uint8_t>{1, 1, 0, 0, 1, 0}));
  DraftTree dup{{L('a'), L('b'), L('b')}, {-1, 0, 0}};
  EXPECT_FALSE(dup.Validate(26, 64).ok());
  DraftTree fwd{{L('a'), L('b')}, {-1, 1}};
  EXPECT_FALSE(fwd.Validate(26, 64).ok());
  DraftTree range{{L('a'), 99}, {-1, 0}};
  EXPECT_FALSE(range.Validate(26, 64).ok());
}

TEST(DraftTreeTest, McSim7b63Shape) {
  auto s = BuildStaticShape(McSim7b63());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->parents.size(), 26u);
  EXPECT_EQ(s->depth, 5);
  EXPECT_EQ(s->max_rank, 4);
  // Sorted by (length, lexicographic): nodes 1..4 are the root's ranks 0..3.
  EXPECT_EQ(std::vector<int32_t>(s->ranks.begin() + 1, s->ranks.begin() + 5),
            (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_FALSE(BuildStaticShape({{0, 1}}).ok());  // no parent path [0]
  auto parsed = ParseTreeChoices("[[0],[1],[0,0]]");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->size(), 3u);
  EXPECT_FALSE(ParseTreeChoices("[[0],[x]]").ok());
}

// Logits that make `tok` the argmax at each node.
std::vector<float> ArgmaxLogits(const std::vector<int32_t>& argmax, int vocab) {
  std::vector<float> lg(argmax.size() * vocab, 0.0f);
  for (size_t i = 0; i < argmax.size(); ++i) lg[i * vocab + argmax[i]] = 5.0f;
  return lg;
}

TEST(AcceptanceTest, GreedyFollowsTheTargetArgmax) {
  DraftTree t{{L('a'), L('b'), L('c'), L('d'), L('e'), L('f')}, {-1, 0, 0, 1, 1, 2}};
  // Target: after a -> c, after c -> f, after f -> z.
  auto lg = ArgmaxLogits({L('c'), L('x'), L('f'), L('x'), L('x'), L('z')}, 26);
  Acceptance a = AcceptGreedy(t, lg.data(), 26);
  EXPECT_EQ(a.path, (std::vector<int32_t>{0, 2, 5}));
  EXPECT_EQ(a.next_token, L('z'));
  // Target wants q after a: nothing accepted, correction q.
  lg = ArgmaxLogits({L('q'), L('x'), L('f'), L('x'), L('x'), L('z')}, 26);
  a = AcceptGreedy(t, lg.data(), 26);
  EXPECT_EQ(a.path, (std::vector<int32_t>{0}));
  EXPECT_EQ(a.next_token, L('q'));
}

// One node with two drafted children: the emitted first token must follow the target
// distribution p exactly, whatever is drafted (chi-square over 60000 draws, fixed seed).
double ChiSquare(const std::map<int32_t, int>& counts, const std::vector<double>& p, int n) {
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    const double e = p[i] * n;
    const auto it = counts.find(static_cast<int32_t>(i));
    const double o = it == counts.end() ? 0 : it->second;
    chi += (o - e) * (o - e) / e;
  }
  return chi;
}

TEST(AcceptanceTest, SampledAcceptanceKeepsTheTargetDistribution) {
  const int vocab = 6;
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, -3.0f};
  SamplingParams sp;
  sp.temperature = 0.9f;
  std::vector<double> p(vocab);
  double z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(logits[i] / 0.9);
  for (int i = 0; i < vocab; ++i) p[i] = std::exp(logits[i] / 0.9) / z;
  // Drafts: a likely token, an unlikely one.
  DraftTree t{{5, 3, 2}, {-1, 0, 0}};
  std::vector<float> lg(3 * vocab);
  for (int r = 0; r < 3; ++r) std::copy(logits.begin(), logits.end(), lg.begin() + r * vocab);
  Rng rng(17);
  const int n = 60000;
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) {
    const Acceptance a = AcceptSampled(t, lg.data(), vocab, sp, rng);
    ++counts[a.path.size() > 1 ? t.tokens[a.path[1]] : a.next_token];
  }
  // 5 degrees of freedom: P(chi2 > 25) = 1.4e-4.
  EXPECT_LT(ChiSquare(counts, p, n), 25.0);
  // A broken rule (accept a drafted child whenever r < 0.5) is caught by the same test.
  std::map<int32_t, int> broken;
  Rng rng2(17);
  for (int i = 0; i < n; ++i) {
    int32_t out = -1;
    for (int c : {1, 2}) {
      if (rng2.Uniform() < 0.5) {
        out = t.tokens[c];
        break;
      }
    }
    if (out < 0) out = AcceptSampled(DraftTree{{5}, {-1}}, lg.data(), vocab, sp, rng2).next_token;
    ++broken[out];
  }
  EXPECT_GT(ChiSquare(broken, p, n), 25.0);
}

// A drafter that knows the true continuation and drafts it (with mistakes and distractors).
class OracleDrafter final : public DraftModel {
 public:
  OracleDrafter(std::vector<int32_t> truth, int vocab, uint64_t seed)
      : truth_(std::move(truth)), vocab_(vocab), rng_(seed) {}
  absl::Status Commit(std::span<const float>, std::span<const int32_t> next_tokens) override {
    committed_ += static_cast<int64_t>(next_tokens.size());
    return absl::OkStatus();
  }
  absl::StatusOr<DraftTree> Draft(int32_t root, const TreeOptions& o) override {
    // The root is truth_[next_index_ - 1]; drafts continue from truth_[next_index_].
    DraftTree t{{root}, {-1}};
    int32_t parent = 0;
    for (int d = 0; d < o.depth; ++d) {
      const int64_t k = next_index_ + d;
      if (k >= static_cast<int64_t>(truth_.size())) break;
      int32_t want = truth_[k];
      const bool wrong = std::uniform_real_distribution<double>(0, 1)(rng_) < 0.15;
      // A distractor sibling first, then the (maybe wrong) guess.
      const int32_t distractor = (want + 1 + static_cast<int32_t>(rng_() % (vocab_ - 1))) % vocab_;
      t.tokens.push_back(distractor);
      t.parents.push_back(parent);
      const int32_t guess =
          wrong ? (want + 1) % vocab_ == distractor ? (want + 2) % vocab_ : (want + 1) % vocab_
                : want;
      if (guess == distractor) break;
      t.tokens.push_back(guess);
      t.parents.push_back(parent);
      parent = static_cast<int32_t>(t.tokens.size()) - 1;
    }
    return t;
  }
  void Advance(int64_t n) { next_index_ += n; }
  int64_t next_index_ = 1;

 private:
  std::vector<int32_t> truth_;
  int vocab_;
  std::mt19937_64 rng_;
  int64_t committed_ = 0;
};

struct SpecCase {
  TreeMode mode;
  int depth, top_k, total;
};

class LosslessTest : public ::testing::TestWithParam<SpecCase> {};

TEST_P(LosslessTest, GreedySpeculativeEqualsVanillaWithARandomHead) {
  const SpecCase sc = GetParam();
  // Auto trees plan with costs that make real trees pay (rows nearly free, head levels cheap),
  // speculation forced on.
  auto costs = std::make_shared<SpeculationCosts>();
  costs->verify = *CostCurve::FromPoints({{1, 1e-3}, {64, 1.01e-3}});
  costs->draft_level = *CostCurve::FromPoints({{1, 1e-7}, {64, 1e-7}});
  int64_t nodes = 0, steps = 0;
  for (uint64_t seed : {1, 2, 3, 4, 5, 6}) {
    testing::TinyConfig c;
    c.seed = seed;
    c.dtype = seed % 2 ? DType::kQ4_1 : DType::kF32;
    c.precision = seed % 3 == 0 ? cpu::Precision::kInt8 : cpu::Precision::kInt16;
    auto target = testing::MakeTinyLlama(c);
    ASSERT_TRUE(target.ok()) << target.status();
    auto head = testing::MakeRandomEagleHead(**target, seed + 100, seed % 2 == 0);
    ASSERT_TRUE(head.ok()) << head.status();
    std::mt19937_64 rng(seed);
    std::vector<int32_t> prompt(5 + seed % 7);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % c.vocab);
    GenerateOptions o;
    o.max_tokens = 48;
    o.ignore_eos = true;
    auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
    ASSERT_TRUE(vanilla.ok());
    EagleDraftModel drafter(head->get(), 512);
    TreeOptions to;
    to.mode = sc.mode;
    to.depth = sc.depth;
    to.top_k = sc.top_k;
    to.total_tokens = sc.total;
    to.costs = costs;
    to.planner.probe_steps = 0;
    SpeculativeStats stats;
    auto spec = GenerateSpeculative(**target, drafter, prompt, o, to, nullptr, &stats);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->token_ids, vanilla->token_ids) << "seed " << seed;
    EXPECT_GT(stats.steps, 0);
    nodes += stats.tree_nodes;
    steps += stats.steps;
  }
  // Auto drafted real trees (a random head's chances are low, and rows cost nothing here).
  if (sc.mode == TreeMode::kAuto) {
    EXPECT_GT(static_cast<double>(nodes) / steps, 4.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Trees, LosslessTest,
                         ::testing::Values(SpecCase{TreeMode::kChain, 4, 1, 0},
                                           SpecCase{TreeMode::kStatic, 5, 0, 0},
                                           SpecCase{TreeMode::kDynamic, 4, 4, 16},
                                           SpecCase{TreeMode::kDynamic, 3, 8, 40},
                                           SpecCase{TreeMode::kAuto, 3, 4, 12}));

// Adapts OracleDrafter's notion of position from the commits it sees.
class CountingOracle final : public DraftModel {
 public:
  CountingOracle(std::vector<int32_t> truth, int vocab, uint64_t seed)
      : oracle_(truth, vocab, seed) {}
  absl::Status Commit(std::span<const float> f, std::span<const int32_t> next_tokens) override {
    if (!first_) oracle_.Advance(static_cast<int64_t>(next_tokens.size()));
    first_ = false;
    return oracle_.Commit(f, next_tokens);
  }
  absl::StatusOr<DraftTree> Draft(int32_t root, const TreeOptions& o) override {
    return oracle_.Draft(root, o);
  }

 private:
  OracleDrafter oracle_;
  bool first_ = true;
};

TEST(LosslessTest, LongAcceptedPathsStillMatchVanilla) {
  for (uint64_t seed : {11, 12, 13}) {
    testing::TinyConfig c;
    c.seed = seed;
    auto target = testing::MakeTinyLlama(c);
    ASSERT_TRUE(target.ok());
    std::vector<int32_t> prompt = {3, 17, 42, 5};
    GenerateOptions o;
    o.max_tokens = 60;
    o.ignore_eos = true;
    auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
    ASSERT_TRUE(vanilla.ok());
    CountingOracle oracle(vanilla->token_ids, c.vocab, seed);
    TreeOptions to;
    to.mode = TreeMode::kChain;
    to.depth = 6;
    SpeculativeStats stats;
    auto spec = GenerateSpeculative(**target, oracle, prompt, o, to, nullptr, &stats);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->token_ids, vanilla->token_ids) << "seed " << seed;
    EXPECT_GT(stats.tau(), 2.5) << "the oracle's paths should mostly be accepted";
    std::printf("oracle seed %d: %d steps, tau %.2f\n", static_cast<int>(seed), stats.steps,
                stats.tau());
  }
}

// Reliability test R24: 200 prompts on a deterministic toy target, byte-compared with plain
// greedy decoding. Three of four prompts draft with an oracle that knows the answer but makes
// mistakes and adds distractors (long accepted paths, rejections at every depth), every fourth
// with a random EAGLE head in an EAGLE-2 dynamic tree.
TEST(LosslessTest, TwoHundredPromptsEqualGreedyDecoding) {
  testing::TinyConfig c;
  c.seed = 21;
  c.dtype = DType::kQ4_1;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok()) << target.status();
  auto head = testing::MakeRandomEagleHead(**target, 77, false);
  ASSERT_TRUE(head.ok()) << head.status();
  std::mt19937_64 rng(2024);
  int identical = 0;
  int64_t steps = 0, tokens = 0;
  for (int i = 0; i < 200; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 40);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % c.vocab);
    GenerateOptions o;
    o.max_tokens = 16 + static_cast<int>(rng() % 32);
    o.ignore_eos = true;
    auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
    ASSERT_TRUE(vanilla.ok());
    TreeOptions to;
    SpeculativeStats stats;
    absl::StatusOr<GenerateResult> spec;
    if (i % 4 == 3) {
      EagleDraftModel drafter(head->get(), 512);
      to.mode = TreeMode::kDynamic;
      to.depth = 4;
      to.top_k = 4;
      to.total_tokens = 16;
      spec = GenerateSpeculative(**target, drafter, prompt, o, to, nullptr, &stats);
    } else {
      CountingOracle oracle(vanilla->token_ids, c.vocab, 1000 + i);
      to.mode = TreeMode::kChain;
      to.depth = 1 + i % 7;
      spec = GenerateSpeculative(**target, oracle, prompt, o, to, nullptr, &stats);
    }
    ASSERT_TRUE(spec.ok()) << spec.status();
    identical += spec->token_ids == vanilla->token_ids;
    EXPECT_EQ(spec->token_ids, vanilla->token_ids) << "prompt " << i;
    steps += stats.steps;
    tokens += static_cast<int64_t>(spec->token_ids.size());
  }
  EXPECT_EQ(identical, 200);
  std::printf("200 prompts: %d identical, %lld tokens in %lld steps\n", identical,
              static_cast<long long>(tokens), static_cast<long long>(steps));
  EXPECT_LT(steps, tokens * 3 / 4) << "the oracle's drafts should be accepted often";
}

}  // namespace
}  // namespace eagle

namespace eagle {
namespace {

TEST(EagleHeadWarmUpTest, PassesOnAGoodHeadAndRefusesABrokenLmHead) {
  testing::TinyConfig c;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  auto head = testing::MakeRandomEagleHead(**target, 7, true);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_TRUE(WarmUp(**head).ok());
  c.nan_weight = true;  // the head drafts through the target's LM head
  auto broken_target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(broken_target.ok());
  auto broken = testing::MakeRandomEagleHead(**broken_target, 7, true);
  ASSERT_TRUE(broken.ok()) << broken.status();
  absl::Status s = WarmUp(**broken);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("draft-head logit element 0 is nan"), std::string::npos) << s;
}

TEST(EagleHeadLoadTest, PublishedLayoutLoadsAndMismatchesAreRefused) {
  testing::TinyConfig c;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  for (bool bias : {true, false}) {
    const std::string dir = testing::TempDir();
    ASSERT_TRUE(
        testing::WriteEagleHeadDir(dir, c.hidden, 128, c.heads, c.kv_heads, c.vocab, bias, 3).ok());
    auto head = EagleHead::Load(dir, **target);
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ((*head)->config().fc_bias, bias);
    // It drafts.
    EagleDraftModel d(head->get(), 64);
    std::vector<float> f(2 * c.hidden, 0.1f);
    const int32_t toks[2] = {4, 9};
    ASSERT_TRUE(d.Commit(f, toks).ok());
    TreeOptions o;
    o.mode = TreeMode::kDynamic;
    o.total_tokens = 20;
    auto tree = d.Draft(9, o);
    ASSERT_TRUE(tree.ok()) << tree.status();
    EXPECT_EQ(tree->size(), o.total_tokens);
    EXPECT_TRUE(tree->Validate(c.vocab, 64).ok());
    EXPECT_EQ(d.committed(), 2);       // tree KV discarded
    EXPECT_FALSE(d.Draft(4, o).ok());  // not the last committed token
  }
  // A head for another model.
  const std::string dir = testing::TempDir();
  ASSERT_TRUE(
      testing::WriteEagleHeadDir(dir, 2 * c.hidden, 128, c.heads, c.kv_heads, c.vocab, true, 3)
          .ok());
  auto bad = EagleHead::Load(dir, **target);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("hidden size"), std::string::npos)
      << bad.status();
  const std::string dir2 = testing::TempDir();
  ASSERT_TRUE(
      testing::WriteEagleHeadDir(dir2, c.hidden, 128, c.heads, c.kv_heads, c.vocab + 1, true, 3)
          .ok());
  EXPECT_FALSE(EagleHead::Load(dir2, **target).ok());
  EXPECT_TRUE(absl::IsNotFound(EagleHead::Load(testing::TempDir(), **target).status()));
}

}  // namespace
}  // namespace eagle

namespace eagle {
namespace {

TEST(DraftVocabTest, ReducedVocabularyDraftsOnlyItsTokensAndStaysLossless) {
  testing::TinyConfig c;
  c.dtype = DType::kQ4_1;
  c.precision = cpu::Precision::kInt16;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  auto head = testing::MakeRandomEagleHead(**target, 5);
  ASSERT_TRUE(head.ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < c.vocab; i += 3) ids.push_back(i);
  ASSERT_TRUE((*head)->SetDraftVocab(ids).ok());
  EXPECT_EQ((*head)->draft_vocab_size(), static_cast<int>(ids.size()));
  EXPECT_FALSE((*head)->SetDraftVocab({5, 3}).ok());
  ASSERT_TRUE((*head)->SetDraftVocab(ids).ok());
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  GenerateOptions o;
  o.max_tokens = 40;
  o.ignore_eos = true;
  auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
  ASSERT_TRUE(vanilla.ok());
  for (TreeMode mode : {TreeMode::kChain, TreeMode::kStatic, TreeMode::kDynamic}) {
    EagleDraftModel d(head->get(), 256);
    TreeOptions to;
    to.mode = mode;
    to.depth = 3;
    auto spec = GenerateSpeculative(**target, d, prompt, o, to, nullptr, nullptr);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->token_ids, vanilla->token_ids);
  }
  // Every drafted token is in the draft vocabulary.
  EagleDraftModel d(head->get(), 64);
  std::vector<float> f(c.hidden, 0.3f);
  const int32_t next[1] = {7};
  ASSERT_TRUE(d.Commit(f, next).ok());
  auto tree = d.Draft(7, TreeOptions{});
  ASSERT_TRUE(tree.ok());
  for (int i = 1; i < tree->size(); ++i) EXPECT_EQ(tree->tokens[i] % 3, 0) << tree->tokens[i];
}

}  // namespace
}  // namespace eagle

namespace eagle {
namespace {

TEST(Eagle3Test, PublishedLayoutLoadsDraftsInItsVocabularyAndIsLossless) {
  testing::TinyConfig c;
  c.layers = 8;
  c.vocab = 128;
  c.dtype = DType::kQ8_0;
  c.precision = cpu::Precision::kInt16;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  const std::string dir = testing::TempDir();
  ASSERT_TRUE(
      testing::WriteEagle3HeadDir(dir, c.hidden, 128, c.heads, c.kv_heads, c.vocab, 32, 9).ok());
  auto head = EagleHead::Load(dir, **target);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ((*head)->config().kind, EagleHeadConfig::Kind::kEagle3);
  EXPECT_EQ((*head)->feature_layers(), (std::vector<int>{2, 4, 5}));
  EXPECT_EQ((*head)->draft_vocab_size(), 32);
  EXPECT_EQ((*head)->ToTarget(3), 12);
  EXPECT_FALSE((*head)->SetDraftVocab({1, 2}).ok());
  const std::vector<int32_t> prompt = {9, 8, 7, 6};
  GenerateOptions o;
  o.max_tokens = 40;
  o.ignore_eos = true;
  auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
  ASSERT_TRUE(vanilla.ok());
  for (TreeMode mode : {TreeMode::kChain, TreeMode::kStatic, TreeMode::kDynamic}) {
    EagleDraftModel d(head->get(), 256);
    TreeOptions to;
    to.mode = mode;
    to.depth = 3;
    SpeculativeStats st;
    auto spec = GenerateSpeculative(**target, d, prompt, o, to, nullptr, &st);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->token_ids, vanilla->token_ids);
  }
  // Commit takes 3H-wide target features; drafted tokens are in the draft vocabulary.
  EagleDraftModel d(head->get(), 64);
  std::vector<float> f(3 * c.hidden, 0.2f);
  const int32_t next[1] = {5};
  EXPECT_FALSE(d.Commit(std::vector<float>(c.hidden, 0.2f), next).ok());
  ASSERT_TRUE(d.Commit(f, next).ok());
  auto tree = d.Draft(5, TreeOptions{});
  ASSERT_TRUE(tree.ok()) << tree.status();
  for (int i = 1; i < tree->size(); ++i) EXPECT_EQ(tree->tokens[i] % 4, 0);
}

}  // namespace
}  // namespace eagle

namespace eagle {
namespace {

TEST(SpeculativeEdgeTest, ContextEndAndZeroTokens) {
  testing::TinyConfig c;
  c.max_position = 64;
  auto target = testing::MakeTinyLlama(c);
  ASSERT_TRUE(target.ok());
  auto head = testing::MakeRandomEagleHead(**target, 3);
  ASSERT_TRUE(head.ok());
  std::vector<int32_t> prompt(50);
  for (int i = 0; i < 50; ++i) prompt[i] = (i * 7) % c.vocab;
  GenerateOptions o;
  o.max_tokens = 14;  // fills the context exactly
  o.ignore_eos = true;
  auto vanilla = GenerateVanilla(**target, prompt, o, nullptr);
  ASSERT_TRUE(vanilla.ok()) << vanilla.status();
  EagleDraftModel d(head->get(), 256);
  TreeOptions t;
  t.depth = 6;
  auto spec = GenerateSpeculative(**target, d, prompt, o, t, nullptr, nullptr);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->token_ids, vanilla->token_ids);
  o.max_tokens = 0;
  EagleDraftModel d0(head->get(), 256);
  auto none = GenerateSpeculative(**target, d0, prompt, o, t, nullptr, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->token_ids.empty());
}

}  // namespace
}  // namespace eagle
