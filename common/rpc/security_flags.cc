// The transport-security flags both services take (see ServerSecurityFromFlags).
#include "absl/flags/flag.h"
#include "common/rpc/security.h"

ABSL_FLAG(std::string, tls_cert, "",
          "serve TLS with this certificate chain (PEM); needs --tls_key. Without it: plaintext");
ABSL_FLAG(std::string, tls_key, "", "the private key (PEM) of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "mutual TLS: clients must present a certificate signed by this CA (PEM)");
ABSL_FLAG(std::string, auth_token_file, "",
          "calls must carry 'authorization: Bearer <token>' with a token from this file (one per "
          "line; several while rotating). Health and reflection stay open");

namespace eagle::rpc {

absl::StatusOr<ServerSecurity> ServerSecurityFromFlags() {
  ServerSecurity s;
  auto creds = MakeServerCredentials({absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                                      absl::GetFlag(FLAGS_tls_client_ca)});
  if (!creds.ok()) return creds.status();
  s.credentials = *creds;
  auto auth = TokenCheck::FromFile(absl::GetFlag(FLAGS_auth_token_file));
  if (!auth.ok()) return auth.status();
  s.auth = std::move(*auth);
  return s;
}

}  // namespace eagle::rpc
