#!/usr/bin/env bash
# The CPU image for real: builds it (scripts/build_image.sh), starts the verifier and the drafter
# from it as two containers (host network, the image's non-root user), waits for their health,
# answers one chat prompt through the drafter's HTTP API (curl) and its gRPC API (eagle-cli in
# the container) and checks the two texts agree, then stops both with SIGTERM and checks each
# drained and exited 0. Exits 77 (ctest: skipped), saying why, where podman is missing or cannot
# run containers here.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if ! command -v podman >/dev/null; then
  echo "skipped: podman is not installed (scripts/test.sh installs it)"
  exit 77
fi
if ! podman info >/dev/null 2>&1; then
  echo "skipped: podman cannot run here: $(podman info 2>&1 | tail -1)"
  exit 77
fi
pod=(podman)
command -v runc >/dev/null && pod+=(--runtime runc)
limits=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
tag=localhost/eagle:test
t0=$SECONDS
bash scripts/build_image.sh "$tag"
echo "[image_test] image built in $((SECONDS - t0)) s: $(podman image inspect "$tag" --format '{{.Size}}') bytes"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vport=$(free_port); dport=$(free_port); hport=$(free_port)
v=eagle-test-verifier-$$; d=eagle-test-drafter-$$
cleanup() { podman rm -f "$v" "$d" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${pod[@]}" run -d --name "$v" --network host "${limits[@]}" "$tag" \
  eagle-verifier --model /models/model.gguf --listen "127.0.0.1:$vport" --admin "" \
  --admin_grpc "" >/dev/null
"${pod[@]}" run -d --name "$d" --network host "${limits[@]}" "$tag" \
  eagle-drafter --model /models/model.gguf --head /heads/default --verifier "127.0.0.1:$vport" \
  --listen "127.0.0.1:$dport" --admin "" --admin_grpc "" --http "127.0.0.1:$hport" --served_model_name eagle \
  >/dev/null
for addr in "127.0.0.1:$vport" "127.0.0.1:$dport"; do
  if ! podman exec "$d" eagle-cli health --server "$addr" --wait 120; then
    echo "FAILED: $addr did not report SERVING"
    podman logs "$v" 2>&1 | tail -20; podman logs "$d" 2>&1 | tail -20
    exit 1
  fi
done
[[ $(podman exec "$d" id -u) == 10001 ]] || { echo "FAILED: the container does not run as 10001"; exit 1; }
prompt="What is the capital of France?"
body=$(python3 -c 'import json, sys; print(json.dumps({"model": "eagle", "temperature": 0,
  "max_tokens": 24, "messages": [{"role": "user", "content": sys.argv[1]}]}))' "$prompt")
http=$(curl -sf "http://127.0.0.1:$hport/v1/chat/completions" -H 'Content-Type: application/json' \
  -d "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
grpc=$(podman exec "$d" eagle-cli generate --server "127.0.0.1:$dport" --chat --max-tokens 24 \
  --prompt "$prompt" 2>/dev/null)
echo "[image_test] HTTP: $http"
echo "[image_test] gRPC: $grpc"
[[ -n $http && $http == "$grpc" ]] || { echo "FAILED: the HTTP and gRPC answers differ"; exit 1; }
podman stop -t 30 "$d" "$v" >/dev/null
for c in "$d" "$v"; do
  code=$(podman inspect "$c" --format '{{.State.ExitCode}}')
  [[ $code == 0 ]] || { echo "FAILED: $c exited $code"; podman logs "$c" 2>&1 | tail -20; exit 1; }
done
echo "[image_test] both containers drained and exited 0 (total $((SECONDS - t0)) s)"
