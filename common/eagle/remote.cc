#include "common/eagle/remote.h"

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

absl::StatusOr<GenerateResult> GenerateRemote(const LlamaModel& model,
                                              const SessionFactory& factory,
                                              std::span<const int32_t> prompt,
                                              const GenerateOptions& options,
                                              const RemoteOptions& remote,
                                              const TokenCallback& on_token, RemoteStats* stats) {
  const LlamaConfig& cfg = model.config();
  RETURN_IF_ERROR(ValidateGenerateRequest(cfg, prompt, options));
  if (remote.head != nullptr) RETURN_IF_ERROR(ValidateTreeOptions(remote.tree));
  RemoteStats local;
  RemoteStats& st = stats != nullptr ? *stats : local;
  st = RemoteStats();
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  TokenEmitter emitter(model, options, on_token, &r);
  const std::vector<int> layers =
      remote.head != nullptr ? remote.head->feature_layers() : std::vector<int>{};
  const int64_t width = remote.head != nullptr ? remote.head->target_feature_width() : 0;
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.max_tokens + 1024;

  std::unique_ptr<VerifierSession> session;
  std::unique_ptr<EagleDrafter> drafter;
  int32_t next = -1;
  int64_t step = 0;
  const auto t0 = Clock::now();
  Clock::time_point failing_since{};
  bool failing = false;
  int backoff_ms = 50;
  auto account = [&] {
    if (session) {
      st.bytes_sent += session->bytes_sent();
      st.bytes_received += session->bytes_received();
    }
  };
  // Waits before the next attempt; false once the verifier has been gone too long.
  auto backoff = [&](const absl::Status& why) -> absl::Status {
    if (!Retryable(why) || remote.reconnect_seconds <= 0) return why;
    if (!failing) {
      failing = true;
      failing_since = Clock::now();
    }
    if (SecondsSince(failing_since) > remote.reconnect_seconds) {
      return absl::UnavailableError(absl::StrCat("verifier unreachable for ",
                                                 remote.reconnect_seconds, " s: ", why.message()));
    }
    if (remote.cancelled && remote.cancelled()) return absl::CancelledError("cancelled");
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, 1000);
    return absl::OkStatus();
  };

  while (!emitter.done()) {
    if (remote.cancelled && remote.cancelled()) {
      if (session) session->Close();
      account();
      return absl::CancelledError("the client cancelled");
    }
    if (!session) {
      // (Re)open: the verifier prefills the prompt and every token emitted so far.
      session = factory();
      const int emitted = static_cast<int>(r.token_ids.size());
      auto opened =
          session->Open(prompt, r.token_ids, options.sampling, options.max_tokens, layers, width);
      if (!opened.ok()) {
        session->Close();
        account();
        session.reset();
        RETURN_IF_ERROR(backoff(opened.status()));
        continue;
      }
      if (emitted > 0) ++st.reconnects;
      failing = false;
      backoff_ms = 50;
      step = 0;
      if (emitted == 0) r.prefill_seconds = SecondsSince(t0);
      next = opened->first_token;
      if (remote.head != nullptr) {
        drafter = std::make_unique<EagleDrafter>(remote.head, capacity);
        // Pairs (f_t, x_{t+1}) over prompt + resumed tokens, then the first sampled token.
        std::vector<int32_t> next_tokens(prompt.begin() + 1, prompt.end());
        next_tokens.insert(next_tokens.end(), r.token_ids.begin(), r.token_ids.end());
        next_tokens.push_back(next);
        if (static_cast<int64_t>(opened->features.size()) !=
            static_cast<int64_t>(next_tokens.size()) * width) {
          session->Close();
          return absl::InternalError("the verifier sent prompt features of the wrong size");
        }
        const auto td = Clock::now();
        RETURN_IF_ERROR(drafter->Commit(opened->features, next_tokens));
        st.draft_seconds += SecondsSince(td);
      }
      if (!emitter.Emit(next)) break;
      continue;
    }
    // Draft (or a root-only tree for plain decoding), trimmed to the context.
    const auto td = Clock::now();
    DraftTree tree;
    if (drafter) {
      ASSIGN_OR_RETURN(DraftTree drafted, drafter->Draft(next, remote.tree));
      // The verifier's KV holds prompt + generated tokens but the root.
      const int64_t kv_len = static_cast<int64_t>(prompt.size() + r.token_ids.size()) - 1;
      tree = drafted.TrimToDepth(cfg.max_position - 1 - kv_len);
    } else {
      tree.tokens = {next};
      tree.parents = {-1};
    }
    const double draft_s = SecondsSince(td);
    st.draft_seconds += draft_s;
    const auto tv = Clock::now();
    auto res = session->Verify(step, tree);
    if (!res.ok()) {
      session->Close();
      account();
      session.reset();
      drafter.reset();
      RETURN_IF_ERROR(backoff(res.status()));
      continue;
    }
    const double round_trip = SecondsSince(tv);
    ++step;
    // The result must be a path of the tree.
    const int accepted = static_cast<int>(res->accepted.size());
    if (accepted >= tree.size() ||
        static_cast<int64_t>(res->features.size()) != (accepted + 1) * width) {
      session->Close();
      return absl::InternalError("the verifier sent a malformed result");
    }
    st.verify_seconds += res->verify_seconds;
    const double network_s = std::max(0.0, round_trip - res->verify_seconds);
    st.network_seconds += network_s;
    st.AddStep(tree.size() - 1, accepted);
    if (remote.on_step) remote.on_step(draft_s, network_s, res->verify_seconds, accepted);
    for (int32_t t : res->accepted) {
      if (!emitter.Emit(t)) break;
    }
    if (emitter.done() || !emitter.Emit(res->next_token)) break;
    next = res->next_token;
    if (drafter) {
      std::vector<int32_t> next_tokens(res->accepted.begin(), res->accepted.end());
      next_tokens.push_back(res->next_token);
      const auto tc = Clock::now();
      RETURN_IF_ERROR(drafter->Commit(res->features, next_tokens));
      st.draft_seconds += SecondsSince(tc);
    }
  }
  if (session) session->Close();
  account();
  emitter.Finish();
  r.decode_seconds = SecondsSince(t0) - r.prefill_seconds;
  r.decode_steps = st.steps;
  return r;
}

}  // namespace eagle
