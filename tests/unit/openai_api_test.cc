// The OpenAI request and response bodies (drafter/openai_api.h) without a server: every
// parameter of the OpenAI API reference is either supported (and reaches the request) or refused
// at a non-default value naming itself; nothing is silently ignored.
#include "drafter/openai_api.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace eagle::drafter::openai {
namespace {

using nlohmann::json;

constexpr char kModel[] = "m";

json Chat(json extra = json::object()) {
  json j = {{"model", kModel}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  j.update(extra);
  return j;
}
json Completion(json extra = json::object()) {
  json j = {{"model", kModel}, {"prompt", "Once"}};
  j.update(extra);
  return j;
}

std::optional<ApiError> Parse(Endpoint e, const json& body, ApiRequest* out = nullptr) {
  ApiRequest r;
  auto err = ParseRequest(e, body.dump(), kModel, 77, out != nullptr ? out : &r);
  return err;
}

TEST(OpenAiApiTest, SupportedChatParametersReachTheRequest) {
  ApiRequest r;
  auto e = Parse(Endpoint::kChat,
                 Chat({{"max_completion_tokens", 9},
                       {"temperature", 0.5},
                       {"top_p", 0.9},
                       {"top_k", 40},
                       {"seed", 12},
                       {"stop", {"a", "bc"}},
                       {"n", 1},
                       {"user", "u1"},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}},
                       {"speculation", {{"mode", "dynamic"}, {"depth", 5}, {"top_k", 3}}}}),
                 &r);
  ASSERT_FALSE(e.has_value()) << e->message;
  const v1::GenerateRequest& q = r.request;
  EXPECT_EQ(q.max_tokens(), 9);
  EXPECT_FLOAT_EQ(q.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(q.sampling().top_p(), 0.9f);
  EXPECT_EQ(q.sampling().top_k(), 40);
  EXPECT_EQ(q.sampling().seed(), 12u);
  ASSERT_EQ(q.stop_size(), 2);
  EXPECT_EQ(q.stop(1), "bc");
  EXPECT_EQ(r.user, "u1");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(q.speculation().mode(), v1::SpeculationOverride::DYNAMIC);
  EXPECT_EQ(q.speculation().depth(), 5);
  EXPECT_EQ(q.speculation().top_k(), 3);
  ASSERT_EQ(q.messages().messages_size(), 1);
  EXPECT_EQ(q.messages().messages(0).content(), "hi");
}

TEST(OpenAiApiTest, DefaultsFollowOpenAi) {
  ApiRequest r;
  ASSERT_FALSE(Parse(Endpoint::kChat, Chat(), &r).has_value());
  EXPECT_FLOAT_EQ(r.request.sampling().temperature(), 1.0f);  // OpenAI's default
  EXPECT_EQ(r.request.sampling().seed(), 77u);                // the fresh seed
  EXPECT_EQ(r.request.max_tokens(), 0);                       // the service default
  EXPECT_FALSE(r.stream);
  // top_k -1 (vLLM's "off") is no limit.
  ASSERT_FALSE(Parse(Endpoint::kChat, Chat({{"top_k", -1}}), &r).has_value());
  EXPECT_EQ(r.request.sampling().top_k(), 0);
  // An explicit null is the default.
  ASSERT_FALSE(Parse(Endpoint::kChat, Chat({{"temperature", nullptr}, {"logit_bias", nullptr}}), &r)
                   .has_value());
  EXPECT_FLOAT_EQ(r.request.sampling().temperature(), 1.0f);
}

TEST(OpenAiApiTest, MessagesRolesAndTextParts) {
  ApiRequest r;
  json msgs = {
      {{"role", "developer"}, {"content", "be brief"}},
      {{"role", "user"},
       {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
      {{"role", "assistant"}, {"content", "ok"}}};
  ASSERT_FALSE(Parse(Endpoint::kChat, Chat({{"messages", msgs}}), &r).has_value());
  const auto& m = r.request.messages().messages();
  ASSERT_EQ(m.size(), 3);
  EXPECT_EQ(m[0].role(), "system");
  EXPECT_EQ(m[1].content(), "a\nb");
  EXPECT_EQ(m[2].role(), "assistant");

  struct Case {
    json messages;
    std::string param;
  };
  const Case cases[] = {
      {json::array(), "messages"},
      {{{{"role", "tool"}, {"content", "x"}}}, "messages[0].role"},
      {{{{"content", "x"}}}, "messages[0].role"},
      {{{{"role", "user"}}}, "messages[0].content"},
      {{{{"role", "user"}, {"content", 5}}}, "messages[0].content"},
      {{{{"role", "user"},
         {"content", {{{"type", "image_url"}, {"image_url", {{"url", "http://x"}}}}}}}},
       "messages[0].content[0]"},
      {{{{"role", "user"}, {"content", "x"}, {"name", "bob"}}}, "messages[0].name"},
      {{{{"role", "assistant"}, {"content", "x"}, {"tool_calls", {{{"id", "1"}}}}}},
       "messages[0].tool_calls"},
  };
  for (const Case& c : cases) {
    auto e = Parse(Endpoint::kChat, Chat({{"messages", c.messages}}));
    ASSERT_TRUE(e.has_value()) << c.messages.dump();
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->param, c.param) << c.messages.dump() << ": " << e->message;
  }
}

TEST(OpenAiApiTest, CompletionPromptForms) {
  ApiRequest r;
  ASSERT_FALSE(Parse(Endpoint::kCompletions, Completion(), &r).has_value());
  EXPECT_EQ(r.request.text(), "Once");
  ASSERT_FALSE(Parse(Endpoint::kCompletions, Completion({{"prompt", {"Twice"}}}), &r).has_value());
  EXPECT_EQ(r.request.text(), "Twice");
  ASSERT_FALSE(Parse(Endpoint::kCompletions, Completion({{"prompt", {1, 2, 3}}}), &r).has_value());
  ASSERT_EQ(r.request.token_ids().ids_size(), 3);
  ASSERT_FALSE(Parse(Endpoint::kCompletions, Completion({{"prompt", {{4, 5}}}}), &r).has_value());
  EXPECT_EQ(r.request.token_ids().ids(1), 5);
  for (const json& bad : {json({"a", "b"}), json(5), json({1, -2}), json::array()}) {
    auto e = Parse(Endpoint::kCompletions, Completion({{"prompt", bad}}));
    ASSERT_TRUE(e.has_value()) << bad.dump();
    EXPECT_EQ(e->param, "prompt");
  }
}

// Every request parameter of OpenAI's API reference for the two endpoints, with a value other
// than its default: each must be supported (accepted) or refused with a 400 naming it. A
// parameter that is neither would be silently ignored. The negative control: a made-up name is
// refused too.
TEST(OpenAiApiTest, NoParameterOfTheApiIsSilentlyIgnored) {
  const std::pair<const char*, json> chat[] = {
      {"audio", {{"voice", "alloy"}, {"format", "mp3"}}},
      {"frequency_penalty", 0.5},
      {"function_call", "auto"},
      {"functions", {{{"name", "f"}}}},
      {"logit_bias", {{"50256", -100}}},
      {"logprobs", true},
      {"max_completion_tokens", 5},
      {"max_tokens", 5},
      {"metadata", {{"k", "v"}}},
      {"modalities", {"text", "audio"}},
      {"n", 2},
      {"parallel_tool_calls", "yes"},
      {"prediction", {{"type", "content"}, {"content", "x"}}},
      {"presence_penalty", 0.5},
      {"reasoning_effort", "low"},
      {"response_format", {{"type", "json_object"}}},
      {"seed", 3},
      {"service_tier", "flex"},
      {"stop", "x"},
      {"store", true},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
      {"temperature", 0.3},
      {"tool_choice", "auto"},
      {"tools", {{{"type", "function"}}}},
      {"top_logprobs", 2},
      {"top_p", 0.5},
      {"user", "u"},
      {"web_search_options", json::object()},
      {"top_k", 5},
      {"min_p", 0.1},
      {"repetition_penalty", 1.2},
      {"ignore_eos", true},
  };
  const std::set<std::string> chat_supported = {
      "max_completion_tokens", "max_tokens",  "seed",  "stop", "stream",
      "stream_options",        "temperature", "top_p", "user", "top_k"};
  for (const auto& [name, value] : chat) {
    json body = Chat({{name, value}});
    if (std::string(name) == "stream_options") body["stream"] = true;
    auto e = Parse(Endpoint::kChat, body);
    if (chat_supported.contains(name)) {
      EXPECT_FALSE(e.has_value()) << name << ": " << e->message;
    } else {
      ASSERT_TRUE(e.has_value()) << name << " was accepted at a non-default value";
      EXPECT_EQ(e->http_status, 400) << name;
      EXPECT_EQ(e->param, name);
      EXPECT_NE(e->message.find(name), std::string::npos) << e->message;
    }
  }
  const std::pair<const char*, json> completions[] = {
      {"best_of", 3},  {"echo", true},  {"frequency_penalty", 1}, {"logit_bias", {{"1", 5}}},
      {"logprobs", 2}, {"n", 3},        {"presence_penalty", 1},  {"suffix", "end"},
      {"seed", 1},     {"stop", {"x"}}, {"max_tokens", 3},        {"temperature", 0},
      {"top_p", 1},    {"user", "u"},   {"stream", false},
  };
  const std::set<std::string> completion_supported = {"seed",  "stop", "max_tokens", "temperature",
                                                      "top_p", "user", "stream"};
  for (const auto& [name, value] : completions) {
    auto e = Parse(Endpoint::kCompletions, Completion({{name, value}}));
    if (completion_supported.contains(name)) {
      EXPECT_FALSE(e.has_value()) << name << ": " << e->message;
    } else {
      ASSERT_TRUE(e.has_value()) << name << " was accepted at a non-default value";
      EXPECT_EQ(e->param, name);
    }
  }
  // Negative control: a name the API does not define.
  auto e = Parse(Endpoint::kChat, Chat({{"temprature", 0}}));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "temprature");
  EXPECT_EQ(e->code, "unknown_parameter");
  // Defaults of refused parameters are accepted (clients often send them).
  EXPECT_FALSE(Parse(Endpoint::kChat, Chat({{"logprobs", false},
                                            {"frequency_penalty", 0},
                                            {"presence_penalty", 0},
                                            {"logit_bias", json::object()},
                                            {"tools", json::array()},
                                            {"response_format", {{"type", "text"}}},
                                            {"n", 1}}))
                   .has_value());
}

TEST(OpenAiApiTest, BadValuesNameTheirParameter) {
  const std::pair<json, std::string> cases[] = {
      {{{"max_tokens", "10"}}, "max_tokens"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_tokens", 4.5}}, "max_tokens"},
      {{{"max_tokens", 5}, {"max_completion_tokens", 6}}, "max_tokens"},
      {{{"temperature", -0.5}}, "temperature"},
      {{{"temperature", "hot"}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"top_p", 1.5}}, "top_p"},
      {{{"top_k", -2}}, "top_k"},
      {{{"seed", "s"}}, "seed"},
      {{{"stop", 5}}, "stop"},
      {{{"stop", {"a", 1}}}, "stop"},
      {{{"stream", "yes"}}, "stream"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},  // without stream
      {{{"user", 5}}, "user"},
      {{{"speculation", {{"mode", "fast"}}}}, "speculation.mode"},
      {{{"speculation", {{"depth", 0}}}}, "speculation.depth"},
      {{{"speculation", {{"width", 2}}}}, "speculation.width"},
  };
  for (const auto& [extra, param] : cases) {
    json body = Chat(extra);
    auto e = Parse(Endpoint::kChat, body);
    ASSERT_TRUE(e.has_value()) << body.dump();
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->param, param) << body.dump() << ": " << e->message;
  }
}

TEST(OpenAiApiTest, BodyAndModelErrors) {
  ApiRequest r;
  auto e = ParseRequest(Endpoint::kChat, "{\"model\": ", kModel, 1, &r);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->http_status, 400);
  EXPECT_NE(e->message.find("not valid JSON"), std::string::npos);
  e = ParseRequest(Endpoint::kChat, "[1, 2]", kModel, 1, &r);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("JSON object"), std::string::npos);
  e = Parse(Endpoint::kChat, {{"messages", Chat()["messages"]}});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "model");
  e = Parse(Endpoint::kChat, {{"model", kModel}});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "messages");
  e = Parse(Endpoint::kChat, Chat({{"model", "gpt-4o"}}));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->http_status, 404);
  EXPECT_EQ(e->code, "model_not_found");
}

TEST(OpenAiApiTest, GenerationErrorsMapToOpenAiStatusesAndFields) {
  struct Case {
    absl::Status status;
    int http;
    std::string param;
    std::string code;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("max_tokens: -1 must be >= 1"), 400, "max_tokens", ""},
      {absl::InvalidArgumentError("stop: each string needs 1 to 64 bytes"), 400, "stop", ""},
      {absl::InvalidArgumentError("sampling: top_k 99999 must be in [0, 49152]"), 400, "top_k", ""},
      {absl::InvalidArgumentError("messages: 300000 bytes of content; at most 262144"), 400,
       "messages", ""},
      {absl::InvalidArgumentError("prompt has 9000 tokens; the context is 8192"), 400, "messages",
       "context_length_exceeded"},
      {absl::OutOfRangeError("prompt (37) + max_tokens (9000) exceeds the context (8192)"), 400,
       "messages", "context_length_exceeded"},
      {absl::InvalidArgumentError("speculation.depth: 40 must be in [1, 32] (0 = default)"), 400,
       "speculation.depth", ""},
      {absl::UnauthenticatedError("unknown bearer token"), 401, "", "invalid_api_key"},
      {absl::ResourceExhaustedError("at its limit"), 429, "", "rate_limit_exceeded"},
      {absl::UnavailableError("draining"), 503, "", ""},
      {absl::InternalError("boom"), 500, "", ""},
  };
  for (const Case& c : cases) {
    ApiError e = FromStatus(c.status, Endpoint::kChat);
    EXPECT_EQ(e.http_status, c.http) << c.status;
    EXPECT_EQ(e.param, c.param) << c.status;
    EXPECT_EQ(e.code, c.code) << c.status;
    if (!c.param.empty() && c.param != "messages") {
      EXPECT_NE(e.message.find(c.param), std::string::npos) << e.message;
    }
    const json body = ErrorBody(e);
    EXPECT_EQ(body["error"]["message"], e.message);
    EXPECT_TRUE(body["error"].contains("type"));
  }
  ApiError t = FromStatus(absl::InvalidArgumentError("text: empty prompt"), Endpoint::kCompletions);
  EXPECT_EQ(t.param, "prompt");
  EXPECT_EQ(t.message, "prompt: empty prompt");
  EXPECT_EQ(
      FromStatus(absl::InvalidArgumentError("sampling: top_p 2 must be in (0, 1]"), Endpoint::kChat)
          .message,
      "top_p 2 must be in (0, 1]");
}

TEST(OpenAiApiTest, ResponseBodiesHaveOpenAisShape) {
  drafter::Completion c;
  c.result.text = "Paris.";
  c.result.token_ids = {1, 2, 3};
  c.result.prompt_tokens = 10;
  c.result.finish = eagle::FinishReason::kEos;
  c.stats.steps = 2;
  c.stats.accepted_at_depth = {2, 1};
  ResponseMeta meta{"chatcmpl-x", 1700000000, "m"};
  json b = CompletionBody(Endpoint::kChat, meta, c);
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_EQ(b["choices"][0]["message"]["content"], "Paris.");
  EXPECT_EQ(b["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(b["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(b["usage"]["total_tokens"], 13);
  EXPECT_EQ(b["speculation"]["steps"], 2);
  EXPECT_DOUBLE_EQ(b["speculation"]["acceptance_by_depth"][1].get<double>(), 0.5);
  c.result.finish = eagle::FinishReason::kLength;
  json t = CompletionBody(Endpoint::kCompletions, meta, c);
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "Paris.");
  EXPECT_EQ(t["choices"][0]["finish_reason"], "length");
  json first = ChunkBody(Endpoint::kChat, meta, "", true, nullptr);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  json mid = ChunkBody(Endpoint::kChat, meta, "Par", false, nullptr);
  EXPECT_EQ(mid["choices"][0]["delta"], json({{"content", "Par"}}));
  json last = ChunkBody(Endpoint::kChat, meta, "", false, &c);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  json usage = UsageChunk(Endpoint::kChat, meta, c);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 3);
}

}  // namespace
}  // namespace eagle::drafter::openai
