// The CPU thread pool: every item runs exactly once whatever the thread count, chunking and
// contention; concurrent and nested callers run inline instead of waiting; a caller whose workers
// take no part (asleep, descheduled) still finishes the loop alone; parked workers wake for the
// next loop; and the kernels give identical bits on every pool size.
#include "common/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace eagle::cpu {
namespace {

ThreadPoolOptions Threads(int n, double spin_us = 200) {
  ThreadPoolOptions o;
  o.num_threads = n;
  o.spin_us = spin_us;
  return o;
}

// Runs a loop over n items and checks each ran exactly once.
void ExpectEachOnce(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(n);
  const int64_t max_chunks = 255 * pool.num_threads();
  const int64_t widest = std::max(grain, (n + max_chunks - 1) / max_chunks);
  pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
    ASSERT_LE(0, b);
    ASSERT_LT(b, e);
    ASSERT_LE(e, n);
    ASSERT_LE(e - b, widest);
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "item " << i << " of " << n;
}

TEST(ThreadPoolTest, EveryItemRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(Threads(threads));
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 64, 5000}) ExpectEachOnce(pool, n, grain);
    }
  }
}

TEST(ThreadPoolTest, MoreItemsThanChunkSlotsAreSplitIntoLargerChunks) {
  // 200,000 items at grain 1 exceed the 65,535 chunks a job can hold; the pool widens the grain.
  ThreadPool pool(Threads(2));
  std::atomic<int64_t> sum{0};
  std::atomic<int64_t> widest{0};
  const int64_t n = 200000;
  pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
    int64_t s = 0;
    for (int64_t i = b; i < e; ++i) s += i;
    sum.fetch_add(s);
    int64_t w = widest.load();
    while (e - b > w && !widest.compare_exchange_weak(w, e - b)) {
    }
  });
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
  EXPECT_GE(widest.load(), 4);
}

TEST(ThreadPoolTest, ManyBackToBackLoopsKeepCounting) {
  // Thousands of short loops, as a forward pass issues them: no item lost or repeated across
  // job boundaries (the job word's epoch keeps late workers out of the next job).
  ThreadPool pool(Threads(3));
  std::vector<int64_t> counts(37, 0);
  for (int rep = 0; rep < 5000; ++rep) {
    pool.ParallelFor(37, 2, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++counts[i];  // each item owned by one chunk
    });
  }
  for (int64_t c : counts) EXPECT_EQ(c, 5000);
  const ThreadPool::Stats s = pool.stats();
  EXPECT_EQ(s.loops, 5000);
  EXPECT_EQ(s.chunks_by_callers + s.chunks_by_workers, 5000 * 19);
}

TEST(ThreadPoolTest, CallerFinishesAloneWhenWorkersTakeNoPart) {
  // The property that makes the pool robust on a busy machine: the caller never waits for a
  // worker that has not started a chunk.
  ThreadPool pool(Threads(4));
  pool.SetWorkersIdleForTesting(true);
  ExpectEachOnce(pool, 500, 1);
  EXPECT_EQ(pool.stats().chunks_by_workers, 0);
  EXPECT_EQ(pool.stats().chunks_by_callers, 500);
  pool.SetWorkersIdleForTesting(false);
  ExpectEachOnce(pool, 500, 1);
}

TEST(ThreadPoolTest, ConcurrentCallersRunInlineWhileTheWorkersAreTaken) {
  ThreadPool pool(Threads(2));
  std::atomic<bool> inside{false}, release{false};
  std::thread holder([&] {
    pool.ParallelFor(2, 1, [&](int64_t b, int64_t) {
      if (b == 0) {
        inside = true;
        while (!release) std::this_thread::yield();
      }
    });
  });
  while (!inside) std::this_thread::yield();
  // The pool is held by `holder`'s loop: this loop must not wait for it.
  std::vector<int> seen(10, 0);
  const auto me = std::this_thread::get_id();
  bool all_here = true;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) {
    all_here = all_here && std::this_thread::get_id() == me;
    for (int64_t i = b; i < e; ++i) ++seen[i];
  });
  EXPECT_TRUE(all_here);
  for (int v : seen) EXPECT_EQ(v, 1);
  EXPECT_GE(pool.stats().inline_loops, 1);
  release = true;
  holder.join();
}

TEST(ThreadPoolTest, NestedLoopsRunInline) {
  ThreadPool pool(Threads(3));
  std::vector<std::atomic<int>> hits(8 * 16);
  pool.ParallelFor(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.ParallelFor(16, 4, [&](int64_t jb, int64_t je) {
        for (int64_t j = jb; j < je; ++j) hits[i * 16 + j].fetch_add(1);
      });
    }
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPoolTest, ParkedWorkersWakeForTheNextLoop) {
  ThreadPool pool(Threads(2, /*spin_us=*/50));
  ExpectEachOnce(pool, 100, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // far past the spin: parked
  // The worker must be woken and take part eventually: run loops whose chunks wait long enough
  // for it to wake, until one chunk ran on a worker.
  const auto me = std::this_thread::get_id();
  std::atomic<bool> worker_ran{false};
  for (int rep = 0; rep < 200 && !worker_ran; ++rep) {
    pool.ParallelFor(64, 1, [&](int64_t, int64_t) {
      if (std::this_thread::get_id() != me) worker_ran = true;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(worker_ran);
  EXPECT_GE(pool.stats().wakes, 1);
}

// Waits up to 10 s for `want` parked workers; returns the last count seen.
int WaitForParked(const ThreadPool& pool, int want) {
  int parked = pool.parked();
  for (int i = 0; i < 10000 && parked != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    parked = pool.parked();
  }
  return parked;
}

TEST(ThreadPoolTest, RestParksSpinningWorkersAtOnce) {
  ThreadPool pool(Threads(3, /*spin_us=*/3e7));  // a spin far longer than the test
  ExpectEachOnce(pool, 100, 1);
  // Negative control: without Rest() the workers are still spinning a while after the loop.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(pool.parked(), 0);
  pool.Rest();
  EXPECT_EQ(WaitForParked(pool, 2), 2);
  EXPECT_EQ(pool.stats().rests, 1);
  // The next loop wakes them as usual.
  ExpectEachOnce(pool, 1000, 1);
  EXPECT_GE(pool.stats().wakes, 1);
}

TEST(ThreadPoolTest, CgroupCpuQuotaIsReadRoundedUp) {
  const std::string dir = ::testing::TempDir() + "/cgroup_test";
  std::filesystem::create_directories(dir + "/v2");
  std::filesystem::create_directories(dir + "/v1/cpu");
  auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  write(dir + "/v2/cpu.max", "150000 100000\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v2"), 2);
  write(dir + "/v2/cpu.max", "200000 100000\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v2"), 2);
  write(dir + "/v2/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v2"), 0);
  write(dir + "/v2/cpu.max", "garbage\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v2"), 0);
  write(dir + "/v1/cpu/cpu.cfs_quota_us", "50000\n");
  write(dir + "/v1/cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v1"), 1);
  write(dir + "/v1/cpu/cpu.cfs_quota_us", "-1\n");
  EXPECT_EQ(CgroupCpuLimit(dir + "/v1"), 0);
  EXPECT_EQ(CgroupCpuLimit(dir + "/none"), 0);
}

TEST(ThreadPoolTest, NullPoolRunsOnTheCaller) {
  int64_t covered = 0;
  ParallelFor(nullptr, 10, 3, [&](int64_t b, int64_t e) {
    EXPECT_EQ(b, covered);
    EXPECT_LE(e - b, 3);
    covered = e;
  });
  EXPECT_EQ(covered, 10);
  EXPECT_EQ(GrainFor(nullptr, 10), 10);
}

TEST(ThreadPoolTest, ThreadCountIsValidated) {
  EXPECT_FALSE(ThreadPool::OptionsForThreads(-1).ok());
  EXPECT_FALSE(ThreadPool::OptionsForThreads(5000).ok());
  auto all = ThreadPool::OptionsForThreads(0);
  ASSERT_TRUE(all.ok());
  EXPECT_GE(all->num_threads, 1);
  auto pool = ThreadPool::ForThreads(2, /*pin=*/true);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->num_threads(), 2);
  ExpectEachOnce(**pool, 100, 1);
}

}  // namespace
}  // namespace eagle::cpu
