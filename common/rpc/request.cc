#include "common/rpc/request.h"

#include "absl/strings/str_cat.h"
#include "common/prompt.h"
#include "common/rpc/convert.h"
#include "common/status_macros.h"

namespace eagle::rpc {

absl::StatusOr<ParsedRequest> ParseGenerateRequest(const LlamaModel& model,
                                                   const v1::GenerateRequest& req) {
  const LlamaConfig& cfg = model.config();
  ParsedRequest p;
  switch (req.input_case()) {
    case v1::GenerateRequest::kText: {
      if (req.text().empty()) return absl::InvalidArgumentError("text: empty prompt");
      if (req.text().size() > kMaxTextBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("text: ", req.text().size(), " bytes; at most ", kMaxTextBytes));
      }
      ASSIGN_OR_RETURN(p.prompt, EncodeText(model, req.text()));
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = req.token_ids().ids();
      if (ids.empty()) return absl::InvalidArgumentError("token_ids: empty prompt");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= cfg.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat("token_ids: id ", ids[i], " at index ", i,
                                                         " is outside [0, ", cfg.vocab_size, ")"));
        }
      }
      p.prompt.assign(ids.begin(), ids.end());
      break;
    }
    case v1::GenerateRequest::kMessages: {
      const auto& msgs = req.messages().messages();
      if (msgs.empty()) return absl::InvalidArgumentError("messages: no messages");
      if (msgs.size() > kMaxMessages) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages: ", msgs.size(), " messages; at most ", kMaxMessages));
      }
      std::vector<ChatMessage> chat;
      size_t bytes = 0;
      for (const auto& m : msgs) {
        bytes += m.content().size();
        chat.push_back({m.role(), m.content()});
      }
      if (bytes > kMaxTextBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages: ", bytes, " bytes of content; at most ", kMaxTextBytes));
      }
      auto ids = EncodeChat(model, chat);
      if (!ids.ok())
        return absl::InvalidArgumentError(absl::StrCat("messages: ", ids.status().message()));
      p.prompt = std::move(*ids);
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("request has no input: set text, token_ids or messages");
  }
  if (static_cast<int64_t>(p.prompt.size()) >= cfg.max_position) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt has ", p.prompt.size(), " tokens; the context is ", cfg.max_position));
  }
  if (req.max_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: ", req.max_tokens(), " must be >= 1 (0 = default)"));
  }
  p.options.max_tokens = req.max_tokens() == 0 ? kDefaultMaxTokens : req.max_tokens();
  if (req.max_tokens() == 0) {
    p.options.max_tokens = std::min<int64_t>(
        p.options.max_tokens, cfg.max_position - static_cast<int64_t>(p.prompt.size()));
  }
  p.options.sampling = FromProto(req.sampling());
  if (req.stop_size() > kMaxStops) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop: ", req.stop_size(), " strings; at most ", kMaxStops));
  }
  for (const std::string& s : req.stop()) {
    if (s.empty() || s.size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop: each string needs 1 to ", kMaxStopBytes, " bytes"));
    }
    p.options.stop.push_back(s);
  }
  if (absl::Status s = ValidateGenerateRequest(cfg, p.prompt, p.options); !s.ok()) {
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      return absl::InvalidArgumentError(absl::StrCat("sampling: ", s.message()));
    }
    return s;
  }
  return p;
}

}  // namespace eagle::rpc
