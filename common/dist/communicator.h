// The collectives that tensor parallelism needs, behind one interface with two implementations
// over existing libraries: Gloo over TCP for CPU ranks (gloo_communicator.h) and NCCL for GPU
// ranks (common/cuda/nccl_communicator.h, in a build with -DEAGLE_WITH_CUDA=ON).
//
// Every rank of a group calls the same collectives in the same order (a collective is matched by
// its place in that order); one pass at a time per communicator. Buffers are host memory for the
// Gloo implementation and device memory for NCCL's.
//
// Errors: a peer that died, a connection that broke and a collective that did not finish within
// the communicator's timeout all return UNAVAILABLE (DEADLINE_EXCEEDED for the timeout), and the
// communicator is then broken: every later call returns the same error. The group cannot be
// repaired; its processes exit and are started again.
#ifndef EAGLE_COMMON_DIST_COMMUNICATOR_H_
#define EAGLE_COMMON_DIST_COMMUNICATOR_H_

#include <chrono>
#include <cstdint>

#include "absl/status/status.h"

namespace eagle {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // data[i] := ((x_0[i] + x_1[i]) + x_2[i]) + ... + x_{W-1}[i], where x_r is rank r's `data`:
  // every rank ends with the same bits, summed in rank order whatever n is. That order, unlike
  // a ring's (whose chunking depends on n), keeps the sum batch invariant: a row's result does
  // not depend on the rows reduced beside it. It is done as an all-gather then a local sum, so
  // each rank receives (W - 1) * n floats (a ring all-reduce: 2 (W - 1) / W * n).
  virtual absl::Status AllReduceSum(float* data, int64_t n) = 0;
  // out[r * bytes, (r + 1) * bytes) := rank r's `in`, on every rank.
  virtual absl::Status AllGather(const void* in, int64_t bytes, void* out) = 0;
  // data := root's data, on every rank.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // A barrier with its own bound instead of the collective timeout: for waits that are long by
  // nature (ranks still loading their shares of a large model).
  virtual absl::Status BarrierWithin(std::chrono::milliseconds timeout) = 0;
  // Breaks the communicator from any thread: a collective blocked in it returns an error as
  // soon as the library lets it, and so does every later call.
  virtual void Abort() = 0;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_DIST_COMMUNICATOR_H_
