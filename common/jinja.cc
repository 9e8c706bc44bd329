// Jinja subset renderer; see jinja.h.
//
// Internally, parse and render errors are thrown as TemplateError and turned into a Status at
// the two public entry points; no exception leaves this file.
#include "common/jinja.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace eagle::jinja {
namespace {

struct TemplateError {
  absl::StatusCode code;
  std::string message;
};

[[noreturn]] void Fail(absl::StatusCode code, int line, std::string_view what) {
  throw TemplateError{
      code, line > 0 ? absl::StrCat("line ", line, ": ", std::string(what)) : std::string(what)};
}
[[noreturn]] void Syntax(int line, std::string_view what) {
  Fail(absl::StatusCode::kInvalidArgument, line, what);
}
[[noreturn]] void Unsupported(int line, std::string_view what) {
  Fail(absl::StatusCode::kUnimplemented, line, what);
}

// ---------------------------------------------------------------------------------------------
// Values.

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(const Args&, const Kwargs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;
  static Value Undefined(std::string name = "") {
    Value v;
    v.s_ = std::move(name);
    return v;
  }
  static Value None() { return Make(Kind::kNone); }
  static Value Bool(bool b) {
    Value v = Make(Kind::kBool);
    v.i_ = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v = Make(Kind::kInt);
    v.i_ = i;
    return v;
  }
  static Value Float(double f) {
    Value v = Make(Kind::kFloat);
    v.f_ = f;
    return v;
  }
  static Value String(std::string s) {
    Value v = Make(Kind::kString);
    v.s_ = std::move(s);
    return v;
  }
  static Value MakeList(List l, bool is_tuple = false) {
    Value v = Make(Kind::kList);
    v.list_ = std::make_shared<const List>(std::move(l));
    v.tuple_ = is_tuple;
    return v;
  }
  static Value MakeTuple(List l) { return MakeList(std::move(l), /*is_tuple=*/true); }
  static Value MakeDict(Dict d, bool is_namespace = false) {
    Value v = Make(Kind::kDict);
    v.dict_ = std::make_shared<const Dict>(std::move(d));
    v.namespace_ = is_namespace;
    return v;
  }
  static Value MakeFunction(std::string name, Function fn) {
    Value v = Make(Kind::kFunction);
    v.s_ = std::move(name);
    v.fn_ = std::make_shared<const Function>(std::move(fn));
    return v;
  }

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool undefined() const { return kind_ == Kind::kUndefined; }
  bool number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_namespace() const { return namespace_; }
  bool is_tuple() const { return tuple_; }  // a list that prints as a Python tuple
  int64_t i() const { return i_; }
  double f() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(i_); }
  const std::string& s() const { return s_; }  // string text, or an undefined value's name
  const List& list() const { return *list_; }
  const Dict& dict() const { return *dict_; }
  const Function& fn() const { return *fn_; }

  const Value* Find(std::string_view key) const {
    if (kind_ != Kind::kDict) return nullptr;
    for (const auto& [k, v] : *dict_) {
      if (k == key) return &v;
    }
    return nullptr;
  }

 private:
  static Value Make(Kind k) {
    Value v;
    v.kind_ = k;
    return v;
  }
  Kind kind_ = Kind::kUndefined;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<const List> list_;
  std::shared_ptr<const Dict> dict_;
  std::shared_ptr<const Function> fn_;
  bool namespace_ = false;
  bool tuple_ = false;
};

const char* TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kFunction:
      return "function";
  }
  return "?";
}

Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value::Int(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(FromJson(e));
      return Value::MakeList(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      d.reserve(j.size());
      for (const auto& [k, v] : j.items()) d.emplace_back(k, FromJson(v));
      return Value::MakeDict(std::move(d));
    }
    default:
      return Value::None();
  }
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return v.i() != 0;
    case Value::Kind::kFloat:
      return v.f() != 0;
    case Value::Kind::kString:
      return !v.s().empty();
    case Value::Kind::kList:
      return !v.list().empty();
    case Value::Kind::kDict:
      return !v.dict().empty();
    case Value::Kind::kFunction:
      return true;
  }
  return false;
}

// Python's float repr: shortest round-trip digits, fixed notation for exponents in [-4, 16).
std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  bool negative = false;
  if (!mantissa.empty() && mantissa[0] == '-') {
    negative = true;
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    const std::string ed = std::to_string(exp < 0 ? -exp : exp);
    out += (ed.size() < 2 ? "0" : "") + ed;
  }
  return negative ? "-" + out : out;
}

// Decodes one UTF-8 code point at s[*i] (advancing *i); invalid bytes decode as themselves.
uint32_t NextCodePoint(std::string_view s, size_t* i) {
  const auto c = static_cast<unsigned char>(s[*i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (*i + n > s.size()) n = 1;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3F);
  *i += n;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Byte offsets of each code point of `s`, plus s.size() at the end.
std::vector<size_t> CodePointOffsets(std::string_view s) {
  std::vector<size_t> offsets;
  size_t i = 0;
  while (i < s.size()) {
    offsets.push_back(i);
    NextCodePoint(s, &i);
  }
  offsets.push_back(s.size());
  return offsets;
}

std::string StringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

std::string Repr(const Value& v);

// Python's str().
std::string Str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return v.s();
    default:
      return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.i() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.i());
    case Value::Kind::kFloat:
      return FloatRepr(v.f());
    case Value::Kind::kString:
      return StringRepr(v.s());
    case Value::Kind::kList: {
      std::string out = v.is_tuple() ? "(" : "[";
      for (size_t k = 0; k < v.list().size(); ++k) {
        if (k) out += ", ";
        out += Repr(v.list()[k]);
      }
      if (v.is_tuple() && v.list().size() == 1) out += ",";
      return out + (v.is_tuple() ? ")" : "]");
    }
    case Value::Kind::kDict: {
      std::string out = v.is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, e] : v.dict()) {
        if (!first) out += ", ";
        first = false;
        out += StringRepr(k) + ": " + Repr(e);
      }
      return out + (v.is_namespace() ? "}>" : "}");
    }
    case Value::Kind::kFunction:
      return "<function " + v.s() + ">";
  }
  return "";
}

// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort_keys).
void JsonString(std::string_view s, std::string* out) {
  *out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          *out += buf;
        } else {
          *out += c;
        }
    }
  }
  *out += '"';
}

struct JsonStyle {
  int indent = -1;  // < 0: one line
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};

void Json(const Value& v, const JsonStyle& style, int depth, std::string* out) {
  auto newline = [&](int d) {
    if (style.indent < 0) return;
    *out += '\n';
    out->append(static_cast<size_t>(style.indent) * d, ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      Fail(absl::StatusCode::kInvalidArgument, 0,
           "tojson: Object of type Undefined is not JSON serializable");
    case Value::Kind::kNone:
      *out += "null";
      return;
    case Value::Kind::kBool:
      *out += v.i() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      *out += std::to_string(v.i());
      return;
    case Value::Kind::kFloat: {
      const double f = v.f();
      *out += std::isnan(f)   ? "NaN"
              : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity")
                              : FloatRepr(f);
      return;
    }
    case Value::Kind::kString:
      JsonString(v.s(), out);
      return;
    case Value::Kind::kList: {
      if (v.list().empty()) {
        *out += "[]";
        return;
      }
      *out += '[';
      for (size_t k = 0; k < v.list().size(); ++k) {
        if (k) *out += style.item_sep;
        newline(depth + 1);
        Json(v.list()[k], style, depth + 1, out);
      }
      newline(depth);
      *out += ']';
      return;
    }
    case Value::Kind::kDict: {
      if (v.dict().empty()) {
        *out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& e : v.dict()) items.push_back(&e);
      if (style.sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      *out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) *out += style.item_sep;
        newline(depth + 1);
        JsonString(items[k]->first, out);
        *out += style.key_sep;
        Json(items[k]->second, style, depth + 1, out);
      }
      newline(depth);
      *out += '}';
      return;
    }
    case Value::Kind::kFunction:
      Fail(absl::StatusCode::kInvalidArgument, 0, "tojson: a function is not JSON serializable");
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.number() && b.number()) {
    if (a.is(Value::Kind::kFloat) || b.is(Value::Kind::kFloat)) return a.f() == b.f();
    return a.i() == b.i();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.s() == b.s();
    case Value::Kind::kList:
      if (a.list().size() != b.list().size()) return false;
      for (size_t k = 0; k < a.list().size(); ++k) {
        if (!Equal(a.list()[k], b.list()[k])) return false;
      }
      return true;
    case Value::Kind::kDict:
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict()) {
        const Value* other = b.Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    case Value::Kind::kFunction:
      return a.s() == b.s();
    default:
      return false;
  }
}

// Python's `<` for the types templates compare (numbers, strings, lists).
bool Less(const Value& a, const Value& b, int line) {
  if (a.number() && b.number()) {
    if (a.is(Value::Kind::kFloat) || b.is(Value::Kind::kFloat)) return a.f() < b.f();
    return a.i() < b.i();
  }
  if (a.is(Value::Kind::kString) && b.is(Value::Kind::kString)) return a.s() < b.s();
  if (a.is(Value::Kind::kList) && b.is(Value::Kind::kList)) {
    const List& x = a.list();
    const List& y = b.list();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (Less(x[k], y[k], line)) return true;
      if (Less(y[k], x[k], line)) return false;
    }
    return x.size() < y.size();
  }
  Fail(absl::StatusCode::kInvalidArgument, line,
       absl::StrCat("'<' not supported between ", TypeName(a), " and ", TypeName(b)));
}

std::string AsciiLower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}
std::string AsciiUpper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}
bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
std::string AsciiTitle(std::string s) {
  bool prev_letter = false;
  for (char& c : s) {
    const bool letter = IsAsciiAlpha(c);
    if (letter) {
      c = prev_letter ? AsciiLower(std::string(1, c))[0] : AsciiUpper(std::string(1, c))[0];
    }
    prev_letter = letter;
  }
  return s;
}
std::string AsciiCapitalize(std::string s) {
  s = AsciiLower(std::move(s));
  if (!s.empty()) s[0] = AsciiUpper(s.substr(0, 1))[0];
  return s;
}
bool IsPySpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
         (c >= '\x1c' && c <= '\x1f');
}
std::string Strip(std::string_view s, const Value& chars, bool left, bool right) {
  auto strip_char = [&](char c) {
    return chars.is(Value::Kind::kString) ? chars.s().find(c) != std::string::npos : IsPySpace(c);
  };
  size_t a = 0;
  size_t b = s.size();
  if (left) {
    while (a < b && strip_char(s[a])) ++a;
  }
  if (right) {
    while (b > a && strip_char(s[b - 1])) --b;
  }
  return std::string(s.substr(a, b - a));
}
std::vector<std::string> SplitLines(std::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '\n' || s[k] == '\r') {
      lines.emplace_back(s.substr(start, k - start));
      if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
      start = k + 1;
    }
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Template text -> segments (text, {{ output }}, {% statement %}), with Jinja2's whitespace
// rules: trim_blocks, lstrip_blocks, and the '-' / '+' markers.

struct Segment {
  enum class Kind { kText, kOutput, kStatement };
  Kind kind;
  std::string text;
  int line;
};

// Index of the closing delimiter `close` of a tag whose body starts at `from`, skipping quoted
// strings; npos when there is none.
size_t FindClose(std::string_view src, size_t from, std::string_view close) {
  char quote = 0;
  for (size_t k = from; k < src.size(); ++k) {
    const char c = src[k];
    if (quote) {
      if (c == '\\') {
        ++k;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (src.compare(k, close.size(), close) == 0) {
      return k;
    }
  }
  return std::string_view::npos;
}

int CountLines(std::string_view s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

std::vector<Segment> Lex(std::string_view raw) {
  std::string src;
  src.reserve(raw.size());
  for (size_t k = 0; k < raw.size(); ++k) {  // Jinja2 normalizes newlines to "\n"
    if (raw[k] == '\r') {
      src += '\n';
      if (k + 1 < raw.size() && raw[k + 1] == '\n') ++k;
    } else {
      src += raw[k];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();  // keep_trailing_newline=False

  std::vector<Segment> out;
  size_t pos = 0;
  int line = 1;
  bool strip_next_all = false;  // previous tag ended with '-'
  bool strip_next_nl = false;   // previous tag was a block or comment (trim_blocks)
  bool line_starting = true;    // the text that follows starts a line
  while (pos <= src.size()) {
    size_t open = std::string::npos;
    for (size_t k = src.find('{', pos); k != std::string::npos; k = src.find('{', k + 1)) {
      if (k + 1 < src.size() && (src[k + 1] == '{' || src[k + 1] == '%' || src[k + 1] == '#')) {
        open = k;
        break;
      }
    }
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    const int text_line = line;
    // Left side of the text: what the previous tag asked for.
    if (strip_next_all) {
      size_t a = 0;
      while (a < text.size() && IsPySpace(text[a])) ++a;
      text.erase(0, a);
    } else if (strip_next_nl && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    char kind = 0;
    char marker = 0;
    if (open != std::string::npos) {
      kind = src[open + 1];
      marker = open + 2 < src.size() ? src[open + 2] : 0;
      if (marker == '-') {
        size_t b = text.size();
        while (b > 0 && IsPySpace(text[b - 1])) --b;
        text.resize(b);
      } else if ((kind == '%' || kind == '#') && marker != '+') {  // lstrip_blocks
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if (nl != std::string::npos || line_starting) {
          bool blank = true;
          for (size_t k = l_pos; k < text.size(); ++k) blank &= text[k] == ' ' || text[k] == '\t';
          if (blank) text.resize(l_pos);
        }
      }
    }
    if (!text.empty()) out.push_back({Segment::Kind::kText, text, text_line});
    line += CountLines(src.substr(pos, open == std::string::npos ? std::string::npos : open - pos));
    if (open == std::string::npos) break;

    const std::string_view close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    const size_t body = open + 2 + ((marker == '-' || marker == '+') ? 1 : 0);
    const size_t end = kind == '#' ? src.find("#}", body) : FindClose(src, body, close);
    if (end == std::string::npos) {
      Syntax(line, kind == '{'   ? "'{{' is never closed"
                   : kind == '%' ? "'{%' is never closed"
                                 : "'{#' comment is never closed");
    }
    size_t inner_end = end;
    const char close_marker = end > body ? src[end - 1] : 0;
    if (close_marker == '-' || (close_marker == '+' && kind != '{')) --inner_end;
    const std::string inner = src.substr(body, inner_end - body);
    if (kind == '{') {
      out.push_back({Segment::Kind::kOutput, inner, line});
    } else if (kind == '%') {
      out.push_back({Segment::Kind::kStatement, inner, line});
    }
    line += CountLines(src.substr(open, end + 2 - open));
    pos = end + 2;
    strip_next_all = close_marker == '-';
    strip_next_nl = kind != '{' && close_marker != '+';
    // Whether the text after this tag starts a line, as Jinja2 decides it for lstrip_blocks:
    // the tag's match ended in a newline (a trimmed one, or whitespace eaten by '-').
    line_starting = false;
    if (strip_next_all) {
      size_t a = pos;
      while (a < src.size() && IsPySpace(src[a])) ++a;
      line_starting = a > pos && src[a - 1] == '\n';
    } else if (strip_next_nl && pos < src.size() && src[pos] == '\n') {
      line_starting = true;
    }
    if (pos > src.size()) break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expression tokens.

struct Token {
  enum class Kind { kName, kInt, kFloat, kString, kOp, kEnd };
  Kind kind;
  std::string text;  // name, operator, or the decoded string literal
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

// Python's unicode-escape decoding of a string literal's body, as Jinja2 applies it.
std::string Unescape(std::string_view s, int line) {
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] != '\\' || k + 1 == s.size()) {
      out += s[k];
      continue;
    }
    const char c = s[++k];
    switch (c) {
      case '\n':
        break;  // line continuation
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
      case 'u':
      case 'U': {
        const size_t n = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (k + n >= s.size()) Syntax(line, "truncated \\x/\\u escape in a string literal");
        uint32_t cp = 0;
        for (size_t d = 1; d <= n; ++d) {
          const char h = k + d < s.size() ? s[k + d] : 0;
          const int v = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
          if (v < 0) Syntax(line, "malformed \\x/\\u escape in a string literal");
          cp = cp * 16 + static_cast<uint32_t>(v);
        }
        if (cp > 0x10FFFF) Syntax(line, "\\U escape out of range");
        AppendUtf8(cp, &out);
        k += n;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = static_cast<uint32_t>(c - '0');
          for (int d = 0; d < 2 && k + 1 < s.size() && s[k + 1] >= '0' && s[k + 1] <= '7'; ++d) {
            cp = cp * 8 + static_cast<uint32_t>(s[++k] - '0');
          }
          AppendUtf8(cp, &out);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

std::vector<Token> Tokenize(std::string_view s, int line) {
  static const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                     "/",  "%",  "~",  "<",  ">",  "(",  ")", "[", "]",
                                     "{",  "}",  ",",  ":",  ".",  "|",  "="};
  std::vector<Token> out;
  size_t k = 0;
  while (k < s.size()) {
    const char c = s[k];
    if (c == '\n') {
      ++line;
      ++k;
      continue;
    }
    if (IsPySpace(c)) {
      ++k;
      continue;
    }
    if (IsAsciiAlpha(c) || c == '_') {
      size_t e = k;
      while (e < s.size() && (IsAsciiAlpha(s[e]) || s[e] == '_' || (s[e] >= '0' && s[e] <= '9')))
        ++e;
      out.push_back({Token::Kind::kName, std::string(s.substr(k, e - k)), 0, 0, line});
      k = e;
      continue;
    }
    if (c >= '0' && c <= '9') {
      size_t e = k;
      bool is_float = false;
      while (e < s.size() && ((s[e] >= '0' && s[e] <= '9') || s[e] == '_')) ++e;
      if (e + 1 < s.size() && s[e] == '.' && s[e + 1] >= '0' && s[e + 1] <= '9') {
        is_float = true;
        ++e;
        while (e < s.size() && s[e] >= '0' && s[e] <= '9') ++e;
      }
      if (e < s.size() && (s[e] == 'e' || s[e] == 'E')) {
        size_t x = e + 1;
        if (x < s.size() && (s[x] == '+' || s[x] == '-')) ++x;
        if (x < s.size() && s[x] >= '0' && s[x] <= '9') {
          is_float = true;
          e = x;
          while (e < s.size() && s[e] >= '0' && s[e] <= '9') ++e;
        }
      }
      std::string text;
      for (char d : s.substr(k, e - k)) {
        if (d != '_') text += d;
      }
      Token t{is_float ? Token::Kind::kFloat : Token::Kind::kInt, text, 0, 0, line};
      if (is_float) {
        t.f = std::strtod(text.c_str(), nullptr);
      } else {
        const auto r = std::from_chars(text.data(), text.data() + text.size(), t.i);
        if (r.ec != std::errc()) Syntax(line, "integer literal '" + text + "' is out of range");
      }
      out.push_back(std::move(t));
      k = e;
      continue;
    }
    if (c == '"' || c == '\'') {
      size_t e = k + 1;
      while (e < s.size() && s[e] != c) {
        if (s[e] == '\\') ++e;
        ++e;
      }
      if (e >= s.size()) Syntax(line, "unterminated string literal");
      const std::string_view body = s.substr(k + 1, e - k - 1);
      out.push_back({Token::Kind::kString, Unescape(body, line), 0, 0, line});
      line += CountLines(body);
      k = e + 1;
      continue;
    }
    bool matched = false;
    for (const char* op : kOps) {
      const std::string_view o(op);
      if (s.compare(k, o.size(), o) == 0) {
        out.push_back({Token::Kind::kOp, std::string(o), 0, 0, line});
        k += o.size();
        matched = true;
        break;
      }
    }
    if (!matched) Syntax(line, absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }
  out.push_back({Token::Kind::kEnd, "", 0, 0, line});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Syntax tree.

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kAttr,
    kItem,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kNeg,
    kNot,
    kBinary,
    kCompare,
    kAnd,
    kOr,
    kCond,
    kList,
    kDict
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;           // name, attribute, operator, filter or test name
  std::vector<ExprPtr> args;  // operands; for kSlice and kCond some may be null
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: the operator between args[k] and args[k + 1]
  bool negated = false;          // `is not`
};

ExprPtr NewExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

const std::set<std::string>& KnownFilters() {
  static const auto* const kSet = new std::set<std::string>{
      "abs",     "capitalize", "count", "d",      "default", "dictsort",   "first",
      "float",   "indent",     "int",   "items",  "join",    "last",       "length",
      "list",    "lower",      "map",   "max",    "min",     "reject",     "rejectattr",
      "replace", "reverse",    "round", "safe",   "select",  "selectattr", "sort",
      "string",  "sum",        "title", "tojson", "trim",    "unique",     "upper"};
  return *kSet;
}

const std::set<std::string>& KnownTests() {
  static const auto* const kSet = new std::set<std::string>{
      "boolean", "callable", "defined", "divisibleby", "eq",        "equalto", "even",
      "false",   "float",    "ge",      "gt",          "in",        "integer", "iterable",
      "le",      "lower",    "lt",      "mapping",     "ne",        "none",    "number",
      "odd",     "sequence", "string",  "true",        "undefined", "upper",   "==",
      "!=",      "<",        "<=",      ">",           ">="};
  return *kSet;
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  const Token& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  bool AtEnd() const { return Peek().kind == Token::Kind::kEnd; }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOp && Peek(ahead).text == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  int line() const { return Peek().line; }
  Token Next() { return t_[std::min(p_++, t_.size() - 1)]; }
  void Expect(std::string_view op) {
    if (!IsOp(op))
      Syntax(line(),
             absl::StrCat("expected '", std::string(op), "', got '", Describe(Peek()), "'"));
    ++p_;
  }
  std::string ExpectName() {
    if (Peek().kind != Token::Kind::kName) {
      Syntax(line(), absl::StrCat("expected a name, got '", Describe(Peek()), "'"));
    }
    return Next().text;
  }
  void ExpectEnd() {
    if (!AtEnd()) Syntax(line(), absl::StrCat("unexpected '", Describe(Peek()), "'"));
  }
  static std::string Describe(const Token& t) {
    return t.kind == Token::Kind::kEnd ? "end of tag" : t.text;
  }

  // An expression, or a tuple of them without parentheses (a, b).
  ExprPtr Tuple(bool with_condexpr = true) {
    const int ln = line();
    ExprPtr first = Expression(with_condexpr);
    if (!IsOp(",")) return first;
    auto tuple = NewExpr(Expr::Kind::kList, ln);
    tuple->name = "tuple";
    tuple->args.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      if (AtEnd() || IsOp(")") || IsOp("=")) break;
      tuple->args.push_back(Expression(with_condexpr));
    }
    return tuple;
  }

  ExprPtr Expression(bool with_condexpr = true) {
    ExprPtr e = Or();
    if (with_condexpr) {
      while (IsName("if")) {
        const int ln = line();
        Next();
        auto cond = NewExpr(Expr::Kind::kCond, ln);
        cond->args.push_back(std::move(e));
        cond->args.push_back(Or());
        if (IsName("else")) {
          Next();
          cond->args.push_back(Expression());
        } else {
          cond->args.push_back(nullptr);
        }
        e = std::move(cond);
      }
    }
    return e;
  }

 private:
  ExprPtr Binary(Expr::Kind kind, std::string op, ExprPtr a, ExprPtr b, int ln) {
    auto e = NewExpr(kind, ln);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }
  ExprPtr Or() {
    ExprPtr e = And();
    while (IsName("or")) {
      const int ln = line();
      Next();
      e = Binary(Expr::Kind::kOr, "or", std::move(e), And(), ln);
    }
    return e;
  }
  ExprPtr And() {
    ExprPtr e = Not();
    while (IsName("and")) {
      const int ln = line();
      Next();
      e = Binary(Expr::Kind::kAnd, "and", std::move(e), Not(), ln);
    }
    return e;
  }
  ExprPtr Not() {
    if (IsName("not")) {
      const int ln = line();
      Next();
      auto e = NewExpr(Expr::Kind::kNot, ln);
      e->args.push_back(Not());
      return e;
    }
    return Compare();
  }
  // Comparisons chain as in Python: a < b < c is (a < b) and (b < c), b evaluated once.
  ExprPtr Compare() {
    const int ln = line();
    ExprPtr first = Math1();
    auto chain = NewExpr(Expr::Kind::kCompare, ln);
    while (true) {
      std::string op;
      if (Peek().kind == Token::Kind::kOp &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">="))) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (chain->args.empty()) chain->args.push_back(std::move(first));
      chain->ops.push_back(op);
      chain->args.push_back(Math1());
    }
    return chain->args.empty() ? std::move(first) : std::move(chain);
  }
  ExprPtr Math1() {
    ExprPtr e = Concat();
    while (IsOp("+") || IsOp("-")) {
      const int ln = line();
      const std::string op = Next().text;
      e = Binary(Expr::Kind::kBinary, op, std::move(e), Concat(), ln);
    }
    return e;
  }
  ExprPtr Concat() {
    ExprPtr e = Math2();
    while (IsOp("~")) {
      const int ln = line();
      Next();
      e = Binary(Expr::Kind::kBinary, "~", std::move(e), Math2(), ln);
    }
    return e;
  }
  ExprPtr Math2() {
    ExprPtr e = Pow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const int ln = line();
      const std::string op = Next().text;
      e = Binary(Expr::Kind::kBinary, op, std::move(e), Pow(), ln);
    }
    return e;
  }
  ExprPtr Pow() {
    ExprPtr e = Unary(true);
    while (IsOp("**")) {
      const int ln = line();
      Next();
      e = Binary(Expr::Kind::kBinary, "**", std::move(e), Unary(true), ln);
    }
    return e;
  }
  ExprPtr Unary(bool with_filter) {
    const int ln = line();
    ExprPtr e;
    if (IsOp("-")) {
      Next();
      e = NewExpr(Expr::Kind::kNeg, ln);
      e->args.push_back(Unary(false));
    } else if (IsOp("+")) {
      Next();
      e = Unary(false);
    } else {
      e = Primary();
    }
    e = Postfix(std::move(e));
    if (with_filter) e = FilterExpr(std::move(e));
    return e;
  }
  ExprPtr Primary() {
    const Token t = Peek();
    const int ln = t.line;
    if (t.kind == Token::Kind::kName) {
      Next();
      auto e = NewExpr(Expr::Kind::kLiteral, ln);
      if (t.text == "true" || t.text == "True") {
        e->literal = Value::Bool(true);
      } else if (t.text == "false" || t.text == "False") {
        e->literal = Value::Bool(false);
      } else if (t.text == "none" || t.text == "None") {
        e->literal = Value::None();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == Token::Kind::kString) {
      std::string s;
      while (Peek().kind == Token::Kind::kString) s += Next().text;  // adjacent literals join
      auto e = NewExpr(Expr::Kind::kLiteral, ln);
      e->literal = Value::String(std::move(s));
      return e;
    }
    if (t.kind == Token::Kind::kInt || t.kind == Token::Kind::kFloat) {
      Next();
      auto e = NewExpr(Expr::Kind::kLiteral, ln);
      e->literal = t.kind == Token::Kind::kInt ? Value::Int(t.i) : Value::Float(t.f);
      return e;
    }
    if (IsOp("(")) {
      Next();
      if (IsOp(")")) {
        Next();
        auto empty = NewExpr(Expr::Kind::kList, ln);
        empty->name = "tuple";
        return empty;
      }
      ExprPtr e = Tuple();
      Expect(")");
      return e;
    }
    if (IsOp("[")) {
      Next();
      auto e = NewExpr(Expr::Kind::kList, ln);
      while (!IsOp("]")) {
        e->args.push_back(Expression());
        if (!IsOp(",")) break;
        Next();
      }
      Expect("]");
      return e;
    }
    if (IsOp("{")) {
      Next();
      auto e = NewExpr(Expr::Kind::kDict, ln);
      while (!IsOp("}")) {
        e->args.push_back(Expression());
        Expect(":");
        e->args.push_back(Expression());
        if (!IsOp(",")) break;
        Next();
      }
      Expect("}");
      return e;
    }
    Syntax(ln, absl::StrCat("unexpected '", Describe(t), "'"));
  }
  void CallArgs(Expr* call) {
    Expect("(");
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**"))
        Unsupported(line(), "*args and **kwargs in calls are not supported");
      if (Peek().kind == Token::Kind::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        Next();
        call->kwargs.emplace_back(std::move(key), Expression());
      } else {
        if (!call->kwargs.empty()) Syntax(line(), "positional argument after a keyword argument");
        call->args.push_back(Expression());
      }
      if (!IsOp(",")) break;
      Next();
    }
    Expect(")");
  }
  ExprPtr Postfix(ExprPtr e) {
    while (true) {
      const int ln = line();
      if (IsOp(".")) {
        Next();
        auto a = NewExpr(Expr::Kind::kAttr, ln);
        if (Peek().kind == Token::Kind::kInt) {
          a->kind = Expr::Kind::kItem;
          auto idx = NewExpr(Expr::Kind::kLiteral, ln);
          idx->literal = Value::Int(Next().i);
          a->args.push_back(std::move(e));
          a->args.push_back(std::move(idx));
        } else {
          a->name = ExpectName();
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (IsOp("[")) {
        Next();
        ExprPtr parts[3];
        bool slice = false;
        for (int part = 0; part < 3; ++part) {
          if (!IsOp(":") && !IsOp("]")) parts[part] = Expression();
          if (IsOp(":") && part < 2) {
            Next();
            slice = true;
          } else {
            break;
          }
        }
        Expect("]");
        auto a = NewExpr(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, ln);
        a->args.push_back(std::move(e));
        if (!slice && parts[0] == nullptr) Syntax(ln, "empty subscript");
        for (int part = 0; part < (slice ? 3 : 1); ++part)
          a->args.push_back(std::move(parts[part]));
        e = std::move(a);
      } else if (IsOp("(")) {
        auto call = NewExpr(Expr::Kind::kCall, ln);
        call->args.push_back(std::move(e));
        CallArgs(call.get());
        e = std::move(call);
      } else {
        return e;
      }
    }
  }
  ExprPtr FilterExpr(ExprPtr e) {
    while (true) {
      const int ln = line();
      if (IsOp("|")) {
        Next();
        auto f = NewExpr(Expr::Kind::kFilter, ln);
        f->name = ExpectName();
        if (!KnownFilters().count(f->name)) {
          Unsupported(ln, absl::StrCat("filter '", f->name, "' is not supported"));
        }
        f->args.push_back(std::move(e));
        if (IsOp("(")) CallArgs(f.get());
        e = std::move(f);
      } else if (IsName("is")) {
        Next();
        auto t = NewExpr(Expr::Kind::kTest, ln);
        if (IsName("not")) {
          Next();
          t->negated = true;
        }
        if (Peek().kind == Token::Kind::kName) {
          t->name = Next().text;
        } else if (Peek().kind == Token::Kind::kOp && KnownTests().count(Peek().text)) {
          t->name = Next().text;
        } else {
          Syntax(ln, "expected a test name after 'is'");
        }
        if (!KnownTests().count(t->name)) {
          Unsupported(ln, absl::StrCat("test '", t->name, "' is not supported"));
        }
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          CallArgs(t.get());
        } else {
          const Token& n = Peek();
          const bool starts_arg = n.kind == Token::Kind::kString || n.kind == Token::Kind::kInt ||
                                  n.kind == Token::Kind::kFloat || IsOp("[") || IsOp("{") ||
                                  (n.kind == Token::Kind::kName && n.text != "else" &&
                                   n.text != "or" && n.text != "and" && n.text != "if" &&
                                   n.text != "not" && n.text != "in" && n.text != "is");
          if (starts_arg) t->args.push_back(Postfix(Primary()));
        }
        e = std::move(t);
      } else if (IsOp("(")) {
        auto call = NewExpr(Expr::Kind::kCall, ln);
        call->args.push_back(std::move(e));
        CallArgs(call.get());
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t p_ = 0;
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kBreak, kContinue };
  explicit Node(Kind k) : kind(k) {}
  Kind kind;
  int line = 0;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf: (condition, or null for else; body)
  std::vector<std::string> targets;                // kSet, kSetBlock, kFor
  std::string attr;                                // kSet of a namespace attribute
  ExprPtr filter;                                  // kFor `if`
  Body body;                                       // kFor, kSetBlock
  Body else_body;                                  // kFor
};

class BlockParser {
 public:
  explicit BlockParser(std::vector<Segment> segments) : s_(std::move(segments)) {}

  Body ParseAll() {
    std::string end;
    Body body = Parse({}, &end);
    return body;
  }

 private:
  // Parses nodes until a statement whose keyword is in `ends` (stored in *end) or the end of the
  // template (only allowed when `ends` is empty).
  Body Parse(const std::set<std::string>& ends, std::string* end,
             ExprParser** end_parser = nullptr) {
    Body body;
    while (i_ < s_.size()) {
      const Segment& seg = s_[i_++];
      if (seg.kind == Segment::Kind::kText) {
        Node n{Node::Kind::kText};
        n.line = seg.line;
        n.text = seg.text;
        body.push_back(std::move(n));
        continue;
      }
      parsers_.push_back(std::make_unique<ExprParser>(Tokenize(seg.text, seg.line)));
      ExprParser& p = *parsers_.back();
      if (seg.kind == Segment::Kind::kOutput) {
        Node n{Node::Kind::kOutput};
        n.line = seg.line;
        n.expr = p.Tuple();
        p.ExpectEnd();
        body.push_back(std::move(n));
        continue;
      }
      if (p.AtEnd()) Syntax(seg.line, "empty statement");
      const std::string keyword = p.ExpectName();
      if (ends.count(keyword)) {
        *end = keyword;
        if (end_parser != nullptr) *end_parser = &p;
        return body;
      }
      body.push_back(Statement(keyword, seg.line, p));
    }
    if (!ends.empty()) {
      std::string closer = *ends.begin();
      for (const std::string& e : ends) {
        if (e.rfind("end", 0) == 0) closer = e;
      }
      Syntax(s_.empty() ? 0 : s_.back().line,
             absl::StrCat("missing '{% ", closer, " %}': the template ends inside a block"));
    }
    return body;
  }

  Node Statement(const std::string& keyword, int line, ExprParser& p) {
    if (keyword == "if") {
      Node n{Node::Kind::kIf};
      n.line = line;
      ExprPtr cond = p.Tuple(false);
      p.ExpectEnd();
      while (true) {
        std::string end;
        ExprParser* ep = nullptr;
        Body body = Parse({"elif", "else", "endif"}, &end, &ep);
        n.branches.emplace_back(std::move(cond), std::move(body));
        if (end == "endif") {
          ep->ExpectEnd();
          break;
        }
        if (end == "elif") {
          cond = ep->Tuple(false);
          ep->ExpectEnd();
        } else {
          ep->ExpectEnd();
          Body else_body = Parse({"endif"}, &end, &ep);
          ep->ExpectEnd();
          n.branches.emplace_back(nullptr, std::move(else_body));
          break;
        }
      }
      return n;
    }
    if (keyword == "for") {
      Node n{Node::Kind::kFor};
      n.line = line;
      n.targets.push_back(p.ExpectName());
      while (p.IsOp(",")) {
        p.Next();
        n.targets.push_back(p.ExpectName());
      }
      if (!p.IsName("in")) Syntax(line, "expected 'in' in a for statement");
      p.Next();
      n.expr = p.Tuple(false);
      if (p.IsName("if")) {
        p.Next();
        n.filter = p.Expression();
      }
      if (p.IsName("recursive")) Unsupported(line, "recursive for loops are not supported");
      p.ExpectEnd();
      std::string end;
      ExprParser* ep = nullptr;
      n.body = Parse({"else", "endfor"}, &end, &ep);
      ep->ExpectEnd();
      if (end == "else") {
        n.else_body = Parse({"endfor"}, &end, &ep);
        ep->ExpectEnd();
      }
      return n;
    }
    if (keyword == "set") {
      Node n{Node::Kind::kSet};
      n.line = line;
      n.targets.push_back(p.ExpectName());
      if (p.IsOp(".")) {
        p.Next();
        n.attr = p.ExpectName();
      } else {
        while (p.IsOp(",")) {
          p.Next();
          n.targets.push_back(p.ExpectName());
        }
      }
      if (p.AtEnd() && n.targets.size() == 1 && n.attr.empty()) {
        n.kind = Node::Kind::kSetBlock;
        std::string end;
        ExprParser* ep = nullptr;
        n.body = Parse({"endset"}, &end, &ep);
        ep->ExpectEnd();
        return n;
      }
      if (p.IsOp("|")) Unsupported(line, "filtered set blocks are not supported");
      p.Expect("=");
      n.expr = p.Tuple();
      p.ExpectEnd();
      return n;
    }
    if (keyword == "break" || keyword == "continue") {
      Node n{keyword == "break" ? Node::Kind::kBreak : Node::Kind::kContinue};
      n.line = line;
      p.ExpectEnd();
      return n;
    }
    if (keyword == "generation") {  // transformers' AssistantTracker: renders its body as is
      p.ExpectEnd();
      Node n{Node::Kind::kIf};
      n.line = line;
      std::string end;
      ExprParser* ep = nullptr;
      Body body = Parse({"endgeneration"}, &end, &ep);
      ep->ExpectEnd();
      auto always = NewExpr(Expr::Kind::kLiteral, line);
      always->literal = Value::Bool(true);
      n.branches.emplace_back(std::move(always), std::move(body));
      return n;
    }
    static const std::set<std::string> kKnownUnsupported = {
        "macro", "call", "include", "import",     "from", "extends", "block",
        "raw",   "with", "filter",  "autoescape", "do",   "trans"};
    if (kKnownUnsupported.count(keyword)) {
      Unsupported(line, absl::StrCat("statement '", keyword, "' is not supported"));
    }
    Syntax(line, absl::StrCat("unknown statement '", keyword, "'"));
  }

  std::vector<Segment> s_;
  size_t i_ = 0;
  std::vector<std::unique_ptr<ExprParser>> parsers_;
};

}  // namespace

struct TemplateImpl {
  Body body;
};

namespace {

// ---------------------------------------------------------------------------------------------
// Rendering.

enum class Flow { kNormal, kBreak, kContinue };

// The argument at `pos` or named `name`, else `fallback`. The result may be `fallback` itself:
// bind it by value where `fallback` is a temporary (Value::Int(-1)), or it dangles.
const Value& Arg(const Args& args, const Kwargs& kwargs, size_t pos, std::string_view name,
                 const Value& fallback) {
  if (pos < args.size()) return args[pos];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return v;
  }
  return fallback;
}

[[noreturn]] void TypeError(int line, std::string_view what) {
  Fail(absl::StatusCode::kInvalidArgument, line, what);
}

[[noreturn]] void UndefinedError(int line, const Value& v, const std::string& doing) {
  TypeError(line, v.s().empty()
                      ? absl::StrCat("cannot ", doing, " an undefined value")
                      : absl::StrCat("'", v.s(), "' is undefined (cannot ", doing, " it)"));
}

int64_t AsInt(const Value& v, int line, const std::string& what) {
  if (v.is(Value::Kind::kInt) || v.is(Value::Kind::kBool)) return v.i();
  TypeError(line, absl::StrCat(what, " must be an integer, not ", TypeName(v)));
}

List Iterate(const Value& v, int line) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& [k, e] : v.dict()) keys.push_back(Value::String(k));
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      size_t i = 0;
      while (i < v.s().size()) {
        const size_t start = i;
        NextCodePoint(v.s(), &i);
        chars.push_back(Value::String(v.s().substr(start, i - start)));
      }
      return chars;
    }
    default:
      TypeError(line, absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

size_t Length(const Value& v, int line) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return CodePointOffsets(v.s()).size() - 1;
    case Value::Kind::kList:
      return v.list().size();
    case Value::Kind::kDict:
      return v.dict().size();
    default:
      TypeError(line, absl::StrCat("object of type '", TypeName(v), "' has no len()"));
  }
}

bool Contains(const Value& container, const Value& item, int line) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is(Value::Kind::kString)) {
        TypeError(line, absl::StrCat("'in <string>' requires string as left operand, not ",
                                     TypeName(item)));
      }
      return container.s().find(item.s()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& e : container.list()) {
        if (Equal(e, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.is(Value::Kind::kString) && container.Find(item.s()) != nullptr;
    default:
      TypeError(line, absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

// Python's slice of a list or string (by code points).
Value Slice(const Value& v, const Value& start, const Value& stop, const Value& step, int line) {
  const bool is_string = v.is(Value::Kind::kString);
  if (!is_string && !v.is(Value::Kind::kList)) {
    if (v.undefined()) UndefinedError(line, v, "slice");
    TypeError(line, absl::StrCat("'", TypeName(v), "' object is not subscriptable"));
  }
  std::vector<size_t> offsets;
  int64_t n;
  if (is_string) {
    offsets = CodePointOffsets(v.s());
    n = static_cast<int64_t>(offsets.size()) - 1;
  } else {
    n = static_cast<int64_t>(v.list().size());
  }
  auto opt = [&](const Value& x) -> std::optional<int64_t> {
    if (x.undefined() || x.is(Value::Kind::kNone)) return std::nullopt;
    return AsInt(x, line, "a slice index");
  };
  const int64_t st = opt(step).value_or(1);
  if (st == 0) TypeError(line, "slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> x, int64_t fallback) {
    if (!x) return fallback;
    int64_t k = *x < 0 ? *x + n : *x;
    if (st > 0) return std::clamp<int64_t>(k, 0, n);
    return std::clamp<int64_t>(k, -1, n - 1);
  };
  const int64_t a = clamp(opt(start), st > 0 ? 0 : n - 1);
  const int64_t b = clamp(opt(stop), st > 0 ? n : -1);
  std::string s;
  List l;
  for (int64_t k = a; st > 0 ? k < b : k > b; k += st) {
    if (is_string) {
      s += v.s().substr(offsets[k], offsets[k + 1] - offsets[k]);
    } else {
      l.push_back(v.list()[k]);
    }
  }
  return is_string ? Value::String(std::move(s)) : Value::MakeList(std::move(l));
}

Value Arith(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "~") return Value::String(Str(a) + Str(b));
  if (a.undefined()) UndefinedError(line, a, "use '" + op + "' on");
  if (b.undefined()) UndefinedError(line, b, "use '" + op + "' on");
  const bool ints = (a.is(Value::Kind::kInt) || a.is(Value::Kind::kBool)) &&
                    (b.is(Value::Kind::kInt) || b.is(Value::Kind::kBool));
  if (a.number() && b.number()) {
    if (op == "+") return ints ? Value::Int(a.i() + b.i()) : Value::Float(a.f() + b.f());
    if (op == "-") return ints ? Value::Int(a.i() - b.i()) : Value::Float(a.f() - b.f());
    if (op == "*") return ints ? Value::Int(a.i() * b.i()) : Value::Float(a.f() * b.f());
    if ((op == "/" || op == "//" || op == "%") && (ints ? b.i() == 0 : b.f() == 0)) {
      TypeError(line, "division by zero");
    }
    if (op == "/") return Value::Float(a.f() / b.f());
    if (op == "//") {
      if (ints) {
        int64_t q = a.i() / b.i();
        if ((a.i() % b.i() != 0) && ((a.i() < 0) != (b.i() < 0))) --q;
        return Value::Int(q);
      }
      return Value::Float(std::floor(a.f() / b.f()));
    }
    if (op == "%") {
      if (ints) {
        int64_t r = a.i() % b.i();
        if (r != 0 && ((r < 0) != (b.i() < 0))) r += b.i();
        return Value::Int(r);
      }
      double r = std::fmod(a.f(), b.f());
      if (r != 0 && ((r < 0) != (b.f() < 0))) r += b.f();
      return Value::Float(r);
    }
    if (op == "**") {
      if (ints && b.i() >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < b.i() && k < 64; ++k) r *= a.i();
        return Value::Int(r);
      }
      return Value::Float(std::pow(a.f(), b.f()));
    }
  }
  if (op == "+" && a.is(Value::Kind::kString) && b.is(Value::Kind::kString)) {
    return Value::String(a.s() + b.s());
  }
  if (op == "+" && a.is(Value::Kind::kList) && b.is(Value::Kind::kList)) {
    List l = a.list();
    l.insert(l.end(), b.list().begin(), b.list().end());
    return Value::MakeList(std::move(l));
  }
  if (op == "*" && (a.is(Value::Kind::kString) || a.is(Value::Kind::kList)) && b.number() &&
      !b.is(Value::Kind::kFloat)) {
    const int64_t times = std::min<int64_t>(b.i(), 1 << 20);
    if (a.is(Value::Kind::kString)) {
      std::string s;
      for (int64_t k = 0; k < times; ++k) s += a.s();
      return Value::String(std::move(s));
    }
    List l;
    for (int64_t k = 0; k < times; ++k) l.insert(l.end(), a.list().begin(), a.list().end());
    return Value::MakeList(std::move(l));
  }
  if (op == "%" && a.is(Value::Kind::kString)) {
    Unsupported(line, "printf-style string formatting ('%' on a string) is not supported");
  }
  TypeError(line, absl::StrCat("unsupported operand type(s) for ", op, ": '", TypeName(a),
                               "' and '", TypeName(b), "'"));
}

std::string StrJoin(const List& items, std::string_view sep) {
  std::string out;
  for (size_t k = 0; k < items.size(); ++k) {
    if (k) out += sep;
    out += Str(items[k]);
  }
  return out;
}

Value SplitString(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right,
                  int line) {
  List parts;
  if (sep.undefined() || sep.is(Value::Kind::kNone)) {
    std::vector<std::string> words;
    size_t k = 0;
    while (k < s.size()) {
      while (k < s.size() && IsPySpace(s[k])) ++k;
      if (k == s.size()) break;
      size_t e = k;
      while (e < s.size() && !IsPySpace(s[e])) ++e;
      words.push_back(s.substr(k, e - k));
      k = e;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      // Rare in templates: rejoin the remainder with single spaces is not what Python does, so
      // refuse rather than differ.
      Unsupported(line, "split() with no separator and a maxsplit is not supported");
    }
    for (auto& w : words) parts.push_back(Value::String(std::move(w)));
    return Value::MakeList(std::move(parts));
  }
  if (!sep.is(Value::Kind::kString)) TypeError(line, "split() separator must be a string");
  const std::string& d = sep.s();
  if (d.empty()) TypeError(line, "empty separator");
  std::vector<std::string> pieces;
  if (!from_right) {
    size_t start = 0;
    int64_t splits = 0;
    while (true) {
      const size_t at = (maxsplit < 0 || splits < maxsplit) ? s.find(d, start) : std::string::npos;
      if (at == std::string::npos) {
        pieces.push_back(s.substr(start));
        break;
      }
      pieces.push_back(s.substr(start, at - start));
      start = at + d.size();
      ++splits;
    }
  } else {
    size_t end = s.size();
    int64_t splits = 0;
    while (true) {
      const size_t at = (maxsplit < 0 || splits < maxsplit) && end >= d.size()
                            ? s.rfind(d, end - d.size())
                            : std::string::npos;
      if (at == std::string::npos) {
        pieces.insert(pieces.begin(), s.substr(0, end));
        break;
      }
      pieces.insert(pieces.begin(), s.substr(at + d.size(), end - at - d.size()));
      end = at;
      ++splits;
    }
  }
  for (auto& p : pieces) parts.push_back(Value::String(std::move(p)));
  return Value::MakeList(std::move(parts));
}

const std::set<std::string>& StringMethods() {
  static const auto* const kSet = new std::set<std::string>{
      "capitalize", "endswith",   "find",    "isdigit", "isspace", "join",
      "lower",      "lstrip",     "replace", "rsplit",  "rstrip",  "split",
      "splitlines", "startswith", "strip",   "title",   "upper"};
  return *kSet;
}
const std::set<std::string>& DictMethods() {
  static const auto* const kSet = new std::set<std::string>{"get", "items", "keys", "values"};
  return *kSet;
}
const std::set<std::string>& ListMethods() {
  static const auto* const kSet = new std::set<std::string>{"count", "index"};
  return *kSet;
}

std::string Replace(const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` around every code point
    size_t i = 0;
    int64_t done = 0;
    while (true) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i >= s.size()) break;
      const size_t start = i;
      NextCodePoint(s, &i);
      out += s.substr(start, i - start);
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out += s.substr(start, at - start);
    out += to;
    start = at + from.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

Value CallMethod(const Value& self, const std::string& name, const Args& args, const Kwargs& kwargs,
                 int line) {
  static const Value kNone = Value::None();
  static const Value kUndef;
  if (self.is(Value::Kind::kString)) {
    const std::string& s = self.s();
    if (name == "strip")
      return Value::String(Strip(s, Arg(args, kwargs, 0, "chars", kNone), true, true));
    if (name == "lstrip")
      return Value::String(Strip(s, Arg(args, kwargs, 0, "chars", kNone), true, false));
    if (name == "rstrip")
      return Value::String(Strip(s, Arg(args, kwargs, 0, "chars", kNone), false, true));
    if (name == "split" || name == "rsplit") {
      const Value max = Arg(args, kwargs, 1, "maxsplit", Value::Int(-1));
      return SplitString(s, Arg(args, kwargs, 0, "sep", kNone), AsInt(max, line, "maxsplit"),
                         name == "rsplit", line);
    }
    if (name == "startswith" || name == "endswith") {
      const Value& what = Arg(args, kwargs, 0, "prefix", kUndef);
      List options = what.is(Value::Kind::kList) ? what.list() : List{what};
      for (const Value& o : options) {
        if (!o.is(Value::Kind::kString)) TypeError(line, name + "() argument must be a string");
        const std::string& p = o.s();
        if (p.size() <= s.size() &&
            (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                  : s.compare(s.size() - p.size(), p.size(), p) == 0)) {
          return Value::Bool(true);
        }
      }
      return Value::Bool(false);
    }
    if (name == "upper") return Value::String(AsciiUpper(s));
    if (name == "lower") return Value::String(AsciiLower(s));
    if (name == "title") return Value::String(AsciiTitle(s));
    if (name == "capitalize") return Value::String(AsciiCapitalize(s));
    if (name == "replace") {
      const Value& from = Arg(args, kwargs, 0, "old", kUndef);
      const Value& to = Arg(args, kwargs, 1, "new", kUndef);
      if (!from.is(Value::Kind::kString) || !to.is(Value::Kind::kString)) {
        TypeError(line, "replace() arguments must be strings");
      }
      return Value::String(
          Replace(s, from.s(), to.s(),
                  AsInt(Arg(args, kwargs, 2, "count", Value::Int(-1)), line, "count")));
    }
    if (name == "find") {
      const Value& sub = Arg(args, kwargs, 0, "sub", kUndef);
      if (!sub.is(Value::Kind::kString)) TypeError(line, "find() argument must be a string");
      const size_t at = s.find(sub.s());
      if (at == std::string::npos) return Value::Int(-1);
      return Value::Int(static_cast<int64_t>(CodePointOffsets(s.substr(0, at)).size()) - 1);
    }
    if (name == "join") {
      return Value::String(StrJoin(Iterate(Arg(args, kwargs, 0, "iterable", kUndef), line), s));
    }
    if (name == "splitlines") {
      List l;
      for (auto& x : SplitLines(s)) l.push_back(Value::String(std::move(x)));
      return Value::MakeList(std::move(l));
    }
    if (name == "isdigit" || name == "isspace") {
      bool all = !s.empty();
      for (char c : s) all &= name == "isdigit" ? (c >= '0' && c <= '9') : IsPySpace(c);
      return Value::Bool(all);
    }
  } else if (self.is(Value::Kind::kDict)) {
    if (name == "get") {
      const Value& key = Arg(args, kwargs, 0, "key", kUndef);
      const Value* found = key.is(Value::Kind::kString) ? self.Find(key.s()) : nullptr;
      return found ? *found : Arg(args, kwargs, 1, "default", kNone);
    }
    List l;
    for (const auto& [k, v] : self.dict()) {
      if (name == "items") {
        l.push_back(Value::MakeTuple({Value::String(k), v}));
      } else if (name == "keys") {
        l.push_back(Value::String(k));
      } else {
        l.push_back(v);
      }
    }
    return Value::MakeList(std::move(l));
  } else if (self.is(Value::Kind::kList)) {
    const Value& x = Arg(args, kwargs, 0, "value", kUndef);
    int64_t count = 0;
    for (size_t k = 0; k < self.list().size(); ++k) {
      if (Equal(self.list()[k], x)) {
        if (name == "index") return Value::Int(static_cast<int64_t>(k));
        ++count;
      }
    }
    if (name == "index") TypeError(line, absl::StrCat(Repr(x), " is not in list"));
    return Value::Int(count);
  }
  TypeError(line, absl::StrCat("'", TypeName(self), "' object has no method '", name, "'"));
}

Value BoundMethod(const Value& self, const std::string& name, int line) {
  return Value::MakeFunction(name, [self, name, line](const Args& args, const Kwargs& kwargs) {
    return CallMethod(self, name, args, kwargs, line);
  });
}

Value GetAttr(const Value& v, const std::string& name, int line) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      UndefinedError(line, v, "read attribute '" + name + "' of");
    case Value::Kind::kDict: {
      // Jinja2 looks for a Python attribute first, so d.items is the method even when the dict
      // has an "items" key; a namespace has only its attributes.
      if (!v.is_namespace() && DictMethods().count(name)) return BoundMethod(v, name, line);
      const Value* found = v.Find(name);
      return found ? *found : Value::Undefined(name);
    }
    case Value::Kind::kString:
      if (StringMethods().count(name)) return BoundMethod(v, name, line);
      return Value::Undefined(name);
    case Value::Kind::kList:
      if (ListMethods().count(name)) return BoundMethod(v, name, line);
      return Value::Undefined(name);
    default:
      return Value::Undefined(name);
  }
}

Value GetItem(const Value& v, const Value& key, int line) {
  if (v.undefined()) UndefinedError(line, v, "index");
  if (v.is(Value::Kind::kDict)) {
    if (key.is(Value::Kind::kString)) {
      const Value* found = v.Find(key.s());
      if (found) return *found;
      return GetAttr(v, key.s(), line).is(Value::Kind::kFunction) && !v.is_namespace()
                 ? GetAttr(v, key.s(), line)
                 : Value::Undefined(key.s());
    }
    return Value::Undefined();
  }
  if (v.is(Value::Kind::kList) || v.is(Value::Kind::kString)) {
    if (key.is(Value::Kind::kString)) return GetAttr(v, key.s(), line);
    if (!key.is(Value::Kind::kInt) && !key.is(Value::Kind::kBool)) {
      TypeError(line, absl::StrCat("indices must be integers, not ", TypeName(key)));
    }
    if (v.is(Value::Kind::kList)) {
      const auto n = static_cast<int64_t>(v.list().size());
      const int64_t k = key.i() < 0 ? key.i() + n : key.i();
      return k >= 0 && k < n ? v.list()[k] : Value::Undefined();
    }
    const std::vector<size_t> offsets = CodePointOffsets(v.s());
    const auto n = static_cast<int64_t>(offsets.size()) - 1;
    const int64_t k = key.i() < 0 ? key.i() + n : key.i();
    if (k < 0 || k >= n) return Value::Undefined();
    return Value::String(v.s().substr(offsets[k], offsets[k + 1] - offsets[k]));
  }
  return Value::Undefined();
}

// Sort key of the sort/unique/min/max/dictsort filters: strings compare case-insensitively
// unless case_sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is(Value::Kind::kString)) return Value::String(AsciiLower(v.s()));
  return v;
}

// The value at a dotted attribute path ("function.name", "0"), as Jinja2's make_attrgetter.
Value AttrPath(const Value& v, const Value& attribute, int line) {
  if (attribute.is(Value::Kind::kInt)) return GetItem(v, attribute, line);
  if (!attribute.is(Value::Kind::kString)) TypeError(line, "attribute must be a string");
  Value cur = v;
  size_t start = 0;
  const std::string& path = attribute.s();
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    cur = numeric ? GetItem(cur, Value::Int(std::stoll(part)), line)
                  : GetItem(cur, Value::String(part), line);
    if (dot == std::string::npos) return cur;
    if (cur.undefined()) return cur;
    start = dot + 1;
  }
}

class Renderer {
 public:
  Renderer(const RenderLimits& limits) : limits_(limits) {}

  void SetGlobals(const nlohmann::ordered_json& context) {
    frames_.emplace_back();
    auto& g = frames_.back();
    g["range"] = Value::MakeFunction("range", [this](const Args& a, const Kwargs&) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.size() == 1) {
        stop = AsInt(a[0], 0, "range() argument");
      } else if (a.size() == 2 || a.size() == 3) {
        start = AsInt(a[0], 0, "range() argument");
        stop = AsInt(a[1], 0, "range() argument");
        if (a.size() == 3) step = AsInt(a[2], 0, "range() argument");
      } else {
        TypeError(0, "range() takes 1 to 3 arguments");
      }
      if (step == 0) TypeError(0, "range() step must not be zero");
      List l;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        if (l.size() >= limits_.max_range) {
          Fail(absl::StatusCode::kResourceExhausted, 0,
               absl::StrCat("range() of more than ", limits_.max_range, " elements"));
        }
        l.push_back(Value::Int(k));
      }
      return Value::MakeList(std::move(l));
    });
    auto make_dict = [](const Args& a, const Kwargs& kw, bool ns) {
      Dict d;
      if (!a.empty() && a[0].is(Value::Kind::kDict)) d = a[0].dict();
      for (const auto& kv : kw) {
        const auto& key = kv.first;
        auto it = std::find_if(d.begin(), d.end(), [&](const auto& e) { return e.first == key; });
        if (it != d.end()) {
          it->second = kv.second;
        } else {
          d.emplace_back(key, kv.second);
        }
      }
      return Value::MakeDict(std::move(d), ns);
    };
    g["namespace"] = Value::MakeFunction("namespace", [make_dict](const Args& a, const Kwargs& kw) {
      return make_dict(a, kw, true);
    });
    g["dict"] = Value::MakeFunction(
        "dict", [make_dict](const Args& a, const Kwargs& kw) { return make_dict(a, kw, false); });
    g["raise_exception"] =
        Value::MakeFunction("raise_exception", [](const Args& a, const Kwargs&) -> Value {
          Fail(absl::StatusCode::kInvalidArgument, 0, a.empty() ? "raise_exception()" : Str(a[0]));
        });
    g["strftime_now"] = Value::MakeFunction("strftime_now", [](const Args& a, const Kwargs&) {
      if (a.empty() || !a[0].is(Value::Kind::kString))
        TypeError(0, "strftime_now(format) needs a string");
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof(buf), a[0].s().c_str(), &tm);
      return Value::String(std::string(buf, n));
    });
    frames_.emplace_back();
    if (context.is_object()) {
      for (const auto& [k, v] : context.items()) frames_.back()[k] = FromJson(v);
    }
  }

  Flow Exec(const Body& body, std::string* out) {
    for (const Node& n : body) {
      switch (n.kind) {
        case Node::Kind::kText:
          Emit(n.text, out);
          break;
        case Node::Kind::kOutput:
          Emit(Str(Eval(*n.expr)), out);
          break;
        case Node::Kind::kIf:
          for (const auto& [cond, branch] : n.branches) {
            if (cond == nullptr || Truthy(Eval(*cond))) {
              const Flow f = Exec(branch, out);
              if (f != Flow::kNormal) return f;
              break;
            }
          }
          break;
        case Node::Kind::kFor:
          ExecFor(n, out);
          break;
        case Node::Kind::kSet:
          ExecSet(n, Eval(*n.expr));
          break;
        case Node::Kind::kSetBlock: {
          std::string captured;
          Exec(n.body, &captured);
          frames_.back()[n.targets[0]] = Value::String(std::move(captured));
          break;
        }
        case Node::Kind::kBreak:
          if (loop_depth_ == 0) TypeError(n.line, "'break' outside a for loop");
          return Flow::kBreak;
        case Node::Kind::kContinue:
          if (loop_depth_ == 0) TypeError(n.line, "'continue' outside a for loop");
          return Flow::kContinue;
      }
    }
    return Flow::kNormal;
  }

 private:
  void Emit(std::string_view s, std::string* out) {
    out->append(s);
    if (out->size() > limits_.max_output_bytes) {
      Fail(absl::StatusCode::kResourceExhausted, 0,
           absl::StrCat("the template's output exceeds ", limits_.max_output_bytes, " bytes"));
    }
  }

  void CountIteration(int line) {
    if (++iterations_ > limits_.max_loop_iterations) {
      Fail(absl::StatusCode::kResourceExhausted, line,
           absl::StrCat("more than ", limits_.max_loop_iterations, " loop iterations"));
    }
  }

  void Bind(const std::vector<std::string>& targets, const Value& item, int line) {
    auto& frame = frames_.back();
    if (targets.size() == 1) {
      frame[targets[0]] = item;
      return;
    }
    const List parts = Iterate(item, line);
    if (parts.size() != targets.size()) {
      TypeError(line, absl::StrCat("cannot unpack ", parts.size(), " values into ", targets.size(),
                                   " names"));
    }
    for (size_t k = 0; k < targets.size(); ++k) frame[targets[k]] = parts[k];
  }

  void ExecFor(const Node& n, std::string* out) {
    List items = Iterate(Eval(*n.expr), n.line);
    if (n.filter) {
      List kept;
      for (const Value& item : items) {
        CountIteration(n.line);
        frames_.emplace_back();
        Bind(n.targets, item, n.line);
        const bool keep = Truthy(Eval(*n.filter));
        frames_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Exec(n.else_body, out);
      return;
    }
    ++loop_depth_;
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < length; ++k) {
      CountIteration(n.line);
      frames_.emplace_back();
      Bind(n.targets, items[k], n.line);
      Dict loop = {{"index", Value::Int(k + 1)},
                   {"index0", Value::Int(k)},
                   {"revindex", Value::Int(length - k)},
                   {"revindex0", Value::Int(length - k - 1)},
                   {"first", Value::Bool(k == 0)},
                   {"last", Value::Bool(k == length - 1)},
                   {"length", Value::Int(length)},
                   {"previtem", k > 0 ? items[k - 1] : Value::Undefined("loop.previtem")},
                   {"nextitem", k + 1 < length ? items[k + 1] : Value::Undefined("loop.nextitem")},
                   {"cycle", Value::MakeFunction("loop.cycle", [k](const Args& a, const Kwargs&) {
                      if (a.empty()) TypeError(0, "loop.cycle() needs at least one argument");
                      return a[static_cast<size_t>(k) % a.size()];
                    })}};
      frames_.back()["loop"] = Value::MakeDict(std::move(loop), /*is_namespace=*/true);
      const Flow f = Exec(n.body, out);
      frames_.pop_back();
      if (f == Flow::kBreak) break;
    }
    --loop_depth_;
  }

  void ExecSet(const Node& n, Value v) {
    if (n.attr.empty()) {
      Bind(n.targets, v, n.line);
      return;
    }
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      auto it = frame->find(n.targets[0]);
      if (it == frame->end()) continue;
      if (!it->second.is_namespace() || n.targets[0] == "loop") {
        TypeError(n.line, absl::StrCat("cannot assign attribute on non-namespace object '",
                                       n.targets[0], "'"));
      }
      Dict d = it->second.dict();
      auto e = std::find_if(d.begin(), d.end(), [&](const auto& x) { return x.first == n.attr; });
      if (e != d.end()) {
        e->second = std::move(v);
      } else {
        d.emplace_back(n.attr, std::move(v));
      }
      it->second = Value::MakeDict(std::move(d), /*is_namespace=*/true);
      return;
    }
    TypeError(n.line, absl::StrCat("'", n.targets[0], "' is undefined (cannot set its attribute)"));
  }

  Value Lookup(const std::string& name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      auto it = frame->find(name);
      if (it != frame->end()) return it->second;
    }
    return Value::Undefined(name);
  }

  void EvalArgs(const Expr& e, size_t first, Args* args, Kwargs* kwargs) {
    for (size_t k = first; k < e.args.size(); ++k) args->push_back(Eval(*e.args[k]));
    for (const auto& [key, x] : e.kwargs) kwargs->emplace_back(key, Eval(*x));
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return Lookup(e.name);
      case Expr::Kind::kAttr: {
        const Value subject = Eval(*e.args[0]);
        Value v = GetAttr(subject, e.name, e.line);
        if (v.undefined() && !subject.undefined()) v = Value::Undefined(e.name);
        return v;
      }
      case Expr::Kind::kItem:
        return GetItem(Eval(*e.args[0]), Eval(*e.args[1]), e.line);
      case Expr::Kind::kSlice: {
        const Value v = Eval(*e.args[0]);
        Value parts[3];
        for (int k = 0; k < 3; ++k) {
          if (e.args[k + 1]) parts[k] = Eval(*e.args[k + 1]);
        }
        return Slice(v, parts[0], parts[1], parts[2], e.line);
      }
      case Expr::Kind::kCall: {
        const Value callee = Eval(*e.args[0]);
        if (!callee.is(Value::Kind::kFunction)) {
          if (callee.undefined()) UndefinedError(e.line, callee, "call");
          TypeError(e.line, absl::StrCat("'", TypeName(callee), "' object is not callable"));
        }
        Args args;
        Kwargs kwargs;
        EvalArgs(e, 1, &args, &kwargs);
        try {
          return callee.fn()(args, kwargs);
        } catch (TemplateError& err) {
          if (err.message.rfind("line ", 0) != 0 && callee.s() != "raise_exception") {
            err.message = absl::StrCat("line ", e.line, ": ", err.message);
          }
          throw;
        }
      }
      case Expr::Kind::kFilter: {
        const Value subject = Eval(*e.args[0]);
        Args args;
        Kwargs kwargs;
        EvalArgs(e, 1, &args, &kwargs);
        return Filter(e.name, subject, args, kwargs, e.line);
      }
      case Expr::Kind::kTest: {
        const Value subject = Eval(*e.args[0]);
        Args args;
        Kwargs kwargs;
        EvalArgs(e, 1, &args, &kwargs);
        return Value::Bool(Test(e.name, subject, args, e.line) != e.negated);
      }
      case Expr::Kind::kNeg: {
        const Value v = Eval(*e.args[0]);
        if (v.is(Value::Kind::kFloat)) return Value::Float(-v.f());
        if (v.number()) return Value::Int(-v.i());
        TypeError(e.line, absl::StrCat("bad operand type for unary -: '", TypeName(v), "'"));
      }
      case Expr::Kind::kNot:
        return Value::Bool(!Truthy(Eval(*e.args[0])));
      case Expr::Kind::kAnd: {
        Value a = Eval(*e.args[0]);
        return Truthy(a) ? Eval(*e.args[1]) : a;
      }
      case Expr::Kind::kOr: {
        Value a = Eval(*e.args[0]);
        return Truthy(a) ? a : Eval(*e.args[1]);
      }
      case Expr::Kind::kCond:
        if (Truthy(Eval(*e.args[1]))) return Eval(*e.args[0]);
        return e.args[2] ? Eval(*e.args[2]) : Value::Undefined();
      case Expr::Kind::kList: {
        List l;
        for (const auto& x : e.args) l.push_back(Eval(*x));
        return Value::MakeList(std::move(l), /*is_tuple=*/e.name == "tuple");
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = Eval(*e.args[k]);
          if (!key.is(Value::Kind::kString)) TypeError(e.line, "dict keys must be strings here");
          Value v = Eval(*e.args[k + 1]);
          auto it =
              std::find_if(d.begin(), d.end(), [&](const auto& x) { return x.first == key.s(); });
          if (it != d.end()) {
            it->second = std::move(v);
          } else {
            d.emplace_back(key.s(), std::move(v));
          }
        }
        return Value::MakeDict(std::move(d));
      }
      case Expr::Kind::kCompare: {
        Value left = Eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = Eval(*e.args[k + 1]);
          if (!Compare(e.ops[k], left, right, e.line)) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kBinary: {
        const Value a = Eval(*e.args[0]);
        const Value b = Eval(*e.args[1]);
        const std::string& op = e.name;
        return Arith(op, a, b, e.line);
      }
    }
    return Value::Undefined();
  }

  static bool Compare(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return Equal(a, b);
    if (op == "!=") return !Equal(a, b);
    if (op == "<") return Less(a, b, line);
    if (op == ">") return Less(b, a, line);
    if (op == "<=") return !Less(b, a, line);
    if (op == ">=") return !Less(a, b, line);
    if (op == "in") return Contains(b, a, line);
    return !Contains(b, a, line);  // "not in"
  }

  bool Test(const std::string& name, const Value& v, const Args& a, int line) {
    static const Value kUndef;
    const Value& x = a.empty() ? kUndef : a[0];
    if (name == "defined") return !v.undefined();
    if (name == "undefined") return v.undefined();
    if (name == "none") return v.is(Value::Kind::kNone);
    if (name == "boolean") return v.is(Value::Kind::kBool);
    if (name == "true") return v.is(Value::Kind::kBool) && v.i();
    if (name == "false") return v.is(Value::Kind::kBool) && !v.i();
    if (name == "string") return v.is(Value::Kind::kString);
    if (name == "number") return v.number();
    if (name == "integer") return v.is(Value::Kind::kInt);
    if (name == "float") return v.is(Value::Kind::kFloat);
    if (name == "mapping") return v.is(Value::Kind::kDict);
    if (name == "iterable") {
      return v.is(Value::Kind::kList) || v.is(Value::Kind::kDict) || v.is(Value::Kind::kString) ||
             v.undefined();
    }
    if (name == "sequence") {
      return v.is(Value::Kind::kList) || v.is(Value::Kind::kDict) || v.is(Value::Kind::kString);
    }
    if (name == "callable") return v.is(Value::Kind::kFunction);
    if (name == "lower") return v.is(Value::Kind::kString) && AsciiLower(v.s()) == v.s();
    if (name == "upper") return v.is(Value::Kind::kString) && AsciiUpper(v.s()) == v.s();
    if (name == "odd" || name == "even") {
      const int64_t i = AsInt(v, line, "the value of 'odd'/'even'");
      return ((i % 2) != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
      const int64_t d = AsInt(x, line, "divisibleby's argument");
      if (d == 0) TypeError(line, "division by zero");
      return AsInt(v, line, "the value of 'divisibleby'") % d == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return Equal(v, x);
    if (name == "ne" || name == "!=") return !Equal(v, x);
    if (name == "lt" || name == "<") return Less(v, x, line);
    if (name == "le" || name == "<=") return !Less(x, v, line);
    if (name == "gt" || name == ">") return Less(x, v, line);
    if (name == "ge" || name == ">=") return !Less(v, x, line);
    if (name == "in") return Contains(x, v, line);
    Unsupported(line, absl::StrCat("test '", name, "' is not supported"));
  }

  Value Filter(const std::string& name, const Value& v, const Args& a, const Kwargs& kw, int line) {
    static const Value kNone = Value::None();
    static const Value kUndef;
    static const Value kFalse = Value::Bool(false);
    if (name == "safe") return v;
    if (name == "string") return Value::String(Str(v));
    if (name == "trim")
      return Value::String(Strip(Str(v), Arg(a, kw, 0, "chars", kNone), true, true));
    if (name == "upper") return Value::String(AsciiUpper(Str(v)));
    if (name == "lower") return Value::String(AsciiLower(Str(v)));
    if (name == "title") return Value::String(AsciiTitle(Str(v)));
    if (name == "capitalize") return Value::String(AsciiCapitalize(Str(v)));
    if (name == "length" || name == "count")
      return Value::Int(static_cast<int64_t>(Length(v, line)));
    if (name == "default" || name == "d") {
      const bool boolean = Truthy(Arg(a, kw, 1, "boolean", kFalse));
      if (v.undefined() || (boolean && !Truthy(v))) {
        return Arg(a, kw, 0, "default_value", Value::String(""));
      }
      return v;
    }
    if (name == "tojson") {
      JsonStyle style;
      const Value& indent = Arg(a, kw, 0, "indent", kNone);
      if (!indent.is(Value::Kind::kNone)) {
        style.indent = static_cast<int>(AsInt(indent, line, "tojson's indent"));
        style.item_sep = ",";
      }
      const Value& seps = Arg(a, kw, 2, "separators", kNone);
      if (seps.is(Value::Kind::kList) && seps.list().size() == 2) {
        style.item_sep = Str(seps.list()[0]);
        style.key_sep = Str(seps.list()[1]);
      }
      style.sort_keys = Truthy(Arg(a, kw, 3, "sort_keys", kFalse));
      std::string out;
      Json(v, style, 0, &out);
      return Value::String(std::move(out));
    }
    if (name == "first" || name == "last") {
      if (v.is(Value::Kind::kString) || v.is(Value::Kind::kList)) {
        const List items = Iterate(v, line);
        if (items.empty()) return Value::Undefined();
        return name == "first" ? items.front() : items.back();
      }
      const List items = Iterate(v, line);
      if (items.empty()) return Value::Undefined();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Value& attribute = Arg(a, kw, 1, "attribute", kNone);
      List items = Iterate(v, line);
      if (!attribute.is(Value::Kind::kNone)) {
        for (Value& item : items) item = AttrPath(item, attribute, line);
      }
      return Value::String(StrJoin(items, Str(Arg(a, kw, 0, "d", Value::String("")))));
    }
    if (name == "replace") {
      const Value& count = Arg(a, kw, 2, "count", kNone);
      return Value::String(
          Replace(Str(v), Str(Arg(a, kw, 0, "old", kUndef)), Str(Arg(a, kw, 1, "new", kUndef)),
                  count.is(Value::Kind::kNone) ? -1 : AsInt(count, line, "count")));
    }
    if (name == "int") {
      if (v.is(Value::Kind::kInt) || v.is(Value::Kind::kBool)) return Value::Int(v.i());
      if (v.is(Value::Kind::kFloat)) return Value::Int(static_cast<int64_t>(v.f()));
      if (v.is(Value::Kind::kString)) {
        const std::string s = Strip(v.s(), kNone, true, true);
        int64_t i = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), i);
        if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return Value::Int(i);
        char* end = nullptr;
        const double f = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value::Int(static_cast<int64_t>(f));
      }
      return Arg(a, kw, 0, "default", Value::Int(0));
    }
    if (name == "float") {
      if (v.number()) return Value::Float(v.f());
      if (v.is(Value::Kind::kString)) {
        const std::string s = Strip(v.s(), kNone, true, true);
        char* end = nullptr;
        const double f = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value::Float(f);
      }
      return Arg(a, kw, 0, "default", Value::Float(0));
    }
    if (name == "abs") {
      if (v.is(Value::Kind::kFloat)) return Value::Float(std::fabs(v.f()));
      if (v.number()) return Value::Int(v.i() < 0 ? -v.i() : v.i());
      TypeError(line, absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
    }
    if (name == "round") {
      if (!v.number()) TypeError(line, "round needs a number");
      const int64_t precision = AsInt(Arg(a, kw, 0, "precision", Value::Int(0)), line, "precision");
      const std::string method = Str(Arg(a, kw, 1, "method", Value::String("common")));
      const double scale = std::pow(10.0, static_cast<double>(precision));
      const double x = v.f() * scale;
      const double r = method == "ceil"    ? std::ceil(x)
                       : method == "floor" ? std::floor(x)
                                           : std::round(x);
      return Value::Float(r / scale);
    }
    if (name == "list") return Value::MakeList(Iterate(v, line));
    if (name == "items") {
      if (v.undefined()) return Value::MakeList({});
      if (!v.is(Value::Kind::kDict)) TypeError(line, "items filter needs a mapping");
      return CallMethod(v, "items", {}, {}, line);
    }
    if (name == "reverse") {
      if (v.is(Value::Kind::kString)) {
        List chars = Iterate(v, line);
        std::string s;
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) s += it->s();
        return Value::String(std::move(s));
      }
      List items = Iterate(v, line);
      std::reverse(items.begin(), items.end());
      return Value::MakeList(std::move(items));
    }
    if (name == "sort" || name == "unique" || name == "min" || name == "max") {
      const bool case_sensitive =
          Truthy(Arg(a, kw, name == "sort" ? 1 : 0, "case_sensitive", kFalse));
      const Value& attribute = Arg(a, kw, name == "sort" ? 2 : 1, "attribute", kNone);
      List items = Iterate(v, line);
      auto key = [&](const Value& item) {
        return SortKey(attribute.is(Value::Kind::kNone) ? item : AttrPath(item, attribute, line),
                       case_sensitive);
      };
      if (name == "unique") {
        List out;
        List seen;
        for (const Value& item : items) {
          const Value k = key(item);
          if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, k); })) {
            seen.push_back(k);
            out.push_back(item);
          }
        }
        return Value::MakeList(std::move(out));
      }
      if (name == "sort") {
        const bool reverse = Truthy(Arg(a, kw, 0, "reverse", kFalse));
        std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
          return reverse ? Less(key(y), key(x), line) : Less(key(x), key(y), line);
        });
        return Value::MakeList(std::move(items));
      }
      if (items.empty()) return Value::Undefined();
      size_t best = 0;
      for (size_t k = 1; k < items.size(); ++k) {
        const bool better = name == "min" ? Less(key(items[k]), key(items[best]), line)
                                          : Less(key(items[best]), key(items[k]), line);
        if (better) best = k;
      }
      return items[best];
    }
    if (name == "dictsort") {
      if (!v.is(Value::Kind::kDict)) TypeError(line, "dictsort needs a mapping");
      const bool case_sensitive = Truthy(Arg(a, kw, 0, "case_sensitive", kFalse));
      const bool by_value = Str(Arg(a, kw, 1, "by", Value::String("key"))) == "value";
      const bool reverse = Truthy(Arg(a, kw, 2, "reverse", kFalse));
      List items = CallMethod(v, "items", {}, {}, line).list();
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        const Value kx = SortKey(x.list()[by_value ? 1 : 0], case_sensitive);
        const Value ky = SortKey(y.list()[by_value ? 1 : 0], case_sensitive);
        return reverse ? Less(ky, kx, line) : Less(kx, ky, line);
      });
      return Value::MakeList(std::move(items));
    }
    if (name == "sum") {
      const Value& attribute = Arg(a, kw, 0, "attribute", kNone);
      Value total = Arg(a, kw, 1, "start", Value::Int(0));
      for (const Value& item : Iterate(v, line)) {
        total =
            Arith("+", total,
                  attribute.is(Value::Kind::kNone) ? item : AttrPath(item, attribute, line), line);
      }
      return total;
    }
    if (name == "indent") {
      const Value width = Arg(a, kw, 0, "width", Value::Int(4));
      const std::string indention = width.is(Value::Kind::kString)
                                        ? width.s()
                                        : std::string(AsInt(width, line, "indent width"), ' ');
      const bool first = Truthy(Arg(a, kw, 1, "first", kFalse));
      const bool blank = Truthy(Arg(a, kw, 2, "blank", kFalse));
      std::vector<std::string> lines = SplitLines(Str(v) + "\n");
      std::string rv;
      if (blank) {
        for (size_t k = 0; k < lines.size(); ++k) {
          if (k) rv += "\n" + indention;
          rv += lines[k];
        }
      } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t k = 1; k < lines.size(); ++k) {
          rv += "\n";
          if (!lines[k].empty()) rv += indention;
          rv += lines[k];
        }
      }
      if (first) rv = indention + rv;
      return Value::String(std::move(rv));
    }
    if (name == "map") {
      List items = Iterate(v, line);
      const Value& attribute = Arg({}, kw, 0, "attribute", kNone);
      if (!attribute.is(Value::Kind::kNone)) {
        const Value& fallback = Arg({}, kw, 0, "default", kUndef);
        for (Value& item : items) {
          item = AttrPath(item, attribute, line);
          if (item.undefined() && !fallback.undefined()) item = fallback;
        }
        return Value::MakeList(std::move(items));
      }
      if (a.empty() || !a[0].is(Value::Kind::kString))
        TypeError(line, "map needs a filter name or attribute=");
      const std::string filter = a[0].s();
      if (!KnownFilters().count(filter)) {
        Unsupported(line, absl::StrCat("filter '", filter, "' is not supported"));
      }
      const Args rest(a.begin() + 1, a.end());
      for (Value& item : items) item = Filter(filter, item, rest, {}, line);
      return Value::MakeList(std::move(items));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool by_attr = name == "selectattr" || name == "rejectattr";
      const bool want = name == "select" || name == "selectattr";
      size_t pos = 0;
      Value attribute;
      if (by_attr) {
        if (a.empty()) TypeError(line, name + " needs an attribute");
        attribute = a[pos++];
      }
      std::optional<std::string> test;
      if (pos < a.size()) test = Str(a[pos++]);
      if (test && !KnownTests().count(*test)) {
        Unsupported(line, absl::StrCat("test '", *test, "' is not supported"));
      }
      const Args test_args(a.begin() + static_cast<std::ptrdiff_t>(pos), a.end());
      List out;
      for (const Value& item : Iterate(v, line)) {
        const Value subject = by_attr ? AttrPath(item, attribute, line) : item;
        const bool pass = test ? Test(*test, subject, test_args, line) : Truthy(subject);
        if (pass == want) out.push_back(item);
      }
      return Value::MakeList(std::move(out));
    }
    Unsupported(line, absl::StrCat("filter '", name, "' is not supported"));
  }

  const RenderLimits& limits_;
  std::vector<std::map<std::string, Value>> frames_;
  size_t iterations_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  try {
    auto impl = std::make_shared<TemplateImpl>();
    BlockParser parser(Lex(source));
    impl->body = parser.ParseAll();
    return Template(std::move(impl));
  } catch (const TemplateError& e) {
    return absl::Status(e.code, e.message);
  }
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context,
                                             const RenderLimits& limits) const {
  try {
    Renderer renderer(limits);
    renderer.SetGlobals(context);
    std::string out;
    renderer.Exec(impl_->body, &out);
    return out;
  } catch (const TemplateError& e) {
    return absl::Status(e.code, e.message);
  }
}

}  // namespace eagle::jinja
