#include "common/rpc/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/rpc/convert.h"
#include "common/thread_name.h"

namespace eagle::rpc {

const char* StatusLabel(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK:
      return "ok";
    case grpc::CANCELLED:
      return "cancelled";
    case grpc::INVALID_ARGUMENT:
      return "invalid_argument";
    case grpc::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case grpc::NOT_FOUND:
      return "not_found";
    case grpc::RESOURCE_EXHAUSTED:
      return "resource_exhausted";
    case grpc::FAILED_PRECONDITION:
      return "failed_precondition";
    case grpc::OUT_OF_RANGE:
      return "out_of_range";
    case grpc::UNAVAILABLE:
      return "unavailable";
    case grpc::UNAUTHENTICATED:
      return "unauthenticated";
    case grpc::PERMISSION_DENIED:
      return "permission_denied";
    default:
      return "error";
  }
}

sigset_t BlockTerminationSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return sigs;
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartAdmin(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (address.empty()) return std::unique_ptr<prometheus::Exposer>();
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(address);
    exposer->RegisterCollectable(registry);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(std::string("admin endpoint ") + address + ": " + e.what());
  }
}

namespace {
// Server reflection on one ServerBuilder, or not. Linking libgrpc++_reflection registers its
// plugin for every server of the process at static initialization, so the option first removes
// any reflection plugin the builder was given, then adds one where it is wanted.
class ReflectionOption : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool on) : on_(on) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string reflection = grpc::reflection::ProtoServerReflectionPlugin().name();
    std::erase_if(*plugins, [&](const auto& p) { return p->name() == reflection; });
    if (on_) plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  bool on_;
};
}  // namespace

void SetReflection(grpc::ServerBuilder& builder, bool on) {
  builder.SetOption(std::make_unique<ReflectionOption>(on));
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartAdminGrpc(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (address.empty()) return std::unique_ptr<grpc::Server>();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      address, credentials != nullptr ? credentials : grpc::InsecureServerCredentials(), &port);
  SetReflection(builder, true);
  ConfigureServer(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError("admin gRPC endpoint " + address + ": cannot listen there");
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

int Serve(grpc::Service* service, const ServeOptions& o, const sigset_t& sigs) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      o.listen, o.credentials != nullptr ? o.credentials : grpc::InsecureServerCredentials(),
      &port);
  builder.RegisterService(service);
  SetReflection(builder, false);
  ConfigureServer(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogEvent("error", "listen_failed", {{"address", o.listen}});
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  if (!o.port_file.empty()) {
    if (FILE* f = std::fopen(o.port_file.c_str(), "w"); f != nullptr) {
      std::fprintf(f, "%d\n", port);
      std::fclose(f);
    }
  }
  if (o.on_serving) o.on_serving(port);
  std::thread signals([&] {
    NameThisThread("eagle-signals");
    int sig = 0;
    sigwait(&sigs, &sig);
    const auto in_flight = [&] { return o.in_flight ? o.in_flight() : 0; };
    LogEvent("info", "draining", {{"signal", sig}, {"in_flight", in_flight()}});
    server->GetHealthCheckService()->SetServingStatus(false);
    if (o.admin_grpc != nullptr) o.admin_grpc->GetHealthCheckService()->SetServingStatus(false);
    if (o.drain) o.drain();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(o.grace_seconds);
    while (in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    LogEvent("info", "shutdown", {{"in_flight", in_flight()}});
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    if (o.admin_grpc != nullptr) o.admin_grpc->Shutdown(std::chrono::system_clock::now());
  });
  server->Wait();
  signals.join();
  LogEvent("info", "stopped", {});
  return 0;
}

void ReleaseAdminAtExit(std::unique_ptr<prometheus::Exposer> admin) {
  // Deliberately not destroyed (see the header); the OS reclaims it at exit.
  static_cast<void>(admin.release());
}

}  // namespace eagle::rpc
