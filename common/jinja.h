// A renderer for the subset of Jinja that model chat templates use, so that a model's own
// template (tokenizer_config.json's "chat_template", chat_template.jinja, or GGUF's
// tokenizer.chat_template) renders here exactly as Hugging Face transformers renders it.
//
// The semantics are transformers' `apply_chat_template` environment: Jinja2 with
// trim_blocks=True, lstrip_blocks=True, the loopcontrols extension (break, continue), the
// `{% generation %}` block, `tojson` as json.dumps(ensure_ascii=False), and the globals
// raise_exception(msg) and strftime_now(fmt). One trailing newline of the source is dropped, as
// Jinja2 does. Values print as Python prints them (None, True, ['a', 1]).
//
// Supported:
//   statements  if / elif / else, for (with tuple targets, an `if` filter and an else block),
//               set (a name, a tuple, a namespace attribute, or a {% set x %}...{% endset %}
//               block), break, continue, generation, comments, whitespace control (- and +).
//   expressions literals (strings with Python escapes, numbers, true/false/none in either
//               case, lists, dicts, tuples), names, .attr, [index], [a:b:c] slices, calls with
//               keyword arguments, filters, tests (`is`, `is not`), not / and / or, in / not
//               in, comparisons, + - * / // % **, ~, unary -, `a if c else b`.
//   filters     abs capitalize count d default dictsort first float indent int items join
//               last length list lower map max min reject rejectattr replace reverse round
//               safe select selectattr sort string sum title tojson trim unique upper
//   tests       boolean callable defined divisibleby eq equalto even false float ge gt in
//               integer iterable le lower lt mapping ne none number odd sequence string true
//               undefined upper, and ==, !=, <, <=, >, >=
//   methods     str: capitalize endswith find isdigit isspace join lower lstrip replace rsplit
//               rstrip split splitlines startswith strip title upper; dict: get items keys
//               values; list: count index
//   globals     namespace(...), range(...), dict(...), raise_exception(msg), strftime_now(fmt)
// Anything else (macro, call, include, import, extends, block, raw, with, filter blocks,
// recursive loops, an unknown filter or test) is refused by Parse with UNIMPLEMENTED naming the
// construct and its line. Case mapping (upper, lower, title, capitalize) is ASCII-only.
//
// Thread contract: a parsed Template is immutable; Render may run on many threads at once.
#ifndef EAGLE_COMMON_JINJA_H_
#define EAGLE_COMMON_JINJA_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace eagle::jinja {

struct TemplateImpl;

// Bounds on one render, so that a hostile template cannot hang or exhaust the process.
struct RenderLimits {
  size_t max_output_bytes = size_t{16} << 20;  // RESOURCE_EXHAUSTED beyond this
  size_t max_loop_iterations = 1'000'000;      // over all loops of one render
  size_t max_range = 100'000;                  // elements of one range(...)
};

class Template {
 public:
  // Parses `source`. Errors: INVALID_ARGUMENT for a syntax error, UNIMPLEMENTED for a construct
  // outside the subset above; both name the line ("line 3: ...").
  static absl::StatusOr<Template> Parse(std::string_view source);

  // Renders with the variables of `context` (a JSON object: messages, add_generation_prompt,
  // bos_token, ...). Errors: INVALID_ARGUMENT when the template calls raise_exception (its
  // message, verbatim) or an operation fails at run time (a type error, an undefined value's
  // attribute, a call of something that is not a function); RESOURCE_EXHAUSTED past `limits`;
  // UNIMPLEMENTED for a test or filter outside the subset named by a string at run time
  // (select, reject, selectattr, rejectattr, map).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const RenderLimits& limits = {}) const;

 private:
  explicit Template(std::shared_ptr<const TemplateImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const TemplateImpl> impl_;
};

}  // namespace eagle::jinja

#endif  // EAGLE_COMMON_JINJA_H_
