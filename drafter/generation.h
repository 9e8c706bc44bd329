// The drafter's generation path, shared by its two front doors (the gRPC Drafter service and the
// OpenAI-compatible HTTP API): admission, request parsing, and one run of the speculation loop
// (common/eagle/verifier_loop.h) over a Session stream on the shared verifier channel. Knows
// gRPC only as the verifier's transport; it sees neither the client's protocol nor its writer.
#ifndef EAGLE_DRAFTER_GENERATION_H_
#define EAGLE_DRAFTER_GENERATION_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/eagle/draft_model.h"
#include "common/eagle/eagle_head.h"
#include "common/eagle/verifier_loop.h"
#include "common/model/llama_model.h"
#include "common/rpc/request.h"
#include "common/rpc/security.h"
#include "eagle/v1/drafter.pb.h"
#include "eagle/v1/verifier.grpc.pb.h"

namespace eagle::drafter {

struct DrafterConfig {
  const LlamaModel* model = nullptr;  // tokenizer, chat template, embedding and LM head
  const EagleHead* head = nullptr;    // null: every request runs plain decoding
  TreeOptions tree;                   // server default
  v1::Features::DType feature_dtype = v1::Features::F16;
  double reconnect_seconds = 30;
  int max_generations = 256;  // concurrent generations (both front doors); beyond: refused
  rpc::TokenCheck auth;       // bearer tokens clients must send (none: open)
  rpc::ClientCredentials verifier_credentials;  // TLS and token towards the verifier
};

class DrafterMetrics {
 public:
  explicit DrafterMetrics(prometheus::Registry& registry);
  // Every generation (gRPC or HTTP) counts once when it starts and once when it ends, by
  // outcome (test R7: started == the sum of the outcomes once none is in flight).
  void Started();
  void Request(absl::StatusCode code);
  void Step(double draft, double network, double verify, int accepted);
  void Done(const GenerateResult& r, const VerifierLoopStats& s);
  prometheus::Gauge& active;
  prometheus::Counter& reconnects;

 private:
  prometheus::Counter& started_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Counter>& accepted_at_depth_;
  prometheus::Counter& steps_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Histogram>& step_seconds_;
  prometheus::Histogram& tau_;
};

// A validated request, ready to run.
struct PreparedGeneration {
  rpc::ParsedRequest parsed;  // prompt ids and options (max_tokens may be adjusted before Run)
  TreeOptions tree;
  bool speculate = true;  // false: plain decoding on the verifier
};

struct Completion {
  GenerateResult result;
  VerifierLoopStats stats;
  bool client_gone = false;  // the token callback returned false: the client went away
};

// Where a generation's tokens go and how its caller is asked whether to go on.
struct GenerationSink {
  std::string request_id;
  const grpc::ServerContext* grpc_parent = nullptr;  // the client's gRPC call, if any: its
                                                     // deadline and cancel reach the verifier
  std::function<bool()> cancelled;                   // polled before each step
  TokenCallback on_token;                            // false: the client went away
};

class Generations {
 public:
  Generations(DrafterConfig config, std::shared_ptr<grpc::Channel> verifier,
              DrafterMetrics* metrics);

  // Holds one of the max_generations slots (and counts in in_flight()) while it lives.
  class Slot {
   public:
    explicit Slot(Generations* g) : g_(g), position_(++g_->in_flight_) {
      g_->metrics_->active.Increment();
    }
    int position() const { return position_; }  // generations in flight, this one included
    ~Slot() {
      g_->metrics_->active.Decrement();
      --g_->in_flight_;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    Generations* g_;
    int position_;
  };
  // A slot, or UNAVAILABLE while draining, RESOURCE_EXHAUSTED at max_generations.
  absl::StatusOr<std::unique_ptr<Slot>> Admit();

  // Validates a request (INVALID_ARGUMENT or OUT_OF_RANGE naming the field in the proto's terms).
  absl::StatusOr<PreparedGeneration> Prepare(const v1::GenerateRequest& request) const;

  // Runs one generation to its end. Errors: the loop's (UNAVAILABLE when the verifier stays
  // unreachable, ...), CANCELLED when `sink.cancelled` said so.
  absl::StatusOr<Completion> Run(const PreparedGeneration& p, const GenerationSink& sink);

  const DrafterConfig& config() const { return config_; }
  DrafterMetrics* metrics() { return metrics_; }
  int in_flight() const { return in_flight_.load(); }
  void Drain() { draining_ = true; }
  bool draining() const { return draining_.load(); }
  // After the drain's grace: generations still running end at their next step (CANCELLED);
  // both front doors' `cancelled` check it.
  void Stop() { stopping_ = true; }
  bool stopping() const { return stopping_.load(); }

 private:
  DrafterConfig config_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Verifier::Stub> stub_;
  DrafterMetrics* metrics_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopping_{false};
};

// Parses the per-request speculation override over the server's defaults.
absl::StatusOr<TreeOptions> TreeFromOverride(const v1::SpeculationOverride& o,
                                             const TreeOptions& defaults, bool* off);

}  // namespace eagle::drafter

#endif  // EAGLE_DRAFTER_GENERATION_H_
