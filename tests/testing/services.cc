#include "tests/testing/services.h"

#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/check.h"
#include "common/rpc/convert.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace eagle::testing {
namespace {
using Clock = std::chrono::steady_clock;
}

absl::StatusOr<std::unique_ptr<Process>> Process::Start(const std::vector<std::string>& argv,
                                                        const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  auto p = std::make_unique<Process>();
  p->log_path_ = log_path;
  const int rc = posix_spawn(&p->pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", argv[0], " failed: ", rc));
  return p;
}

Process::~Process() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    Wait(10);
  }
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

int Process::Wait(double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (!exited_) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (Clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return code_;
}

bool Process::running() { return Wait(0) == -1; }

std::string Process::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double Process::cpu_seconds() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses: state is field 3,
  // utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int64_t Process::rss_bytes() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      std::istringstream(line.substr(6)) >> kb;
      return kb * 1024;
    }
  }
  return -1;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

std::string Health(const std::string& address, const rpc::ClientCredentials& creds) {
  auto stub = grpc::health::v1::Health::NewStub(creds.Channel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
  if (!s.ok()) return s.error_message();
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? "SERVING"
                                                                         : "NOT_SERVING";
}

std::string ReflectionRequest(int field, const std::string& value) {
  std::string out(1, static_cast<char>(field << 3 | 2));  // length-delimited
  EAGLE_CHECK(value.size() < 128);                        // a one-byte varint length
  out.push_back(static_cast<char>(value.size()));
  return out + value;
}

ReflectionReply Reflect(const std::string& address, const std::string& request) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  // The steps of one bidi call, each waited for in turn; a step that fails ends the call early.
  auto step = [&](int tag) {
    void* got = nullptr;
    bool ok = false;
    return cq.Next(&got, &ok) && got == reinterpret_cast<void*>(static_cast<intptr_t>(tag)) && ok;
  };
  auto tag = [](int t) { return reinterpret_cast<void*>(static_cast<intptr_t>(t)); };
  auto call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(tag(1));
  ReflectionReply reply;
  grpc::ByteBuffer in;
  bool read = false;
  if (step(1)) {
    grpc::Slice slice(request);
    grpc::ByteBuffer out(&slice, 1);
    call->Write(out, tag(2));
    if (step(2)) {
      call->WritesDone(tag(3));
      if (step(3)) {
        call->Read(&in, tag(4));
        read = step(4);
      }
    }
  }
  call->Finish(&reply.status, tag(5));
  while (!step(5)) {
  }
  if (reply.status.ok() && read) {
    std::vector<grpc::Slice> slices;
    if (in.Dump(&slices).ok()) {
      for (const grpc::Slice& sl : slices) {
        reply.response.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
      }
    }
  }
  return reply;
}

namespace {
absl::StatusOr<Service> StartAndWait(const std::vector<std::string>& argv, const std::string& log,
                                     int port, int admin, const rpc::ClientCredentials& health) {
  Service s;
  s.port = port;
  s.admin_port = admin;
  auto p = Process::Start(argv, log);
  if (!p.ok()) return p.status();
  s.proc = std::move(*p);
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < end) {
    if (!s.proc->running()) {
      return absl::InternalError(absl::StrCat(argv[0], " exited: ", s.proc->log()));
    }
    if (Health(s.address(), health) == "SERVING") return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(argv[0], " not serving after 60 s"));
}

// Starts `binary` with `args`, then --listen on `port` (0: a free one) and --admin and
// --admin_grpc on free ports, then `extra`. A port from FreePort() can be taken before the service
// binds it (by a test running beside this one, or as the ephemeral port of some connection): a
// start that logs listen_failed or admin_listen_failed is retried on new ports, up to 5 times.
absl::StatusOr<Service> StartOnPorts(const std::string& binary,
                                     const std::vector<std::string>& args, int port,
                                     const std::vector<std::string>& extra, const std::string& log,
                                     const rpc::ClientCredentials& health) {
  const bool pick = port == 0;
  for (int attempt = 0;; ++attempt) {
    if (pick) port = FreePort();
    const int admin = FreePort();
    const int admin_grpc = FreePort();
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--listen", absl::StrCat("127.0.0.1:", port), "--admin",
                             absl::StrCat("127.0.0.1:", admin), "--admin_grpc",
                             absl::StrCat("127.0.0.1:", admin_grpc)});
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto s = StartAndWait(argv, log, port, admin, health);
    if (s.ok()) s->admin_grpc_port = admin_grpc;
    if (s.ok() || attempt == 4 || !absl::StrContains(s.status().message(), "listen_failed")) {
      return s;
    }
  }
}
}  // namespace

absl::StatusOr<Service> StartVerifier(const std::string& dir, int port,
                                      const std::vector<std::string>& extra,
                                      const rpc::ClientCredentials& health) {
  return StartOnPorts(EAGLE_VERIFIER, {}, port, extra, dir + "/verifier.log", health);
}

absl::StatusOr<Service> StartDrafter(const std::string& dir, const std::string& verifier,
                                     const std::vector<std::string>& extra,
                                     const rpc::ClientCredentials& health) {
  return StartOnPorts(EAGLE_DRAFTER, {"--verifier", verifier}, 0, extra, dir + "/drafter.log",
                      health);
}

absl::StatusOr<std::unique_ptr<Process>> StartDrafterRaw(const std::string& dir,
                                                         const std::vector<std::string>& args) {
  std::vector<std::string> argv = {EAGLE_DRAFTER, "--admin_grpc="};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process::Start(argv, dir + "/drafter_raw.log");
}

absl::StatusOr<std::unique_ptr<Process>> StartVerifierRaw(const std::string& dir,
                                                          const std::vector<std::string>& args) {
  std::vector<std::string> argv = {EAGLE_VERIFIER, "--admin_grpc="};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process::Start(argv, dir + "/verifier_raw.log");
}

double WaitMetric(int admin_port, const std::string& name, double value, double timeout_s) {
  const auto t0 = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  while (seconds() < timeout_s) {
    if (Metric(admin_port, name) == value) return seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

v1::GenerateRequest ChatRequest(const std::string& prompt, int max_tokens) {
  v1::GenerateRequest r;
  auto* m = r.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content(prompt);
  r.set_max_tokens(max_tokens);
  return r;
}

std::vector<std::string> HeldOutPrompts(int n) {
  std::ifstream in(std::string(EAGLE_TEST_DATA_DIR) + "/heldout_prompts.jsonl");
  std::vector<std::string> out;
  std::string line;
  while (static_cast<int>(out.size()) < n && std::getline(in, line)) {
    const std::string p = nlohmann::json::parse(line)["prompt"].get<std::string>();
    if (p.size() < 1500) out.push_back(p);
  }
  return out;
}

double Metric(int admin_port, const std::string& name) {
  httplib::Client cli("127.0.0.1", admin_port);
  cli.set_connection_timeout(2);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos || line.substr(0, sp) != name) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(sp + 1), &v)) return v;
  }
  return -1;
}

std::map<std::string, double> MetricFamily(int admin_port, const std::string& name) {
  std::map<std::string, double> out;
  httplib::Client cli("127.0.0.1", admin_port);
  cli.set_connection_timeout(2);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return out;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos) continue;
    const absl::string_view series = line.substr(0, sp);
    if (series != name && !absl::StartsWith(series, name + "{")) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(sp + 1), &v)) out[std::string(series)] = v;
  }
  return out;
}

double MetricFamilySum(int admin_port, const std::string& name) {
  double sum = 0;
  for (const auto& [series, value] : MetricFamily(admin_port, name)) sum += value;
  return sum;
}

std::string LabelValue(const std::string& series, const std::string& label) {
  const std::string key = label + "=\"";
  const size_t at = series.find(key);
  if (at == std::string::npos) return "";
  const size_t start = at + key.size();
  return series.substr(start, series.find('"', start) - start);
}

absl::Status RequestsBalanced(int admin_port, const std::string& family, double timeout_s) {
  std::string last;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  do {
    const auto started = MetricFamily(admin_port, family + "_started_total");
    const auto ended = MetricFamily(admin_port, family + "_total");
    if (started.empty() && ended.empty()) {  // a failed scrape (or no request yet): ask again
      last = absl::StrCat("no series of ", family, " at port ", admin_port);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    std::map<std::string, std::pair<double, double>> by_rpc;  // rpc -> (started, ended)
    for (const auto& [series, v] : started) by_rpc[LabelValue(series, "rpc")].first += v;
    for (const auto& [series, v] : ended) by_rpc[LabelValue(series, "rpc")].second += v;
    bool balanced = true;
    last.clear();
    for (const auto& [rpc, n] : by_rpc) {
      balanced = balanced && n.first == n.second;
      absl::StrAppend(&last, last.empty() ? "" : "; ", rpc.empty() ? family : rpc, ": started ",
                      n.first, ", ended ", n.second);
    }
    if (balanced) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < end);
  return absl::FailedPreconditionError(
      absl::StrCat("requests started and ended differ after ", timeout_s, " s: ", last));
}

std::map<std::string, double> OutcomeDeltas(const std::map<std::string, double>& before,
                                            const std::map<std::string, double>& after) {
  std::map<std::string, double> out;
  for (const auto& [series, value] : after) {
    const std::string outcome = LabelValue(series, "outcome");
    if (outcome.empty()) continue;
    const auto it = before.find(series);
    const double delta = value - (it == before.end() ? 0 : it->second);
    if (delta != 0) out[outcome] += delta;
  }
  return out;
}

std::unique_ptr<v1::Drafter::Stub> DrafterStub(const std::string& address) {
  return v1::Drafter::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                                        rpc::ClientChannelArgs()));
}

std::unique_ptr<v1::Verifier::Stub> VerifierStub(const std::string& address) {
  return v1::Verifier::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), rpc::ClientChannelArgs()));
}

template <typename Stub>
Generation Generate(Stub* stub, const v1::GenerateRequest& req, double timeout_s,
                    const std::function<bool(int)>& on_chunk) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::duration<double>(timeout_s)));
  auto reader = stub->Generate(&ctx, req);
  Generation g;
  v1::GenerateResponse chunk;
  while (reader->Read(&chunk)) {
    g.ids.insert(g.ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    g.text += chunk.text();
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) g.last = chunk;
    if (on_chunk && !on_chunk(static_cast<int>(g.ids.size()))) {
      ctx.TryCancel();
      break;
    }
  }
  g.status = reader->Finish();
  return g;
}

template Generation Generate(v1::Drafter::Stub*, const v1::GenerateRequest&, double,
                             const std::function<bool(int)>&);
template Generation Generate(v1::Verifier::Stub*, const v1::GenerateRequest&, double,
                             const std::function<bool(int)>&);

}  // namespace eagle::testing
