#include "drafter/service.h"

#include "common/rpc/convert.h"

namespace eagle::drafter {

grpc::Status DrafterService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                      grpc::ServerWriter<v1::GenerateResponse>* writer) {
  generations_->metrics()->Started();
  if (grpc::Status a = generations_->config().auth.Check(*ctx); !a.ok()) {
    generations_->metrics()->Request(static_cast<absl::StatusCode>(a.error_code()));
    return a;
  }
  grpc::Status s = Run(ctx, req, writer);
  generations_->metrics()->Request(static_cast<absl::StatusCode>(s.error_code()));
  return s;
}

grpc::Status DrafterService::Run(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                 grpc::ServerWriter<v1::GenerateResponse>* writer) {
  auto slot = generations_->Admit();
  if (!slot.ok()) return rpc::ToGrpc(slot.status());
  const std::string request_id = rpc::RequestId(*ctx, req->request_id());
  if (request_id.size() > 64) {
    return grpc::Status(grpc::INVALID_ARGUMENT, "request_id: at most 64 bytes");
  }
  auto prepared = generations_->Prepare(*req);
  if (!prepared.ok()) return rpc::ToGrpc(prepared.status());
  bool client_gone = false;
  GenerationSink sink;
  sink.request_id = request_id;
  sink.grpc_parent = ctx;
  sink.cancelled = [ctx] { return ctx->IsCancelled(); };
  sink.on_token = rpc::StreamTokens(writer, &client_gone);
  auto c = generations_->Run(*prepared, sink);
  if (!c.ok()) return rpc::ToGrpc(c.status());
  v1::GenerateResponse last = rpc::LastChunk(c->result);
  auto* st = last.mutable_stats();
  st->set_steps(c->stats.steps);
  st->set_tau(c->stats.tau());
  for (int64_t n : c->stats.accepted_at_depth) {
    st->add_acceptance_by_depth(c->stats.steps > 0 ? static_cast<double>(n) / c->stats.steps : 0);
  }
  auto* tm = last.mutable_timings();
  tm->set_draft_seconds(c->stats.draft_seconds);
  tm->set_network_seconds(c->stats.network_seconds);
  tm->set_verify_seconds(c->stats.verify_seconds);
  writer->Write(last);
  return grpc::Status::OK;
}

}  // namespace eagle::drafter
