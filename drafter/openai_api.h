// The OpenAI API's request and response bodies for the drafter's HTTP front door
// (drafter/http_server.h), as pure functions: JSON in, an eagle.v1.GenerateRequest out; a
// Completion in, OpenAI JSON out. Knows nothing of sockets or HTTP libraries.
//
// Requests (POST /v1/chat/completions, POST /v1/completions). Supported: model, messages (roles
// system, developer (= system), user, assistant; content a string or text parts), prompt (a
// string, token ids, or a list holding one of them), max_tokens, max_completion_tokens,
// temperature (default 1, as OpenAI's), top_p, top_k (vLLM's: -1 or 0 = off), seed (absent: a
// fresh random seed per request, as OpenAI's), stop (a string or a list), n (1), user, stream,
// stream_options.include_usage, and the extension `speculation` ({"mode": "auto" | "chain" |
// "static" | "dynamic" | "off", "depth", "top_k", "total_tokens", "tree_choices"}). Every other
// OpenAI parameter is accepted only at its default value (logprobs false, penalties 0, no tools,
// response_format text, ...) and refused otherwise, and a name the API does not define is
// refused: nothing is silently ignored. max_tokens defaults to 128, the gRPC API's default (not
// OpenAI's rest-of-context: the verifier reserves a session's KV for prompt + max_tokens).
//
// Errors are OpenAI's shape: {"error": {"message", "type", "param", "code"}} with the HTTP status
// of the OpenAI API for that case.
#ifndef EAGLE_DRAFTER_OPENAI_API_H_
#define EAGLE_DRAFTER_OPENAI_API_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "drafter/generation.h"
#include "eagle/v1/drafter.pb.h"
#include "nlohmann/json.hpp"

namespace eagle::drafter::openai {

enum class Endpoint { kChat, kCompletions };

struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault (empty: none)
  std::string code;   // OpenAI's machine-readable code, where it has one
  std::string message;
};
nlohmann::json ErrorBody(const ApiError& e);

// The API error for a status of the generation path (Generations::Admit, Prepare, Run): 400 for
// INVALID_ARGUMENT and OUT_OF_RANGE (with the OpenAI name of the field the message names), 401
// UNAUTHENTICATED, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 499 CANCELLED (nginx's "client closed
// request": counted and logged, the client is gone), 500 otherwise.
ApiError FromStatus(const absl::Status& s, Endpoint endpoint);

struct ApiRequest {
  v1::GenerateRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string model;           // as requested (checked against the served name)
  std::string user;
};

// Parses and checks a request body. `served_model` is the only model name accepted (404
// model_not_found otherwise, as OpenAI answers). `fresh_seed` is used when the request has none.
std::optional<ApiError> ParseRequest(Endpoint endpoint, std::string_view body,
                                     const std::string& served_model, uint64_t fresh_seed,
                                     ApiRequest* out);

// Where the body of a response comes from.
struct ResponseMeta {
  std::string id;  // "chatcmpl-<request id>" or "cmpl-<request id>"
  int64_t created = 0;
  std::string model;
};
const char* FinishReason(eagle::FinishReason r);

// The whole response of a non-streaming request.
nlohmann::json CompletionBody(Endpoint endpoint, const ResponseMeta& meta, const Completion& c);
// One server-sent event's data for a streaming request: a text delta (chat: the first carries
// the role), or the last (finish_reason and the speculation extension; `c` set).
nlohmann::json ChunkBody(Endpoint endpoint, const ResponseMeta& meta, const std::string& text,
                         bool first, const Completion* last);
// stream_options.include_usage: the chunk with empty choices and the usage, after the last.
nlohmann::json UsageChunk(Endpoint endpoint, const ResponseMeta& meta, const Completion& c);

}  // namespace eagle::drafter::openai

#endif  // EAGLE_DRAFTER_OPENAI_API_H_
