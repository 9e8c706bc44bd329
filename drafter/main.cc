// eagle-drafter: the client-facing service. Tokenizes, drafts with an EAGLE head and verifies
// through an eagle-verifier over one gRPC channel. See drafter/README.md.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template.h"
#include "common/eagle/cost_model.h"
#include "common/log.h"
#include "common/prompt.h"
#include "common/rpc/convert.h"
#include "common/rpc/security.h"
#include "common/rpc/server.h"
#include "drafter/http_server.h"
#include "drafter/service.h"

ABSL_FLAG(std::string, model, EAGLE_DEFAULT_MODEL,
          "the target model (GGUF or HF dir): its tokenizer, embedding and LM head serve the "
          "draft head; must be the verifier's model (checked by fingerprint)");
ABSL_FLAG(std::string, head, EAGLE_DEFAULT_HEAD,
          "EAGLE head directory; \"none\" = plain decoding for every request");
ABSL_FLAG(std::string, chat_template, "",
          "chat template for message requests: empty = the model's own (Jinja, rendered as "
          "transformers does), or a built-in one: chatml | llama2 | llama3 | vicuna");
ABSL_FLAG(std::string, verifier, "127.0.0.1:50051", "the verifier's gRPC address");
ABSL_FLAG(std::string, listen, "127.0.0.1:50052", "gRPC address (host:port; port 0 = any)");
ABSL_FLAG(std::string, admin, "127.0.0.1:9092",
          "admin HTTP address for Prometheus /metrics (empty = off)");
ABSL_FLAG(std::string, admin_grpc, "127.0.0.1:9094",
          "admin gRPC address: server reflection and health, which the data port does not "
          "serve (empty = off)");
ABSL_FLAG(std::string, http, "",
          "OpenAI-compatible HTTP API address (host:port; port 0 = any; empty = off); TLS and "
          "bearer tokens as the gRPC port's");
ABSL_FLAG(std::string, served_model_name, "",
          "the model name the HTTP API lists and requests must give (empty = the model file's "
          "name without its extension, or the HF directory's name)");
ABSL_FLAG(std::string, http_port_file, "", "write the bound HTTP port here once serving");
ABSL_FLAG(std::string, tree, "auto",
          "default tree: auto (sized each step from measured costs) | chain | static | dynamic");
ABSL_FLAG(int, depth, 3, "default draft depth");
ABSL_FLAG(int, top_k, 4, "default dynamic-tree branching");
ABSL_FLAG(int, total_tokens, 12, "default dynamic-tree size (root included)");
ABSL_FLAG(std::string, feature_dtype, "f16", "features on the wire: f16 | bf16 | f32");
ABSL_FLAG(std::string, precision, "auto", "draft head precision: auto | int16 | int8 | f32");
ABSL_FLAG(int, threads, 0,
          "threads of the draft head's pool, shared by all sessions; a session's step runs on "
          "its handler thread and uses the workers when no other session holds them (0 = every "
          "CPU the process may use)");
ABSL_FLAG(double, spin_us, 200,
          "a pool worker's spin after its last chunk before it parks, microseconds");
ABSL_FLAG(bool, pin_threads, false, "pin the pool's workers to CPUs of the affinity mask");
ABSL_FLAG(double, connect_seconds, 60, "wait this long for the verifier at start");
ABSL_FLAG(double, reconnect_seconds, 30, "resume window when the verifier goes away");
ABSL_FLAG(int, max_generations, 256, "concurrent Generate calls at most");
ABSL_FLAG(double, grace_seconds, 20, "on SIGTERM: time for in-flight work to finish");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");
ABSL_FLAG(std::string, verifier_tls_ca, "",
          "reach the verifier over TLS; its certificate must be signed by this CA (PEM)");
ABSL_FLAG(std::string, verifier_tls_cert, "",
          "client certificate (PEM) for a verifier that requires mutual TLS");
ABSL_FLAG(std::string, verifier_tls_key, "", "the private key (PEM) of --verifier_tls_cert");
ABSL_FLAG(std::string, verifier_tls_server_name, "",
          "the name the verifier's certificate must carry (default: the host of --verifier)");
ABSL_FLAG(std::string, verifier_token_file, "",
          "send the first token of this file as 'authorization: Bearer' to the verifier");

ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);

namespace eagle::drafter {
namespace {

std::string DefaultServedName(const std::string& model) {
  std::filesystem::path p(model);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" names dir
  return std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage("eagle-drafter [--verifier HOST:PORT] [--listen HOST:PORT] ...");
  absl::ParseCommandLine(argc, argv);
  SetLogService("drafter");
  const sigset_t sigs = rpc::BlockTerminationSignals();
  auto pool = cpu::ThreadPool::ForThreads(
      absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_pin_threads), absl::GetFlag(FLAGS_spin_us));
  if (!pool.ok()) {
    std::fprintf(stderr, "error: --%s\n", std::string(pool.status().message()).c_str());
    return 2;
  }

  DrafterConfig cfg;
  const std::string dt = absl::GetFlag(FLAGS_feature_dtype);
  cfg.feature_dtype = dt == "f32"    ? v1::Features::F32
                      : dt == "bf16" ? v1::Features::BF16
                                     : v1::Features::F16;
  if (dt != "f32" && dt != "bf16" && dt != "f16") {
    std::fprintf(stderr, "error: --feature_dtype must be f16, bf16 or f32\n");
    return 2;
  }
  auto mode = ParseTreeMode(absl::GetFlag(FLAGS_tree));
  if (!mode.ok()) {
    std::fprintf(stderr, "error: --tree: %s\n", std::string(mode.status().message()).c_str());
    return 2;
  }
  cfg.tree.mode = *mode;
  cfg.tree.depth = absl::GetFlag(FLAGS_depth);
  cfg.tree.top_k = absl::GetFlag(FLAGS_top_k);
  cfg.tree.total_tokens = absl::GetFlag(FLAGS_total_tokens);
  if (absl::Status s = ValidateTreeOptions(cfg.tree); !s.ok()) {
    std::fprintf(stderr, "error: bad tree options: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  cfg.reconnect_seconds = absl::GetFlag(FLAGS_reconnect_seconds);
  cfg.max_generations = absl::GetFlag(FLAGS_max_generations);
  auto security = rpc::ServerSecurityFromFlags();
  if (!security.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }
  cfg.auth = std::move(security->auth);
  auto to_verifier = rpc::ClientCredentials::Make(
      {absl::GetFlag(FLAGS_verifier_tls_ca), absl::GetFlag(FLAGS_verifier_tls_cert),
       absl::GetFlag(FLAGS_verifier_tls_key), absl::GetFlag(FLAGS_verifier_tls_server_name),
       absl::GetFlag(FLAGS_verifier_token_file)});
  if (!to_verifier.ok()) {
    std::fprintf(stderr, "error: --verifier_*: %s\n",
                 std::string(to_verifier.status().message()).c_str());
    return 2;
  }
  cfg.verifier_credentials = std::move(*to_verifier);
  if (cfg.verifier_credentials.token_in_cleartext()) {
    LogEvent("warn", "token_in_cleartext",
             {{"verifier", absl::GetFlag(FLAGS_verifier)},
              {"hint",
               "the verifier token travels unencrypted: add --verifier_tls_ca unless the "
               "network is loopback or encrypted by a mesh"}});
  }
  auto precision = cpu::ParsePrecision(absl::GetFlag(FLAGS_precision));
  if (!precision.ok()) {
    std::fprintf(stderr, "error: --%s\n", std::string(precision.status().message()).c_str());
    return 2;
  }
  ModelOptions mo;
  mo.precision = *precision;
  mo.pool = *pool;
  if (const std::string name = absl::GetFlag(FLAGS_chat_template); !name.empty()) {
    if (auto kind = ChatTemplateFromName(name); !kind.ok()) {
      std::fprintf(stderr, "error: --chat_template: %s\n",
                   std::string(kind.status().message()).c_str());
      return 2;
    }
  }
  auto model = LlamaModel::Load(absl::GetFlag(FLAGS_model), mo);
  if (!model.ok()) {
    LogEvent("error", "model_load_failed", {{"error", std::string(model.status().message())}});
    return 1;
  }
  (*model)->set_builtin_chat_template(absl::GetFlag(FLAGS_chat_template));
  if (absl::Status s = CheckChatTemplate(**model); !s.ok()) {
    // Text and token requests still work; message requests will get this error.
    LogEvent("warn", "chat_template_unusable", {{"error", std::string(s.message())}});
  }
  // The drafter uses the target's embedding and LM head: check them, and the head below, with a
  // forward pass before anything serves (a failed warm-up exits).
  if (absl::Status s = WarmUp(**model); !s.ok()) {
    LogEvent("error", "warmup_failed", {{"error", std::string(s.message())}});
    return 1;
  }
  cfg.model = model->get();
  std::unique_ptr<EagleHead> head;
  if (absl::GetFlag(FLAGS_head) != "none") {
    auto h = EagleHead::Load(absl::GetFlag(FLAGS_head), **model, mo);
    if (!h.ok()) {
      LogEvent("error", "head_load_failed",
               {{"head", absl::GetFlag(FLAGS_head)}, {"error", std::string(h.status().message())}});
      return 1;
    }
    if (absl::Status s = WarmUp(**h); !s.ok()) {
      LogEvent("error", "warmup_failed",
               {{"head", absl::GetFlag(FLAGS_head)}, {"error", std::string(s.message())}});
      return 1;
    }
    head = std::move(*h);
    cfg.head = head.get();
    // Auto trees: one draft level's cost by rows on this machine (the verify side comes from
    // the verifier with each session).
    auto costs = MeasureSpeculationCosts(nullptr, *head);
    if (!costs.ok()) {
      LogEvent("error", "cost_measurement_failed",
               {{"error", std::string(costs.status().message())}});
      return 1;
    }
    cfg.tree.costs = *std::move(costs);
  }

  // The verifier must serve the same model: compare fingerprints (waits for it to come up).
  auto channel = cfg.verifier_credentials.Channel(absl::GetFlag(FLAGS_verifier));
  {
    auto stub = v1::Verifier::NewStub(channel);
    const auto give_up = std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(absl::GetFlag(FLAGS_connect_seconds)));
    grpc::ClientContext ctx;
    cfg.verifier_credentials.Attach(&ctx);
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(give_up);
    v1::ModelInfoResponse info;
    grpc::Status s = stub->ModelInfo(&ctx, v1::ModelInfoRequest(), &info);
    if (!s.ok()) {
      LogEvent("error", "verifier_unreachable",
               {{"verifier", absl::GetFlag(FLAGS_verifier)}, {"error", s.error_message()}});
      return 1;
    }
    const std::string mine = (*model)->Fingerprint();
    if (info.weights_fingerprint() != mine || info.vocab_size() != (*model)->config().vocab_size ||
        info.hidden_size() != (*model)->config().hidden_size) {
      LogEvent("error", "model_mismatch",
               {{"verifier_fingerprint", info.weights_fingerprint()},
                {"drafter_fingerprint", mine},
                {"verifier_vocab", info.vocab_size()},
                {"verifier_hidden", info.hidden_size()}});
      return 1;
    }
    for (int l : cfg.head != nullptr ? cfg.head->feature_layers() : std::vector<int>{}) {
      if (l >= info.num_layers()) {
        LogEvent("error", "head_mismatch", {{"feature_layer", l}});
        return 1;
      }
    }
    LogEvent("info", "verifier_checked",
             {{"verifier", absl::GetFlag(FLAGS_verifier)}, {"fingerprint", mine}});
  }

  auto registry = std::make_shared<prometheus::Registry>();
  DrafterMetrics metrics(*registry);
  Generations generations(cfg, channel, &metrics);
  DrafterService service(&generations);
  auto admin = rpc::StartAdmin(absl::GetFlag(FLAGS_admin), registry);
  if (!admin.ok()) {
    LogEvent("error", "admin_listen_failed", {{"error", std::string(admin.status().message())}});
    return 1;
  }
  auto admin_grpc = rpc::StartAdminGrpc(absl::GetFlag(FLAGS_admin_grpc), security->credentials);
  if (!admin_grpc.ok()) {
    LogEvent("error", "admin_listen_failed",
             {{"error", std::string(admin_grpc.status().message())}});
    return 1;
  }
  std::unique_ptr<HttpFrontDoor> http;
  if (!absl::GetFlag(FLAGS_http).empty()) {
    HttpOptions ho;
    ho.listen = absl::GetFlag(FLAGS_http);
    ho.served_model = absl::GetFlag(FLAGS_served_model_name).empty()
                          ? DefaultServedName(absl::GetFlag(FLAGS_model))
                          : absl::GetFlag(FLAGS_served_model_name);
    // One thread per connection: every admitted generation, and a few for refusals and probes.
    ho.threads = cfg.max_generations + 8;
    ho.tls_cert = absl::GetFlag(FLAGS_tls_cert);
    ho.tls_key = absl::GetFlag(FLAGS_tls_key);
    ho.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
    auto h = HttpFrontDoor::Start(ho, &generations, *registry);
    if (!h.ok()) {
      LogEvent("error", "http_listen_failed", {{"error", std::string(h.status().message())}});
      return 1;
    }
    http = std::move(*h);
    if (const std::string f = absl::GetFlag(FLAGS_http_port_file); !f.empty()) {
      if (FILE* out = std::fopen(f.c_str(), "w"); out != nullptr) {
        std::fprintf(out, "%d\n", http->port());
        std::fclose(out);
      }
    }
    LogEvent("info", "http_serving", {{"port", http->port()}, {"model", ho.served_model}});
  }
  rpc::ServeOptions so;
  so.listen = absl::GetFlag(FLAGS_listen);
  so.credentials = security->credentials;
  so.admin_grpc = admin_grpc->get();
  so.port_file = absl::GetFlag(FLAGS_port_file);
  so.grace_seconds = absl::GetFlag(FLAGS_grace_seconds);
  so.drain = [&] { generations.Drain(); };
  so.in_flight = [&] { return generations.in_flight(); };
  so.on_serving = [&](int port) {
    LogEvent("info", "serving",
             {{"port", port},
              {"admin", absl::GetFlag(FLAGS_admin)},
              {"admin_grpc", absl::GetFlag(FLAGS_admin_grpc)},
              {"head", cfg.head != nullptr ? absl::GetFlag(FLAGS_head) : "none"}});
  };
  const int code = rpc::Serve(&service, so, sigs);
  // The grace is over (or the server never started): HTTP generations still running end now,
  // then the HTTP server's connection threads are joined.
  generations.Stop();
  if (http != nullptr) http->Stop();
  rpc::ReleaseAdminAtExit(std::move(*admin));
  return code;
}

}  // namespace
}  // namespace eagle::drafter

int main(int argc, char** argv) { return eagle::drafter::Main(argc, argv); }
