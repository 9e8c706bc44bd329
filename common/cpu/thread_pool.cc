#include "common/cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/thread_name.h"

namespace eagle::cpu {
namespace {

// A share's word: epoch (48 bits) | next chunk (8) | end chunk (8), chunks relative to the
// share's start. 48 bits of epoch do not wrap in the life of a process.
constexpr int64_t kMaxChunksPerShare = 255;
constexpr uint64_t kEpochMask = (uint64_t{1} << 48) - 1;

uint64_t ShareEpoch(uint64_t w) { return w >> 16; }
int64_t ShareNext(uint64_t w) { return static_cast<int64_t>((w >> 8) & 0xFF); }
int64_t ShareEnd(uint64_t w) { return static_cast<int64_t>(w & 0xFF); }
uint64_t ShareWord(uint64_t epoch, int64_t next, int64_t end) {
  return (epoch << 16) | (static_cast<uint64_t>(next) << 8) | static_cast<uint64_t>(end);
}
// Chunks [ShareBegin(s), ShareBegin(s + 1)) form share s of `shares`.
int64_t ShareBegin(int s, int64_t chunks, int shares) { return s * chunks / shares; }

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

int CgroupCpuLimit(const std::string& root) {
  // cgroup v2: "<quota> <period>" or "max <period>" in cpu.max.
  int64_t quota = -1, period = 0;
  if (std::ifstream v2(root + "/cpu.max"); v2) {
    std::string q;
    if (v2 >> q >> period && q != "max") quota = std::atoll(q.c_str());
  } else {
    // cgroup v1: cpu.cfs_quota_us (-1 = none) and cpu.cfs_period_us.
    std::ifstream q1(root + "/cpu/cpu.cfs_quota_us"), p1(root + "/cpu/cpu.cfs_period_us");
    if (!(q1 >> quota) || !(p1 >> period)) return 0;
  }
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<int>(std::max<int64_t>(1, (quota + period - 1) / period));
}

absl::StatusOr<ThreadPoolOptions> ThreadPool::OptionsForThreads(int num_threads) {
  if (num_threads < 0 || num_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be in [0, 1024] (0 = every CPU), not ", num_threads));
  }
  ThreadPoolOptions o;
  if (num_threads == 0) {
    const size_t allowed = AllowedCpus().size();
    num_threads = allowed > 0 ? static_cast<int>(allowed)
                              : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    // A container's CPU limit (a CFS quota) leaves the affinity mask at every CPU of the node;
    // more threads than the quota would only be throttled in turn.
    if (const int limit = CgroupCpuLimit(); limit > 0) num_threads = std::min(num_threads, limit);
  }
  o.num_threads = num_threads;
  return o;
}

absl::StatusOr<std::shared_ptr<ThreadPool>> ThreadPool::ForThreads(int num_threads, bool pin,
                                                                   double spin_us) {
  absl::StatusOr<ThreadPoolOptions> o = OptionsForThreads(num_threads);
  if (!o.ok()) return o.status();
  if (spin_us > 1e6 || std::isnan(spin_us)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spin must be in [0, 1000000] microseconds, not ", spin_us));
  }
  if (spin_us >= 0) o->spin_us = spin_us;
  o->pin = pin;
  return std::make_shared<ThreadPool>(*o);
}

ThreadPool::ThreadPool(const ThreadPoolOptions& options) : options_(options) {
  const int n = std::max(1, options.num_threads);
  const std::vector<int> cpus = options.pin ? AllowedCpus() : std::vector<int>{};
  const bool pin = options.pin && static_cast<int>(cpus.size()) >= n;
  shares_ = std::make_unique<Share[]>(n);
  workers_.reserve(n - 1);
  for (int i = 0; i + 1 < n; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
    if (pin) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpus[i + 1], &set);
      if (pthread_setaffinity_np(workers_.back().native_handle(), sizeof(set), &set) == 0) {
        ++pinned_;
      }
    }
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  park_seq_.fetch_add(1, std::memory_order_seq_cst);
  park_seq_.notify_all();
  for (std::thread& t : workers_) t.join();
}

int64_t ThreadPool::Grain(int64_t n, int chunks_per_thread) const {
  const int64_t chunks = static_cast<int64_t>(num_threads()) * std::max(1, chunks_per_thread);
  return std::max<int64_t>(1, (n + chunks - 1) / chunks);
}

int64_t GrainFor(const ThreadPool* pool, int64_t n, int chunks_per_thread) {
  return pool != nullptr ? pool->Grain(n, chunks_per_thread) : std::max<int64_t>(1, n);
}

ThreadPool::Stats ThreadPool::stats() const {
  Stats s;
  s.loops = loops_.load(std::memory_order_relaxed);
  s.inline_loops = inline_loops_.load(std::memory_order_relaxed);
  s.chunks_by_workers = chunks_by_workers_.load(std::memory_order_relaxed);
  s.chunks_by_callers = chunks_by_callers_.load(std::memory_order_relaxed);
  s.wakes = wakes_.load(std::memory_order_relaxed);
  s.rests = rests_.load(std::memory_order_relaxed);
  return s;
}

std::string ThreadPool::Describe() const {
  return absl::StrCat(num_threads(), " threads (caller + ", workers_.size(), " workers",
                      pinned_ > 0 ? absl::StrCat(", ", pinned_, " pinned") : std::string(),
                      ", spin ", options_.spin_us, " us)");
}

void ThreadPool::Run(int64_t n, int64_t grain, const void* fn, Invoke invoke) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t chunks = (n + grain - 1) / grain;
  // One chunk, no workers, or the workers taken by another caller's loop: run it here.
  if (chunks == 1 || workers_.empty() || busy_.exchange(true, std::memory_order_acquire)) {
    inline_loops_.fetch_add(1, std::memory_order_relaxed);
    for (int64_t b = 0; b < n; b += grain) invoke(fn, b, std::min(n, b + grain));
    return;
  }
  const int threads = num_threads();
  const int64_t max_chunks = kMaxChunksPerShare * threads;
  if (chunks > max_chunks) {  // wider chunks: a share's word counts at most 255
    grain = (n + max_chunks - 1) / max_chunks;
    chunks = (n + grain - 1) / grain;
  }
  loops_.fetch_add(1, std::memory_order_relaxed);
  fn_.store(fn, std::memory_order_relaxed);
  invoke_.store(invoke, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  grain_.store(grain, std::memory_order_relaxed);
  chunks_.store(chunks, std::memory_order_relaxed);
  // Every share holds at least one chunk (a share no one touches would look finished).
  num_shares_.store(static_cast<int>(std::min<int64_t>(threads, chunks)),
                    std::memory_order_relaxed);
  finished_.store(0, std::memory_order_relaxed);
  const uint64_t epoch = (epoch_.load(std::memory_order_relaxed) + 1) & kEpochMask;
  // seq_cst: ordered before the sleepers_ load below (a worker going to sleep does the mirror).
  epoch_.store(epoch, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    wakes_.fetch_add(1, std::memory_order_relaxed);
    park_seq_.fetch_add(1, std::memory_order_seq_cst);
    park_seq_.notify_all();
  }
  const int64_t mine = RunChunks(epoch, 0);
  chunks_by_callers_.fetch_add(mine, std::memory_order_relaxed);
  // Every chunk is claimed; wait for those still running on workers.
  for (int iter = 1; finished_.load(std::memory_order_acquire) < chunks; ++iter) {
    CpuRelax();
    if ((iter & 1023) == 0) sched_yield();  // a worker with a chunk may be off its core
  }
  busy_.store(false, std::memory_order_release);
}

int64_t ThreadPool::Claim(uint64_t epoch, int s, int64_t chunks, int shares) {
  std::atomic<uint64_t>& word = shares_[s].word;
  uint64_t w = word.load(std::memory_order_acquire);
  for (;;) {
    int64_t next, end;
    if (ShareEpoch(w) == epoch) {
      next = ShareNext(w);
      end = ShareEnd(w);
    } else {
      // Untouched in this job, if the job is still the current one: every job touches all its
      // shares before it ends, so a share word of another epoch is older than a live job.
      if (epoch_.load(std::memory_order_acquire) != epoch) return -1;
      next = 0;
      end = ShareBegin(s + 1, chunks, shares) - ShareBegin(s, chunks, shares);
    }
    if (next >= end) return -1;
    if (word.compare_exchange_weak(w, ShareWord(epoch, next + 1, end), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      return ShareBegin(s, chunks, shares) + next;
    }
  }
}

int64_t ThreadPool::RunChunks(uint64_t epoch, int home) {
  const void* fn = fn_.load(std::memory_order_relaxed);
  const Invoke invoke = invoke_.load(std::memory_order_relaxed);
  const int64_t n = n_.load(std::memory_order_relaxed);
  const int64_t grain = grain_.load(std::memory_order_relaxed);
  const int64_t chunks = chunks_.load(std::memory_order_relaxed);
  const int shares = num_shares_.load(std::memory_order_relaxed);
  // The descriptor read above belongs to `epoch` if a claim below succeeds: its chunks are not
  // all done then, so no caller can have started to write the next job's descriptor.
  if (shares < 1) return 0;
  int64_t ran = 0;
  // The own share first, then the others' in turn.
  for (int k = 0; k < shares; ++k) {
    const int s = (home + k) % shares;
    for (int64_t c = Claim(epoch, s, chunks, shares); c >= 0; c = Claim(epoch, s, chunks, shares)) {
      invoke(fn, c * grain, std::min(n, (c + 1) * grain));
      ++ran;
    }
  }
  if (ran > 0) finished_.fetch_add(ran, std::memory_order_release);
  return ran;
}

void ThreadPool::Rest() {
  rests_.fetch_add(1, std::memory_order_relaxed);
  rest_epoch_.store(epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);
}

void ThreadPool::WorkerLoop(int index) {
  NameThisThread(absl::StrCat("eagle-pool-", index + 1));
  using SteadyClock = std::chrono::steady_clock;
  const auto spin = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double, std::micro>(options_.spin_us));
  const int home = index + 1;  // share 0 is the caller's
  uint64_t seen = epoch_.load(std::memory_order_acquire);
  while (!stop_.load(std::memory_order_relaxed)) {
    // Spin for new work, yielding the core now and then, until spin_us have passed.
    const auto deadline = SteadyClock::now() + spin;
    bool found = false;
    for (int iter = 1;; ++iter) {
      if (epoch_.load(std::memory_order_acquire) != seen) {
        found = true;
        break;
      }
      if (stop_.load(std::memory_order_relaxed)) return;
      if (rest_epoch_.load(std::memory_order_relaxed) == seen) break;  // Rest(): park now
      CpuRelax();
      if ((iter & 63) == 0) {
        if (SteadyClock::now() >= deadline) break;
        if ((iter & 1023) == 0) sched_yield();
      }
    }
    if (!found) {
      // Park until a caller bumps park_seq_ (re-checking after announcing ourselves, so that a
      // job published meanwhile is not missed).
      const uint32_t seq = park_seq_.load(std::memory_order_seq_cst);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (epoch_.load(std::memory_order_seq_cst) == seen &&
          !stop_.load(std::memory_order_seq_cst)) {
        park_seq_.wait(seq, std::memory_order_seq_cst);
      }
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    seen = epoch_.load(std::memory_order_acquire);
    if (workers_idle_.load(std::memory_order_relaxed)) continue;
    const int64_t ran = RunChunks(seen, home);
    if (ran > 0) chunks_by_workers_.fetch_add(ran, std::memory_order_relaxed);
  }
}

}  // namespace eagle::cpu
