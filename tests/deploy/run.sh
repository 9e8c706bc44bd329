#!/bin/sh
# Validates every kustomize overlay under deploy/ (deploy/validate.py) with a Python that has
# kubernetes-validate: $EAGLE_TEST_PYTHON, else the .venv-test that scripts/test.sh makes, else
# python3; the flags the manifests pass are checked against the binaries given as arguments.
# Exits 77 (skipped) without kubectl or kubernetes-validate.
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${EAGLE_TEST_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv-test/bin/python" ]; then py=$root/.venv-test/bin/python; else py=python3; fi
fi
exec "$py" "$root/deploy/validate.py" --bin "eagle-drafter=$1" --bin "eagle-verifier=$2"
