// Transport security of the real services (reliability tests R25 and R26): TLS and mutual TLS
// with certificates made at test time by openssl, and bearer tokens. Only a client with the
// right CA, a client certificate from the trusted CA, the right server name and a valid token
// gets through; the rest fail at the handshake or with UNAUTHENTICATED before any work; tokens
// never reach the logs.
#include "common/rpc/security.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/services.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

using testing::Metric;
using testing::Service;

constexpr char kToken[] = "tok-3f9a1c77e2b54d0a";
constexpr char kOldToken[] = "tok-rotated-out-but-still-valid";

// A client's security settings: CA, client certificate and key, server name, token file.
rpc::ClientSecurity Sec(std::string ca, std::string cert = "", std::string key = "",
                        std::string server_name = "", std::string token_file = "") {
  return {std::move(ca), std::move(cert), std::move(key), std::move(server_name),
          std::move(token_file)};
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) return;
    dir_ = testing::TempDir();
    certs_ = dir_ + "/certs";
    const std::string cmd =
        absl::StrCat("sh ", EAGLE_TEST_SOURCE_DIR, "/e2e/make_test_certs.sh ", certs_);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ofstream(dir_ + "/tokens") << "# rotation: both are valid\n"
                                    << kOldToken << "\n"
                                    << kToken << "\n";
    std::ofstream(dir_ + "/client_token") << kToken << "\n";
    std::ofstream(dir_ + "/wrong_token") << "tok-wrong\n";
    // A verifier with mutual TLS and tokens, and a drafter reaching it with both, itself serving
    // TLS (server certificate only) with tokens.
    auto v = testing::StartVerifier(
        dir_, 0,
        {"--tls_cert", Cert("server.pem"), "--tls_key", Cert("server.key"), "--tls_client_ca",
         Cert("ca.pem"), "--auth_token_file", dir_ + "/tokens"},
        Creds(Sec(Cert("ca.pem"), Cert("client.pem"), Cert("client.key"))));
    ASSERT_TRUE(v.ok()) << v.status();
    verifier_ = new Service(std::move(*v));
    auto d = testing::StartDrafter(
        dir_, "localhost:" + std::to_string(verifier_->port),
        {"--verifier_tls_ca", Cert("ca.pem"), "--verifier_tls_cert", Cert("client.pem"),
         "--verifier_tls_key", Cert("client.key"), "--verifier_token_file", dir_ + "/client_token",
         "--tls_cert", Cert("server.pem"), "--tls_key", Cert("server.key"), "--auth_token_file",
         dir_ + "/tokens", "--http",
         "127.0.0.1:" + std::to_string(http_port_ = testing::FreePort())},
        Creds(Sec(Cert("ca.pem"))));
    ASSERT_TRUE(d.ok()) << d.status();
    drafter_ = new Service(std::move(*d));
  }
  static void TearDownTestSuite() {
    delete drafter_;
    delete verifier_;
    drafter_ = verifier_ = nullptr;
  }
  void SetUp() override {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) GTEST_SKIP() << "default model not fetched";
    ASSERT_NE(drafter_, nullptr);
  }

  static std::string Cert(const std::string& name) { return certs_ + "/" + name; }
  static rpc::ClientCredentials Creds(const rpc::ClientSecurity& s) {
    auto c = rpc::ClientCredentials::Make(s);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : rpc::ClientCredentials();
  }
  // ModelInfo on the verifier at `address` with these credentials.
  static grpc::Status ModelInfo(const std::string& address, const rpc::ClientSecurity& s) {
    rpc::ClientCredentials c = Creds(s);
    auto stub = v1::Verifier::NewStub(c.Channel(address));
    grpc::ClientContext ctx;
    c.Attach(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ModelInfoResponse resp;
    return stub->ModelInfo(&ctx, v1::ModelInfoRequest(), &resp);
  }
  static std::string VerifierAddress() { return "localhost:" + std::to_string(verifier_->port); }

  static inline std::string dir_;
  static inline std::string certs_;
  static inline Service* verifier_ = nullptr;
  static inline Service* drafter_ = nullptr;
  static inline int http_port_ = 0;
};

v1::GenerateRequest Request() {
  v1::GenerateRequest r;
  r.mutable_messages()->add_messages()->set_role("user");
  r.mutable_messages()->mutable_messages(0)->set_content("Name three planets.");
  r.set_max_tokens(12);
  return r;
}

TEST_F(SecurityTest, OnlyAValidClientPassesTheMutualTlsMatrix) {
  const std::string token = dir_ + "/client_token";
  struct Case {
    const char* name;
    rpc::ClientSecurity security;
    bool ok;
  } cases[] = {
      {"plaintext client", {"", "", "", "", token}, false},
      {"server signed by a CA the client does not trust",
       {Cert("other_ca.pem"), Cert("client.pem"), Cert("client.key"), "", token},
       false},
      {"server name not in the certificate",
       {Cert("ca.pem"), Cert("client.pem"), Cert("client.key"), "verifier.other.example", token},
       false},
      {"no client certificate", {Cert("ca.pem"), "", "", "", token}, false},
      {"client certificate from an untrusted CA",
       {Cert("ca.pem"), Cert("other_client.pem"), Cert("other_client.key"), "", token},
       false},
      {"valid", {Cert("ca.pem"), Cert("client.pem"), Cert("client.key"), "", token}, true},
  };
  const double ok_before = Metric(
      verifier_->admin_port, R"(eagle_verifier_requests_total{outcome="ok",rpc="model_info"})");
  for (const Case& c : cases) {
    grpc::Status s = ModelInfo(VerifierAddress(), c.security);
    EXPECT_EQ(s.ok(), c.ok) << c.name << ": " << s.error_message();
    // A failed handshake never reaches the service.
    if (!c.ok) {
      EXPECT_EQ(s.error_code(), grpc::UNAVAILABLE) << c.name << ": " << s.error_message();
    }
  }
  EXPECT_EQ(Metric(verifier_->admin_port,
                   R"(eagle_verifier_requests_total{outcome="ok",rpc="model_info"})"),
            std::max(ok_before, 0.0) + 1);
  EXPECT_EQ(testing::Health(VerifierAddress(),
                            Creds(Sec(Cert("ca.pem"), Cert("client.pem"), Cert("client.key")))),
            "SERVING");
}

// The HTTP API serves the gRPC port's TLS certificate and checks the same tokens.
TEST_F(SecurityTest, TheHttpApiServesTlsAndChecksTheSameTokens) {
  httplib::SSLClient tls("localhost", http_port_);
  tls.set_ca_cert_path(Cert("ca.pem").c_str());
  tls.enable_server_certificate_verification(true);
  auto ok = tls.Get("/v1/models", {{"Authorization", absl::StrCat("Bearer ", kToken)}});
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  auto rotated = tls.Get("/v1/models", {{"Authorization", absl::StrCat("Bearer ", kOldToken)}});
  ASSERT_TRUE(rotated);
  EXPECT_EQ(rotated->status, 200);
  auto none = tls.Get("/v1/models");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  auto wrong = tls.Get("/v1/models", {{"Authorization", "Bearer tok-wrong"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(wrong->body.find("tok-wrong"), std::string::npos);
  // A client that does not trust the CA, and a plaintext client, get nothing.
  httplib::SSLClient untrusting("localhost", http_port_);
  untrusting.set_ca_cert_path(Cert("server.pem").c_str());
  untrusting.enable_server_certificate_verification(true);
  EXPECT_FALSE(untrusting.Get("/v1/models"));
  httplib::Client plain("127.0.0.1", http_port_);
  plain.set_read_timeout(std::chrono::seconds(5));
  auto p = plain.Get("/v1/models", {{"Authorization", absl::StrCat("Bearer ", kToken)}});
  EXPECT_TRUE(!p || p->status != 200);
}

TEST_F(SecurityTest, AnExpiredServerCertificateIsRefused) {
  // Its health cannot be asked (every handshake fails): wait for the port file it writes once
  // serving.
  const std::string port_file = dir_ + "/expired.port";
  auto p = testing::StartVerifierRaw(
      dir_, {"--listen", "127.0.0.1:0", "--admin", "", "--port_file", port_file, "--tls_cert",
             Cert("expired.pem"), "--tls_key", Cert("server.key")});
  ASSERT_TRUE(p.ok());
  int port = 0;
  for (int i = 0; i < 1200 && port == 0 && (*p)->running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream(port_file) >> port;
  }
  ASSERT_GT(port, 0) << (*p)->log();
  const std::string address = "localhost:" + std::to_string(port);
  grpc::Status s = ModelInfo(address, Sec(Cert("ca.pem")));
  EXPECT_EQ(s.error_code(), grpc::UNAVAILABLE) << s.error_message();
  EXPECT_NE(testing::Health(address, Creds(Sec(Cert("ca.pem")))), "SERVING");
}

TEST_F(SecurityTest, TokensAreCheckedBeforeAnyWorkAndNeverLogged) {
  const rpc::ClientSecurity tls = Sec(Cert("ca.pem"), Cert("client.pem"), Cert("client.key"));
  auto channel = Creds(tls).Channel(VerifierAddress());
  auto stub = v1::Verifier::NewStub(channel);
  const std::string unauthenticated =
      R"(eagle_verifier_requests_total{outcome="unauthenticated",rpc="generate"})";
  const double before = std::max(0.0, Metric(verifier_->admin_port, unauthenticated));
  const struct {
    const char* name;
    std::string header;  // empty: none
    bool ok;
  } cases[] = {{"missing", "", false},
               {"wrong token", "Bearer tok-wrong", false},
               {"wrong scheme", absl::StrCat("Basic ", kToken), false},
               {"token without scheme", kToken, false},
               {"valid", absl::StrCat("Bearer ", kToken), true},
               {"second valid token (rotation)", absl::StrCat("Bearer ", kOldToken), true}};
  for (const auto& c : cases) {
    grpc::ClientContext ctx;
    if (!c.header.empty()) ctx.AddMetadata("authorization", c.header);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Generate(&ctx, Request());
    v1::GenerateResponse chunk;
    int tokens = 0;
    while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
    grpc::Status s = reader->Finish();
    if (c.ok) {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s.error_message();
      EXPECT_GT(tokens, 0) << c.name;
    } else {
      EXPECT_EQ(s.error_code(), grpc::UNAUTHENTICATED) << c.name << ": " << s.error_message();
      EXPECT_EQ(tokens, 0) << c.name;
    }
  }
  EXPECT_EQ(Metric(verifier_->admin_port, unauthenticated), before + 4);

  // The same through the drafter (TLS, its own token check), whose calls to the verifier carry
  // the drafter's token.
  rpc::ClientCredentials to_drafter =
      Creds(Sec(Cert("ca.pem"), "", "", "", dir_ + "/client_token"));
  auto dstub = v1::Drafter::NewStub(to_drafter.Channel(drafter_->address()));
  {
    grpc::ClientContext ctx;
    auto reader = dstub->Generate(&ctx, Request());
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    to_drafter.Attach(&ctx);
    auto reader = dstub->Generate(&ctx, Request());
    v1::GenerateResponse chunk;
    int tokens = 0;
    while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(tokens, 0);
    EXPECT_GT(chunk.stats().steps(), 0) << "the drafter speculated through the verifier";
  }
  for (const std::string& log : {verifier_->proc->log(), drafter_->proc->log()}) {
    EXPECT_EQ(log.find(kToken), std::string::npos);
    EXPECT_EQ(log.find(kOldToken), std::string::npos);
  }
}

TEST_F(SecurityTest, BadSecurityFlagsStopTheServicesWithAPreciseError) {
  const struct {
    std::vector<std::string> args;
    const char* message;
  } cases[] = {
      {{"--tls_cert", Cert("server.pem")}, "--tls_cert and --tls_key go together"},
      {{"--tls_client_ca", Cert("ca.pem")}, "--tls_client_ca needs --tls_cert"},
      {{"--auth_token_file", dir_ + "/no_such_file"}, "cannot be read"},
      {{"--verifier_tls_cert", Cert("client.pem"), "--verifier_tls_key", Cert("client.key")},
       "needs the CA of the server"},
      {{"--auth_token_file", dir_ + "/spaced_token"}, "printable ASCII without spaces"},
  };
  std::ofstream(dir_ + "/spaced_token") << "two words\n";
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--verifier", VerifierAddress(), "--listen", "127.0.0.1:0"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto p = testing::StartDrafterRaw(dir_, args);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->Wait(30), 2) << c.message;
    EXPECT_NE((*p)->log().find(c.message), std::string::npos) << (*p)->log();
  }
  // A drafter whose token the verifier does not accept refuses to start.
  auto p = testing::StartDrafterRaw(
      dir_, {"--verifier", VerifierAddress(), "--listen", "127.0.0.1:0", "--admin", "",
             "--verifier_tls_ca", Cert("ca.pem"), "--verifier_tls_cert", Cert("client.pem"),
             "--verifier_tls_key", Cert("client.key"), "--verifier_token_file",
             dir_ + "/wrong_token", "--connect_seconds", "10"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->Wait(60), 1);
  EXPECT_NE((*p)->log().find("unknown bearer token"), std::string::npos) << (*p)->log();
}

// Runs eagle-cli with `args`; returns its exit code and output (stdout and stderr).
std::pair<int, std::string> Cli(const std::string& args) {
  auto r = testing::RunCommand(absl::StrCat(EAGLE_CLI, " ", args));
  return {r.code, r.out};
}

TEST_F(SecurityTest, TheCliTalksTlsAndTokens) {
  const std::string mtls = absl::StrCat(" --tls-ca ", Cert("ca.pem"), " --tls-cert ",
                                        Cert("client.pem"), " --tls-key ", Cert("client.key"));
  auto [code, out] = Cli("health --server " + VerifierAddress() + mtls);
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = Cli("health --server " + VerifierAddress() + " --wait 0");
  EXPECT_NE(code, 0) << "a plaintext health check of a TLS server: " << out;
  const std::string gen =
      absl::StrCat("generate --server localhost:", drafter_->port,
                   " --chat --prompt Hello --max-tokens 6 --tls-ca ", Cert("ca.pem"));
  std::tie(code, out) = Cli(gen + " --token-file " + dir_ + "/client_token");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("tau"), std::string::npos) << out;
  std::tie(code, out) = Cli(gen);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("UNAUTHENTICATED"), std::string::npos) << out;
  // Plain generation on the verifier, mutual TLS and token.
  std::tie(code, out) = Cli(absl::StrCat("generate --verifier ", VerifierAddress(), mtls,
                                         " --chat --prompt Hello --max-tokens 6 --token-file ",
                                         dir_, "/client_token"));
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace eagle
