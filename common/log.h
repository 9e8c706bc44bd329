// Structured logs: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-26T02:40:01.123Z","level":"info","svc":"verifier","event":"session_open",
//    "request_id":"5f0c...","prompt_tokens":42}
// Fields are given as key/value pairs; values are strings or numbers.
#ifndef EAGLE_COMMON_LOG_H_
#define EAGLE_COMMON_LOG_H_

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace eagle {

void SetLogService(const std::string& service);
void LogEvent(const char* level, const std::string& event, const nlohmann::json& fields = {});

}  // namespace eagle

#endif  // EAGLE_COMMON_LOG_H_
