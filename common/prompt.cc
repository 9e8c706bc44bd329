#include "common/prompt.h"

#include "common/status_macros.h"

namespace eagle {

std::string DefaultSystemFromJinja(const std::string& jinja) {
  const std::string open = "<|im_start|>system\n";
  const size_t a = jinja.find(open);
  if (a == std::string::npos) return "";
  const size_t b = jinja.find("<|im_end|>", a);
  if (b == std::string::npos) return "";
  std::string s = jinja.substr(a + open.size(), b - a - open.size());
  if (s.find("{{") != std::string::npos || s.find("{%") != std::string::npos ||
      s.find('\'') != std::string::npos)
    return "";
  return s;
}

absl::StatusOr<std::vector<int32_t>> EncodeText(const LlamaModel& model, const std::string& text) {
  const Tokenizer* tok = model.tokenizer();
  if (tok == nullptr) return absl::FailedPreconditionError("the model has no tokenizer");
  std::vector<int32_t> ids;
  if (tok->add_bos()) ids.push_back(tok->bos_id());
  auto enc = tok->Encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), enc.begin(), enc.end());
  return ids;
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const LlamaModel& model,
                                                const std::vector<ChatMessage>& messages,
                                                std::optional<ChatTemplateKind> kind) {
  const Tokenizer* tok = model.tokenizer();
  if (tok == nullptr) return absl::FailedPreconditionError("the model has no tokenizer");
  if (!kind) {
    ASSIGN_OR_RETURN(kind, ChatTemplateFromJinja(model.chat_template()));
  }
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError("chat role must be system, user or assistant, not '" +
                                        m.role + "'");
    }
  }
  const std::string text =
      ApplyChatTemplate(*kind, messages, true, DefaultSystemFromJinja(model.chat_template()));
  std::vector<int32_t> ids;
  if (tok->add_bos() && *kind != ChatTemplateKind::kLlama3) ids.push_back(tok->bos_id());
  auto enc = tok->Encode(text, /*parse_special=*/true);
  ids.insert(ids.end(), enc.begin(), enc.end());
  return ids;
}

}  // namespace eagle
