// Validation of a client GenerateRequest (drafter and verifier alike): the prompt in one of its
// three forms, sampling, max_tokens and stop strings, each bad value rejected with
// INVALID_ARGUMENT (OUT_OF_RANGE for a prompt + max_tokens beyond the context) naming the field.
#ifndef EAGLE_COMMON_RPC_REQUEST_H_
#define EAGLE_COMMON_RPC_REQUEST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/generate.h"
#include "common/model/llama_model.h"
#include "eagle/v1/drafter.pb.h"

namespace eagle::rpc {

inline constexpr int kMaxTextBytes = 256 << 10;
inline constexpr int kMaxMessages = 64;
inline constexpr int kMaxStops = 8;
inline constexpr int kMaxStopBytes = 64;
inline constexpr int kDefaultMaxTokens = 128;

struct ParsedRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
};

absl::StatusOr<ParsedRequest> ParseGenerateRequest(const LlamaModel& model,
                                                   const v1::GenerateRequest& request);

}  // namespace eagle::rpc

#endif  // EAGLE_COMMON_RPC_REQUEST_H_
