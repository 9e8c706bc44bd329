// eagle-bench: engine benchmark on one model (default: SmolLM2-135M-Instruct Q4_1).
// Prints prefill and decode tokens/s, the time of one forward over trees of 1..64 tokens, peak
// RSS, and the machine's physical limits (measured memory bandwidth and FMA peak), then a JSON
// line with every figure.
//   eagle-bench [--model PATH] [--threads N] [--prompt-tokens N] [--decode-tokens N] [--reps N]
//               [--precision auto|int16|int8|f32] [--isa scalar|avx2|avx512]
//               [--device cpu|cuda|cuda:N]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/cpu/kernels.h"
#include "common/cpu/qmatmul.h"
#include "common/cuda/cuda_backend.h"
#include "common/model/llama_model.h"
#include "common/timing.h"

namespace eagle {
namespace {

double CurrentRssMb() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024.0) / 1024.0;
}

double PeakRssMb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

// Read bandwidth over a buffer much larger than the caches, on every thread of the pool (GB/s,
// best of 5).
double MeasureBandwidth(cpu::ThreadPool& pool) {
  const int64_t words = (int64_t{256} << 20) / 8;  // 256 MiB
  const int64_t lines = words / 8;                 // 64-byte lines
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  pool.ParallelFor(words, pool.Grain(words), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) buf[i] = static_cast<uint64_t>(i);
  });
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::atomic<uint64_t> total{0};
    auto t = Clock::now();
    pool.ParallelFor(lines, pool.Grain(lines, 16), [&](int64_t l0, int64_t l1) {
      uint64_t sum = 0;
      for (int64_t l = l0; l < l1; ++l) {
        const uint64_t* p = buf.get() + l * 8;
        sum += p[0] ^ p[1] ^ p[2] ^ p[3] ^ p[4] ^ p[5] ^ p[6] ^ p[7];
      }
      total.fetch_add(sum, std::memory_order_relaxed);
    });
    const double s = SecondsSince(t);
    volatile uint64_t sink = total.load();
    (void)sink;
    best = std::max(best, static_cast<double>(words * 8) / s / 1e9);
  }
  return best;
}

// A balanced tree of n nodes: node i's parent is (i - 1) / 2 (root attaches to the prefix).
std::vector<int32_t> TreeParents(int n) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = i == 0 ? -1 : (i - 1) / 2;
  return p;
}

int Main(int argc, char** argv) {
  std::string path = EAGLE_DEFAULT_MODEL;
  int threads = 0, prompt_tokens = 128, decode_tokens = 64, reps = 5;
  std::string precision = "auto";
  std::string device = "cpu";
  int profile_tree = 0;  // >0: only run forwards over trees of this many nodes (for profilers)
  std::string isa;       // force kernels: scalar | avx2 | avx512 (default: the best available)
  int amx = 1;           // 0: multi-row products stay on the VNNI kernel (same results)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--model")
      path = argv[i + 1];
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--prompt-tokens")
      prompt_tokens = std::atoi(argv[i + 1]);
    else if (k == "--decode-tokens")
      decode_tokens = std::atoi(argv[i + 1]);
    else if (k == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (k == "--precision")
      precision = argv[i + 1];
    else if (k == "--device")
      device = argv[i + 1];
    else if (k == "--profile-tree")
      profile_tree = std::atoi(argv[i + 1]);
    else if (k == "--isa")
      isa = argv[i + 1];
    else if (k == "--amx")
      amx = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  auto made = cpu::ThreadPool::ForThreads(threads);
  if (!made.ok()) {
    std::fprintf(stderr, "error: --threads: %s\n", std::string(made.status().message()).c_str());
    return 2;
  }
  std::shared_ptr<cpu::ThreadPool> pool = *made;
  threads = pool->num_threads();
  cpu::SetAmxEnabled(amx != 0);
  if (isa == "scalar") cpu::SetIsaForTesting(cpu::Isa::kScalar);
  if (isa == "avx2") cpu::SetIsaForTesting(cpu::Isa::kAvx2);
  if (isa == "avx512") cpu::SetIsaForTesting(cpu::Isa::kAvx512);
  ModelOptions options;
  options.pool = pool;
  options.device = device;
  if (auto p = cpu::ParsePrecision(precision); p.ok()) {
    options.precision = *p;
  } else {
    std::fprintf(stderr, "error: --%s\n", std::string(p.status().message()).c_str());
    return 2;
  }
  auto loaded = LlamaModel::Load(path, options);
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  const LlamaModel& model = **loaded;
  if (profile_tree > 0) {
    auto cache = model.NewCache(256 + profile_tree);
    std::vector<int32_t> prompt(128, 42), toks(profile_tree, 7),
        parents = TreeParents(profile_tree);
    ForwardRequest req;
    req.tokens = prompt;
    if (!model.Forward(*cache, req).ok()) return 1;
    auto t = Clock::now();
    for (int r = 0; r < reps; ++r) {
      req.tokens = toks;
      req.parents = parents;
      if (!model.Forward(*cache, req).ok() || !cache->Truncate(128).ok()) return 1;
    }
    std::printf("tree %d: %.2f ms per forward\n", profile_tree, SecondsSince(t) / reps * 1e3);
    return 0;
  }
  const LlamaConfig& c = model.config();
  std::printf("model: %s\n  %d layers, hidden %d, vocab %d, weights %s, %.1f MB read per token\n",
              path.c_str(), c.num_layers, c.hidden_size, c.vocab_size,
              model.dtype_summary().c_str(), model.weight_bytes() / 1e6);
  std::printf("cpu: %s%s, %d threads\n", cpu::CpuFeatureString().c_str(),
              cpu::QMatMulAmx() ? " (+ amx-int8 for products of >= 8 rows)" : "", threads);

  // Machine limits are measured in a child process so that the probe's 256 MiB buffer does not
  // count in this process's peak RSS.
  double bw = 0, peak = 0, peak_int8 = 0;
  {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    const pid_t pid = fork();
    if (pid == 0) {
      // A pool of the child's own: the parent's workers do not exist after fork.
      cpu::ThreadPool child_pool(pool->options());
      double v[3] = {MeasureBandwidth(child_pool), 0, 0};
      if (cpu::ActiveIsa() == cpu::Isa::kAvx512) {
        cpu::avx512::FmaProbeGflops(1 << 20);
        v[1] = cpu::avx512::FmaProbeGflops(1 << 24) * threads;
      } else if (cpu::ActiveIsa() == cpu::Isa::kAvx2) {
        cpu::avx2::FmaProbeGflops(1 << 20);
        v[1] = cpu::avx2::FmaProbeGflops(1 << 24) * threads;
      }
      if (cpu::QMatMulVnni()) {
        v[2] = 2 * cpu::avx512::DpbusdProbeGmacs(1 << 24) * threads;
      } else if (cpu::QMatMulAccelerated()) {
        v[2] = 2 * cpu::avx2::MaddubsProbeGmacs(1 << 24) * threads;
      }
      if (write(fds[1], v, sizeof v) != sizeof v) _exit(1);
      _exit(0);
    }
    double v[3] = {0, 0, 0};
    if (read(fds[0], v, sizeof v) != sizeof v) return 1;
    waitpid(pid, nullptr, 0);
    close(fds[0]);
    close(fds[1]);
    bw = v[0];
    peak = v[1];
    peak_int8 = v[2];
  }
  // Multiply-adds per token: every matrix element once (2 FLOPs each).
  double params = 0;
  params += static_cast<double>(c.num_layers) *
            (2.0 * c.hidden_size * c.q_dim() + 2.0 * c.hidden_size * c.kv_dim() +
             3.0 * c.hidden_size * c.intermediate_size);
  params += static_cast<double>(c.vocab_size) * c.hidden_size;
  const double flops_per_token = 2 * params;
  // A peak the machine lacks (no VNNI; a scalar-only CPU) is "n/a", not 0.
  auto peak_text = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return v > 0 ? std::string(buf) : std::string("n/a");
  };
  std::printf(
      "machine: memory read bandwidth %.1f GB/s, f32 FMA peak %s GFLOP/s, int8 peak %s "
      "GOP/s (%d threads)\n",
      bw, peak_text(peak).c_str(), peak_text(peak_int8).c_str(), threads);
  if (const int gpu = ParseDevice(device).value_or(-1); gpu >= 0) {
    // The forward pass runs on the GPU: its limits apply (f32 weights, CUDA-core FMAs).
    auto gbs = CudaCopyBandwidthGBs(gpu);
    auto fma = CudaFmaPeakGflops(gpu);
    if (!gbs.ok() || !fma.ok()) {
      std::fprintf(stderr, "error: measuring the GPU: %s\n",
                   std::string((gbs.ok() ? fma.status() : gbs.status()).message()).c_str());
      return 1;
    }
    bw = *gbs;
    peak = *fma;
    peak_int8 = 0;
    std::printf("device: %s (%s): copy bandwidth %.0f GB/s, f32 FMA peak %.0f GFLOP/s\n",
                model.backend().name().c_str(), CudaDeviceSummary(gpu).c_str(), bw, peak);
  }
  // The roof that applies to the matmuls: int8 when the model computes in int8.
  const double peak_f32 = peak;
  if (model.int8() && peak_int8 > 0) peak = peak_int8;
  const double decode_roof = bw * 1e9 / model.weight_bytes();
  std::printf("  decode roof (bandwidth / bytes per token): %.0f tok/s\n", decode_roof);

  std::vector<int32_t> prompt(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = (i * 7919 + 13) % c.vocab_size;
  nlohmann::json report = {{"model", path},
                           {"threads", threads},
                           {"bandwidth_gbs", bw},
                           {"fma_peak_gflops", peak_f32},
                           {"int8_peak_gops", peak_int8},
                           {"weight_bytes", model.weight_bytes()}};

  // Prefill.
  double best_prefill = 1e9;
  for (int r = 0; r < std::max(1, reps / 2); ++r) {
    auto cache = model.NewCache(prompt_tokens + decode_tokens + 128);
    ForwardRequest req;
    req.tokens = prompt;
    req.logits = LogitsMode::kLast;
    auto t = Clock::now();
    auto fr = model.Forward(*cache, req);
    best_prefill = std::min(best_prefill, SecondsSince(t));
    if (!fr.ok()) return 1;
  }
  const double prefill_tps = prompt_tokens / best_prefill;
  const double prefill_gflops = flops_per_token * prompt_tokens / best_prefill / 1e9;
  std::printf("prefill %d tokens: %.1f ms, %.0f tok/s, %.0f GFLOP/s (%.0f%% of compute peak)\n",
              prompt_tokens, best_prefill * 1e3, prefill_tps, prefill_gflops,
              peak > 0 ? 100 * prefill_gflops / peak : 0);

  // Decode.
  auto cache = model.NewCache(prompt_tokens + decode_tokens + 128);
  {
    ForwardRequest req;
    req.tokens = prompt;
    req.logits = LogitsMode::kLast;
    if (!model.Forward(*cache, req).ok()) return 1;
  }
  int32_t tok = 42;
  std::vector<double> steps;
  for (int i = 0; i < decode_tokens; ++i) {
    ForwardRequest req;
    req.tokens = std::span<const int32_t>(&tok, 1);
    req.logits = LogitsMode::kLast;
    auto t = Clock::now();
    auto fr = model.Forward(*cache, req);
    steps.push_back(SecondsSince(t));
    if (!fr.ok()) return 1;
    tok = static_cast<int32_t>(std::max_element(fr->logits.begin(), fr->logits.end()) -
                               fr->logits.begin());
  }
  std::sort(steps.begin(), steps.end());
  const double decode_med = steps[steps.size() / 2];
  double decode_mean = 0;
  for (double s : steps) decode_mean += s;
  decode_mean /= steps.size();
  std::printf(
      "decode (context %d..%d): median %.2f ms/token = %.1f tok/s (mean %.1f tok/s); %.0f%% of the "
      "bandwidth roof\n",
      prompt_tokens, prompt_tokens + decode_tokens, decode_med * 1e3, 1 / decode_med,
      1 / decode_mean, 100 * (1 / decode_med) / decode_roof);
  const double rss_decode = CurrentRssMb();
  report["rss_after_decode_mb"] = rss_decode;
  report["prefill_tokens"] = prompt_tokens;
  report["prefill_tokens_per_s"] = prefill_tps;
  report["decode_tokens_per_s"] = 1 / decode_med;
  report["decode_roof_tokens_per_s"] = decode_roof;

  // Tree forwards appended to the cached prefix, then rolled back.
  std::printf("tree forward (full logits) over the cached %d-token prefix:\n", prompt_tokens);
  nlohmann::json trees = nlohmann::json::array();
  double one = 0;
  for (int n : {1, 4, 8, 16, 32, 64}) {
    std::vector<int32_t> toks(n), parents = TreeParents(n);
    for (int i = 0; i < n; ++i) toks[i] = (i * 31 + 5) % c.vocab_size;
    const int64_t base = cache->length();
    std::vector<double> ts;
    for (int r = 0; r < reps; ++r) {
      ForwardRequest req;
      req.tokens = toks;
      req.parents = parents;
      req.logits = LogitsMode::kAll;
      auto t = Clock::now();
      auto fr = model.Forward(*cache, req);
      ts.push_back(SecondsSince(t));
      if (!fr.ok() || !cache->Truncate(base).ok()) return 1;
    }
    std::sort(ts.begin(), ts.end());
    const double med = ts[ts.size() / 2];
    if (n == 1) one = med;
    const double gf = flops_per_token * n / med / 1e9;
    std::printf("  %2d tokens: %7.2f ms  (%.2fx one token; %.0f GFLOP/s, %.0f%% of compute peak)\n",
                n, med * 1e3, med / one, gf, peak > 0 ? 100 * gf / peak : 0);
    trees.push_back({{"tokens", n}, {"ms", med * 1e3}, {"ratio_to_1", med / one}});
  }
  report["tree"] = trees;
  const double kv_mb = cache->bytes() / 1e6;
  const double rss = PeakRssMb();
  const double held = model.weight_bytes() / 1e6;
  std::printf(
      "RSS after decode %.1f MB, peak %.1f MB (with the 64-node tree's full logits); weights as "
      "held %.1f MB + "
      "KV cache %.1f MB: ratios %.2f and %.2f\n",
      rss_decode, rss, held, kv_mb, rss_decode / (held + kv_mb), rss / (held + kv_mb));
  report["peak_rss_mb"] = rss;
  std::printf("%s\n", report.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
