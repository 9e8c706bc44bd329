// A VerifierSession (common/eagle/verifier_loop.h) over this process's Engine, so that the
// verifier's plain Generate runs the same generation loop as the drafter (GenerateWithVerifier
// without a head).
#ifndef EAGLE_VERIFIER_ENGINE_SESSION_H_
#define EAGLE_VERIFIER_ENGINE_SESSION_H_

#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <string>

#include "common/eagle/verifier_loop.h"
#include "verifier/engine.h"

namespace eagle::verifier {

// Waits for an engine future, polling `cancelled` (CANCELLED once it returns true).
template <typename T>
absl::StatusOr<T> Await(std::future<absl::StatusOr<T>>& f, const std::function<bool()>& cancelled) {
  while (f.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    if (cancelled && cancelled()) return absl::CancelledError("the client cancelled");
  }
  return f.get();
}

class EngineSession final : public VerifierSession {
 public:
  // `cancelled` is polled while waiting for the engine; `on_open` sees each admitted session.
  EngineSession(Engine* engine, std::string request_id, std::function<bool()> cancelled,
                std::function<void(const OpenResult&)> on_open = nullptr);
  ~EngineSession() override { Close(); }
  absl::StatusOr<Opened> Open(std::span<const int32_t> prompt, std::span<const int32_t> resume,
                              const SamplingParams& sampling, int max_tokens,
                              const std::vector<int>& feature_layers, int64_t width) override;
  absl::Status Send(int64_t step, const DraftTree& tree) override;
  absl::StatusOr<Result> Receive() override;
  void Close() override;  // frees the engine session (idempotent; a step in flight is dropped)
  int64_t bytes_sent() const override { return 0; }
  int64_t bytes_received() const override { return 0; }

 private:
  Engine* engine_;
  std::string request_id_;
  std::function<bool()> cancelled_;
  std::function<void(const OpenResult&)> on_open_;
  uint64_t id_ = 0;
  std::optional<std::future<absl::StatusOr<VerifyOutput>>> pending_;
};

}  // namespace eagle::verifier

#endif  // EAGLE_VERIFIER_ENGINE_SESSION_H_
