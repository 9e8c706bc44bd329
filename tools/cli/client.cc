#include "tools/cli/client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/rpc/convert.h"
#include "common/timing.h"
#include "eagle/v1/drafter.grpc.pb.h"
#include "eagle/v1/verifier.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace eagle::cli {
namespace {

struct Outcome {
  std::vector<int32_t> ids;
  std::string text;
  v1::GenerateResponse last;
  double seconds = 0;
  double first_token_seconds = 0;
};

absl::StatusOr<v1::GenerateRequest> BuildRequest(const ClientArgs& a) {
  v1::GenerateRequest req;
  auto get = [&](const std::string& k) {
    auto it = a.kv.find(k);
    return it == a.kv.end() ? std::string() : it->second;
  };
  auto num = [&](const std::string& k, auto* out) -> absl::Status {
    const std::string v = get(k);
    if (v.empty()) return absl::OkStatus();
    bool ok;
    if constexpr (std::is_same_v<std::remove_pointer_t<decltype(out)>, float>) {
      ok = absl::SimpleAtof(v, out);
    } else {
      ok = absl::SimpleAtoi(v, out);
    }
    return ok ? absl::OkStatus()
              : absl::InvalidArgumentError(absl::StrCat(k, ": '", v, "' is not a number"));
  };
  const std::string prompt = get("--prompt");
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt is required");
  if (a.kv.count("--chat")) {
    auto* m = req.mutable_messages();
    if (!get("--system").empty()) {
      auto* s = m->add_messages();
      s->set_role("system");
      s->set_content(get("--system"));
    }
    auto* u = m->add_messages();
    u->set_role("user");
    u->set_content(prompt);
  } else {
    req.set_text(prompt);
  }
  int max_tokens = 128, top_k = 0, depth = 0, dtop_k = 0, total = 0;
  float temperature = 0, top_p = 1;
  uint64_t seed = 0;
  if (auto s = num("--max-tokens", &max_tokens); !s.ok()) return s;
  if (auto s = num("--temperature", &temperature); !s.ok()) return s;
  if (auto s = num("--top-k", &top_k); !s.ok()) return s;
  if (auto s = num("--top-p", &top_p); !s.ok()) return s;
  if (auto s = num("--seed", &seed); !s.ok()) return s;
  if (auto s = num("--depth", &depth); !s.ok()) return s;
  if (auto s = num("--draft-top-k", &dtop_k); !s.ok()) return s;
  if (auto s = num("--total-tokens", &total); !s.ok()) return s;
  req.set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(temperature);
  req.mutable_sampling()->set_top_k(top_k);
  req.mutable_sampling()->set_top_p(top_p);
  req.mutable_sampling()->set_seed(seed);
  for (const auto& s : a.stops) req.add_stop(s);
  auto* sp = req.mutable_speculation();
  const std::string tree = get("--tree");
  if (tree == "off") {
    sp->set_mode(v1::SpeculationOverride::OFF);
  } else if (tree == "chain") {
    sp->set_mode(v1::SpeculationOverride::CHAIN);
  } else if (tree == "static") {
    sp->set_mode(v1::SpeculationOverride::STATIC);
  } else if (tree == "dynamic") {
    sp->set_mode(v1::SpeculationOverride::DYNAMIC);
  } else if (tree == "auto") {
    sp->set_mode(v1::SpeculationOverride::AUTO);
  } else if (!tree.empty()) {
    return absl::InvalidArgumentError("--tree must be off, auto, chain, static or dynamic");
  }
  sp->set_depth(depth);
  sp->set_top_k(dtop_k);
  sp->set_total_tokens(total);
  sp->set_tree_choices(get("--tree-choices"));
  req.set_request_id(get("--request-id"));
  return req;
}

template <typename Stub>
absl::StatusOr<Outcome> Call(Stub* stub, const v1::GenerateRequest& req, bool print, bool json,
                             double timeout, const rpc::ClientCredentials& creds) {
  grpc::ClientContext ctx;
  creds.Attach(&ctx);
  if (timeout > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(
                         std::chrono::duration<double>(timeout)));
  }
  const auto t0 = Clock::now();
  auto reader = stub->Generate(&ctx, req);
  Outcome o;
  v1::GenerateResponse chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first && chunk.token_ids_size() > 0) {
      o.first_token_seconds = SecondsSince(t0);
      first = false;
    }
    o.ids.insert(o.ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    o.text += chunk.text();
    if (print && json) {
      for (int32_t id : chunk.token_ids()) std::cout << nlohmann::json({{"token_id", id}}) << "\n";
    } else if (print) {
      std::cout << chunk.text() << std::flush;
    }
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) o.last = chunk;
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return rpc::FromGrpc(s);
  o.seconds = SecondsSince(t0);
  return o;
}

const char* FinishName(v1::FinishReason r) {
  return r == v1::LENGTH ? "length" : r == v1::EOS ? "eos" : r == v1::STOP ? "stop" : "?";
}

}  // namespace

absl::Status RunClientGenerate(const ClientArgs& a) {
  auto req = BuildRequest(a);
  if (!req.ok()) return req.status();
  const bool json = a.kv.count("--json") > 0;
  double timeout = 0;
  if (a.kv.count("--timeout") && !absl::SimpleAtod(a.kv.at("--timeout"), &timeout)) {
    return absl::InvalidArgumentError("--timeout: not a number");
  }
  auto creds = rpc::ClientCredentials::Make(a.security);
  if (!creds.ok()) return creds.status();
  std::optional<Outcome> vanilla;
  std::unique_ptr<v1::Verifier::Stub> vstub;
  if (!a.verifier.empty()) vstub = v1::Verifier::NewStub(creds->Channel(a.verifier));
  if (a.drafter.empty()) {
    if (!vstub) return absl::InvalidArgumentError("--server or --verifier is required");
    auto o = Call(vstub.get(), *req, true, json, timeout, *creds);
    if (!o.ok()) return o.status();
    vanilla = std::move(*o);
  } else if (vstub && a.kv.count("--compare-vanilla")) {
    auto o = Call(vstub.get(), *req, false, json, timeout, *creds);
    if (!o.ok()) return o.status();
    vanilla = std::move(*o);
  }
  std::optional<Outcome> spec;
  if (!a.drafter.empty()) {
    auto dstub = v1::Drafter::NewStub(creds->Channel(a.drafter));
    auto o = Call(dstub.get(), *req, true, json, timeout, *creds);
    if (!o.ok()) return o.status();
    spec = std::move(*o);
  }
  const Outcome& r = spec ? *spec : *vanilla;
  const auto& t = r.last.timings();
  const int n = static_cast<int>(r.ids.size());
  const double decode_tps = t.decode_seconds() > 0 ? n / t.decode_seconds() : 0;
  nlohmann::json j = {{"token_ids", r.ids},
                      {"text", r.text},
                      {"finish_reason", FinishName(r.last.finish_reason())},
                      {"prompt_tokens", r.last.usage().prompt_tokens()},
                      {"completion_tokens", r.last.usage().completion_tokens()},
                      {"timings",
                       {{"prefill_s", t.prefill_seconds()},
                        {"decode_s", t.decode_seconds()},
                        {"draft_s", t.draft_seconds()},
                        {"network_s", t.network_seconds()},
                        {"verify_s", t.verify_seconds()},
                        {"first_token_s", r.first_token_seconds},
                        {"wall_s", r.seconds},
                        {"decode_tokens_per_s", decode_tps}}}};
  std::string line = absl::StrFormat(
      "[%d prompt + %d generated tokens, finish=%s | decode %.1f tok/s, wall %.2f s",
      r.last.usage().prompt_tokens(), n, FinishName(r.last.finish_reason()), decode_tps, r.seconds);
  if (spec) {
    const auto& st = r.last.stats();
    j["speculative"] = {
        {"steps", st.steps()},
        {"tau", st.tau()},
        {"acceptance_by_depth",
         std::vector<double>(st.acceptance_by_depth().begin(), st.acceptance_by_depth().end())}};
    absl::StrAppend(&line,
                    absl::StrFormat(" | steps %d, tau %.2f, draft %.0f%% network %.0f%% "
                                    "verify %.0f%%",
                                    st.steps(), st.tau(),
                                    100 * t.draft_seconds() / std::max(1e-9, t.decode_seconds()),
                                    100 * t.network_seconds() / std::max(1e-9, t.decode_seconds()),
                                    100 * t.verify_seconds() / std::max(1e-9, t.decode_seconds())));
    if (vanilla) {
      const auto& vt = vanilla->last.timings();
      const double vtps = vt.decode_seconds() > 0 ? vanilla->ids.size() / vt.decode_seconds() : 0;
      const bool same = vanilla->ids == spec->ids;
      j["speculative"]["vanilla_decode_tokens_per_s"] = vtps;
      j["speculative"]["speedup"] = vtps > 0 ? decode_tps / vtps : 0;
      j["speculative"]["identical_to_vanilla"] = same;
      absl::StrAppend(&line, absl::StrFormat(", vanilla %.1f tok/s, speedup %.2fx, %s", vtps,
                                             vtps > 0 ? decode_tps / vtps : 0,
                                             same ? "identical output" : "output differs"));
    }
  }
  if (json) {
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << std::endl;
    std::fprintf(stderr, "%s]\n", line.c_str());
  }
  return absl::OkStatus();
}

absl::Status RunHealth(const std::string& target, double wait_seconds,
                       const rpc::ClientSecurity& security) {
  auto creds = rpc::ClientCredentials::Make(security);
  if (!creds.ok()) return creds.status();
  auto stub = grpc::health::v1::Health::NewStub(creds->Channel(target));
  const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(wait_seconds));
  grpc::Status last;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse resp;
    last = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
    if (last.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    if (Clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError(
      absl::StrCat(target, " is not serving: ", last.ok() ? "NOT_SERVING" : last.error_message()));
}

}  // namespace eagle::cli
