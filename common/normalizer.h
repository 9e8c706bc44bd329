// Hugging Face tokenizers' normalizers (tokenizer.json's "normalizer"), applied to each piece
// of text between added tokens before pre-tokenization, as the `tokenizers` library does.
//
// Supported: null (identity), Sequence, NFC, NFD, NFKC, NFKD (Unicode normalization by
// utf8proc), Lowercase (per code point, as Rust's char::to_lowercase: utf8proc's mapping plus
// U+0130 -> "i" U+0307; no final-sigma rule), Strip (Unicode White_Space at either end),
// StripAccents (drops marks: categories Mn, Mc and Me),
// Prepend (to a non-empty piece) and Replace (a String or a Regex pattern; regexes are PCRE2
// with Unicode properties, as the Oniguruma patterns of real tokenizers read). Anything else
// (BertNormalizer, Precompiled, NMT, ByteLevel, ...) is refused with UNIMPLEMENTED naming it.
// Text that is not valid UTF-8 is left as it is by the Unicode steps.
//
// Thread contract: immutable after FromJson; Apply may run on many threads at once.
#ifndef EAGLE_COMMON_NORMALIZER_H_
#define EAGLE_COMMON_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace eagle {

class Normalizer {
 public:
  // `spec` is the JSON value of tokenizer.json's "normalizer". Errors: UNIMPLEMENTED for an
  // unsupported type, INVALID_ARGUMENT for a malformed entry or regex; `file` prefixes both.
  static absl::StatusOr<std::shared_ptr<const Normalizer>> FromJson(const nlohmann::json& spec,
                                                                    const std::string& file);

  ~Normalizer();
  std::string Apply(std::string_view text) const;
  bool identity() const { return steps_.empty(); }

 private:
  struct Step;
  Normalizer();
  absl::Status Add(const nlohmann::json& spec, const std::string& file);
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_NORMALIZER_H_
