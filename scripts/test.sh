#!/usr/bin/env bash
# One command for a fresh machine: installs the packages, fetches the default model, builds, and
# runs the whole test suite under ctest (labels: unit, integration, e2e; gpu tests skip without a
# GPU). Extra arguments go to ctest, e.g. scripts/test.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh
bash scripts/fetch_model.sh >/dev/null
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
