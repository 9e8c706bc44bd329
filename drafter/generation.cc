#include "drafter/generation.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/rpc/server.h"
#include "common/status_macros.h"
#include "drafter/grpc_session.h"

namespace eagle::drafter {

absl::StatusOr<TreeOptions> TreeFromOverride(const v1::SpeculationOverride& o,
                                             const TreeOptions& defaults, bool* off) {
  TreeOptions t = defaults;
  *off = false;
  switch (o.mode()) {
    case v1::SpeculationOverride::MODE_UNSPECIFIED:
      break;
    case v1::SpeculationOverride::OFF:
      *off = true;
      break;
    case v1::SpeculationOverride::CHAIN:
      t.mode = TreeMode::kChain;
      break;
    case v1::SpeculationOverride::STATIC:
      t.mode = TreeMode::kStatic;
      break;
    case v1::SpeculationOverride::DYNAMIC:
      t.mode = TreeMode::kDynamic;
      break;
    case v1::SpeculationOverride::AUTO:
      t.mode = TreeMode::kAuto;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("speculation.mode: unknown mode ", o.mode()));
  }
  if (o.depth() < 0 || o.depth() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("speculation.depth: ", o.depth(), " must be in [1, 32] (0 = default)"));
  }
  if (o.top_k() < 0 || o.top_k() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("speculation.top_k: ", o.top_k(), " must be in [1, 32] (0 = default)"));
  }
  if (o.total_tokens() != 0 && (o.total_tokens() < 2 || o.total_tokens() > 256)) {
    return absl::InvalidArgumentError(absl::StrCat("speculation.total_tokens: ", o.total_tokens(),
                                                   " must be in [2, 256] (0 = default)"));
  }
  if (o.depth() > 0) t.depth = o.depth();
  if (o.top_k() > 0) t.top_k = o.top_k();
  if (o.total_tokens() > 0) t.total_tokens = o.total_tokens();
  if (!o.tree_choices().empty()) {
    if (o.tree_choices().size() > 16384) {
      return absl::InvalidArgumentError("speculation.tree_choices: longer than 16 KiB");
    }
    auto c = ParseTreeChoices(o.tree_choices());
    if (!c.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("speculation.tree_choices: ", c.status().message()));
    }
    if (auto shape = BuildStaticShape(*c); !shape.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("speculation.tree_choices: ", shape.status().message()));
    }
    t.choices = *c;
  }
  if (absl::Status s = ValidateTreeOptions(t); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("speculation: ", s.message()));
  }
  return t;
}

DrafterMetrics::DrafterMetrics(prometheus::Registry& r)
    : active(prometheus::BuildGauge()
                 .Name("eagle_drafter_active_generations")
                 .Help("Generations in progress (gRPC and HTTP)")
                 .Register(r)
                 .Add({})),
      reconnects(prometheus::BuildCounter()
                     .Name("eagle_drafter_verifier_reconnects_total")
                     .Help("Sessions reopened on a verifier after it went away")
                     .Register(r)
                     .Add({})),
      started_(prometheus::BuildCounter()
                   .Name("eagle_drafter_requests_started_total")
                   .Help("Generations started (each ends in eagle_drafter_requests_total)")
                   .Register(r)
                   .Add({})),
      requests_(prometheus::BuildCounter()
                    .Name("eagle_drafter_requests_total")
                    .Help("Generations by outcome (gRPC status code names, HTTP included)")
                    .Register(r)),
      tokens_(prometheus::BuildCounter()
                  .Name("eagle_drafter_tokens_total")
                  .Help("Tokens by kind: prompt, completion")
                  .Register(r)),
      accepted_at_depth_(prometheus::BuildCounter()
                             .Name("eagle_drafter_accepted_at_depth_total")
                             .Help("Steps that accepted a draft token at this depth")
                             .Register(r)),
      steps_(prometheus::BuildCounter()
                 .Name("eagle_drafter_steps_total")
                 .Help("Verify steps")
                 .Register(r)
                 .Add({})),
      bytes_(prometheus::BuildCounter()
                 .Name("eagle_drafter_verifier_bytes_total")
                 .Help("Protocol bytes exchanged with the verifier, by direction")
                 .Register(r)),
      step_seconds_(prometheus::BuildHistogram()
                        .Name("eagle_drafter_step_seconds")
                        .Help("Per-step latency by phase: draft, network, verify")
                        .Register(r)),
      tau_(prometheus::BuildHistogram()
               .Name("eagle_drafter_tau")
               .Help("Tokens per step of finished generations")
               .Register(r)
               .Add({},
                    prometheus::Histogram::BucketBoundaries{1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8})) {}

void DrafterMetrics::Started() { started_.Increment(); }

void DrafterMetrics::Request(absl::StatusCode code) {
  requests_.Add({{"outcome", rpc::StatusLabel(static_cast<grpc::StatusCode>(code))}}).Increment();
}

void DrafterMetrics::Step(double draft, double network, double verify, int accepted) {
  static const prometheus::Histogram::BucketBoundaries kB = {0.0001, 0.0003, 0.001, 0.002, 0.005,
                                                             0.01,   0.02,   0.05,  0.1,   0.5};
  step_seconds_.Add({{"phase", "draft"}}, kB).Observe(draft);
  step_seconds_.Add({{"phase", "network"}}, kB).Observe(network);
  step_seconds_.Add({{"phase", "verify"}}, kB).Observe(verify);
  steps_.Increment();
  for (int d = 1; d <= accepted; ++d) {
    accepted_at_depth_.Add({{"depth", std::to_string(std::min(d, 16))}}).Increment();
  }
}

void DrafterMetrics::Done(const GenerateResult& r, const VerifierLoopStats& s) {
  tokens_.Add({{"kind", "prompt"}}).Increment(r.prompt_tokens);
  tokens_.Add({{"kind", "completion"}}).Increment(static_cast<double>(r.token_ids.size()));
  if (s.steps > 0) tau_.Observe(s.tau());
  bytes_.Add({{"direction", "sent"}}).Increment(static_cast<double>(s.bytes_sent));
  bytes_.Add({{"direction", "received"}}).Increment(static_cast<double>(s.bytes_received));
}

Generations::Generations(DrafterConfig config, std::shared_ptr<grpc::Channel> verifier,
                         DrafterMetrics* metrics)
    : config_(std::move(config)),
      channel_(std::move(verifier)),
      stub_(v1::Verifier::NewStub(channel_)),
      metrics_(metrics) {}

absl::StatusOr<std::unique_ptr<Generations::Slot>> Generations::Admit() {
  if (draining_) return absl::UnavailableError("the drafter is draining");
  auto slot = std::make_unique<Slot>(this);
  if (slot->position() > config_.max_generations) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the drafter is at its limit of ", config_.max_generations, " concurrent generations"));
  }
  return slot;
}

absl::StatusOr<PreparedGeneration> Generations::Prepare(const v1::GenerateRequest& req) const {
  PreparedGeneration p;
  ASSIGN_OR_RETURN(p.parsed, rpc::ParseGenerateRequest(*config_.model, req));
  bool off = false;
  ASSIGN_OR_RETURN(p.tree, TreeFromOverride(req.speculation(), config_.tree, &off));
  p.speculate = !off && config_.head != nullptr;
  return p;
}

absl::StatusOr<Completion> Generations::Run(const PreparedGeneration& p,
                                            const GenerationSink& sink) {
  VerifierLoopOptions ro;
  ro.head = p.speculate ? config_.head : nullptr;
  ro.tree = p.tree;
  ro.reconnect_seconds = config_.reconnect_seconds;
  ro.cancelled = [this, &sink] { return stopping_ || (sink.cancelled && sink.cancelled()); };
  ro.on_step = [this](double d, double n, double v, int a) { metrics_->Step(d, n, v, a); };
  SessionFactory factory = [&]() -> std::unique_ptr<VerifierSession> {
    return std::make_unique<GrpcVerifierSession>(stub_.get(), sink.grpc_parent, sink.request_id,
                                                 config_.feature_dtype,
                                                 config_.verifier_credentials);
  };
  Completion c;
  const TokenCallback on_token = [&](int32_t id, const std::string& text) {
    if (!sink.on_token(id, text)) c.client_gone = true;
    return !c.client_gone;
  };
  LogEvent("info", "generate_start",
           {{"request_id", sink.request_id},
            {"prompt_tokens", p.parsed.prompt.size()},
            {"max_tokens", p.parsed.options.max_tokens},
            {"speculative", ro.head != nullptr}});
  auto result = GenerateWithVerifier(*config_.model, factory, p.parsed.prompt, p.parsed.options, ro,
                                     on_token, &c.stats);
  metrics_->reconnects.Increment(c.stats.reconnects);
  const bool cancelled = ro.cancelled();
  if (!result.ok()) {
    LogEvent("warn", "generate_failed",
             {{"request_id", sink.request_id}, {"error", std::string(result.status().message())}});
    if (cancelled) return absl::CancelledError("cancelled");
    return result.status();
  }
  if (c.client_gone || cancelled) {
    LogEvent("info", "generate_cancelled",
             {{"request_id", sink.request_id}, {"completion_tokens", result->token_ids.size()}});
    return absl::CancelledError("cancelled");
  }
  c.result = *std::move(result);
  metrics_->Done(c.result, c.stats);
  LogEvent("info", "generate_done",
           {{"request_id", sink.request_id},
            {"completion_tokens", c.result.token_ids.size()},
            {"finish", FinishReasonName(c.result.finish)},
            {"steps", c.stats.steps},
            {"tau", c.stats.tau()},
            {"reconnects", c.stats.reconnects},
            {"bytes_sent", c.stats.bytes_sent},
            {"bytes_received", c.stats.bytes_received}});
  return c;
}

}  // namespace eagle::drafter
