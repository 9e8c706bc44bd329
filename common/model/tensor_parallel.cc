// LlamaModel's leader and followers (llama_model.h, LeadFollowers): rank 0 broadcasts each pass;
// the other ranks repeat it on their copies of the caches.
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/model/llama_model.h"
#include "common/status_macros.h"

namespace eagle {
namespace {

enum Op : int64_t { kPass = 0, kHeartbeat = 1, kStop = 2 };

// A pass's description as int64 words.
class Writer {
 public:
  void Put(int64_t v) { words_.push_back(v); }
  template <typename T>
  void PutAll(std::span<const T> v) {
    Put(static_cast<int64_t>(v.size()));
    for (const T& x : v) Put(static_cast<int64_t>(x));
  }
  std::vector<int64_t>& words() { return words_; }

 private:
  std::vector<int64_t> words_;
};

class Reader {
 public:
  explicit Reader(std::span<const int64_t> w) : w_(w) {}
  absl::StatusOr<int64_t> Get() {
    if (i_ >= w_.size()) return absl::DataLossError("tensor-parallel pass: truncated header");
    return w_[i_++];
  }
  template <typename T>
  absl::Status GetAll(std::vector<T>* out, int64_t limit) {
    ASSIGN_OR_RETURN(const int64_t n, Get());
    if (n < 0 || n > limit || static_cast<size_t>(n) > w_.size() - i_) {
      return absl::DataLossError("tensor-parallel pass: bad length in header");
    }
    out->resize(n);
    for (int64_t j = 0; j < n; ++j) (*out)[j] = static_cast<T>(w_[i_++]);
    return absl::OkStatus();
  }

 private:
  std::span<const int64_t> w_;
  size_t i_ = 0;
};

absl::Status BroadcastWords(Communicator& comm, std::vector<int64_t>& words) {
  int64_t n = static_cast<int64_t>(words.size());
  RETURN_IF_ERROR(comm.Broadcast(&n, sizeof(n), 0));
  if (n < 0 || n > (int64_t{1} << 28)) {
    return absl::DataLossError(absl::StrCat("tensor-parallel pass of ", n, " words"));
  }
  words.resize(n);
  return comm.Broadcast(words.data(), n * static_cast<int64_t>(sizeof(int64_t)), 0);
}

}  // namespace

struct LlamaModel::Leader {
  std::atomic<uint64_t> next_id{1};
  std::mutex freed_mu;
  std::vector<uint64_t> freed;  // guarded by freed_mu
  std::function<void(const absl::Status&)> on_failure;
  std::atomic<bool> failed{false};
  std::chrono::milliseconds heartbeat{0};
  std::chrono::steady_clock::time_point last_broadcast;  // guarded by the model's pass_mu_
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop = false;  // guarded by stop_mu
  std::thread beat;

  void Fail(const absl::Status& s) {
    if (!failed.exchange(true) && on_failure) on_failure(s);
  }
};

void LlamaModel::GroupFailed(const absl::Status& s) const { leader_->Fail(s); }

void LlamaModel::ReplicateCache(KvCache& cache) const {
  std::weak_ptr<Leader> weak = leader_;
  cache.Replicate(leader_->next_id++, [weak](uint64_t id) {
    if (std::shared_ptr<Leader> l = weak.lock()) {
      std::lock_guard<std::mutex> lock(l->freed_mu);
      l->freed.push_back(id);
    }
  });
}

absl::Status LlamaModel::LeadFollowers(std::chrono::milliseconds heartbeat,
                                       std::function<void(const absl::Status&)> on_failure) {
  if (comm_ == nullptr || comm_->rank() != 0) {
    return absl::FailedPreconditionError("LeadFollowers: not rank 0 of a tensor-parallel group");
  }
  std::lock_guard<std::mutex> lock(pass_mu_);
  if (leader_ != nullptr) return absl::FailedPreconditionError("LeadFollowers: already leading");
  auto l = std::make_shared<Leader>();
  l->on_failure = std::move(on_failure);
  l->heartbeat = heartbeat;
  l->last_broadcast = std::chrono::steady_clock::now();
  leader_ = l;
  l->beat = std::thread([this, l] {
    std::unique_lock<std::mutex> stop_lock(l->stop_mu);
    while (!l->stop_cv.wait_for(stop_lock, l->heartbeat / 2, [&] { return l->stop; })) {
      stop_lock.unlock();
      {
        std::lock_guard<std::mutex> pass(pass_mu_);
        if (!l->failed &&
            std::chrono::steady_clock::now() - l->last_broadcast >= l->heartbeat / 2) {
          Writer w;
          w.Put(kHeartbeat);
          absl::Status s = BroadcastWords(*comm_, w.words());
          // A heartbeat ends with a barrier: a follower that died shows here, not only at the
          // next pass.
          if (s.ok()) s = comm_->Barrier();
          l->last_broadcast = std::chrono::steady_clock::now();
          if (!s.ok()) l->Fail(s);
        }
      }
      stop_lock.lock();
    }
  });
  return absl::OkStatus();
}

absl::Status LlamaModel::StopFollowers() {
  std::shared_ptr<Leader> l;
  {
    std::lock_guard<std::mutex> lock(pass_mu_);
    l = leader_;
  }
  if (l == nullptr) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> lock(l->stop_mu);
    l->stop = true;
  }
  l->stop_cv.notify_all();
  if (l->beat.joinable()) l->beat.join();
  std::lock_guard<std::mutex> lock(pass_mu_);
  leader_ = nullptr;
  stopped_following_ = true;
  if (l->failed) return absl::UnavailableError("the tensor-parallel group had already failed");
  Writer w;
  w.Put(kStop);
  return BroadcastWords(*comm_, w.words());
}

LlamaModel::~LlamaModel() {
  if (leader_ != nullptr) StopFollowers().IgnoreError();
}

absl::Status LlamaModel::BroadcastPass(std::span<KvCache* const> caches,
                                       std::span<const ForwardRequest> reqs) const {
  Leader& l = *leader_;
  if (l.failed) return absl::UnavailableError("the tensor-parallel group has failed");
  Writer w;
  w.Put(kPass);
  {
    std::lock_guard<std::mutex> lock(l.freed_mu);
    w.PutAll<uint64_t>(l.freed);
    l.freed.clear();
  }
  w.Put(static_cast<int64_t>(reqs.size()));
  for (size_t s = 0; s < reqs.size(); ++s) {
    KvCache& c = *caches[s];
    if (c.replica_id() == 0) {
      // Made before LeadFollowers: the followers have no copy of what it holds.
      if (c.length() > 0) {
        return absl::FailedPreconditionError(
            "a KV cache filled before LeadFollowers cannot be used by the tensor-parallel group");
      }
      ReplicateCache(c);
    }
    w.Put(static_cast<int64_t>(c.replica_id()));
    w.Put(c.capacity());
    const std::vector<KvCache::Move> moves = c.TakeMoves();
    w.Put(static_cast<int64_t>(moves.size()));
    for (const KvCache::Move& m : moves) {
      w.Put(m.length);
      w.Put(m.base);
      w.PutAll<int32_t>(m.path);
    }
    w.Put(c.length());
    const ForwardRequest& r = reqs[s];
    w.PutAll<int32_t>(r.tokens);
    w.PutAll<int32_t>(r.parents);
    w.Put(static_cast<int64_t>(r.logits));
    w.Put(r.argmax_only ? 1 : 0);
    w.Put(r.return_features ? 1 : 0);
    w.PutAll<int>(r.capture_layers);
  }
  absl::Status s = BroadcastWords(*comm_, w.words());
  l.last_broadcast = std::chrono::steady_clock::now();
  if (!s.ok()) l.Fail(s);
  return s;
}

absl::Status LlamaModel::FollowLeader() const {
  if (comm_ == nullptr || comm_->rank() == 0) {
    return absl::FailedPreconditionError("FollowLeader: not a follower rank");
  }
  std::map<uint64_t, std::unique_ptr<KvCache>> caches;
  const int64_t kMaxTokens = int64_t{1} << 24;
  for (;;) {
    std::vector<int64_t> words;
    RETURN_IF_ERROR(BroadcastWords(*comm_, words));
    Reader r(words);
    ASSIGN_OR_RETURN(const int64_t op, r.Get());
    if (op == kStop) return absl::OkStatus();
    if (op == kHeartbeat) {
      RETURN_IF_ERROR(comm_->Barrier());
      continue;
    }
    if (op != kPass) return absl::DataLossError(absl::StrCat("tensor-parallel op ", op));
    std::vector<uint64_t> freed;
    RETURN_IF_ERROR(r.GetAll(&freed, kMaxTokens));
    for (uint64_t id : freed) caches.erase(id);
    ASSIGN_OR_RETURN(const int64_t n_seq, r.Get());
    if (n_seq < 1 || n_seq > static_cast<int64_t>(words.size())) {
      return absl::DataLossError(absl::StrCat("tensor-parallel pass of ", n_seq, " sequences"));
    }
    std::vector<KvCache*> pass_caches;
    std::vector<ForwardRequest> reqs(n_seq);
    std::vector<std::vector<int32_t>> tokens(n_seq), parents(n_seq);
    std::vector<std::vector<int>> capture(n_seq);
    for (int64_t s = 0; s < n_seq; ++s) {
      ASSIGN_OR_RETURN(const int64_t id, r.Get());
      ASSIGN_OR_RETURN(const int64_t capacity, r.Get());
      if (capacity < 1 || capacity > (int64_t{1} << 22)) {
        return absl::DataLossError(absl::StrCat("tensor-parallel pass: KV capacity ", capacity));
      }
      std::unique_ptr<KvCache>& cache = caches[static_cast<uint64_t>(id)];
      if (cache == nullptr) cache = backend().NewCache(capacity);
      ASSIGN_OR_RETURN(const int64_t n_moves, r.Get());
      for (int64_t m = 0; m < n_moves; ++m) {
        ASSIGN_OR_RETURN(const int64_t length, r.Get());
        ASSIGN_OR_RETURN(const int64_t base, r.Get());
        std::vector<int32_t> path;
        RETURN_IF_ERROR(r.GetAll(&path, kMaxTokens));
        if (length < 0 || length > cache->capacity()) {
          return absl::DataLossError(absl::StrCat("tensor-parallel pass: length ", length));
        }
        cache->set_length(length);
        RETURN_IF_ERROR(cache->KeepPath(base, path));
      }
      ASSIGN_OR_RETURN(const int64_t length, r.Get());
      if (length < 0 || length > cache->capacity()) {
        return absl::DataLossError(absl::StrCat("tensor-parallel pass: length ", length));
      }
      cache->set_length(length);
      RETURN_IF_ERROR(r.GetAll(&tokens[s], kMaxTokens));
      RETURN_IF_ERROR(r.GetAll(&parents[s], kMaxTokens));
      ASSIGN_OR_RETURN(const int64_t logits, r.Get());
      if (logits < static_cast<int64_t>(LogitsMode::kNone) ||
          logits > static_cast<int64_t>(LogitsMode::kAll)) {
        return absl::DataLossError(absl::StrCat("tensor-parallel pass: logits mode ", logits));
      }
      ASSIGN_OR_RETURN(const int64_t argmax_only, r.Get());
      ASSIGN_OR_RETURN(const int64_t features, r.Get());
      RETURN_IF_ERROR(r.GetAll(&capture[s], config_.num_layers));
      reqs[s].tokens = tokens[s];
      reqs[s].parents = parents[s];
      reqs[s].logits = static_cast<LogitsMode>(logits);
      reqs[s].argmax_only = argmax_only != 0;
      reqs[s].return_features = features != 0;
      reqs[s].capture_layers = capture[s];
      pass_caches.push_back(cache.get());
    }
    // The same pass, and so the same collectives, as rank 0's.
    RETURN_IF_ERROR(ForwardBatch(pass_caches, reqs).status());
  }
}

}  // namespace eagle
