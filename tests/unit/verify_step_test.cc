// The verify step shared by the in-process generator, the verifier engine and the drafter's
// loop: the accepted path's tokens and features, the KV cache compacted to that path, and the
// (feature, following token) pairs a draft head commits.
#include "common/eagle/verify_step.h"

#include <vector>

#include "common/eagle/draft_model.h"
#include "gtest/gtest.h"

namespace eagle {
namespace {

constexpr int kVocab = 16;

// Root 10 with children 11 (node 1) and 12 (node 2); 13 (node 3) under node 1.
DraftTree Tree() { return DraftTree{{10, 11, 12, 13}, {-1, 0, 0, 1}}; }

// Logits whose argmax at node i is best[i].
std::vector<float> Logits(const std::vector<int32_t>& best) {
  std::vector<float> l(best.size() * kVocab, 0.0f);
  for (size_t i = 0; i < best.size(); ++i) l[i * kVocab + best[i]] = 1.0f;
  return l;
}

// A one-layer, one-head, head_dim-1 cache whose slot s holds value 1000 + s, `base` committed
// slots and `written` tree slots after them.
std::unique_ptr<CpuKvCache> Cache(int64_t base, int64_t written) {
  auto c = std::make_unique<CpuKvCache>(nullptr, 1, 1, 1, 32);
  for (int64_t s = 0; s < base + written; ++s) {
    const float k = 1000.0f + static_cast<float>(s);
    c->StoreKeys(0, s, &k);
    *c->v(0, s) = k;
  }
  c->set_length(base + written);
  return c;
}

TEST(VerifyStepTest, GreedyKeepsTheMatchingPathItsKvAndItsFeatures) {
  const DraftTree tree = Tree();
  // The target wants 11 after the root, 13 after 11, then 5 after 13 (a leaf: bonus token).
  const std::vector<float> logits = Logits({11, 13, 3, 5});
  const int64_t width = 2;
  std::vector<float> features;
  for (int i = 0; i < tree.size(); ++i) {
    features.push_back(static_cast<float>(i));
    features.push_back(100.0f + static_cast<float>(i));
  }
  const int64_t base = 5;
  auto cache = Cache(base, tree.size());
  Rng rng(0);
  auto step = VerifyTree(tree, logits.data(), kVocab, features.data(), width, *cache, base,
                         SamplingParams{}, rng);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->accepted, (std::vector<int32_t>{11, 13}));
  EXPECT_EQ(step->next_token, 5);
  EXPECT_EQ(step->tokens(), (std::vector<int32_t>{11, 13, 5}));
  // Rows of the root, node 1 and node 3.
  EXPECT_EQ(step->features, (std::vector<float>{0, 100, 1, 101, 3, 103}));
  // The KV cache keeps the committed slots and the path, compacted: slots 5, 6, 8 -> 5, 6, 7.
  ASSERT_EQ(cache->length(), base + 3);
  for (int64_t s = 0; s < base; ++s) EXPECT_EQ(*cache->v(0, s), 1000.0f + s);
  EXPECT_EQ(*cache->v(0, base + 0), 1000.0f + base + 0);
  EXPECT_EQ(*cache->v(0, base + 1), 1000.0f + base + 1);
  EXPECT_EQ(*cache->v(0, base + 2), 1000.0f + base + 3);
  EXPECT_EQ(cache->kt(0, 0)[base + 2], 1000.0f + base + 3);
}

TEST(VerifyStepTest, RejectedRootGivesTheCorrectionAndTheRootsFeatureOnly) {
  const DraftTree tree = Tree();
  const std::vector<float> logits = Logits({9, 0, 0, 0});  // neither child: correction 9
  const std::vector<float> features = {7, 8, 9, 10};       // width 1
  auto cache = Cache(0, tree.size());
  Rng rng(0);
  auto step =
      VerifyTree(tree, logits.data(), kVocab, features.data(), 1, *cache, 0, SamplingParams{}, rng);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(step->accepted.empty());
  EXPECT_EQ(step->next_token, 9);
  EXPECT_EQ(step->features, (std::vector<float>{7}));
  EXPECT_EQ(cache->length(), 1);
}

TEST(VerifyStepTest, NoFeaturesWantedGivesNone) {
  const std::vector<float> logits = Logits({12, 0, 0, 0});
  auto cache = Cache(0, 4);
  Rng rng(0);
  auto step =
      VerifyTree(Tree(), logits.data(), kVocab, nullptr, 0, *cache, 0, SamplingParams{}, rng);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->accepted, (std::vector<int32_t>{12}));
  EXPECT_TRUE(step->features.empty());
}

TEST(VerifyStepTest, APathOutsideTheWrittenSlotsIsAnError) {
  // The cache holds only two of the tree's four slots: keeping node 3 must fail, not read past.
  const std::vector<float> logits = Logits({11, 13, 0, 5});
  auto cache = Cache(0, 2);
  Rng rng(0);
  auto step =
      VerifyTree(Tree(), logits.data(), kVocab, nullptr, 0, *cache, 0, SamplingParams{}, rng);
  EXPECT_FALSE(step.ok());
}

// Records what a draft head is given.
class RecordingDraft : public DraftModel {
 public:
  absl::Status Commit(std::span<const float> features,
                      std::span<const int32_t> next_tokens) override {
    features_.assign(features.begin(), features.end());
    tokens_.assign(next_tokens.begin(), next_tokens.end());
    return absl::OkStatus();
  }
  absl::StatusOr<DraftTree> Draft(int32_t root, const TreeOptions&) override {
    return DraftTree{{root}, {-1}};
  }
  std::vector<float> features_;
  std::vector<int32_t> tokens_;
};

TEST(VerifyStepTest, CommitStepPairsEachFeatureWithTheTokenAfterIt) {
  VerifiedStep step;
  step.accepted = {11, 13};
  step.next_token = 5;
  step.features = {0, 1, 3};
  RecordingDraft draft;
  ASSERT_TRUE(CommitStep(draft, step).ok());
  EXPECT_EQ(draft.features_, (std::vector<float>{0, 1, 3}));
  EXPECT_EQ(draft.tokens_, (std::vector<int32_t>{11, 13, 5}));
}

}  // namespace
}  // namespace eagle
