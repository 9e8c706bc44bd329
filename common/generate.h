// Vanilla (non-speculative) generation on a LlamaModel: prefill, then one decode step per token,
// with sampling and stop conditions (EOS, stop strings, max tokens). Text is streamed through a
// callback as complete UTF-8 pieces.
#ifndef EAGLE_COMMON_GENERATE_H_
#define EAGLE_COMMON_GENERATE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/llama_model.h"
#include "common/sampling.h"

namespace eagle {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output text)
  bool ignore_eos = false;
  int64_t max_context = 0;  // KV capacity; 0 = prompt + max_tokens
};

enum class FinishReason { kLength, kStop, kEos };
const char* FinishReasonName(FinishReason r);

struct GenerateResult {
  std::vector<int32_t> token_ids;  // generated ids (EOS excluded)
  std::string text;
  FinishReason finish = FinishReason::kLength;
  int prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int decode_steps = 0;
};

// Called with each new token and the text that became complete; return false to stop.
using TokenCallback = std::function<bool(int32_t id, const std::string& text)>;

// Holds back text that might be the start of a stop string; reports a match.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns what can be released now. Sets *stopped when a stop string appeared
  // (the text before it is released, the stop string and anything after it dropped).
  std::string Push(const std::string& text, bool* stopped);
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

// Applies the end conditions to generated tokens in order and streams their text, for every
// generator: an end-of-generation token (unless ignore_eos), a stop string, the callback
// returning false, max_tokens. Fills result->token_ids, text and finish.
class TokenEmitter {
 public:
  TokenEmitter(const LlamaModel& model, const GenerateOptions& options,
               const TokenCallback& on_token, GenerateResult* result);
  // Returns false once generation has ended (result->finish says why).
  bool Emit(int32_t id);
  bool done() const { return done_; }
  // True if emitting `tokens` certainly ends the generation: an end-of-generation token (unless
  // ignore_eos) or max_tokens reached. (A stop string is only known once the text is decoded.)
  bool WouldEnd(std::span<const int32_t> tokens) const;
  // Releases text held back (an incomplete UTF-8 sequence or a possible stop-string prefix).
  void Finish();

 private:
  const LlamaModel& model_;
  const GenerateOptions& options_;
  const TokenCallback& on_token_;
  bool IsEos(int32_t id) const;
  GenerateResult* r_;
  StopMatcher stop_;
  StreamDecoder decoder_;
  bool done_ = false;
};

// Checks a request against the model: non-empty prompt, max_tokens >= 0, sampling parameters,
// prompt + max_tokens within the context.
absl::Status ValidateGenerateRequest(const LlamaConfig& config, std::span<const int32_t> prompt,
                                     const GenerateOptions& options);

absl::StatusOr<GenerateResult> GenerateVanilla(const LlamaModel& model,
                                               std::span<const int32_t> prompt,
                                               const GenerateOptions& options,
                                               const TokenCallback& on_token);

}  // namespace eagle

#endif  // EAGLE_COMMON_GENERATE_H_
