// gRPC adapter of the drafter: the client-facing eagle.v1.Drafter service. Each Generate runs
// the speculation loop (common/eagle/verifier_loop.h) over one Session stream on the shared
// verifier channel.
#ifndef EAGLE_DRAFTER_SERVICE_H_
#define EAGLE_DRAFTER_SERVICE_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/eagle/draft_model.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/verifier_loop.h"
#include "common/model/llama_model.h"
#include "common/rpc/security.h"
#include "eagle/v1/drafter.grpc.pb.h"
#include "eagle/v1/verifier.grpc.pb.h"

namespace eagle::drafter {

struct DrafterConfig {
  const LlamaModel* model = nullptr;  // tokenizer, chat template, embedding and LM head
  const EagleHead* head = nullptr;    // null: every request runs plain decoding
  TreeOptions tree;                   // server default
  v1::Features::DType feature_dtype = v1::Features::F16;
  double reconnect_seconds = 30;
  int max_generations = 256;  // concurrent Generate calls; beyond: RESOURCE_EXHAUSTED
  rpc::TokenCheck auth;       // bearer tokens clients must send (none: open)
  rpc::ClientCredentials verifier_credentials;  // TLS and token towards the verifier
};

class DrafterMetrics {
 public:
  explicit DrafterMetrics(prometheus::Registry& registry);
  void Request(const grpc::Status& s);
  void Step(double draft, double network, double verify, int accepted);
  void Done(const GenerateResult& r, const VerifierLoopStats& s);
  prometheus::Gauge& active;
  prometheus::Counter& reconnects;

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Counter>& accepted_at_depth_;
  prometheus::Counter& steps_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Histogram>& step_seconds_;
  prometheus::Histogram& tau_;
};

class DrafterService final : public v1::Drafter::Service {
 public:
  DrafterService(DrafterConfig config, std::shared_ptr<grpc::Channel> verifier,
                 DrafterMetrics* metrics);
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  int in_flight() const { return in_flight_.load(); }
  void Drain() { draining_ = true; }

 private:
  grpc::Status Run(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                   grpc::ServerWriter<v1::GenerateResponse>* writer);
  DrafterConfig config_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Verifier::Stub> stub_;
  DrafterMetrics* metrics_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
};

// Parses the per-request speculation override over the server's defaults.
absl::StatusOr<TreeOptions> TreeFromOverride(const v1::SpeculationOverride& o,
                                             const TreeOptions& defaults, bool* off);

}  // namespace eagle::drafter

#endif  // EAGLE_DRAFTER_SERVICE_H_
