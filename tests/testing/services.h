// Test harness for the services: starts the real eagle-verifier / eagle-drafter binaries on
// loopback ports, waits for health, scrapes their metrics, and kills or signals them.
#ifndef EAGLE_TESTS_TESTING_SERVICES_H_
#define EAGLE_TESTS_TESTING_SERVICES_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/rpc/security.h"
#include "eagle/v1/drafter.grpc.pb.h"
#include "eagle/v1/verifier.grpc.pb.h"

namespace eagle::testing {

// A child process with its stderr in a log file.
class Process {
 public:
  static absl::StatusOr<std::unique_ptr<Process>> Start(const std::vector<std::string>& argv,
                                                        const std::string& log_path);
  ~Process();  // SIGKILL if still running
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit; returns the exit code (128 + signal if killed), or -1 after `seconds`.
  int Wait(double seconds);
  bool running();
  std::string log() const;
  int64_t rss_bytes() const;   // VmRSS from /proc
  double cpu_seconds() const;  // user + system time from /proc/PID/stat, all threads

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  std::string log_path_;
};

int FreePort();

struct Service {
  std::unique_ptr<Process> proc;
  int port = 0;
  int admin_port = 0;       // Prometheus /metrics
  int admin_grpc_port = 0;  // reflection and health
  std::string admin_grpc_address() const { return "127.0.0.1:" + std::to_string(admin_grpc_port); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// `port` 0 = any free port. Extra flags are appended. Waits until health (asked with `health`'s
// credentials: a service started with TLS flags needs them) says SERVING.
absl::StatusOr<Service> StartVerifier(const std::string& dir, int port = 0,
                                      const std::vector<std::string>& extra = {},
                                      const rpc::ClientCredentials& health = {});
absl::StatusOr<Service> StartDrafter(const std::string& dir, const std::string& verifier,
                                     const std::vector<std::string>& extra = {},
                                     const rpc::ClientCredentials& health = {});
// Start without waiting for health (for binaries expected to fail at start, or whose health
// cannot be asked). --admin_grpc is off unless `args` name it (so that parallel tests do not
// race for its default port).
absl::StatusOr<std::unique_ptr<Process>> StartDrafterRaw(const std::string& dir,
                                                         const std::vector<std::string>& args);
absl::StatusOr<std::unique_ptr<Process>> StartVerifierRaw(const std::string& dir,
                                                          const std::vector<std::string>& args);

// Health status: "SERVING", "NOT_SERVING" or the error.
std::string Health(const std::string& address, const rpc::ClientCredentials& creds = {});
// One call of grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo at `address`,
// plaintext, with `request` (a serialized ServerReflectionRequest): the status, and the
// serialized response when it is OK. The reflection protos' headers are not installed, so the
// tests build requests and read responses as bytes (ReflectionRequest below).
struct ReflectionReply {
  grpc::Status status;
  std::string response;
};
ReflectionReply Reflect(const std::string& address, const std::string& request);
// A serialized ServerReflectionRequest with one string field set: 7 = list_services,
// 4 = file_containing_symbol, 3 = file_by_filename.
std::string ReflectionRequest(int field, const std::string& value);

// The value of a metric line `name` (with its labels, e.g. `foo{a="b"}`) from /metrics; -1 if
// absent or the scrape failed.
double Metric(int admin_port, const std::string& name);
// Every line of the metric family `name` (its labelled series, e.g. `foo{a="b"}`, and the bare
// name) from /metrics, with its value; empty if the scrape failed.
std::map<std::string, double> MetricFamily(int admin_port, const std::string& name);
// The sum of every series of the metric family `name` (0 if the scrape failed).
double MetricFamilySum(int admin_port, const std::string& name);
// The value of `label` in a series name (`foo{rpc="Session",outcome="ok"}`, "rpc" -> "Session"),
// or "" where the series has no such label.
std::string LabelValue(const std::string& series, const std::string& label);
// The series of `name` by outcome label (`name{outcome="ok"}` -> "ok"): after - before, for
// counters scraped with MetricFamily around a test's traffic.
std::map<std::string, double> OutcomeDeltas(const std::map<std::string, double>& before,
                                            const std::map<std::string, double>& after);
// Test R7: every request a service started has ended with an outcome. `family` is
// "eagle_verifier_requests" or "eagle_drafter_requests": polls /metrics every 20 ms, for up to
// `timeout_s` (requests still ending), until for each rpc label (none for the drafter) the sum
// of `<family>_started_total` equals the sum of `<family>_total` over its outcomes. OK, or
// FAILED_PRECONDITION with both figures per rpc (or saying that no series could be scraped).
absl::Status RequestsBalanced(int admin_port, const std::string& family, double timeout_s = 10);
// Polls Metric every 20 ms until it equals `value`: the seconds that took, or -1 after
// `timeout_s`.
double WaitMetric(int admin_port, const std::string& name, double value, double timeout_s);
// A Generate request of one user message.
v1::GenerateRequest ChatRequest(const std::string& prompt, int max_tokens);
// The first `n` prompts of tests/data/heldout_prompts.jsonl that are under 1,500 bytes.
std::vector<std::string> HeldOutPrompts(int n);

std::unique_ptr<v1::Drafter::Stub> DrafterStub(const std::string& address);
std::unique_ptr<v1::Verifier::Stub> VerifierStub(const std::string& address);

struct Generation {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  v1::GenerateResponse last;
};
// Runs a Generate to the end. `on_chunk` (optional) sees each chunk's token count so far and
// may return false to cancel the call.
template <typename Stub>
Generation Generate(Stub* stub, const v1::GenerateRequest& req, double timeout_s = 120,
                    const std::function<bool(int)>& on_chunk = nullptr);

}  // namespace eagle::testing

#endif  // EAGLE_TESTS_TESTING_SERVICES_H_
