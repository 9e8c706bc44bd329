#!/usr/bin/env bash
# Reproduces the shipped EAGLE head for SmolLM2-135M-Instruct (heads/smollm2-135m-eagle):
# builds eagle, generates self-distilled data with the target (resumable), trains the head in a
# Python virtualenv (torch, CPU) in stages, exports it and measures it on the held-out prompts.
#   stage 1: the first N1 records, E1 epochs from scratch (peak lr 1e-3)
#   stage k >= 2, given as RECORDS:EPOCHS:LR: the shard grows to RECORDS records (the first
#            RECORDS of the fixed prompt order), then training continues the previous stage's
#            head on them for EPOCHS epochs at peak lr LR
# Usage: scripts/train_default_head.sh [N1] [E1] [ttt_steps] [RECORDS:EPOCHS:LR ...]
# With no stage arguments after ttt_steps, the shipped head's later stages are used; "none"
# stops after stage 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n1=${1:-11515}
e1=${2:-7}
ttt=${3:-2}
later=("${@:4}")
if ((${#later[@]} == 0)); then later=(22000:2:3e-4 28000:2:2e-4 40000:2:1.5e-4); fi
if [[ "${later[*]}" == none ]]; then later=(); fi
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
for stage in "${later[@]}"; do
  IFS=: read -r n e lr <<<"$stage"
  if [[ -z "$n" || -z "$e" || -z "$lr" ]]; then
    echo "stage '$stage': expected RECORDS:EPOCHS:LR" >&2
    exit 2
  fi
  ./build/tools/eagle-datagen --out .cache/train/shard0.bin --limit "$n" --batch 64
  train --max-records "$n" --epochs "$e" --lr "$lr" --init "$out" --eval-every 600
done
./build/tools/eagle-spec-bench --draft "$out" --limit 20 \
  --modes chain,dynamic,static,eagle2 --report "$out/spec_bench.json"
.venv-train/bin/python tools/plot_spec_bench.py "$out/spec_bench.json"
