// The NCCL communicator on the GPUs this machine has: one rank alone (every collective runs),
// and where there are several GPUs one rank per GPU as threads: the all-reduce's rank-order sum
// bit for bit (batch invariant), all-gather, broadcast, and a rank that never joins tripping the
// timeout. Skips without a CUDA device.
#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "common/cuda/nccl_communicator.h"
#include "common/dist/tcp_store.h"
#include "gtest/gtest.h"

namespace eagle {
namespace {

int Devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::vector<float> RankData(int rank, int64_t n) {
  std::mt19937 rng(1000 + rank);
  std::uniform_real_distribution<float> u(-1000.0f, 1000.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng) * std::pow(10.0f, static_cast<float>(rng() % 7) - 3.0f);
  return v;
}

void RunGroup(int world, const std::function<void(int, Communicator&)>& fn,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(30000)) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  std::unique_ptr<TcpStoreServer> srv = *std::move(server);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    std::unique_ptr<TcpStoreServer> mine = r == 0 ? std::move(srv) : nullptr;
    threads.emplace_back([&, r, mine = std::move(mine)]() mutable {
      NcclGroupOptions o;
      o.rank = r;
      o.world_size = world;
      o.device = r;
      o.rendezvous = address;
      o.collective_timeout = timeout;
      auto comm = ConnectNcclGroup(o, std::move(mine));
      ASSERT_TRUE(comm.ok()) << comm.status();
      fn(r, **comm);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(NcclCommunicatorTest, CollectivesOnEveryGpuGiveTheRankOrderSum) {
  const int world = std::min(Devices(), 8);
  if (world == 0) GTEST_SKIP() << "no CUDA device";
  for (int64_t n : {1, 576, 4099}) {
    std::vector<std::vector<float>> x(world);
    for (int r = 0; r < world; ++r) x[r] = RankData(r, n);
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) {
      float acc = x[0][i];
      for (int r = 1; r < world; ++r) acc += x[r][i];
      want[i] = acc;
    }
    RunGroup(world, [&](int rank, Communicator& comm) {
      cudaSetDevice(rank);
      float* d = nullptr;
      ASSERT_EQ(cudaMalloc(&d, n * 4 * world), cudaSuccess);
      cudaMemcpy(d, x[rank].data(), n * 4, cudaMemcpyHostToDevice);
      ASSERT_TRUE(comm.AllReduceSum(d, n).ok());
      std::vector<float> got(n);
      cudaMemcpy(got.data(), d, n * 4, cudaMemcpyDeviceToHost);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), n * 4), 0) << "rank " << rank << " n " << n;
      // All-gather of each rank's first value, broadcast from the last rank, barrier.
      float* all = nullptr;
      ASSERT_EQ(cudaMalloc(&all, 4 * world), cudaSuccess);
      cudaMemcpy(d, x[rank].data(), 4, cudaMemcpyHostToDevice);
      ASSERT_TRUE(comm.AllGather(d, 4, all).ok());
      std::vector<float> firsts(world);
      cudaMemcpy(firsts.data(), all, 4 * world, cudaMemcpyDeviceToHost);
      for (int r = 0; r < world; ++r) EXPECT_EQ(firsts[r], x[r][0]);
      ASSERT_TRUE(comm.Broadcast(d, 4, world - 1).ok());
      float b = 0;
      cudaMemcpy(&b, d, 4, cudaMemcpyDeviceToHost);
      EXPECT_EQ(b, x[world - 1][0]);
      EXPECT_TRUE(comm.Barrier().ok());
      cudaFree(all);
      cudaFree(d);
    });
  }
}

TEST(NcclCommunicatorTest, ARankThatNeverJoinsTripsTheTimeout) {
  if (Devices() < 2) GTEST_SKIP() << "needs two GPUs";
  RunGroup(
      2,
      [&](int rank, Communicator& comm) {
        cudaSetDevice(rank);
        if (rank == 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(3000));
          return;
        }
        float* d = nullptr;
        ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
        const auto t0 = std::chrono::steady_clock::now();
        const absl::Status s = comm.AllReduceSum(d, 4);
        const double took =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
        EXPECT_LT(took, 2.5);
        cudaFree(d);
      },
      std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace eagle
