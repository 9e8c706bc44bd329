#!/usr/bin/env bash
# Starts a verifier and a drafter on loopback and runs eagle-service-bench against them (the
# in-process generator on the same prompts is the reference; the drafter's HTTP API is compared
# with its gRPC API). Extra arguments go to the bench.
#   scripts/bench_services.sh [--limit 16] [--max-tokens 64] [--concurrency 8] [--report r.json]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vport=$(free_port); dport=$(free_port); dadmin=$(free_port); dhttp=$(free_port)
logs=$(mktemp -d)
./build/verifier/eagle-verifier --listen "127.0.0.1:$vport" --admin "" --admin_grpc "" \
  2>"$logs/verifier.log" &
vpid=$!
./build/drafter/eagle-drafter --verifier "127.0.0.1:$vport" --listen "127.0.0.1:$dport" \
  --admin "127.0.0.1:$dadmin" --admin_grpc "" --http "127.0.0.1:$dhttp" --served_model_name bench \
  ${EAGLE_DRAFTER_FLAGS:-} 2>"$logs/drafter.log" &
dpid=$!
trap 'kill -TERM $dpid $vpid 2>/dev/null || true' EXIT
./build/tools/eagle-cli health --server "127.0.0.1:$vport" --wait 60 2>/dev/null
./build/tools/eagle-cli health --server "127.0.0.1:$dport" --wait 60 2>/dev/null
./build/tools/eagle-service-bench --server "127.0.0.1:$dport" --verifier "127.0.0.1:$vport" \
  --drafter-admin "$dadmin" --http "127.0.0.1:$dhttp" --served-model bench "$@"
