// ConnectNcclGroup in a build without CUDA.
#include "common/cuda/nccl_communicator.h"
#include "common/dist/tcp_store.h"

namespace eagle {

absl::StatusOr<std::unique_ptr<Communicator>> ConnectNcclGroup(const NcclGroupOptions&,
                                                               std::unique_ptr<TcpStoreServer>) {
  return absl::UnimplementedError(
      "NCCL tensor parallelism needs a build with -DEAGLE_WITH_CUDA=ON");
}

}  // namespace eagle
