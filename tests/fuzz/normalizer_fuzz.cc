// libFuzzer target: a tokenizer.json "normalizer" and a text from untrusted bytes (the input up
// to its first newline is the JSON spec, the rest the text). FromJson must return a normalizer or
// INVALID_ARGUMENT / UNIMPLEMENTED; Apply must not crash, must be deterministic, and on valid
// UTF-8 must return valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/normalizer.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  if (nl == std::string_view::npos) return 0;
  const nlohmann::json spec = nlohmann::json::parse(input.substr(0, nl), nullptr,
                                                    /*allow_exceptions=*/false);
  if (spec.is_discarded()) return 0;
  auto norm = eagle::Normalizer::FromJson(spec, "tokenizer.json");
  if (!norm.ok()) {
    const absl::StatusCode c = norm.status().code();
    if (c != absl::StatusCode::kInvalidArgument && c != absl::StatusCode::kUnimplemented) {
      eagle::fuzz::Fail(norm.status().ToString());
    }
    return 0;
  }
  const std::string_view text = input.substr(nl + 1);
  const std::string out = (*norm)->Apply(text);
  if ((*norm)->Apply(text) != out) eagle::fuzz::Fail("Apply is not deterministic");
  if (eagle::fuzz::ValidUtf8(text) && !eagle::fuzz::ValidUtf8(out))
    eagle::fuzz::Fail("valid UTF-8 in, invalid out");
  return 0;
}
