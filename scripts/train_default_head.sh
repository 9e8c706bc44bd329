#!/usr/bin/env bash
# Reproduces the shipped EAGLE head for SmolLM2-135M-Instruct (heads/smollm2-135m-eagle):
# builds eagle, generates self-distilled data with the target (resumable), trains the head in a
# Python virtualenv (torch, CPU) in two stages, exports it and measures it on the held-out prompts.
#   stage 1: the first N1 records, E1 epochs from scratch (peak lr 1e-3)
#   stage 2: the first N2 records (N2 >= N1; the shard grew meanwhile), E2 epochs, continuing
#            stage 1's head at peak lr LR2 (N2 = 0 skips it)
# Usage: scripts/train_default_head.sh [N1] [E1] [ttt_steps] [N2] [E2] [LR2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n1=${1:-11515}
e1=${2:-7}
ttt=${3:-2}
n2=${4:-22000}
e2=${5:-2}
lr2=${6:-3e-4}
out=heads/smollm2-135m-eagle
bash scripts/install_deps.sh
bash scripts/fetch_model.sh >/dev/null
bash scripts/build.sh
mkdir -p .cache/train
if [[ ! -x .venv-train/bin/python ]]; then
  python3 -m venv .venv-train
  .venv-train/bin/pip install --quiet torch numpy safetensors gguf matplotlib
fi
train() {
  .venv-train/bin/python tools/train/train_eagle.py --data .cache/train/shard0.bin --out "$out" \
    --ttt-steps "$ttt" --bf16 --val-frac 0.02 --threads "$(nproc)" "$@"
}
./build/tools/eagle-datagen --out .cache/train/shard0.bin --limit "$n1" --batch 64
train --max-records "$n1" --epochs "$e1" --eval-every 400
if ((n2 > 0)); then
  ./build/tools/eagle-datagen --out .cache/train/shard0.bin --limit "$n2" --batch 64
  train --max-records "$n2" --epochs "$e2" --lr "$lr2" --init "$out" --eval-every 600
fi
./build/tools/eagle-spec-bench --draft "$out" --limit 20 \
  --modes chain,dynamic,static,eagle2 --report "$out/spec_bench.json"
.venv-train/bin/python tools/plot_spec_bench.py "$out/spec_bench.json"
