#!/bin/sh
# Runs the trainer's tests with a Python that has torch: $EAGLE_TRAIN_PYTHON, else the .venv-train
# that scripts/train_default_head.sh makes, else python3. Without torch the tests exit 77, which
# ctest reports as skipped.
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${EAGLE_TRAIN_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv-train/bin/python" ]; then py=$root/.venv-train/bin/python; else py=python3; fi
fi
exec "$py" "$root/tests/train/train_eagle_test.py" "$@"
