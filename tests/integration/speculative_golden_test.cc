// Losslessness on the default model: for 50 held-out chat prompts, speculative greedy decoding
// (128 new tokens; auto, chain, static and dynamic trees in turn) equals vanilla greedy decoding
// token for token; every fifth prompt is also sampled (T=0.8, top-p 0.9, its own seed), where
// the seeded speculative output equals the seeded vanilla output too. The head is the shipped one
// (heads/smollm2-135m-eagle); a random head in the published layout stands in if it is absent
// (losslessness does not depend on head quality).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/chat_template.h"
#include "common/eagle/speculative.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

TEST(SpeculativeGoldenTest, FiftyHeldOutPromptsEqualVanilla) {
  if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) GTEST_SKIP() << "default model not fetched";
  ModelOptions on_all_cores;
  on_all_cores.pool = *cpu::ThreadPool::ForThreads(0);
  auto model = LlamaModel::Load(EAGLE_DEFAULT_MODEL, on_all_cores);
  ASSERT_TRUE(model.ok()) << model.status();
  std::string dir = EAGLE_DEFAULT_HEAD;
  const bool shipped = std::filesystem::exists(dir + "/model.safetensors");
  if (!shipped) {
    dir = testing::TempDir();
    ASSERT_TRUE(testing::WriteEagleHeadDir(dir, 576, 1536, 9, 3, 49152, true, 11).ok());
  }
  auto head = EagleHead::Load(dir, **model);
  ASSERT_TRUE(head.ok()) << head.status();
  if (!shipped) {
    // Draft over the 4096 lowest ids (cheap draft steps; correctness does not depend on it).
    std::vector<int32_t> ids(4096);
    for (int i = 0; i < 4096; ++i) ids[i] = i;
    ASSERT_TRUE((*head)->SetDraftVocab(ids).ok());
  }
  std::ifstream in(std::string(EAGLE_TEST_DATA_DIR) + "/heldout_prompts.jsonl");
  auto kind = ChatTemplateFromJinja((*model)->chat_template());
  ASSERT_TRUE(kind.ok());
  // Auto trees plan with this machine's measured costs.
  auto costs = MeasureSpeculationCosts(model->get(), **head);
  ASSERT_TRUE(costs.ok()) << costs.status();
  std::string line;
  int n = 0, identical = 0, steps = 0, generated = 0;
  while (std::getline(in, line) && n < 50) {
    const auto j = nlohmann::json::parse(line);
    const std::string text =
        ApplyChatTemplate(*kind, {{"user", j["prompt"].get<std::string>()}}, true);
    const auto prompt = (*model)->tokenizer()->Encode(text, true);
    GenerateOptions o;
    o.max_tokens = 128;
    auto vanilla = GenerateVanilla(**model, prompt, o, nullptr);
    ASSERT_TRUE(vanilla.ok());
    EagleDraftModel d(head->get(), static_cast<int64_t>(prompt.size()) + 1024);
    TreeOptions t;
    constexpr TreeMode kModes[] = {TreeMode::kAuto, TreeMode::kDynamic, TreeMode::kStatic,
                                   TreeMode::kChain};
    t.mode = kModes[n % 4];
    t.costs = *costs;
    t.depth = 3;
    t.top_k = 4;
    t.total_tokens = 12;
    t.choices = {{0}, {1}, {0, 0}, {1, 0}, {0, 0, 0}};
    SpeculativeStats st;
    auto spec = GenerateSpeculative(**model, d, prompt, o, t, nullptr, &st);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->token_ids, vanilla->token_ids) << "prompt " << j["id"];
    EXPECT_EQ(spec->finish, vanilla->finish);
    identical += spec->token_ids == vanilla->token_ids;
    if (n % 5 == 0) {
      GenerateOptions so = o;
      so.max_tokens = 64;
      so.sampling.temperature = 0.8f;
      so.sampling.top_p = 0.9f;
      so.sampling.seed = 100 + n;
      auto sampled = GenerateVanilla(**model, prompt, so, nullptr);
      ASSERT_TRUE(sampled.ok());
      EagleDraftModel sd(head->get(), static_cast<int64_t>(prompt.size()) + 1024);
      auto spec_sampled = GenerateSpeculative(**model, sd, prompt, so, t, nullptr, nullptr);
      ASSERT_TRUE(spec_sampled.ok()) << spec_sampled.status();
      EXPECT_EQ(spec_sampled->token_ids, sampled->token_ids) << "sampled, prompt " << j["id"];
    }
    steps += st.steps;
    generated += static_cast<int>(spec->token_ids.size());
    ++n;
  }
  EXPECT_EQ(n, 50);
  std::printf("speculative == vanilla on %d/%d held-out prompts (%s head, %.2f tokens per step)\n",
              identical, n, shipped ? "shipped" : "random",
              steps > 0 ? double(generated) / steps : 0);
}

}  // namespace
}  // namespace eagle
