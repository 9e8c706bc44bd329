#include "verifier/engine_session.h"

#include <utility>

namespace eagle::verifier {

EngineSession::EngineSession(Engine* engine, std::string request_id,
                             std::function<bool()> cancelled,
                             std::function<void(const OpenResult&)> on_open)
    : engine_(engine),
      request_id_(std::move(request_id)),
      cancelled_(std::move(cancelled)),
      on_open_(std::move(on_open)) {}

absl::StatusOr<VerifierSession::Opened> EngineSession::Open(std::span<const int32_t> prompt,
                                                            std::span<const int32_t> resume,
                                                            const SamplingParams& sampling,
                                                            int max_tokens,
                                                            const std::vector<int>& feature_layers,
                                                            int64_t width) {
  Close();
  OpenParams p;
  p.prompt.assign(prompt.begin(), prompt.end());
  p.prompt.insert(p.prompt.end(), resume.begin(), resume.end());
  p.sampling = sampling;
  p.max_tokens = max_tokens - static_cast<int>(resume.size());
  p.want_features = width > 0;
  p.feature_layers = feature_layers;
  p.request_id = request_id_;
  // The id is set at admission, so a caller who gives up before the prefill still frees it.
  auto f = engine_->Open(std::move(p), &id_);
  auto opened = Await(f, cancelled_);
  if (!opened.ok()) return opened.status();
  if (on_open_) on_open_(*opened);
  Opened out;
  out.first_token = opened->first_token;
  out.prompt_tokens = opened->prompt_tokens;
  out.features = std::move(opened->features);
  out.forward_cost = opened->forward_cost.points();
  return out;
}

absl::Status EngineSession::Send(int64_t step, const DraftTree& tree) {
  if (id_ == 0) return absl::FailedPreconditionError("Send before Open");
  if (pending_) return absl::FailedPreconditionError("a step is already in flight");
  pending_ = engine_->Verify(id_, step, tree);
  return absl::OkStatus();
}

absl::StatusOr<VerifierSession::Result> EngineSession::Receive() {
  if (!pending_) return absl::FailedPreconditionError("no step in flight");
  auto v = Await(*pending_, cancelled_);
  pending_.reset();
  if (!v.ok()) return v.status();
  Result out;
  static_cast<VerifiedStep&>(out) = std::move(static_cast<VerifiedStep&>(*v));
  out.verify_seconds = v->seconds;
  out.pass_rows = v->pass_rows;
  out.pass_sequences = v->batch_sequences;
  return out;
}

void EngineSession::Close() {
  if (id_ != 0) engine_->Close(id_);
  id_ = 0;
  pending_.reset();
}

}  // namespace eagle::verifier
