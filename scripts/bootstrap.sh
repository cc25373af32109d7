#!/usr/bin/env bash
# bootstrap.sh: install the Debian packages ddpm needs (if missing), then
# configure and build into build/. Idempotent: a second run only rebuilds
# what changed. Extra arguments go to cmake's configure step, e.g.
#   scripts/bootstrap.sh -DDDPM_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libstb-dev libcmocka-dev zlib1g-dev openmpi-bin libopenmpi-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "bootstrap: built $BUILD_DIR/ddpm"
