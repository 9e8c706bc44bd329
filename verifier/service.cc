#include "verifier/service.h"

#include <future>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/rpc/convert.h"
#include "common/rpc/request.h"
#include "common/rpc/server.h"
#include "verifier/engine_session.h"

namespace eagle::verifier {
namespace {

// Waits for the engine, giving up when the client cancels or its deadline passes.
template <typename T>
absl::StatusOr<T> Await(grpc::ServerContext* ctx, std::future<absl::StatusOr<T>>& f) {
  return verifier::Await(f, [ctx] { return ctx->IsCancelled(); });
}

// Frees a session on every exit path of a handler.
struct SessionGuard {
  Engine* engine;
  uint64_t id = 0;
  ~SessionGuard() {
    if (id != 0) engine->Close(id);
  }
};

}  // namespace

VerifierMetrics::VerifierMetrics(prometheus::Registry& r)
    : prompt_tokens(prometheus::BuildCounter()
                        .Name("eagle_verifier_tokens_total")
                        .Help("Tokens by kind: prompt (prefilled), generated (committed)")
                        .Register(r)
                        .Add({{"kind", "prompt"}})),
      generated_tokens(prometheus::BuildCounter()
                           .Name("eagle_verifier_tokens_total")
                           .Help("Tokens by kind: prompt (prefilled), generated (committed)")
                           .Register(r)
                           .Add({{"kind", "generated"}})),
      started_(prometheus::BuildCounter()
                   .Name("eagle_verifier_requests_started_total")
                   .Help("RPCs started, by method (each ends in eagle_verifier_requests_total)")
                   .Register(r)),
      requests_(prometheus::BuildCounter()
                    .Name("eagle_verifier_requests_total")
                    .Help("RPCs by method and outcome (gRPC status)")
                    .Register(r)),
      accepted_at_depth_(prometheus::BuildCounter()
                             .Name("eagle_verifier_accepted_at_depth_total")
                             .Help("Verify steps that accepted a draft token at this depth")
                             .Register(r)),
      steps_(prometheus::BuildCounter()
                 .Name("eagle_verifier_verify_steps_total")
                 .Help("Tree verifications (plain decode steps included)")
                 .Register(r)
                 .Add({})),
      batch_sequences_(
          prometheus::BuildHistogram()
              .Name("eagle_verifier_batch_sequences")
              .Help("Sessions sharing one forward pass")
              .Register(r)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64})),
      batch_tokens_(prometheus::BuildHistogram()
                        .Name("eagle_verifier_batch_tokens")
                        .Help("Tokens in one forward pass")
                        .Register(r)
                        .Add({}, prometheus::Histogram::BucketBoundaries{1, 4, 16, 64, 256, 1024})),
      forward_seconds_(
          prometheus::BuildHistogram()
              .Name("eagle_verifier_forward_seconds")
              .Help("Wall time of one batched forward pass")
              .Register(r)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                               0.05, 0.1, 0.5, 2})),
      tau_(prometheus::BuildHistogram()
               .Name("eagle_verifier_session_tau")
               .Help("Tokens per verify step of finished speculative sessions")
               .Register(r)
               .Add({},
                    prometheus::Histogram::BucketBoundaries{1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8})),
      active_sessions_(prometheus::BuildGauge()
                           .Name("eagle_verifier_active_sessions")
                           .Help("Open sessions (speculative and plain)")
                           .Register(r)
                           .Add({})),
      kv_bytes_(prometheus::BuildGauge()
                    .Name("eagle_verifier_kv_bytes")
                    .Help("KV cache bytes reserved by open sessions")
                    .Register(r)
                    .Add({})),
      kv_budget_(prometheus::BuildGauge()
                     .Name("eagle_verifier_kv_budget_bytes")
                     .Help("KV cache budget")
                     .Register(r)
                     .Add({})),
      queue_depth_(prometheus::BuildGauge()
                       .Name("eagle_verifier_queue_depth")
                       .Help("Requests waiting for the engine thread")
                       .Register(r)
                       .Add({})) {}

EngineHooks VerifierMetrics::Hooks() {
  EngineHooks h;
  h.on_batch = [this](int sequences, int tokens, double seconds) {
    batch_sequences_.Observe(sequences);
    batch_tokens_.Observe(tokens);
    forward_seconds_.Observe(seconds);
  };
  h.on_verify = [this](int accepted, int) {
    steps_.Increment();
    for (int d = 1; d <= accepted; ++d) {
      accepted_at_depth_.Add({{"depth", std::to_string(std::min(d, 16))}}).Increment();
    }
    generated_tokens.Increment(accepted + 1);
  };
  return h;
}

void VerifierMetrics::Started(const std::string& rpc) { started_.Add({{"rpc", rpc}}).Increment(); }

void VerifierMetrics::Request(const std::string& rpc, const grpc::Status& status) {
  requests_.Add({{"rpc", rpc}, {"outcome", rpc::StatusLabel(status.error_code())}}).Increment();
}

void VerifierMetrics::SessionDone(int steps, int64_t accepted) {
  if (steps > 0) tau_.Observe(1.0 + static_cast<double>(accepted) / steps);
}

void VerifierMetrics::Refresh(const Engine& engine) {
  std::lock_guard<std::mutex> lock(refresh_mu_);
  const EngineStats s = engine.stats();
  active_sessions_.Set(s.active_sessions);
  kv_bytes_.Set(static_cast<double>(s.kv_bytes));
  kv_budget_.Set(static_cast<double>(engine.options().kv_budget_bytes));
  queue_depth_.Set(s.queue_depth);
}

VerifierService::VerifierService(Engine* engine, VerifierMetrics* metrics, rpc::TokenCheck auth,
                                 int64_t chunk_bytes)
    : engine_(engine),
      metrics_(metrics),
      auth_(std::move(auth)),
      fingerprint_(engine->model().Fingerprint()),
      chunk_bytes_(chunk_bytes) {}

grpc::Status VerifierService::Authorize(const grpc::ServerContext& ctx, const char* rpc) {
  metrics_->Started(rpc);
  grpc::Status a = auth_.Check(ctx);
  if (!a.ok()) metrics_->Request(rpc, a);
  return a;
}

grpc::Status VerifierService::ModelInfo(grpc::ServerContext* ctx, const v1::ModelInfoRequest*,
                                        v1::ModelInfoResponse* resp) {
  if (grpc::Status a = Authorize(*ctx, "model_info"); !a.ok()) return a;
  const LlamaConfig& c = engine_->model().config();
  resp->set_architecture("llama");
  resp->set_vocab_size(c.vocab_size);
  resp->set_hidden_size(c.hidden_size);
  resp->set_num_layers(c.num_layers);
  resp->set_max_position(c.max_position);
  resp->set_weights_fingerprint(fingerprint_);
  resp->set_bos_id(c.bos_id);
  resp->set_eos_id(c.eos_id);
  metrics_->Request("model_info", grpc::Status::OK);
  return grpc::Status::OK;
}

grpc::Status VerifierService::Session(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::SessionResponse, v1::SessionRequest>* stream) {
  if (grpc::Status a = Authorize(*ctx, "session"); !a.ok()) return a;
  rpc::InFlight in_flight(in_flight_);
  int steps = 0;
  int64_t accepted = 0;
  grpc::Status s = RunSession(ctx, stream, &steps, &accepted);
  metrics_->SessionDone(steps, accepted);
  metrics_->Request("session", s);
  metrics_->Refresh(*engine_);
  return s;
}

grpc::Status VerifierService::RunSession(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::SessionResponse, v1::SessionRequest>* stream, int* steps,
    int64_t* accepted) {
  v1::SessionRequest req;
  if (!stream->Read(&req)) return grpc::Status(grpc::CANCELLED, "stream ended before Open");
  if (req.kind_case() != v1::SessionRequest::kOpen) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "the first message of a session must be Open");
  }
  const v1::Open& open = req.open();
  const v1::Features::DType dtype = open.feature_dtype() == v1::Features::DTYPE_UNSPECIFIED
                                        ? v1::Features::F16
                                        : open.feature_dtype();
  if (!v1::Features::DType_IsValid(dtype) || rpc::FeatureBytes(dtype) == 0) {
    return grpc::Status(grpc::INVALID_ARGUMENT,
                        absl::StrCat("feature_dtype ", open.feature_dtype(), " is unknown"));
  }
  OpenParams p;
  p.prompt.assign(open.prompt().ids().begin(), open.prompt().ids().end());
  p.prompt.insert(p.prompt.end(), open.resume_tokens().ids().begin(),
                  open.resume_tokens().ids().end());
  p.sampling = rpc::FromProto(open.sampling());
  p.max_tokens = open.max_tokens() - open.resume_tokens().ids_size();
  if (open.max_tokens() < 1) {
    return grpc::Status(grpc::INVALID_ARGUMENT, "max_tokens must be at least 1");
  }
  if (p.max_tokens < 1) {
    return grpc::Status(grpc::INVALID_ARGUMENT,
                        "resume_tokens already reach max_tokens: nothing left to generate");
  }
  p.feature_layers.assign(open.feature_layers().begin(), open.feature_layers().end());
  p.want_features = !open.no_features();
  p.request_id = rpc::RequestId(*ctx, open.request_id()).substr(0, 64);
  SessionGuard guard{engine_};
  auto opened_f = engine_->Open(p, &guard.id);
  auto opened = Await(ctx, opened_f);
  if (!opened.ok()) {
    LogEvent("warn", "session_refused",
             {{"request_id", p.request_id}, {"error", std::string(opened.status().message())}});
    return rpc::ToGrpc(opened.status());
  }
  metrics_->prompt_tokens.Increment(opened->prompt_tokens);
  metrics_->generated_tokens.Increment(1);
  metrics_->Refresh(*engine_);
  const int64_t width = opened->feature_width;
  const int64_t rows_per_chunk =
      std::max<int64_t>(1, chunk_bytes_ / std::max<int64_t>(1, width * rpc::FeatureBytes(dtype)));
  const int64_t chunks =
      width == 0 ? 0 : (opened->prompt_tokens + rows_per_chunk - 1) / rows_per_chunk;
  // The idle reaper may cancel this call from now on (see ReapIdle): a client that stops reading
  // blocks the writes below, and its session, idle in the engine, is freed after the idle bound.
  Registration reg(this, opened->session_id, ctx);
  LogEvent("info", "session_open",
           {{"request_id", p.request_id},
            {"session", opened->session_id},
            {"prompt_tokens", opened->prompt_tokens},
            {"resumed_tokens", open.resume_tokens().ids_size()}});
  {
    v1::SessionResponse resp;
    auto* o = resp.mutable_opened();
    o->set_session_id(std::to_string(opened->session_id));
    o->set_first_token(opened->first_token);
    o->set_prompt_tokens(opened->prompt_tokens);
    for (const CostCurve::Point& pt : opened->forward_cost.points()) {
      auto* cp = o->add_forward_cost();
      cp->set_rows(pt.rows);
      cp->set_seconds(pt.seconds);
    }
    o->set_feature_chunks(static_cast<int32_t>(chunks));
    if (!stream->Write(resp)) return grpc::Status(grpc::CANCELLED, "the client went away");
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t first = c * rows_per_chunk;
      const int64_t rows = std::min<int64_t>(rows_per_chunk, opened->prompt_tokens - first);
      v1::SessionResponse chunk;
      chunk.mutable_prompt_features()->set_first_row(first);
      rpc::PackFeatures(
          std::span<const float>(opened->features).subspan(first * width, rows * width), rows,
          width, dtype, chunk.mutable_prompt_features()->mutable_features());
      if (!stream->Write(chunk)) return grpc::Status(grpc::CANCELLED, "the client went away");
    }
    std::vector<float>().swap(opened->features);  // sent: not held for the session's life
  }
  while (stream->Read(&req)) {
    if (req.kind_case() == v1::SessionRequest::kClose) return grpc::Status::OK;
    if (req.kind_case() != v1::SessionRequest::kVerify) {
      return grpc::Status(grpc::FAILED_PRECONDITION, req.kind_case() == v1::SessionRequest::kOpen
                                                         ? "the session is already open"
                                                         : "expected Verify or Close");
    }
    const v1::Verify& v = req.verify();
    if (v.tree().tokens_size() != v.tree().parents_size()) {
      return grpc::Status(grpc::INVALID_ARGUMENT,
                          absl::StrCat("tree: ", v.tree().tokens_size(), " tokens but ",
                                       v.tree().parents_size(), " parents"));
    }
    if (v.tree().tokens_size() > engine_->options().max_tree_nodes) {
      return grpc::Status(grpc::INVALID_ARGUMENT,
                          absl::StrCat("tree: ", v.tree().tokens_size(), " nodes; at most ",
                                       engine_->options().max_tree_nodes));
    }
    auto f = engine_->Verify(opened->session_id, v.step(), rpc::FromProto(v.tree()));
    auto out = Await(ctx, f);
    if (!out.ok()) return rpc::ToGrpc(out.status());
    ++*steps;
    *accepted += static_cast<int64_t>(out->accepted.size());
    v1::SessionResponse resp;
    auto* r = resp.mutable_result();
    r->set_step(v.step());
    r->mutable_accepted_tokens()->Assign(out->accepted.begin(), out->accepted.end());
    r->set_next_token(out->next_token);
    const int64_t rows = static_cast<int64_t>(out->accepted.size()) + 1;
    if (width > 0) rpc::PackFeatures(out->features, rows, width, dtype, r->mutable_features());
    r->set_verify_seconds(out->seconds);
    r->set_batch_sequences(out->batch_sequences);
    r->set_pass_rows(out->pass_rows);
    if (!stream->Write(resp)) return grpc::Status(grpc::CANCELLED, "the client went away");
  }
  return ctx->IsCancelled() ? grpc::Status(grpc::CANCELLED, "the client cancelled")
                            : grpc::Status::OK;
}

VerifierService::Registration::Registration(VerifierService* s, uint64_t id,
                                            grpc::ServerContext* ctx)
    : service(s), id(id) {
  std::lock_guard<std::mutex> lock(s->contexts_mu_);
  s->contexts_[id] = ctx;
}

VerifierService::Registration::~Registration() {
  std::lock_guard<std::mutex> lock(service->contexts_mu_);
  service->contexts_.erase(id);
}

int VerifierService::ReapIdle(double seconds) {
  int n = 0;
  for (uint64_t id : engine_->IdleSessions(seconds)) {
    std::lock_guard<std::mutex> lock(contexts_mu_);
    auto it = contexts_.find(id);
    if (it == contexts_.end()) continue;  // a handler on its way out
    LogEvent("warn", "session_idle_timeout", {{"session", id}, {"idle_seconds", seconds}});
    it->second->TryCancel();
    engine_->Close(id);
    ++n;
  }
  return n;
}

grpc::Status VerifierService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                       grpc::ServerWriter<v1::GenerateResponse>* writer) {
  if (grpc::Status a = Authorize(*ctx, "generate"); !a.ok()) return a;
  rpc::InFlight in_flight(in_flight_);
  grpc::Status s = RunGenerate(ctx, req, writer);
  metrics_->Request("generate", s);
  metrics_->Refresh(*engine_);
  return s;
}

grpc::Status VerifierService::RunGenerate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                          grpc::ServerWriter<v1::GenerateResponse>* writer) {
  const LlamaModel& model = engine_->model();
  auto parsed = rpc::ParseGenerateRequest(model, *req);
  if (!parsed.ok()) return rpc::ToGrpc(parsed.status());
  const std::string request_id = rpc::RequestId(*ctx, req->request_id()).substr(0, 64);
  // The drafter's loop with no head (root-only trees) over this engine; no reconnects.
  auto cancelled = [ctx] { return ctx->IsCancelled(); };
  // Registered with the idle reaper once open, as a Session is: a client that stops reading
  // blocks this handler in Write while its session sits idle in the engine.
  std::optional<Registration> reg;
  SessionFactory factory = [&]() -> std::unique_ptr<VerifierSession> {
    return std::make_unique<EngineSession>(engine_, request_id, cancelled,
                                           [&](const OpenResult& o) {
                                             reg.reset();
                                             reg.emplace(this, o.session_id, ctx);
                                             metrics_->prompt_tokens.Increment(o.prompt_tokens);
                                             metrics_->generated_tokens.Increment(1);
                                           });
  };
  VerifierLoopOptions ro;
  ro.reconnect_seconds = 0;
  ro.cancelled = cancelled;
  bool client_gone = false;
  VerifierLoopStats stats;
  auto result = GenerateWithVerifier(model, factory, parsed->prompt, parsed->options, ro,
                                     rpc::StreamTokens(writer, &client_gone), &stats);
  if (client_gone || ctx->IsCancelled()) {
    return grpc::Status(grpc::CANCELLED, "the client cancelled");
  }
  if (!result.ok()) return rpc::ToGrpc(result.status());
  v1::GenerateResponse last = rpc::LastChunk(*result);
  last.mutable_stats()->set_steps(static_cast<int32_t>(stats.steps));
  last.mutable_stats()->set_tau(1.0);
  last.mutable_timings()->set_verify_seconds(stats.verify_seconds);
  writer->Write(last);
  LogEvent("info", "generate_done",
           {{"request_id", request_id},
            {"prompt_tokens", result->prompt_tokens},
            {"completion_tokens", result->token_ids.size()},
            {"finish", FinishReasonName(result->finish)}});
  return grpc::Status::OK;
}

}  // namespace eagle::verifier
