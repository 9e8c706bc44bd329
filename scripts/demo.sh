#!/usr/bin/env bash
# One command for a fresh machine: installs the packages, fetches the default model, builds, and
# answers a prompt with SmolLM2-135M-Instruct on the CPU. Usage: scripts/demo.sh ["prompt"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh >&2
model=$(bash scripts/fetch_model.sh | tail -1)
bash scripts/build.sh >&2
prompt=${1:-"Explain in three sentences why the sky is blue."}
echo ">>> $prompt" >&2
./build/tools/eagle-cli generate --model "$model" --chat --max-tokens 200 --prompt "$prompt"
