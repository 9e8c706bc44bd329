#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/cuda/nccl_communicator.h"
#include "common/dist/tcp_store.h"

namespace eagle {
namespace {

// out[i] = ((g[0][i] + g[1][i]) + g[2][i]) + ...: the rank-order sum the interface promises.
__global__ void OrderedSum(const float* gathered, int world, int64_t n, float* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float acc = gathered[i];
  for (int r = 1; r < world; ++r) acc = __fadd_rn(acc, gathered[r * n + i]);
  out[i] = acc;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<TcpStoreServer> server, std::unique_ptr<TcpStoreClient> client,
                   ncclComm_t comm, cudaStream_t stream, int rank, int world, int device,
                   std::chrono::milliseconds timeout)
      : server_(std::move(server)),
        client_(std::move(client)),
        comm_(comm),
        stream_(stream),
        rank_(rank),
        world_(world),
        device_(device),
        timeout_(timeout) {}
  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);  // a broken one was aborted in Fail
    if (scratch_ != nullptr) cudaFree(scratch_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  absl::Status AllReduceSum(float* data, int64_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return error_;
    if (world_ == 1 || n == 0) return absl::OkStatus();
    cudaSetDevice(device_);
    const size_t need = static_cast<size_t>(world_) * n * sizeof(float);
    if (need > scratch_bytes_) {
      if (scratch_ != nullptr) cudaFree(scratch_);
      scratch_ = nullptr;
      if (cudaMalloc(&scratch_, need) != cudaSuccess) {
        scratch_bytes_ = 0;
        // This rank cannot join the collective the others are entering: the group is broken.
        return Fail(absl::ResourceExhaustedError("all-reduce scratch: cudaMalloc failed"));
      }
      scratch_bytes_ = need;
    }
    float* gathered = static_cast<float*>(scratch_);
    if (absl::Status s =
            Check("all-reduce", ncclAllGather(data, gathered, n, ncclFloat, comm_, stream_));
        !s.ok()) {
      return s;
    }
    const int threads = 256;
    OrderedSum<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream_>>>(
        gathered, world_, n, data);
    return Wait("all-reduce");
  }

  absl::Status AllGather(const void* in, int64_t bytes, void* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return error_;
    cudaSetDevice(device_);
    if (absl::Status s =
            Check("all-gather", ncclAllGather(in, out, bytes, ncclChar, comm_, stream_));
        !s.ok()) {
      return s;
    }
    return Wait("all-gather");
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return error_;
    if (root < 0 || root >= world_) {
      return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " is not a rank"));
    }
    cudaSetDevice(device_);
    if (absl::Status s =
            Check("broadcast", ncclBroadcast(data, data, bytes, ncclChar, root, comm_, stream_));
        !s.ok()) {
      return s;
    }
    return Wait("broadcast");
  }

  absl::Status Barrier() override { return BarrierWithin(timeout_); }

  absl::Status BarrierWithin(std::chrono::milliseconds timeout) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return error_;
    cudaSetDevice(device_);
    if (scratch_bytes_ < sizeof(float)) {
      if (scratch_ != nullptr) cudaFree(scratch_);
      scratch_ = nullptr;
      if (cudaMalloc(&scratch_, sizeof(float)) != cudaSuccess) {
        return Fail(absl::ResourceExhaustedError("barrier: cudaMalloc failed"));
      }
      scratch_bytes_ = sizeof(float);
    }
    if (absl::Status s = Check(
            "barrier", ncclAllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, stream_));
        !s.ok()) {
      return s;
    }
    return Wait("barrier", timeout);
  }

  void Abort() override {
    aborted_ = true;  // Wait() aborts the communicator at its next poll
  }

 private:
  // Breaks the communicator for good: ncclCommAbort ends the kernels still waiting on peers
  // (otherwise the stream, and any cudaFree after it, would wait forever).
  absl::Status Fail(absl::Status s) {
    if (!broken_) {
      broken_ = true;
      error_ = s;
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return error_;
  }

  absl::Status Check(const char* what, ncclResult_t r) {
    if (r == ncclSuccess) return absl::OkStatus();
    return Fail(
        absl::UnavailableError(absl::StrCat("tensor-parallel ", what, " failed on rank ", rank_,
                                            " of ", world_, ": ", ncclGetErrorString(r))));
  }

  // Polls the stream until the collective is done, NCCL reports an error, Abort is called or the
  // timeout passes.
  absl::Status Wait(const char* what) { return Wait(what, timeout_); }
  absl::Status Wait(const char* what, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return absl::OkStatus();
      if (e != cudaErrorNotReady) {
        return Fail(absl::InternalError(absl::StrCat("tensor-parallel ", what, " on rank ", rank_,
                                                     ": ", cudaGetErrorString(e))));
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        return Fail(
            absl::UnavailableError(absl::StrCat("tensor-parallel ", what, " failed on rank ", rank_,
                                                " of ", world_, ": ", ncclGetErrorString(async))));
      }
      if (aborted_) {
        return Fail(absl::UnavailableError("tensor-parallel group aborted"));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat("tensor-parallel ", what, " on rank ", rank_, " of ", world_,
                         " did not finish within ", timeout.count() / 1000.0, " s")));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  std::unique_ptr<TcpStoreServer> server_;
  std::unique_ptr<TcpStoreClient> client_;
  ncclComm_t comm_;
  cudaStream_t stream_;
  const int rank_, world_, device_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  void* scratch_ = nullptr;  // guarded by mu_
  size_t scratch_bytes_ = 0;
  bool broken_ = false;
  absl::Status error_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> ConnectNcclGroup(
    const NcclGroupOptions& o, std::unique_ptr<TcpStoreServer> server) {
  absl::StatusOr<Rendezvous> rv =
      JoinRendezvous(o.rank, o.world_size, o.rendezvous, std::move(server), o.connect_timeout);
  if (!rv.ok()) return rv.status();
  std::unique_ptr<TcpStoreClient>& client = rv->client;
  if (cudaSetDevice(o.device) != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", o.rank, ": no CUDA device ", o.device));
  }
  ncclUniqueId id;
  if (o.rank == 0) {
    if (ncclGetUniqueId(&id) != ncclSuccess) {
      return absl::InternalError("ncclGetUniqueId failed");
    }
    absl::Status s = client->Set("eagle-tp/nccl-id",
                                 std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
    if (!s.ok()) return s;
  } else {
    absl::StatusOr<std::string> v = client->Get("eagle-tp/nccl-id", o.connect_timeout);
    if (!v.ok()) return v.status();
    if (v->size() != sizeof(id)) return absl::DataLossError("rendezvous: bad NCCL unique id");
    std::memcpy(&id, v->data(), sizeof(id));
  }
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    return absl::InternalError("cudaStreamCreate failed");
  }
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRank(&comm, o.world_size, id, o.rank);
  if (r != ncclSuccess) {
    cudaStreamDestroy(stream);
    return absl::UnavailableError(
        absl::StrCat("tensor-parallel rank ", o.rank, " of ", o.world_size,
                     " could not join the NCCL group: ", ncclGetErrorString(r)));
  }
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(std::move(rv->server), std::move(client), comm, stream, o.rank,
                           o.world_size, o.device, o.collective_timeout));
}

}  // namespace eagle
