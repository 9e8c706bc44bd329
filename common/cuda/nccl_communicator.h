// The Communicator of GPU ranks: NCCL, one rank per GPU, its unique id handed out by rank 0 over
// the TCP rendezvous of common/dist/tcp_store.h. Buffers are device memory on the rank's GPU,
// whose contents the caller has finished writing (its stream synchronized: the communicator runs
// on a stream of its own); every call is complete when it returns. ncclCommInitRank itself has
// no bound (a rank that never joins leaves the others waiting at start). The bound on a collective
// is enforced by polling the stream and ncclCommGetAsyncError; past it the communicator is aborted
// (ncclCommAbort) and DEADLINE_EXCEEDED returned.
//
// In a build without -DEAGLE_WITH_CUDA=ON, ConnectNcclGroup returns UNIMPLEMENTED.
#ifndef EAGLE_COMMON_CUDA_NCCL_COMMUNICATOR_H_
#define EAGLE_COMMON_CUDA_NCCL_COMMUNICATOR_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/dist/communicator.h"

namespace eagle {

struct NcclGroupOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;  // the CUDA device of this rank
  // HOST:PORT of the rendezvous (rank 0 listens there unless it passes its own server).
  std::string rendezvous = "127.0.0.1:29500";
  std::chrono::milliseconds connect_timeout{60000};
  std::chrono::milliseconds collective_timeout{30000};
};

class TcpStoreServer;
// Rank 0 may pass a rendezvous server it already started (as ConnectGlooGroup).
absl::StatusOr<std::unique_ptr<Communicator>> ConnectNcclGroup(
    const NcclGroupOptions& options, std::unique_ptr<TcpStoreServer> server = nullptr);

}  // namespace eagle

#endif  // EAGLE_COMMON_CUDA_NCCL_COMMUNICATOR_H_
