#include "common/eagle/speculative.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/eagle/acceptance.h"
#include "common/status_macros.h"

namespace eagle {
namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
}  // namespace

absl::StatusOr<GenerateResult> GenerateSpeculative(
    const LlamaModel& target, DraftModel& draft, std::span<const int32_t> prompt,
    const GenerateOptions& options, const TreeOptions& tree_options, const TokenCallback& on_token,
    SpeculativeStats* stats, const AcceptFn& accept) {
  const LlamaConfig& cfg = target.config();
  RETURN_IF_ERROR(ValidateGenerateRequest(cfg, prompt, options));
  RETURN_IF_ERROR(ValidateTreeOptions(tree_options));
  SpeculativeStats local;
  SpeculativeStats& st = stats != nullptr ? *stats : local;
  st = SpeculativeStats();
  const int max_tree = 512;
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.max_tokens + max_tree + 1;
  auto cache = target.NewCache(capacity);
  Sampler sampler(options.sampling);
  StopMatcher stop(options.stop);
  const Tokenizer* tok = target.tokenizer();
  StreamDecoder decoder(tok);
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  const std::vector<int> layers = draft.feature_layers();
  const int64_t hs =
      layers.empty() ? cfg.hidden_size : cfg.hidden_size * static_cast<int64_t>(layers.size());
  // Target features for the draft: final-norm hidden states, or the inputs of the given layers.
  auto want_features = [&](ForwardRequest& r) {
    if (layers.empty()) {
      r.return_features = true;
    } else {
      r.capture_layers = layers;
    }
  };
  auto features_of = [&](const ForwardResult& r) -> const std::vector<float>& {
    return layers.empty() ? r.features : r.layer_features;
  };

  // Prefill: logits for the first token, features for the draft.
  auto t0 = Clock::now();
  ForwardRequest req;
  req.tokens = prompt;
  req.logits = LogitsMode::kLast;
  want_features(req);
  ASSIGN_OR_RETURN(ForwardResult fr, target.Forward(*cache, req));
  r.prefill_seconds = Since(t0);
  auto t1 = Clock::now();
  int32_t next = sampler.Sample(fr.logits.data(), cfg.vocab_size);
  {
    // Pairs (f_t, x_{t+1}): prompt[1:] followed by the sampled token.
    std::vector<int32_t> next_tokens(prompt.begin() + 1, prompt.end());
    next_tokens.push_back(next);
    auto td = Clock::now();
    RETURN_IF_ERROR(draft.Commit(features_of(fr), next_tokens));
    st.draft_seconds += Since(td);
  }

  // Emits one token; returns false when generation must end (EOS, stop string, callback, max).
  bool done = false;
  auto emit = [&](int32_t id) {
    const bool eos = tok != nullptr ? tok->IsEndOfGeneration(id) : id == cfg.eos_id;
    if (eos && !options.ignore_eos) {
      r.finish = FinishReason::kEos;
      done = true;
      return;
    }
    r.token_ids.push_back(id);
    bool stopped = false;
    std::string piece = tok != nullptr ? stop.Push(decoder.Push(id), &stopped) : std::string();
    r.text += piece;
    if ((on_token && !on_token(id, piece)) || stopped) {
      r.finish = FinishReason::kStop;
      done = true;
      return;
    }
    if (static_cast<int>(r.token_ids.size()) >= options.max_tokens) {
      r.finish = FinishReason::kLength;
      done = true;
    }
  };

  if (options.max_tokens > 0) {
    emit(next);
  } else {
    done = true;
  }
  while (!done) {
    auto td = Clock::now();
    ASSIGN_OR_RETURN(DraftTree drafted, draft.Draft(next, tree_options));
    st.draft_seconds += Since(td);
    // Near the end of the context, drop nodes that would sit past the last position.
    DraftTree tree;
    {
      const int64_t max_depth = cfg.max_position - 1 - cache->length();
      const auto depths = drafted.Depths();
      std::vector<int32_t> remap(drafted.size(), -1);
      for (int i = 0; i < drafted.size(); ++i) {
        if (depths[i] > max_depth) continue;
        remap[i] = tree.size();
        tree.tokens.push_back(drafted.tokens[i]);
        tree.parents.push_back(i == 0 ? -1 : remap[drafted.parents[i]]);
      }
    }
    RETURN_IF_ERROR(tree.Validate(cfg.vocab_size, max_tree));
    auto tv = Clock::now();
    const int64_t base = cache->length();
    ForwardRequest vr;
    vr.tokens = tree.tokens;
    vr.parents = tree.parents;
    vr.logits = LogitsMode::kAll;
    want_features(vr);
    ASSIGN_OR_RETURN(ForwardResult out, target.Forward(*cache, vr));
    const Acceptance acc =
        accept ? accept(tree, out.logits.data(), cfg.vocab_size, options.sampling, sampler.rng())
               : AcceptSampled(tree, out.logits.data(), cfg.vocab_size, options.sampling,
                               sampler.rng());
    RETURN_IF_ERROR(cache->KeepPath(base, acc.path));
    st.verify_seconds += Since(tv);
    ++st.steps;
    st.tree_nodes += tree.size() - 1;
    const int accepted = static_cast<int>(acc.path.size()) - 1;
    st.accepted_drafts += accepted;
    if (static_cast<int>(st.accepted_at_depth.size()) < accepted)
      st.accepted_at_depth.resize(accepted);
    for (int d = 0; d < accepted; ++d) ++st.accepted_at_depth[d];
    // Emit the accepted drafts, then the bonus/correction token.
    for (size_t j = 1; j < acc.path.size() && !done; ++j) emit(tree.tokens[acc.path[j]]);
    if (!done) emit(acc.next_token);
    if (done) break;
    // The draft gets the target features of the root and the accepted nodes, each paired with
    // the token that follows it.
    std::vector<float> feats;
    std::vector<int32_t> next_tokens;
    for (size_t j = 0; j < acc.path.size(); ++j) {
      const float* f = features_of(out).data() + acc.path[j] * hs;
      feats.insert(feats.end(), f, f + hs);
      next_tokens.push_back(j + 1 < acc.path.size() ? tree.tokens[acc.path[j + 1]]
                                                    : acc.next_token);
    }
    next = acc.next_token;
    td = Clock::now();
    RETURN_IF_ERROR(draft.Commit(feats, next_tokens));
    st.draft_seconds += Since(td);
  }
  if (r.finish != FinishReason::kStop && tok != nullptr) {
    bool stopped = false;
    std::string tail = stop.Push(decoder.Flush(), &stopped) + (stopped ? "" : stop.Flush());
    r.text += tail;
    if (on_token && !tail.empty()) on_token(-1, tail);
  }
  r.decode_seconds = Since(t1);
  r.decode_steps = st.steps;
  return r;
}

}  // namespace eagle
