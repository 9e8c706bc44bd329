// Byte-level BPE (GPT-2 family) and SentencePiece tokenizers; see tokenizer.h.
//
// The byte-level BPE follows Hugging Face `tokenizers` exactly: added tokens are split out first
// (leftmost-longest), the pre-tokenizer regexes (PCRE2 in UTF+UCP mode standing in for
// Oniguruma) are applied one after another with "isolated" behaviour, each piece is mapped
// through the GPT-2 byte alphabet and merged by rank with the same priority queue and tie-breaking
// as tokenizers' `Word::merge_all`. SentencePiece vocabularies read from tokenizer.json (no
// tokenizer.model) follow tokenizers too: Metaspace pre-tokenizer, BPE over Unicode characters
// with byte fallback, the same merge loop, and the PieceDecoder.
#include "common/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/io/gguf.h"
#include "common/normalizer.h"
#include "common/piece_decoder.h"
#include "common/status_macros.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

// Debian's sentencepiece_processor.h declares `namespace absl { using std::string_view; }`, which
// is ambiguous with Debian's Abseil (built with its own absl::string_view class). The library was
// built against std::string_view, so renaming the namespace while including the header keeps
// both the declarations and the mangled names correct.
#define absl eagle_sentencepiece_absl
#include <sentencepiece_processor.h>
#undef absl

namespace eagle {
namespace {

constexpr int32_t kTypeNormal = 1;
constexpr int32_t kTypeUnknown = 2;
constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;
constexpr int32_t kTypeUnused = 5;
constexpr int32_t kTypeByte = 6;

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers.

// Length of the UTF-8 sequence introduced by `lead`; 1 for ASCII and for invalid lead bytes.
size_t Utf8SeqLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the code point at s[*pos] and advances *pos. Returns false (advancing one byte) on an
// invalid or truncated sequence.
bool NextCodePoint(std::string_view s, size_t* pos, uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[*pos]);
  const size_t len = Utf8SeqLen(b0);
  if (len == 1) {
    ++*pos;
    *cp = b0;
    return b0 < 0x80;
  }
  if (*pos + len > s.size()) {
    ++*pos;
    return false;
  }
  uint32_t value = b0 & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[*pos + i]);
    if ((b & 0xC0) != 0x80) {
      ++*pos;
      return false;
    }
    value = (value << 6) | (b & 0x3F);
  }
  *pos += len;
  *cp = value;
  return true;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte alphabet (bytes_to_unicode): printable bytes map to themselves, the others to
// U+0100 onwards in byte order.

struct ByteAlphabet {
  std::array<std::string, 256> encode;  // byte -> UTF-8 of its alphabet character
  std::array<int16_t, 512> decode;      // code point -> byte, or -1
};

const ByteAlphabet& GetByteAlphabet() {
  static const ByteAlphabet* const alphabet = [] {
    auto* a = new ByteAlphabet();
    a->decode.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? b : next++;
      AppendUtf8(cp, &a->encode[b]);
      a->decode[cp] = static_cast<int16_t>(b);
    }
    return a;
  }();
  return *alphabet;
}

// Maps a byte-level token's text back to bytes. Returns false (leaving *out alone) when a
// character is outside the alphabet; Hugging Face's ByteLevel decoder then keeps the raw text.
bool ByteLevelToBytes(std::string_view text, std::string* out) {
  const ByteAlphabet& alphabet = GetByteAlphabet();
  std::string bytes;
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = 0;
    if (!NextCodePoint(text, &pos, &cp) || cp >= alphabet.decode.size() ||
        alphabet.decode[cp] < 0) {
      return false;
    }
    bytes.push_back(static_cast<char>(alphabet.decode[cp]));
  }
  *out = std::move(bytes);
  return true;
}

// ---------------------------------------------------------------------------------------------
// PCRE2 regex used for "isolated" splitting.

class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                     &error_offset, nullptr);
    if (code == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      return absl::InvalidArgumentError(
          absl::StrCat("cannot compile pre-tokenizer regex at offset ", error_offset, ": ",
                       reinterpret_cast<const char*>(message.data()), " in ", pattern));
    }
    // JIT is an optimization only: without it (or if it fails) the interpreter is used.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    return std::unique_ptr<Regex>(new Regex(code));
  }

  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the pieces of `text` to `out`: every match and every non-empty gap between matches,
  // in order (tokenizers' SplitDelimiterBehavior::Isolated).
  void Split(std::string_view text, pcre2_match_data* match_data,
             std::vector<std::string_view>* out) const {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t start = 0;
    size_t last = 0;
    while (start < text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), start, 0, match_data, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_JIT, match_data, nullptr);
      }
      if (rc < 0) break;  // No match, or a resource limit: the rest stays one piece.
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data);
      const size_t match_start = ovector[0];
      const size_t match_end = ovector[1];
      if (match_end <= match_start) {  // Empty match: step over one character.
        start = match_start + Utf8SeqLen(static_cast<unsigned char>(text[match_start]));
        continue;
      }
      if (match_start > last) out->push_back(text.substr(last, match_start - last));
      out->push_back(text.substr(match_start, match_end - match_start));
      last = start = match_end;
    }
    if (last < text.size()) out->push_back(text.substr(last));
  }

  pcre2_code* code() const { return code_; }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

// The pre-tokenizer regexes (applied in order, each to the pieces of the previous one) for the
// GGUF `tokenizer.ggml.pre` names, as written in Hugging Face tokenizer.json files.
constexpr char kGpt2Regex[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kDigitRegex[] = R"(\p{N})";

// Hugging Face runs these regexes with Oniguruma (Unicode 16 in tokenizers 0.2x) and the Digits
// pre-tokenizer with Rust's char::is_numeric; Debian's PCRE2 10.42 knows Unicode 14 and counts
// U+180E as \s. Before compiling, \p{L}, \p{N} and \s are therefore widened to the classes
// below, measured code point by code point against tokenizers 0.23.3 (harmless with a newer
// PCRE2: the ranges then overlap its own).
constexpr char kExtraLetters[] =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}"
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}"
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}"
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}"
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}"
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
constexpr char kExtraNumbers[] =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";
// Rust's char::is_numeric has these on top of Oniguruma's \p{N}.
constexpr char kExtraDigits[] = "\\x{11DE0}-\\x{11DE9}\\x{16FF4}-\\x{16FF6}";
// Unicode White_Space, which is Oniguruma's \s.
constexpr char kWhiteSpace[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Rewrites \p{L}, \p{N}, \s and \S of a Hugging Face regex into the classes above, inside and
// outside character classes. `digits` selects the is_numeric set for \p{N}.
std::string WidenClasses(std::string_view pattern, bool digits) {
  const std::string letters = absl::StrCat("\\p{L}", kExtraLetters);
  const std::string numbers = absl::StrCat("\\p{N}", kExtraNumbers, digits ? kExtraDigits : "");
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const std::string_view rest = pattern.substr(i);
      const std::string* replacement = nullptr;
      size_t skip = 0;
      if (rest.substr(0, 5) == "\\p{L}") {
        replacement = &letters;
        skip = 5;
      } else if (rest.substr(0, 5) == "\\p{N}") {
        replacement = &numbers;
        skip = 5;
      }
      if (replacement != nullptr) {
        out += in_class ? *replacement : absl::StrCat("[", *replacement, "]");
        i += skip - 1;
      } else if (rest[1] == 's') {
        out += in_class ? std::string(kWhiteSpace) : absl::StrCat("[", kWhiteSpace, "]");
        ++i;
      } else if (rest[1] == 'S' && !in_class) {
        out += absl::StrCat("[^", kWhiteSpace, "]");
        ++i;
      } else {
        out.append(rest.substr(0, 2));
        ++i;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // tokenizers' BPE `ignore_merges` (whole word in vocab wins)
};

absl::StatusOr<PreTokenizerSpec> PreTokenizerForName(std::string_view pre) {
  PreTokenizerSpec spec;
  if (pre.empty() || pre == "gpt2" || pre == "default" || pre == "mpt" || pre == "olmo") {
    spec.regexes = {kGpt2Regex};
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") {
    spec.regexes = {kDigitRegex, kGpt2Regex};
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" ||
             pre == "smaug-bpe") {
    spec.regexes = {kLlama3Regex};
    spec.ignore_merges = true;
  } else if (pre == "qwen2" || pre == "stablelm2") {
    spec.regexes = {kQwen2Regex};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported pre-tokenizer '", std::string(pre),
                     "' (supported: gpt2, default, smollm, starcoder, refact, codeshell, "
                     "llama-bpe, llama3, dbrx, smaug-bpe, qwen2, stablelm2, mpt, olmo)"));
  }
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Added-token matcher: a byte trie giving the longest token starting at a position.

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() : nodes_(1) { first_byte_.fill(false); }

  void Add(std::string_view text, int32_t id, bool control) {
    if (text.empty()) return;
    int32_t node = 0;
    for (const char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      int32_t child = Child(node, byte);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(byte, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    if (nodes_[node].id < 0) {  // The first id with this text wins.
      nodes_[node].id = id;
      nodes_[node].control = control;
    }
    first_byte_[static_cast<unsigned char>(text[0])] = true;
    if (control) {
      has_control_ = true;
    } else {
      has_user_ = true;
    }
  }

  bool Active(bool allow_control, bool allow_user) const {
    return (allow_control && has_control_) || (allow_user && has_user_);
  }

  // Longest allowed token at text[pos..]: returns its id and sets *len, or returns -1.
  int32_t Match(std::string_view text, size_t pos, bool allow_control, bool allow_user,
                size_t* len) const {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) return -1;
    int32_t node = 0;
    int32_t best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      const Node& n = nodes_[node];
      if (n.id >= 0 && (n.control ? allow_control : allow_user)) {
        best = n.id;
        *len = i + 1 - pos;
      }
    }
    return best;
  }

  // Splits `text` into raw pieces and tokens, calling raw(piece) / token(id) in text order.
  template <typename RawFn, typename TokenFn>
  void Split(std::string_view text, bool allow_control, bool allow_user, RawFn raw,
             TokenFn token) const {
    if (!Active(allow_control, allow_user)) {
      if (!text.empty()) raw(text);
      return;
    }
    size_t raw_start = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t len = 0;
      const int32_t id = Match(text, pos, allow_control, allow_user, &len);
      if (id < 0) {
        ++pos;
        continue;
      }
      if (pos > raw_start) raw(text.substr(raw_start, pos - raw_start));
      token(id);
      pos += len;
      raw_start = pos;
    }
    if (raw_start < text.size()) raw(text.substr(raw_start));
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t id = -1;
    bool control = false;
  };

  int32_t Child(int32_t node, unsigned char byte) const {
    for (const auto& [b, child] : nodes_[node].children) {
      if (b == byte) return child;
    }
    return -1;
  }

  std::vector<Node> nodes_;
  std::array<bool, 256> first_byte_;
  bool has_control_ = false;
  bool has_user_ = false;
};

// Token texts that end generation when they are control tokens (as llama.cpp's EOG list).
bool IsEogText(std::string_view text) {
  static constexpr std::string_view kEog[] = {
      "<|eot_id|>",    "<|im_end|>", "<|end|>", "<|eom_id|>",         "<end_of_turn>",
      "<|endoftext|>", "<EOT>",      "_<EOT>",  "<end_of_utterance>", "<|end_of_text|>",
  };
  return std::find(std::begin(kEog), std::end(kEog), text) != std::end(kEog);
}

// ---------------------------------------------------------------------------------------------
// Shared parts of both tokenizer kinds.

class TokenizerBase : public Tokenizer {
 public:
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  bool add_bos() const override { return add_bos_; }

  bool IsEndOfGeneration(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return false;
    return eog_[id];
  }

  int32_t TokenId(std::string_view text) const override {
    const auto it = token_to_id_.find(std::string(text));
    return it == token_to_id_.end() ? -1 : it->second;
  }

  std::string TokenBytes(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) return "";
    return token_bytes_[id];
  }

 protected:
  // Validates and stores the common fields; token_bytes_ is filled by the subclass.
  absl::Status InitCommon(const TokenizerData& data) {
    if (data.tokens.empty()) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
    if (data.tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError("tokenizer vocabulary is too large");
    }
    if (!data.token_types.empty() && data.token_types.size() != data.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", data.tokens.size(),
                                                     " tokens but ", data.token_types.size(),
                                                     " token types"));
    }
    tokens_ = data.tokens;
    types_ = data.token_types;
    if (types_.empty()) types_.assign(tokens_.size(), kTypeNormal);
    const int32_t n = vocab_size();
    auto check_id = [n](int32_t id, std::string_view what) -> absl::Status {
      if (id < -1 || id >= n) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer ", std::string(what), " id ", id,
                                                       " is outside the vocabulary of ", n));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(check_id(data.bos_id, "BOS"));
    RETURN_IF_ERROR(check_id(data.eos_id, "EOS"));
    for (const int32_t id : data.extra_eos_ids) {
      RETURN_IF_ERROR(check_id(id, "end-of-generation"));
    }
    bos_id_ = data.bos_id;
    eos_id_ = data.eos_id;
    add_bos_ = data.add_bos;
    if (add_bos_ && bos_id_ < 0) {
      return absl::InvalidArgumentError("tokenizer asks to add BOS but has no BOS id");
    }
    token_to_id_.reserve(tokens_.size());
    for (int32_t id = 0; id < n; ++id) {
      if (!tokens_[id].empty()) token_to_id_.emplace(tokens_[id], id);
    }
    eog_.assign(tokens_.size(), false);
    if (eos_id_ >= 0) eog_[eos_id_] = true;
    for (const int32_t id : data.extra_eos_ids) {
      if (id >= 0) eog_[id] = true;
    }
    for (int32_t id = 0; id < n; ++id) {
      if (types_[id] == kTypeControl && IsEogText(tokens_[id])) eog_[id] = true;
    }
    return absl::OkStatus();
  }

  // Adds control tokens and (when add_user) user-defined tokens to `matcher`.
  void FillMatcher(bool add_control, bool add_user, AddedTokenMatcher* matcher) const {
    for (int32_t id = 0; id < vocab_size(); ++id) {
      if (types_[id] == kTypeControl && add_control) matcher->Add(tokens_[id], id, true);
      if (types_[id] == kTypeUserDefined && add_user) matcher->Add(tokens_[id], id, false);
    }
  }

  std::vector<std::string> tokens_;
  std::vector<int32_t> types_;
  std::vector<std::string> token_bytes_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<bool> eog_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
};

// ---------------------------------------------------------------------------------------------
// BPE merges by rank, shared by both BPE kinds: tokenizers' `Word::merge_all`, with its priority
// queue and tie-breaking (lowest rank first, then leftmost position).

class BpeMerges {
 public:
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  // Per-call buffers, reused across the words of one Encode.
  struct Scratch {
    std::vector<int32_t> initial;
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string mapped;
  };

  // `merges` are "a b" in rank order. A merge whose parts or result are not in the vocabulary is
  // skipped (Hugging Face refuses such merges at load time; GGUF vocabularies rarely have them,
  // and llama.cpp skips them at run time); a repeated pair takes its last rank, as in tokenizers'
  // merge map.
  absl::Status Build(const std::vector<std::string>& merges,
                     const std::unordered_map<std::string, int32_t>& token_to_id) {
    table_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const std::string& merge = merges[rank];
      const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
      if (space == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("BPE merge ", rank, " '", merge, "' is not of the form 'a b'"));
      }
      const std::string left = merge.substr(0, space);
      const std::string right = merge.substr(space + 1);
      const auto l = token_to_id.find(left);
      const auto r = token_to_id.find(right);
      const auto m = token_to_id.find(left + right);
      if (l == token_to_id.end() || r == token_to_id.end() || m == token_to_id.end()) continue;
      table_.insert_or_assign(PairKey(l->second, r->second),
                              MergeInfo{static_cast<int32_t>(rank), m->second});
    }
    return absl::OkStatus();
  }

  // Merges a word's initial symbols (`ids`) and appends the result to `out`.
  void Merge(const std::vector<int32_t>& ids, Scratch* scratch, std::vector<int32_t>* out) const {
    if (ids.empty()) return;
    std::vector<Symbol>& symbols = scratch->symbols;
    symbols.clear();
    for (const int32_t id : ids) {
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{id, index - 1, index + 1, true});
    }
    symbols.back().next = -1;

    std::vector<Candidate>& heap = scratch->heap;
    heap.clear();
    auto push = [&](int32_t pos) {
      const int32_t next = symbols[pos].next;
      if (next < 0) return;
      if (const MergeInfo* m = Find(symbols[pos].id, symbols[next].id)) {
        heap.push_back(Candidate{m->rank, pos, m->id});
        std::push_heap(heap.begin(), heap.end());
      }
    };
    for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push(pos);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Candidate top = heap.back();
      heap.pop_back();
      Symbol& sym = symbols[top.pos];
      if (!sym.alive || sym.next < 0) continue;
      Symbol& right = symbols[sym.next];
      const MergeInfo* m = Find(sym.id, right.id);
      if (m == nullptr || m->id != top.new_id) continue;
      sym.id = top.new_id;
      right.alive = false;
      sym.next = right.next;
      if (sym.next >= 0) symbols[sym.next].prev = top.pos;
      if (sym.prev >= 0) push(sym.prev);
      push(top.pos);
    }
    for (int32_t pos = 0; pos >= 0; pos = symbols[pos].next) out->push_back(symbols[pos].id);
  }

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const MergeInfo* Find(int32_t left, int32_t right) const {
    const auto it = table_.find(PairKey(left, right));
    return it == table_.end() ? nullptr : &it->second;
  }

  std::unordered_map<uint64_t, MergeInfo> table_;
};

// ---------------------------------------------------------------------------------------------
// Byte-level BPE.

class BpeTokenizer final : public TokenizerBase {
 public:
  absl::Status Init(const TokenizerData& data) {
    RETURN_IF_ERROR(InitCommon(data));
    if (!data.normalizer.empty()) {
      auto spec_json = nlohmann::json::parse(data.normalizer, nullptr, /*allow_exceptions=*/false);
      if (spec_json.is_discarded()) return absl::InvalidArgumentError("normalizer: invalid JSON");
      ASSIGN_OR_RETURN(normalizer_, Normalizer::FromJson(spec_json, "normalizer"));
      if (normalizer_->identity()) normalizer_.reset();
    }
    ASSIGN_OR_RETURN(PreTokenizerSpec spec, PreTokenizerForName(data.pre));
    ignore_merges_ = spec.ignore_merges;
    for (const std::string& pattern : spec.regexes) {
      ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                       Regex::Compile(WidenClasses(pattern, pattern == kDigitRegex)));
      regexes_.push_back(std::move(regex));
    }

    const ByteAlphabet& alphabet = GetByteAlphabet();
    for (int b = 0; b < 256; ++b) {
      const auto it = token_to_id_.find(alphabet.encode[b]);
      byte_token_[b] = it == token_to_id_.end() ? -1 : it->second;
    }

    RETURN_IF_ERROR(merges_.Build(data.merges, token_to_id_));

    // As tokenizers' ByteLevel decoder, for added tokens too: a token whose characters are all
    // in the byte alphabet decodes to those bytes, any other token to its text.
    token_bytes_.resize(tokens_.size());
    for (size_t id = 0; id < tokens_.size(); ++id) {
      if (!ByteLevelToBytes(tokens_[id], &token_bytes_[id])) token_bytes_[id] = tokens_[id];
    }
    FillMatcher(/*add_control=*/true, /*add_user=*/true, &matcher_);
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool parse_special) const override {
    std::vector<int32_t> ids;
    std::vector<pcre2_match_data*> match_data;
    match_data.reserve(regexes_.size());
    for (const auto& regex : regexes_) {
      match_data.push_back(pcre2_match_data_create_from_pattern(regex->code(), nullptr));
    }
    std::vector<std::string_view> pieces;
    std::vector<std::string_view> next;
    BpeMerges::Scratch scratch;
    // Hugging Face always splits out non-special added tokens; special ones unless
    // split_special_tokens (here: !parse_special).
    matcher_.Split(
        text, /*allow_control=*/parse_special, /*allow_user=*/true,
        [&](std::string_view raw) {
          std::string normalized;
          if (normalizer_ != nullptr) {
            normalized = normalizer_->Apply(raw);
            raw = normalized;
          }
          pieces.assign(1, raw);
          for (size_t r = 0; r < regexes_.size(); ++r) {
            next.clear();
            for (const std::string_view piece : pieces) {
              regexes_[r]->Split(piece, match_data[r], &next);
            }
            pieces.swap(next);
          }
          for (const std::string_view piece : pieces) EncodeWord(piece, &scratch, &ids);
        },
        [&](int32_t id) { ids.push_back(id); });
    for (pcre2_match_data* md : match_data) pcre2_match_data_free(md);
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (const int32_t id : ids) {
      if (id >= 0 && id < vocab_size()) out += token_bytes_[id];
    }
    return out;
  }

 private:
  std::shared_ptr<const Normalizer> normalizer_;  // null: none

  void EncodeWord(std::string_view word, BpeMerges::Scratch* scratch,
                  std::vector<int32_t>* out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      const ByteAlphabet& alphabet = GetByteAlphabet();
      scratch->mapped.clear();
      for (const char c : word) scratch->mapped += alphabet.encode[static_cast<unsigned char>(c)];
      const auto it = token_to_id_.find(scratch->mapped);
      if (it != token_to_id_.end()) {
        out->push_back(it->second);
        return;
      }
    }
    std::vector<int32_t>& symbols = scratch->initial;
    symbols.clear();
    for (const char c : word) {
      const int32_t id = byte_token_[static_cast<unsigned char>(c)];
      if (id >= 0) symbols.push_back(id);  // A byte missing from the vocabulary is dropped.
    }
    merges_.Merge(symbols, scratch, out);
  }

  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_token_{};
  BpeMerges merges_;
  AddedTokenMatcher matcher_;
};

// ---------------------------------------------------------------------------------------------
// SentencePiece: a minimal reader of the ModelProto wire format (pieces, scores, types and
// normalizer_spec.add_dummy_prefix), so that vocabularies can be filled without libprotobuf.

struct SentencePieceVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  bool add_dummy_prefix = true;
};

class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }

  bool ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return false;
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }

  // Reads a field: its number, wire type, and (for varint/fixed) value or (length) bytes.
  bool ReadField(uint32_t* number, uint32_t* wire_type, uint64_t* value, std::string_view* bytes) {
    uint64_t key = 0;
    if (!ReadVarint(&key)) return false;
    *number = static_cast<uint32_t>(key >> 3);
    *wire_type = static_cast<uint32_t>(key & 7);
    switch (*wire_type) {
      case 0:
        return ReadVarint(value);
      case 1:
        if (data_.size() - pos_ < 8) return false;
        std::memcpy(value, data_.data() + pos_, 8);
        pos_ += 8;
        return true;
      case 2: {
        uint64_t len = 0;
        if (!ReadVarint(&len) || len > data_.size() - pos_) return false;
        *bytes = data_.substr(pos_, len);
        pos_ += len;
        return true;
      }
      case 5: {
        if (data_.size() - pos_ < 4) return false;
        uint32_t v = 0;
        std::memcpy(&v, data_.data() + pos_, 4);
        *value = v;
        pos_ += 4;
        return true;
      }
      default:
        return false;
    }
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

absl::StatusOr<SentencePieceVocab> ParseSentencePieceModel(std::string_view model) {
  SentencePieceVocab vocab;
  ProtoReader reader(model);
  const absl::Status malformed =
      absl::InvalidArgumentError("malformed SentencePiece model (cannot parse ModelProto)");
  while (!reader.done()) {
    uint32_t number = 0;
    uint32_t wire = 0;
    uint64_t value = 0;
    std::string_view bytes;
    if (!reader.ReadField(&number, &wire, &value, &bytes)) return malformed;
    if (number == 1 && wire == 2) {  // repeated SentencePiece pieces
      ProtoReader piece_reader(bytes);
      std::string piece;
      float score = 0.0f;
      int32_t type = kTypeNormal;
      while (!piece_reader.done()) {
        uint32_t n = 0;
        uint32_t w = 0;
        uint64_t v = 0;
        std::string_view b;
        if (!piece_reader.ReadField(&n, &w, &v, &b)) return malformed;
        if (n == 1 && w == 2) {
          piece = std::string(b);
        } else if (n == 2 && w == 5) {
          const auto bits = static_cast<uint32_t>(v);
          std::memcpy(&score, &bits, 4);
        } else if (n == 3 && w == 0) {
          type = static_cast<int32_t>(v);
        }
      }
      vocab.pieces.push_back(std::move(piece));
      vocab.scores.push_back(score);
      vocab.types.push_back(type);
    } else if (number == 3 && wire == 2) {  // NormalizerSpec normalizer_spec
      ProtoReader spec_reader(bytes);
      while (!spec_reader.done()) {
        uint32_t n = 0;
        uint32_t w = 0;
        uint64_t v = 0;
        std::string_view b;
        if (!spec_reader.ReadField(&n, &w, &v, &b)) return malformed;
        if (n == 3 && w == 0) vocab.add_dummy_prefix = v != 0;
      }
    }
  }
  if (vocab.pieces.empty()) {
    return absl::InvalidArgumentError("SentencePiece model has no pieces");
  }
  return vocab;
}

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

std::string ReplaceSpaceMarker(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (text.substr(pos, kSpaceMarker.size()) == kSpaceMarker) {
      out.push_back(' ');
      pos += kSpaceMarker.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

class SpmTokenizer final : public TokenizerBase {
 public:
  absl::Status Init(TokenizerData data) {
    add_space_prefix_ = data.add_space_prefix;
    if (!data.sentencepiece_model.empty()) {
      ASSIGN_OR_RETURN(SentencePieceVocab vocab, ParseSentencePieceModel(data.sentencepiece_model));
      add_space_prefix_ = vocab.add_dummy_prefix;
      if (data.tokens.empty()) {
        data.tokens = std::move(vocab.pieces);
        data.scores = std::move(vocab.scores);
        data.token_types = std::move(vocab.types);
      } else if (data.tokens.size() != vocab.pieces.size()) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", data.tokens.size(),
                                                       " tokens but its SentencePiece model has ",
                                                       vocab.pieces.size()));
      }
      processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
      const auto status = processor_->LoadFromSerializedProto(data.sentencepiece_model);
      if (!status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot load SentencePiece model: ", status.ToString()));
      }
    }
    if (data.token_types.empty()) {  // Without types, "<0xXX>" pieces are still byte tokens.
      data.token_types.assign(data.tokens.size(), kTypeNormal);
      for (size_t id = 0; id < data.tokens.size(); ++id) {
        if (ByteTokenValue(data.tokens[id]) >= 0) data.token_types[id] = kTypeByte;
      }
    }
    RETURN_IF_ERROR(InitCommon(data));
    if (!data.scores.empty() && data.scores.size() != tokens_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer has ", tokens_.size(), " tokens but ", data.scores.size(), " scores"));
    }
    scores_ = data.scores;
    if (scores_.empty()) scores_.assign(tokens_.size(), 0.0f);

    byte_token_.fill(-1);
    token_bytes_.resize(tokens_.size());
    for (int32_t id = 0; id < vocab_size(); ++id) {
      const std::string& text = tokens_[id];
      const int32_t type = types_[id];
      const int byte = ByteTokenValue(text);
      if (type == kTypeByte && byte >= 0) {
        token_bytes_[id] = std::string(1, static_cast<char>(byte));
        if (byte_token_[byte] < 0) byte_token_[byte] = id;
      } else if (type == kTypeControl || type == kTypeUserDefined || type == kTypeUnknown) {
        token_bytes_[id] = text;
      } else {
        token_bytes_[id] = ReplaceSpaceMarker(text);
      }
      if (type == kTypeUnknown && unk_id_ < 0) unk_id_ = id;
    }
    // With the SentencePiece library, user-defined symbols are matched by the library itself.
    FillMatcher(/*add_control=*/true, /*add_user=*/processor_ == nullptr, &matcher_);
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool parse_special) const override {
    std::vector<int32_t> ids;
    // Text between control tokens is one SentencePiece "sentence": it gets the dummy prefix.
    matcher_.Split(
        text, /*allow_control=*/parse_special, /*allow_user=*/false,
        [&](std::string_view segment) { EncodeSegment(segment, &ids); },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids) const override {
    std::string out;
    bool strip_space = add_space_prefix_;  // At the start of a segment.
    for (const int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) continue;
      const int32_t type = types_[id];
      const std::string& piece = token_bytes_[id];
      if (type == kTypeControl) {
        out += piece;
        strip_space = add_space_prefix_;
        continue;
      }
      if (strip_space && type != kTypeUserDefined && !piece.empty() && piece[0] == ' ') {
        out.append(piece, 1, std::string::npos);
      } else {
        out += piece;
      }
      strip_space = false;
    }
    return out;
  }

 private:
  void EncodeSegment(std::string_view segment, std::vector<int32_t>* ids) const {
    if (processor_ != nullptr) {
      std::vector<int> pieces;
      const auto status = processor_->Encode(segment, &pieces);
      if (status.ok()) {
        ids->insert(ids->end(), pieces.begin(), pieces.end());
        return;
      }
      // Not expected for a loaded model; fall through to the score-based tokenizer.
    }
    std::string escaped;
    if (add_space_prefix_) escaped = kSpaceMarker;
    for (const char c : segment) {
      if (c == ' ') {
        escaped += kSpaceMarker;
      } else {
        escaped.push_back(c);
      }
    }
    matcher_.Split(
        escaped, /*allow_control=*/false, /*allow_user=*/true,
        [&](std::string_view raw) { EncodeByScores(raw, ids); },
        [&](int32_t id) { ids->push_back(id); });
  }

  // Id of a piece that BPE may form (normal or unused) with exactly this text, or -1.
  int32_t MergeablePiece(const std::string& text) const {
    const auto it = token_to_id_.find(text);
    if (it == token_to_id_.end()) return -1;
    const int32_t type = types_[it->second];
    return type == kTypeNormal || type == kTypeUnused || type == 0 ? it->second : -1;
  }

  struct Symbol {
    size_t start;
    size_t len;
    int32_t prev;
    int32_t next;
  };
  struct Bigram {
    int32_t left;
    int32_t right;
    float score;
    size_t size;
    // Highest score first, then leftmost (llama.cpp's llm_bigram_spm::comparator).
    bool operator<(const Bigram& o) const {
      return score < o.score || (score == o.score && left > o.left);
    }
  };

  // SentencePiece BPE by piece scores with byte fallback, as llama.cpp's llm_tokenizer_spm and
  // sentencepiece's bpe_model.cc: merge the best-scoring adjacent pair into a known piece until
  // none is left; unused pieces are split back into the pair they were made of; characters
  // without a piece become <0xXX> byte tokens (or the unknown token).
  void EncodeByScores(std::string_view text, std::vector<int32_t>* ids) const {
    std::vector<Symbol> symbols;
    for (size_t offset = 0; offset < text.size();) {
      const size_t len =
          std::min(Utf8SeqLen(static_cast<unsigned char>(text[offset])), text.size() - offset);
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{offset, len, index - 1, index + 1});
      offset += len;
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;

    std::priority_queue<Bigram> queue;
    std::unordered_map<std::string, std::pair<std::string, std::string>> rev_merge;
    auto try_add = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const std::string piece(
          text.substr(symbols[left].start, symbols[left].len + symbols[right].len));
      const int32_t id = MergeablePiece(piece);
      if (id < 0) return;
      queue.push(Bigram{left, right, scores_[id], piece.size()});
      if (types_[id] == kTypeUnused) {
        rev_merge[piece] = {std::string(text.substr(symbols[left].start, symbols[left].len)),
                            std::string(text.substr(symbols[right].start, symbols[right].len))};
      }
    };
    for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);
    while (!queue.empty()) {
      const Bigram bigram = queue.top();
      queue.pop();
      Symbol& left = symbols[bigram.left];
      Symbol& right = symbols[bigram.right];
      if (left.len == 0 || right.len == 0 || left.len + right.len != bigram.size) continue;
      left.len += right.len;
      right.len = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = bigram.left;
      try_add(left.prev, bigram.left);
      try_add(bigram.left, left.next);
    }

    auto resegment = [&](auto& self, const std::string& piece) -> void {
      const int32_t id = MergeablePiece(piece);
      if (id >= 0 && types_[id] != kTypeUnused) {
        ids->push_back(id);
        return;
      }
      if (id >= 0) {
        const auto it = rev_merge.find(piece);
        if (it != rev_merge.end()) {
          self(self, it->second.first);
          self(self, it->second.second);
          return;
        }
      }
      const bool have_bytes = std::all_of(piece.begin(), piece.end(), [this](char c) {
        return byte_token_[static_cast<unsigned char>(c)] >= 0;
      });
      if (have_bytes) {
        for (const char c : piece) ids->push_back(byte_token_[static_cast<unsigned char>(c)]);
      } else if (unk_id_ >= 0) {
        ids->push_back(unk_id_);
      }
    };
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
      resegment(resegment, std::string(text.substr(symbols[i].start, symbols[i].len)));
    }
  }

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::vector<float> scores_;
  std::array<int32_t, 256> byte_token_{};
  int32_t unk_id_ = -1;
  bool add_space_prefix_ = true;
  AddedTokenMatcher matcher_;
};

// ---------------------------------------------------------------------------------------------
// SentencePiece vocabularies as Hugging Face writes them into tokenizer.json (LLaMA-2, Mistral,
// TinyLlama, ...): after the normalizer (Prepend/Replace in the legacy conversion) and the
// Metaspace pre-tokenizer (or none), each word is split into Unicode characters, a character
// without a token becomes its <0xXX> byte tokens (byte fallback) or the unknown token, and the
// symbols are merged by rank; the tokens decode through the PieceDecoder. As tokenizers'
// Metaspace::pre_tokenize and BPE::merge_word, quirks included (an unknown character pending
// before a byte-fallback character is emitted after it).

struct MetaspaceSpec {
  enum class Prepend { kAlways, kFirst, kNever };
  bool enabled = false;  // false: no pre-tokenizer, each piece is one word
  std::string replacement;
  Prepend prepend = Prepend::kAlways;
  bool split = true;
};

absl::StatusOr<MetaspaceSpec> ParseMetaspace(const nlohmann::json& j, const std::string& file) {
  MetaspaceSpec spec;
  if (j.is_null()) return spec;
  const std::string type = j.is_object() && j.contains("type") && j["type"].is_string()
                               ? j["type"].get<std::string>()
                               : j.dump().substr(0, 100);
  if (type != "Metaspace") {
    return absl::UnimplementedError(absl::StrCat(
        file, ": pre_tokenizer ", type,
        " is not supported for a SentencePiece-style tokenizer (only Metaspace or none)"));
  }
  spec.enabled = true;
  if (!j.contains("replacement") || !j["replacement"].is_string() ||
      j["replacement"].get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": pre_tokenizer Metaspace: no \"replacement\" string"));
  }
  spec.replacement = j["replacement"].get<std::string>();
  size_t end = 0;
  uint32_t cp = 0;
  if (!NextCodePoint(spec.replacement, &end, &cp) || end != spec.replacement.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": pre_tokenizer Metaspace: \"replacement\" must be one character, got '",
        spec.replacement, "'"));
  }
  if (j.contains("prepend_scheme")) {
    const nlohmann::json& scheme = j["prepend_scheme"];
    if (scheme == "always") {
      spec.prepend = MetaspaceSpec::Prepend::kAlways;
    } else if (scheme == "first") {
      spec.prepend = MetaspaceSpec::Prepend::kFirst;
    } else if (scheme == "never") {
      spec.prepend = MetaspaceSpec::Prepend::kNever;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(file,
                       ": pre_tokenizer Metaspace: prepend_scheme must be \"always\", \"first\" or "
                       "\"never\", got ",
                       scheme.dump()));
    }
  } else if (!j.value("add_prefix_space", true)) {  // the field before tokenizers 0.19
    spec.prepend = MetaspaceSpec::Prepend::kNever;
  }
  spec.split = j.value("split", true);
  return spec;
}

class SpmBpeTokenizer final : public TokenizerBase {
 public:
  absl::Status Init(const TokenizerData& data) {
    RETURN_IF_ERROR(InitCommon(data));
    auto parse = [](const std::string& text, const char* what) -> absl::StatusOr<nlohmann::json> {
      if (text.empty()) return nlohmann::json();
      nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON"));
      return j;
    };
    ASSIGN_OR_RETURN(const nlohmann::json normalizer, parse(data.normalizer, "normalizer"));
    ASSIGN_OR_RETURN(normalizer_, Normalizer::FromJson(normalizer, "normalizer"));
    if (normalizer_->identity()) normalizer_.reset();
    ASSIGN_OR_RETURN(const nlohmann::json pre, parse(data.pre_tokenizer, "pre_tokenizer"));
    ASSIGN_OR_RETURN(metaspace_, ParseMetaspace(pre, "pre_tokenizer"));
    ASSIGN_OR_RETURN(const nlohmann::json decoder, parse(data.decoder, "decoder"));
    ASSIGN_OR_RETURN(decoder_, PieceDecoder::FromJson(decoder, "decoder"));
    if (data.unk_id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer unknown-token id ", data.unk_id, " is outside the vocabulary"));
    }
    unk_id_ = data.unk_id;
    fuse_unk_ = data.fuse_unk;
    ignore_merges_ = data.ignore_merges;
    byte_token_.fill(-1);
    if (data.byte_fallback) {
      for (int b = 0; b < 256; ++b) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        const std::string name = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
        const auto it = token_to_id_.find(name);
        if (it != token_to_id_.end()) byte_token_[b] = it->second;
      }
    }
    RETURN_IF_ERROR(merges_.Build(data.merges, token_to_id_));
    token_bytes_.resize(tokens_.size());
    for (size_t id = 0; id < tokens_.size(); ++id) {
      token_bytes_[id] = decoder_->TokenBytes(tokens_[id]);
    }
    FillMatcher(/*add_control=*/true, /*add_user=*/true, &matcher_);
    return absl::OkStatus();
  }

  std::vector<int32_t> Encode(std::string_view text, bool parse_special) const override {
    std::vector<int32_t> ids;
    BpeMerges::Scratch scratch;
    matcher_.Split(
        text, /*allow_control=*/parse_special, /*allow_user=*/true,
        [&](std::string_view raw) {
          const bool at_start = raw.data() == text.data();
          std::string piece = normalizer_ != nullptr ? normalizer_->Apply(raw) : std::string(raw);
          if (piece.empty()) return;  // tokenizers drops empty splits
          if (!metaspace_.enabled) {
            EncodeWord(piece, &scratch, &ids);
            return;
          }
          std::string replaced;
          const bool prepend = metaspace_.prepend == MetaspaceSpec::Prepend::kAlways ||
                               (metaspace_.prepend == MetaspaceSpec::Prepend::kFirst && at_start);
          for (const char c : piece) {
            if (c == ' ') {
              replaced += metaspace_.replacement;
            } else {
              replaced.push_back(c);
            }
          }
          if (prepend && !replaced.starts_with(metaspace_.replacement)) {
            replaced.insert(0, metaspace_.replacement);
          }
          if (!metaspace_.split) {
            EncodeWord(replaced, &scratch, &ids);
            return;
          }
          // Split before each replacement character, which starts the next word
          // (SplitDelimiterBehavior::MergedWithNext).
          const std::string_view all(replaced);
          size_t word_start = 0;
          for (size_t at = all.find(metaspace_.replacement, 1); at != std::string_view::npos;
               at = all.find(metaspace_.replacement, at + 1)) {
            EncodeWord(all.substr(word_start, at - word_start), &scratch, &ids);
            word_start = at;
          }
          EncodeWord(all.substr(word_start), &scratch, &ids);
        },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  std::string Decode(std::span<const int32_t> ids) const override {
    std::vector<std::string> pieces;
    pieces.reserve(ids.size());
    for (const int32_t id : ids) {
      if (id >= 0 && id < vocab_size()) pieces.push_back(tokens_[id]);
    }
    return decoder_->Decode(std::move(pieces));
  }

 private:
  void EncodeWord(std::string_view word, BpeMerges::Scratch* scratch,
                  std::vector<int32_t>* out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      const auto it = token_to_id_.find(std::string(word));
      if (it != token_to_id_.end()) {
        out->push_back(it->second);
        return;
      }
    }
    std::vector<int32_t>& symbols = scratch->initial;
    symbols.clear();
    bool unk_pending = false;
    for (size_t pos = 0; pos < word.size();) {
      size_t next = pos;
      uint32_t cp = 0;
      if (!NextCodePoint(word, &next, &cp)) next = pos + 1;  // an invalid byte is a character
      const std::string_view c = word.substr(pos, next - pos);
      pos = next;
      scratch->mapped.assign(c);
      if (const auto it = token_to_id_.find(scratch->mapped); it != token_to_id_.end()) {
        if (unk_pending) symbols.push_back(unk_id_);
        unk_pending = false;
        symbols.push_back(it->second);
        continue;
      }
      if (std::all_of(c.begin(), c.end(),
                      [this](char b) { return byte_token_[static_cast<unsigned char>(b)] >= 0; })) {
        for (const char b : c) symbols.push_back(byte_token_[static_cast<unsigned char>(b)]);
        continue;
      }
      if (unk_id_ < 0) continue;  // No unknown token: the character is dropped.
      if (unk_pending && !fuse_unk_) symbols.push_back(unk_id_);
      unk_pending = true;
    }
    if (unk_pending) symbols.push_back(unk_id_);
    merges_.Merge(symbols, scratch, out);
  }

  std::shared_ptr<const Normalizer> normalizer_;  // null: none
  MetaspaceSpec metaspace_;
  std::shared_ptr<const PieceDecoder> decoder_;
  BpeMerges merges_;
  std::array<int32_t, 256> byte_token_{};  // -1 where no <0xXX> token (or no byte fallback)
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  AddedTokenMatcher matcher_;
};

// ---------------------------------------------------------------------------------------------
// Hugging Face directory loading.

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path.string()));
  return contents.str();
}

absl::StatusOr<nlohmann::json> ReadJson(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": invalid JSON: ", e.what()));
  }
}

std::string JsonTypeOf(const nlohmann::json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) {
    return j["type"].get<std::string>();
  }
  return j.is_null() ? "null" : j.dump();
}

bool JsonBool(const nlohmann::json& j, const char* key, bool fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_boolean()) return fallback;
  return j[key].get<bool>();
}

// Checks a ByteLevel pre-tokenizer entry; `want_regex` is its required use_regex value.
absl::Status CheckByteLevel(const nlohmann::json& j, bool want_regex, const std::string& file) {
  if (JsonTypeOf(j) != "ByteLevel") {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": expected a ByteLevel pre-tokenizer, got ", JsonTypeOf(j)));
  }
  if (JsonBool(j, "add_prefix_space", false)) {
    return absl::UnimplementedError(absl::StrCat(
        file, ": ByteLevel pre-tokenizer with add_prefix_space=true is not supported"));
  }
  if (JsonBool(j, "use_regex", true) != want_regex) {
    return absl::UnimplementedError(absl::StrCat(
        file, ": ByteLevel pre-tokenizer with use_regex=", want_regex ? "false" : "true",
        " is not supported in this position"));
  }
  return absl::OkStatus();
}

// The regex of a Split pre-tokenizer with Isolated behaviour, or "" if `j` is not one.
std::string SplitRegex(const nlohmann::json& j) {
  if (JsonTypeOf(j) != "Split") return "";
  if (!j.contains("pattern") || !j["pattern"].is_object()) return "";
  const nlohmann::json& pattern = j["pattern"];
  if (!pattern.contains("Regex") || !pattern["Regex"].is_string()) return "";
  if (j.value("behavior", std::string()) != "Isolated" || JsonBool(j, "invert", false)) return "";
  return pattern["Regex"].get<std::string>();
}

// Chooses the GGUF-style pre-tokenizer name from tokenizer.json's pre_tokenizer.
absl::StatusOr<std::string> DetectPre(const nlohmann::json& pre, const std::string& file) {
  const std::string type = JsonTypeOf(pre);
  if (type == "ByteLevel") {
    RETURN_IF_ERROR(CheckByteLevel(pre, /*want_regex=*/true, file));
    return std::string("gpt2");
  }
  if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array() &&
      pre["pretokenizers"].size() == 2) {
    const nlohmann::json& first = pre["pretokenizers"][0];
    const nlohmann::json& second = pre["pretokenizers"][1];
    const std::string regex = SplitRegex(first);
    if ((JsonTypeOf(first) == "Digits" && JsonBool(first, "individual_digits", false)) ||
        regex == kDigitRegex) {
      RETURN_IF_ERROR(CheckByteLevel(second, /*want_regex=*/true, file));
      return std::string("smollm");
    }
    if (regex == kLlama3Regex) {
      RETURN_IF_ERROR(CheckByteLevel(second, /*want_regex=*/false, file));
      return std::string("llama-bpe");
    }
    if (regex == kQwen2Regex) {
      RETURN_IF_ERROR(CheckByteLevel(second, /*want_regex=*/false, file));
      return std::string("qwen2");
    }
    if (regex == kGpt2Regex) {
      RETURN_IF_ERROR(CheckByteLevel(second, /*want_regex=*/false, file));
      return std::string("gpt2");
    }
  }
  return absl::UnimplementedError(
      absl::StrCat(file, ": unsupported pre_tokenizer ", pre.dump().substr(0, 300)));
}

// True when tokenizer.json describes a SentencePiece-style BPE (byte fallback / Metaspace).
bool IsSentencePieceStyle(const nlohmann::json& j) {
  if (j.contains("model") && JsonBool(j["model"], "byte_fallback", false)) return true;
  for (const char* key : {"pre_tokenizer", "normalizer", "decoder"}) {
    if (j.contains(key) && j[key].dump().find("\\u2581") != std::string::npos) return true;
    if (j.contains(key) && j[key].dump().find("\xE2\x96\x81") != std::string::npos) return true;
    if (j.contains(key) && JsonTypeOf(j[key]) == "Metaspace") return true;
  }
  return false;
}

absl::Status LoadTokenizerJson(const nlohmann::json& j, const std::string& file,
                               TokenizerData* data) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": no \"model\" object"));
  }
  const nlohmann::json& model = j["model"];
  const std::string model_type = model.value("type", std::string("BPE"));
  if (model_type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(file, ": model type ", model_type, " is not supported (only BPE)"));
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0) {
    return absl::UnimplementedError(absl::StrCat(file, ": BPE dropout is not supported"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return absl::UnimplementedError(absl::StrCat(file, ": BPE ", key, " is not supported"));
    }
  }
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    RETURN_IF_ERROR(Normalizer::FromJson(j["normalizer"], file).status());
    data->normalizer = j["normalizer"].dump();
  }
  const nlohmann::json pre_tokenizer =
      j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json();
  const nlohmann::json decoder = j.contains("decoder") ? j["decoder"] : nlohmann::json();
  const bool sentencepiece = IsSentencePieceStyle(j);
  if (sentencepiece) {
    RETURN_IF_ERROR(ParseMetaspace(pre_tokenizer, file).status());
    RETURN_IF_ERROR(PieceDecoder::FromJson(decoder, file).status());
    if (!pre_tokenizer.is_null()) data->pre_tokenizer = pre_tokenizer.dump();
    if (!decoder.is_null()) data->decoder = decoder.dump();
    data->byte_fallback = JsonBool(model, "byte_fallback", false);
    data->fuse_unk = JsonBool(model, "fuse_unk", false);
    data->ignore_merges = JsonBool(model, "ignore_merges", false);
    data->model = "spm-bpe";
  } else {
    if (!decoder.is_null() && JsonTypeOf(decoder) != "ByteLevel") {
      return absl::UnimplementedError(
          absl::StrCat(file, ": decoder ", JsonTypeOf(decoder),
                       " is not supported for a byte-level BPE tokenizer (only ByteLevel)"));
    }
    ASSIGN_OR_RETURN(data->pre, DetectPre(pre_tokenizer, file));
    data->model = "gpt2";
  }

  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": model.vocab is not an object"));
  }
  std::vector<std::pair<int64_t, std::string>> entries;
  int64_t max_id = -1;
  for (const auto& [text, id_json] : model["vocab"].items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": model.vocab id of '", text, "' is not a non-negative integer"));
    }
    entries.emplace_back(id_json.get<int64_t>(), text);
    max_id = std::max(max_id, entries.back().first);
  }
  std::vector<std::pair<int64_t, nlohmann::json>> added;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const nlohmann::json& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string() || t["id"].get<int64_t>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": malformed added_tokens entry ", t.dump()));
      }
      added.emplace_back(t["id"].get<int64_t>(), t);
      max_id = std::max(max_id, added.back().first);
    }
  }
  if (max_id < 0) return absl::InvalidArgumentError(absl::StrCat(file, ": empty vocabulary"));
  if (max_id >= (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": token id ", max_id, " is too large"));
  }
  data->tokens.assign(max_id + 1, std::string());
  data->token_types.assign(max_id + 1, kTypeUnused);
  for (auto& [id, text] : entries) {
    data->tokens[id] = std::move(text);
    data->token_types[id] = kTypeNormal;
  }
  for (const auto& [id, t] : added) {
    data->tokens[id] = t["content"].get<std::string>();
    data->token_types[id] = JsonBool(t, "special", false) ? kTypeControl : kTypeUserDefined;
  }

  if (sentencepiece && model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    const auto it = std::find(data->tokens.begin(), data->tokens.end(), unk);
    if (it == data->tokens.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": unk_token '", unk, "' is not in the vocabulary"));
    }
    data->unk_id = static_cast<int32_t>(it - data->tokens.begin());
  }
  data->merges.clear();
  if (model.contains("merges")) {
    if (!model["merges"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": model.merges is not an array"));
    }
    data->merges.reserve(model["merges"].size());
    for (const nlohmann::json& m : model["merges"]) {
      if (m.is_string()) {
        data->merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        data->merges.push_back(absl::StrCat(m[0].get<std::string>(), " ", m[1].get<std::string>()));
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": malformed merge ", m.dump().substr(0, 100)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LoadSentencePieceFile(const std::filesystem::path& path, TokenizerData* data) {
  ASSIGN_OR_RETURN(data->sentencepiece_model, ReadFile(path));
  auto vocab = ParseSentencePieceModel(data->sentencepiece_model);
  if (!vocab.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", vocab.status().message()));
  }
  sentencepiece::SentencePieceProcessor processor;
  const auto status = processor.LoadFromSerializedProto(data->sentencepiece_model);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": cannot load SentencePiece model: ", status.ToString()));
  }
  data->model = "llama";
  data->pre.clear();
  data->tokens = std::move(vocab->pieces);
  data->scores = std::move(vocab->scores);
  data->token_types = std::move(vocab->types);
  data->merges.clear();
  data->bos_id = processor.bos_id();
  data->eos_id = processor.eos_id();
  data->add_bos = data->bos_id >= 0;  // LlamaTokenizer's default.
  return absl::OkStatus();
}

// Resolves a special-token entry of tokenizer_config.json (string or {"content": ...}).
absl::StatusOr<int32_t> ConfigTokenId(const nlohmann::json& config, const char* key,
                                      const TokenizerData& data, const std::string& file,
                                      int32_t fallback) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  const nlohmann::json& entry = config[key];
  std::string text;
  if (entry.is_string()) {
    text = entry.get<std::string>();
  } else if (entry.is_object() && entry.contains("content") && entry["content"].is_string()) {
    text = entry["content"].get<std::string>();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", key, " is neither a string nor {\"content\": ...}"));
  }
  for (size_t id = 0; id < data.tokens.size(); ++id) {
    if (data.tokens[id] == text) return static_cast<int32_t>(id);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": ", key, " '", text, "' is not in the vocabulary"));
}

absl::Status ApplyTokenizerConfig(const std::filesystem::path& path, TokenizerData* data) {
  ASSIGN_OR_RETURN(nlohmann::json config, ReadJson(path));
  const std::string file = path.string();
  if (!config.is_object()) return absl::InvalidArgumentError(file + ": not a JSON object");
  ASSIGN_OR_RETURN(data->bos_id, ConfigTokenId(config, "bos_token", *data, file, data->bos_id));
  ASSIGN_OR_RETURN(data->eos_id, ConfigTokenId(config, "eos_token", *data, file, data->eos_id));
  if (config.contains("add_bos_token") && !config["add_bos_token"].is_null()) {
    if (!config["add_bos_token"].is_boolean()) {
      return absl::InvalidArgumentError(file + ": add_bos_token is not a boolean");
    }
    data->add_bos = config["add_bos_token"].get<bool>();
  }
  if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    const nlohmann::json& t = config["chat_template"];
    if (t.is_string()) {
      data->chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      // [{"name": ..., "template": ...}]: take "default", else the first.
      for (const nlohmann::json& entry : t) {
        if (!entry.is_object() || !entry.contains("template") || !entry["template"].is_string()) {
          return absl::InvalidArgumentError(file + ": malformed chat_template list entry");
        }
        if (data->chat_template.empty() || entry.value("name", std::string()) == "default") {
          data->chat_template = entry["template"].get<std::string>();
        }
      }
    } else {
      return absl::InvalidArgumentError(file + ": chat_template is neither a string nor a list");
    }
  }
  return absl::OkStatus();
}

// generation_config.json: eos_token_id (int or list) adds end-of-generation ids.
absl::Status ApplyGenerationConfig(const std::filesystem::path& path, TokenizerData* data) {
  ASSIGN_OR_RETURN(nlohmann::json config, ReadJson(path));
  const std::string file = path.string();
  if (!config.is_object() || !config.contains("eos_token_id")) return absl::OkStatus();
  std::vector<int64_t> ids;
  const nlohmann::json& eos = config["eos_token_id"];
  if (eos.is_number_integer()) {
    ids.push_back(eos.get<int64_t>());
  } else if (eos.is_array()) {
    for (const nlohmann::json& e : eos) {
      if (!e.is_number_integer()) {
        return absl::InvalidArgumentError(file + ": eos_token_id list has a non-integer");
      }
      ids.push_back(e.get<int64_t>());
    }
  } else if (!eos.is_null()) {
    return absl::InvalidArgumentError(file + ": eos_token_id is neither an integer nor a list");
  }
  for (const int64_t id : ids) {
    if (id < 0 || id >= static_cast<int64_t>(data->tokens.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": eos_token_id ", id, " is outside the vocabulary"));
    }
    const auto id32 = static_cast<int32_t>(id);
    if (data->eos_id < 0) {
      data->eos_id = id32;
    } else if (id32 != data->eos_id &&
               std::find(data->extra_eos_ids.begin(), data->extra_eos_ids.end(), id32) ==
                   data->extra_eos_ids.end()) {
      data->extra_eos_ids.push_back(id32);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerData data) {
  if (data.model == "gpt2") {
    auto tokenizer = std::make_unique<BpeTokenizer>();
    RETURN_IF_ERROR(tokenizer->Init(data));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  if (data.model == "llama") {
    auto tokenizer = std::make_unique<SpmTokenizer>();
    RETURN_IF_ERROR(tokenizer->Init(std::move(data)));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  if (data.model == "spm-bpe") {
    auto tokenizer = std::make_unique<SpmBpeTokenizer>();
    RETURN_IF_ERROR(tokenizer->Init(data));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported tokenizer model '", data.model,
                                                 "' (supported: gpt2, llama, spm-bpe)"));
}

absl::StatusOr<TokenizerData> LoadHfTokenizerData(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("tokenizer directory ", dir, " does not exist"));
  }
  const fs::path json_path = root / "tokenizer.json";
  const fs::path spm_path = root / "tokenizer.model";
  const bool has_json = fs::is_regular_file(json_path, ec);
  const bool has_spm = fs::is_regular_file(spm_path, ec);
  TokenizerData data;
  try {
    bool loaded = false;
    if (has_json) {
      ASSIGN_OR_RETURN(nlohmann::json j, ReadJson(json_path));
      if (!(has_spm && IsSentencePieceStyle(j))) {
        RETURN_IF_ERROR(LoadTokenizerJson(j, json_path.string(), &data));
        loaded = true;
      }
    }
    if (!loaded) {
      if (!has_spm) {
        return absl::NotFoundError(
            absl::StrCat(dir, " has neither tokenizer.json nor tokenizer.model"));
      }
      RETURN_IF_ERROR(LoadSentencePieceFile(spm_path, &data));
    }
    const fs::path config_path = root / "tokenizer_config.json";
    if (fs::is_regular_file(config_path, ec)) {
      RETURN_IF_ERROR(ApplyTokenizerConfig(config_path, &data));
    }
    // transformers >= 4.43 saves the template beside the tokenizer as chat_template.jinja (and
    // no longer inside tokenizer_config.json); when both exist the file wins, as it does there.
    const fs::path jinja_path = root / "chat_template.jinja";
    if (fs::is_regular_file(jinja_path, ec)) {
      ASSIGN_OR_RETURN(data.chat_template, ReadFile(jinja_path));
    }
    const fs::path generation_path = root / "generation_config.json";
    if (fs::is_regular_file(generation_path, ec)) {
      RETURN_IF_ERROR(ApplyGenerationConfig(generation_path, &data));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": unexpected JSON content: ", e.what()));
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// StreamDecoder.

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tokenizer_->TokenBytes(id);
  // Find the start of the last (possibly incomplete) UTF-8 sequence within the last 4 bytes.
  const size_t n = pending_.size();
  size_t keep_from = n;
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto byte = static_cast<unsigned char>(pending_[n - back]);
    if ((byte & 0xC0) == 0x80) continue;  // Continuation byte: keep looking for the lead.
    const size_t need = Utf8SeqLen(byte);
    if (byte >= 0xC0 && need > back) keep_from = n - back;  // Incomplete: hold it back.
    break;
  }
  std::string ready = pending_.substr(0, keep_from);
  pending_.erase(0, keep_from);
  return ready;
}

std::string StreamDecoder::Flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& g) {
  TokenizerData d;
  ASSIGN_OR_RETURN(d.model, g.GetString("tokenizer.ggml.model"));
  if (g.Find("tokenizer.ggml.pre")) {
    ASSIGN_OR_RETURN(d.pre, g.GetString("tokenizer.ggml.pre"));
  }
  const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->strs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(g.path(), ": no tokenizer.ggml.tokens"));
  }
  d.tokens = tokens->strs;
  if (const GgufValue* v = g.Find("tokenizer.ggml.token_type")) {
    d.token_types.assign(v->ints.begin(), v->ints.end());
    if (d.token_types.size() != d.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(g.path(), ": token_type length mismatch"));
    }
  }
  if (const GgufValue* v = g.Find("tokenizer.ggml.merges")) d.merges = v->strs;
  if (const GgufValue* v = g.Find("tokenizer.ggml.scores"))
    d.scores.assign(v->floats.begin(), v->floats.end());
  if (const GgufValue* v = g.Find("tokenizer.ggml.bos_token_id"))
    d.bos_id = static_cast<int32_t>(v->i);
  if (const GgufValue* v = g.Find("tokenizer.ggml.eos_token_id"))
    d.eos_id = static_cast<int32_t>(v->i);
  if (const GgufValue* v = g.Find("tokenizer.ggml.eot_token_id"))
    d.extra_eos_ids.push_back(static_cast<int32_t>(v->i));
  if (const GgufValue* v = g.Find("tokenizer.ggml.add_bos_token")) d.add_bos = v->i != 0;
  if (const GgufValue* v = g.Find("tokenizer.ggml.add_space_prefix"))
    d.add_space_prefix = v->i != 0;
  if (const GgufValue* v = g.Find("tokenizer.chat_template")) d.chat_template = v->s;
  return d;
}

}  // namespace eagle
