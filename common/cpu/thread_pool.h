// The CPU backend's thread pool: a fixed set of worker threads that run parallel loops together
// with the thread that calls them (a forward pass is driven from whichever thread runs it: the
// verifier's engine thread, a drafter's handler thread, a tool's main thread).
//
// How a loop runs. ParallelFor(n, grain, fn) cuts [0, n) into chunks of `grain` items and deals
// them out in contiguous shares, one per thread (the caller's first). Each thread claims the
// chunks of its own share with a compare-and-swap on that share's cache line (so in the common
// case no line moves between cores), then steals unclaimed chunks from the other shares. The
// caller waits only for chunks that were claimed and are still running. So the caller never
// waits for a worker that has not started: a worker that is asleep, slow to wake or preempted
// by another process simply finds its share taken, and the loop runs at the speed of the threads
// that are there. There is no barrier per loop and no hand-off through the kernel.
//
// Waiting. After its last chunk a worker spins (pause, with a sched_yield every few
// microseconds so that other runnable threads on its core get it) for `spin_us`, which covers
// the gaps between the loops of one forward pass and between back-to-back passes, then parks on
// a futex (std::atomic::wait) and costs nothing until the next loop wakes it. The caller wakes
// parked workers only when there are any (one load otherwise). A thread that knows the pool
// will be idle for longer (the verifier's engine with nothing queued, a drafter waiting on the
// verifier) calls Rest(), and spinning workers park at once instead of holding cores that other
// threads and processes on the machine need.
//
// Results never depend on the pool: a chunk's items are computed the same way whichever thread
// claims it, so kernels that compute each output element by a fixed sequence of operations stay
// batch invariant and bit-identical for every thread count (tests/unit/thread_pool_test.cc).
//
// Thread contract: ParallelFor may be called from any thread, also concurrently and from inside
// a running loop. One loop at a time uses the workers; a call made while another caller's loop
// holds them runs inline on its own thread (same results, no waiting for the other loop).
#ifndef EAGLE_COMMON_CPU_THREAD_POOL_H_
#define EAGLE_COMMON_CPU_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle::cpu {

struct ThreadPoolOptions {
  int num_threads = 1;   // threads that run a loop, the caller included (>= 1)
  double spin_us = 200;  // a worker's spin after its last chunk before it parks
  // Pin worker i to the (i + 1)-th CPU of the process's affinity mask (the caller keeps the
  // first), where the mask has at least num_threads CPUs; otherwise workers float.
  bool pin = false;
};

class ThreadPool {
 public:
  explicit ThreadPool(const ThreadPoolOptions& options);
  // Options for `num_threads` (0 = every CPU this process may run on: its affinity mask, capped
  // by a cgroup CPU quota rounded up, as a Kubernetes CPU limit sets); INVALID_ARGUMENT outside
  // [0, 1024].
  static absl::StatusOr<ThreadPoolOptions> OptionsForThreads(int num_threads);
  // A shared pool of `num_threads` (as above), workers pinned if `pin`, spinning `spin_us` (< 0:
  // the default): what a binary's --threads makes. INVALID_ARGUMENT for a spin outside
  // [0, 1e6] us.
  static absl::StatusOr<std::shared_ptr<ThreadPool>> ForThreads(int num_threads, bool pin = false,
                                                                double spin_us = -1);
  ~ThreadPool();  // joins the workers (no loop may be running)
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }
  const ThreadPoolOptions& options() const { return options_; }
  // Workers actually pinned (0 when options.pin is off or the mask is too small).
  int pinned() const { return pinned_; }

  // Runs fn(begin, end) on consecutive chunks of `grain` items covering [0, n) (wider chunks when
  // that would make more than 255 per thread), on the caller and the workers; returns when every
  // chunk has run. fn must not throw.
  template <typename Fn>
  void ParallelFor(int64_t n, int64_t grain, const Fn& fn) {
    Run(n, grain, &fn,
        [](const void* f, int64_t b, int64_t e) { (*static_cast<const Fn*>(f))(b, e); });
  }
  // Parks the workers that are spinning, now rather than after spin_us (the next loop wakes
  // them as usual). For a caller that is about to wait on something other than the pool.
  void Rest();
  // Workers parked (or about to park) right now.
  int parked() const { return sleepers_.load(std::memory_order_relaxed); }

  // A grain that gives each thread about `chunks_per_thread` chunks of n items.
  int64_t Grain(int64_t n, int chunks_per_thread = 4) const;

  struct Stats {
    int64_t loops = 0;         // ParallelFor calls that used the workers
    int64_t inline_loops = 0;  // calls run on the caller alone (pool busy, 1 thread, tiny n)
    int64_t chunks_by_workers = 0;
    int64_t chunks_by_callers = 0;
    int64_t wakes = 0;  // loops that had to wake parked workers
    int64_t rests = 0;  // Rest() calls
  };
  Stats stats() const;
  // Human-readable: threads, pinning, spin.
  std::string Describe() const;

  // Tests: while set, workers claim nothing (so the caller must run every chunk itself).
  void SetWorkersIdleForTesting(bool idle) { workers_idle_.store(idle); }

 private:
  using Invoke = void (*)(const void* fn, int64_t begin, int64_t end);
  // One share's claim state: epoch << 16 | next_chunk << 8 | end_chunk (chunk indices relative to
  // the share's first chunk), alone on its cache line.
  struct alignas(64) Share {
    std::atomic<uint64_t> word{0};
  };
  void Run(int64_t n, int64_t grain, const void* fn, Invoke invoke);
  // Claims and runs chunks of the job published as `epoch`, starting with share `home`, until
  // none are left; returns how many it ran.
  int64_t RunChunks(uint64_t epoch, int home);
  // Claims the next chunk of share s in job `epoch` (-1: none left, or the job is over).
  int64_t Claim(uint64_t epoch, int s, int64_t chunks, int shares);
  void WorkerLoop(int index);

  const ThreadPoolOptions options_;
  std::vector<std::thread> workers_;
  std::unique_ptr<Share[]> shares_;
  int pinned_ = 0;

  // The current job: epoch_ is published (seq_cst) after the descriptor below, which stays
  // unchanged until every chunk has run. Fields that different threads write in every loop sit
  // on cache lines of their own.
  alignas(64) std::atomic<uint64_t> epoch_{0};
  alignas(64) std::atomic<int64_t> finished_{0};  // chunks of the current job that have run
  alignas(64) std::atomic<const void*> fn_{nullptr};
  std::atomic<Invoke> invoke_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<int64_t> grain_{1};
  std::atomic<int64_t> chunks_{0};
  std::atomic<int> num_shares_{0};
  alignas(64) std::atomic<bool> busy_{false};  // a caller holds the workers

  // Parking: workers wait on park_seq_; a caller bumps it and notifies when sleepers_ > 0.
  alignas(64) std::atomic<uint32_t> park_seq_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> workers_idle_{false};
  // The epoch at the last Rest(): a worker that has seen this job and no later one parks.
  std::atomic<uint64_t> rest_epoch_{~uint64_t{0}};

  alignas(64) std::atomic<int64_t> loops_{0}, inline_loops_{0},
      chunks_by_callers_{0}, wakes_{0}, rests_{0};
  alignas(64) std::atomic<int64_t> chunks_by_workers_{0};
};

// CPUs that the cgroup CPU quota under `root` allows, rounded up (cgroup v2 cpu.max, else v1
// cpu/cpu.cfs_quota_us over cpu/cpu.cfs_period_us); 0 when there is no quota or no such file.
int CgroupCpuLimit(const std::string& root = "/sys/fs/cgroup");

// ParallelFor on `pool`, or chunk after chunk on the calling thread when pool is null.
template <typename Fn>
void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain, const Fn& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(n, grain, fn);
    return;
  }
  grain = grain < 1 ? 1 : grain;
  for (int64_t b = 0; b < n; b += grain) fn(b, b + grain < n ? b + grain : n);
}
// pool->Grain(n, chunks_per_thread), or n without a pool. (Out of line: ISA-specific kernel
// files include this header and must not emit their own copies of shared inline code.)
int64_t GrainFor(const ThreadPool* pool, int64_t n, int chunks_per_thread = 4);

}  // namespace eagle::cpu

#endif  // EAGLE_COMMON_CPU_THREAD_POOL_H_
