// Tokenizers: byte-level BPE (GPT-2 / LLaMA-3 / SmolLM2 style) and SentencePiece (through its
// library, or as Hugging Face writes it into tokenizer.json), plus chat templates. A Tokenizer is
// built from a TokenizerData (filled from GGUF metadata by the model loader, or from a Hugging
// Face tokenizer.json / tokenizer.model by the functions below).
//
// Thread contract: after construction all methods are const and thread-safe.
#ifndef EAGLE_COMMON_TOKENIZER_H_
#define EAGLE_COMMON_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace eagle {

class GgufFile;

// Everything a tokenizer needs, independent of the file it came from.
struct TokenizerData {
  std::string model;                 // "gpt2" (byte-level BPE), "llama" (SentencePiece) or
                                     // "spm-bpe" (a SentencePiece vocabulary in tokenizer.json)
  std::string pre;                   // pre-tokenizer name: "smollm", "llama-bpe", "gpt2", ...
  std::vector<std::string> tokens;   // [vocab] token text (byte-level BPE: GPT-2 byte alphabet)
  std::vector<int32_t> token_types;  // [vocab] GGUF types: 1 normal, 2 unknown, 3 control,
                                     // 4 user-defined, 5 unused, 6 byte; empty = all normal
  std::vector<std::string> merges;   // BPE merges "a b", in rank order
  std::vector<float> scores;         // [vocab] SentencePiece scores (may be empty)
  std::string sentencepiece_model;   // serialized tokenizer.model (SentencePiece), if any
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  std::vector<int32_t> extra_eos_ids;  // other end-of-generation ids (e.g. <|eot_id|>)
  bool add_bos = false;
  bool add_space_prefix =
      true;                   // SentencePiece: prepend "▁" (GGUF tokenizer.ggml.add_space_prefix)
  std::string chat_template;  // Jinja source from the model, if any
  std::string normalizer;     // tokenizer.json's "normalizer" as JSON text (Hugging Face
                              // directories; gpt2 and spm-bpe); empty = none
  // spm-bpe only: tokenizer.json's "pre_tokenizer" and "decoder" as JSON text (empty = none), and
  // its BPE model's options.
  std::string pre_tokenizer;
  std::string decoder;
  bool byte_fallback = false;  // a character without a token becomes its <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknown characters give one unknown token
  bool ignore_merges = false;  // a word that is a token is taken whole
  int32_t unk_id = -1;         // the model's unk_token, or -1
};

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerData data);

  virtual ~Tokenizer() = default;

  // Text -> ids. With parse_special, special/added tokens written in the text (e.g.
  // "<|im_start|>") become their ids; otherwise they are tokenized as plain text. Does not add
  // BOS; callers ask add_bos().
  virtual std::vector<int32_t> Encode(std::string_view text, bool parse_special) const = 0;
  // Ids -> text (special tokens rendered as their text). Invalid UTF-8 is kept as bytes.
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;
  // The raw bytes of one token (for streaming; may be a partial UTF-8 sequence).
  virtual std::string TokenBytes(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual bool add_bos() const = 0;
  // True for EOS and any other end-of-generation token.
  virtual bool IsEndOfGeneration(int32_t id) const = 0;
  // Id of a token whose text is exactly `text`, or -1.
  virtual int32_t TokenId(std::string_view text) const = 0;
};

// Reads a Hugging Face tokenizer directory: tokenizer.json (byte-level BPE, or a SentencePiece
// vocabulary written as BPE with byte fallback) or tokenizer.model (SentencePiece, preferred to
// a SentencePiece-style tokenizer.json beside it), with tokenizer_config.json for bos/eos/chat
// template and chat_template.jinja when present.
absl::StatusOr<TokenizerData> LoadHfTokenizerData(const std::string& dir);

// Reads a GGUF file's tokenizer.ggml.* metadata and tokenizer.chat_template.
absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& gguf);

// Turns a stream of token ids into valid UTF-8 text pieces: bytes of an incomplete UTF-8
// sequence are held back until the sequence completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Returns the text that became complete with this token (may be empty).
  std::string Push(int32_t id);
  // Returns whatever is still held back (at the end of generation).
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

}  // namespace eagle

#endif  // EAGLE_COMMON_TOKENIZER_H_
