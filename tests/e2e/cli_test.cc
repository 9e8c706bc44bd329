// eagle-cli as a user runs it: generate (text and --json) and score on the default model, and
// clean errors for bad input.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace {

eagle::testing::CommandResult Exec(const std::string& args) {
  return eagle::testing::RunCommand(std::string(EAGLE_CLI) + " " + args);
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) GTEST_SKIP() << "default model not fetched";
  }
};

TEST_F(CliTest, GenerateJsonStreamsTokensThenSummary) {
  auto r = Exec("generate --prompt 'What is 2+2?' --chat --max-tokens 12 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u);
  auto last = nlohmann::json::parse(lines.back());
  const auto ids = last["token_ids"].get<std::vector<int>>();
  EXPECT_GE(ids.size(), 1u);
  EXPECT_LE(ids.size(), 12u);
  EXPECT_FALSE(last["text"].get<std::string>().empty());
  EXPECT_GT(last["timings"]["decode_tokens_per_s"].get<double>(), 0);
  // Streamed pieces concatenate to the final text.
  std::string streamed;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    auto j = nlohmann::json::parse(lines[i]);
    streamed += j["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, last["text"].get<std::string>());
}

TEST_F(CliTest, GenerateIsReproducibleWithSeed) {
  const std::string args =
      "generate --prompt 'Tell me a story.' --chat --max-tokens 16 --temperature 0.8 "
      "--top-p 0.9 --top-k 40 --seed 123 --json";
  auto a = Exec(args), b = Exec(args);
  ASSERT_EQ(a.code, 0) << a.out;
  std::vector<std::string> out_a = absl::StrSplit(a.out, '\n', absl::SkipEmpty());
  std::vector<std::string> out_b = absl::StrSplit(b.out, '\n', absl::SkipEmpty());
  auto la = nlohmann::json::parse(out_a.back());
  auto lb = nlohmann::json::parse(out_b.back());
  EXPECT_EQ(la["token_ids"], lb["token_ids"]);
}

TEST_F(CliTest, TextModePrintsSummary) {
  auto r = Exec("generate --prompt 'Hello' --max-tokens 8");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "tok/s")) << r.out;
}

TEST_F(CliTest, ScorePrintsTopK) {
  auto r = Exec("score --prompt 'The capital of France is' --top-k 3 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 3u);
  auto j = nlohmann::json::parse(lines.back());
  EXPECT_EQ(j["top"].size(), 3u);
}

TEST_F(CliTest, BadInputGivesCleanErrors) {
  auto r = Exec("generate --model /nonexistent.gguf --prompt hi");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.out, "/nonexistent.gguf")) << r.out;
  r = Exec("generate --prompt hi --temperature -3");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.out, "temperature")) << r.out;
  r = Exec("score --tokens 1,2,99999999");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.out, "outside")) << r.out;
  r = Exec("frobnicate");
  EXPECT_EQ(r.code, 2);
}

// The bench and datagen tools: every bad flag is a usage error naming the flag, exit status 2
// (before, a mistyped number threw from std::stoi and aborted the tool).
TEST(ToolFlagsTest, BenchAndDatagenToolsRefuseBadFlagsWithExitTwo) {
  struct Case {
    const char* tool;
    std::string args;
    std::string words;  // expected in the message
  };
  const std::string head = " --draft " EAGLE_DEFAULT_HEAD;
  const Case cases[] = {
      {EAGLE_SPEC_BENCH, head + " --threads abc", "--threads: 'abc' is not an integer"},
      {EAGLE_SPEC_BENCH, head + " --limit 5x", "--limit: '5x' is not an integer"},
      {EAGLE_SPEC_BENCH, head + " --max-tokens 99999999999",
       "--max-tokens: 99999999999 is outside"},
      {EAGLE_SPEC_BENCH, head + " --limit", "--limit: needs a value"},
      {EAGLE_SPEC_BENCH, " --bogus 1", "--bogus: unknown flag"},
      {EAGLE_SERVICE_BENCH, " --threads 1.5", "--threads: '1.5' is not an integer"},
      {EAGLE_SERVICE_BENCH, " --http nowhere", "--http: 'nowhere' is not HOST:PORT"},
      {EAGLE_SERVICE_BENCH, " --concurrency", "--concurrency: needs a value"},
      {EAGLE_DATAGEN, " --out /tmp/x --threads two", "--threads: 'two' is not an integer"},
      {EAGLE_DATAGEN, " --out /tmp/x --seed -1", "--seed: '-1' is not a non-negative integer"},
      {EAGLE_DATAGEN, " --out /tmp/x --temperature warm", "--temperature: 'warm' is not a number"},
  };
  for (const Case& c : cases) {
    auto r = eagle::testing::RunCommand(std::string(c.tool) + c.args);
    EXPECT_EQ(r.code, 2) << c.tool << c.args << ": " << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, c.words)) << c.tool << c.args << ": " << r.out;
    EXPECT_FALSE(absl::StrContains(r.out, "terminate called")) << r.out;
  }
}

}  // namespace

namespace {

// Speculative decoding through the CLI on the default model with a random (untrained) EAGLE head
// in the published layout: the output must equal vanilla decoding's, for every tree mode.
TEST_F(CliTest, SpeculativeOutputEqualsVanilla) {
  const std::string dir = eagle::testing::TempDir();
  ASSERT_TRUE(eagle::testing::WriteEagleHeadDir(dir, 576, 1536, 9, 3, 49152, true, 7).ok());
  for (const char* tree : {"auto", "chain", "static", "dynamic"}) {
    auto r = Exec(std::string("generate --prompt 'Name three colors.' --chat --max-tokens 32 "
                              "--ignore-eos --json --compare-vanilla --draft ") +
                  dir + " --tree " + tree + " --depth 4");
    ASSERT_EQ(r.code, 0) << r.out;
    std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
    auto last = nlohmann::json::parse(lines.back());
    EXPECT_TRUE(last["speculative"]["identical_to_vanilla"].get<bool>()) << tree;
    EXPECT_EQ(last["token_ids"].size(), 32u);
    EXPECT_GE(last["speculative"]["tau"].get<double>(), 1.0);
  }
  auto bad = Exec("generate --prompt hi --draft /nonexistent");
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(absl::StrContains(bad.out, "/nonexistent")) << bad.out;
  bad = Exec("generate --prompt hi --draft " + dir + " --tree banana");
  EXPECT_EQ(bad.code, 1);
}

}  // namespace
