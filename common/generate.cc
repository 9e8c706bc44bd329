#include "common/generate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/timing.h"

namespace eagle {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
  }
  return "?";
}

std::string StopMatcher::Push(const std::string& text, bool* stopped) {
  *stopped = false;
  held_ += text;
  if (stops_.empty()) return std::exchange(held_, "");
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    first = std::min(first, held_.find(s));
  }
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() { return std::exchange(held_, ""); }

TokenEmitter::TokenEmitter(const LlamaModel& model, const GenerateOptions& options,
                           const TokenCallback& on_token, GenerateResult* result)
    : model_(model),
      options_(options),
      on_token_(on_token),
      r_(result),
      stop_(options.stop),
      decoder_(model.tokenizer()) {
  r_->finish = FinishReason::kLength;
  done_ = options.max_tokens <= 0;
}

bool TokenEmitter::IsEos(int32_t id) const {
  const Tokenizer* tok = model_.tokenizer();
  return tok != nullptr ? tok->IsEndOfGeneration(id) : id == model_.config().eos_id;
}

bool TokenEmitter::WouldEnd(std::span<const int32_t> tokens) const {
  if (static_cast<int64_t>(r_->token_ids.size() + tokens.size()) >= options_.max_tokens) {
    return true;
  }
  if (options_.ignore_eos) return false;
  for (int32_t t : tokens) {
    if (IsEos(t)) return true;
  }
  return false;
}

bool TokenEmitter::Emit(int32_t id) {
  if (done_) return false;
  const Tokenizer* tok = model_.tokenizer();
  if (IsEos(id) && !options_.ignore_eos) {
    r_->finish = FinishReason::kEos;
    done_ = true;
    return false;
  }
  r_->token_ids.push_back(id);
  bool stopped = false;
  std::string piece = tok != nullptr ? stop_.Push(decoder_.Push(id), &stopped) : std::string();
  r_->text += piece;
  if ((on_token_ && !on_token_(id, piece)) || stopped) {
    r_->finish = FinishReason::kStop;
    done_ = true;
    return false;
  }
  if (static_cast<int>(r_->token_ids.size()) >= options_.max_tokens) {
    r_->finish = FinishReason::kLength;
    done_ = true;
    return false;
  }
  return true;
}

void TokenEmitter::Finish() {
  if (r_->finish == FinishReason::kStop || model_.tokenizer() == nullptr) return;
  bool stopped = false;
  std::string tail = stop_.Push(decoder_.Flush(), &stopped) + (stopped ? "" : stop_.Flush());
  r_->text += tail;
  if (on_token_ && !tail.empty()) on_token_(-1, tail);
}

absl::Status ValidateGenerateRequest(const LlamaConfig& cfg, std::span<const int32_t> prompt,
                                     const GenerateOptions& options) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (options.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  RETURN_IF_ERROR(ValidateSamplingParams(options.sampling, cfg.vocab_size));
  if (static_cast<int64_t>(prompt.size()) + options.max_tokens > cfg.max_position) {
    return absl::OutOfRangeError(absl::StrCat("prompt (", prompt.size(), ") + max_tokens (",
                                              options.max_tokens, ") exceed the context ",
                                              cfg.max_position));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateResult> GenerateVanilla(const LlamaModel& model,
                                               std::span<const int32_t> prompt,
                                               const GenerateOptions& options,
                                               const TokenCallback& on_token) {
  const LlamaConfig& cfg = model.config();
  RETURN_IF_ERROR(ValidateGenerateRequest(cfg, prompt, options));
  const int64_t capacity = options.max_context > 0
                               ? options.max_context
                               : static_cast<int64_t>(prompt.size()) + options.max_tokens + 1;
  auto cache = model.NewCache(capacity);
  Sampler sampler(options.sampling);
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  TokenEmitter emitter(model, options, on_token, &r);

  auto t0 = Clock::now();
  ForwardRequest req;
  req.tokens = prompt;
  req.logits = LogitsMode::kLast;
  // Greedy: argmax ids only (no logits cross tensor-parallel ranks).
  const bool greedy = options.sampling.greedy();
  req.argmax_only = greedy;
  ASSIGN_OR_RETURN(ForwardResult fr, model.Forward(*cache, req));
  r.prefill_seconds = SecondsSince(t0);
  auto t1 = Clock::now();
  while (!emitter.done()) {
    const int32_t next = greedy ? fr.argmax[0] : sampler.Sample(fr.logits.data(), cfg.vocab_size);
    if (!emitter.Emit(next)) break;
    const int32_t one[1] = {next};
    req.tokens = one;
    ASSIGN_OR_RETURN(fr, model.Forward(*cache, req));
    ++r.decode_steps;
  }
  emitter.Finish();
  r.decode_seconds = SecondsSince(t1);
  return r;
}

}  // namespace eagle
