#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, and any package named as an argument.
# Idempotent: a second run installs nothing.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git python3 python3-pip python3-venv
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev libpcre2-dev libutf8proc-dev nlohmann-json3-dev unzip clang-format
  prometheus-cpp-dev libcpp-httplib-dev libgloo-dev openssl curl
  "$@"
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[deps] installing: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[deps] all packages present"
fi
