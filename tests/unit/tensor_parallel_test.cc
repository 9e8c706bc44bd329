// Tensor parallelism on the CPU: the Gloo communicator (ranks as threads of this process, over
// loopback TCP), its rendezvous, and the sharded model against the whole one. The same
// collectives across processes are tested end to end in tests/e2e/tensor_parallel_test.cc.
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "common/cpu/kernels.h"
#include "common/dist/gloo_communicator.h"
#include "common/dist/group.h"
#include "common/dist/tcp_store.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/speculative.h"
#include "common/generate.h"
#include "gtest/gtest.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs fn(rank, comm) on `world` threads, each a rank of one Gloo group on loopback.
void RunGroup(int world, const std::function<void(int, Communicator&)>& fn,
              milliseconds collective_timeout = milliseconds(20000)) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  std::vector<std::thread> threads;
  std::unique_ptr<TcpStoreServer> srv = *std::move(server);
  for (int r = 0; r < world; ++r) {
    std::unique_ptr<TcpStoreServer> mine = r == 0 ? std::move(srv) : nullptr;
    threads.emplace_back([&, r, mine = std::move(mine)]() mutable {
      GlooGroupOptions o;
      o.rank = r;
      o.world_size = world;
      o.rendezvous = address;
      o.connect_timeout = milliseconds(20000);
      o.collective_timeout = collective_timeout;
      auto comm = ConnectGlooGroup(o, std::move(mine));
      ASSERT_TRUE(comm.ok()) << comm.status();
      fn(r, **comm);
    });
  }
  for (std::thread& t : threads) t.join();
}

std::vector<float> RankData(int rank, int64_t n) {
  std::mt19937 rng(1000 + rank);
  std::uniform_real_distribution<float> u(-1000.0f, 1000.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng) * std::pow(10.0f, static_cast<float>(rng() % 7) - 3.0f);
  return v;
}

TEST(TcpStoreTest, SetGetAndATimedOutGet) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto a = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(2000));
  auto b = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), milliseconds(2000));
  ASSERT_TRUE(a.ok() && b.ok());
  // A Get blocks until another client sets the key.
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE((*b)->Set("k", std::string("v\0w", 3)).ok());
  });
  auto v = (*a)->Get("k", milliseconds(5000));
  setter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::string("v\0w", 3));
  const auto t0 = Clock::now();
  auto missing = (*a)->Get("never", milliseconds(300));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(Seconds(t0), 0.29);
  EXPECT_LT(Seconds(t0), 3.0);
}

TEST(TcpStoreTest, AnUnreachableRendezvousFailsWithinItsTimeout) {
  // A port that was free a moment ago: nothing listens there.
  int port = 0;
  {
    auto s = TcpStoreServer::Start("127.0.0.1", 0);
    ASSERT_TRUE(s.ok());
    port = (*s)->port();
  }
  const auto t0 = Clock::now();
  GlooGroupOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.rendezvous = "127.0.0.1:" + std::to_string(port);
  o.connect_timeout = milliseconds(700);
  auto comm = ConnectGlooGroup(o);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kUnavailable) << comm.status();
  EXPECT_NE(comm.status().message().find(o.rendezvous), std::string::npos) << comm.status();
  EXPECT_LT(Seconds(t0), 5.0);
}

TEST(TcpStoreTest, BadGroupOptionsAreRefused) {
  GlooGroupOptions o;
  o.rank = 2;
  o.world_size = 2;
  EXPECT_EQ(ConnectGlooGroup(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 0;
  o.rendezvous = "nohost";
  EXPECT_EQ(ConnectGlooGroup(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rendezvous = "127.0.0.1:0";
  EXPECT_EQ(ConnectGlooGroup(o).status().code(), absl::StatusCode::kInvalidArgument);
  TensorParallelFlags f;
  f.rank = 1;
  f.world_size = 2;
  EXPECT_EQ(StartTensorParallel(f, {"x"}).status().code(), absl::StatusCode::kInvalidArgument);
  f = {};
  f.world_size = 2;
  EXPECT_EQ(StartTensorParallel(f, {"x"}).status().code(), absl::StatusCode::kInvalidArgument);
  f = {};
  f.tp = 0;
  EXPECT_EQ(StartTensorParallel(f, {"x"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GlooCommunicatorTest, AllReduceSumIsTheRankOrderSumWhateverTheLength) {
  constexpr int kWorld = 4;
  bool orders_differ = false;
  for (int64_t n : {1, 7, 1000, 4099}) {
    std::vector<std::vector<float>> x(kWorld);
    for (int r = 0; r < kWorld; ++r) x[r] = RankData(r, n);
    std::vector<float> want(n), other_order(n);
    for (int64_t i = 0; i < n; ++i) {
      want[i] = ((x[0][i] + x[1][i]) + x[2][i]) + x[3][i];
      other_order[i] = x[0][i] + (x[1][i] + (x[2][i] + x[3][i]));
      orders_differ |= std::memcmp(&want[i], &other_order[i], 4) != 0;
    }
    RunGroup(kWorld, [&](int rank, Communicator& comm) {
      std::vector<float> mine = x[rank];
      ASSERT_TRUE(comm.AllReduceSum(mine.data(), n).ok());
      EXPECT_EQ(std::memcmp(mine.data(), want.data(), n * 4), 0) << "rank " << rank << " n " << n;
      // The first rows alone give the same bits as within the whole buffer (batch invariance).
      std::vector<float> head(x[rank].begin(), x[rank].begin() + (n + 1) / 2);
      ASSERT_TRUE(comm.AllReduceSum(head.data(), static_cast<int64_t>(head.size())).ok());
      EXPECT_EQ(std::memcmp(head.data(), want.data(), head.size() * 4), 0);
    });
  }
  // Control: on these values the order matters, so the bit-exact check above can fail.
  EXPECT_TRUE(orders_differ);
}

TEST(GlooCommunicatorTest, AllGatherBroadcastAndBarrier) {
  constexpr int kWorld = 3;
  RunGroup(kWorld, [&](int rank, Communicator& comm) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.world_size(), kWorld);
    const int32_t mine[2] = {rank, 10 * rank};
    int32_t all[2 * kWorld] = {};
    ASSERT_TRUE(comm.AllGather(mine, sizeof(mine), all).ok());
    for (int r = 0; r < kWorld; ++r) {
      EXPECT_EQ(all[2 * r], r);
      EXPECT_EQ(all[2 * r + 1], 10 * r);
    }
    char text[8] = {};
    if (rank == 2) std::memcpy(text, "from 2", 7);
    ASSERT_TRUE(comm.Broadcast(text, sizeof(text), 2).ok());
    EXPECT_STREQ(text, "from 2");
    EXPECT_EQ(comm.Broadcast(text, sizeof(text), 3).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(comm.Barrier().ok());
    EXPECT_TRUE(CheckSameModel(comm, "abc/f32").ok());
    const absl::Status differ = CheckSameModel(comm, rank == 1 ? "abd/f32" : "abc/f32");
    EXPECT_EQ(differ.code(), absl::StatusCode::kFailedPrecondition) << differ;
    EXPECT_NE(differ.message().find("rank 1 has abd/f32"), std::string::npos) << differ;
  });
}

// A peer whose connections closed: the next collective fails, as UNAVAILABLE when the closed
// pair is seen, at worst at the collective timeout (a send in flight is not woken by the closed
// pair in Gloo 0.5), and the communicator stays broken.
TEST(GlooCommunicatorTest, ADeadPeerFailsTheOthersWithinTheTimeout) {
  RunGroup(
      2,
      [&](int rank, Communicator& comm) {
        ASSERT_TRUE(comm.Barrier().ok());
        if (rank == 1) {
          comm.Abort();  // as a process that died: its connections close
          return;
        }
        std::this_thread::sleep_for(milliseconds(200));
        float x[4] = {1, 2, 3, 4};
        const auto t0 = Clock::now();
        const absl::Status s = comm.AllReduceSum(x, 4);
        EXPECT_TRUE(absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) << s;
        EXPECT_NE(s.message().find("rank 0 of 2"), std::string::npos) << s;
        EXPECT_LT(Seconds(t0), 3.0 + 2.0);
        // Broken for good: every later call fails at once.
        EXPECT_FALSE(comm.Barrier().ok());
      },
      milliseconds(3000));
}

TEST(GlooCommunicatorTest, AHungPeerTripsTheCollectiveTimeout) {
  RunGroup(
      2,
      [&](int rank, Communicator& comm) {
        ASSERT_TRUE(comm.Barrier().ok());
        if (rank == 1) {
          std::this_thread::sleep_for(milliseconds(3000));  // never joins the all-reduce
          return;
        }
        float x[4] = {1, 2, 3, 4};
        const auto t0 = Clock::now();
        const absl::Status s = comm.AllReduceSum(x, 4);
        const double took = Seconds(t0);
        EXPECT_FALSE(s.ok());
        EXPECT_GE(took, 0.9) << s;
        EXPECT_LT(took, 2.9) << s;
      },
      milliseconds(1000));
}

// ---------------------------------------------------------------------------------------------
// The sharded model

constexpr int kVocab = 99;

testing::TinyConfig ShardableConfig(DType dtype) {
  testing::TinyConfig c;
  c.vocab = kVocab;  // not a multiple of the degree: the last rank's share of the head is short
  c.hidden = 128;
  c.ffn = 256;
  c.heads = 8;
  c.kv_heads = 4;  // GQA: two query heads per KV head
  c.layers = 2;
  c.dtype = dtype;
  c.precision = cpu::Precision::kF32;
  c.seed = 7;
  return c;
}

struct RankRun {
  std::vector<float> logits;         // prefill, every row
  std::vector<float> tree_logits;    // a 4-node tree after the prefill
  std::vector<int32_t> greedy;       // 32 greedy tokens
  std::vector<float> batch_logits;   // the tree's request beside another in one ForwardBatch
  std::vector<int32_t> tree_argmax;  // the tree again with argmax_only: one id per node
  // One pass of the argmax_only tree beside a prefill that wants its logits (both LM-head
  // collectives in one pass): the tree's ids, the prefill's logits.
  std::vector<int32_t> mixed_argmax;
  std::vector<float> mixed_logits;
};

const std::vector<int32_t> kPrompt = {3, 17, 42, 5, 88, 61, 9, 23};
const std::vector<int32_t> kTree = {11, 12, 13, 14};
const std::vector<int32_t> kParents = {-1, 0, 0, 1};

RankRun RunModel(const LlamaModel& m) {
  RankRun out;
  auto cache = m.NewCache(256);
  ForwardRequest req;
  req.tokens = kPrompt;
  req.logits = LogitsMode::kAll;
  auto r = m.Forward(*cache, req);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  out.logits = r->logits;
  const int64_t prefix = static_cast<int64_t>(kPrompt.size());
  cache->set_length(prefix);
  ForwardRequest tree;
  tree.tokens = kTree;
  tree.parents = kParents;
  auto t = m.Forward(*cache, tree);
  EXPECT_TRUE(t.ok()) << t.status();
  if (t.ok()) out.tree_logits = t->logits;
  cache->set_length(prefix);  // the tree again, at the same slots
  // The same tree beside a prefill of another sequence.
  auto other = m.NewCache(256);
  ForwardRequest reqs[2] = {tree, req};
  KvCache* caches[2] = {cache.get(), other.get()};
  auto b = m.ForwardBatch(caches, reqs);
  EXPECT_TRUE(b.ok()) << b.status();
  if (b.ok()) out.batch_logits = (*b)[0].logits;
  cache->set_length(prefix);
  tree.argmax_only = true;
  auto a = m.Forward(*cache, tree);
  EXPECT_TRUE(a.ok()) << a.status();
  if (a.ok()) {
    EXPECT_TRUE(a->logits.empty());
    out.tree_argmax = a->argmax;
  }
  cache->set_length(prefix);
  auto fresh = m.NewCache(256);
  ForwardRequest mixed[2] = {tree, req};
  KvCache* mixed_caches[2] = {cache.get(), fresh.get()};
  auto mb = m.ForwardBatch(mixed_caches, mixed);
  EXPECT_TRUE(mb.ok()) << mb.status();
  if (mb.ok()) {
    out.mixed_argmax = (*mb)[0].argmax;
    out.mixed_logits = (*mb)[1].logits;
  }
  GenerateOptions o;
  o.max_tokens = 32;
  o.ignore_eos = true;
  auto g = GenerateVanilla(m, kPrompt, o, nullptr);
  EXPECT_TRUE(g.ok()) << g.status();
  if (g.ok()) out.greedy = g->token_ids;
  return out;
}

std::vector<int32_t> RowArgmax(const std::vector<float>& logits, int vocab) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + vocab <= logits.size(); i += vocab) {
    ids.push_back(cpu::Argmax(logits.data() + i, vocab));
  }
  return ids;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

TEST(TensorParallelModelTest, ShardsMatchTheWholeModel) {
  for (DType dtype : {DType::kF32, DType::kQ8_0}) {
    auto whole = testing::MakeTinyLlama(ShardableConfig(dtype));
    ASSERT_TRUE(whole.ok()) << whole.status();
    const RankRun want = RunModel(**whole);
    ASSERT_EQ(want.tree_argmax, RowArgmax(want.tree_logits, kVocab));  // the host's argmax
    ASSERT_EQ(want.mixed_argmax, want.tree_argmax);
    ASSERT_EQ(want.mixed_logits, want.logits);
    float scale = 0;
    for (float v : want.logits) scale = std::max(scale, std::fabs(v));
    for (int world : {2, 4}) {
      std::vector<RankRun> got(world);
      RunGroup(world, [&](int rank, Communicator& comm) {
        testing::TinyConfig c = ShardableConfig(dtype);
        c.comm = std::shared_ptr<Communicator>(&comm, [](Communicator*) {});
        auto m = testing::MakeTinyLlama(c);
        ASSERT_TRUE(m.ok()) << m.status();
        EXPECT_EQ((*m)->backend().name(), "cpu-tp");
        got[rank] = RunModel(**m);
      });
      for (int r = 0; r < world; ++r) {
        SCOPED_TRACE(::testing::Message()
                     << DTypeName(dtype) << " world " << world << " rank " << r);
        // Partial sums in another order than the whole matmul's: close, not equal.
        EXPECT_LT(MaxAbsDiff(got[r].logits, want.logits), 1e-4f * scale);
        EXPECT_LT(MaxAbsDiff(got[r].tree_logits, want.tree_logits), 1e-4f * scale);
        EXPECT_EQ(got[r].greedy, want.greedy);
        // Every rank holds the same bits, and a request's result does not depend on the
        // requests beside it (the all-reduce sums in rank order whatever the rows).
        EXPECT_EQ(got[r].logits, got[0].logits);
        EXPECT_EQ(got[r].batch_logits, got[r].tree_logits);
        // The vocabulary-parallel argmax (one (maximum, index) pair per rank and row) is the
        // argmax of the gathered logits, and the whole model's.
        EXPECT_EQ(got[r].tree_argmax, RowArgmax(got[r].tree_logits, kVocab));
        EXPECT_EQ(got[r].tree_argmax, want.tree_argmax);
        EXPECT_EQ(got[r].mixed_argmax, got[r].tree_argmax);
        EXPECT_EQ(got[r].mixed_logits, got[r].logits);
      }
    }
  }
}

TEST(TensorParallelModelTest, SpeculativeOutputEqualsVanillaUnderTensorParallelism) {
  RunGroup(2, [&](int, Communicator& comm) {
    testing::TinyConfig c = ShardableConfig(DType::kQ8_0);
    c.comm = std::shared_ptr<Communicator>(&comm, [](Communicator*) {});
    auto m = testing::MakeTinyLlama(c);
    ASSERT_TRUE(m.ok()) << m.status();
    auto head = testing::MakeRandomEagleHead(**m, 5);
    ASSERT_TRUE(head.ok()) << head.status();
    GenerateOptions o;
    o.max_tokens = 40;
    o.ignore_eos = true;
    auto vanilla = GenerateVanilla(**m, kPrompt, o, nullptr);
    ASSERT_TRUE(vanilla.ok()) << vanilla.status();
    for (TreeMode mode : {TreeMode::kChain, TreeMode::kDynamic}) {
      EagleDraftModel drafter(head->get(), 512);
      TreeOptions to;
      to.mode = mode;
      SpeculativeStats stats;
      auto spec = GenerateSpeculative(**m, drafter, kPrompt, o, to, nullptr, &stats);
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_EQ(spec->token_ids, vanilla->token_ids) << TreeModeName(mode);
      EXPECT_GT(stats.steps, 0);
    }
  });
}

TEST(TensorParallelModelTest, RefusesDegreesThatSplitAHeadOrABlock) {
  // 3 does not divide 4 KV heads.
  RunGroup(3, [&](int, Communicator& comm) {
    testing::TinyConfig c = ShardableConfig(DType::kF32);
    c.comm = std::shared_ptr<Communicator>(&comm, [](Communicator*) {});
    auto m = testing::MakeTinyLlama(c);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("degrees that do: 1 2 4"), std::string::npos) << m.status();
  });
  // o's 64 columns in 4 shares of 16: below the kernels' 32-column unit (and a Q4_0 block).
  RunGroup(4, [&](int, Communicator& comm) {
    testing::TinyConfig c = ShardableConfig(DType::kQ4_0);
    c.hidden = 64;
    c.heads = 4;
    c.kv_heads = 4;
    c.comm = std::shared_ptr<Communicator>(&comm, [](Communicator*) {});
    auto m = testing::MakeTinyLlama(c);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("multiples of 32; degrees that do: 1 2"), std::string::npos)
        << m.status();
  });
}

}  // namespace
}  // namespace eagle
