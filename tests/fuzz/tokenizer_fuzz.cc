// libFuzzer target: the default model's tokenizer (SmolLM2's byte-level BPE, from the GGUF named
// by $EAGLE_FUZZ_MODEL or the fetched default) on untrusted text and token ids. The first byte
// picks the operation; the rest is its input.
//   0: Encode without special tokens: every id in range, and Decode gives the text back byte for
//      byte, less the bytes that have no token in the vocabulary (SmolLM2 lacks some control
//      bytes and bytes that UTF-8 never holds, such as 0xFF; tokenizers drops them too).
//   1: the same with special tokens.
//   2: the rest as little-endian int32 ids (out-of-range ones included): Decode, and the pieces
//      of a StreamDecoder, which must concatenate to Decode's text, each but the last ending on
//      a UTF-8 boundary of the text so far.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

const eagle::Tokenizer& DefaultTokenizer() {
  static const std::unique_ptr<eagle::Tokenizer> tok = [] {
    const char* env = std::getenv("EAGLE_FUZZ_MODEL");
    const std::string path = env != nullptr && *env != '\0' ? env : EAGLE_DEFAULT_MODEL;
    auto g = eagle::GgufFile::Open(path);
    if (!g.ok()) eagle::fuzz::Fail(g.status().ToString());
    auto data = eagle::TokenizerDataFromGguf(**g);
    if (!data.ok()) eagle::fuzz::Fail(data.status().ToString());
    auto t = eagle::Tokenizer::Create(*std::move(data));
    if (!t.ok()) eagle::fuzz::Fail(t.status().ToString());
    return *std::move(t);
  }();
  return *tok;
}

// The bytes that Encode drops because the vocabulary has no token for them.
const std::array<bool, 256>& DroppedBytes() {
  static const std::array<bool, 256> dropped = [] {
    std::array<bool, 256> d{};
    for (int b = 0; b < 256; ++b) {
      d[b] = DefaultTokenizer().Encode(std::string(1, static_cast<char>(b)), false).empty();
    }
    return d;
  }();
  return dropped;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const eagle::Tokenizer& tok = DefaultTokenizer();
  if (size == 0) return 0;
  const int op = data[0] % 3;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (op < 2) {
    const std::vector<int32_t> ids = tok.Encode(rest, /*parse_special=*/op == 1);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) eagle::fuzz::Fail("Encode gave an invalid id");
    }
    std::string kept;
    for (const char c : rest) {
      if (!DroppedBytes()[static_cast<unsigned char>(c)]) kept += c;
    }
    const std::string back = tok.Decode(ids);
    if (back != kept) {
      eagle::fuzz::Fail(absl::StrCat("Decode(Encode(text)) != text: \"", absl::CEscape(kept),
                                     "\" came back as \"", absl::CEscape(back), "\""));
    }
    return 0;
  }
  std::vector<int32_t> ids(rest.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
  const std::string text = tok.Decode(ids);
  eagle::StreamDecoder stream(&tok);
  std::string streamed;
  for (const int32_t id : ids) streamed += stream.Push(id);
  streamed += stream.Flush();
  if (streamed != text) eagle::fuzz::Fail("StreamDecoder's pieces != Decode");
  return 0;
}
