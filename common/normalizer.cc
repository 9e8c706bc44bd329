// Hugging Face normalizers; see normalizer.h.
#include "common/normalizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace eagle {

struct Normalizer::Step {
  enum class Kind { kUnicode, kLowercase, kStrip, kStripAccents, kPrepend, kReplace };
  Kind kind;
  int utf8proc_options = 0;  // kUnicode
  bool left = false;         // kStrip
  bool right = false;
  std::string text;             // kPrepend: the prefix; kReplace: the content
  std::string literal;          // kReplace with a String pattern
  pcre2_code* regex = nullptr;  // kReplace with a Regex pattern

  ~Step() {
    if (regex != nullptr) pcre2_code_free(regex);
  }
};

namespace {

bool DecodeAt(std::string_view s, size_t* i, int32_t* cp) {
  const utf8proc_ssize_t n =
      utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data()) + *i,
                       static_cast<utf8proc_ssize_t>(s.size() - *i), cp);
  if (n <= 0) return false;
  *i += static_cast<size_t>(n);
  return true;
}

void Encode(int32_t cp, std::string* out) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(cp, buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Unicode White_Space, as Rust's char::is_whitespace.
bool IsWhiteSpace(int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Applies `f` to each code point; invalid UTF-8 leaves the text unchanged.
template <typename F>
std::string MapCodePoints(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    int32_t cp;
    if (!DecodeAt(s, &i, &cp)) return std::string(s);
    f(cp, &out);
  }
  return out;
}

std::string Unicode(std::string_view s, int options) {
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) return std::string(s);
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

std::string Strip(std::string_view s, bool left, bool right) {
  std::vector<std::pair<size_t, size_t>> spans;  // byte span of each code point
  size_t i = 0;
  std::vector<int32_t> cps;
  while (i < s.size()) {
    const size_t start = i;
    int32_t cp;
    if (!DecodeAt(s, &i, &cp)) return std::string(s);
    spans.emplace_back(start, i);
    cps.push_back(cp);
  }
  size_t a = 0, b = cps.size();
  if (left) {
    while (a < b && IsWhiteSpace(cps[a])) ++a;
  }
  if (right) {
    while (b > a && IsWhiteSpace(cps[b - 1])) --b;
  }
  if (a == b) return "";
  return std::string(s.substr(spans[a].first, spans[b - 1].second - spans[a].first));
}

std::string ReplaceRegex(std::string_view s, pcre2_code* re, const std::string& content) {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  std::string out;
  size_t pos = 0;
  size_t copied = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  while (pos <= s.size()) {
    const int rc = pcre2_match(re, subject, s.size(), pos, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.append(s.substr(copied, ov[0] - copied));
    out += content;
    copied = ov[1];
    if (ov[1] == ov[0]) {  // an empty match: step over one code point
      if (ov[1] >= s.size()) break;
      size_t next = ov[1];
      int32_t cp;
      if (!DecodeAt(s, &next, &cp)) next = ov[1] + 1;
      out.append(s.substr(ov[1], next - ov[1]));
      copied = next;
      pos = next;
    } else {
      pos = ov[1];
    }
  }
  out.append(s.substr(std::min(copied, s.size())));
  pcre2_match_data_free(md);
  return out;
}

std::string TypeOf(const nlohmann::json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string())
    return j["type"].get<std::string>();
  return j.dump().substr(0, 100);
}

}  // namespace

Normalizer::Normalizer() = default;
Normalizer::~Normalizer() = default;

absl::StatusOr<std::shared_ptr<const Normalizer>> Normalizer::FromJson(const nlohmann::json& spec,
                                                                       const std::string& file) {
  std::shared_ptr<Normalizer> n(new Normalizer());
  // A field of an unexpected JSON type that a check above missed is a bad file, not a crash.
  try {
    if (!spec.is_null()) RETURN_IF_ERROR(n->Add(spec, file));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": normalizer: ", e.what()));
  }
  return std::shared_ptr<const Normalizer>(std::move(n));
}

absl::Status Normalizer::Add(const nlohmann::json& spec, const std::string& file) {
  const std::string type = TypeOf(spec);
  auto step = std::make_unique<Step>();
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": normalizer ", type, ": ", what));
  };
  if (type == "Sequence") {
    if (!spec.contains("normalizers") || !spec["normalizers"].is_array()) {
      return bad("\"normalizers\" is not a list");
    }
    for (const nlohmann::json& inner : spec["normalizers"]) RETURN_IF_ERROR(Add(inner, file));
    return absl::OkStatus();
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step->kind = Step::Kind::kUnicode;
    step->utf8proc_options =
        UTF8PROC_STABLE | (type[type.size() - 1] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
        (type.size() == 4 ? UTF8PROC_COMPAT : 0);
  } else if (type == "Lowercase") {
    step->kind = Step::Kind::kLowercase;
  } else if (type == "StripAccents") {
    step->kind = Step::Kind::kStripAccents;
  } else if (type == "Strip") {
    step->kind = Step::Kind::kStrip;
    for (const char* key : {"strip_left", "strip_right"}) {
      if (spec.contains(key) && !spec[key].is_boolean()) {
        return bad(absl::StrCat("\"", key, "\" must be true or false, got ", spec[key].dump()));
      }
    }
    step->left = spec.value("strip_left", true);
    step->right = spec.value("strip_right", true);
  } else if (type == "Prepend") {
    if (!spec.contains("prepend") || !spec["prepend"].is_string())
      return bad("no \"prepend\" string");
    step->kind = Step::Kind::kPrepend;
    step->text = spec["prepend"].get<std::string>();
  } else if (type == "Replace") {
    if (!spec.contains("content") || !spec["content"].is_string())
      return bad("no \"content\" string");
    if (!spec.contains("pattern") || !spec["pattern"].is_object())
      return bad("no \"pattern\" object");
    step->kind = Step::Kind::kReplace;
    step->text = spec["content"].get<std::string>();
    const nlohmann::json& pattern = spec["pattern"];
    if (pattern.contains("String") && pattern["String"].is_string()) {
      step->literal = pattern["String"].get<std::string>();
      if (step->literal.empty()) return bad("empty String pattern");
    } else if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      const std::string re = pattern["Regex"].get<std::string>();
      int err = 0;
      PCRE2_SIZE offset = 0;
      step->regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(),
                                  PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
      if (step->regex == nullptr) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(err, message, sizeof(message));
        return bad(absl::StrCat("regex '", re, "' at ", offset, ": ",
                                reinterpret_cast<const char*>(message)));
      }
    } else {
      return bad("the pattern is neither {\"String\": ...} nor {\"Regex\": ...}");
    }
  } else {
    return absl::UnimplementedError(absl::StrCat(
        file, ": normalizer ", type,
        " is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
        "StripAccents, Prepend, Replace)"));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

std::string Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const auto& step : steps_) {
    switch (step->kind) {
      case Step::Kind::kUnicode:
        s = Unicode(s, step->utf8proc_options);
        break;
      case Step::Kind::kLowercase:
        s = MapCodePoints(s, [](int32_t cp, std::string* out) {
          if (cp == 0x130) {  // the one unconditional one-to-two mapping: "i" + U+0307
            *out += "i\xCC\x87";
          } else {
            Encode(utf8proc_tolower(cp), out);
          }
        });
        break;
      case Step::Kind::kStripAccents:
        s = MapCodePoints(s, [](int32_t cp, std::string* out) {
          const utf8proc_category_t c = utf8proc_category(cp);
          if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME) {
            Encode(cp, out);
          }
        });
        break;
      case Step::Kind::kStrip:
        s = Strip(s, step->left, step->right);
        break;
      case Step::Kind::kPrepend:
        if (!s.empty()) s = step->text + s;
        break;
      case Step::Kind::kReplace:
        if (step->regex != nullptr) {
          s = ReplaceRegex(s, step->regex, step->text);
        } else {
          std::string out;
          size_t start = 0;
          for (size_t at = s.find(step->literal); at != std::string::npos;
               at = s.find(step->literal, start)) {
            out.append(s, start, at - start);
            out += step->text;
            start = at + step->literal.size();
          }
          out.append(s, start, std::string::npos);
          s = std::move(out);
        }
        break;
    }
  }
  return s;
}

}  // namespace eagle
