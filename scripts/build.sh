#!/usr/bin/env bash
# Configures and builds eagle (Release) into build/. Extra arguments go to cmake.
# EAGLE_BUILD_TARGETS (space-separated, e.g. "eagle-verifier eagle-drafter eagle-cli") builds
# just those targets instead of all.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${EAGLE_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build -j "$(nproc)" "${targets[@]}"
