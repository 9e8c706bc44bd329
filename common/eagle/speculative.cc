#include "common/eagle/speculative.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/eagle/step_drafter.h"
#include "common/eagle/verify_step.h"
#include "common/status_macros.h"
#include "common/timing.h"

namespace eagle {

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
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  TokenEmitter emitter(target, options, on_token, &r);
  const std::vector<int> layers = draft.feature_layers();
  const int64_t hs =
      layers.empty() ? cfg.hidden_size : cfg.hidden_size * static_cast<int64_t>(layers.size());

  std::shared_ptr<const SpeculationCosts> costs;
  if (tree_options.mode == TreeMode::kAuto) {
    ASSIGN_OR_RETURN(costs, ResolveCosts(tree_options, nullptr, &target));
  }
  StepDrafter drafter(&draft, tree_options, std::move(costs));

  // Prefill: logits for the first token, features for the draft.
  auto t0 = Clock::now();
  ForwardRequest req;
  req.tokens = prompt;
  req.logits = LogitsMode::kLast;
  // Greedy with the built-in rule: argmax ids only (no logits cross tensor-parallel ranks).
  const bool greedy = options.sampling.greedy() && accept == nullptr;
  req.argmax_only = greedy;
  req.WantFeatures(layers);
  ASSIGN_OR_RETURN(ForwardResult fr, target.Forward(*cache, req));
  r.prefill_seconds = SecondsSince(t0);
  auto t1 = Clock::now();
  int32_t next = greedy ? fr.argmax[0] : sampler.Sample(fr.logits.data(), cfg.vocab_size);
  {
    // Pairs (f_t, x_{t+1}): prompt[1:] followed by the sampled token.
    std::vector<int32_t> next_tokens(prompt.begin() + 1, prompt.end());
    next_tokens.push_back(next);
    drafter.Commit(fr.FeaturesFor(layers), next_tokens);
  }
  emitter.Emit(next);
  while (!emitter.done()) {
    const auto ts = Clock::now();
    // Near the end of the context, no node may sit past the last position.
    ASSIGN_OR_RETURN(DraftTree tree, drafter.Next(next, cfg.max_position - 1 - cache->length()));
    st.draft_seconds += drafter.last_seconds();
    if (tree.size() == 1) ++st.plain_steps;
    RETURN_IF_ERROR(tree.Validate(cfg.vocab_size, max_tree));
    auto tv = Clock::now();
    const int64_t base = cache->length();
    ForwardRequest vr;
    vr.tokens = tree.tokens;
    vr.parents = tree.parents;
    vr.logits = LogitsMode::kAll;
    vr.argmax_only = greedy;
    vr.WantFeatures(layers);
    ASSIGN_OR_RETURN(ForwardResult out, target.Forward(*cache, vr));
    const float* feats = out.FeaturesFor(layers).data();
    ASSIGN_OR_RETURN(VerifiedStep step,
                     greedy ? VerifyTreeGreedy(tree, out.argmax.data(), feats, hs, *cache, base)
                            : VerifyTree(tree, out.logits.data(), cfg.vocab_size, feats, hs, *cache,
                                         base, options.sampling, sampler.rng(), accept));
    const double verify_s = SecondsSince(tv);
    st.verify_seconds += verify_s;
    st.AddStep(tree.size() - 1, static_cast<int>(step.accepted.size()));
    // Emit the accepted drafts, then the bonus/correction token.
    for (size_t j = 0; j < step.accepted.size() && !emitter.done(); ++j) {
      emitter.Emit(step.accepted[j]);
    }
    const bool more = emitter.Emit(step.next_token);
    drafter.Observe(step.accepted, verify_s, 0, 0,
                    SecondsSince(ts) - drafter.last_seconds() - verify_s);
    if (!more) break;
    next = step.next_token;
    drafter.Commit(step);
  }
  emitter.Finish();
  r.decode_seconds = SecondsSince(t1);
  r.decode_steps = st.steps;
  return r;
}

}  // namespace eagle
