// Hugging Face decoders for SentencePiece-style vocabularies; see piece_decoder.h.
#include "common/piece_decoder.h"

#include <utf8proc.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"

namespace eagle {

struct PieceDecoder::Step {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind;
  std::string pattern;  // kReplace: the String pattern; kMetaspace: the replacement character
  std::string content;  // kReplace: the replacement; kStrip: the character stripped
  size_t start = 0;     // kStrip
  size_t stop = 0;
  bool prepended = true;  // kMetaspace: prepend_scheme is not "never"
};

namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp;
    const utf8proc_ssize_t n =
        utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + i,
                         static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return false;
    i += static_cast<size_t>(n);
  }
  return true;
}

// The byte spans of the code points of `s` (a byte that starts no valid sequence is one span).
std::vector<std::string_view> CodePoints(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + i,
                                          static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) n = 1;
    out.push_back(s.substr(i, static_cast<size_t>(n)));
    i += static_cast<size_t>(n);
  }
  return out;
}

// A JSON string holding exactly one code point, or an error naming `what`.
absl::StatusOr<std::string> OneCharacter(const nlohmann::json& spec, const char* key,
                                         const std::string& where) {
  if (!spec.contains(key) || !spec[key].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no \"", key, "\" string"));
  }
  std::string s = spec[key].get<std::string>();
  if (CodePoints(s).size() != 1 || !IsValidUtf8(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": \"", key, "\" must be one character, got '", s, "'"));
  }
  return s;
}

std::string TypeOf(const nlohmann::json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) {
    return j["type"].get<std::string>();
  }
  return j.dump().substr(0, 100);
}

std::string StripToken(std::string_view token, std::string_view c, size_t start, size_t stop) {
  const std::vector<std::string_view> chars = CodePoints(token);
  size_t a = 0;
  while (a < start && a < chars.size() && chars[a] == c) ++a;
  size_t b = chars.size();
  for (size_t i = 0; i < stop && b > a && chars[b - 1] == c; ++i) --b;
  std::string out;
  for (size_t i = a; i < b; ++i) out += chars[i];
  return out;
}

std::string MetaspaceToken(std::string_view token, std::string_view replacement, bool drop) {
  std::string out;
  for (const std::string_view c : CodePoints(token)) {
    if (c == replacement) {
      if (!drop) out.push_back(' ');
    } else {
      out += c;
    }
  }
  return out;
}

// tokenizers' ByteFallback::decode_chain.
std::vector<std::string> FallBackToBytes(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  auto flush = [&] {
    if (bytes.empty()) return;
    if (IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back(kReplacementCharacter);
    }
    bytes.clear();
  };
  for (std::string& token : tokens) {
    const int byte = ByteTokenValue(token);
    if (byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
    } else {
      flush();
      out.push_back(std::move(token));
    }
  }
  flush();
  return out;
}

}  // namespace

int ByteTokenValue(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

PieceDecoder::PieceDecoder() = default;
PieceDecoder::~PieceDecoder() = default;

absl::StatusOr<std::shared_ptr<const PieceDecoder>> PieceDecoder::FromJson(
    const nlohmann::json& spec, const std::string& file) {
  std::shared_ptr<PieceDecoder> d(new PieceDecoder());
  // A field of an unexpected JSON type that a check missed is a bad file, not a crash.
  try {
    if (!spec.is_null()) RETURN_IF_ERROR(d->Add(spec, file));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": decoder: ", e.what()));
  }
  return std::shared_ptr<const PieceDecoder>(std::move(d));
}

absl::Status PieceDecoder::Add(const nlohmann::json& spec, const std::string& file) {
  const std::string type = TypeOf(spec);
  const std::string where = absl::StrCat(file, ": decoder ", type);
  auto step = std::make_unique<Step>();
  if (type == "Sequence") {
    if (!spec.contains("decoders") || !spec["decoders"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"decoders\" is not a list"));
    }
    for (const nlohmann::json& inner : spec["decoders"]) RETURN_IF_ERROR(Add(inner, file));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    if (!spec.contains("content") || !spec["content"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no \"content\" string"));
    }
    const nlohmann::json pattern = spec.value("pattern", nlohmann::json());
    if (pattern.is_object() && pattern.contains("Regex")) {
      return absl::UnimplementedError(
          absl::StrCat(where, " with a Regex pattern is not supported (only String patterns)"));
    }
    if (!pattern.is_object() || !pattern.contains("String") || !pattern["String"].is_string() ||
        pattern["String"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the pattern is not {\"String\": \"...\"}"));
    }
    step->kind = Step::Kind::kReplace;
    step->pattern = pattern["String"].get<std::string>();
    step->content = spec["content"].get<std::string>();
  } else if (type == "ByteFallback") {
    step->kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step->kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step->kind = Step::Kind::kStrip;
    ASSIGN_OR_RETURN(step->content, OneCharacter(spec, "content", where));
    for (const char* key : {"start", "stop"}) {
      if (!spec.contains(key) || !spec[key].is_number_unsigned()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": \"", key, "\" is not a non-negative integer"));
      }
    }
    step->start = spec["start"].get<size_t>();
    step->stop = spec["stop"].get<size_t>();
  } else if (type == "Metaspace") {
    step->kind = Step::Kind::kMetaspace;
    ASSIGN_OR_RETURN(step->pattern, OneCharacter(spec, "replacement", where));
    if (spec.contains("prepend_scheme")) {
      const nlohmann::json& scheme = spec["prepend_scheme"];
      if (!scheme.is_string() || (scheme != "always" && scheme != "first" && scheme != "never")) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": prepend_scheme must be \"always\", \"first\" or \"never\", got ",
                         scheme.dump()));
      }
      step->prepended = scheme != "never";
    } else {
      if (spec.contains("add_prefix_space") && !spec["add_prefix_space"].is_boolean()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": add_prefix_space must be true or false, got ",
                         spec["add_prefix_space"].dump()));
      }
      step->prepended = spec.value("add_prefix_space", true);
    }
  } else {
    return absl::UnimplementedError(absl::StrCat(
        where,
        " is not supported for a SentencePiece-style tokenizer (supported: Sequence, Replace, "
        "ByteFallback, Fuse, Strip, Metaspace)"));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::string PieceDecoder::Decode(std::vector<std::string> tokens) const {
  for (const auto& step : steps_) {
    switch (step->kind) {
      case Step::Kind::kReplace:
        for (std::string& t : tokens) t = absl::StrReplaceAll(t, {{step->pattern, step->content}});
        break;
      case Step::Kind::kByteFallback:
        tokens = FallBackToBytes(std::move(tokens));
        break;
      case Step::Kind::kFuse: {
        std::string fused;
        for (const std::string& t : tokens) fused += t;
        tokens.assign(1, std::move(fused));
        break;
      }
      case Step::Kind::kStrip:
        for (std::string& t : tokens) t = StripToken(t, step->content, step->start, step->stop);
        break;
      case Step::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = MetaspaceToken(tokens[i], step->pattern, i == 0 && step->prepended);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string PieceDecoder::TokenBytes(std::string_view token) const {
  std::string text(token);
  bool fused = false;
  for (const auto& step : steps_) {
    switch (step->kind) {
      case Step::Kind::kReplace:
        text = absl::StrReplaceAll(text, {{step->pattern, step->content}});
        break;
      case Step::Kind::kByteFallback:
        if (const int byte = ByteTokenValue(text); byte >= 0) {
          text.assign(1, static_cast<char>(byte));
        }
        break;
      case Step::Kind::kFuse:
        fused = true;
        break;
      case Step::Kind::kStrip:
        if (!fused) text = StripToken(text, step->content, step->start, step->stop);
        break;
      case Step::Kind::kMetaspace:
        text = MetaspaceToken(text, step->pattern, /*drop=*/false);
        break;
    }
  }
  return text;
}

}  // namespace eagle
