#include "common/generate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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
  StopMatcher stop(options.stop);
  const Tokenizer* tok = model.tokenizer();
  StreamDecoder decoder(tok);
  GenerateResult r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  using Clock = std::chrono::steady_clock;

  auto t0 = Clock::now();
  ForwardRequest req;
  req.tokens = prompt;
  req.logits = LogitsMode::kLast;
  ASSIGN_OR_RETURN(ForwardResult fr, model.Forward(*cache, req));
  r.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  auto t1 = Clock::now();
  for (int step = 0; step < options.max_tokens; ++step) {
    const int32_t next = sampler.Sample(fr.logits.data(), cfg.vocab_size);
    const bool eos = tok != nullptr ? tok->IsEndOfGeneration(next) : next == cfg.eos_id;
    if (eos && !options.ignore_eos) {
      r.finish = FinishReason::kEos;
      break;
    }
    r.token_ids.push_back(next);
    bool stopped = false;
    std::string piece = tok != nullptr ? stop.Push(decoder.Push(next), &stopped) : std::string();
    r.text += piece;
    if (on_token && !on_token(next, piece)) {
      r.finish = FinishReason::kStop;
      break;
    }
    if (stopped) {
      r.finish = FinishReason::kStop;
      break;
    }
    if (step + 1 == options.max_tokens) break;
    const int32_t one[1] = {next};
    req.tokens = one;
    ASSIGN_OR_RETURN(fr, model.Forward(*cache, req));
    ++r.decode_steps;
  }
  if (r.finish != FinishReason::kStop && tok != nullptr) {
    bool stopped = false;
    std::string tail = stop.Push(decoder.Flush(), &stopped) + (stopped ? "" : stop.Flush());
    r.text += tail;
    if (on_token && !tail.empty()) on_token(-1, tail);
  }
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace eagle
