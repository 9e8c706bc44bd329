// The Jinja subset renderer against Hugging Face transformers' own chat-template environment.
//
// tests/data/chat_template_golden.jsonl was produced by tools/make_chat_template_golden.py with
// transformers 4.56 and Jinja2 3.1: the model families' templates in tests/data/chat_templates/
// over a dozen conversations each (tools, tool calls, thinking, roles that do not alternate, an
// empty conversation, awkward text), and one snippet per construct. Each line holds the output
// or the error transformers gave.
#include "common/jinja.h"

#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/chat_template.h"
#include "nlohmann/json.hpp"

namespace eagle::jinja {
namespace {

std::string DataPath(const std::string& name) {
  return std::string(EAGLE_TEST_DATA_DIR) + "/" + name;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The golden renders strftime_now(fmt) as "@@TODAY:fmt@@"; this renderer calls the clock.
std::string WithToday(std::string text) {
  const std::string open = "@@TODAY:";
  for (size_t at = text.find(open); at != std::string::npos; at = text.find(open)) {
    const size_t close = text.find("@@", at + open.size());
    const std::string format = text.substr(at + open.size(), close - at - open.size());
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[128];
    const size_t n = std::strftime(buf, sizeof(buf), format.c_str(), &tm);
    text.replace(at, close + 2 - at, std::string(buf, n));
  }
  return text;
}

std::vector<nlohmann::ordered_json> ReadGolden() {
  std::ifstream in(DataPath("chat_template_golden.jsonl"));
  std::vector<nlohmann::ordered_json> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::ordered_json::parse(line));
  }
  return lines;
}

TEST(JinjaTest, MatchesTransformersOnModelTemplatesAndSnippets) {
  const std::vector<nlohmann::ordered_json> golden = ReadGolden();
  ASSERT_GE(golden.size(), 150u);
  int templates = 0, snippets = 0, errors = 0;
  for (const auto& g : golden) {
    const bool is_template = !g["template"].is_null();
    const std::string source =
        is_template ? ReadText(DataPath("chat_templates/" + g["template"].get<std::string>()))
                    : g["source"].get<std::string>();
    const std::string name =
        (is_template ? g["template"].get<std::string>() : std::string("snippet")) + " / " +
        g["case"].get<std::string>();
    SCOPED_TRACE(name);
    ASSERT_FALSE(source.empty());
    auto parsed = Template::Parse(source);
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.status();
      continue;
    }
    auto out = parsed->Render(g["context"]);
    if (g.contains("output")) {
      if (!out.ok()) {
        ADD_FAILURE() << out.status();
        continue;
      }
      EXPECT_EQ(*out, WithToday(g["output"].get<std::string>()));
    } else {
      ++errors;
      if (out.ok()) {
        ADD_FAILURE() << "rendered " << *out << "\nbut transformers failed with " << g["error"];
        continue;
      }
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
      if (g["raised"].get<bool>()) {
        // raise_exception's message reaches the caller verbatim.
        EXPECT_EQ(out.status().message(), g["error"].get<std::string>());
      }
    }
    (is_template ? templates : snippets)++;
  }
  EXPECT_GE(templates, 100);
  EXPECT_GE(snippets, 40);
  EXPECT_GE(errors, 15);
}

// The built-in ChatML renderer and SmolLM2's own template, rendered here, agree: two independent
// implementations of one format.
TEST(JinjaTest, SmolLm2TemplateAgreesWithTheBuiltInChatMl) {
  auto t = Template::Parse(ReadText(DataPath("chat_templates/smollm2.jinja")));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string default_system =
      "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
  const std::vector<std::vector<ChatMessage>> conversations = {
      {{"user", "Hello"}},
      {{"system", "Be brief."}, {"user", "Hi"}},
      {{"user", "a"}, {"assistant", "b"}, {"user", "c\n with {{ braces }}"}},
  };
  for (const auto& conv : conversations) {
    for (const bool gen : {true, false}) {
      nlohmann::ordered_json ctx = {{"messages", nlohmann::ordered_json::array()},
                                    {"add_generation_prompt", gen}};
      for (const auto& m : conv)
        ctx["messages"].push_back({{"role", m.role}, {"content", m.content}});
      auto out = t->Render(ctx);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, ApplyChatTemplate(ChatTemplateKind::kChatML, conv, gen, default_system));
    }
  }
}

TEST(JinjaTest, UnsupportedConstructsAreNamedWithTheirLine) {
  struct Case {
    const char* source;
    const char* construct;
    const char* line;
  };
  const Case cases[] = {
      {"{% macro f(x) %}{{ x }}{% endmacro %}", "statement 'macro'", "line 1"},
      {"a\nb\n{{ x | wordcount }}", "filter 'wordcount'", "line 3"},
      {"{% if x is sameas y %}{% endif %}", "test 'sameas'", "line 1"},
      {"\n{% for x in xs recursive %}{% endfor %}", "recursive for loops", "line 2"},
      {"{% include 'other.jinja' %}", "statement 'include'", "line 1"},
      {"{% raw %}{{ x }}{% endraw %}", "statement 'raw'", "line 1"},
      {"{{ f(*args) }}", "*args", "line 1"},
      {"{{ xs | map('wordwrap') | list }}", "filter 'wordwrap'", "line 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.source);
    auto t = Template::Parse(c.source);
    absl::Status status = t.status();
    if (t.ok()) status = t->Render({{"xs", {1}}}).status();  // map's filter is checked when run
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
    EXPECT_NE(status.message().find(c.construct), std::string::npos) << status;
    EXPECT_NE(status.message().find(c.line), std::string::npos) << status;
  }
}

TEST(JinjaTest, SyntaxErrorsAreInvalidArgumentWithTheirLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"{% if x %}never closed", "missing '{% endif %}'"},
      {"{{ x", "'{{' is never closed"},
      {"\n\n{{ 'unterminated }}", "line 3"},
      {"{% endfor %}", "unknown statement 'endfor'"},
      {"{{ (1 + }}", "unexpected"},
      {"{% for in xs %}{% endfor %}", "expected 'in'"},
      {"{% set x 1 %}", "expected '='"},
      {"{{ 1 2 }}", "unexpected '2'"},
      {"{# never closed", "comment is never closed"},
  };
  for (const auto& [source, message] : cases) {
    SCOPED_TRACE(source);
    auto t = Template::Parse(source);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
    EXPECT_NE(t.status().message().find(message), std::string::npos) << t.status();
  }
}

TEST(JinjaTest, RunawayTemplatesStopAtTheLimits) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_loop_iterations = 100'000;
  auto loops = Template::Parse(
      "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}");
  ASSERT_TRUE(loops.ok());
  EXPECT_EQ(loops->Render({}, limits).status().code(), absl::StatusCode::kResourceExhausted);
  auto output = Template::Parse("{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}");
  ASSERT_TRUE(output.ok());
  EXPECT_EQ(output->Render({}, limits).status().code(), absl::StatusCode::kResourceExhausted);
  auto range = Template::Parse("{{ range(10000000) | length }}");
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->Render({}, limits).status().code(), absl::StatusCode::kResourceExhausted);
  // Within the limits the same shapes render.
  auto small = Template::Parse("{% for i in range(3) %}{{ 'x' * 2 }}{% endfor %}");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(*small->Render({}, limits), "xxxxxx");
}

TEST(JinjaTest, RenderIsRepeatableAndLeavesTheTemplateUnchanged) {
  auto t = Template::Parse(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
      "{{ ns.n }}");
  ASSERT_TRUE(t.ok());
  const nlohmann::ordered_json ctx = {{"messages", {{{"role", "user"}}, {{"role", "user"}}}}};
  EXPECT_EQ(*t->Render(ctx), "2");
  EXPECT_EQ(*t->Render(ctx), "2");
}

}  // namespace
}  // namespace eagle::jinja
