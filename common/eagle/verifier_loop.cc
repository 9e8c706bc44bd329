#include "common/eagle/verifier_loop.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/timing.h"

namespace eagle {

bool Retryable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kUnknown ||
         s.code() == absl::StatusCode::kAborted;
}

namespace {

// One generation against a verifier: (re)opening the session, drafting, the pipelined verify
// steps and the reconnect back-off. Each step's result is checked, the next step is sent, and
// only then are the step's tokens streamed, so that decoding and sending them to the client
// overlaps the verifier's next forward pass.
class VerifierLoop {
 public:
  VerifierLoop(const LlamaModel& model, const SessionFactory& factory,
               std::span<const int32_t> prompt, const GenerateOptions& options,
               const VerifierLoopOptions& loop, const TokenCallback& on_token,
               VerifierLoopStats* stats)
      : model_(model),
        factory_(factory),
        prompt_(prompt),
        options_(options),
        loop_(loop),
        st_(*stats),
        emitter_(model, options, on_token, &r_),
        layers_(loop.head != nullptr ? loop.head->feature_layers() : std::vector<int>{}),
        width_(loop.head != nullptr ? loop.head->target_feature_width() : 0) {
    r_.prompt_tokens = static_cast<int>(prompt.size());
  }

  absl::StatusOr<GenerateResult> Run() {
    while (!emitter_.done()) {
      if (loop_.cancelled && loop_.cancelled()) {
        EndSession();
        return absl::CancelledError("the client cancelled");
      }
      if (!session_) {
        RETURN_IF_ERROR(Open());
        continue;
      }
      if (!in_flight_) {
        if (absl::Status s = SendNext(); !s.ok()) {
          RETURN_IF_ERROR(Reconnect(s));
          continue;
        }
      }
      RETURN_IF_ERROR(Step());
    }
    EndSession();
    emitter_.Finish();
    r_.decode_seconds = SecondsSince(t0_) - r_.prefill_seconds;
    r_.decode_steps = st_.steps;
    return std::move(r_);
  }

 private:
  // (Re)opens the session: the verifier prefills the prompt and every token emitted so far.
  absl::Status Open() {
    session_ = factory_();
    const int emitted = static_cast<int>(r_.token_ids.size());
    auto opened = session_->Open(prompt_, r_.token_ids, options_.sampling, options_.max_tokens,
                                 layers_, width_);
    if (!opened.ok()) return Reconnect(opened.status());
    if (emitted > 0) ++st_.reconnects;
    failing_ = false;
    backoff_ms_ = 50;
    step_ = 0;
    if (emitted == 0) r_.prefill_seconds = SecondsSince(t0_);
    next_ = opened->first_token;
    if (loop_.head != nullptr) {
      std::shared_ptr<const SpeculationCosts> costs;
      if (loop_.tree.mode == TreeMode::kAuto) {
        auto curve = CostCurve::FromPoints(opened->forward_cost);
        auto resolved = ResolveCosts(loop_.tree, curve.ok() ? &*curve : nullptr, &model_);
        if (!resolved.ok()) {
          EndSession();
          return resolved.status();
        }
        costs = *std::move(resolved);
      }
      draft_ = std::make_unique<EagleDraftModel>(
          loop_.head, static_cast<int64_t>(prompt_.size()) + options_.max_tokens + 1024);
      drafter_ = std::make_unique<StepDrafter>(draft_.get(), loop_.tree, std::move(costs));
      // Pairs (f_t, x_{t+1}) over prompt + resumed tokens, then the first sampled token.
      std::vector<int32_t> next_tokens(prompt_.begin() + 1, prompt_.end());
      next_tokens.insert(next_tokens.end(), r_.token_ids.begin(), r_.token_ids.end());
      next_tokens.push_back(next_);
      if (static_cast<int64_t>(opened->features.size()) !=
          static_cast<int64_t>(next_tokens.size()) * width_) {
        EndSession();
        return absl::InternalError("the verifier sent prompt features of the wrong size");
      }
      drafter_->Commit(opened->features, next_tokens);
    }
    committed_ = static_cast<int64_t>(prompt_.size() + r_.token_ids.size()) + 1;
    emitter_.Emit(next_);
    return absl::OkStatus();
  }

  // Drafts the tree rooted at next_ (a root-only tree for plain decoding), trimmed to the
  // context, and sends it.
  absl::Status SendNext() {
    tree_ = DraftTree{{next_}, {-1}};
    draft_s_ = 0;
    if (drafter_) {
      // The verifier's KV holds every committed token but the root.
      ASSIGN_OR_RETURN(tree_, drafter_->Next(next_, model_.config().max_position - committed_));
      draft_s_ = drafter_->last_seconds();
      if (tree_.size() == 1) ++st_.plain_steps;
    }
    st_.draft_seconds += draft_s_;
    sent_at_ = Clock::now();
    RETURN_IF_ERROR(session_->Send(step_, tree_));
    in_flight_ = true;
    // Until the result comes back the head's pool has nothing to do: its workers park now and
    // leave the cores to the verifier (often on the same machine) and the gRPC threads.
    if (loop_.head != nullptr && loop_.head->pool() != nullptr) loop_.head->pool()->Rest();
    return absl::OkStatus();
  }

  // Receives the step in flight, sends the next one unless these tokens end the generation,
  // then streams the tokens.
  absl::Status Step() {
    auto res = session_->Receive();
    in_flight_ = false;
    if (!res.ok()) return Reconnect(res.status());
    const double round_trip = SecondsSince(sent_at_);
    ++step_;
    // The result must be a path of the tree.
    const int accepted = static_cast<int>(res->accepted.size());
    if (accepted >= tree_.size() ||
        static_cast<int64_t>(res->features.size()) != (accepted + 1) * width_) {
      EndSession();
      return absl::InternalError("the verifier sent a malformed result");
    }
    st_.verify_seconds += res->verify_seconds;
    const double network_s = std::max(0.0, round_trip - res->verify_seconds);
    st_.network_seconds += network_s;
    st_.AddStep(tree_.size() - 1, accepted);
    if (loop_.on_step) loop_.on_step(draft_s_, network_s, res->verify_seconds, accepted);
    if (drafter_)
      drafter_->Observe(res->accepted, res->verify_seconds, res->pass_rows, res->pass_sequences,
                        network_s);
    const std::vector<int32_t> tokens = res->tokens();
    next_ = res->next_token;
    committed_ += static_cast<int64_t>(tokens.size());
    absl::Status sent = absl::OkStatus();
    if (!emitter_.WouldEnd(tokens)) {
      if (drafter_) drafter_->Commit(*res);
      sent = SendNext();
    }
    for (int32_t t : tokens) {
      if (!emitter_.Emit(t)) break;
    }
    // A failed send is retried once this step's tokens are out (a reconnect resumes after them).
    if (!sent.ok() && !emitter_.done()) return Reconnect(sent);
    return absl::OkStatus();
  }

  // Drops the session and waits before the next attempt; the error itself when it is not worth
  // a retry or the verifier has been gone too long.
  absl::Status Reconnect(const absl::Status& why) {
    EndSession();
    drafter_.reset();
    draft_.reset();
    if (!Retryable(why) || loop_.reconnect_seconds <= 0) return why;
    if (!failing_) {
      failing_ = true;
      failing_since_ = Clock::now();
    }
    if (SecondsSince(failing_since_) > loop_.reconnect_seconds) {
      return absl::UnavailableError(absl::StrCat("verifier unreachable for ",
                                                 loop_.reconnect_seconds, " s: ", why.message()));
    }
    if (loop_.cancelled && loop_.cancelled()) return absl::CancelledError("cancelled");
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
    backoff_ms_ = std::min(backoff_ms_ * 2, 1000);
    return absl::OkStatus();
  }

  // Closes the session (if any) and counts its bytes.
  void EndSession() {
    if (!session_) return;
    session_->Close();
    st_.bytes_sent += session_->bytes_sent();
    st_.bytes_received += session_->bytes_received();
    session_.reset();
    in_flight_ = false;
  }

  const LlamaModel& model_;
  const SessionFactory& factory_;
  const std::span<const int32_t> prompt_;
  const GenerateOptions& options_;
  const VerifierLoopOptions& loop_;
  VerifierLoopStats& st_;
  GenerateResult r_;
  TokenEmitter emitter_;
  const std::vector<int> layers_;
  const int64_t width_;
  const Clock::time_point t0_ = Clock::now();

  std::unique_ptr<VerifierSession> session_;
  std::unique_ptr<EagleDraftModel> draft_;
  std::unique_ptr<StepDrafter> drafter_;  // over draft_
  int64_t committed_ = 0;  // prompt + tokens the verifier has decided, the root included
  int32_t next_ = -1;      // the root of the next tree
  int64_t step_ = 0;
  bool in_flight_ = false;
  DraftTree tree_;  // the tree in flight
  double draft_s_ = 0;
  Clock::time_point sent_at_;
  bool failing_ = false;
  Clock::time_point failing_since_;
  int backoff_ms_ = 50;
};

}  // namespace

absl::StatusOr<GenerateResult> GenerateWithVerifier(
    const LlamaModel& model, const SessionFactory& factory, std::span<const int32_t> prompt,
    const GenerateOptions& options, const VerifierLoopOptions& loop, const TokenCallback& on_token,
    VerifierLoopStats* stats) {
  RETURN_IF_ERROR(ValidateGenerateRequest(model.config(), prompt, options));
  if (loop.head != nullptr) RETURN_IF_ERROR(ValidateTreeOptions(loop.tree));
  VerifierLoopStats local;
  VerifierLoopStats& st = stats != nullptr ? *stats : local;
  st = VerifierLoopStats();
  return VerifierLoop(model, factory, prompt, options, loop, on_token, &st).Run();
}

}  // namespace eagle
