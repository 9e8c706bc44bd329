#include "common/rpc/security.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/rpc/convert.h"

namespace eagle::rpc {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat(what, " ", path, ": cannot be read"));
  std::ostringstream s;
  s << f.rdbuf();
  if (s.str().empty()) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": empty"));
  return s.str();
}

absl::StatusOr<std::vector<std::string>> ReadTokens(const std::string& path) {
  auto text = ReadFile(path, "token file");
  if (!text.ok()) return text.status();
  std::vector<std::string> tokens;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    for (char c : line) {
      // What an HTTP/2 header value can carry as a bearer token (printable ASCII, no space).
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError(
            absl::StrCat("token file ", path, " line ", number,
                         ": a token is printable ASCII without spaces (found byte ",
                         static_cast<int>(static_cast<unsigned char>(c)), ")"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": no token in it"));
  }
  return tokens;
}

// Equal strings, in time that depends on the lengths only.
bool SameBytes(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Sends a fixed "authorization" header. Allowed on plaintext channels too (in a cluster whose
// network is trusted or encrypted by a mesh).
class BearerPlugin : public grpc::MetadataCredentialsPlugin {
 public:
  explicit BearerPlugin(std::string token) : value_("Bearer " + std::move(token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    metadata->emplace("authorization", value_);
    return grpc::Status::OK;
  }

 private:
  std::string value_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTls& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (tls.cert.empty()) {
    if (!tls.client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions o;
  auto cert = ReadFile(tls.cert, "--tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(tls.key, "--tls_key");
  if (!key.ok()) return key.status();
  o.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca.empty()) {
    auto ca = ReadFile(tls.client_ca, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
    o.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<TokenCheck> TokenCheck::FromFile(const std::string& path) {
  TokenCheck t;
  if (path.empty()) return t;
  auto tokens = ReadTokens(path);
  if (!tokens.ok()) return tokens.status();
  t.tokens_ = std::move(*tokens);
  return t;
}

grpc::Status TokenCheck::Check(const grpc::ServerContext& ctx) const {
  if (tokens_.empty()) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return ToGrpc(CheckHeader(nullptr));
  const std::string value(it->second.data(), it->second.size());
  return ToGrpc(CheckHeader(&value));
}

absl::Status TokenCheck::CheckHeader(const std::string* authorization) const {
  if (tokens_.empty()) return absl::OkStatus();
  if (authorization == nullptr) {
    return absl::UnauthenticatedError("missing authorization: Bearer <token>");
  }
  absl::string_view value(*authorization);
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("authorization must be 'Bearer <token>'");
  }
  bool ok = false;
  for (const std::string& t : tokens_) ok |= SameBytes(value, t);
  if (!ok) return absl::UnauthenticatedError("unknown bearer token");
  return absl::OkStatus();
}

absl::StatusOr<ClientCredentials> ClientCredentials::Make(const ClientSecurity& s) {
  ClientCredentials c;
  if (s.cert.empty() != s.key.empty()) {
    return absl::InvalidArgumentError("a client certificate needs its key (and the reverse)");
  }
  if (s.ca.empty()) {
    if (!s.cert.empty() || !s.server_name.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate or TLS server name needs the CA of the server (TLS)");
    }
    c.channel_ = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions o;
    auto ca = ReadFile(s.ca, "TLS CA");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
    if (!s.cert.empty()) {
      auto cert = ReadFile(s.cert, "TLS client certificate");
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(s.key, "TLS client key");
      if (!key.ok()) return key.status();
      o.pem_cert_chain = *cert;
      o.pem_private_key = *key;
    }
    c.channel_ = grpc::SslCredentials(o);
    c.server_name_ = s.server_name;
    c.tls_ = true;
  }
  if (!s.token_file.empty()) {
    auto tokens = ReadTokens(s.token_file);
    if (!tokens.ok()) return tokens.status();
    c.token_ = grpc::experimental::MetadataCredentialsFromPlugin(
        std::make_unique<BearerPlugin>(tokens->front()), GRPC_SECURITY_NONE);
  }
  return c;
}

std::shared_ptr<grpc::Channel> ClientCredentials::Channel(const std::string& target) const {
  grpc::ChannelArguments args = ClientChannelArgs();
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  return grpc::CreateCustomChannel(
      target, channel_ != nullptr ? channel_ : grpc::InsecureChannelCredentials(), args);
}

void ClientCredentials::Attach(grpc::ClientContext* ctx) const {
  if (token_ != nullptr) ctx->set_credentials(token_);
}

}  // namespace eagle::rpc
