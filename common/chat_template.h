// Chat templates: the model's own Jinja template, rendered as transformers renders it
// (common/jinja.h), and the built-in ChatML (SmolLM2, Qwen), Llama-2, Llama-3 and Vicuna ones,
// chosen by name as an explicit fallback.
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

// Renders a model's own Jinja chat template over the conversation, with the variables
// transformers' apply_chat_template passes: messages, add_generation_prompt, bos_token and
// eos_token. Errors: UNIMPLEMENTED naming a construct the renderer does not support;
// INVALID_ARGUMENT for a malformed template or one that refuses the conversation (its
// raise_exception message, e.g. roles that do not alternate).
absl::StatusOr<std::string> RenderJinjaChatTemplate(std::string_view jinja,
                                                    const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt,
                                                    std::string_view bos_token,
                                                    std::string_view eos_token);

// Renders the conversation and, with add_generation_prompt, the assistant turn opener.
// For ChatML, a conversation without a system message gets `default_system` (SmolLM2's template
// inserts "You are a helpful AI assistant named SmolLM, trained by Hugging Face") when non-empty.
std::string ApplyChatTemplate(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt, std::string_view default_system = "");

}  // namespace eagle

#endif  // EAGLE_COMMON_CHAT_TEMPLATE_H_
