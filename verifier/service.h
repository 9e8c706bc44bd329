// gRPC adapter of the verifier: eagle.v1.Verifier over an Engine, with Prometheus metrics.
#ifndef EAGLE_VERIFIER_SERVICE_H_
#define EAGLE_VERIFIER_SERVICE_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/rpc/security.h"
#include "eagle/v1/verifier.grpc.pb.h"
#include "verifier/engine.h"

namespace eagle::verifier {

// Metrics of the verifier, registered in one registry (served on the admin port).
class VerifierMetrics {
 public:
  explicit VerifierMetrics(prometheus::Registry& registry);
  EngineHooks Hooks();
  // Every RPC counts once when it starts and once when it ends, by outcome (test R7: started ==
  // the sum of the outcomes once none is in flight).
  void Started(const std::string& rpc);
  void Request(const std::string& rpc, const grpc::Status& status);
  void SessionDone(int steps, int64_t accepted);
  // Sets the gauges from the engine's state now (serialised, so the last call wins with the
  // latest state).
  void Refresh(const Engine& engine);
  prometheus::Counter& prompt_tokens;
  prometheus::Counter& generated_tokens;

 private:
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& accepted_at_depth_;
  prometheus::Counter& steps_;
  prometheus::Histogram& batch_sequences_;
  prometheus::Histogram& batch_tokens_;
  prometheus::Histogram& forward_seconds_;
  prometheus::Histogram& tau_;
  prometheus::Gauge& active_sessions_;
  prometheus::Gauge& kv_bytes_;
  prometheus::Gauge& kv_budget_;
  prometheus::Gauge& queue_depth_;
  std::mutex refresh_mu_;
};

class VerifierService final : public v1::Verifier::Service {
 public:
  // `auth`: the bearer tokens callers must send (default: none needed). `chunk_bytes`: the prompt
  // features of an Opened go out in FeatureChunk messages of at most this many bytes (one row at
  // least); under the 8 MiB message limit.
  VerifierService(Engine* engine, VerifierMetrics* metrics, rpc::TokenCheck auth = {},
                  int64_t chunk_bytes = int64_t{4} << 20);

  grpc::Status Session(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::SessionResponse, v1::SessionRequest>* stream) override;
  grpc::Status ModelInfo(grpc::ServerContext* ctx, const v1::ModelInfoRequest* req,
                         v1::ModelInfoResponse* resp) override;
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;

  // RPCs (sessions and plain generations) now running.
  int in_flight() const { return in_flight_.load(); }
  const std::string& fingerprint() const { return fingerprint_; }
  // Cancels the calls of sessions that had no engine work for `seconds` and frees them: a live but
  // silent client, or one that stopped reading (its handler blocked in Write, past gRPC's flow
  // control window), would otherwise hold its KV forever. Sessions and plain Generates alike.
  // Returns how many.
  int ReapIdle(double seconds);

 private:
  struct Registration {
    Registration(VerifierService* s, uint64_t id, grpc::ServerContext* ctx);
    ~Registration();
    VerifierService* service;
    uint64_t id;
  };
  // Counts the call of `rpc` as started, then auth_'s verdict on it (a refusal is counted in the
  // request metrics as its outcome).
  grpc::Status Authorize(const grpc::ServerContext& ctx, const char* rpc);
  grpc::Status RunSession(grpc::ServerContext* ctx,
                          grpc::ServerReaderWriter<v1::SessionResponse, v1::SessionRequest>* stream,
                          int* steps, int64_t* accepted);
  grpc::Status RunGenerate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                           grpc::ServerWriter<v1::GenerateResponse>* writer);
  Engine* engine_;
  VerifierMetrics* metrics_;
  const rpc::TokenCheck auth_;
  const std::string fingerprint_;
  const int64_t chunk_bytes_;
  std::atomic<int> in_flight_{0};
  std::mutex contexts_mu_;
  std::map<uint64_t, grpc::ServerContext*> contexts_;  // open sessions' calls
};

}  // namespace eagle::verifier

#endif  // EAGLE_VERIFIER_SERVICE_H_
