// The Communicator of CPU ranks: Gloo (Debian's libgloo) over its TCP transport, its pairs
// exchanged through the TCP rendezvous of tcp_store.h.
#ifndef EAGLE_COMMON_DIST_GLOO_COMMUNICATOR_H_
#define EAGLE_COMMON_DIST_GLOO_COMMUNICATOR_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/dist/communicator.h"

namespace eagle {

struct GlooGroupOptions {
  int rank = 0;
  int world_size = 1;
  // HOST:PORT of the rendezvous: rank 0 listens there (PORT 0 is not allowed: the other ranks
  // could not know it), the others connect.
  std::string rendezvous = "127.0.0.1:29500";
  // The address this rank's Gloo pairs listen on, which the other ranks must reach. Empty: this
  // end's address on its connection to the rendezvous (the interface that reaches rank 0).
  std::string bind_host;
  // How long the ranks wait for each other at start, and the bound on every collective: a rank
  // that stops answering fails its peers' collectives within this time (the group's watchdog).
  std::chrono::milliseconds connect_timeout{60000};
  std::chrono::milliseconds collective_timeout{30000};
};

// Connects rank `rank` of the group; blocks until every rank has joined or the connect timeout
// passes (UNAVAILABLE / DEADLINE_EXCEEDED naming what was missing). INVALID_ARGUMENT for a rank
// outside [0, world_size) or a bad address.
// Rank 0 may pass the rendezvous server it already started (on a port it chose, before it
// started the other ranks); otherwise rank 0 starts it on the rendezvous address.
class TcpStoreServer;
absl::StatusOr<std::unique_ptr<Communicator>> ConnectGlooGroup(
    const GlooGroupOptions& options, std::unique_ptr<TcpStoreServer> server = nullptr);

}  // namespace eagle

#endif  // EAGLE_COMMON_DIST_GLOO_COMMUNICATOR_H_
