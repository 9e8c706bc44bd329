#!/usr/bin/env bash
# One command for a fresh machine: installs the packages, fetches the default model, builds, and
# runs the whole test suite under ctest (labels: unit, integration, e2e; gpu tests skip without a
# GPU), then, where nvcc is installed, builds the CUDA backend and runs its tests (they skip
# without a GPU). Extra arguments go to ctest (and skip the CUDA build), e.g. scripts/test.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# podman, runc and debootstrap: the container image test builds and starts the image.
bash scripts/install_deps.sh podman runc debootstrap
bash scripts/fetch_model.sh >/dev/null
bash scripts/build.sh
# Python packages of two tests, from PyPI into this virtualenv: the official `openai` client (the
# HTTP API's e2e test) and kubernetes-validate, which carries the Kubernetes OpenAPI schemas
# (deploy_manifests_test). Where they cannot be installed, those tests skip and say why.
if ! .venv-test/bin/python -c 'import openai, kubernetes_validate' 2>/dev/null; then
  python3 -m venv .venv-test && .venv-test/bin/pip install -q 'openai>=1.40' \
    'kubernetes-validate>=1.30' ||
    echo "[test] the test virtualenv could not be set up; the tests that need it will skip"
fi
(cd build && ctest --output-on-failure -j "$(nproc)" "$@")
# Where a CUDA toolkit is installed, the CUDA backend must compile and link with warnings as
# errors, and its tests must skip cleanly on a machine without a GPU (scripts/gpu_check.sh runs
# them on one).
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
if [[ $# -eq 0 && -x $nvcc ]]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B build-cuda "${gen[@]}" -DEAGLE_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
  cmake --build build-cuda --target cuda_backend_test nccl_communicator_test model_test \
    -j "$(nproc)"
  build-cuda/tests/cuda_backend_test
  build-cuda/tests/nccl_communicator_test
  build-cuda/tests/model_test --gtest_filter='*Device*:*Workspace*'
fi
