// Prompt encoding shared by the CLI and the services: raw text (BOS added when the tokenizer
// wants one) or chat messages rendered with the model's chat template.
#ifndef EAGLE_COMMON_PROMPT_H_
#define EAGLE_COMMON_PROMPT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template.h"
#include "common/model/llama_model.h"

namespace eagle {

// The default system message embedded in a ChatML Jinja template (SmolLM2 inserts one), or "".
std::string DefaultSystemFromJinja(const std::string& jinja);

absl::StatusOr<std::vector<int32_t>> EncodeText(const LlamaModel& model, const std::string& text);

// Renders `messages` with a chat template and encodes them. The template is `kind` when given,
// else the model's builtin_chat_template() when set, else the model's own Jinja template (as
// transformers renders it; the text then carries any BOS itself, so none is added). Errors:
// NOT_FOUND when the model has no template and none is named; the renderer's errors otherwise,
// with the hint to name a built-in template.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const LlamaModel& model,
                                                const std::vector<ChatMessage>& messages,
                                                std::optional<ChatTemplateKind> kind = {});

// Renders a one-message conversation with the template EncodeChat would use, so that a
// service can say at start that chat requests will fail (and why).
absl::Status CheckChatTemplate(const LlamaModel& model);

}  // namespace eagle

#endif  // EAGLE_COMMON_PROMPT_H_
