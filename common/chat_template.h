// Chat templates: ChatML (SmolLM2, Qwen), Llama-2, Llama-3 and Vicuna, chosen from the model's
// Jinja template text or by name.
#ifndef EAGLE_COMMON_CHAT_TEMPLATE_H_
#define EAGLE_COMMON_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatTemplateKind { kChatML, kLlama2, kLlama3, kVicuna };

// "chatml", "llama2", "llama3", "vicuna" -> kind; anything else is INVALID_ARGUMENT.
absl::StatusOr<ChatTemplateKind> ChatTemplateFromName(std::string_view name);
// Guesses the kind from a model's Jinja chat template (empty -> NOT_FOUND).
absl::StatusOr<ChatTemplateKind> ChatTemplateFromJinja(std::string_view jinja);

// Renders the conversation and, with add_generation_prompt, the assistant turn opener.
// For ChatML, a conversation without a system message gets `default_system` (SmolLM2's template
// inserts "You are a helpful AI assistant named SmolLM, trained by Hugging Face") when non-empty.
std::string ApplyChatTemplate(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt, std::string_view default_system = "");

}  // namespace eagle

#endif  // EAGLE_COMMON_CHAT_TEMPLATE_H_
