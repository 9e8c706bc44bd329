// The speculation loop (common/eagle/verifier_loop.h) against an in-process verifier engine
// (verifier/engine_session.h), with failures injected into the link: resume after a lost
// verifier, non-retryable errors, cancellation. No gRPC.
#include "common/eagle/verifier_loop.h"

#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"
#include "verifier/engine.h"
#include "verifier/engine_session.h"

namespace eagle {
namespace {

// The verifier's EngineSession; the shared `fail_at` countdown makes a call fail with `code`
// (the "verifier" then forgets the session, as a restarted one would).
class FlakySession final : public VerifierSession {
 public:
  FlakySession(verifier::Engine* e, int* countdown, absl::StatusCode code)
      : inner_(e, "test", nullptr), countdown_(countdown), code_(code) {}
  absl::StatusOr<Opened> Open(std::span<const int32_t> prompt, std::span<const int32_t> resume,
                              const SamplingParams& sampling, int max_tokens,
                              const std::vector<int>& layers, int64_t width) override {
    if (Fail()) return absl::Status(code_, "injected");
    return inner_.Open(prompt, resume, sampling, max_tokens, layers, width);
  }
  absl::Status Send(int64_t step, const DraftTree& tree) override {
    if (Fail()) {
      inner_.Close();
      return absl::Status(code_, "injected");
    }
    return inner_.Send(step, tree);
  }
  absl::StatusOr<Result> Receive() override { return inner_.Receive(); }
  void Close() override { inner_.Close(); }
  int64_t bytes_sent() const override { return 0; }
  int64_t bytes_received() const override { return 0; }

 private:
  bool Fail() { return *countdown_ >= 0 && (*countdown_)-- == 0; }
  verifier::EngineSession inner_;
  int* countdown_;
  absl::StatusCode code_;
};

struct Fixture {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<EagleHead> head;
  Fixture() {
    testing::TinyConfig c;
    c.layers = 2;
    c.dtype = DType::kQ8_0;
    auto m = testing::MakeTinyLlama(c);
    EXPECT_TRUE(m.ok());
    model = std::move(*m);
    auto h = testing::MakeRandomEagleHead(*model, 3);
    EXPECT_TRUE(h.ok()) << h.status();
    head = std::move(*h);
  }
};

std::vector<int32_t> Prompt(int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < 9; ++i) p.push_back((i * 31 + salt * 7 + 3) % 96);
  return p;
}

TEST(VerifierLoopTest, OutputEqualsVanillaThroughFailuresAtEveryPoint) {
  Fixture f;
  verifier::Engine engine(f.model.get(), verifier::EngineOptions());
  GenerateOptions o;
  o.max_tokens = 40;
  o.ignore_eos = true;
  for (int salt = 0; salt < 3; ++salt) {
    const auto prompt = Prompt(salt);
    auto want = GenerateVanilla(*f.model, prompt, o, nullptr);
    ASSERT_TRUE(want.ok());
    for (int fail_at : {-1, 0, 1, 2, 5, 9, 14}) {
      int countdown = fail_at;
      SessionFactory factory = [&] {
        return std::make_unique<FlakySession>(&engine, &countdown, absl::StatusCode::kUnavailable);
      };
      VerifierLoopOptions ro;
      ro.head = f.head.get();
      ro.tree.mode = fail_at % 2 ? TreeMode::kDynamic : TreeMode::kChain;
      VerifierLoopStats st;
      std::vector<int32_t> streamed;
      auto r = GenerateWithVerifier(
          *f.model, factory, prompt, o, ro,
          [&](int32_t id, const std::string&) {
            if (id >= 0) streamed.push_back(id);
            return true;
          },
          &st);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->token_ids, want->token_ids) << "salt " << salt << " fail_at " << fail_at;
      EXPECT_EQ(streamed, want->token_ids) << "missing or duplicated tokens";
      EXPECT_EQ(st.reconnects, fail_at > 0 ? 1 : 0) << fail_at;
    }
  }
  EXPECT_EQ(engine.stats().active_sessions, 0);
}

TEST(VerifierLoopTest, PlainDecodingWithoutAHeadEqualsVanilla) {
  Fixture f;
  verifier::Engine engine(f.model.get(), verifier::EngineOptions());
  GenerateOptions o;
  o.max_tokens = 24;
  o.ignore_eos = true;
  const auto prompt = Prompt(4);
  auto want = GenerateVanilla(*f.model, prompt, o, nullptr);
  ASSERT_TRUE(want.ok());
  int opened = 0;
  SessionFactory factory = [&] {
    return std::make_unique<verifier::EngineSession>(&engine, "plain", nullptr,
                                                     [&](const verifier::OpenResult& r) {
                                                       ++opened;
                                                       EXPECT_TRUE(r.features.empty());
                                                     });
  };
  VerifierLoopOptions ro;  // no head: root-only trees, as the verifier's own Generate
  ro.reconnect_seconds = 0;
  VerifierLoopStats st;
  auto r = GenerateWithVerifier(*f.model, factory, prompt, o, ro, nullptr, &st);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token_ids, want->token_ids);
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(st.steps, o.max_tokens - 1);  // the first token comes with Open
  EXPECT_EQ(engine.stats().active_sessions, 0);
  // With reconnects off, the engine's refusal comes back as is.
  engine.Drain();
  auto refused = GenerateWithVerifier(*f.model, factory, prompt, o, ro, nullptr, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(opened, 1);
}

TEST(VerifierLoopTest, NonRetryableErrorsAndCancellationEndTheGeneration) {
  Fixture f;
  verifier::Engine engine(f.model.get(), verifier::EngineOptions());
  GenerateOptions o;
  o.max_tokens = 30;
  o.ignore_eos = true;
  int countdown = 3;
  SessionFactory factory = [&] {
    return std::make_unique<FlakySession>(&engine, &countdown, absl::StatusCode::kInvalidArgument);
  };
  VerifierLoopOptions ro;
  ro.head = f.head.get();
  auto r = GenerateWithVerifier(*f.model, factory, Prompt(1), o, ro, nullptr, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // The verifier stays away: give up after the reconnect window.
  countdown = -1;
  int calls = 0;
  int next_fails = 0;
  SessionFactory gone = [&] {
    ++calls;
    next_fails = 0;  // every Open fails
    return std::make_unique<FlakySession>(&engine, &next_fails, absl::StatusCode::kUnavailable);
  };
  ro.reconnect_seconds = 0.3;
  auto g = GenerateWithVerifier(*f.model, gone, Prompt(2), o, ro, nullptr, nullptr);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(calls, 2);
  // Cancellation between steps.
  int steps = 0;
  ro.cancelled = [&] { return ++steps > 3; };
  auto c = GenerateWithVerifier(*f.model, factory, Prompt(3), o, ro, nullptr, nullptr);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(engine.stats().active_sessions, 0);
}

}  // namespace
}  // namespace eagle
