#!/usr/bin/env python3
"""Builds tests/data/chat_template_golden.jsonl, used by tests/unit/jinja_test.cc.

Every line is one render by Hugging Face transformers' own chat-template environment (Jinja2
with trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception and strftime_now):

  {"template": file or null, "source": text (snippets only), "case": name,
   "context": {...}, "output": text}                      a render that succeeded
  {..., "error": message, "raised": true|false}           one that failed; "raised" when the
                                                          template called raise_exception

The templates are tests/data/chat_templates/*.jinja (the model families' own templates); the
snippets below exercise one construct each. strftime_now renders as "@@TODAY:<format>@@", which
the test replaces with today's date in that format.

Run with a virtualenv that has transformers and jinja2 (no PyTorch needed):

    python3 -m venv /opt/gold && /opt/gold/bin/pip install 'transformers==4.56.*' jinja2
    /opt/gold/bin/python tools/make_chat_template_golden.py
"""

import argparse
import json
import os

import jinja2
from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "tests", "data", "chat_templates")
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "chat_template_golden.jsonl")

# Special tokens per template family.
TOKENS = {
    "smollm2.jinja": ("<|im_start|>", "<|im_end|>"),
    "qwen2.5.jinja": ("", "<|im_end|>"),
    "llama-3.1.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-2.jinja": ("<s>", "</s>"),
    "mistral-small-3.1.jinja": ("<s>", "</s>"),
    "gemma-2.jinja": ("<bos>", "<eos>"),
    "phi-4-mini.jinja": ("<|endoftext|>", "<|endoftext|>"),
    "deepseek-r1-distill-qwen.jinja": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "zephyr.jinja": ("<s>", "</s>"),
}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}]

TRICKY = ("  Leading and trailing spaces, 'single' and \"double\" quotes, {{ braces }} {% tags %},"
          " a back\\slash, tabs\tand\nnewlines, h\u00e9llo \u4e16\u754c \U0001F985  \n")

CONVERSATIONS = {
    "user": ([{"role": "user", "content": "Hello!"}], {}),
    "system_user": ([{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is 2+2?"}], {}),
    "multi_turn": ([{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                    {"role": "user", "content": "Another one?"}], {}),
    "no_system_multi_turn": ([{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello! How can I help?"},
                              {"role": "user", "content": "Tell me a joke."}], {}),
    "assistant_last_no_prompt": ([{"role": "user", "content": "Say yes."},
                                  {"role": "assistant", "content": "Yes."}],
                                 {"add_generation_prompt": False}),
    "tricky_content": ([{"role": "user", "content": TRICKY}], {}),
    "thinking": ([{"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "<think>Two and two.</think>4"},
                  {"role": "user", "content": "3+3?"}], {}),
    "roles_do_not_alternate": ([{"role": "user", "content": "One"},
                                {"role": "user", "content": "Two"}], {}),
    "empty": ([], {}),
    "tools": ([{"role": "user", "content": "What's the weather in Paris?"},
               {"role": "assistant", "content": "",
                "tool_calls": [{"id": "call_abc123456", "type": "function",
                                "function": {"name": "get_weather",
                                             "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "tool_call_id": "call_abc123456", "content": "{\"temp\": 21}"},
               ], {"tools": TOOLS}),
    "tools_string_arguments": ([{"role": "user", "content": "Weather in Oslo?"},
                                {"role": "assistant", "content": None,
                                 "tool_calls": [{"id": "call_xyz987654", "type": "function",
                                                 "function": {"name": "get_weather",
                                                              "arguments": "{\"city\": \"Oslo\"}"}}]},
                                {"role": "tool", "tool_call_id": "call_xyz987654", "content": "cold"},
                                ], {}),
    "llama_date_string": ([{"role": "user", "content": "Date?"}], {"date_string": "03 Dec 2026"}),
}

# One construct each; the context is given beside each.
SNIPPETS = [
    ("text_only", "plain text\n", {}),
    ("trailing_newline_kept_once", "a\n\n", {}),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lstrip_blocks", "line\n    {% if true %}\n    inner\n    {% endif %}\nend", {}),
    ("lstrip_blocks_plus", "line\n    {%+ if true %}x{% endif %}", {}),
    ("lstrip_not_after_text", "text {% if true %}x{% endif %}", {}),
    ("minus_markers", "a   {{- 'b' -}}   c\n\n  {%- if true -%}  d  {%- endif -%}  e", {}),
    ("plus_right", "{% if true +%}\nkept newline{% endif %}", {}),
    ("comment", "a {# a comment #}\nb\n  {#- stripped -#}  c", {}),
    ("print_types", "{{ none }}|{{ true }}|{{ 3 }}|{{ 2.5 }}|{{ 1e20 }}|{{ 1.0e-7 }}|{{ [1, 'a', none] }}|{{ {'k': [true]} }}|{{ undefined_name }}", {}),
    ("float_repr", "{{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1e16 }} {{ 123456789.0 * 1000 }}", {}),
    ("string_escapes", "{{ 'tab\\there' }}|{{ \"q\\\"uote\" }}|{{ '\\u00e9\\x41' }}|{{ 'a' 'b' }}", {}),
    ("concat_tilde", "{{ 'n=' ~ 3 ~ none ~ undefined_name }}", {}),
    ("attr_and_item", "{{ m.role }} {{ m['content'] }} {{ m.missing is defined }} {{ xs[1] }} {{ xs[-1] }} {{ xs.0 }}", {"m": {"role": "user", "content": "hi"}, "xs": [1, 2, 3]}),
    ("dict_method_shadows_key", "{{ d.items is defined }} {{ d['items'] }} {{ d.get('items') }} {{ d.get('nope', 'dflt') }}", {"d": {"items": 5}}),
    ("slices", "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ s[-3:] }} {{ s[:2] }} {{ u[1:3] }}", {"xs": [1, 2, 3, 4, 5], "s": "abcdef", "u": "h\u00e9llo"}),
    ("comparisons", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 1 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 'x' in 'xyz' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}", {}),
    ("and_or_values", "{{ 0 or 'b' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|{{ none or none }} {{ not 0 }}", {}),
    ("cond_expr", "{{ 'y' if x else 'n' }} {{ 'y' if not x else 'n' }} [{{ 'only' if false }}]", {"x": 1}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ 3 is number }} {{ 3.0 is float }} {{ 3 is integer }} {{ d is mapping }} {{ xs is iterable }} {{ s is sequence }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 2 is equalto 2 }} {{ true is boolean }} {{ x is not none }} {{ 'abc' is lower }}", {"x": 1, "n": None, "s": "abc", "d": {}, "xs": []}),
    ("string_methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello'.find('l') }}|{{ '-'.join(['a', 'b']) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ '123'.isdigit() }}", {}),
    ("filters_text", "{{ '  x  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'ab cd' | title }}|{{ 'aB' | capitalize }}|{{ 'abc' | length }}|{{ 'h\u00e9' | length }}|{{ 'aXa' | replace('a', 'b') }}|{{ 3 | string }}|{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ '2.5' | float }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 'abc' | reverse }}|{{ 'a' | safe }}", {}),
    ("filters_lists", "{{ xs | first }} {{ xs | last }} {{ xs | length }} {{ xs | join('+') }} {{ xs | reverse | list }} {{ xs | sort }} {{ xs | sort(reverse=true) }} {{ xs | unique | list }} {{ xs | min }} {{ xs | max }} {{ xs | sum }} {{ 'abc' | list }} {{ ws | sort }} {{ ws | sort(case_sensitive=true) }}", {"xs": [3, 1, 2, 3], "ws": ["b", "A", "a", "C"]}),
    ("filters_objects", "{{ ms | map(attribute='role') | list }} {{ ms | selectattr('role', 'equalto', 'user') | list | length }} {{ ms | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ xs | select('odd') | list }} {{ xs | reject('odd') | list }} {{ d | items | list }} {{ d | dictsort }} {{ ms | map(attribute='nope', default='-') | list }} {{ xs | map('string') | join }} {{ ms | selectattr('content') | list | length }} {{ ms | join(', ', attribute='role') }}", {"ms": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "c"}], "xs": [1, 2, 3, 4], "d": {"b": 2, "a": 1}}),
    ("default_filter", "{{ missing | default('dflt') }} {{ '' | default('dflt') }} {{ '' | default('dflt', true) }} {{ none | d('x') }} {{ 0 | default(5, boolean=true) }}", {}),
    ("tojson", "{{ v | tojson }}\n{{ v | tojson(indent=2) }}\n{{ v | tojson(sort_keys=true) }}\n{{ 'h\u00e9 \"q\" \\n </script>' | tojson }}\n{{ [] | tojson }} {{ {} | tojson }} {{ 1.5 | tojson }} {{ none | tojson }}\n{{ v | tojson(separators=(',', ':')) }}", {"v": {"z": 1, "a": [True, None, 2.0, "s"], "n": {"x": []}}}),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', blank=true) }}", {}),
    ("for_loop_vars", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }}/{{ loop.cycle('a', 'b') }};{% endfor %}", {"xs": ["p", "q", "r"]}),
    ("for_else_and_filter", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'ab' %}{{ c }}.{% endfor %}", {"xs": [1, 2, 3], "d": {"a": 1, "b": 2}}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("set_scoping", "{% set x = 1 %}{% for i in range(2) %}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}|{% if true %}{% set y = 'leaks' %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(count=0, seen=false) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% set ns.new = 'n' %}{% endfor %}{{ ns.count }} {{ ns.seen }} {{ ns.new }}", {}),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set block %}x{{ a }}y{% endset %}{{ block }}|{% set t = (1, 2) %}{{ t | length }}", {}),
    ("range_and_math", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }} {{ 5 - 2 * 3 }} {{ (5 - 2) * 3 }} {{ -2 ** 2 }} {{ 'ab' * 2 }} {{ [1] + [2] }}", {}),
    ("dict_literal_and_get", "{% set d = {'a': 1, 'b': {'c': 'deep'}} %}{{ d.b.c }} {{ d['b']['c'] }} {{ d | length }} {{ dict(x=1, y=2) }}", {}),
    ("message_content_list", "{% for block in m.content %}{% if block.type == 'text' %}{{ block.text }}{% endif %}{% endfor %}", {"m": {"content": [{"type": "text", "text": "part one "}, {"type": "image"}, {"type": "text", "text": "part two"}]}}),
    ("generation_block", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}[{{ m.content }}]{% endif %}{% endfor %}", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("raise_exception", "{% if x %}{{ raise_exception('custom failure: ' ~ x) }}{% endif %}", {"x": "boom"}),
    ("undefined_attribute_error", "{{ missing.attr }}", {}),
    ("type_error", "{{ 'a' + 1 }}", {}),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }}", {}),
    ("unicode_iteration", "{% for c in s %}[{{ c }}]{% endfor %} {{ s[0] }} {{ s | length }}", {"s": "\u00e9\u4e16\U0001F985"}),
    ("whitespace_mixed", "<start>\n{%- for m in messages %}\n  {{ m.role }}: {{ m.content }}\n{%- endfor %}\n<end>\n", {"messages": [{"role": "a", "content": "1"}, {"role": "b", "content": "2"}]}),
]


def render(source, context):
    compiled = _compile_jinja_template(source)
    compiled.globals["strftime_now"] = lambda fmt: f"@@TODAY:{fmt}@@"
    try:
        return {"output": compiled.render(**context)}
    except jinja2.exceptions.TemplateError as e:
        raised = type(e).__name__ == "TemplateError"
        return {"error": str(e), "raised": raised}
    except Exception as e:  # noqa: BLE001 (TypeError and friends from inside the template)
        return {"error": f"{type(e).__name__}: {e}", "raised": False}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    lines = []
    for name in sorted(os.listdir(TEMPLATES)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            source = f.read()
        bos, eos = TOKENS[name]
        for case, (messages, extra) in CONVERSATIONS.items():
            context = {"messages": messages, "add_generation_prompt": True,
                       "bos_token": bos, "eos_token": eos}
            context.update(extra)
            line = {"template": name, "case": case, "context": context}
            line.update(render(source, context))
            lines.append(line)
    for case, source, context in SNIPPETS:
        line = {"template": None, "source": source, "case": case, "context": context}
        line.update(render(source, context))
        lines.append(line)
    with open(args.out, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    ok = sum("output" in l for l in lines)
    print(f"{args.out}: {len(lines)} renders, {ok} succeeded, {len(lines) - ok} failed as expected")


if __name__ == "__main__":
    main()
