// eagle-cli's network client: generation through an eagle-drafter (speculative) or an
// eagle-verifier (plain), and health checks.
#ifndef EAGLE_TOOLS_CLI_CLIENT_H_
#define EAGLE_TOOLS_CLI_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/rpc/security.h"

namespace eagle::cli {

struct ClientArgs {
  std::string drafter;                    // host:port, or empty
  std::string verifier;                   // host:port, or empty
  std::map<std::string, std::string> kv;  // the generate flags (--prompt, --max-tokens, ...)
  std::vector<std::string> stops;
  rpc::ClientSecurity security;  // TLS and bearer token, for both servers
};

// generate --server/--verifier: streams the answer to stdout and a summary to stderr (or JSON).
absl::Status RunClientGenerate(const ClientArgs& a);
// health --server HOST:PORT [--wait SECONDS]: OK once the server reports SERVING.
absl::Status RunHealth(const std::string& target, double wait_seconds,
                       const rpc::ClientSecurity& security = {});

}  // namespace eagle::cli

#endif  // EAGLE_TOOLS_CLI_CLIENT_H_
