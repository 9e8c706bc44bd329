// The verifier engine on a tiny random model: sessions, continuous batching, admission control
// and the protocol's error cases.
#include <atomic>
#include <future>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "common/generate.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"
#include "verifier/engine.h"

namespace eagle::verifier {
namespace {

using testing::TinyConfig;

std::unique_ptr<LlamaModel> Tiny() {
  TinyConfig c;
  c.layers = 2;
  c.dtype = DType::kQ8_0;
  auto m = testing::MakeTinyLlama(c);
  EXPECT_TRUE(m.ok());
  return std::move(*m);
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 11 + 5) % 96);
  return p;
}

// Greedy reference: vanilla decoding's tokens.
std::vector<int32_t> Vanilla(const LlamaModel& m, const std::vector<int32_t>& prompt, int n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.ignore_eos = true;
  auto r = GenerateVanilla(m, prompt, o, nullptr);
  EXPECT_TRUE(r.ok());
  return r->token_ids;
}

// Drives one session with trees that contain the right continuation at a varying depth beside
// wrong siblings; returns the generated tokens.
std::vector<int32_t> Drive(Engine& e, const std::vector<int32_t>& prompt,
                           const std::vector<int32_t>& truth, int n) {
  OpenParams p;
  p.prompt = prompt;
  p.max_tokens = n + 8;
  auto o = e.Open(p).get();
  EXPECT_TRUE(o.ok()) << o.status();
  if (!o.ok()) return {};
  EXPECT_EQ(o->features.size(), prompt.size() * 64);
  std::vector<int32_t> out = {o->first_token};
  int64_t step = 0;
  while (static_cast<int>(out.size()) < n) {
    const size_t k = out.size();
    DraftTree t;
    t.tokens = {out.back()};
    t.parents = {-1};
    // Right path of length (step % 3), with a wrong sibling first at depth 1.
    t.tokens.push_back((truth[std::min(k, truth.size() - 1)] + 1) % 96);
    t.parents.push_back(0);
    int parent = 0;
    for (int d = 0; d < static_cast<int>(step % 3) && k + d < truth.size(); ++d) {
      t.tokens.push_back(truth[k + d]);
      t.parents.push_back(parent);
      parent = t.size() - 1;
    }
    auto r = e.Verify(o->session_id, step++, t).get();
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    EXPECT_EQ(r->features.size(), (r->accepted.size() + 1) * 64);
    EXPECT_GE(r->pass_rows, t.size());  // this tree's rows and any other session's
    EXPECT_GE(r->batch_sequences, 1);
    out.insert(out.end(), r->accepted.begin(), r->accepted.end());
    out.push_back(r->next_token);
  }
  e.Close(o->session_id);
  out.resize(std::min<size_t>(out.size(), n));
  return out;
}

TEST(VerifierEngineTest, GreedyVerificationEqualsVanilla) {
  auto m = Tiny();
  Engine e(m.get(), EngineOptions());
  for (int salt = 0; salt < 4; ++salt) {
    const auto prompt = Prompt(5 + salt * 3, salt);
    const auto truth = Vanilla(*m, prompt, 24);
    EXPECT_EQ(Drive(e, prompt, truth, 24), truth) << "prompt " << salt;
  }
  EXPECT_EQ(e.stats().active_sessions, 0);
  EXPECT_EQ(e.stats().kv_bytes, 0);
}

TEST(VerifierEngineTest, ConcurrentSessionsAreBatchedAndUnaffected) {
  auto m = Tiny();
  int max_batch = 0;
  EngineHooks hooks;
  hooks.on_batch = [&](int seqs, int, double) { max_batch = std::max(max_batch, seqs); };
  Engine e(m.get(), EngineOptions(), hooks);
  constexpr int kSessions = 8;
  std::vector<std::vector<int32_t>> prompts, truths, got(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    prompts.push_back(Prompt(4 + i, i + 10));
    truths.push_back(Vanilla(*m, prompts[i], 32));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kSessions; ++i) {
    threads.emplace_back([&, i] { got[i] = Drive(e, prompts[i], truths[i], 32); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kSessions; ++i) EXPECT_EQ(got[i], truths[i]) << "session " << i;
  EXPECT_GT(max_batch, 1) << "no forward pass was shared";
  EXPECT_EQ(e.stats().active_sessions, 0);
}

// What drafters size auto trees from: the curve set at start reaches each session's Open, and
// the passes of tree verifications move it toward what they measure.
TEST(VerifierEngineTest, ForwardCostReachesSessionsAndFollowsThePasses) {
  auto m = Tiny();
  Engine e(m.get(), EngineOptions());
  EXPECT_TRUE(e.forward_cost().empty());
  // Far slower than the tiny model runs.
  auto slow = CostCurve::FromPoints({{1, 1.0}, {8, 1.0}});
  ASSERT_TRUE(slow.ok());
  e.SetForwardCost(*slow);
  OpenParams p;
  p.prompt = Prompt(5, 1);
  p.max_tokens = 40;
  auto o = e.Open(p).get();
  ASSERT_TRUE(o.ok());
  ASSERT_EQ(o->forward_cost.points().size(), 2u);
  EXPECT_DOUBLE_EQ(o->forward_cost.points()[0].seconds, 1.0);
  e.Close(o->session_id);
  const auto prompt = Prompt(6, 2);
  Drive(e, prompt, Vanilla(*m, prompt, 24), 24);
  EXPECT_LT(e.forward_cost().Seconds(2), 0.8);  // each pass moves it by a bounded factor
}

TEST(VerifierEngineTest, AdmissionControlAndProtocolErrors) {
  auto m = Tiny();
  EngineOptions eo;
  eo.max_sessions = 2;
  eo.max_tree_nodes = 8;
  // Room for two sessions of prompt 4 + 8 tokens: (4 + 8 + 8 + 1) slots * 2 layers * 2 (k, v)
  // * kv_dim 32 * 4 bytes = 10752 bytes each.
  eo.kv_budget_bytes = 2 * 10752;
  Engine e(m.get(), eo);
  auto code = [](const auto& s) { return s.status().code(); };
  OpenParams p;
  p.prompt = Prompt(4, 1);
  p.max_tokens = 8;
  auto a = e.Open(p).get();
  ASSERT_TRUE(a.ok());
  // Bad opens.
  OpenParams bad = p;
  bad.prompt.clear();
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.prompt[2] = 96;
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.sampling.temperature = -1;
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.sampling.top_p = 1.5f;
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.feature_layers = {7};
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.max_tokens = 0;
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.max_tokens = 100000;
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kInvalidArgument);
  // KV budget: a session needing more than is left is refused before any work.
  bad = p;
  bad.max_tokens = 9;
  auto b = e.Open(p).get();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(code(e.Open(p).get()), absl::StatusCode::kResourceExhausted);
  e.Close(b->session_id);
  EXPECT_EQ(code(e.Open(bad).get()), absl::StatusCode::kResourceExhausted);
  // Verify errors.
  DraftTree t;
  t.tokens = {a->first_token, 3};
  t.parents = {-1, 0};
  EXPECT_EQ(code(e.Verify(12345, 0, t).get()), absl::StatusCode::kNotFound);
  EXPECT_EQ(code(e.Verify(a->session_id, 1, t).get()), absl::StatusCode::kFailedPrecondition);
  DraftTree wrong_root = t;
  wrong_root.tokens[0] = (a->first_token + 1) % 96;
  EXPECT_EQ(code(e.Verify(a->session_id, 0, wrong_root).get()), absl::StatusCode::kInvalidArgument);
  DraftTree bad_parent = t;
  bad_parent.parents[1] = 1;
  EXPECT_EQ(code(e.Verify(a->session_id, 0, bad_parent).get()), absl::StatusCode::kInvalidArgument);
  DraftTree bad_token = t;
  bad_token.tokens[1] = -4;
  EXPECT_EQ(code(e.Verify(a->session_id, 0, bad_token).get()), absl::StatusCode::kInvalidArgument);
  DraftTree too_big;
  for (int i = 0; i < 9; ++i) {
    too_big.tokens.push_back(i == 0 ? a->first_token : i);
    too_big.parents.push_back(i - 1);
  }
  EXPECT_EQ(code(e.Verify(a->session_id, 0, too_big).get()), absl::StatusCode::kInvalidArgument);
  // The session survives all of that.
  auto ok = e.Verify(a->session_id, 0, t).get();
  ASSERT_TRUE(ok.ok()) << ok.status();
  // Running past the reserved length is refused.
  int64_t step = 1;
  int32_t root = ok->next_token;
  absl::Status last;
  for (int i = 0; i < 20 && last.ok(); ++i) {
    DraftTree chain;
    chain.tokens = {root, 1, 2, 3};
    chain.parents = {-1, 0, 1, 2};
    auto r = e.Verify(a->session_id, step, chain).get();
    last = r.status();
    if (r.ok()) {
      root = r->next_token;
      ++step;
    }
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kOutOfRange) << last;
  // Closed sessions are unknown; draining refuses new sessions.
  e.Close(a->session_id);
  EXPECT_EQ(code(e.Verify(a->session_id, step, t).get()), absl::StatusCode::kNotFound);
  e.Drain();
  EXPECT_EQ(code(e.Open(p).get()), absl::StatusCode::kUnavailable);
  EXPECT_EQ(e.stats().active_sessions, 0);
  EXPECT_EQ(e.stats().kv_bytes, 0);
}

// A caller who gives up while its prefill is still queued can close the session by the id Open
// gave it at admission: nothing leaks.
TEST(VerifierEngineTest, CloseBeforeThePrefillRuns) {
  auto m = Tiny();
  Engine e(m.get(), EngineOptions());
  OpenParams p;
  p.prompt = Prompt(30, 3);
  std::vector<std::future<absl::StatusOr<OpenResult>>> pending;
  for (int i = 0; i < 20; ++i) {
    uint64_t id = 0;
    pending.push_back(e.Open(p, &id));
    ASSERT_NE(id, 0u);
    e.Close(id);
  }
  for (auto& f : pending) {
    auto r = f.get();
    EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kCancelled) << r.status();
  }
  EXPECT_EQ(e.stats().active_sessions, 0);
  EXPECT_EQ(e.stats().kv_bytes, 0);
}

// R3: abort and reopen, 500 times, closing at every point of a session's life (before its
// prefill runs, once it is open, with a verify step queued or running). A thread samples the
// counters throughout: never negative. Each cycle ends with them at 0, and a session opened
// after all of it generates vanilla's tokens.
TEST(VerifierEngineTest, FiveHundredAbortsAndReopensLeaveNothingBehind) {
  auto m = Tiny();
  Engine e(m.get(), EngineOptions());
  std::atomic<bool> done{false};
  std::atomic<int> negative{0}, samples{0};
  std::thread watch([&] {
    while (!done) {
      const EngineStats st = e.stats();
      if (st.active_sessions < 0 || st.kv_bytes < 0 || st.queue_depth < 0) ++negative;
      ++samples;
      std::this_thread::yield();
    }
  });
  OpenParams p;
  p.prompt = Prompt(12, 5);
  p.max_tokens = 8;
  for (int cycle = 0; cycle < 500; ++cycle) {
    uint64_t id = 0;
    auto opened = e.Open(p, &id);
    ASSERT_NE(id, 0u);
    std::optional<std::future<absl::StatusOr<VerifyOutput>>> step;
    switch (cycle % 3) {
      case 0:  // before the prefill runs (or while it does)
        e.Close(id);
        break;
      case 1: {  // open, then closed
        auto o = opened.get();
        ASSERT_TRUE(o.ok()) << o.status();
        e.Close(id);
        break;
      }
      default: {  // a verify step in flight when it is closed
        auto o = opened.get();
        ASSERT_TRUE(o.ok()) << o.status();
        DraftTree t;
        t.tokens = {o->first_token, 1, 2};
        t.parents = {-1, 0, 1};
        step = e.Verify(id, 0, t);
        e.Close(id);
        break;
      }
    }
    if (opened.valid()) {
      auto r = opened.get();
      EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kCancelled) << r.status();
    }
    if (step) {
      auto r = step->get();  // done before the close, or dropped with it
      EXPECT_TRUE(r.ok() || r.status().code() == absl::StatusCode::kNotFound ||
                  r.status().code() == absl::StatusCode::kCancelled)
          << r.status();
    }
    EXPECT_EQ(e.stats().active_sessions, 0) << "cycle " << cycle;
    EXPECT_EQ(e.stats().kv_bytes, 0) << "cycle " << cycle;
  }
  done = true;
  watch.join();
  EXPECT_EQ(negative, 0) << "of " << samples << " samples";
  const std::vector<int32_t> prompt = Prompt(20, 9);
  const std::vector<int32_t> truth = Vanilla(*m, prompt, 24);
  EXPECT_EQ(Drive(e, prompt, truth, 24), truth);
}

// A prompt longer than a pass's token budget is prefilled in chunks, interleaved with other
// sessions' steps, with the same first token and features as one whole prefill.
TEST(VerifierEngineTest, ChunkedPrefillEqualsOnePrefill) {
  auto m = Tiny();
  EngineOptions eo;
  eo.max_batch_tokens = 16;
  int passes = 0;
  EngineHooks hooks;
  hooks.on_batch = [&](int, int tokens, double) {
    ++passes;
    EXPECT_LE(tokens, 16);
  };
  Engine e(m.get(), eo, hooks);
  const auto prompt = Prompt(100, 7);
  ForwardRequest req;
  req.tokens = prompt;
  req.return_features = true;
  req.logits = LogitsMode::kLast;
  auto cache = m->NewCache(128);
  auto whole = m->Forward(*cache, req);
  ASSERT_TRUE(whole.ok());
  const int32_t first = Argmax(whole->logits.data(), 96);
  // Another session generates meanwhile.
  const auto other = Prompt(6, 8);
  const auto truth = Vanilla(*m, other, 20);
  std::vector<int32_t> got_other;
  std::thread t([&] { got_other = Drive(e, other, truth, 20); });
  OpenParams p;
  p.prompt = prompt;
  auto o = e.Open(p).get();
  t.join();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->first_token, first);
  EXPECT_EQ(o->features, whole->features);
  EXPECT_EQ(got_other, truth);
  EXPECT_GE(passes, 7);
}

TEST(VerifierEngineTest, SessionLimit) {
  auto m = Tiny();
  EngineOptions eo;
  eo.max_sessions = 2;
  Engine e(m.get(), eo);
  OpenParams p;
  p.prompt = Prompt(4, 2);
  auto a = e.Open(p).get();
  auto b = e.Open(p).get();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(e.Open(p).get().status().code(), absl::StatusCode::kResourceExhausted);
  e.Close(a->session_id);
  EXPECT_TRUE(e.Open(p).get().ok());
}

// A fuzzer of the session protocol (reliability test R15's action-sequence target, run as a
// seeded test): random interleavings of opens (valid and mutated: empty or huge prompts, ids out
// of range, NaN or out-of-range sampling parameters, bad lengths and layers), verifies (valid
// trees and mutated ones: wrong root, bad or cyclic parents, mismatched sizes, bad ids, too many
// nodes, wrong steps, unknown sessions), several in flight at once, and closes (of live, closed
// and unknown sessions). Every result must carry a documented code, an OK verify must return
// in-range tokens; afterwards nothing is held and a fresh session still equals vanilla decoding.
TEST(VerifierEngineTest, RandomActionSequencesGetDocumentedCodesAndReleaseEverything) {
  auto m = Tiny();
  const int vocab = m->config().vocab_size;
  EngineOptions eo;
  eo.max_sessions = 6;
  eo.max_tree_nodes = 24;
  eo.kv_budget_bytes = 400000;
  Engine e(m.get(), eo);
  std::mt19937_64 rng(99);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const std::set<absl::StatusCode> documented = {
      absl::StatusCode::kOk,         absl::StatusCode::kInvalidArgument,
      absl::StatusCode::kNotFound,   absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kOutOfRange, absl::StatusCode::kResourceExhausted};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Live {
    uint64_t id;
    int64_t step;
    int32_t root;
  };
  std::vector<Live> live;
  std::map<absl::StatusCode, int> seen;
  auto check = [&](const absl::Status& s, const char* what) {
    ++seen[s.code()];
    EXPECT_TRUE(documented.count(s.code())) << what << ": " << s;
  };
  auto random_tree = [&](int32_t root) {
    DraftTree t;
    const int n = 1 + pick(pick(5) == 0 ? 40 : 12);
    t.tokens = {root};
    t.parents = {-1};
    for (int i = 1; i < n; ++i) {
      t.tokens.push_back(pick(vocab));
      t.parents.push_back(pick(i));
    }
    switch (pick(10)) {
      case 0:
        t.tokens[0] = (root + 1) % vocab;
        break;
      case 1:
        t.parents[pick(n)] = n + pick(3);
        break;
      case 2:
        if (n > 1) t.parents[1 + pick(n - 1)] = -1 - pick(3);
        break;
      case 3:
        t.parents.pop_back();
        break;
      case 4:
        t.tokens[pick(n)] = pick(2) ? vocab + pick(1000) : -1 - pick(1000);
        break;
      case 5:
        t = DraftTree();
        break;
      default:
        break;  // valid
    }
    return t;
  };
  for (int action = 0; action < 3000; ++action) {
    const int kind = pick(10);
    if (kind < 3) {  // open
      OpenParams p;
      p.prompt = Prompt(1 + pick(30), action);
      p.max_tokens = 1 + pick(40);
      if (pick(2)) {
        p.sampling.temperature = 0.8f;
        p.sampling.seed = action;
      }
      switch (pick(12)) {
        case 0:
          p.prompt.clear();
          break;
        case 1:
          p.prompt[pick(p.prompt.size())] = pick(2) ? vocab : -7;
          break;
        case 2:
          p.sampling.temperature = pick(2) ? nan : -2.0f;
          break;
        case 3:
          p.sampling.top_p = pick(2) ? nan : 1.5f;
          break;
        case 4:
          p.sampling.top_k = -3;
          break;
        case 5:
          p.max_tokens = pick(2) ? -1 : 1 << 30;
          break;
        case 6:
          p.feature_layers = {pick(2) ? -1 : 999};
          break;
        case 7:
          p.prompt.assign(5000, 3);
          break;
        default:
          break;
      }
      uint64_t id = 0;
      auto r = e.Open(p, &id).get();
      check(r.status(), "open");
      if (r.ok()) {
        EXPECT_GE(r->first_token, 0);
        EXPECT_LT(r->first_token, vocab);
        live.push_back({r->session_id, 0, r->first_token});
      }
    } else if (kind < 8 && !live.empty()) {  // verifies, up to three sessions at once
      std::vector<std::pair<size_t, std::future<absl::StatusOr<VerifyOutput>>>> inflight;
      std::set<size_t> used;
      for (int k = 0, n = 1 + pick(3); k < n; ++k) {
        const size_t i = pick(live.size());
        if (!used.insert(i).second) continue;
        int64_t step = live[i].step;
        if (pick(12) == 0) step += pick(2) ? 1 : -1;
        if (pick(40) == 0) step = std::numeric_limits<int64_t>::max();
        inflight.emplace_back(i, e.Verify(live[i].id, step, random_tree(live[i].root)));
      }
      for (auto& [i, f] : inflight) {
        auto r = f.get();
        check(r.status(), "verify");
        if (!r.ok()) continue;
        for (int32_t t : r->accepted) EXPECT_TRUE(t >= 0 && t < vocab);
        EXPECT_TRUE(r->next_token >= 0 && r->next_token < vocab);
        live[i].root = r->next_token;
        ++live[i].step;
      }
    } else if (kind == 8) {  // a verify for a session that is not (or no longer) open
      DraftTree t{{1, 2}, {-1, 0}};
      check(e.Verify(pick(2) ? 0 : 1000000 + pick(1000), 0, t).get().status(), "verify unknown");
    } else if (!live.empty()) {  // close (sometimes twice)
      const size_t i = pick(live.size());
      e.Close(live[i].id);
      if (pick(2)) e.Close(live[i].id);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  for (const Live& l : live) e.Close(l.id);
  EXPECT_EQ(e.stats().active_sessions, 0);
  EXPECT_EQ(e.stats().kv_bytes, 0);
  for (const auto& [code, n] : seen) {
    std::printf("%s: %d\n", absl::StatusCodeToString(code).c_str(), n);
  }
  EXPECT_GT(seen[absl::StatusCode::kOk], 500);
  EXPECT_GT(seen[absl::StatusCode::kInvalidArgument], 200);
  // The engine is unharmed.
  const auto prompt = Prompt(7, 3);
  const auto truth = Vanilla(*m, prompt, 20);
  EXPECT_EQ(Drive(e, prompt, truth, 20), truth);
}

}  // namespace
}  // namespace eagle::verifier
