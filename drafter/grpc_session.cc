#include "drafter/grpc_session.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/convert.h"

namespace eagle::drafter {

GrpcVerifierSession::GrpcVerifierSession(v1::Verifier::Stub* stub,
                                         const grpc::ServerContext* parent, std::string request_id,
                                         v1::Features::DType dtype,
                                         const rpc::ClientCredentials& credentials)
    : stub_(stub),
      parent_(parent),
      credentials_(credentials),
      request_id_(std::move(request_id)),
      dtype_(dtype) {}

GrpcVerifierSession::~GrpcVerifierSession() { Close(); }

bool GrpcVerifierSession::Write(const v1::SessionRequest& m) {
  sent_ += static_cast<int64_t>(m.ByteSizeLong());
  return stream_->Write(m);
}

bool GrpcVerifierSession::Read(v1::SessionResponse* m) {
  if (!stream_->Read(m)) return false;
  received_ += static_cast<int64_t>(m->ByteSizeLong());
  return true;
}

absl::Status GrpcVerifierSession::StreamError() {
  if (finished_) return absl::UnavailableError("the verifier stream has ended");
  finished_ = true;
  grpc::Status s = stream_->Finish();
  if (s.ok()) return absl::UnavailableError("the verifier ended the session");
  if (s.error_code() == grpc::UNAUTHENTICATED || s.error_code() == grpc::PERMISSION_DENIED) {
    // The drafter's own credentials, not the client's: a deployment error, not retried.
    return absl::InternalError("the verifier rejected the drafter's credentials: " +
                               s.error_message());
  }
  return rpc::FromGrpc(s);
}

absl::StatusOr<VerifierSession::Opened> GrpcVerifierSession::Open(
    std::span<const int32_t> prompt, std::span<const int32_t> resume,
    const SamplingParams& sampling, int max_tokens, const std::vector<int>& feature_layers,
    int64_t width) {
  ctx_ = parent_ != nullptr ? grpc::ClientContext::FromServerContext(*parent_)
                            : std::make_unique<grpc::ClientContext>();
  ctx_->AddMetadata("x-request-id", request_id_);
  credentials_.Attach(ctx_.get());
  stream_ = stub_->Session(ctx_.get());
  finished_ = false;
  width_ = width;
  v1::SessionRequest req;
  v1::Open* o = req.mutable_open();
  o->mutable_prompt()->mutable_ids()->Assign(prompt.begin(), prompt.end());
  o->mutable_resume_tokens()->mutable_ids()->Assign(resume.begin(), resume.end());
  rpc::ToProto(sampling, o->mutable_sampling());
  o->set_max_tokens(max_tokens);
  o->mutable_feature_layers()->Assign(feature_layers.begin(), feature_layers.end());
  o->set_feature_dtype(dtype_);
  o->set_no_features(width == 0);
  o->set_request_id(request_id_);
  clean_ = false;
  if (!Write(req)) return StreamError();
  v1::SessionResponse resp;
  if (!Read(&resp)) return StreamError();
  if (resp.kind_case() != v1::SessionResponse::kOpened) {
    return absl::InternalError("the verifier did not answer Open with Opened");
  }
  Opened out;
  out.first_token = resp.opened().first_token();
  out.prompt_tokens = resp.opened().prompt_tokens();
  for (const v1::CostPoint& cp : resp.opened().forward_cost()) {
    out.forward_cost.push_back({cp.rows(), cp.seconds()});
  }
  const int chunks = resp.opened().feature_chunks();
  if (width > 0) out.features.reserve(static_cast<size_t>(out.prompt_tokens) * width);
  for (int c = 0; c < chunks; ++c) {
    if (!Read(&resp)) return StreamError();
    if (resp.kind_case() != v1::SessionResponse::kPromptFeatures ||
        resp.prompt_features().first_row() * width != static_cast<int64_t>(out.features.size())) {
      return absl::InternalError("the verifier sent prompt features out of order");
    }
    auto f = rpc::UnpackFeatures(resp.prompt_features().features(), width);
    if (!f.ok()) return absl::InternalError(absl::StrCat("verifier: ", f.status().message()));
    out.features.insert(out.features.end(), f->begin(), f->end());
  }
  clean_ = true;
  return out;
}

absl::Status GrpcVerifierSession::Send(int64_t step, const DraftTree& tree) {
  if (!stream_ || finished_) return absl::FailedPreconditionError("session not open");
  if (pending_) return absl::FailedPreconditionError("a step is already in flight");
  clean_ = false;
  v1::SessionRequest req;
  req.mutable_verify()->set_step(step);
  rpc::ToProto(tree, req.mutable_verify()->mutable_tree());
  if (!Write(req)) return StreamError();
  pending_ = true;
  pending_step_ = step;
  return absl::OkStatus();
}

absl::StatusOr<VerifierSession::Result> GrpcVerifierSession::Receive() {
  if (!stream_ || finished_) return absl::FailedPreconditionError("session not open");
  if (!pending_) return absl::FailedPreconditionError("no step in flight");
  pending_ = false;
  v1::SessionResponse resp;
  if (!Read(&resp)) return StreamError();
  if (resp.kind_case() != v1::SessionResponse::kResult || resp.result().step() != pending_step_) {
    return absl::InternalError("the verifier answered out of order");
  }
  const v1::VerifyResult& vr = resp.result();
  Result out;
  out.accepted.assign(vr.accepted_tokens().begin(), vr.accepted_tokens().end());
  out.next_token = vr.next_token();
  out.verify_seconds = vr.verify_seconds();
  out.pass_rows = vr.pass_rows();
  out.pass_sequences = vr.batch_sequences();
  if (width_ > 0) {
    auto f = rpc::UnpackFeatures(vr.features(), width_);
    if (!f.ok()) return absl::InternalError(absl::StrCat("verifier: ", f.status().message()));
    out.features = std::move(*f);
  }
  clean_ = true;
  return out;
}

void GrpcVerifierSession::Close() {
  if (!stream_ || finished_) return;
  // A step still in flight (the loop sent it before it knew the generation had ended): read its
  // result, so that the session ends cleanly rather than by cancellation.
  if (pending_) Receive().IgnoreError();
  if (finished_) return;
  finished_ = true;
  // After a clean exchange nothing is left to read: say Close and wait for the status. Else
  // (a failed or half-read exchange) messages may be pending, and Finish() would wait for them:
  // cancel the call instead.
  v1::SessionRequest req;
  req.mutable_close();
  if (!clean_ || !stream_->Write(req) || !stream_->WritesDone()) ctx_->TryCancel();
  stream_->Finish();
}

}  // namespace eagle::drafter
