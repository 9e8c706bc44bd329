// libFuzzer target: the default model's tokenizer (SmolLM2's byte-level BPE, from the GGUF named
// by $EAGLE_FUZZ_MODEL or the fetched default) and a SentencePiece vocabulary as Hugging Face
// writes it into tokenizer.json (LLaMA-2's shape: Prepend/Replace normalizer, byte fallback,
// Replace/ByteFallback/Fuse/Strip decoder; tests/data/spm_json_tokenizer.json) on untrusted text
// and token ids. The first byte picks the operation; the rest is its input.
//   0: Encode without special tokens: every id in range, and Decode gives the text back byte for
//      byte, less the bytes that have no token in the vocabulary (SmolLM2 lacks some control
//      bytes and bytes that UTF-8 never holds, such as 0xFF; tokenizers drops them too).
//   1: the same with special tokens.
//   2: the rest as little-endian int32 ids (out-of-range ones included): Decode, and the pieces
//      of a StreamDecoder, which must concatenate to Decode's text, each but the last ending on
//      a UTF-8 boundary of the text so far.
//   3: the SentencePiece-style tokenizer's Encode without special tokens: every id in range; on
//      valid UTF-8 without "▁" (which decodes to a space) and "<tool>" (an added token, after
//      which the Prepend normalizer adds a space), Decode gives the text back byte for byte.
//   4: the rest as ids for it: Decode gives valid UTF-8 (ByteFallback turns broken byte runs
//      into U+FFFD), and a StreamDecoder's pieces concatenate to it, up to the one leading
//      space that the Strip decoder takes off.
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/tokenizer.h"
#include "nlohmann/json.hpp"
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

const eagle::Tokenizer& SpmJsonTokenizer() {
  static const std::unique_ptr<eagle::Tokenizer> tok = [] {
    std::ifstream in(EAGLE_SPM_JSON_TOKENIZER);
    nlohmann::json spec = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (spec.is_discarded()) eagle::fuzz::Fail("cannot read " EAGLE_SPM_JSON_TOKENIZER);
    spec["normalizer"] = nlohmann::json::parse(
        R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})");
    spec["pre_tokenizer"] = nullptr;
    spec["decoder"] = nlohmann::json::parse(
        R"({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"},
            "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");
    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                      ("eagle-fuzz-spm-json-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << spec.dump();
    auto data = eagle::LoadHfTokenizerData(dir.string());
    std::filesystem::remove_all(dir);
    if (!data.ok()) eagle::fuzz::Fail(data.status().ToString());
    auto t = eagle::Tokenizer::Create(*std::move(data));
    if (!t.ok()) eagle::fuzz::Fail(t.status().ToString());
    return *std::move(t);
  }();
  return *tok;
}

int FuzzSpmJson(int op, std::string_view rest) {
  const eagle::Tokenizer& tok = SpmJsonTokenizer();
  if (op == 3) {
    const std::vector<int32_t> ids = tok.Encode(rest, /*parse_special=*/false);
    for (const int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) eagle::fuzz::Fail("Encode gave an invalid id");
    }
    if (!eagle::fuzz::ValidUtf8(rest) || rest.find("\u2581") != std::string_view::npos ||
        rest.find("<tool>") != std::string_view::npos) {
      return 0;
    }
    const std::string back = tok.Decode(ids);
    if (back != rest) {
      eagle::fuzz::Fail(absl::StrCat("Decode(Encode(text)) != text: \"",
                                     absl::CEscape(std::string(rest)), "\" came back as \"",
                                     absl::CEscape(back), "\""));
    }
    return 0;
  }
  std::vector<int32_t> ids(rest.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
  const std::string text = tok.Decode(ids);
  if (!eagle::fuzz::ValidUtf8(text)) eagle::fuzz::Fail("Decode gave invalid UTF-8");
  eagle::StreamDecoder stream(&tok);
  std::string streamed;
  for (const int32_t id : ids) streamed += stream.Push(id);
  streamed += stream.Flush();
  // Broken byte runs stream as their bytes but decode as U+FFFD: compare only where none is.
  if (text.find("\xEF\xBF\xBD") == std::string::npos && streamed != text &&
      streamed != " " + text) {
    eagle::fuzz::Fail(absl::StrCat("StreamDecoder's pieces \"", absl::CEscape(streamed),
                                   "\" != Decode's \"", absl::CEscape(text), "\""));
  }
  return 0;
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
  if (size == 0) return 0;
  const int op = data[0] % 5;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (op >= 3) return FuzzSpmJson(op, rest);
  const eagle::Tokenizer& tok = DefaultTokenizer();
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
