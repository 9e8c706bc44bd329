// libFuzzer target: a chat template from untrusted bytes (a model's tokenizer_config.json or
// chat_template.jinja is user-supplied). Parse must return a template or INVALID_ARGUMENT /
// UNIMPLEMENTED; Render, under small limits, a string or INVALID_ARGUMENT / RESOURCE_EXHAUSTED /
// UNIMPLEMENTED (a test or filter named by a string at run time, as selectattr's),
// with output within its byte limit, and the same result twice (templates are pure; those that
// call strftime_now, which reads the clock, are rendered once).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "common/jinja.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_input.h"

namespace {

const nlohmann::ordered_json& Context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <b>there</b>\n"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": [{"type": "text", "text": "2 + 2?"}]}
    ],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "tools": null
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  auto t = eagle::jinja::Template::Parse(source);
  if (!t.ok()) {
    const absl::StatusCode c = t.status().code();
    if (c != absl::StatusCode::kInvalidArgument && c != absl::StatusCode::kUnimplemented) {
      eagle::fuzz::Fail(t.status().ToString());
    }
    return 0;
  }
  eagle::jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_loop_iterations = 10'000;
  limits.max_range = 1'000;
  auto out = t->Render(Context(), limits);
  if (!out.ok()) {
    const absl::StatusCode c = out.status().code();
    if (c != absl::StatusCode::kInvalidArgument && c != absl::StatusCode::kResourceExhausted &&
        c != absl::StatusCode::kUnimplemented) {
      eagle::fuzz::Fail(out.status().ToString());
    }
  } else if (out->size() > limits.max_output_bytes) {
    eagle::fuzz::Fail("output beyond max_output_bytes");
  }
  if (source.find("strftime_now") != std::string_view::npos) return 0;
  auto again = t->Render(Context(), limits);
  if (again.ok() != out.ok() || (out.ok() && *again != *out)) {
    eagle::fuzz::Fail("two renders of one template differ");
  }
  return 0;
}
