#include "drafter/openai_api.h"

#include <cmath>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rpc/request.h"

namespace eagle::drafter::openai {
namespace {

using nlohmann::json;

ApiError Invalid(std::string param, std::string message) {
  ApiError e;
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

ApiError Unsupported(const std::string& param, const std::string& why) {
  ApiError e = Invalid(param, absl::StrCat("'", param, "' is not supported by this server", why));
  e.code = "unsupported_parameter";
  return e;
}

// Parameters the API defines that this server only accepts at their default: `ok` says whether
// the given value is that default (null always is).
struct DefaultOnly {
  const char* name;
  bool (*ok)(const json& v);
  const char* why;
};

bool IsFalse(const json& v) { return v.is_boolean() && !v.get<bool>(); }
bool IsZero(const json& v) { return v.is_number() && v.get<double>() == 0; }
bool IsOne(const json& v) { return v.is_number() && v.get<double>() == 1; }
bool IsEmpty(const json& v) { return (v.is_object() || v.is_array()) && v.empty(); }
bool IsAnyBool(const json& v) { return v.is_boolean(); }
bool IsTextFormat(const json& v) {
  return v.is_object() && v.size() == 1 && v.contains("type") && v["type"] == "text";
}
bool IsToolChoiceNone(const json& v) { return v == "none"; }
bool IsDefaultTier(const json& v) { return v == "auto" || v == "default"; }
bool IsTextModality(const json& v) { return v == json::array({"text"}); }
bool Never(const json&) { return false; }

constexpr DefaultOnly kCommonDefaults[] = {
    {"logit_bias", IsEmpty, " (logit biases are not implemented)"},
    {"frequency_penalty", IsZero, " (penalties are not implemented; 0 is accepted)"},
    {"presence_penalty", IsZero, " (penalties are not implemented; 0 is accepted)"},
    {"repetition_penalty", IsOne, " (penalties are not implemented; 1 is accepted)"},
    {"min_p", IsZero, " (0 is accepted)"},
    {"ignore_eos", IsFalse, " (false is accepted)"},
    {"service_tier", IsDefaultTier, " ('auto' and 'default' are accepted)"},
    {"store", IsFalse, " (nothing is stored; false is accepted)"},
    {"metadata", IsEmpty, " (nothing is stored)"},
};
constexpr DefaultOnly kChatDefaults[] = {
    {"logprobs", IsFalse, " (log probabilities are not returned; false is accepted)"},
    {"top_logprobs", IsZero, " (log probabilities are not returned)"},
    {"response_format", IsTextFormat, " (only {\"type\": \"text\"})"},
    {"tools", IsEmpty, " (no tool calling)"},
    {"tool_choice", IsToolChoiceNone, " (no tool calling; 'none' is accepted)"},
    {"parallel_tool_calls", IsAnyBool, ""},
    {"functions", IsEmpty, " (no function calling)"},
    {"function_call", IsToolChoiceNone, " (no function calling; 'none' is accepted)"},
    {"modalities", IsTextModality, " (text only)"},
    {"audio", Never, " (text only)"},
    {"prediction", Never, " (predicted outputs are not implemented)"},
    {"reasoning_effort", Never, " (not a reasoning model)"},
    {"web_search_options", Never, " (no web search)"},
};
constexpr DefaultOnly kCompletionDefaults[] = {
    {"logprobs", IsZero, " (log probabilities are not returned)"},
    {"echo", IsFalse, " (false is accepted)"},
    {"best_of", IsOne, " (1 is accepted)"},
    {"suffix", Never, " (no insertion)"},
};

const std::set<std::string>& Supported(Endpoint e) {
  static const std::set<std::string> kChat = {
      "model",          "messages",   "max_tokens", "max_completion_tokens",
      "temperature",    "top_p",      "top_k",      "seed",
      "stop",           "n",          "user",       "stream",
      "stream_options", "speculation"};
  static const std::set<std::string> kCompletion = {
      "model", "prompt", "max_tokens", "temperature", "top_p",          "top_k",      "seed",
      "stop",  "n",      "user",       "stream",      "stream_options", "speculation"};
  return e == Endpoint::kChat ? kChat : kCompletion;
}

const DefaultOnly* FindDefaultOnly(Endpoint e, const std::string& key) {
  for (const DefaultOnly& d : kCommonDefaults) {
    if (key == d.name) return &d;
  }
  if (e == Endpoint::kChat) {
    for (const DefaultOnly& d : kChatDefaults) {
      if (key == d.name) return &d;
    }
  } else {
    for (const DefaultOnly& d : kCompletionDefaults) {
      if (key == d.name) return &d;
    }
  }
  return nullptr;
}

std::string TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

std::optional<ApiError> GetInt(const json& v, const std::string& name, int64_t lo, int64_t hi,
                               int64_t* out) {
  if (!v.is_number_integer() && !v.is_number_unsigned()) {
    return Invalid(name, absl::StrCat("'", name, "' must be an integer, not ", TypeName(v)));
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return Invalid(name, absl::StrCat("'", name, "' is out of range [", lo, ", ", hi, "]"));
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) {
    return Invalid(name,
                   absl::StrCat("'", name, "' is ", x, "; it must be in [", lo, ", ", hi, "]"));
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> GetNumber(const json& v, const std::string& name, double lo, double hi,
                                  bool lo_open, double* out) {
  if (!v.is_number()) {
    return Invalid(name, absl::StrCat("'", name, "' must be a number, not ", TypeName(v)));
  }
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || (lo_open && x == lo) || x > hi) {
    return Invalid(name, absl::StrCat("'", name, "' is ", x, "; it must be in ",
                                      lo_open ? "(" : "[", lo, ", ", hi, "]"));
  }
  *out = x;
  return std::nullopt;
}

std::optional<ApiError> GetString(const json& v, const std::string& name, std::string* out) {
  if (!v.is_string()) {
    return Invalid(name, absl::StrCat("'", name, "' must be a string, not ", TypeName(v)));
  }
  *out = v.get<std::string>();
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& v, v1::GenerateRequest* req) {
  if (!v.is_array() || v.empty()) {
    return Invalid("messages", "'messages' must be a non-empty array of messages");
  }
  auto* msgs = req->mutable_messages();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = absl::StrCat("messages[", i, "]");
    const json& m = v[i];
    if (!m.is_object()) return Invalid(at, absl::StrCat("'", at, "' must be an object"));
    std::string role;
    std::string content;
    for (const auto& [key, val] : m.items()) {
      const std::string field = absl::StrCat(at, ".", key);
      if (key == "role") {
        if (auto e = GetString(val, field, &role)) return e;
      } else if (key == "content") {
        if (val.is_string()) {
          content = val.get<std::string>();
        } else if (val.is_array()) {
          // Text parts, joined by newlines as vLLM joins them.
          std::vector<std::string> texts;
          for (size_t j = 0; j < val.size(); ++j) {
            const json& part = val[j];
            const std::string pat = absl::StrCat(field, "[", j, "]");
            if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
                !part.contains("text") || !part["text"].is_string()) {
              return Invalid(pat, absl::StrCat("'", pat,
                                               "': only text parts ({\"type\": \"text\", "
                                               "\"text\": ...}) are supported"));
            }
            texts.push_back(part["text"].get<std::string>());
          }
          content = absl::StrJoin(texts, "\n");
        } else {
          return Invalid(field, absl::StrCat("'", field,
                                             "' must be a string or an array of text "
                                             "parts, not ",
                                             TypeName(val)));
        }
      } else if (key == "name" && val.is_null()) {
      } else if (key == "refusal" && val.is_null()) {
      } else if (key == "tool_calls" && IsEmpty(val)) {
      } else {
        ApiError e = Unsupported(field, "");
        if (key == "name") e.message += " (the chat template has no participant names)";
        if (key == "tool_calls" || key == "tool_call_id") e.message += " (no tool calling)";
        return e;
      }
    }
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant") {
      return Invalid(at + ".role", role.empty()
                                       ? absl::StrCat("'", at, ".role' is required")
                                       : absl::StrCat("'", at, ".role' is '", role,
                                                      "'; supported: system, developer, user, "
                                                      "assistant"));
    }
    if (!m.contains("content") || m["content"].is_null()) {
      return Invalid(at + ".content", absl::StrCat("'", at, ".content' is required"));
    }
    auto* cm = msgs->add_messages();
    cm->set_role(role);
    cm->set_content(content);
  }
  return std::nullopt;
}

std::optional<ApiError> ParsePrompt(const json& v, v1::GenerateRequest* req) {
  const json* p = &v;
  if (v.is_array() && !v.empty() && (v[0].is_string() || v[0].is_array())) {
    if (v.size() != 1) {
      return Invalid("prompt", absl::StrCat("'prompt' holds ", v.size(),
                                            " prompts; this server takes one per request"));
    }
    p = &v[0];
  }
  if (p->is_string()) {
    req->set_text(p->get<std::string>());
    return std::nullopt;
  }
  if (p->is_array() && !p->empty()) {
    auto* ids = req->mutable_token_ids();
    for (const json& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
        return Invalid("prompt", "'prompt' as token ids must hold non-negative integers");
      }
      ids->add_ids(static_cast<int32_t>(t.get<int64_t>()));
    }
    return std::nullopt;
  }
  return Invalid("prompt",
                 "'prompt' must be a string, an array of token ids, or an array "
                 "holding one of them");
}

std::optional<ApiError> ParseStop(const json& v, v1::GenerateRequest* req) {
  if (v.is_string()) {
    req->add_stop(v.get<std::string>());
    return std::nullopt;
  }
  if (!v.is_array()) return Invalid("stop", "'stop' must be a string or an array of strings");
  for (const json& s : v) {
    if (!s.is_string()) return Invalid("stop", "'stop' must be a string or an array of strings");
    req->add_stop(s.get<std::string>());
  }
  return std::nullopt;
}

std::optional<ApiError> ParseSpeculation(const json& v, v1::SpeculationOverride* o) {
  if (!v.is_object()) return Invalid("speculation", "'speculation' must be an object");
  for (const auto& [key, val] : v.items()) {
    const std::string field = "speculation." + key;
    if (key == "mode") {
      std::string m;
      if (auto e = GetString(val, field, &m)) return e;
      if (m == "auto") {
        o->set_mode(v1::SpeculationOverride::AUTO);
      } else if (m == "chain") {
        o->set_mode(v1::SpeculationOverride::CHAIN);
      } else if (m == "static") {
        o->set_mode(v1::SpeculationOverride::STATIC);
      } else if (m == "dynamic") {
        o->set_mode(v1::SpeculationOverride::DYNAMIC);
      } else if (m == "off") {
        o->set_mode(v1::SpeculationOverride::OFF);
      } else {
        return Invalid(field, absl::StrCat("'", field, "' is '", m,
                                           "'; one of auto, chain, static, dynamic, off"));
      }
    } else if (key == "depth" || key == "top_k" || key == "total_tokens") {
      int64_t x = 0;
      if (auto e = GetInt(val, field, 1, 256, &x)) return e;
      if (key == "depth") o->set_depth(static_cast<int32_t>(x));
      if (key == "top_k") o->set_top_k(static_cast<int32_t>(x));
      if (key == "total_tokens") o->set_total_tokens(static_cast<int32_t>(x));
    } else if (key == "tree_choices") {
      if (val.is_string()) {
        o->set_tree_choices(val.get<std::string>());
      } else if (val.is_array()) {
        // Paths of child indices, [[0], [1], [0, 0], ...]; the shape is checked before it is
        // serialized (a deeply nested value would exhaust the serializer's recursion).
        for (const json& path : val) {
          if (!path.is_array()) {
            return Invalid(field, absl::StrCat("'", field, "' must be an array of paths"));
          }
          for (const json& i : path) {
            if (!i.is_number_integer()) {
              return Invalid(field, absl::StrCat("'", field, "': a path holds integers"));
            }
          }
        }
        o->set_tree_choices(val.dump());
      } else {
        return Invalid(field, absl::StrCat("'", field, "' must be an array of paths"));
      }
    } else {
      return Invalid(field, absl::StrCat("unknown field '", field,
                                         "'; speculation takes mode, depth, top_k, "
                                         "total_tokens, tree_choices"));
    }
  }
  return std::nullopt;
}

// The OpenAI name of the field a generation-path message names ("max_tokens: ...").
std::string ParamOf(absl::string_view message, Endpoint endpoint) {
  const std::string prompt = endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (absl::StartsWith(message, "text:") || absl::StartsWith(message, "token_ids:") ||
      absl::StartsWith(message, "prompt has") || absl::StartsWith(message, "prompt (")) {
    return prompt;
  }
  if (absl::StartsWith(message, "messages:")) return "messages";
  if (absl::StartsWith(message, "max_tokens")) return "max_tokens";
  if (absl::StartsWith(message, "stop:")) return "stop";
  for (const char* s : {"temperature", "top_k", "top_p"}) {
    if (absl::StartsWith(message, absl::StrCat("sampling: ", s))) return s;
  }
  if (absl::StartsWith(message, "speculation")) {
    const size_t colon = message.find(':');
    return std::string(message.substr(0, colon));
  }
  return "";
}

}  // namespace

json ErrorBody(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return json{{"error", err}};
}

ApiError FromStatus(const absl::Status& s, Endpoint endpoint) {
  ApiError e;
  e.message = std::string(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      e.http_status = 400;
      e.param = ParamOf(s.message(), endpoint);
      // The generation path names fields as the gRPC API does; say them as OpenAI does.
      for (absl::string_view proto : {"text:", "token_ids:"}) {
        if (absl::StartsWith(e.message, proto)) {
          e.message = absl::StrCat("prompt:", e.message.substr(proto.size()));
        }
      }
      if (absl::StartsWith(e.message, "sampling: ")) e.message = e.message.substr(10);
      if (s.code() == absl::StatusCode::kOutOfRange ||
          absl::StartsWith(s.message(), "prompt has")) {
        e.code = "context_length_exceeded";
      }
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable_error";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "cancelled";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

std::optional<ApiError> ParseRequest(Endpoint endpoint, std::string_view body,
                                     const std::string& served_model, uint64_t fresh_seed,
                                     ApiRequest* out) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    return Invalid("", absl::StrCat("the body is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return Invalid("", "the body must be a JSON object");
  ApiRequest r;
  v1::GenerateRequest& req = r.request;
  const char* input = endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (!j.contains(input)) {
    return Invalid(input, absl::StrCat("'", input, "' is required"));
  }
  if (!j.contains("model") || !j["model"].is_string()) {
    return Invalid("model", "'model' is required (a string)");
  }
  bool seeded = false;
  bool have_max_tokens = false;
  int64_t max_tokens = 0;
  double temperature = 1.0;
  for (const auto& [key, v] : j.items()) {
    if (!Supported(endpoint).contains(key)) {
      if (const DefaultOnly* d = FindDefaultOnly(endpoint, key)) {
        if (v.is_null() || d->ok(v)) continue;
        return Unsupported(key, d->why);
      }
      ApiError e = Invalid(key, absl::StrCat("Unrecognized request argument supplied: ", key));
      e.code = "unknown_parameter";
      return e;
    }
    if (v.is_null()) continue;  // an explicit null is the default
    if (key == "model") {
      r.model = v.get<std::string>();
    } else if (key == "messages") {
      if (auto e = ParseMessages(v, &req)) return e;
    } else if (key == "prompt") {
      if (auto e = ParsePrompt(v, &req)) return e;
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
      int64_t x = 0;
      if (auto e = GetInt(v, key, 1, INT32_MAX, &x)) return e;
      if (have_max_tokens && x != max_tokens) {
        return Invalid(key, "'max_tokens' and 'max_completion_tokens' differ; give one");
      }
      have_max_tokens = true;
      max_tokens = x;
    } else if (key == "temperature") {
      if (auto e = GetNumber(v, key, 0, 100, false, &temperature)) return e;
    } else if (key == "top_p") {
      double x = 1;
      if (auto e = GetNumber(v, key, 0, 1, true, &x)) return e;
      req.mutable_sampling()->set_top_p(static_cast<float>(x));
    } else if (key == "top_k") {
      int64_t x = 0;
      if (auto e = GetInt(v, key, -1, INT32_MAX, &x)) return e;
      req.mutable_sampling()->set_top_k(x < 0 ? 0 : static_cast<int32_t>(x));
    } else if (key == "seed") {
      int64_t x = 0;
      if (auto e = GetInt(v, key, INT64_MIN, INT64_MAX, &x)) return e;
      req.mutable_sampling()->set_seed(static_cast<uint64_t>(x));
      seeded = true;
    } else if (key == "stop") {
      if (auto e = ParseStop(v, &req)) return e;
    } else if (key == "n") {
      int64_t x = 0;
      if (auto e = GetInt(v, key, 1, INT32_MAX, &x)) return e;
      if (x != 1) {
        ApiError e = Unsupported("n", " above 1 (one choice per request)");
        return e;
      }
    } else if (key == "user") {
      if (auto e = GetString(v, key, &r.user)) return e;
    } else if (key == "stream") {
      if (!v.is_boolean()) return Invalid(key, "'stream' must be a boolean");
      r.stream = v.get<bool>();
    } else if (key == "speculation") {
      if (auto e = ParseSpeculation(v, req.mutable_speculation())) return e;
    }
  }
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& so = j["stream_options"];
    if (!r.stream) {
      return Invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
    }
    if (!so.is_object()) return Invalid("stream_options", "'stream_options' must be an object");
    for (const auto& [key, v] : so.items()) {
      if (key == "include_usage") {
        if (!v.is_boolean()) {
          return Invalid("stream_options.include_usage",
                         "'stream_options.include_usage' must be a boolean");
        }
        r.include_usage = v.get<bool>();
      } else if (!v.is_null()) {
        return Unsupported("stream_options." + key, "");
      }
    }
  }
  if (r.model != served_model) {
    ApiError e;
    e.http_status = 404;
    e.param = "model";
    e.code = "model_not_found";
    e.message = absl::StrCat("The model '", r.model, "' does not exist; this server serves '",
                             served_model, "'");
    return e;
  }
  req.mutable_sampling()->set_temperature(static_cast<float>(temperature));
  if (!seeded) req.mutable_sampling()->set_seed(fresh_seed);
  if (have_max_tokens) req.set_max_tokens(static_cast<int32_t>(max_tokens));
  *out = std::move(r);
  return std::nullopt;
}

const char* FinishReason(eagle::FinishReason r) {
  return r == eagle::FinishReason::kLength ? "length" : "stop";
}

namespace {

json Speculation(const Completion& c) {
  json by_depth = json::array();
  for (int64_t n : c.stats.accepted_at_depth) {
    by_depth.push_back(c.stats.steps > 0 ? static_cast<double>(n) / c.stats.steps : 0.0);
  }
  return json{{"steps", c.stats.steps},
              {"tau", c.stats.tau()},
              {"acceptance_by_depth", by_depth},
              {"draft_seconds", c.stats.draft_seconds},
              {"verify_seconds", c.stats.verify_seconds},
              {"network_seconds", c.stats.network_seconds}};
}

json Usage(const Completion& c) {
  const int64_t completion = static_cast<int64_t>(c.result.token_ids.size());
  return json{{"prompt_tokens", c.result.prompt_tokens},
              {"completion_tokens", completion},
              {"total_tokens", c.result.prompt_tokens + completion}};
}

}  // namespace

json CompletionBody(Endpoint endpoint, const ResponseMeta& meta, const Completion& c) {
  json choice = {{"index", 0}, {"finish_reason", FinishReason(c.result.finish)}};
  choice["logprobs"] = nullptr;
  if (endpoint == Endpoint::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", c.result.text}};
  } else {
    choice["text"] = c.result.text;
  }
  return json{{"id", meta.id},
              {"object", endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array({choice})},
              {"usage", Usage(c)},
              {"speculation", Speculation(c)}};
}

json ChunkBody(Endpoint endpoint, const ResponseMeta& meta, const std::string& text, bool first,
               const Completion* last) {
  json choice = {{"index", 0}};
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = last != nullptr ? json(FinishReason(last->result.finish)) : json();
  if (endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && last == nullptr)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  json chunk = {
      {"id", meta.id},
      {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
      {"created", meta.created},
      {"model", meta.model},
      {"choices", json::array({choice})}};
  if (last != nullptr) chunk["speculation"] = Speculation(*last);
  return chunk;
}

json UsageChunk(Endpoint endpoint, const ResponseMeta& meta, const Completion& c) {
  return json{{"id", meta.id},
              {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"choices", json::array()},
              {"usage", Usage(c)}};
}

}  // namespace eagle::drafter::openai
