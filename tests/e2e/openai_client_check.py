"""The official `openai` Python client against eagle-drafter --http, with only its base URL
changed. Run by http_api_test (tests/e2e/http_api_test.cc), which passes the gRPC API's text for
the prompt in --expect. Exits 77 (skipped) where the `openai` package is not installed."""

import argparse
import json
import sys

try:
    import openai
except ImportError:
    print("the openai package is not installed (scripts/test.sh installs it into .venv-test)")
    sys.exit(77)


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--expect", required=True)
    args = ap.parse_args()
    with open(args.expect) as f:
        want = json.load(f)
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": want["prompt"]}]

    models = client.models.list()
    check([m.id for m in models.data] == [args.model], f"models: {models}")

    r = client.chat.completions.create(model=args.model, messages=messages, temperature=0,
                                       max_tokens=want["max_tokens"])
    check(r.choices[0].message.content == want["text"],
          f"chat text {r.choices[0].message.content!r} != gRPC {want['text']!r}")
    check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
    check(r.model_extra.get("speculation", {}).get("steps", 0) > 0, r.model_extra)

    text, usage, finish = "", None, None
    stream = client.chat.completions.create(model=args.model, messages=messages, temperature=0,
                                            max_tokens=want["max_tokens"], stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    check(text == want["text"], f"streamed text {text!r} != gRPC {want['text']!r}")
    check(finish == r.choices[0].finish_reason, finish)
    check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage)

    c = client.completions.create(model=args.model, prompt="1, 2, 3, 4,", temperature=0,
                                  max_tokens=8, stop=["8"],
                                  extra_body={"speculation": {"mode": "chain", "depth": 4}})
    check(c.choices[0].text.startswith(" 5"), f"completion {c.choices[0].text!r}")
    check("8" not in c.choices[0].text, c.choices[0].text)

    # Seeded sampling is reproducible.
    s1 = client.chat.completions.create(model=args.model, messages=messages, temperature=0.8,
                                        seed=7, max_tokens=16)
    s2 = client.chat.completions.create(model=args.model, messages=messages, temperature=0.8,
                                        seed=7, max_tokens=16)
    check(s1.choices[0].message.content == s2.choices[0].message.content, "seed")

    try:
        client.chat.completions.create(model=args.model, messages=messages, logprobs=True)
        check(False, "logprobs accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body.get("param") == "logprobs", e.body)
    try:
        client.chat.completions.create(model="gpt-4o", messages=messages)
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        check(e.body.get("code") == "model_not_found", e.body)
    print("all checks passed")


if __name__ == "__main__":
    main()
