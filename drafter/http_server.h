// The drafter's OpenAI-compatible HTTP front door (eagle-drafter --http HOST:PORT), over the
// same generation path as the gRPC service (drafter/generation.h). Built on cpp-httplib
// (Debian's libcpp-httplib-dev): HTTP/1.1 parsing, keep-alive, chunked transfer and TLS come from
// it; the routes, OpenAI bodies (drafter/openai_api.h), auth and metrics are ours.
//
// Routes: POST /v1/chat/completions, POST /v1/completions (streaming as server-sent events ending
// in `data: [DONE]`), GET /v1/models, GET /v1/models/{id}, GET /health (200 while serving, 503
// while draining; no token needed, for probes). The /v1 routes take the same bearer tokens as
// the gRPC API (Authorization: Bearer ...). X-Request-Id is honoured (at most 64 bytes, else one
// is made) and returned, and names the request in the logs and on the verifier as on the gRPC
// path. A streaming client that goes away cancels its generation (and frees its verifier
// session) at the next token or step; a non-streaming one is only noticed when its response is
// written, so its generation runs to its end (at most max_tokens).
#ifndef EAGLE_DRAFTER_HTTP_SERVER_H_
#define EAGLE_DRAFTER_HTTP_SERVER_H_

#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "drafter/generation.h"

namespace httplib {
class Server;
}

namespace eagle::drafter {

struct HttpOptions {
  std::string listen;               // host:port (port 0 = any)
  std::string served_model;         // the name /v1/models lists and requests must give
  int threads = 16;                 // connection threads (each holds one connection at a time)
  size_t max_body_bytes = 2 << 20;  // larger bodies get 413
  // TLS (all empty: plaintext): the same files as the gRPC port's --tls_cert, --tls_key and
  // --tls_client_ca (mutual TLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
};

class HttpFrontDoor {
 public:
  // Binds and starts serving on its own threads.
  static absl::StatusOr<std::unique_ptr<HttpFrontDoor>> Start(const HttpOptions& options,
                                                              Generations* generations,
                                                              prometheus::Registry& registry);
  ~HttpFrontDoor();  // Stop()
  int port() const { return port_; }
  void Stop();

 private:
  class Impl;
  HttpFrontDoor() = default;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace eagle::drafter

#endif  // EAGLE_DRAFTER_HTTP_SERVER_H_
