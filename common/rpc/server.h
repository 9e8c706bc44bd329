// What both services' main() and handlers share: signal handling, the admin endpoints (Prometheus
// over HTTP; server reflection and health over gRPC), the data port's gRPC server with health
// and keepalive, and the SIGTERM drain.
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

// Server reflection on `builder`'s server (on = true) or not: only the admin gRPC server has it.
void SetReflection(grpc::ServerBuilder& builder, bool on);

// The admin gRPC surface on a server of its own: server reflection (grpc.reflection.v1alpha) and
// health, nothing else. The data port then serves only the API and health (which the probes
// need), so reflection is reachable only where the operator binds this address (localhost by
// default). `credentials` as the data port's (null: plaintext). Null when address is empty.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartAdminGrpc(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials);

struct ServeOptions {
  std::string listen;     // host:port (port 0 = any)
  std::string port_file;  // written with the bound port once serving (optional)
  std::shared_ptr<grpc::ServerCredentials> credentials;  // null: plaintext
  double grace_seconds = 20;
  std::function<void(int port)> on_serving;  // after the server is up
  std::function<void()> drain;               // on SIGTERM/SIGINT: refuse new work
  std::function<int()> in_flight;            // calls still running
  grpc::Server* admin_grpc = nullptr;  // from StartAdminGrpc: its health follows the data port's
};

// Starts `service` with gRPC health (SERVING) and the keepalive settings of ConfigureServer (no
// reflection: that is StartAdminGrpc's), then waits for SIGTERM/SIGINT (`sigs`). Then: health
// NOT_SERVING (on the admin server too), drain(), wait until in_flight() is 0 or grace_seconds
// pass, shut down both servers (1 s for stragglers).
// Returns the process exit code: 0 after a drain, 1 if the server could not start.
int Serve(grpc::Service* service, const ServeOptions& options, const sigset_t& sigs);

}  // namespace eagle::rpc

#endif  // EAGLE_COMMON_RPC_SERVER_H_
