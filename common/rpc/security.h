// Transport security for the services and their clients: TLS or mutual TLS from PEM files, and
// bearer tokens (the gRPC metadata "authorization: Bearer <token>") that the services check
// before a handler does any work. Health and reflection stay open (probes need them).
#ifndef EAGLE_COMMON_RPC_SECURITY_H_
#define EAGLE_COMMON_RPC_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle::rpc {

// A server's TLS files (PEM). No cert and key: plaintext. client_ca set: mutual TLS, every
// client must present a certificate signed by it.
struct ServerTls {
  std::string cert;
  std::string key;
  std::string client_ca;
};

// Credentials for AddListeningPort; a precise error for a missing or unreadable file, a cert
// without its key (or the reverse), or a client CA without a server certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTls& tls);

// The bearer tokens a service accepts. Loaded from a file with one token per line (blank lines
// and lines starting with '#' skipped), so tokens stay out of argv, and more than one can be
// valid while they are rotated. A service without a token file accepts every call.
class TokenCheck {
 public:
  TokenCheck() = default;
  static absl::StatusOr<TokenCheck> FromFile(const std::string& path);
  // OK, or UNAUTHENTICATED (missing header, not "Bearer ...", or unknown token). The comparison
  // takes the same time wherever the token differs.
  grpc::Status Check(const grpc::ServerContext& ctx) const;
  // The same check on an HTTP request's Authorization header (null: absent).
  absl::Status CheckHeader(const std::string* authorization) const;

 private:
  std::vector<std::string> tokens_;
};

// What a service serves with, from the flags both services share: --tls_cert, --tls_key,
// --tls_client_ca (common/rpc/security_flags.cc) and --auth_token_file.
struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  TokenCheck auth;
};
absl::StatusOr<ServerSecurity> ServerSecurityFromFlags();

// A client's view of a secured server: ca set: TLS, the server's certificate must be signed by
// it (and name `server_name`, or the address's host); cert and key: the client certificate for
// mutual TLS; token_file: the bearer token sent with every call (first token in the file).
struct ClientSecurity {
  std::string ca;
  std::string cert;
  std::string key;
  std::string server_name;
  std::string token_file;
};

class ClientCredentials {
 public:
  ClientCredentials() = default;  // plaintext, no token
  static absl::StatusOr<ClientCredentials> Make(const ClientSecurity& security);
  // A channel to `target` with these credentials and ClientChannelArgs.
  std::shared_ptr<grpc::Channel> Channel(const std::string& target) const;
  // Adds the bearer token (if any) to a call.
  void Attach(grpc::ClientContext* ctx) const;
  // A token that would travel unencrypted (no TLS): fine on loopback or inside a mesh that
  // encrypts, a leak elsewhere; the drafter warns at start.
  bool token_in_cleartext() const { return token_ != nullptr && !tls_; }

 private:
  std::shared_ptr<grpc::ChannelCredentials> channel_;
  std::shared_ptr<grpc::CallCredentials> token_;
  std::string server_name_;
  bool tls_ = false;
};

}  // namespace eagle::rpc

#endif  // EAGLE_COMMON_RPC_SECURITY_H_
