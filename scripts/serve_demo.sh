#!/usr/bin/env bash
# Starts an eagle-verifier and an eagle-drafter on loopback (default model, shipped head), waits
# until both report SERVING, sends one prompt through the drafter (and the same prompt through
# the verifier alone for the speedup), prints the answer and the summary, asks the same through
# the drafter's OpenAI-compatible HTTP API (with curl), then stops both with SIGTERM and checks
# that they exited cleanly. Expects a build (scripts/build.sh) and the model.
#   scripts/serve_demo.sh ["prompt"] [extra eagle-cli flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prompt=${1:-"Explain in three sentences why the sky is blue."}
shift || true
model=${EAGLE_MODEL:-$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}
logs=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vport=$(free_port); dport=$(free_port); vadmin=$(free_port); dadmin=$(free_port); hport=$(free_port)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

./build/verifier/eagle-verifier --model "$model" --listen "127.0.0.1:$vport" \
  --admin "127.0.0.1:$vadmin" --admin_grpc "" 2>"$logs/verifier.log" &
pids+=($!)
./build/drafter/eagle-drafter --model "$model" --verifier "127.0.0.1:$vport" \
  --listen "127.0.0.1:$dport" --admin "127.0.0.1:$dadmin" --admin_grpc "" \
  --http "127.0.0.1:$hport" \
  --served_model_name demo 2>"$logs/drafter.log" &
pids+=($!)
for addr in "127.0.0.1:$vport" "127.0.0.1:$dport"; do
  if ! ./build/tools/eagle-cli health --server "$addr" --wait 60 2>/dev/null; then
    echo "service at $addr did not come up; logs in $logs" >&2
    cat "$logs"/*.log >&2
    exit 1
  fi
done
echo "[verifier 127.0.0.1:$vport (metrics :$vadmin), drafter 127.0.0.1:$dport (metrics :$dadmin," \
  "OpenAI-compatible HTTP http://127.0.0.1:$hport/v1)]" >&2
echo ">>> $prompt" >&2
./build/tools/eagle-cli generate --server "127.0.0.1:$dport" --verifier "127.0.0.1:$vport" \
  --compare-vanilla --chat --max-tokens 200 --prompt "$prompt" "$@"
if command -v curl >/dev/null; then
  echo "[the same prompt through the HTTP API: curl http://127.0.0.1:$hport/v1/chat/completions]" >&2
  body=$(python3 -c 'import json, sys; print(json.dumps({"model": "demo", "temperature": 0,
    "max_tokens": 200, "messages": [{"role": "user", "content": sys.argv[1]}]}))' "$prompt")
  curl -sf "http://127.0.0.1:$hport/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$body" | python3 -c 'import json, sys
r = json.load(sys.stdin); s = r["speculation"]
print(r["choices"][0]["message"]["content"])
print("[HTTP: %d tokens, finish %s, %d verify steps, tau %.2f]" % (r["usage"]["completion_tokens"],
      r["choices"][0]["finish_reason"], s["steps"], s["tau"]), file=sys.stderr)'
fi
trap - EXIT
status=0
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || status=$?; done
if [[ $status -ne 0 ]]; then
  echo "a service exited with status $status; logs in $logs" >&2
  exit 1
fi
echo "[both services drained and exited 0; logs in $logs]" >&2
