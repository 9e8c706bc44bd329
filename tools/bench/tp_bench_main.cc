// eagle-tp-bench: what tensor parallelism costs on this machine. Starts `--tp N` ranks (processes
// over Gloo on loopback, as eagle-cli --tp), loads each rank's share of the model and, for each
// pass size in --rows, times on every rank in step: the forward pass (a chain of that many rows
// after a 64-token prefix: decode at 1, verify-sized trees beyond), one all-reduce of the
// pass's residual (rows x hidden floats; a pass makes 2 per layer) and one all-gather of its
// logits share (rows x ceil(vocab / N) floats); then the same pass as a greedy sampler runs it
// (argmax ids only: one (maximum, index) pair per row and rank instead of the logits). Rank 0
// prints a table with the collectives' share of the pass and the bytes each rank receives per
// pass, then a JSON line.
//   eagle-tp-bench [--model PATH] [--tp N] [--threads T] [--rows 1,4,16,64] [--reps R]
//                  [--precision auto|int16|int8|f32]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/dist/group.h"
#include "common/model/llama_model.h"
#include "tools/flag_map.h"

namespace eagle {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

[[noreturn]] void Die(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "eagle-tp-bench: error: %s: %s\n", what.c_str(),
               std::string(s.message()).c_str());
  std::exit(1);
}

int Main(int argc, char** argv) {
  FlagMap a("eagle-tp-bench",
            {{"--model", EAGLE_DEFAULT_MODEL},
             {"--tp", "2"},
             {"--threads", "1"},
             {"--rows", "1,4,16,64"},
             {"--reps", "20"},
             {"--precision", "auto"}},
            {"--rank", "--world-size", "--rendezvous"});
  a.Parse(argc, argv);
  TensorParallelFlags f;
  f.tp = a.Int("--tp", 1, 64);
  if (a.Has("--rank")) {
    f.tp = 1;
    f.rank = a.Int("--rank", 0, 63);
    f.world_size = a.Int("--world-size", 1, 64);
    f.rendezvous = a["--rendezvous"];
  }
  const int reps = a.Int("--reps", 1, 100000);
  std::vector<int64_t> rows;
  for (absl::string_view r : absl::StrSplit(a["--rows"], ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(r, &v) || v < 1 || v > 4096) {
      std::fprintf(stderr, "eagle-tp-bench: --rows: '%s' is not a count in [1, 4096]\n",
                   std::string(r).c_str());
      return 2;
    }
    rows.push_back(v);
  }
  auto precision = cpu::ParsePrecision(a["--precision"]);
  if (!precision.ok()) Die("--precision", precision.status());
  auto group = StartTensorParallel(f, std::vector<std::string>(argv, argv + argc));
  if (!group.ok()) Die("tensor parallel group", group.status());
  Communicator* comm = group->comm.get();
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int world = comm != nullptr ? comm->world_size() : 1;
  auto pool = cpu::ThreadPool::ForThreads(a.Int("--threads", 0, 1024));
  if (!pool.ok()) Die("--threads", pool.status());
  ModelOptions mo;
  mo.pool = *pool;
  mo.precision = *precision;
  mo.comm = group->comm;
  auto model = LlamaModel::Load(a["--model"], mo);
  if (!model.ok()) Die("model", model.status());
  const LlamaConfig& c = (*model)->config();
  const int64_t h = c.hidden_size, chunk = (c.vocab_size + world - 1) / world;
  const int64_t prefix = 64;
  nlohmann::json table = nlohmann::json::array();
  if (rank == 0) {
    std::printf("%d rank(s), %d thread(s) each; %s; weights read per token per rank %.1f MB\n",
                world, (*pool)->num_threads(), (*model)->dtype_summary().c_str(),
                (*model)->weight_bytes() / 1e6);
    std::printf("%6s %10s %12s %10s %12s %9s %14s %10s %14s\n", "rows", "pass ms", "all-reduce us",
                "per pass", "gather us", "share", "recv KB/pass", "greedy ms", "greedy recv KB");
  }
  for (int64_t n : rows) {
    auto cache = (*model)->NewCache(prefix + n);
    std::vector<int32_t> prompt(prefix), tokens(n);
    for (int64_t i = 0; i < prefix; ++i)
      prompt[i] = static_cast<int32_t>((i * 37 + 11) % c.vocab_size);
    for (int64_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>((i * 53 + 7) % c.vocab_size);
    ForwardRequest pre;
    pre.tokens = prompt;
    pre.logits = LogitsMode::kNone;
    if (auto r = (*model)->Forward(*cache, pre); !r.ok()) Die("prefill", r.status());
    ForwardRequest pass;
    pass.tokens = tokens;
    pass.logits = LogitsMode::kAll;
    // A pass, `reps` times from the same prefix (one warm-up first).
    auto time_pass = [&](const ForwardRequest& req) {
      double ms = 0;
      for (int rep = 0; rep <= reps; ++rep) {
        cache->set_length(prefix);
        if (comm != nullptr) {
          if (absl::Status s = comm->Barrier(); !s.ok()) Die("barrier", s);
        }
        const auto t0 = Clock::now();
        if (auto r = (*model)->Forward(*cache, req); !r.ok()) Die("forward", r.status());
        if (rep > 0) ms += Ms(t0) / reps;
      }
      return ms;
    };
    const double pass_ms = time_pass(pass);
    ForwardRequest greedy = pass;
    greedy.argmax_only = true;
    const double greedy_ms = time_pass(greedy);
    // The collectives alone, at this pass's sizes.
    double reduce_us = 0, gather_us = 0;
    if (comm != nullptr) {
      std::vector<float> x(n * h, 1.0f), mine(n * chunk, 1.0f), all(world * n * chunk);
      for (int rep = 0; rep <= reps; ++rep) {
        if (absl::Status s = comm->Barrier(); !s.ok()) Die("barrier", s);
        const auto t0 = Clock::now();
        for (int l = 0; l < 2 * c.num_layers; ++l) {
          if (absl::Status s = comm->AllReduceSum(x.data(), n * h); !s.ok()) Die("all-reduce", s);
        }
        if (rep > 0) reduce_us += Ms(t0) * 1e3 / (2 * c.num_layers) / reps;
        const auto t1 = Clock::now();
        if (absl::Status s = comm->AllGather(mine.data(), n * chunk * 4, all.data()); !s.ok()) {
          Die("all-gather", s);
        }
        if (rep > 0) gather_us += Ms(t1) * 1e3 / reps;
      }
    }
    const int per_pass = comm != nullptr ? 2 * c.num_layers : 0;
    const double coll_ms = (per_pass * reduce_us + (comm != nullptr ? gather_us : 0)) / 1e3;
    // What one rank receives per pass: (world - 1) shares of each all-reduce (all-gather then
    // sum) and of the logits.
    const double recv_kb = (world - 1) * (per_pass * n * h + n * chunk) * 4 / 1e3;
    const double greedy_recv_kb =
        comm != nullptr ? (world - 1) * (per_pass * n * h * 4 + n * 8) / 1e3 : 0;
    if (rank == 0) {
      std::printf("%6lld %10.2f %12.1f %10d %12.1f %8.0f%% %14.1f %10.2f %14.1f\n",
                  static_cast<long long>(n), pass_ms, reduce_us, per_pass, gather_us,
                  100 * coll_ms / pass_ms, recv_kb, greedy_ms, greedy_recv_kb);
      table.push_back({{"rows", n},
                       {"pass_ms", pass_ms},
                       {"allreduce_us", reduce_us},
                       {"allreduces_per_pass", per_pass},
                       {"gather_us", gather_us},
                       {"collective_share", coll_ms / pass_ms},
                       {"recv_kb_per_pass", recv_kb},
                       {"greedy_pass_ms", greedy_ms},
                       {"greedy_recv_kb_per_pass", greedy_recv_kb}});
    }
  }
  if (rank == 0) {
    std::printf("%s\n", nlohmann::json({{"tp", world}, {"passes", table}}).dump().c_str());
  }
  if (!group->ranks.pids().empty()) {
    if (absl::Status s = group->ranks.Wait(std::chrono::seconds(60)); !s.ok()) Die("ranks", s);
  }
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
