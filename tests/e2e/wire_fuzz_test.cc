// R16: wire fuzz of both services' data ports. Real connections are captured through a
// recording relay: on the gRPC ports a health Check, a Generate, a Generate refused in its
// handler and, on the verifier, a Session that opens, verifies one step and closes, split into
// HTTP/2 frames; on the drafter's HTTP/1.1 API port, health, models, chat completions (plain and
// streamed) and a completion. They are replayed over raw TCP with mutations
// (tests/testing/wire_fuzz.h): 6,000 connections per gRPC port and 4,000 on the HTTP port (or
// EAGLE_WIRE_FUZZ_CONNECTIONS), each with 1 to 4 frame mutations (1 to 6 byte mutations for
// HTTP), four at a time, in two rounds; one in four stays open after its bytes so that requests
// that survive the mutations run. Throughout, health stays SERVING; after each round the file
// descriptors are back to their baseline (+2), and threads grow by at most 2 in the second; at
// the end the process is alive, every request it started has an outcome, no session is left
// open, and it serves a generation.
#include "tests/testing/wire_fuzz.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/services.h"
#include "tests/testing/tiny_llama.h"

namespace eagle {
namespace {

using testing::H2Connection;
using testing::H2Frame;
using testing::Service;

TEST(WireFormatTest, FramesSplitAndSerializeBackAndMutationsFollowTheSeed) {
  H2Connection c;
  c.preface = std::string(testing::kHttp2Preface);
  c.frames = {H2Frame{4, 0, 0, std::string(6, '\0')}, H2Frame{1, 4, 1, "\x83\x86\x84"},
              H2Frame{0, 1, 1, std::string(5, '\0')}};
  const std::string bytes = testing::Serialize(c);
  ASSERT_EQ(bytes.size(), 24u + 3 * 9 + 6 + 3 + 5);
  auto back = testing::SplitConnection(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->frames.size(), 3u);
  EXPECT_EQ(back->frames[1].type, 1);
  EXPECT_EQ(back->frames[1].flags, 4);
  EXPECT_EQ(back->frames[1].stream, 1u);
  EXPECT_EQ(testing::Serialize(*back), bytes);
  EXPECT_FALSE(testing::SplitConnection(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(testing::SplitConnection(bytes.substr(1)).ok());
  // A lying length is written as told.
  c.frames[2].length_delta = 3;
  EXPECT_EQ(static_cast<uint8_t>(testing::Serialize(c)[24 + 9 + 6 + 9 + 3 + 2]), 8);
  c.frames[2].length_delta = 0;
  int changed = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::mt19937_64 a(seed), b(seed);
    const std::string m = testing::Mutate(c, a);
    EXPECT_EQ(m, testing::Mutate(c, b)) << "seed " << seed;
    changed += m != bytes;
  }
  // A mutation can be a no-op (flags set to what they were): nearly all change something.
  EXPECT_GE(changed, 190);
}

class WireFuzzTest : public ::testing::Test {
 public:  // the helpers below serve FuzzGrpcPort too
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) return;
    dir_ = testing::TempDir();
    auto v = testing::StartVerifier(dir_);
    ASSERT_TRUE(v.ok()) << v.status();
    verifier_ = new Service(std::move(*v));
    http_port_ = testing::FreePort();
    auto d = testing::StartDrafter(
        dir_, verifier_->address(),
        {"--http", absl::StrCat("127.0.0.1:", http_port_), "--served_model_name", "eagle"});
    ASSERT_TRUE(d.ok()) << d.status();
    drafter_ = new Service(std::move(*d));
  }
  static void TearDownTestSuite() {
    delete drafter_;
    delete verifier_;
    drafter_ = verifier_ = nullptr;
  }
  void SetUp() override {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) GTEST_SKIP() << "default model not fetched";
    ASSERT_NE(drafter_, nullptr);
  }

  // The client bytes of each connection the relay saw, once `calls` have ended.
  static std::vector<std::string> Recorded(testing::RecordingRelay& relay, int calls) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (static_cast<int>(relay.Recorded().size()) < calls &&
           std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    relay.Stop();
    EXPECT_EQ(static_cast<int>(relay.Recorded().size()), calls);
    return relay.Recorded();
  }

  // gRPC seeds: each call on a channel (and so a connection) of its own, through the relay.
  static std::vector<H2Connection> CaptureGrpcSeeds(const Service& s, bool is_drafter) {
    auto relay = testing::RecordingRelay::Start(s.port);
    EXPECT_TRUE(relay.ok()) << relay.status();
    if (!relay.ok()) return {};
    const std::string address = absl::StrCat("127.0.0.1:", (*relay)->port());
    int calls = 0;
    auto channel = [&] {
      grpc::ChannelArguments args;
      args.SetInt("eagle.test.seed", ++calls);
      return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    };
    auto deadline = [](grpc::ClientContext& ctx) {
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    };
    {
      auto stub = grpc::health::v1::Health::NewStub(channel());
      grpc::ClientContext ctx;
      deadline(ctx);
      grpc::health::v1::HealthCheckResponse resp;
      EXPECT_TRUE(stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok());
    }
    for (const int max_tokens : {4, -1}) {  // a generation, and one refused in the handler
      const v1::GenerateRequest r = testing::ChatRequest("Hello", max_tokens);
      auto ch = channel();
      const testing::Generation g = is_drafter
                                        ? testing::Generate(v1::Drafter::NewStub(ch).get(), r, 60)
                                        : testing::Generate(v1::Verifier::NewStub(ch).get(), r, 60);
      EXPECT_EQ(g.status.ok(), max_tokens > 0) << g.status.error_message();
    }
    if (!is_drafter) {
      auto stub = v1::Verifier::NewStub(channel());
      grpc::ClientContext ctx;
      deadline(ctx);
      auto stream = stub->Session(&ctx);
      v1::SessionRequest open;
      for (int id : {1, 9690, 314, 2156}) open.mutable_open()->mutable_prompt()->add_ids(id);
      open.mutable_open()->set_max_tokens(8);
      stream->Write(open);
      v1::SessionResponse resp;
      EXPECT_TRUE(stream->Read(&resp) && resp.has_opened());
      const int32_t root = resp.opened().first_token();
      for (int k = 0; k < resp.opened().feature_chunks(); ++k) stream->Read(&resp);
      v1::SessionRequest verify;
      verify.mutable_verify()->set_step(0);
      verify.mutable_verify()->mutable_tree()->add_tokens(root);
      verify.mutable_verify()->mutable_tree()->add_parents(-1);
      stream->Write(verify);
      EXPECT_TRUE(stream->Read(&resp) && resp.has_result());
      v1::SessionRequest close;
      close.mutable_close();
      stream->Write(close);
      stream->WritesDone();
      while (stream->Read(&resp)) {
      }
      EXPECT_TRUE(stream->Finish().ok());
    }
    // The channels are gone, so their connections close and the relay records them.
    std::vector<H2Connection> seeds;
    for (const std::string& bytes : Recorded(**relay, calls)) {
      auto c = testing::SplitConnection(bytes);
      EXPECT_TRUE(c.ok()) << c.status();
      if (c.ok()) seeds.push_back(std::move(*c));
    }
    return seeds;
  }

  // HTTP/1.1 seeds for the drafter's API: health, models, a chat completion (plain and
  // streamed) and a completion, each on a connection of its own.
  static std::vector<std::string> CaptureHttpSeeds(int port) {
    auto relay = testing::RecordingRelay::Start(port);
    EXPECT_TRUE(relay.ok()) << relay.status();
    if (!relay.ok()) return {};
    int calls = 0;
    auto client = [&] {
      ++calls;
      auto c = std::make_unique<httplib::Client>("127.0.0.1", (*relay)->port());
      c->set_keep_alive(false);
      c->set_read_timeout(60);
      return c;
    };
    auto expect_ok = [](const httplib::Result& res, const std::string& what) {
      EXPECT_TRUE(res) << what << ": " << httplib::to_string(res.error());
      if (res) {
        EXPECT_EQ(res->status, 200) << what;
      }
    };
    expect_ok(client()->Get("/health"), "health");
    expect_ok(client()->Get("/v1/models"), "models");
    const std::string chat =
        R"({"model": "eagle", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", )"
        R"("content": "Hello"}])";
    expect_ok(client()->Post("/v1/chat/completions", chat + "}", "application/json"), "chat");
    expect_ok(
        client()->Post("/v1/chat/completions", chat + R"(, "stream": true})", "application/json"),
        "streamed chat");
    expect_ok(client()->Post("/v1/completions",
                             R"({"model": "eagle", "max_tokens": 4, "prompt": "Once upon a time"})",
                             "application/json"),
              "completion");
    return Recorded(**relay, calls);
  }

  // Connection i stays open after its bytes when i % 4 == 0, so that requests that survive the
  // mutations reach their handlers; the others half-close (fast, and gRPC drops the transport at
  // the FIN). Seeds are taken by i / 4, so each seed is replayed both ways.
  static bool StaysOpen(int i) { return i % 4 == 0; }
  template <typename Seed>
  static const Seed& SeedOf(const std::vector<Seed>& seeds, int i) {
    return seeds[(i / 4) % seeds.size()];
  }

  // `connections` mutated connections (`mutated` makes the i-th; EAGLE_WIRE_FUZZ_CONNECTIONS
  // overrides the count) to `port` of service `s`.
  static void Fuzz(const Service& s, int port, const std::string& what, bool is_drafter,
                   int connections,
                   const std::function<std::string(int, std::mt19937_64&)>& mutated) {
    const int pid = s.proc->pid();
    // The baseline once the seeds' connections are closed: two equal readings 100 ms apart.
    int fds_before = testing::OpenFds(pid);
    for (int k = 0; k < 50; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const int now = testing::OpenFds(pid);
      if (now == fds_before) break;
      fds_before = now;
    }
    const int threads_before = testing::Threads(pid);
    ASSERT_GT(fds_before, 0);
    if (const char* env = std::getenv("EAGLE_WIRE_FUZZ_CONNECTIONS")) {
      ASSERT_TRUE(absl::SimpleAtoi(env, &connections) && connections > 1) << env;
    }
    const std::string family = is_drafter ? "eagle_drafter_requests" : "eagle_verifier_requests";
    auto started = [&] {
      return testing::MetricFamilySum(s.admin_port, family + "_started_total");
    };
    const double started_before = started();
    std::atomic<int> next{0}, answered{0}, closed_by_server{0}, refused_connects{0};
    std::atomic<int64_t> bytes_sent{0};
    std::atomic<bool> unhealthy{false};
    auto worker = [&](int end) {
      while (!unhealthy) {
        const int i = next++;
        if (i >= end) return;
        std::mt19937_64 rng(0x5eed0000 + i);
        const std::string bytes = mutated(i, rng);
        const testing::RawExchange x =
            testing::SendRaw(port, bytes, 1.0, 0.1, /*half_close=*/!StaysOpen(i));
        if (!x.connected) ++refused_connects;
        answered += x.received > 0;
        closed_by_server += x.closed_by_server;
        bytes_sent += x.sent;
        // Health every 500 connections; asked twice, a second apart, before it counts as lost
        // (one Check can miss its 2 s deadline on two loaded cores).
        if (i % 500 == 499 && testing::Health(s.address()) != "SERVING") {
          std::this_thread::sleep_for(std::chrono::seconds(1));
          if (testing::Health(s.address()) != "SERVING") unhealthy = true;
        }
      }
    };
    // Two rounds: after each, descriptors come back to the baseline (gRPC closes connections
    // asynchronously: wait up to 10 s); threads may grow once (gRPC's pools keep a few), but not
    // again in the second round, so they do not grow with the connections.
    const auto t0 = std::chrono::steady_clock::now();
    int threads_after[2] = {-1, -1};
    for (int round = 0; round < 2; ++round) {
      const int end = round == 0 ? connections / 2 : connections;
      next = round == 0 ? 0 : connections / 2;
      std::vector<std::thread> workers;
      for (int w = 0; w < 4; ++w) workers.emplace_back(worker, end);
      for (auto& w : workers) w.join();
      int fds = -1;
      for (int k = 0; k < 500; ++k) {
        fds = testing::OpenFds(pid);
        if (fds <= fds_before + 2) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      EXPECT_LE(fds, fds_before + 2)
          << "round " << round << ", file descriptors: " << fds_before << " before";
      // gRPC retires surplus handler threads asynchronously too.
      for (int k = 0; k < 500; ++k) {
        threads_after[round] = testing::Threads(pid);
        if (round == 0 || threads_after[1] <= threads_after[0] + 2) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "%s: %d mutated connections in %.1f s, %lld bytes sent, %d "
        "answered, %d closed by the server, %.0f requests started, %d connects refused; threads %d "
        "before, %d and %d after each round\n",
        what.c_str(), connections, took, static_cast<long long>(bytes_sent.load()), answered.load(),
        closed_by_server.load(), started() - started_before, refused_connects.load(),
        threads_before, threads_after[0], threads_after[1]);
    EXPECT_FALSE(unhealthy) << "health left SERVING during the fuzz";
    EXPECT_EQ(refused_connects.load(), 0);
    ASSERT_TRUE(s.proc->running()) << s.proc->log();
    EXPECT_EQ(testing::Health(s.address()), "SERVING");
    EXPECT_LE(threads_after[1], threads_after[0] + 2);
    const absl::Status balanced = testing::RequestsBalanced(s.admin_port, family);
    EXPECT_TRUE(balanced.ok()) << balanced;
    if (is_drafter) {
      EXPECT_GE(testing::WaitMetric(s.admin_port, "eagle_drafter_active_generations", 0, 5), 0);
    } else {
      EXPECT_GE(testing::WaitMetric(s.admin_port, "eagle_verifier_active_sessions", 0, 5), 0);
      EXPECT_GE(testing::WaitMetric(s.admin_port, "eagle_verifier_kv_bytes", 0, 5), 0);
    }
    const v1::GenerateRequest r = testing::ChatRequest("Hello", 8);
    const testing::Generation g =
        is_drafter ? testing::Generate(testing::DrafterStub(s.address()).get(), r)
                   : testing::Generate(testing::VerifierStub(s.address()).get(), r);
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_FALSE(g.ids.empty());
  }

  static inline std::string dir_;
  static inline Service* verifier_ = nullptr;
  static inline Service* drafter_ = nullptr;
  static inline int http_port_ = 0;
};

void ExpectFrames(const std::vector<H2Connection>& seeds, const std::string& what) {
  size_t frames = 0;
  for (const auto& c : seeds) frames += c.frames.size();
  std::printf("%s: %zu seed connections, %zu frames\n", what.c_str(), seeds.size(), frames);
  EXPECT_GT(frames, 3 * seeds.size()) << "a seed is SETTINGS, HEADERS, DATA and more";
}

// Captures the gRPC seeds of `s` (`seeds_expected` of them), then fuzzes its data port.
void FuzzGrpcPort(const Service& s, bool is_drafter, size_t seeds_expected) {
  const std::string what = is_drafter ? "drafter gRPC" : "verifier gRPC";
  const std::vector<H2Connection> seeds = WireFuzzTest::CaptureGrpcSeeds(s, is_drafter);
  ASSERT_EQ(seeds.size(), seeds_expected);
  ExpectFrames(seeds, what);
  WireFuzzTest::Fuzz(s, s.port, what, is_drafter, 6000, [&](int i, std::mt19937_64& rng) {
    return testing::Mutate(WireFuzzTest::SeedOf(seeds, i), rng);
  });
}

TEST_F(WireFuzzTest, TheVerifiersDataPortSurvivesMutatedFrames) {
  FuzzGrpcPort(*verifier_, false, 4);
}

TEST_F(WireFuzzTest, TheDraftersDataPortSurvivesMutatedFrames) { FuzzGrpcPort(*drafter_, true, 3); }

TEST_F(WireFuzzTest, TheDraftersHttpPortSurvivesMutatedRequests) {
  const std::vector<std::string> seeds = CaptureHttpSeeds(http_port_);
  ASSERT_EQ(seeds.size(), 5u);
  for (const std::string& seed : seeds) {
    EXPECT_TRUE(seed.starts_with("GET /") || seed.starts_with("POST /")) << seed;
  }
  Fuzz(*drafter_, http_port_, "drafter HTTP", true, 4000,
       [&](int i, std::mt19937_64& rng) { return testing::MutateBytes(SeedOf(seeds, i), rng); });
  httplib::Client c("127.0.0.1", http_port_);
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

}  // namespace
}  // namespace eagle
