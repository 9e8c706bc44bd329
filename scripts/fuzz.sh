#!/usr/bin/env bash
# Fuzzing (reliability test R15): builds the libFuzzer targets of tests/fuzz with clang, ASan and
# UBSan into build-fuzz/, then runs each for a bounded time, starting from its committed seed
# corpus (tests/fuzz/corpus/<target>, read only) plus what earlier runs found
# (build-fuzz/corpus/<target>). Any crash, leak, timeout (-timeout seconds on one input) or
# memory blow-up (-rss_limit_mb) fails the run; the input that caused it is saved under
# build-fuzz/artifacts/<target>/ (reproduce: build-fuzz/tests/fuzz/<target>_fuzz FILE).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [TARGET...]
#     --seconds N  time per target (default 20, what CI runs; long runs: 3600 and more)
#     --jobs J     parallel fuzzing processes per target (default 1)
#     TARGET       gguf safetensors tokenizer jinja normalizer (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
seconds=20
jobs=1
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || usage; seconds=$2; shift 2 ;;
    --jobs) [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || usage; jobs=$2; shift 2 ;;
    -h|--help) usage ;;
    gguf|safetensors|tokenizer|jinja|normalizer) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(gguf safetensors tokenizer jinja normalizer)
bash scripts/install_deps.sh clang libclang-rt-14-dev
bash scripts/fetch_model.sh >/dev/null  # the tokenizer target reads the default model's tokenizer
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
CC=clang CXX=clang++ cmake -S . -B build-fuzz "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DEAGLE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/%/_fuzz}"
# Largest input per target: a GGUF or safetensors header with a few tensors, a long template.
declare -A max_len=([gguf]=65536 [safetensors]=16384 [tokenizer]=4096 [jinja]=16384
  [normalizer]=4096)
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=()
printf '%-12s %8s %12s %8s %s\n' target seconds executions corpus result
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t
  art=build-fuzz/artifacts/$t
  log=build-fuzz/fuzz-$t.log
  mkdir -p "$work" "$art"
  result=ok
  if ! build-fuzz/tests/fuzz/${t}_fuzz "$work" "tests/fuzz/corpus/$t" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]}" -print_final_stats=1 \
      -jobs="$jobs" -workers="$jobs" -artifact_prefix="$art/" >"$log" 2>&1; then
    result="FAILED (see $log and $art/)"
    failed+=("$t")
  fi
  execs=$(grep -h 'stat::number_of_executed_units' "$log" fuzz-*.log 2>/dev/null |
    awk '{s += $2} END {print s + 0}')
  printf '%-12s %8s %12s %8s %s\n' "$t" "$seconds" "$execs" "$(ls "$work" | wc -l)" "$result"
done
rm -f fuzz-*.log  # libFuzzer's per-job logs (-jobs > 1)
if [[ ${#failed[@]} -gt 0 ]]; then
  for t in "${failed[@]}"; do tail -40 "build-fuzz/fuzz-$t.log" >&2; done
  exit 1
fi
