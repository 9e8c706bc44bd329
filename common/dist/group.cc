#include "common/dist/group.h"

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/dist/gloo_communicator.h"
#include "common/dist/tcp_store.h"
#include "common/log.h"

namespace eagle {

absl::StatusOr<TensorParallelGroup> StartTensorParallel(const TensorParallelFlags& f,
                                                        const std::vector<std::string>& args) {
  if (!(f.timeout_s >= 1) || f.timeout_s > 3600) {
    return absl::InvalidArgumentError("--tp-timeout must be in [1, 3600] seconds");
  }
  GlooGroupOptions o;
  o.collective_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
  o.connect_timeout = std::max(o.collective_timeout, std::chrono::milliseconds(60000));
  TensorParallelGroup group;
  if (f.rank >= 0) {
    if (f.tp != 1)
      return absl::InvalidArgumentError(
          "--tp starts local ranks; with --rank give "
          "--world-size instead");
    if (f.world_size < 1 || f.rank >= f.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("--rank ", f.rank,
                                                     " needs --world-size "
                                                     "greater than it (got ",
                                                     f.world_size, ")"));
    }
    if (f.rendezvous.empty()) {
      return absl::InvalidArgumentError("--rank needs --rendezvous HOST:PORT (rank 0's address)");
    }
    o.rank = f.rank;
    o.world_size = f.world_size;
    o.rendezvous = f.rendezvous;
    if (f.world_size == 1) return group;
    absl::StatusOr<std::unique_ptr<Communicator>> comm = ConnectGlooGroup(o);
    if (!comm.ok()) return comm.status();
    group.comm = *std::move(comm);
    return group;
  }
  if (f.world_size != 0) return absl::InvalidArgumentError("--world-size needs --rank");
  if (f.tp < 1 || f.tp > 64) return absl::InvalidArgumentError("--tp must be in [1, 64]");
  if (f.tp == 1) return group;
  // Rank 0 of local ranks: the rendezvous on a free loopback port (or the one given), started
  // before the ranks so that they find it.
  std::string host = "127.0.0.1";
  int port = 0;
  if (!f.rendezvous.empty()) {
    if (absl::Status s = ParseHostPort(f.rendezvous, "--rendezvous", &host, &port); !s.ok()) {
      return s;
    }
  }
  o.rank = 0;
  o.world_size = f.tp;
  // A mesh that fails fast while forming (UNAVAILABLE: a connection refused or closed by a peer,
  // which a busy host's loopback can give) is formed again from scratch: fresh ranks and a
  // fresh rendezvous server (on the same port when --rendezvous gave one). One that failed by
  // running out of its connect timeout, or with another error, is not: a rank that is slow to
  // join would be slow again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start(host, port);
    if (!server.ok()) return server.status();
    o.rendezvous = absl::StrCat(host.find(':') != std::string::npos ? "[" + host + "]" : host, ":",
                                (*server)->port());
    absl::StatusOr<LocalRanks> ranks =
        LocalRanks::Start(WithoutFlag(args, "--tp"), f.tp, o.rendezvous, f.world_size_flag);
    if (!ranks.ok()) return ranks.status();
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<Communicator>> comm = ConnectGlooGroup(o, *std::move(server));
    if (comm.ok()) {
      group.ranks = *std::move(ranks);
      group.comm = *std::move(comm);
      return group;
    }
    ranks->KillAll();
    const bool fast = std::chrono::steady_clock::now() - start < o.connect_timeout / 2;
    if (attempt == kAttempts || !fast || !absl::IsUnavailable(comm.status())) {
      return comm.status();
    }
    LogEvent("warning", "tensor_parallel_start_retried",
             {{"attempt", attempt}, {"of", kAttempts}, {"error", comm.status().message()}});
  }
}

absl::Status CheckSameModel(Communicator& comm, const std::string& fingerprint) {
  constexpr int kBytes = 64;
  char mine[kBytes] = {};
  std::memcpy(mine, fingerprint.data(), std::min<size_t>(fingerprint.size(), kBytes));
  std::vector<char> all(static_cast<size_t>(kBytes) * comm.world_size());
  // Ranks finish loading at different times (a cold page cache, a slower host): they wait for
  // each other here for up to 10 minutes, not the collective timeout.
  if (absl::Status s = comm.BarrierWithin(std::chrono::minutes(10)); !s.ok()) return s;
  if (absl::Status s = comm.AllGather(mine, kBytes, all.data()); !s.ok()) return s;
  for (int r = 1; r < comm.world_size(); ++r) {
    if (std::memcmp(all.data(), all.data() + r * kBytes, kBytes) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "tensor-parallel ranks loaded different models: rank 0 has ",
          std::string(all.data(), strnlen(all.data(), kBytes)), ", rank ", r, " has ",
          std::string(all.data() + r * kBytes, strnlen(all.data() + r * kBytes, kBytes))));
    }
  }
  return absl::OkStatus();
}

}  // namespace eagle
