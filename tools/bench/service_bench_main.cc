// eagle-service-bench: the services against the in-process generator, on the same prompts.
// Measures (greedy, wall time per request including prefill, client side):
//   1. in process: plain decoding and speculative decoding (--tree, default auto as in the
//      drafter; auto plans with this process's measured costs);
//   2. through the drafter, one session at a time: tokens/s and its ratio to (1);
//   3. through the drafter, N sessions at once: aggregate tokens/s and its ratio to (2);
//   4. the same two for plain generation on the verifier (continuous batching of decode steps);
//   5. bytes per verify step each way and round trips per step, from the drafter's metrics;
//   6. with --http (the drafter's --http address): time to first token and tokens/s through the
//      OpenAI-compatible HTTP API (streaming chat) against the gRPC API, one request at a time,
//      the two interleaved prompt by prompt, and whether their texts agree.
// Start the services first (scripts/bench_services.sh does it all).
//   eagle-service-bench --server ADDR --verifier ADDR --drafter-admin PORT [--limit N]
//                       [--max-tokens N] [--concurrency N] [--threads N] [--report FILE]
//                       [--tree auto|chain|static|dynamic]
//                       [--tls-ca PEM [--tls-cert PEM --tls-key PEM] [--tls-server-name N]]
//                       [--token-file F]   (secured services: as eagle-cli's flags)
//                       [--http HOST:PORT --served-model NAME]
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/eagle/cost_model.h"
#include "common/eagle/speculative.h"
#include "common/generate.h"
#include "common/prompt.h"
#include "common/rpc/convert.h"
#include "common/rpc/security.h"
#include "common/timing.h"
#include "eagle/v1/drafter.grpc.pb.h"
#include "eagle/v1/verifier.grpc.pb.h"
#include "tools/flag_map.h"
#include "tools/tool_model.h"

namespace eagle {
namespace {

double Scrape(int port, const std::string& name) {
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    const size_t sp = line.rfind(' ');
    if (line.empty() || line[0] == '#' || sp == absl::string_view::npos) continue;
    double v = 0;
    if (line.substr(0, sp) == name && absl::SimpleAtod(line.substr(sp + 1), &v)) return v;
  }
  return -1;
}

struct Run {
  double first_token_seconds = 0;  // summed over requests (sequential runs)
  double tokens = 0;
  double seconds = 0;  // sum of per-request wall times (sequential) or the batch's wall time
  std::vector<std::vector<int32_t>> outputs;
  // Summed over requests: verify steps and the decode time split into draft, network (gRPC and
  // hand-offs: round trips minus the verifier's forward) and verify.
  double steps = 0, decode_seconds = 0, draft_seconds = 0, network_seconds = 0, verify_seconds = 0;
  double tps() const { return seconds > 0 ? tokens / seconds : 0; }
  void Add(const v1::GenerateResponse& last) {
    steps += last.stats().steps();
    decode_seconds += last.timings().decode_seconds();
    draft_seconds += last.timings().draft_seconds();
    network_seconds += last.timings().network_seconds();
    verify_seconds += last.timings().verify_seconds();
  }
};

template <typename Stub>
std::vector<int32_t> Call(Stub* stub, const v1::GenerateRequest& req,
                          const rpc::ClientCredentials& creds, bool* ok,
                          double* first_token = nullptr, Run* split = nullptr,
                          std::string* text = nullptr) {
  grpc::ClientContext ctx;
  creds.Attach(&ctx);
  const auto t0 = Clock::now();
  auto reader = stub->Generate(&ctx, req);
  std::vector<int32_t> ids;
  v1::GenerateResponse chunk;
  while (reader->Read(&chunk)) {
    if (ids.empty() && first_token != nullptr) *first_token += SecondsSince(t0);
    ids.insert(ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    if (text != nullptr) *text += chunk.text();
    if (split != nullptr && chunk.has_timings()) split->Add(chunk);
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.error_message().c_str());
    *ok = false;
  }
  return ids;
}

// One streaming chat completion over HTTP: its text, and the seconds to its first text event.
struct HttpResult {
  bool ok = false;
  std::string text;
  double first_token_seconds = 0;
  double seconds = 0;
  int completion_tokens = 0;
};
HttpResult HttpChat(const std::string& address, const std::string& model, const std::string& prompt,
                    int max_tokens, const std::string& token) {
  HttpResult r;
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return r;  // checked in Main
  }
  httplib::Client cli(address.substr(0, colon), port);
  cli.set_read_timeout(std::chrono::seconds(300));
  nlohmann::json body = {
      {"model", model},           {"messages", {{{"role", "user"}, {"content", prompt}}}},
      {"max_tokens", max_tokens}, {"temperature", 0},
      {"stream", true},           {"stream_options", {{"include_usage", true}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.set_header("Content-Type", "application/json");
  if (!token.empty()) req.set_header("Authorization", "Bearer " + token);
  req.body = body.dump();
  std::string buf;
  const auto t0 = Clock::now();
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buf.append(data, n);
    for (size_t end; (end = buf.find("\n\n")) != std::string::npos;) {
      std::string ev = buf.substr(0, end);
      buf.erase(0, end + 2);
      if (ev.rfind("data: ", 0) != 0 || ev == "data: [DONE]") continue;
      auto j = nlohmann::json::parse(ev.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("usage")) r.completion_tokens = j["usage"]["completion_tokens"];
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const auto& d = j["choices"][0]["delta"];
      if (d.contains("content") && !d["content"].get<std::string>().empty()) {
        if (r.text.empty()) r.first_token_seconds = SecondsSince(t0);
        r.text += d["content"].get<std::string>();
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err;
  r.ok = cli.send(req, res, err) && res.status == 200;
  r.seconds = SecondsSince(t0);
  return r;
}

// Sequential (concurrency 1) or concurrent over the prompts; every prompt once.
template <typename MakeStub>
Run Serve(const MakeStub& make, const std::vector<v1::GenerateRequest>& reqs, int concurrency,
          const rpc::ClientCredentials& creds, bool* ok) {
  Run r;
  r.outputs.resize(reqs.size());
  if (concurrency <= 1) {
    auto stub = make();
    for (size_t i = 0; i < reqs.size(); ++i) {
      const auto t0 = Clock::now();
      r.outputs[i] = Call(stub.get(), reqs[i], creds, ok, &r.first_token_seconds, &r);
      r.seconds += SecondsSince(t0);
      r.tokens += static_cast<double>(r.outputs[i].size());
    }
    return r;
  }
  std::atomic<size_t> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      auto stub = make();
      for (size_t i = next++; i < reqs.size(); i = next++)
        r.outputs[i] = Call(stub.get(), reqs[i], creds, ok);
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = SecondsSince(t0);
  for (const auto& o : r.outputs) r.tokens += static_cast<double>(o.size());
  return r;
}

int Main(int argc, char** argv) {
  FlagMap a("eagle-service-bench", {{"--model", EAGLE_DEFAULT_MODEL},
                                    {"--draft", EAGLE_DEFAULT_HEAD},
                                    {"--prompts", EAGLE_DEFAULT_PROMPTS},
                                    {"--server", "127.0.0.1:50052"},
                                    {"--verifier", "127.0.0.1:50051"},
                                    {"--drafter-admin", "9092"},
                                    {"--limit", "16"},
                                    {"--max-tokens", "64"},
                                    {"--concurrency", "8"},
                                    {"--threads", "0"},
                                    {"--report", ""},
                                    {"--tree", "auto"},
                                    {"--tls-ca", ""},
                                    {"--tls-cert", ""},
                                    {"--tls-key", ""},
                                    {"--tls-server-name", ""},
                                    {"--token-file", ""},
                                    {"--http", ""},
                                    {"--served-model", "SmolLM2-135M-Instruct.Q4_1"}});
  a.Parse(argc, argv);
  // Every number is checked before any work (each read below exits 2 on a bad value, too).
  for (const char* f : {"--threads", "--limit", "--max-tokens", "--concurrency", "--drafter-admin"})
    a.Int(f);
  if (const std::string& h = a["--http"]; !h.empty()) {
    int port = 0;
    const size_t colon = h.rfind(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(h.substr(colon + 1), &port)) {
      std::fprintf(stderr, "eagle-service-bench: error: --http: '%s' is not HOST:PORT\n",
                   h.c_str());
      return 2;
    }
  }
  const std::unique_ptr<LlamaModel> model = LoadToolModel(a);
  const std::unique_ptr<EagleHead> head = LoadToolHead(a, *model);
  TreeOptions tree;
  if (auto mode = ParseTreeMode(a["--tree"]); mode.ok()) {
    tree.mode = *mode;
  } else {
    std::fprintf(stderr, "error: --tree: %s\n", std::string(mode.status().message()).c_str());
    return 2;
  }
  if (tree.mode == TreeMode::kAuto) {
    auto costs = MeasureSpeculationCosts(model.get(), *head);
    if (!costs.ok()) {
      std::fprintf(stderr, "error: measuring costs: %s\n",
                   std::string(costs.status().message()).c_str());
      return 1;
    }
    tree.costs = *costs;
  }
  const int max_tokens = a.Int("--max-tokens");
  const int concurrency = a.Int("--concurrency");
  std::vector<std::string> texts;
  {
    std::ifstream in(a["--prompts"]);
    std::string line;
    while (std::getline(in, line) && static_cast<int>(texts.size()) < a.Int("--limit")) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("prompt")) texts.push_back(j["prompt"]);
    }
  }
  std::vector<std::vector<int32_t>> ids;
  std::vector<v1::GenerateRequest> reqs;
  for (const auto& t : texts) {
    auto e = EncodeChat(*model, {{"user", t}});
    if (!e.ok()) return 1;
    ids.push_back(*e);
    v1::GenerateRequest r;
    auto* m = r.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(t);
    r.set_max_tokens(max_tokens);
    reqs.push_back(r);
  }
  GenerateOptions o;
  o.max_tokens = max_tokens;
  // 1. In process.
  Run vanilla, spec;
  SpeculativeStats total_stats;
  for (int warm = 1; warm >= 0; --warm) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (warm && i > 0) break;
      auto t0 = Clock::now();
      auto v = GenerateVanilla(*model, ids[i], o, nullptr);
      const double tv = SecondsSince(t0);
      EagleDraftModel d(head.get(), static_cast<int64_t>(ids[i].size()) + max_tokens + 1024);
      SpeculativeStats st;
      t0 = Clock::now();
      auto s = GenerateSpeculative(*model, d, ids[i], o, tree, nullptr, &st);
      const double ts = SecondsSince(t0);
      if (!v.ok() || !s.ok()) return 1;
      if (warm) continue;
      vanilla.tokens += static_cast<double>(v->token_ids.size());
      vanilla.seconds += tv;
      vanilla.outputs.push_back(v->token_ids);
      spec.tokens += static_cast<double>(s->token_ids.size());
      spec.seconds += ts;
      spec.first_token_seconds += s->prefill_seconds;
      spec.steps += st.steps;
      spec.decode_seconds += s->decode_seconds;
      spec.draft_seconds += st.draft_seconds;
      spec.verify_seconds += st.verify_seconds;
      total_stats.steps += st.steps;
      total_stats.accepted_drafts += st.accepted_drafts;
      total_stats.tree_nodes += st.tree_nodes;
      total_stats.plain_steps += st.plain_steps;
    }
  }
  std::fprintf(stderr, "in-process runs done\n");
  bool ok = true;
  auto creds = rpc::ClientCredentials::Make(
      {a["--tls-ca"], a["--tls-cert"], a["--tls-key"], a["--tls-server-name"], a["--token-file"]});
  if (!creds.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(creds.status().message()).c_str());
    return 2;
  }
  auto drafter = [&] { return v1::Drafter::NewStub(creds->Channel(a["--server"])); };
  auto verifier = [&] { return v1::Verifier::NewStub(creds->Channel(a["--verifier"])); };
  const int admin = a.Int("--drafter-admin");
  Serve(drafter, std::vector<v1::GenerateRequest>(reqs.begin(), reqs.begin() + 1), 1, *creds, &ok);
  const double sent0 = Scrape(admin, "eagle_drafter_verifier_bytes_total{direction=\"sent\"}");
  const double recv0 = Scrape(admin, "eagle_drafter_verifier_bytes_total{direction=\"received\"}");
  const double steps0 = Scrape(admin, "eagle_drafter_steps_total");
  Run remote1 = Serve(drafter, reqs, 1, *creds, &ok);
  const double sent =
      Scrape(admin, "eagle_drafter_verifier_bytes_total{direction=\"sent\"}") - sent0;
  const double recv =
      Scrape(admin, "eagle_drafter_verifier_bytes_total{direction=\"received\"}") - recv0;
  const double steps = Scrape(admin, "eagle_drafter_steps_total") - steps0;
  Run remoteN = Serve(drafter, reqs, concurrency, *creds, &ok);
  Run plain1 = Serve(verifier, reqs, 1, *creds, &ok);
  Run plainN = Serve(verifier, reqs, concurrency, *creds, &ok);
  if (!ok) return 1;
  int identical = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    identical += remote1.outputs[i] == vanilla.outputs[i] &&
                 remoteN.outputs[i] == vanilla.outputs[i] &&
                 plain1.outputs[i] == vanilla.outputs[i] && plainN.outputs[i] == vanilla.outputs[i];
  }
  const double tau = total_stats.tau();
  // Prompt features cross once per session; each step sends a tree and receives the accepted
  // tokens and their features.
  const double prompt_bytes = recv / std::max(1.0, steps);
  std::printf("%zu prompts, %d tokens each at most, greedy; %d threads in process\n", reqs.size(),
              max_tokens, model->pool()->num_threads());
  std::printf("%-44s %9s %8s\n", "run", "tok/s", "ratio");
  std::printf("%-44s %9.1f %8s\n", "in process, vanilla", vanilla.tps(), "");
  const double steps_in_process = std::max<double>(1, static_cast<double>(total_stats.steps));
  std::printf(
      "%-44s %9.1f %7.2fx  (vs vanilla; %s trees, tau %.2f, %.1f nodes per step, %.0f%% plain "
      "steps)\n",
      "in process, speculative", spec.tps(), spec.tps() / vanilla.tps(), TreeModeName(tree.mode),
      tau, static_cast<double>(total_stats.tree_nodes) / steps_in_process,
      100.0 * static_cast<double>(total_stats.plain_steps) / steps_in_process);
  std::printf("%-44s %9.1f %7.2fx  (vs in-process speculative)\n",
              "services, speculative, 1 session", remote1.tps(), remote1.tps() / spec.tps());
  std::printf("%-44s %9.1f %7.2fx  (vs 1 session)\n",
              ("services, speculative, " + std::to_string(concurrency) + " sessions").c_str(),
              remoteN.tps(), remoteN.tps() / remote1.tps());
  std::printf("%-44s %9.1f %7.2fx  (vs in-process vanilla)\n", "verifier, plain, 1 session",
              plain1.tps(), plain1.tps() / vanilla.tps());
  std::printf("%-44s %9.1f %7.2fx  (vs 1 session)\n",
              ("verifier, plain, " + std::to_string(concurrency) + " sessions").c_str(),
              plainN.tps(), plainN.tps() / plain1.tps());
  std::printf(
      "time to first token (mean): in process %.1f ms, services %.1f ms; decode only: "
      "in process %.1f tok/s, services %.1f tok/s\n",
      1e3 * spec.first_token_seconds / reqs.size(), 1e3 * remote1.first_token_seconds / reqs.size(),
      spec.tokens / (spec.seconds - spec.first_token_seconds),
      remote1.tokens / (remote1.seconds - remote1.first_token_seconds));
  std::printf(
      "per verify step: 1 round trip, %.0f bytes sent, %.0f bytes received (prompt "
      "features included, averaged over %.0f steps)\n",
      sent / std::max(1.0, steps), prompt_bytes, steps);
  // Per verify step, one session: where the decode time goes ("other": emitting tokens,
  // sampling and the loop itself).
  std::printf("per verify step, 1 session (ms): %9s %9s %9s %9s %9s\n", "draft", "network",
              "verify", "other", "total");
  auto split = [](const char* name, const Run& r) {
    const double n = std::max(1.0, r.steps);
    const double other = r.decode_seconds - r.draft_seconds - r.network_seconds - r.verify_seconds;
    std::printf("  %-30s %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, 1e3 * r.draft_seconds / n,
                1e3 * r.network_seconds / n, 1e3 * r.verify_seconds / n, 1e3 * other / n,
                1e3 * r.decode_seconds / n);
  };
  split("in process, speculative", spec);
  split("services, speculative", remote1);
  std::printf("outputs identical to in-process vanilla: %d/%zu\n", identical, reqs.size());
  // 6. The HTTP API against the gRPC API, interleaved prompt by prompt.
  nlohmann::json http_report;
  if (!a["--http"].empty()) {
    std::string token;
    if (!a["--token-file"].empty()) std::ifstream(a["--token-file"]) >> token;
    double grpc_first = 0, grpc_seconds = 0, http_first = 0, http_seconds = 0, grpc_tokens = 0,
           http_tokens = 0;
    int same = 0;
    auto stub = drafter();
    for (size_t i = 0; i < reqs.size(); ++i) {
      std::string text;
      double first = 0;
      auto t0 = Clock::now();
      auto out = Call(stub.get(), reqs[i], *creds, &ok, &first, nullptr, &text);
      grpc_seconds += SecondsSince(t0);
      grpc_first += first;
      grpc_tokens += static_cast<double>(out.size());
      HttpResult h = HttpChat(a["--http"], a["--served-model"], texts[i], max_tokens, token);
      if (!h.ok) {
        std::fprintf(stderr, "error: the HTTP request for prompt %zu failed\n", i);
        return 1;
      }
      http_first += h.first_token_seconds;
      http_seconds += h.seconds;
      http_tokens += h.completion_tokens;
      same += h.text == text;
    }
    const double n = static_cast<double>(reqs.size());
    std::printf(
        "HTTP API (OpenAI, streaming chat) vs gRPC, 1 request at a time, interleaved: time to "
        "first token %.1f vs %.1f ms (%.2fx); %.1f vs %.1f tok/s; texts identical %d/%zu\n",
        1e3 * http_first / n, 1e3 * grpc_first / n, http_first / grpc_first,
        http_tokens / http_seconds, grpc_tokens / grpc_seconds, same, reqs.size());
    http_report = {{"http_first_token_ms", 1e3 * http_first / n},
                   {"grpc_first_token_ms", 1e3 * grpc_first / n},
                   {"http_tps", http_tokens / http_seconds},
                   {"grpc_tps", grpc_tokens / grpc_seconds},
                   {"http_identical", same}};
    if (same != static_cast<int>(reqs.size())) identical = -1;
  }
  if (!a["--report"].empty()) {
    nlohmann::json j = {
        {"prompts", reqs.size()},
        {"max_tokens", max_tokens},
        {"concurrency", concurrency},
        {"in_process_vanilla_tps", vanilla.tps()},
        {"in_process_speculative_tps", spec.tps()},
        {"tree", TreeModeName(tree.mode)},
        {"tau", tau},
        {"nodes_per_step", static_cast<double>(total_stats.tree_nodes) / steps_in_process},
        {"plain_steps", static_cast<double>(total_stats.plain_steps) / steps_in_process},
        {"service_1_tps", remote1.tps()},
        {"service_n_tps", remoteN.tps()},
        {"plain_1_tps", plain1.tps()},
        {"plain_n_tps", plainN.tps()},
        {"bytes_sent_per_step", sent / std::max(1.0, steps)},
        {"bytes_received_per_step", prompt_bytes},
        {"identical", identical}};
    if (!http_report.is_null()) j["http"] = http_report;
    for (const auto& [name, r] :
         {std::pair{"in_process_speculative", &spec}, std::pair{"service_1", &remote1}}) {
      const double n = std::max(1.0, r->steps);
      j[std::string(name) + "_step_ms"] = {{"draft", 1e3 * r->draft_seconds / n},
                                           {"network", 1e3 * r->network_seconds / n},
                                           {"verify", 1e3 * r->verify_seconds / n},
                                           {"decode", 1e3 * r->decode_seconds / n}};
    }
    std::ofstream(a["--report"]) << j.dump(2) << "\n";
  }
  return identical == static_cast<int>(reqs.size()) ? 0 : 1;
}

}  // namespace
}  // namespace eagle

int main(int argc, char** argv) { return eagle::Main(argc, argv); }
