// What both services' main() and handlers share: signal handling, the admin (Prometheus)
// endpoint, the gRPC server with health, reflection and keepalive, and the SIGTERM drain.
#ifndef EAGLE_COMMON_RPC_SERVER_H_
#define EAGLE_COMMON_RPC_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace eagle::rpc {

// A metric label for a status code: "ok", "cancelled", "invalid_argument", ...
const char* StatusLabel(grpc::StatusCode code);

// Counts the calls in flight (for the drain) while it lives.
class InFlight {
 public:
  explicit InFlight(std::atomic<int>& n) : n_(n) { ++n_; }
  ~InFlight() { --n_; }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<int>& n_;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread started after it (call first
// in main), ignores SIGPIPE, and returns the set for Serve to wait on.
sigset_t BlockTerminationSignals();

// Serves Prometheus /metrics for `registry` on `address` (host:port); null when address is
// empty.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartAdmin(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry);

// Leaves the admin endpoint to the process's exit instead of stopping it: civetweb's stop joins
// a listener thread that polls in 2 s quanta, which added up to 2 s to every shutdown after the
// gRPC server had already stopped. Call it once Serve has returned and the process is exiting.
void ReleaseAdminAtExit(std::unique_ptr<prometheus::Exposer> admin);

struct ServeOptions {
  std::string listen;     // host:port (port 0 = any)
  std::string port_file;  // written with the bound port once serving (optional)
  std::shared_ptr<grpc::ServerCredentials> credentials;  // null: plaintext
  double grace_seconds = 20;
  std::function<void(int port)> on_serving;  // after the server is up
  std::function<void()> drain;               // on SIGTERM/SIGINT: refuse new work
  std::function<int()> in_flight;            // calls still running
};

// Starts `service` with gRPC health (SERVING) and reflection and the keepalive settings of
// ConfigureServer, then waits for SIGTERM/SIGINT (`sigs`). Then: health NOT_SERVING, drain(),
// wait until in_flight() is 0 or grace_seconds pass, shut down (1 s for stragglers).
// Returns the process exit code: 0 after a drain, 1 if the server could not start.
int Serve(grpc::Service* service, const ServeOptions& options, const sigset_t& sigs);

}  // namespace eagle::rpc

#endif  // EAGLE_COMMON_RPC_SERVER_H_
