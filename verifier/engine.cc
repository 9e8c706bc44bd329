#include "verifier/engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/eagle/verify_step.h"
#include "common/generate.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "common/timing.h"

namespace eagle::verifier {
namespace {

template <typename T>
std::future<absl::StatusOr<T>> Ready(absl::Status s) {
  std::promise<absl::StatusOr<T>> p;
  p.set_value(std::move(s));
  return p.get_future();
}

}  // namespace

struct Engine::Session {
  uint64_t id = 0;
  std::string request_id;
  std::unique_ptr<KvCache> cache;
  Sampler sampler;
  SamplingParams sampling;
  bool want_features = true;
  std::vector<int> feature_layers;
  int64_t bytes = 0;
  // Protocol state, guarded by Engine::mu_.
  bool busy = false;  // a request is queued or running
  bool closed = false;
  bool released = false;  // its KV bytes returned to the budget (cache freed)
  Clock::time_point last_active = Clock::now();
  int64_t next_step = 0;
  int32_t root = -1;  // the token the next tree must start with

  explicit Session(const SamplingParams& p) : sampler(p), sampling(p) {}
};

struct Engine::Work {
  std::shared_ptr<Session> session;
  bool open = false;
  std::vector<int32_t> prompt;  // open only; a verify's tokens are tree.tokens
  // Chunked prefill: prompt tokens already forwarded, their features, and this pass's chunk.
  int64_t done = 0;
  int64_t chunk = 0;
  std::vector<float> features;
  DraftTree tree;
  std::promise<absl::StatusOr<OpenResult>> open_done;
  std::promise<absl::StatusOr<VerifyOutput>> verify_done;

  // The tokens this work forwards.
  const std::vector<int32_t>& tokens() const { return open ? prompt : tree.tokens; }

  void Fail(const absl::Status& s) {
    if (open) {
      open_done.set_value(s);
    } else {
      verify_done.set_value(s);
    }
  }
};

Engine::Engine(const LlamaModel* model, const EngineOptions& options, EngineHooks hooks)
    : model_(model), options_(options), hooks_(std::move(hooks)) {
  thread_ = std::thread([this] {
    NameThisThread("eagle-engine");
    Loop();
  });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& w : queue_) w->Fail(absl::CancelledError("the verifier is shutting down"));
}

void Engine::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool Engine::draining() const {
  std::lock_guard<std::mutex> lock(mu_);
  return draining_;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s;
  s.active_sessions = static_cast<int>(sessions_.size());
  s.kv_bytes = kv_bytes_;
  s.kv_bytes_released = kv_bytes_released_;
  s.queue_depth = static_cast<int>(queue_.size());
  return s;
}

std::future<absl::StatusOr<OpenResult>> Engine::Open(OpenParams p, uint64_t* session_id) {
  const LlamaConfig& cfg = model_->config();
  const int max_prompt = options_.max_prompt_tokens > 0
                             ? std::min(options_.max_prompt_tokens, cfg.max_position - 1)
                             : cfg.max_position - 1;
  if (p.prompt.empty()) return Ready<OpenResult>(absl::InvalidArgumentError("empty prompt"));
  if (static_cast<int64_t>(p.prompt.size()) > max_prompt) {
    return Ready<OpenResult>(absl::InvalidArgumentError(
        absl::StrCat("prompt has ", p.prompt.size(), " tokens; at most ", max_prompt)));
  }
  for (size_t i = 0; i < p.prompt.size(); ++i) {
    if (p.prompt[i] < 0 || p.prompt[i] >= cfg.vocab_size) {
      return Ready<OpenResult>(
          absl::InvalidArgumentError(absl::StrCat("prompt token id ", p.prompt[i], " at index ", i,
                                                  " is outside [0, ", cfg.vocab_size, ")")));
    }
  }
  if (p.max_tokens < 1) {
    return Ready<OpenResult>(absl::InvalidArgumentError("max_tokens must be at least 1"));
  }
  GenerateOptions go;
  go.max_tokens = p.max_tokens;
  go.sampling = p.sampling;
  if (absl::Status s = ValidateGenerateRequest(cfg, p.prompt, go); !s.ok()) {
    return Ready<OpenResult>(absl::InvalidArgumentError(s.message()));
  }
  if (p.feature_layers.size() > 8) {
    return Ready<OpenResult>(absl::InvalidArgumentError("at most 8 feature layers"));
  }
  for (int l : p.feature_layers) {
    if (l < 0 || l >= cfg.num_layers) {
      return Ready<OpenResult>(absl::InvalidArgumentError(
          absl::StrCat("feature layer ", l, " is outside [0, ", cfg.num_layers, ")")));
    }
  }
  const int64_t capacity =
      static_cast<int64_t>(p.prompt.size()) + p.max_tokens + options_.max_tree_nodes + 1;
  const int64_t bytes =
      2 * static_cast<int64_t>(cfg.num_layers) * capacity * cfg.kv_dim() * sizeof(float);
  auto s = std::make_shared<Session>(p.sampling);
  s->request_id = p.request_id;
  s->want_features = p.want_features;
  s->feature_layers = p.feature_layers;
  s->bytes = bytes;
  auto wp = std::make_unique<Work>();
  Work& w = *wp;
  w.open = true;
  w.prompt = std::move(p.prompt);
  auto fut = w.open_done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stop_) {
      return Ready<OpenResult>(absl::UnavailableError("the verifier is draining"));
    }
    if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
      return Ready<OpenResult>(absl::ResourceExhaustedError(
          absl::StrCat("session limit reached (", options_.max_sessions, " open)")));
    }
    if (kv_bytes_ + bytes > options_.kv_budget_bytes) {
      return Ready<OpenResult>(absl::ResourceExhaustedError(
          absl::StrCat("KV budget exhausted: this session needs ", bytes >> 20, " MiB, ",
                       (options_.kv_budget_bytes - kv_bytes_) >> 20, " MiB of ",
                       options_.kv_budget_bytes >> 20, " MiB free")));
    }
    s->id = next_id_++;
    if (session_id != nullptr) *session_id = s->id;
    s->busy = true;
    kv_bytes_ += bytes;
    sessions_[s->id] = s;
    w.session = s;
    queue_.push_back(std::move(wp));
  }
  cv_.notify_one();
  return fut;
}

std::future<absl::StatusOr<VerifyOutput>> Engine::Verify(uint64_t id, int64_t step,
                                                         DraftTree tree) {
  const LlamaConfig& cfg = model_->config();
  if (absl::Status st = tree.Validate(cfg.vocab_size, options_.max_tree_nodes); !st.ok()) {
    return Ready<VerifyOutput>(st);
  }
  auto wp = std::make_unique<Work>();
  Work& w = *wp;
  w.tree = std::move(tree);
  auto fut = w.verify_done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      return Ready<VerifyOutput>(
          absl::NotFoundError(absl::StrCat("unknown or closed session ", id)));
    }
    Session& s = *it->second;
    if (s.busy) {
      return Ready<VerifyOutput>(absl::FailedPreconditionError(
          "a request of this session is still in flight (one at a time)"));
    }
    if (step != s.next_step) {
      return Ready<VerifyOutput>(absl::FailedPreconditionError(
          absl::StrCat("step ", step, " out of order: expected step ", s.next_step)));
    }
    if (w.tree.tokens[0] != s.root) {
      return Ready<VerifyOutput>(absl::InvalidArgumentError(
          absl::StrCat("tree root is token ", w.tree.tokens[0], "; it must be token ", s.root,
                       " (the next token of the previous result)")));
    }
    ForwardRequest req;
    req.tokens = w.tree.tokens;
    req.parents = w.tree.parents;
    if (absl::Status st = model_->CheckRequest(*s.cache, req); !st.ok()) {
      if (st.code() == absl::StatusCode::kResourceExhausted) {
        return Ready<VerifyOutput>(absl::OutOfRangeError(absl::StrCat(
            "the session's reserved length is used up (max_tokens reached): ", st.message())));
      }
      return Ready<VerifyOutput>(st);
    }
    s.busy = true;
    s.last_active = Clock::now();
    w.session = it->second;
    queue_.push_back(std::move(wp));
  }
  cv_.notify_one();
  return fut;
}

void Engine::ReleaseLocked(Session& s) {
  if (s.released) return;
  s.released = true;
  kv_bytes_ -= s.bytes;
  kv_bytes_released_ += s.bytes;
  s.cache.reset();
}

void Engine::DoneLocked(Session& s) {
  s.busy = false;
  s.last_active = Clock::now();
  if (s.closed) ReleaseLocked(s);
}

void Engine::Close(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.closed = true;
  // A session with work queued or running gives its KV back when the engine drops that work.
  if (!s.busy) ReleaseLocked(s);
  sessions_.erase(it);
}

std::vector<uint64_t> Engine::IdleSessions(double seconds) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  const auto now = Clock::now();
  for (const auto& [id, s] : sessions_) {
    if (!s->busy && std::chrono::duration<double>(now - s->last_active).count() > seconds) {
      out.push_back(id);
    }
  }
  return out;
}

void Engine::Loop() {
  while (true) {
    std::vector<std::unique_ptr<Work>> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Nothing queued: the pool's workers park now rather than spin on cores that the gRPC
      // threads about to send the results (and a drafter beside us) need.
      if (queue_.empty() && model_->pool() != nullptr) model_->pool()->Rest();
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      // Up to max_batch_tokens per pass, in arrival order. A long prompt is prefilled in chunks
      // (chunked prefill) that share passes with other sessions' steps, so that it never stalls
      // them for the whole prefill.
      int64_t budget = std::max(1, options_.max_batch_tokens);
      while (!queue_.empty() && budget > 0) {
        Work& w = *queue_.front();
        const int64_t left = static_cast<int64_t>(w.tokens().size()) - w.done;
        if (!w.open && left > budget && !batch.empty()) break;
        w.chunk = w.open ? std::min(left, budget) : left;
        budget -= w.chunk;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunBatch(batch);
    // Prefills with tokens left go to the back of the queue.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : batch) {
      if (w != nullptr) queue_.push_back(std::move(w));
    }
  }
}

void Engine::SetForwardCost(CostCurve curve) {
  std::lock_guard<std::mutex> lock(cost_mu_);
  forward_cost_ = std::move(curve);
}

CostCurve Engine::forward_cost() const {
  std::lock_guard<std::mutex> lock(cost_mu_);
  return forward_cost_;
}

void Engine::RunBatch(std::vector<std::unique_ptr<Work>>& batch) {
  // Finished work is reset to null in `batch`; what remains (prefills with tokens left) is
  // queued again by the caller.
  const std::vector<Work*> live = DropClosed(batch);
  if (live.empty()) return;
  std::vector<KvCache*> caches;
  std::vector<ForwardRequest> reqs;
  std::vector<int64_t> bases;
  int tokens = 0;
  for (Work* w : live) {
    caches.push_back(w->session->cache.get() != nullptr ? w->session->cache.get()
                                                        : NewSessionCache(*w->session));
    bases.push_back(caches.back()->length());
    reqs.push_back(RequestFor(*w));
    tokens += static_cast<int>(reqs.back().tokens.size());
  }
  const auto t0 = Clock::now();
  auto results = model_->ForwardBatch(caches, reqs);
  const double seconds = SecondsSince(t0);
  if (hooks_.on_batch) hooks_.on_batch(static_cast<int>(live.size()), tokens, seconds);
  if (results.ok() && std::none_of(live.begin(), live.end(), [](Work* w) { return w->open; })) {
    std::lock_guard<std::mutex> lock(cost_mu_);
    forward_cost_.Observe(tokens, seconds);
  }
  auto finished = [&](Work* w) {
    for (auto& b : batch) {
      if (b.get() == w) b.reset();
    }
  };
  for (size_t i = 0; i < live.size(); ++i) {
    Work& w = *live[i];
    absl::Status failed = results.status();
    if (results.ok()) {
      ForwardResult& fr = (*results)[i];
      if (w.open) {
        if (!FinishOpenChunk(w, fr)) continue;  // more chunks to come
        finished(&w);
        continue;
      }
      failed = FinishVerify(w, fr, bases[i], seconds, static_cast<int>(live.size()), tokens);
      if (failed.ok()) {
        finished(&w);
        continue;
      }
    }
    // The session's cache is in an unknown state: it is closed.
    Close(w.session->id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      DoneLocked(*w.session);
    }
    // A broken tensor-parallel group (a rank died or hung) is the service's failure, not the
    // session's: UNAVAILABLE, which a drafter retries on the restarted verifier.
    const bool group = absl::IsUnavailable(failed) || absl::IsDeadlineExceeded(failed);
    const std::string text = absl::StrCat("forward pass failed: ", failed.message());
    w.Fail(group ? absl::UnavailableError(text) : absl::InternalError(text));
    finished(&w);
  }
}

std::vector<Engine::Work*> Engine::DropClosed(std::vector<std::unique_ptr<Work>>& batch) {
  std::vector<Work*> live;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& w : batch) {
    if (w->session->closed) {
      DoneLocked(*w->session);
      w->Fail(absl::CancelledError("session closed"));
      w.reset();
    } else {
      live.push_back(w.get());
    }
  }
  return live;
}

KvCache* Engine::NewSessionCache(Session& s) {
  const LlamaConfig& cfg = model_->config();
  s.cache = model_->NewCache(
      s.bytes / (2 * static_cast<int64_t>(cfg.num_layers) * cfg.kv_dim() * sizeof(float)));
  return s.cache.get();
}

ForwardRequest Engine::RequestFor(const Work& w) {
  const Session& s = *w.session;
  ForwardRequest r;
  r.tokens = std::span<const int32_t>(w.tokens()).subspan(w.done, w.chunk);
  if (!w.open) r.parents = w.tree.parents;
  const bool last_chunk = w.open && w.done + w.chunk == static_cast<int64_t>(w.tokens().size());
  r.logits = !w.open ? LogitsMode::kAll : last_chunk ? LogitsMode::kLast : LogitsMode::kNone;
  r.argmax_only = s.sampling.greedy();
  if (s.want_features) r.WantFeatures(s.feature_layers);
  return r;
}

bool Engine::FinishOpenChunk(Work& w, ForwardResult& fr) {
  Session& s = *w.session;
  std::vector<float>& feats = fr.FeaturesFor(s.feature_layers);
  w.features.insert(w.features.end(), feats.begin(), feats.end());
  w.done += w.chunk;
  if (w.done < static_cast<int64_t>(w.tokens().size())) return false;
  OpenResult o;
  o.session_id = s.id;
  o.first_token = s.sampling.greedy()
                      ? fr.argmax[0]
                      : s.sampler.Sample(fr.logits.data(), model_->config().vocab_size);
  o.prompt_tokens = static_cast<int>(w.tokens().size());
  o.feature_width = s.want_features ? static_cast<int64_t>(feats.size()) / fr.num_tokens : 0;
  o.features = std::move(w.features);
  o.forward_cost = forward_cost();
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.root = o.first_token;
    DoneLocked(s);
  }
  w.open_done.set_value(std::move(o));
  return true;
}

absl::Status Engine::FinishVerify(Work& w, ForwardResult& fr, int64_t base, double seconds,
                                  int batch_sequences, int pass_rows) {
  Session& s = *w.session;
  std::vector<float>& feats = fr.FeaturesFor(s.feature_layers);
  const int64_t width = s.want_features ? static_cast<int64_t>(feats.size()) / fr.num_tokens : 0;
  absl::StatusOr<VerifiedStep> step =
      s.sampling.greedy()
          ? VerifyTreeGreedy(w.tree, fr.argmax.data(), feats.data(), width, *s.cache, base)
          : VerifyTree(w.tree, fr.logits.data(), model_->config().vocab_size, feats.data(), width,
                       *s.cache, base, s.sampling, s.sampler.rng());
  if (!step.ok()) return step.status();
  VerifyOutput v;
  static_cast<VerifiedStep&>(v) = *std::move(step);
  v.seconds = seconds;
  v.batch_sequences = batch_sequences;
  v.pass_rows = pass_rows;
  if (hooks_.on_verify) hooks_.on_verify(static_cast<int>(v.accepted.size()), w.tree.size() - 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++s.next_step;
    s.root = v.next_token;
    DoneLocked(s);
  }
  w.verify_done.set_value(std::move(v));
  return absl::OkStatus();
}

}  // namespace eagle::verifier
