// The drafter's OpenAI-compatible HTTP API (eagle-drafter --http) on the real binaries: T=0
// output identical to the gRPC API's, streaming, stop strings, a client that goes away
// mid-stream freeing its verifier session, every refusal with OpenAI's status and body, bearer
// tokens and admission, request ids in the logs; then the official `openai` Python client and
// curl against it (each skipped, with the reason, where it is not installed).
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/timing.h"
#include "gtest/gtest.h"
#include "tests/testing/services.h"

namespace eagle {
namespace {

using nlohmann::json;
using testing::Generation;
using testing::HeldOutPrompts;
using testing::Metric;
using testing::Service;
using testing::WaitMetric;

struct HttpReply {
  int status = -1;
  json body;                 // non-streaming replies
  std::vector<json> events;  // streaming: each `data:` event but [DONE]
  bool done = false;         // streaming: `data: [DONE]` arrived
  std::string text;          // streaming: the concatenated text deltas
  std::string request_id;    // the X-Request-Id header
};

class HttpApi {
 public:
  explicit HttpApi(int port, std::string token = "") : port_(port), token_(std::move(token)) {}

  HttpReply Post(const std::string& path, const std::string& body,
                 const httplib::Headers& extra = {}) const {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(std::chrono::seconds(120));
    HttpReply r;
    auto res = cli.Post(path.c_str(), Headers(extra), body, "application/json");
    if (!res) return r;
    r.status = res->status;
    r.request_id = res->get_header_value("X-Request-Id");
    r.body = json::parse(res->body, nullptr, false);
    return r;
  }

  HttpReply Get(const std::string& path) const {
    httplib::Client cli("127.0.0.1", port_);
    HttpReply r;
    auto res = cli.Get(path.c_str(), Headers({}));
    if (!res) return r;
    r.status = res->status;
    r.body = json::parse(res->body, nullptr, false);
    return r;
  }

  // Reads a server-sent event stream; `keep_going` (optional) sees the number of text events so
  // far and may return false to drop the connection.
  HttpReply Stream(const std::string& path, const json& body,
                   const std::function<bool(int)>& keep_going = nullptr,
                   const httplib::Headers& extra = {}) const {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(std::chrono::seconds(120));
    HttpReply r;
    std::string buf;
    int texts = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.headers = Headers(extra);
    req.set_header("Content-Type", "application/json");
    req.body = body.dump();
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      buf.append(data, n);
      for (size_t end; (end = buf.find("\n\n")) != std::string::npos;) {
        std::string ev = buf.substr(0, end);
        buf.erase(0, end + 2);
        if (ev.rfind("data: ", 0) != 0) continue;
        ev.erase(0, 6);
        if (ev == "[DONE]") {
          r.done = true;
          continue;
        }
        json j = json::parse(ev, nullptr, false);
        r.events.push_back(j);
        if (j.contains("choices") && !j["choices"].empty()) {
          const json& c = j["choices"][0];
          std::string t;
          if (c.contains("delta") && c["delta"].contains("content")) t = c["delta"]["content"];
          if (c.contains("text")) t = c["text"];
          if (!t.empty()) ++texts;
          r.text += t;
        }
      }
      return keep_going == nullptr || keep_going(texts);
    };
    httplib::Response res;
    httplib::Error err;
    cli.send(req, res, err);
    r.status = res.status;
    r.request_id = res.get_header_value("X-Request-Id");
    if (r.events.empty()) r.body = json::parse(res.body, nullptr, false);
    return r;
  }

 private:
  httplib::Headers Headers(const httplib::Headers& extra) const {
    httplib::Headers h = extra;
    if (!token_.empty()) h.emplace("Authorization", "Bearer " + token_);
    return h;
  }
  int port_;
  std::string token_;
};

class HttpApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(EAGLE_DEFAULT_MODEL)) return;
    dir_ = ::testing::TempDir();
    auto v = testing::StartVerifier(dir_);
    ASSERT_TRUE(v.ok()) << v.status();
    verifier_ = new Service(std::move(*v));
    http_port_ = testing::FreePort();
    auto d = testing::StartDrafter(
        dir_, verifier_->address(),
        {"--http", "127.0.0.1:" + std::to_string(http_port_), "--served_model_name", kModel});
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
  // R7 after every test: each generation either front door started has ended with an outcome
  // (a streaming client that left counts as cancelled), and so has each verifier RPC.
  void TearDown() override {
    if (drafter_ == nullptr || IsSkipped()) return;
    for (const auto& [service, family] :
         {std::pair{drafter_, "eagle_drafter_requests"}, {verifier_, "eagle_verifier_requests"}}) {
      const absl::Status balanced = testing::RequestsBalanced(service->admin_port, family);
      EXPECT_TRUE(balanced.ok()) << balanced;
    }
  }
  static json ChatBody(const std::string& prompt, int max_tokens, json extra = json::object()) {
    json j = {{"model", kModel},
              {"messages", {{{"role", "user"}, {"content", prompt}}}},
              {"max_tokens", max_tokens},
              {"temperature", 0}};
    j.update(extra);
    return j;
  }
  static Generation Grpc(const std::string& prompt, int max_tokens,
                         v1::SpeculationOverride::Mode mode = {}) {
    v1::GenerateRequest r;
    auto* m = r.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(prompt);
    r.set_max_tokens(max_tokens);
    r.mutable_speculation()->set_mode(mode);
    auto stub = testing::DrafterStub(drafter_->address());
    return testing::Generate(stub.get(), r);
  }

  static constexpr char kModel[] = "smollm2-test";
  static inline std::string dir_;
  static inline Service* verifier_ = nullptr;
  static inline Service* drafter_ = nullptr;
  static inline int http_port_ = 0;
};

TEST_F(HttpApiTest, ChatAtTemperatureZeroEqualsTheGrpcApiStreamingOrNot) {
  HttpApi api(http_port_);
  const auto prompts = HeldOutPrompts(6);
  ASSERT_EQ(prompts.size(), 6u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const bool dynamic = i % 3 == 1;
    Generation want = Grpc(
        prompts[i], 48,
        dynamic ? v1::SpeculationOverride::DYNAMIC : v1::SpeculationOverride::MODE_UNSPECIFIED);
    ASSERT_TRUE(want.status.ok()) << want.status.error_message();
    json extra = dynamic ? json{{"speculation", {{"mode", "dynamic"}}}} : json::object();
    HttpReply r = api.Post("/v1/chat/completions", ChatBody(prompts[i], 48, extra).dump());
    ASSERT_EQ(r.status, 200) << r.body.dump();
    const json& choice = r.body["choices"][0];
    EXPECT_EQ(choice["message"]["content"], want.text) << "prompt " << i;
    EXPECT_EQ(choice["message"]["role"], "assistant");
    EXPECT_EQ(r.body["usage"]["completion_tokens"], want.last.usage().completion_tokens());
    EXPECT_EQ(r.body["usage"]["prompt_tokens"], want.last.usage().prompt_tokens());
    EXPECT_EQ(choice["finish_reason"], want.last.finish_reason() == v1::LENGTH ? "length" : "stop");
    EXPECT_EQ(r.body["object"], "chat.completion");
    EXPECT_EQ(r.body["model"], kModel);
    EXPECT_EQ(r.body["id"], "chatcmpl-" + r.request_id);
    EXPECT_GT(r.body["speculation"]["steps"].get<int>(), 0);

    json stream_body = ChatBody(prompts[i], 48, extra);
    stream_body["stream"] = true;
    stream_body["stream_options"] = {{"include_usage", true}};
    HttpReply s = api.Stream("/v1/chat/completions", stream_body);
    ASSERT_EQ(s.status, 200);
    EXPECT_TRUE(s.done) << "no data: [DONE]";
    EXPECT_EQ(s.text, want.text) << "prompt " << i;
    ASSERT_GE(s.events.size(), 3u);
    EXPECT_EQ(s.events.front()["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(s.events.front()["object"], "chat.completion.chunk");
    const json& last = s.events[s.events.size() - 2];
    EXPECT_EQ(last["choices"][0]["finish_reason"], choice["finish_reason"]);
    const json& usage = s.events.back();
    EXPECT_TRUE(usage["choices"].empty());
    EXPECT_EQ(usage["usage"]["completion_tokens"], want.last.usage().completion_tokens());
  }
}

TEST_F(HttpApiTest, CompletionsWithStopStringsEqualTheGrpcApi) {
  HttpApi api(http_port_);
  const std::string prompt = "The three primary colors are";
  v1::GenerateRequest g;
  g.set_text(prompt);
  g.set_max_tokens(40);
  g.add_stop(",");
  auto stub = testing::DrafterStub(drafter_->address());
  Generation want = testing::Generate(stub.get(), g);
  ASSERT_TRUE(want.status.ok());
  ASSERT_EQ(want.last.finish_reason(), v1::STOP) << "the stop string never appeared";
  json body = {
      {"model", kModel}, {"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}, {"stop", ","}};
  HttpReply r = api.Post("/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_EQ(r.body["choices"][0]["text"], want.text);
  EXPECT_EQ(r.body["choices"][0]["text"].get<std::string>().find(','), std::string::npos);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
  body["stream"] = true;
  HttpReply s = api.Stream("/v1/completions", body);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, want.text);
  // max_tokens reached: "length".
  body = {{"model", kModel}, {"prompt", prompt}, {"max_tokens", 3}, {"temperature", 0}};
  r = api.Post("/v1/completions", body.dump());
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 3);
}

TEST_F(HttpApiTest, AClientThatLeavesMidStreamFreesItsVerifierSession) {
  HttpApi api(http_port_);
  const json body =
      ChatBody("Write a very long story about a dragon and a knight.", 400, {{"stream", true}});
  HttpReply s = api.Stream("/v1/chat/completions", body, [](int n) { return n < 8; });
  EXPECT_FALSE(s.done);
  const double t = WaitMetric(verifier_->admin_port, "eagle_verifier_active_sessions", 0, 5);
  EXPECT_GE(t, 0) << "session not freed";
  EXPECT_LT(t, 1.0);
  EXPECT_GE(WaitMetric(drafter_->admin_port, "eagle_drafter_active_generations", 0, 5), 0);
  EXPECT_GE(Metric(drafter_->admin_port, "eagle_drafter_requests_total{outcome=\"cancelled\"}"), 1);
}

TEST_F(HttpApiTest, EveryRefusalHasOpenAisStatusAndBodyAndHarmsNoOtherRequest) {
  HttpApi api(http_port_);
  const std::string long_prompt(300 << 10, 'a');
  struct Case {
    std::string path;
    std::string body;
    int status;
    std::string param;  // "-": none expected
  };
  const json ok = ChatBody("Hi", 4);
  auto with = [&](const json& extra) {
    json j = ok;
    j.update(extra);
    return j.dump();
  };
  const Case cases[] = {
      {"/v1/chat/completions", with({{"logit_bias", {{"1", 5}}}}), 400, "logit_bias"},
      {"/v1/chat/completions", with({{"logprobs", true}}), 400, "logprobs"},
      {"/v1/chat/completions", with({{"tools", {{{"type", "function"}}}}}), 400, "tools"},
      {"/v1/chat/completions", with({{"response_format", {{"type", "json_object"}}}}), 400,
       "response_format"},
      {"/v1/chat/completions", with({{"frequency_penalty", 0.5}}), 400, "frequency_penalty"},
      {"/v1/chat/completions", with({{"n", 2}}), 400, "n"},
      {"/v1/chat/completions", with({{"bogus", 1}}), 400, "bogus"},
      {"/v1/chat/completions", with({{"max_tokens", 9000}}), 400, "messages"},
      {"/v1/chat/completions", with({{"top_k", 100000}}), 400, "top_k"},
      {"/v1/chat/completions", with({{"speculation", {{"depth", 40}}}}), 400, "speculation.depth"},
      {"/v1/chat/completions", with({{"messages", json::array()}}), 400, "messages"},
      {"/v1/chat/completions", with({{"model", "gpt-4o"}}), 404, "model"},
      {"/v1/chat/completions", "{\"model\": ", 400, "-"},
      {"/v1/chat/completions", "[]", 400, "-"},
      {"/v1/completions", json({{"model", kModel}, {"prompt", long_prompt}}).dump(), 400, "prompt"},
      {"/v1/completions", std::string(3 << 20, ' '), 413, "-"},
      {"/v1/nothing", "{}", 404, "-"},
  };
  for (const Case& c : cases) {
    HttpReply r = api.Post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body.substr(0, 120);
    ASSERT_TRUE(r.body.is_object() && r.body.contains("error")) << c.body.substr(0, 120);
    const json& e = r.body["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
    EXPECT_TRUE(e["type"].is_string());
    if (c.param != "-") {
      EXPECT_EQ(e["param"], c.param) << e.dump();
      EXPECT_NE(e["message"].get<std::string>().find(c.param == "messages" ? "" : c.param),
                std::string::npos)
          << e.dump();
    }
  }
  // Bytes that are not UTF-8 (httplib URL-decodes paths and headers) and a deeply nested value
  // get answers, not a dead server.
  EXPECT_EQ(api.Get("/%FF%FE").status, 404);
  json streamed = ok;
  streamed["stream"] = true;
  HttpReply odd_id =
      api.Stream("/v1/chat/completions", streamed, nullptr, {{"X-Request-Id", "%FF%FEbad id"}});
  EXPECT_EQ(odd_id.status, 200);
  EXPECT_TRUE(odd_id.done);
  EXPECT_NE(odd_id.request_id.find_first_not_of("0123456789abcdef"), 0u);  // a new id
  EXPECT_EQ(odd_id.request_id.size(), 16u);
  std::string deep = "[";
  for (int i = 0; i < 200000; ++i) deep += "[";
  deep += std::string(200001, ']');
  HttpReply nested =
      api.Post("/v1/chat/completions", ok.dump().substr(0, ok.dump().size() - 1) +
                                           ",\"speculation\":{\"tree_choices\":" + deep + "}}");
  EXPECT_EQ(nested.status, 400) << nested.body.dump().substr(0, 200);
  // GET on a POST route, POST on a GET route.
  EXPECT_EQ(api.Get("/v1/chat/completions").status, 404);
  EXPECT_EQ(api.Post("/v1/models", "{}").status, 404);
  // The server is unharmed.
  HttpReply r = api.Post("/v1/chat/completions", ok.dump());
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(
      Metric(drafter_->admin_port,
             "eagle_drafter_http_requests_total{code=\"400\",route=\"/v1/chat/completions\"}"),
      11);
  EXPECT_GE(Metric(drafter_->admin_port,
                   "eagle_drafter_http_requests_total{code=\"413\",route=\"oversized\"}"),
            1);
}

TEST_F(HttpApiTest, ModelsHealthAndRequestIdsInTheLogs) {
  HttpApi api(http_port_);
  HttpReply m = api.Get("/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["object"], "list");
  ASSERT_EQ(m.body["data"].size(), 1u);
  EXPECT_EQ(m.body["data"][0]["id"], kModel);
  EXPECT_EQ(api.Get(std::string("/v1/models/") + kModel).body["id"], kModel);
  EXPECT_EQ(api.Get("/v1/models/other").status, 404);
  httplib::Client cli("127.0.0.1", http_port_);
  auto h = cli.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  HttpReply r = api.Post("/v1/chat/completions", ChatBody("Hi", 4).dump(),
                         {{"X-Request-Id", "http-test-id-42"}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.request_id, "http-test-id-42");
  EXPECT_EQ(r.body["id"], "chatcmpl-http-test-id-42");
  const std::string log = drafter_->proc->log();
  EXPECT_NE(log.find("\"event\":\"generate_start\""), std::string::npos);
  EXPECT_NE(log.find("\"request_id\":\"http-test-id-42\""), std::string::npos);
}

// Bearer tokens as the gRPC API's, and admission: a drafter with one generation slot.
TEST_F(HttpApiTest, BearerTokensAndAdmission) {
  const std::string tokens = dir_ + "/http_tokens";
  std::ofstream(tokens) << "sekrit-1\n";
  const int port = testing::FreePort();
  auto d =
      testing::StartDrafter(dir_, verifier_->address(),
                            {"--http", "127.0.0.1:" + std::to_string(port), "--served_model_name",
                             kModel, "--auth_token_file", tokens, "--max_generations", "1"},
                            rpc::ClientCredentials());
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string body = ChatBody("Hi", 4).dump();
  HttpReply none = HttpApi(port).Post("/v1/chat/completions", body);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.body["error"]["type"], "authentication_error");
  EXPECT_EQ(HttpApi(port, "wrong").Post("/v1/chat/completions", body).status, 401);
  EXPECT_EQ(HttpApi(port, "wrong").Get("/v1/models").status, 401);
  HttpApi api(port, "sekrit-1");
  EXPECT_EQ(api.Post("/v1/chat/completions", body).status, 200);
  EXPECT_EQ(api.Get("/v1/models").status, 200);
  // One long stream holds the only slot; a second request meanwhile gets 429.
  std::atomic<int> texts{0};
  std::thread holder([&] {
    api.Stream("/v1/chat/completions",
               ChatBody("Write a long story about a lighthouse.", 300, {{"stream", true}}),
               [&](int n) {
                 texts = n;
                 return n < 60;
               });
  });
  const auto t0 = Clock::now();
  while (texts.load() < 2 && SecondsSince(t0) < 60) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  HttpReply busy = api.Post("/v1/chat/completions", body);
  holder.join();
  EXPECT_EQ(busy.status, 429) << busy.body.dump();
  EXPECT_EQ(busy.body["error"]["type"], "rate_limit_error");
  EXPECT_GE(WaitMetric(d->admin_port, "eagle_drafter_active_generations", 0, 5), 0);
  EXPECT_EQ(api.Post("/v1/chat/completions", body).status, 200);
}

// SIGTERM with HTTP generations running (one streaming, one not): after --grace_seconds they
// are cancelled, and the drafter exits 0 soon after, instead of waiting for them to finish.
TEST_F(HttpApiTest, SigtermEndsRunningHttpGenerationsAfterTheGrace) {
  const int port = testing::FreePort();
  auto d = testing::StartDrafter(dir_, verifier_->address(),
                                 {"--http", "127.0.0.1:" + std::to_string(port),
                                  "--served_model_name", kModel, "--grace_seconds", "1"});
  ASSERT_TRUE(d.ok()) << d.status();
  HttpApi api(port);
  const json body = ChatBody("Write a very long story about a dragon.", 4000);
  HttpReply plain, streamed;
  std::thread a([&] { plain = api.Post("/v1/chat/completions", body.dump()); });
  std::thread b([&] {
    json j = body;
    j["stream"] = true;
    streamed = api.Stream("/v1/chat/completions", j);
  });
  ASSERT_GE(WaitMetric(d->admin_port, "eagle_drafter_active_generations", 2, 30), 0);
  const auto t0 = Clock::now();
  d->proc->Signal(SIGTERM);
  const int code = d->proc->Wait(15);
  const double took = SecondsSince(t0);
  a.join();
  b.join();
  EXPECT_EQ(code, 0);
  EXPECT_LT(took, 6.0) << "the drafter waited for its HTTP generations";
  EXPECT_NE(plain.status, 200);
  EXPECT_FALSE(streamed.done && streamed.text.size() > 10000);
  EXPECT_GE(WaitMetric(verifier_->admin_port, "eagle_verifier_active_sessions", 0, 5), 0);
}

std::string Python() {
  if (const char* p = std::getenv("EAGLE_TEST_PYTHON"); p != nullptr) return p;
  const std::string venv = std::string(EAGLE_TEST_SOURCE_DIR) + "/../.venv-test/bin/python";
  return std::filesystem::exists(venv) ? venv : "python3";
}

// The official client, with only its base URL changed.
TEST_F(HttpApiTest, TheOpenAiPythonClientWorksUnchanged) {
  const std::string prompt = HeldOutPrompts(1)[0];
  Generation want = Grpc(prompt, 32);
  ASSERT_TRUE(want.status.ok());
  const std::string expect = dir_ + "/openai_expect.json";
  std::ofstream(expect) << json{{"prompt", prompt}, {"max_tokens", 32}, {"text", want.text}}.dump();
  const std::string cmd =
      Python() + " " + EAGLE_TEST_SOURCE_DIR +
      "/e2e/openai_client_check.py --base-url http://127.0.0.1:" + std::to_string(http_port_) +
      "/v1 --model " + kModel + " --expect " + expect + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  const int rc = pclose(p);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) GTEST_SKIP() << out;
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

TEST_F(HttpApiTest, CurlStreamsTheSameText) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  const std::string prompt = "Name three fruits.";
  Generation want = Grpc(prompt, 24);
  ASSERT_TRUE(want.status.ok());
  const std::string body_file = dir_ + "/curl_body.json";
  std::ofstream(body_file) << ChatBody(prompt, 24, {{"stream", true}}).dump();
  const std::string cmd = "curl -sN --max-time 60 http://127.0.0.1:" + std::to_string(http_port_) +
                          "/v1/chat/completions -H 'Content-Type: application/json' -d @" +
                          body_file;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  std::string text;
  size_t pos = 0;
  bool done = false;
  while ((pos = out.find("data: ", pos)) != std::string::npos) {
    const size_t end = out.find("\n\n", pos);
    const std::string ev = out.substr(pos + 6, end - pos - 6);
    pos = end;
    if (ev == "[DONE]") {
      done = true;
      break;
    }
    json j = json::parse(ev);
    if (j["choices"][0]["delta"].contains("content")) text += j["choices"][0]["delta"]["content"];
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(text, want.text);
}

}  // namespace
}  // namespace eagle
