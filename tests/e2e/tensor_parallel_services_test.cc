// eagle-verifier --tp 3 (SmolLM2-135M split over three CPU rank processes, Gloo on loopback)
// behind a real eagle-drafter: the tokens of the whole model, speculative sessions included (their
// KV moves replayed on every rank), and R28: a rank killed mid-generation takes the verifier
// group down within its bound, no rank is left behind, and the drafter's session resumes on the
// restarted group with the same tokens.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/generate.h"
#include "common/prompt.h"
#include "gtest/gtest.h"
#include "tests/testing/services.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

using Clock = std::chrono::steady_clock;
using testing::ChatRequest;
using testing::Generation;

const std::vector<std::string> kTp = {"--tp",         "3", "--threads",       "1",
                                      "--tp_timeout", "6", "--grace_seconds", "2"};

class TensorParallelServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) GTEST_SKIP() << "default model not fetched";
    dir_ = testing::TempDir();
    auto m = LlamaModel::Load(EAGLE_DEFAULT_MODEL);
    ASSERT_TRUE(m.ok());
    model_ = *std::move(m);
  }
  std::vector<int32_t> Vanilla(const std::string& prompt, int max_tokens) {
    auto ids = EncodeChat(*model_, {{"user", prompt}});
    EXPECT_TRUE(ids.ok());
    GenerateOptions o;
    o.max_tokens = max_tokens;
    auto r = GenerateVanilla(*model_, *ids, o, nullptr);
    EXPECT_TRUE(r.ok());
    return r->token_ids;
  }
  std::string dir_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(TensorParallelServicesTest, ShardedVerifierServesTheWholeModelsTokens) {
  auto v = testing::StartVerifier(dir_, 0, kTp);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(testing::ChildPids(v->proc->pid()).size(), 2u);
  auto d = testing::StartDrafter(dir_, v->address());
  ASSERT_TRUE(d.ok()) << d.status();
  const std::vector<std::string> prompts = testing::HeldOutPrompts(3);
  // Two sessions at once (one batched pass holds both caches), chain and dynamic trees.
  std::vector<Generation> got(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      auto stub = testing::DrafterStub(d->address());
      v1::GenerateRequest req = ChatRequest(prompts[i], 32);
      if (i == 1) req.mutable_speculation()->set_mode(v1::SpeculationOverride::DYNAMIC);
      got[i] = testing::Generate(stub.get(), req, 300);
    });
    if (i == 1) {
      for (auto& c : clients) c.join();
      clients.clear();
    }
  }
  for (auto& c : clients) c.join();
  int64_t steps = 0, tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    EXPECT_EQ(got[i].ids, Vanilla(prompts[i], 32)) << "prompt " << i;
    steps += got[i].last.stats().steps();
    tokens += static_cast<int64_t>(got[i].ids.size());
  }
  EXPECT_LT(steps, tokens);  // speculation accepted drafts through the sharded verifier
  // The verifier's own plain Generate.
  auto stub = testing::VerifierStub(v->address());
  Generation plain = testing::Generate(stub.get(), ChatRequest(prompts[0], 24), 300);
  ASSERT_TRUE(plain.status.ok()) << plain.status.error_message();
  EXPECT_EQ(plain.ids, Vanilla(prompts[0], 24));
  // SIGTERM: rank 0 drains, stops the other ranks, and every process exits 0.
  const std::vector<pid_t> ranks = testing::ChildPids(v->proc->pid());
  v->proc->Signal(SIGTERM);
  EXPECT_EQ(v->proc->Wait(30), 0) << v->proc->log();
  for (pid_t r : ranks) EXPECT_TRUE(testing::ProcessGone(r));
}

TEST_F(TensorParallelServicesTest, AKilledRankFailsTheGroupAndTheSessionResumesOnItsRestart) {
  auto v = testing::StartVerifier(dir_, 0, kTp);
  ASSERT_TRUE(v.ok()) << v.status();
  const int port = v->port;
  auto d = testing::StartDrafter(dir_, v->address());
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string prompt = testing::HeldOutPrompts(1)[0];
  const std::vector<int32_t> want = Vanilla(prompt, 64);
  std::atomic<int> seen{0};
  Generation got;
  std::thread client([&] {
    auto stub = testing::DrafterStub(d->address());
    got = testing::Generate(stub.get(), ChatRequest(prompt, 64), 300, [&](int n) {
      seen = n;
      return true;
    });
  });
  const auto t0 = Clock::now();
  while (seen < 4 && Clock::now() - t0 < std::chrono::seconds(120)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(seen.load(), 4);
  const std::vector<pid_t> ranks = testing::ChildPids(v->proc->pid());
  ASSERT_EQ(ranks.size(), 2u);
  ::kill(ranks[0], SIGKILL);
  const auto killed = Clock::now();
  // Rank 0 notices at its next pass or heartbeat (every 3 s with --tp_timeout 6), drains
  // (health NOT_SERVING) and exits 1; it kills the surviving rank on its way out.
  const int code = v->proc->Wait(30);
  const double took = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_EQ(code, 1) << v->proc->log();
  EXPECT_LT(took, 3.0 + 6.0 + 2.0) << "bound: a heartbeat, its timeout, and the drain's grace";
  EXPECT_TRUE(testing::ProcessGone(ranks[1]));
  EXPECT_NE(v->proc->log().find("tensor_parallel_failed"), std::string::npos) << v->proc->log();
  // The group comes back on the same port; the drafter resumes the session there.
  auto again = testing::StartVerifier(dir_, port, kTp);
  ASSERT_TRUE(again.ok()) << again.status();
  client.join();
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.ids, want);
  EXPECT_GE(testing::Metric(d->admin_port, "eagle_drafter_verifier_reconnects_total"), 1);
}

}  // namespace
}  // namespace eagle
