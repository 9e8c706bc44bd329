#include "common/dist/gloo_communicator.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <exception>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dist/tcp_store.h"
#include "gloo/allgather.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"

namespace eagle {
namespace {

// Gloo's Store over our TCP rendezvous. Gloo reports a store failure by exception.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(TcpStoreClient* client, std::chrono::milliseconds timeout)
      : client_(client), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status s = client_->Set(key, std::string(data.begin(), data.end()));
    if (!s.ok()) throw gloo::IoException(std::string(s.message()));
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> v = client_->Get(key, timeout_);
    if (!v.ok()) throw gloo::IoException(std::string(v.status().message()));
    return std::vector<char>(v->begin(), v->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& t) override {
    for (const std::string& k : keys) {
      absl::StatusOr<std::string> v = client_->Get(k, t);
      if (!v.ok()) throw gloo::IoException(std::string(v.status().message()));
    }
  }

 private:
  TcpStoreClient* client_;
  std::chrono::milliseconds timeout_;
};

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(std::shared_ptr<gloo::Context> context)
      : context_(std::move(context)) {}
  ~GlooCommunicator() override = default;

  int rank() const override { return context_->rank; }
  int world_size() const override { return context_->size; }

  absl::Status AllReduceSum(float* data, int64_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_flag_) return BrokenStatus();
    const int w = context_->size;
    if (w == 1 || n == 0) return absl::OkStatus();
    if (static_cast<int64_t>(gathered_.size()) < w * n) gathered_.resize(w * n);
    absl::Status s = Run("all-reduce", [&] {
      gloo::AllgatherOptions opts(context_);
      opts.setInput(data, static_cast<size_t>(n));
      opts.setOutput(gathered_.data(), static_cast<size_t>(w * n));
      gloo::allgather(opts);
    });
    if (!s.ok()) return s;
    // In rank order, whatever n: the batch-invariant sum the interface promises.
    for (int64_t i = 0; i < n; ++i) {
      float acc = gathered_[i];
      for (int r = 1; r < w; ++r) acc += gathered_[r * n + i];
      data[i] = acc;
    }
    return absl::OkStatus();
  }

  absl::Status AllGather(const void* in, int64_t bytes, void* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_flag_) return BrokenStatus();
    if (context_->size == 1) {
      std::memcpy(out, in, bytes);
      return absl::OkStatus();
    }
    return Run("all-gather", [&] {
      gloo::AllgatherOptions opts(context_);
      // Gloo's input is not written; its API takes a mutable pointer.
      opts.setInput(static_cast<char*>(const_cast<void*>(in)), static_cast<size_t>(bytes));
      opts.setOutput(static_cast<char*>(out), static_cast<size_t>(bytes * context_->size));
      gloo::allgather(opts);
    });
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_flag_) return BrokenStatus();
    if (root < 0 || root >= context_->size) {
      return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " is not a rank"));
    }
    if (context_->size == 1) return absl::OkStatus();
    return Run("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<char*>(data), static_cast<size_t>(bytes));
      opts.setRoot(root);
      gloo::broadcast(opts);
    });
  }

  absl::Status Barrier() override { return BarrierWithin(context_->getTimeout()); }

  absl::Status BarrierWithin(std::chrono::milliseconds timeout) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_flag_) return BrokenStatus();
    if (context_->size == 1) return absl::OkStatus();
    return Run("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTimeout(timeout);
      gloo::barrier(opts);
    });
  }

  void Abort() override {
    broken_flag_ = true;
    context_->closeConnections();
  }

 private:
  absl::Status BrokenStatus() {
    std::lock_guard<std::mutex> lock(error_mu_);
    return error_.ok() ? absl::UnavailableError("tensor-parallel group aborted") : error_;
  }

  // Runs one Gloo collective; an exception (a dead peer, a broken connection, the timeout)
  // breaks the communicator.
  template <typename Fn>
  absl::Status Run(const char* what, const Fn& fn) {
    try {
      fn();
      return absl::OkStatus();
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      const bool timeout =
          msg.find("Timed out") != std::string::npos || msg.find("timed out") != std::string::npos;
      const std::string text = absl::StrCat("tensor-parallel ", what, " failed on rank ",
                                            context_->rank, " of ", context_->size, ": ", msg);
      absl::Status s = timeout ? absl::DeadlineExceededError(text) : absl::UnavailableError(text);
      {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (error_.ok()) error_ = s;
      }
      broken_flag_ = true;
      return s;
    }
  }

  std::shared_ptr<gloo::Context> context_;
  std::mutex mu_;                // one collective at a time
  std::vector<float> gathered_;  // guarded by mu_: the all-reduce's [world, n] scratch
  std::atomic<bool> broken_flag_{false};
  std::mutex error_mu_;
  absl::Status error_;  // guarded by error_mu_: the first failure
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> ConnectGlooGroup(
    const GlooGroupOptions& o, std::unique_ptr<TcpStoreServer> server) {
  // Gloo's TCP pairs write with writev, which raises SIGPIPE when a peer has died; the failure
  // must come back as an error from the collective instead.
  std::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<Rendezvous> rv =
      JoinRendezvous(o.rank, o.world_size, o.rendezvous, std::move(server), o.connect_timeout);
  if (!rv.ok()) return rv.status();
  std::unique_ptr<TcpStoreClient>& client = rv->client;
  std::string bind = o.bind_host.empty() ? client->local_address() : o.bind_host;
  if (bind.empty()) return absl::InternalError("rendezvous: no local address to bind Gloo to");
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = bind;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.world_size);
    context->setTimeout(o.connect_timeout);
    StoreAdapter store(client.get(), o.connect_timeout);
    gloo::rendezvous::PrefixStore prefixed("eagle-tp", store);
    context->connectFullMesh(prefixed, device);
    // Every rank's pairs are up before any returns (one that left at once, its own pairs up,
    // would close connections another rank is still making).
    gloo::BarrierOptions barrier(context);
    gloo::barrier(barrier);
    context->setTimeout(o.collective_timeout);
    // The rendezvous is done with (every rank passed the barrier): rank 0's store closes, so a
    // restarted group meets a fresh one.
    return std::unique_ptr<Communicator>(new GlooCommunicator(std::move(context)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("tensor-parallel rank ", o.rank, " of ",
                                               o.world_size, " could not join the group at ",
                                               o.rendezvous, ": ", e.what()));
  }
}

}  // namespace eagle
