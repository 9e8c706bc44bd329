// Hugging Face tokenizers' decoders (tokenizer.json's "decoder") for SentencePiece-style
// vocabularies: the token texts of a sequence back to its text, as the `tokenizers` library's
// decode_chain does with special tokens kept (skip_special_tokens=False).
//
// Supported, each on the list of token texts:
//   Sequence      the steps in order;
//   Replace       every occurrence of a String pattern in each token by `content`;
//   ByteFallback  each run of "<0xXX>" tokens becomes one token of those bytes when they are
//                 valid UTF-8, else one U+FFFD per byte;
//   Fuse          all tokens joined into one;
//   Strip         up to `start` leading and `stop` trailing `content` characters off each token;
//   Metaspace     `replacement` becomes a space, except in the first token, where it is dropped
//                 unless prepend_scheme is "never" (older files: add_prefix_space).
// Anything else (ByteLevel, WordPiece, CTC, BPEDecoder, Replace with a Regex, ...) is refused with
// UNIMPLEMENTED naming it. The text is the tokens' concatenation after the chain.
//
// Thread contract: immutable after FromJson; its methods may run on many threads at once.
#ifndef EAGLE_COMMON_PIECE_DECODER_H_
#define EAGLE_COMMON_PIECE_DECODER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace eagle {

// The byte of a SentencePiece byte token "<0xAB>" (hex digits of either case), or -1 for any
// other text.
int ByteTokenValue(std::string_view text);

class PieceDecoder {
 public:
  // `spec` is the JSON value of tokenizer.json's "decoder" (null: tokens joined as they are).
  // Errors: UNIMPLEMENTED for an unsupported type, INVALID_ARGUMENT for a malformed entry;
  // `file` prefixes both.
  static absl::StatusOr<std::shared_ptr<const PieceDecoder>> FromJson(const nlohmann::json& spec,
                                                                      const std::string& file);
  ~PieceDecoder();

  // The text of a whole sequence of token texts.
  std::string Decode(std::vector<std::string> tokens) const;

  // The bytes one token adds in the middle of a sequence, for streaming: the chain applied to it
  // alone as a token that is not the first, a byte token giving its raw byte (a partial UTF-8
  // sequence is completed by the tokens that follow), and the steps that act on the fused text
  // (Strip after Fuse) left out, since they touch only its ends.
  std::string TokenBytes(std::string_view token) const;

 private:
  struct Step;
  PieceDecoder();
  absl::Status Add(const nlohmann::json& spec, const std::string& file);
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_PIECE_DECODER_H_
