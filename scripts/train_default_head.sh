#!/usr/bin/env bash
# Reproduces the shipped EAGLE head for SmolLM2-135M-Instruct (heads/smollm2-135m-eagle):
# builds eagle, generates self-distilled data with the target (resumable), trains the head in a
# Python virtualenv (torch, CPU), exports it and measures it on the held-out prompts.
# Usage: scripts/train_default_head.sh [num_prompts] [epochs] [ttt_steps]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prompts=${1:-11515}
epochs=${2:-7}
ttt=${3:-2}
bash scripts/install_deps.sh
bash scripts/fetch_model.sh >/dev/null
bash scripts/build.sh
mkdir -p .cache/train
./build/tools/eagle-datagen --out .cache/train/shard0.bin --limit "$prompts" --batch 64
if [[ ! -x .venv-train/bin/python ]]; then
  python3 -m venv .venv-train
  .venv-train/bin/pip install --quiet torch numpy safetensors gguf matplotlib
fi
.venv-train/bin/python tools/train/train_eagle.py --data .cache/train/shard0.bin \
  --out heads/smollm2-135m-eagle --epochs "$epochs" --ttt-steps "$ttt" --bf16 \
  --val-frac 0.02 --eval-every 400 --threads "$(nproc)"
./build/tools/eagle-spec-bench --draft heads/smollm2-135m-eagle --limit 20 \
  --modes chain,dynamic,static,eagle2 --report heads/smollm2-135m-eagle/spec_bench.json
.venv-train/bin/python tools/plot_spec_bench.py heads/smollm2-135m-eagle/spec_bench.json
