#!/usr/bin/env bash
# One command for a fresh machine: installs the packages, fetches the default model, builds,
# starts the verifier and drafter services on loopback (SmolLM2-135M-Instruct with the shipped
# EAGLE head, CPU), answers a prompt through them with the speedup over plain decoding, and shuts
# both down. Usage: scripts/demo.sh ["prompt"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh >&2
model=$(bash scripts/fetch_model.sh | tail -1)
bash scripts/build.sh >&2
EAGLE_MODEL="$model" exec bash scripts/serve_demo.sh "${1:-Explain in three sentences why the sky is blue.}"
