// eagle-verifier: holds the target model and verifies the draft trees of many drafter sessions
// in batched forward passes; also serves plain generation. See verifier/README.md.
#include <signal.h>
#include <unistd.h>

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
#include "common/dist/group.h"
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
ABSL_FLAG(std::string, admin_grpc, "127.0.0.1:9093",
          "admin gRPC address: server reflection and health, which the data port does not "
          "serve (empty = off)");
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
          "a session (or plain Generate) with no engine work for this long, because its client "
          "sends nothing or stopped reading, is cancelled and freed (0 = never)");
ABSL_FLAG(int, feature_chunk_kib, 4096,
          "a session's prompt features go to the drafter in messages of at most this many KiB, "
          "one feature row at least (1 to 7168: under gRPC's 8 MiB message limit)");
ABSL_FLAG(std::string, port_file, "", "write the bound gRPC port here once serving");
ABSL_FLAG(int, tp, 1,
          "tensor parallelism: split the model over N CPU rank processes on this host (Gloo); "
          "this process is rank 0 and serves. The degree must divide the model's KV heads and "
          "FFN width");
ABSL_FLAG(int, rank, -1,
          "this process's rank in a group spread over hosts (with --world_size "
          "and --rendezvous); rank 0 serves, the others follow it");
ABSL_FLAG(int, world_size, 0, "the size of a group spread over hosts");
ABSL_FLAG(std::string, rendezvous, "",
          "HOST:PORT where rank 0 serves the group's rendezvous (--rank); with --tp, optional");
ABSL_FLAG(std::string, follower_listen, "",
          "ranks other than 0: answer the standard gRPC health check (SERVING while following "
          "rank 0) on this address, so that one pod template's probes fit every rank; empty: "
          "no listener");
ABSL_FLAG(double, tp_timeout, 30,
          "seconds: bound on joining the group and on every collective; a rank that dies or "
          "hangs fails the group within it, and every rank then exits non-zero");

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
  if (absl::GetFlag(FLAGS_feature_chunk_kib) < 1 || absl::GetFlag(FLAGS_feature_chunk_kib) > 7168) {
    std::fprintf(stderr, "error: --feature_chunk_kib must be 1 to 7168\n");
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
  TensorParallelFlags tpf;
  tpf.tp = absl::GetFlag(FLAGS_tp);
  tpf.rank = absl::GetFlag(FLAGS_rank);
  tpf.world_size = absl::GetFlag(FLAGS_world_size);
  tpf.rendezvous = absl::GetFlag(FLAGS_rendezvous);
  tpf.timeout_s = absl::GetFlag(FLAGS_tp_timeout);
  tpf.world_size_flag = "--world_size";
  absl::StatusOr<TensorParallelGroup> group =
      StartTensorParallel(tpf, std::vector<std::string>(argv, argv + argc));
  if (!group.ok()) {
    LogEvent("error", "tensor_parallel_start_failed",
             {{"error", std::string(group.status().message())}});
    return absl::IsInvalidArgument(group.status()) ? 2 : 1;
  }
  const int rank = group->comm != nullptr ? group->comm->rank() : 0;
  ModelOptions mo;
  mo.precision = *precision;
  mo.pool = *pool;
  mo.device = absl::GetFlag(FLAGS_device);
  mo.comm = group->comm;
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
    LogEvent("error", "model_load_failed",
             {{"error", std::string(model.status().message())}, {"rank", rank}});
    return 1;
  }
  if (group->comm != nullptr) {
    if (absl::Status s = CheckSameModel(*group->comm, absl::StrCat((*model)->Fingerprint(), "/",
                                                                   absl::GetFlag(FLAGS_precision)));
        !s.ok()) {
      LogEvent("error", "tensor_parallel_models_differ",
               {{"error", std::string(s.message())}, {"rank", rank}});
      return 1;
    }
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
    LogEvent("error", "warmup_failed", {{"error", std::string(s.message())}, {"rank", rank}});
    return 1;
  }
  LogEvent(
      "info", "warmed_up",
      {{"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count()},
       {"rank", rank}});
  // Tensor parallel: the other ranks follow rank 0's passes until it stops them (exit 0) or
  // the group fails (exit 1).
  if (rank != 0) {
    // SIGTERM/SIGINT (blocked in every thread, as on rank 0): a follower asked to stop leaves at
    // once; rank 0 then sees its connections close.
    std::thread([sigs] {
      NameThisThread("eagle-signals");
      int sig = 0;
      sigwait(&sigs, &sig);
      LogEvent("info", "tensor_parallel_rank_terminated", {{"signal", sig}});
      std::_Exit(0);
    }).detach();
    std::unique_ptr<grpc::Server> health;
    if (const std::string address = absl::GetFlag(FLAGS_follower_listen); !address.empty()) {
      grpc::EnableDefaultHealthCheckService(true);
      grpc::ServerBuilder builder;
      builder.AddListeningPort(address, security->credentials);
      rpc::SetReflection(builder, false);
      health = builder.BuildAndStart();
      if (health == nullptr) {
        LogEvent("error", "listen_failed", {{"address", address}, {"rank", rank}});
        return 1;
      }
    }
    LogEvent("info", "following", {{"rank", rank}});
    absl::Status s = (*model)->FollowLeader();
    if (health != nullptr) health->Shutdown(std::chrono::system_clock::now());
    if (!s.ok()) {
      LogEvent("error", "tensor_parallel_failed",
               {{"error", std::string(s.message())}, {"rank", rank}});
      return 1;
    }
    LogEvent("info", "tensor_parallel_stopped", {{"rank", rank}});
    return 0;
  }
  // Rank 0: a failed collective (a rank died or hung) makes the service drain as on SIGTERM
  // (health NOT_SERVING) and exit 1; the drafters' sessions resume once the group is back.
  // Shared with the callback, which the heartbeat thread may run until the model is destroyed.
  auto group_failed = std::make_shared<std::atomic<bool>>(false);
  if (group->comm != nullptr) {
    const auto beat = std::chrono::milliseconds(static_cast<int64_t>(tpf.timeout_s * 1000 / 2));
    absl::Status s = (*model)->LeadFollowers(beat, [group_failed](const absl::Status& e) {
      if (group_failed->exchange(true)) return;
      LogEvent("error", "tensor_parallel_failed", {{"error", std::string(e.message())}});
      ::kill(::getpid(), SIGTERM);  // to the process: rpc::Serve waits for it
    });
    if (!s.ok()) return 1;
  }

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
  VerifierService service(&engine, &metrics, std::move(security->auth),
                          int64_t{absl::GetFlag(FLAGS_feature_chunk_kib)} << 10);
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

  // Gauges follow the engine between requests (queue depth, KV use); silent sessions are reaped.
  std::atomic<bool> stop_refresh{false};
  std::thread refresher;
  rpc::ServeOptions so;
  so.listen = absl::GetFlag(FLAGS_listen);
  so.credentials = security->credentials;
  so.admin_grpc = admin_grpc->get();
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
              {"admin_grpc", absl::GetFlag(FLAGS_admin_grpc)},
              {"fingerprint", service.fingerprint()}});
  };
  const int code = rpc::Serve(&service, so, sigs);
  stop_refresh = true;
  if (refresher.joinable()) refresher.join();
  rpc::ReleaseAdminAtExit(std::move(*admin));
  if (group->comm != nullptr) {
    // Stop the followers; the ranks this process started then exit on their own.
    absl::Status s = (*model)->StopFollowers();
    if (s.ok() && !group->ranks.pids().empty()) s = group->ranks.Wait(std::chrono::seconds(30));
    if (!s.ok() || *group_failed) {
      LogEvent("error", "tensor_parallel_exit", {{"error", std::string(s.message())}});
      return 1;
    }
  }
  return code;
}

}  // namespace
}  // namespace eagle::verifier

int main(int argc, char** argv) { return eagle::verifier::Main(argc, argv); }
