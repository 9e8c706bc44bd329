#!/usr/bin/env bash
# The unit tests under AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer (reliability
# test R17, the part without gRPC services): builds them into build-asan/ and runs ctest -L unit
# there. Any report fails the run (-fno-sanitize-recover, halt_on_error). Extra arguments go to
# ctest. Set-up as for scripts/test.sh (run that first on a fresh machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh
bash scripts/fetch_model.sh >/dev/null
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DEAGLE_SANITIZE=address,undefined \
  >/dev/null
units=(kernels_test qmatmul_test dtype_test gguf_test tokenizer_test sampling_test model_test
  speculative_test distribution_test train_data_test verifier_engine_test verifier_loop_test
  jinja_test gguf_fuzz safetensors_fuzz tokenizer_fuzz jinja_fuzz normalizer_fuzz)
cmake --build build-asan -j "$(nproc)" --target "${units[@]}"
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd build-asan
ctest --output-on-failure -j "$(nproc)" -L unit -E "clang_format|train_eagle" "$@"
