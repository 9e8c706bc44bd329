#include "common/log.h"

#include <cstdio>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace eagle {
namespace {
std::mutex g_mu;
std::string g_service = "eagle";
}  // namespace

void SetLogService(const std::string& service) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_service = service;
}

void LogEvent(const char* level, const std::string& event, const nlohmann::json& fields) {
  nlohmann::json j;
  j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  j["level"] = level;
  std::lock_guard<std::mutex> lock(g_mu);
  j["svc"] = g_service;
  j["event"] = event;
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) j[it.key()] = it.value();
  }
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fputs(line.c_str(), stderr);
}

}  // namespace eagle
