#!/usr/bin/env bash
# The GPU check: the CUDA backend's tests and its figures on a lent GPU machine (see
# ../shared and the device tool's notes), in two steps.
#
#   bash scripts/gpu_check.sh pack     # here: builds with -DEAGLE_WITH_CUDA=ON into build-cuda/,
#                                      # bundles the binaries with their non-system libraries
#                                      # into .gpu/ (git-ignored) and splits the model in three
#   bash scripts/gpu_check.sh run      # there, from the repository root, with .gpu carried
#
# The device machine has CUDA but no Abseil or GoogleTest, so the binaries travel with their
# shared libraries. A call carries at most 64 MiB with the working tree (~16 MB), so the 98 MB
# model travels in three calls on one warm machine: carry [.gpu/bin, .gpu/lib, .gpu/model.0]
# with `true`, then [.gpu/model.1] with `true`, then [.gpu/model.2] with `bash
# scripts/gpu_check.sh run` (files carried earlier stay on a warm machine). `run` joins them and
# prints one table last: the CUDA tests, the GPU's decode and tree-forward figures beside its
# measured limits, and the speculative speed-up with every output identical to vanilla.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
bins="build-cuda/tests/cuda_backend_test build-cuda/tests/nccl_communicator_test
  build-cuda/tools/eagle-bench build-cuda/tools/eagle-spec-bench"

pack() {
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  cmake -S . -B build-cuda -G Ninja -DEAGLE_WITH_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="${CUDACXX:-/usr/local/cuda/bin/nvcc}" >/dev/null
  ninja -C build-cuda cuda_backend_test nccl_communicator_test eagle-bench eagle-spec-bench
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
  cp $bins .gpu/bin/
  # Every shared library but the C runtime, the CUDA driver and NCCL (those the machine has:
  # NCCL's 218 MB come with its PyTorch, package nvidia-nccl-cu13).
  for b in $bins; do ldd "$b"; done | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+|libcuda|libnccl)\.so' |
    xargs -I{} cp -L {} .gpu/lib/
  strip --strip-unneeded .gpu/bin/* .gpu/lib/* 2>/dev/null || true
  # The model in three pieces, one per call.
  split -n 3 -d -a 1 "$model" .gpu/model.
  echo "bundle: $(du -sb .gpu/bin .gpu/lib | awk '{s += $1} END {printf "%.1f MB", s/1e6}');" \
       "model pieces: $(ls -la .gpu/model.* | awk '{printf "%.1f MB ", $5/1e6}');" \
       "working tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | awk '{printf "%.1f MB", $1/1e6}')"
  # The libraries must resolve from the bundle alone (as on a machine without them).
  LD_LIBRARY_PATH=.gpu/lib ldd .gpu/bin/* | grep "not found" | grep -v libnccl && exit 1
  echo "packaging checked: every library resolves from .gpu/lib"
}

run() {
  # NCCL: the CUDA toolkit's, else the one PyTorch brings (nvidia-nccl-cu13).
  local nccl
  nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' \
    2>/dev/null || true)
  export LD_LIBRARY_PATH="$root/.gpu/lib:/usr/local/cuda/lib64${nccl:+:$nccl}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local out=${OUT:-/tmp/gpu_check}
  mkdir -p "$out" .cache/models
  if [[ ! -f $model ]]; then
    for i in 0 1 2; do
      [[ -f .gpu/model.$i ]] || { echo "missing .gpu/model.$i: carry the pieces first"; exit 2; }
    done
    cat .gpu/model.0 .gpu/model.1 .gpu/model.2 > "$model"
  fi
  export EAGLE_MODEL="$root/$model" EAGLE_HEAD="$root/heads/smollm2-135m-eagle"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  local tests=ok
  .gpu/bin/cuda_backend_test --gtest_output=json:"$out/tests.json" 2>&1 | tee "$out/tests.log" |
    grep -E "^\[ *(OK|FAILED|SKIPPED) *\]|PASSED|FAILED" || true
  grep -q "FAILED" "$out/tests.log" && tests=FAILED
  # Tensor parallelism's NCCL communicator: one rank per GPU (one rank alone on a 1-GPU machine).
  local tp=ok
  .gpu/bin/nccl_communicator_test 2>&1 | tee "$out/nccl.log" |
    grep -E "^\[ *(OK|FAILED|SKIPPED) *\]|PASSED|FAILED" || true
  grep -q "FAILED" "$out/nccl.log" && tp=FAILED && tests=FAILED
  .gpu/bin/eagle-bench --model "$model" --device cuda --reps 10 > "$out/bench_gpu.txt" 2>&1 || tests=FAILED
  .gpu/bin/eagle-bench --model "$model" --threads 16 --reps 5 > "$out/bench_cpu16.txt" 2>&1 || true
  .gpu/bin/eagle-spec-bench --model "$model" --device cuda --draft "$EAGLE_HEAD" --limit 20 \
    --prompts "$root/tests/data/heldout_prompts.jsonl" \
    --modes chain,dynamic,eagle2 --report "$out/spec_bench.json" > "$out/spec_bench.txt" 2>&1 ||
    tests=FAILED
  echo
  echo "=== GPU check: $(cat "$out/gpu.txt") ==="
  echo "cuda_backend_test: $tests ($(grep -cE '^\[ +OK \]' "$out/tests.log") ok," \
       "$(grep -cE '^\[ +FAILED \]' "$out/tests.log") failed," \
       "$(grep -cE '^\[ +SKIPPED \]' "$out/tests.log") skipped)"
  echo "nccl_communicator_test ($(nvidia-smi -L | wc -l) GPUs): $tp" \
       "($(grep -cE '^\[ +OK \]' "$out/nccl.log") ok, $(grep -cE '^\[ +SKIPPED \]' "$out/nccl.log") skipped)"
  grep -E "^device:|decode roof|^decode|^prefill|tokens: " "$out/bench_gpu.txt" || cat "$out/bench_gpu.txt"
  echo "CPU, 16 threads, same machine:"
  grep -E "^decode|^prefill" "$out/bench_cpu16.txt" || true
  echo "speculative on the GPU (eagle-spec-bench, 20 held-out prompts, greedy):"
  tail -n 12 "$out/spec_bench.txt"
  [[ $tests == ok ]]
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
