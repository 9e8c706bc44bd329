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

// `kind` defaults to the template recognised in the model's metadata.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const LlamaModel& model,
                                                const std::vector<ChatMessage>& messages,
                                                std::optional<ChatTemplateKind> kind = {});

}  // namespace eagle

#endif  // EAGLE_COMMON_PROMPT_H_
