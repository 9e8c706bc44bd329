// VerifierSession over an eagle.v1.Verifier Session stream. Cancellation and the deadline of the
// client's call are propagated to the verifier (the stream's context derives from it).
#ifndef EAGLE_DRAFTER_GRPC_SESSION_H_
#define EAGLE_DRAFTER_GRPC_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/eagle/verifier_loop.h"
#include "common/rpc/security.h"
#include "eagle/v1/verifier.grpc.pb.h"

namespace eagle::drafter {

class GrpcVerifierSession final : public VerifierSession {
 public:
  // `parent` (may be null) is the client's call on the drafter.
  // `credentials` adds the verifier's bearer token (if any) to the stream; it must outlive this.
  GrpcVerifierSession(v1::Verifier::Stub* stub, const grpc::ServerContext* parent,
                      std::string request_id, v1::Features::DType dtype,
                      const rpc::ClientCredentials& credentials);
  ~GrpcVerifierSession() override;

  absl::StatusOr<Opened> Open(std::span<const int32_t> prompt, std::span<const int32_t> resume,
                              const SamplingParams& sampling, int max_tokens,
                              const std::vector<int>& feature_layers, int64_t width) override;
  absl::Status Send(int64_t step, const DraftTree& tree) override;
  absl::StatusOr<Result> Receive() override;
  void Close() override;
  int64_t bytes_sent() const override { return sent_; }
  int64_t bytes_received() const override { return received_; }

 private:
  absl::Status StreamError();  // the status that ended the stream
  bool Write(const v1::SessionRequest& m);
  bool Read(v1::SessionResponse* m);

  v1::Verifier::Stub* stub_;
  const grpc::ServerContext* parent_;
  const rpc::ClientCredentials& credentials_;
  std::string request_id_;
  v1::Features::DType dtype_;
  int64_t width_ = 0;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionResponse>> stream_;
  bool finished_ = false;
  bool clean_ = false;    // the last exchange completed: no response left unread
  bool pending_ = false;  // a Verify sent, its result not yet read
  int64_t pending_step_ = 0;
  int64_t sent_ = 0;
  int64_t received_ = 0;
};

}  // namespace eagle::drafter

#endif  // EAGLE_DRAFTER_GRPC_SESSION_H_
