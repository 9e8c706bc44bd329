#!/usr/bin/env bash
# Builds the CPU image from deploy/docker/Dockerfile with podman (or docker where podman is
# missing). Where no image registry can be reached, the Debian bookworm base is made here:
# debootstrap --variant=minbase into a folder, imported as localhost/debian-base:bookworm (once;
# later builds reuse it and the cached layers). The build itself runs the project's scripts
# inside (install_deps, fetch_model, build). Usage:
#   scripts/build_image.sh [TAG]            (default eagle:dev)
# Environment: EAGLE_IMAGE_BASE=IMAGE uses that base instead (e.g. debian:bookworm from a
# registry); EAGLE_DEBIAN_MIRROR (default http://deb.debian.org/debian) for debootstrap.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tag=${1:-eagle:dev}
if command -v podman >/dev/null; then
  engine=(podman)
  # runc rather than crun (which fails on hybrid cgroup hierarchies), and ulimits within this
  # machine's hard limits (podman's defaults may exceed them).
  command -v runc >/dev/null && engine+=(--runtime runc)
  build_flags=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
elif command -v docker >/dev/null; then
  engine=(docker)
  build_flags=()
else
  echo "error: neither podman nor docker is installed (apt-get install podman runc)" >&2
  exit 2
fi
base=${EAGLE_IMAGE_BASE:-}
if [[ -z $base ]]; then
  base=localhost/debian-base:bookworm
  if ! "${engine[@]}" image exists "$base" 2>/dev/null &&
     ! "${engine[@]}" image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || {
      echo "error: no base image $base and no debootstrap to make it (apt-get install" \
           "debootstrap), or set EAGLE_IMAGE_BASE" >&2
      exit 2
    }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "[image] debootstrap bookworm (minbase) into $rootfs" >&2
    debootstrap --variant=minbase bookworm "$rootfs" \
      "${EAGLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | "${engine[@]}" import - "$base" >/dev/null
  fi
fi
echo "[image] building $tag from $base" >&2
# --network host: apt-get and pip inside reach the package mirrors as this machine does.
"${engine[@]}" build "${build_flags[@]}" --network host \
  --build-arg BASE="$base" --build-arg RUNTIME_BASE="$base" \
  -f deploy/docker/Dockerfile -t "$tag" .
echo "[image] built $tag" >&2
