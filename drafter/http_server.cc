#include "drafter/http_server.h"

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/rpc/convert.h"
#include "common/thread_name.h"
#include "drafter/openai_api.h"

namespace eagle::drafter {

using nlohmann::json;
using openai::ApiError;
using openai::Endpoint;

namespace {

// JSON text for the wire. Text from the model (a stream stopped inside a UTF-8 sequence, a byte
// token) or from the client (a URL-decoded path) need not be valid UTF-8: invalid bytes become
// U+FFFD instead of an exception.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

class HttpFrontDoor::Impl {
 public:
  Impl(const HttpOptions& o, Generations* g, prometheus::Registry& r)
      : options_(o),
        generations_(g),
        started_(std::time(nullptr)),
        requests_(prometheus::BuildCounter()
                      .Name("eagle_drafter_http_requests_total")
                      .Help("HTTP requests by route and status code")
                      .Register(r)),
        first_token_(prometheus::BuildHistogram()
                         .Name("eagle_drafter_http_time_to_first_token_seconds")
                         .Help("Streaming HTTP requests: request received to first text event")
                         .Register(r)
                         .Add({}, prometheus::Histogram::BucketBoundaries{
                                      0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5})) {}

  void Install(httplib::Server& s) {
    s.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& a) {
      Complete(Endpoint::kChat, "/v1/chat/completions", q, a);
    });
    s.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& a) {
      Complete(Endpoint::kCompletions, "/v1/completions", q, a);
    });
    s.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& a) {
      if (!Authorized(q, a, "/v1/models")) return;
      Reply(a, "/v1/models", 200, json{{"object", "list"}, {"data", json::array({Model()})}});
    });
    s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& q, httplib::Response& a) {
      if (!Authorized(q, a, "/v1/models/{id}")) return;
      if (q.matches[1] != options_.served_model) {
        ApiError e;
        e.http_status = 404;
        e.param = "model";
        e.code = "model_not_found";
        e.message = absl::StrCat("The model '", q.matches[1].str(), "' does not exist");
        Fail(a, "/v1/models/{id}", e);
        return;
      }
      Reply(a, "/v1/models/{id}", 200, Model());
    });
    s.Get("/health", [this](const httplib::Request&, httplib::Response& a) {
      const bool serving = !generations_->draining();
      a.status = serving ? 200 : 503;
      a.set_content(serving ? "ok\n" : "draining\n", "text/plain");
      Count("/health", a.status);
    });
    // Every answer >= 400 without a body of ours (no route: 404; a body over the limit: 413;
    // a malformed request line: 400) gets an OpenAI-style body.
    s.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& q, httplib::Response& a) {
          if (!a.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          ApiError e;
          e.http_status = a.status;
          if (a.status == 404) {
            e.type = "not_found_error";
            e.message = absl::StrCat("no route for ", q.method, " ", q.path);
            Count("unrouted", 404);
          } else if (a.status == 413) {
            e.message = absl::StrCat("the body is larger than ", options_.max_body_bytes, " bytes");
            Count("oversized", 413);
          } else {
            e.message = absl::StrCat("HTTP ", a.status);
            Count("other", a.status);
          }
          a.set_content(Dump(openai::ErrorBody(e)), "application/json");
          return httplib::Server::HandlerResponse::Handled;
        }));
    s.set_exception_handler(
        [this](const httplib::Request& q, httplib::Response& a, std::exception_ptr ep) {
          std::string what = "unknown";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          LogEvent("error", "http_exception", {{"path", q.path}, {"error", what}});
          ApiError e;
          e.http_status = 500;
          e.type = "server_error";
          e.message = "internal error";
          Fail(a, "exception", e);
        });
  }

 private:
  json Model() const {
    return json{{"id", options_.served_model},
                {"object", "model"},
                {"created", started_},
                {"owned_by", "eagle"}};
  }

  void Count(const std::string& route, int status) {
    requests_.Add({{"route", route}, {"code", std::to_string(status)}}).Increment();
  }

  void Reply(httplib::Response& a, const std::string& route, int status, const json& body) {
    a.status = status;
    a.set_content(Dump(body), "application/json");
    Count(route, status);
  }

  void Fail(httplib::Response& a, const std::string& route, const ApiError& e) {
    Reply(a, route, e.http_status, openai::ErrorBody(e));
  }

  bool Authorized(const httplib::Request& q, httplib::Response& a, const std::string& route) {
    const bool has = q.has_header("Authorization");
    const std::string value = has ? q.get_header_value("Authorization") : "";
    absl::Status s = generations_->config().auth.CheckHeader(has ? &value : nullptr);
    if (s.ok()) return true;
    a.set_header("WWW-Authenticate", "Bearer");
    Fail(a, route, openai::FromStatus(s, Endpoint::kChat));
    return false;
  }

  // The client's X-Request-Id if it is 1-64 characters of [A-Za-z0-9._:-] (it travels as gRPC
  // metadata and into JSON), else a new one.
  static std::string RequestIdOf(const httplib::Request& q) {
    if (q.has_header("X-Request-Id")) {
      std::string id = q.get_header_value("X-Request-Id");
      const bool plain = std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == ':' || c == '-';
      });
      if (!id.empty() && id.size() <= 64 && plain) return id;
    }
    return rpc::NewRequestId();
  }

  static uint64_t FreshSeed() {
    static thread_local std::mt19937_64 rng(std::random_device{}());
    return rng();
  }

  void Complete(Endpoint ep, const std::string& route, const httplib::Request& q,
                httplib::Response& a) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string rid = RequestIdOf(q);
    a.set_header("X-Request-Id", rid);
    generations_->metrics()->Started();
    if (!Authorized(q, a, route)) {
      generations_->metrics()->Request(absl::StatusCode::kUnauthenticated);
      return;
    }
    openai::ApiRequest api;
    if (auto e = openai::ParseRequest(ep, q.body, options_.served_model, FreshSeed(), &api)) {
      generations_->metrics()->Request(e->http_status == 404 ? absl::StatusCode::kNotFound
                                                             : absl::StatusCode::kInvalidArgument);
      LogEvent("info", "http_refused",
               {{"request_id", rid}, {"route", route}, {"param", e->param}, {"error", e->message}});
      Fail(a, route, *e);
      return;
    }
    auto refuse = [&](const absl::Status& s) {
      generations_->metrics()->Request(s.code());
      Fail(a, route, openai::FromStatus(s, ep));
    };
    auto slot = generations_->Admit();
    if (!slot.ok()) return refuse(slot.status());
    auto prepared = generations_->Prepare(api.request);
    if (!prepared.ok()) return refuse(prepared.status());
    openai::ResponseMeta meta;
    meta.id = absl::StrCat(ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-", rid);
    meta.created = std::time(nullptr);
    meta.model = options_.served_model;
    LogEvent("info", "http_request",
             {{"request_id", rid}, {"route", route}, {"stream", api.stream}, {"user", api.user}});
    if (!api.stream) {
      GenerationSink sink;
      sink.request_id = rid;
      sink.on_token = [](int32_t, const std::string&) { return true; };  // the body comes last
      auto c = generations_->Run(*prepared, sink);
      generations_->metrics()->Request(c.status().code());
      if (!c.ok()) {
        Fail(a, route, openai::FromStatus(c.status(), ep));
        return;
      }
      Reply(a, route, 200, openai::CompletionBody(ep, meta, *c));
      return;
    }
    // Streaming: the generation runs inside the content provider, on this connection's thread,
    // once the headers are out; the slot and the prepared request travel with it.
    auto st = std::make_shared<StreamState>();
    st->slot = std::move(*slot);
    st->prepared = std::move(*prepared);
    st->metrics = generations_->metrics();
    a.set_header("Cache-Control", "no-cache");
    Count(route, 200);
    const bool include_usage = api.include_usage;
    a.set_chunked_content_provider("text/event-stream", [this, st, ep, meta, rid, include_usage,
                                                         t0](size_t, httplib::DataSink& out) {
      // httplib runs a content provider outside its handler's exception guard: an exception
      // here would end the process, so it ends only this stream.
      try {
        return Stream(*st, ep, meta, rid, include_usage, t0, out);
      } catch (const std::exception& e) {
        LogEvent("error", "http_stream_exception", {{"request_id", rid}, {"error", e.what()}});
        st->Count(absl::StatusCode::kInternal);
        return false;
      }
    });
  }

  // A streaming generation's state, owned by its content provider. Its outcome is counted once:
  // by Stream once the generation ran, by the provider's exception guard (internal), or here
  // (cancelled) when the generation never ran: the provider was never called (the client left
  // first) or the client left before the first chunk was written.
  struct StreamState {
    std::unique_ptr<Generations::Slot> slot;
    PreparedGeneration prepared;
    DrafterMetrics* metrics = nullptr;
    bool counted = false;
    void Count(absl::StatusCode code) {
      if (counted) return;
      counted = true;
      metrics->Request(code);
    }
    ~StreamState() {
      if (metrics != nullptr) Count(absl::StatusCode::kCancelled);
    }
  };

  // One streaming generation, written as server-sent events. False: the client went away (the
  // connection is dropped).
  bool Stream(StreamState& st, Endpoint ep, const openai::ResponseMeta& meta,
              const std::string& rid, bool include_usage, std::chrono::steady_clock::time_point t0,
              httplib::DataSink& out) {
    auto event = [&](const std::string& data) {
      const std::string e = absl::StrCat("data: ", data, "\n\n");
      return out.write(e.data(), e.size());
    };
    bool first = true;
    if (ep == Endpoint::kChat) {
      // OpenAI's first chunk: the role, with empty content.
      if (!event(Dump(openai::ChunkBody(ep, meta, "", true, nullptr)))) return false;
      first = false;
    }
    bool timed = false;
    GenerationSink sink;
    sink.request_id = rid;
    sink.cancelled = [&out] { return !out.is_writable(); };
    sink.on_token = [&](int32_t, const std::string& text) {
      if (text.empty()) return true;
      if (!timed) {
        timed = true;
        first_token_.Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const bool ok = event(Dump(openai::ChunkBody(ep, meta, text, first, nullptr)));
      first = false;
      return ok;
    };
    auto c = generations_->Run(st.prepared, sink);
    st.Count(c.status().code());
    if (!c.ok()) {
      if (c.status().code() == absl::StatusCode::kCancelled && !generations_->stopping()) {
        return false;  // the client is gone
      }
      event(Dump(openai::ErrorBody(openai::FromStatus(c.status(), ep))));
    } else {
      event(Dump(openai::ChunkBody(ep, meta, "", first, &*c)));
      if (include_usage) event(Dump(openai::UsageChunk(ep, meta, *c)));
    }
    event("[DONE]");
    out.done();
    st.slot.reset();
    return true;
  }

  HttpOptions options_;
  Generations* generations_;
  int64_t started_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& first_token_;
};

absl::StatusOr<std::unique_ptr<HttpFrontDoor>> HttpFrontDoor::Start(
    const HttpOptions& o, Generations* generations, prometheus::Registry& registry) {
  const size_t colon = o.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(o.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http: '", o.listen, "' is not HOST:PORT (port 0 = any)"));
  }
  std::string host = o.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<HttpFrontDoor> d(new HttpFrontDoor());
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--http with TLS needs both --tls_cert and --tls_key");
  }
  if (!o.tls_cert.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(
        o.tls_cert.c_str(), o.tls_key.c_str(),
        o.tls_client_ca.empty() ? nullptr : o.tls_client_ca.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(
          "--http: the TLS certificate, key or client CA could not be loaded");
    }
    d->server_ = std::move(ssl);
  } else {
    d->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *d->server_;
  const int threads = std::max(1, o.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(o.max_body_bytes);
  s.set_tcp_nodelay(true);
  d->impl_ = std::make_unique<Impl>(o, generations, registry);
  d->impl_->Install(s);
  if (port == 0) {
    port = s.bind_to_any_port(host);
  } else if (!s.bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("--http: cannot listen on ", o.listen));
  }
  d->port_ = port;
  d->thread_ = std::thread([srv = d->server_.get()] {
    NameThisThread("eagle-http");
    srv->listen_after_bind();
  });
  // stop() only acts once the server runs: wait for it, so that Stop() never joins a thread
  // that has yet to start listening.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!s.is_running() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!s.is_running()) {
    d->thread_.detach();
    d->server_.release();  // its thread may still use it; the process is exiting
    return absl::UnavailableError(
        absl::StrCat("--http: the server on ", o.listen, " did not start"));
  }
  return d;
}

void HttpFrontDoor::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpFrontDoor::~HttpFrontDoor() { Stop(); }

}  // namespace eagle::drafter
