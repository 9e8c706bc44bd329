// eagle-verifier: holds the target model and verifies the draft trees of many drafter sessions
// in batched forward passes; also serves plain generation. See verifier/README.md.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#if __has_include(<malloc.h>)
#include <malloc.h>  // malloc_trim (glibc)
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template.h"
#include "common/eagle/cost_model.h"
#include "common/log.h"
#include "common/prompt.h"
#include "common/rpc/security.h"
#include "common/rpc/server.h"
#include "common/thread_name.h"
#include "verifier/service.h"

ABSL_FLAG(std::string, model, EAGLE_DEFAULT_MODEL,
          "target model: a GGUF file or a Hugging Face directory");
ABSL_FLAG(std::string, chat_template, "",
          "chat template for message requests: empty = the model's own (Jinja, rendered as "
          "transformers does), or a built-in one: chatml | llama2 | llama3 | vicuna");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC address (host:port; port 0 = any)");
ABSL_FLAG(std::string, admin, "127.0.0.1:9091",
          "admin HTTP address for Prometheus /metrics (empty = off)");
ABSL_FLAG(std::string, precision, "auto", "auto | int16 | int8 | f32 (see eagle-cli --help)");
ABSL_FLAG(int, threads, 0,
          "threads of the forward passes' pool, the engine thread included (0 = every CPU the "
          "process may use: its affinity mask, capped by a cgroup CPU quota)");
ABSL_FLAG(std::string, device, "cpu",
          "where the forward passes run: cpu, cuda or cuda:N (a build with -DEAGLE_WITH_CUDA=ON)");
ABSL_FLAG(double, spin_us, 200,
          "a pool worker's spin after its last chunk before it parks, microseconds");
ABSL_FLAG(bool, pin_threads, false,
          "pin the pool's workers to CPUs of the affinity mask (leave off when other processes "
          "share the cores)");
ABSL_FLAG(int64_t, kv_budget_mb, 4096, "KV cache budget over all sessions, MiB");
ABSL_FLAG(int, max_sessions, 256, "open sessions at most");
ABSL_FLAG(int, max_tree_nodes, 256, "nodes per verified tree at most");
ABSL_FLAG(int, max_batch_tokens, 512,
          "tokens per batched forward pass (longer prompts are prefilled in chunks)");
ABSL_FLAG(double, grace_seconds, 20, "on SIGTERM: time for in-flight work to finish");
ABSL_FLAG(double, session_idle_seconds, 120,
          "a session that sends nothing for this long is cancelled and freed (0 = never)");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");

namespace eagle::verifier {
namespace {

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage("eagle-verifier [--model PATH] [--listen HOST:PORT] ...");
  absl::ParseCommandLine(argc, argv);
  SetLogService("verifier");
  // SIGTERM/SIGINT are handled by rpc::Serve (blocked here, before any thread starts).
  const sigset_t sigs = rpc::BlockTerminationSignals();
  auto pool = cpu::ThreadPool::ForThreads(
      absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_pin_threads), absl::GetFlag(FLAGS_spin_us));
  if (!pool.ok()) {
    std::fprintf(stderr, "error: --%s\n", std::string(pool.status().message()).c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_batch_tokens) < 1 || absl::GetFlag(FLAGS_max_tree_nodes) < 1 ||
      absl::GetFlag(FLAGS_max_sessions) < 1 || absl::GetFlag(FLAGS_kv_budget_mb) < 1) {
    std::fprintf(stderr,
                 "error: --max_batch_tokens, --max_tree_nodes, --max_sessions and --kv_budget_mb "
                 "must be at least 1\n");
    return 2;
  }
  auto precision = cpu::ParsePrecision(absl::GetFlag(FLAGS_precision));
  if (!precision.ok()) {
    std::fprintf(stderr, "error: --%s\n", std::string(precision.status().message()).c_str());
    return 2;
  }
  auto security = rpc::ServerSecurityFromFlags();
  if (!security.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }
  ModelOptions mo;
  mo.precision = *precision;
  mo.pool = *pool;
  mo.device = absl::GetFlag(FLAGS_device);
  const auto t0 = std::chrono::steady_clock::now();
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
  LogEvent(
      "info", "model_loaded",
      {{"path", absl::GetFlag(FLAGS_model)},
       {"dtype", (*model)->dtype_summary()},
       {"threads", mo.pool->Describe()},
       {"backend", (*model)->backend().name()},
       {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});

  // Readiness only after a forward pass has worked (a failed warm-up exits, it never serves).
  const auto t1 = std::chrono::steady_clock::now();
  if (absl::Status s = WarmUp(**model); !s.ok()) {
    LogEvent("error", "warmup_failed", {{"error", std::string(s.message())}});
    return 1;
  }
  LogEvent(
      "info", "warmed_up",
      {{"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count()}});

  auto registry = std::make_shared<prometheus::Registry>();
  VerifierMetrics metrics(*registry);
  EngineOptions eo;
  eo.kv_budget_bytes = absl::GetFlag(FLAGS_kv_budget_mb) << 20;
  eo.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  eo.max_tree_nodes = absl::GetFlag(FLAGS_max_tree_nodes);
  eo.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  Engine engine(model->get(), eo, metrics.Hooks());
  // What drafters size auto trees from: the forward pass's cost by rows on this machine.
  const auto t2 = std::chrono::steady_clock::now();
  auto cost = MeasureForwardCost(**model, DefaultCostRows(), /*repeats=*/2);
  if (!cost.ok()) {
    LogEvent("error", "cost_measurement_failed", {{"error", std::string(cost.status().message())}});
    return 1;
  }
  {
    std::string curve;
    for (const CostCurve::Point& p : cost->points()) {
      absl::StrAppend(&curve, curve.empty() ? "" : " ", p.rows, ":", p.seconds * 1e3);
    }
    LogEvent("info", "forward_cost_measured",
             {{"rows_ms", curve},
              {"seconds",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count()}});
  }
  engine.SetForwardCost(*std::move(cost));
  metrics.Refresh(engine);
  VerifierService service(&engine, &metrics, std::move(security->auth));
  auto admin = rpc::StartAdmin(absl::GetFlag(FLAGS_admin), registry);
  if (!admin.ok()) {
    LogEvent("error", "admin_listen_failed", {{"error", std::string(admin.status().message())}});
    return 1;
  }

  // Gauges follow the engine between requests (queue depth, KV use); silent sessions are reaped.
  std::atomic<bool> stop_refresh{false};
  std::thread refresher;
  rpc::ServeOptions so;
  so.listen = absl::GetFlag(FLAGS_listen);
  so.credentials = security->credentials;
  so.port_file = absl::GetFlag(FLAGS_port_file);
  so.grace_seconds = absl::GetFlag(FLAGS_grace_seconds);
  so.drain = [&] { engine.Drain(); };
  so.in_flight = [&] { return service.in_flight(); };
  so.on_serving = [&](int port) {
    refresher = std::thread([&] {
      NameThisThread("eagle-metrics");
      const double idle = absl::GetFlag(FLAGS_session_idle_seconds);
      // Closed sessions' KV caches go back to the OS once 16 MiB have been freed, or when the
      // last session closes. glibc keeps freed blocks in its per-thread arenas (and raises its
      // mmap threshold after the first large free), so without a trim the resident size keeps
      // the high-water mark of past sessions.
      int64_t trimmed_at = 0;
      while (!stop_refresh) {
        metrics.Refresh(engine);
        if (idle > 0) service.ReapIdle(idle);
        const EngineStats st = engine.stats();
        const int64_t freed = st.kv_bytes_released - trimmed_at;
        if (freed >= (int64_t{16} << 20) || (freed > 0 && st.active_sessions == 0)) {
#ifdef __GLIBC__
          malloc_trim(0);
#endif
          trimmed_at = st.kv_bytes_released;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
    LogEvent("info", "serving",
             {{"port", port},
              {"admin", absl::GetFlag(FLAGS_admin)},
              {"fingerprint", service.fingerprint()}});
  };
  const int code = rpc::Serve(&service, so, sigs);
  stop_refresh = true;
  if (refresher.joinable()) refresher.join();
  rpc::ReleaseAdminAtExit(std::move(*admin));
  return code;
}

}  // namespace
}  // namespace eagle::verifier

int main(int argc, char** argv) { return eagle::verifier::Main(argc, argv); }
