#include "common/prompt.h"

#include "absl/strings/str_cat.h"
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
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError("chat role must be system, user or assistant, not '" +
                                        m.role + "'");
    }
  }
  if (!kind && !model.builtin_chat_template().empty()) {
    ASSIGN_OR_RETURN(kind, ChatTemplateFromName(model.builtin_chat_template()));
  }
  std::vector<int32_t> ids;
  if (!kind) {
    if (model.chat_template().empty()) {
      return absl::NotFoundError(
          "the model has no chat template; name a built-in one (chatml, llama2, llama3, vicuna)");
    }
    auto token_text = [tok](int32_t id) {
      return id >= 0 && id < tok->vocab_size() ? tok->TokenBytes(id) : std::string();
    };
    auto text = RenderJinjaChatTemplate(model.chat_template(), messages, true,
                                        token_text(tok->bos_id()), token_text(tok->eos_id()));
    if (!text.ok()) {
      return absl::Status(
          text.status().code(),
          absl::StrCat(text.status().message(),
                       absl::IsUnimplemented(text.status())
                           ? " (name a built-in template instead: chatml, llama2, llama3, vicuna)"
                           : ""));
    }
    ids = tok->Encode(*text, /*parse_special=*/true);
    return ids;
  }
  const std::string text =
      ApplyChatTemplate(*kind, messages, true, DefaultSystemFromJinja(model.chat_template()));
  if (tok->add_bos() && *kind != ChatTemplateKind::kLlama3) ids.push_back(tok->bos_id());
  auto enc = tok->Encode(text, /*parse_special=*/true);
  ids.insert(ids.end(), enc.begin(), enc.end());
  return ids;
}

absl::Status CheckChatTemplate(const LlamaModel& model) {
  return EncodeChat(model, {{"user", "Hello"}}).status();
}

}  // namespace eagle
