// Chat template rendering; see chat_template.h.
#include "common/chat_template.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/jinja.h"
#include "nlohmann/json.hpp"

namespace eagle {
namespace {

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// As SmolLM2's template: a default system turn goes first when the conversation does not start
// with a system message (and is not empty).
bool NeedsDefaultSystem(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  return !default_system.empty() && !messages.empty() && messages.front().role != "system";
}

// The conversation's system prompt (a leading system message, or `default_system`) and the
// remaining messages in order.
struct SplitConversation {
  std::string system;
  bool has_system = false;
  std::vector<const ChatMessage*> turns;
};

SplitConversation Split(const std::vector<ChatMessage>& messages, std::string_view default_system) {
  SplitConversation out;
  for (const ChatMessage& m : messages) {
    if (m.role == "system" && &m == &messages.front()) {
      out.system = m.content;
      out.has_system = true;
    } else {
      out.turns.push_back(&m);
    }
  }
  if (!out.has_system && !messages.empty() && !default_system.empty()) {
    out.system = std::string(default_system);
    out.has_system = true;
  }
  return out;
}

std::string RenderChatMl(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         std::string_view default_system) {
  std::string out;
  if (NeedsDefaultSystem(messages, default_system)) {
    out += "<|im_start|>system\n";
    out += default_system;
    out += "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>";
    out += m.role;
    out += "\n";
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Meta's Llama-2 chat format. The leading BOS is the caller's; later turns carry "<s>" as text.
std::string RenderLlama2(const std::vector<ChatMessage>& messages,
                         std::string_view default_system) {
  const SplitConversation conv = Split(messages, default_system);
  std::string out;
  bool system_pending = conv.has_system;
  bool first_turn = true;
  auto system_block = [&]() -> std::string {
    if (!system_pending) return "";
    system_pending = false;
    return absl::StrCat("<<SYS>>\n", conv.system, "\n<</SYS>>\n\n");
  };
  for (const ChatMessage* m : conv.turns) {
    if (m->role == "assistant") {
      out += " ";
      out += m->content;
      out += " </s>";
    } else {  // "user" (or any other role, rendered as a user turn)
      if (!first_turn) out += "<s>";
      out += "[INST] ";
      out += system_block();
      out += m->content;
      out += " [/INST]";
    }
    first_turn = false;
  }
  if (system_pending) {  // A system message with no user turn after it.
    if (!first_turn) out += "<s>";
    out += "[INST] ";
    out += system_block();
    out += " [/INST]";
  }
  return out;
}

std::string RenderLlama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         std::string_view default_system) {
  std::string out = "<|begin_of_text|>";
  auto turn = [&out](std::string_view role, std::string_view content) {
    out += "<|start_header_id|>";
    out += role;
    out += "<|end_header_id|>\n\n";
    out += content;
    out += "<|eot_id|>";
  };
  if (NeedsDefaultSystem(messages, default_system)) turn("system", default_system);
  for (const ChatMessage& m : messages) turn(m.role, m.content);
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// FastChat's vicuna_v1.1: "{system} USER: {u} ASSISTANT: {a}</s>USER: {u} ASSISTANT:".
std::string RenderVicuna(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         std::string_view default_system) {
  const SplitConversation conv = Split(messages, default_system);
  std::string out;
  if (conv.has_system && !conv.system.empty()) {
    out += conv.system;
    out += " ";
  }
  for (const ChatMessage* m : conv.turns) {
    if (m->role == "assistant") {
      out += "ASSISTANT: ";
      out += m->content;
      out += "</s>";
    } else {
      out += "USER: ";
      out += m->content;
      out += " ";
    }
  }
  if (add_generation_prompt) out += "ASSISTANT:";
  return out;
}

}  // namespace

absl::StatusOr<std::string> RenderJinjaChatTemplate(std::string_view jinja,
                                                    const std::vector<ChatMessage>& messages,
                                                    bool add_generation_prompt,
                                                    std::string_view bos_token,
                                                    std::string_view eos_token) {
  auto parsed = jinja::Template::Parse(jinja);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("chat template: ", parsed.status().message()));
  }
  nlohmann::ordered_json context = {{"messages", nlohmann::ordered_json::array()},
                                    {"add_generation_prompt", add_generation_prompt},
                                    {"bos_token", std::string(bos_token)},
                                    {"eos_token", std::string(eos_token)}};
  for (const ChatMessage& m : messages) {
    context["messages"].push_back({{"role", m.role}, {"content", m.content}});
  }
  auto text = parsed->Render(context);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("chat template: ", text.status().message()));
  }
  return text;
}

absl::StatusOr<ChatTemplateKind> ChatTemplateFromName(std::string_view name) {
  if (name == "chatml") return ChatTemplateKind::kChatML;
  if (name == "llama2") return ChatTemplateKind::kLlama2;
  if (name == "llama3") return ChatTemplateKind::kLlama3;
  if (name == "vicuna") return ChatTemplateKind::kVicuna;
  return absl::InvalidArgumentError(absl::StrCat("unknown chat template '", std::string(name),
                                                 "' (expected chatml, llama2, llama3 or vicuna)"));
}

absl::StatusOr<ChatTemplateKind> ChatTemplateFromJinja(std::string_view jinja) {
  if (jinja.empty()) return absl::NotFoundError("the model has no chat template");
  if (Contains(jinja, "<|im_start|>")) return ChatTemplateKind::kChatML;
  if (Contains(jinja, "<|start_header_id|>")) return ChatTemplateKind::kLlama3;
  if (Contains(jinja, "[INST]")) return ChatTemplateKind::kLlama2;
  if (Contains(jinja, "USER:") || Contains(jinja, "ASSISTANT:")) return ChatTemplateKind::kVicuna;
  return absl::NotFoundError(
      "the model's chat template is not one of ChatML, Llama-2, Llama-3 or Vicuna");
}

std::string ApplyChatTemplate(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt, std::string_view default_system) {
  switch (kind) {
    case ChatTemplateKind::kChatML:
      return RenderChatMl(messages, add_generation_prompt, default_system);
    case ChatTemplateKind::kLlama2:
      // The prompt already ends with " [/INST]", which is where the assistant continues.
      return RenderLlama2(messages, default_system);
    case ChatTemplateKind::kLlama3:
      return RenderLlama3(messages, add_generation_prompt, default_system);
    case ChatTemplateKind::kVicuna:
      return RenderVicuna(messages, add_generation_prompt, default_system);
  }
  return RenderChatMl(messages, add_generation_prompt, default_system);
}

}  // namespace eagle
