#!/usr/bin/env bash
# folder_floors.sh [DIR] [SIZES]: the floors of docs/quality.md's "Image
# folders" section: FID and KID of real, blurred, blob and noise image sets
# (scripts/folder_floors.c) against the whole folder DIR (default data/emoji,
# scripts/fetch_emoji.sh) at each size in SIZES (default "32 64"), with the
# evaluation network `ddpm eval` uses (shipped or cached). Needs a build in
# ${BUILD_DIR:-build}. Prints the raw output; the CPU first.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build}
DIR=${1:-$src/data/emoji}
SIZES=${2:-32 64}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
link=$(sed -n 's/.*-o ddpm *//p' "$build/CMakeFiles/ddpm.dir/link.txt")
(cd "$build" && cc -O2 -std=c11 -I"$src/include" "$src/scripts/folder_floors.c" -o "$tmp/floors" $link)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -c ^processor /proc/cpuinfo) cores (this run pinned to $(nproc))"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
for S in $SIZES; do
  mkdir -p "$tmp/$S"
  "$tmp/floors" "$DIR" "$S" "$tmp/$S" > /dev/null
  for set in held real1000 blur blobs noise; do
    echo "== $S px: $set"
    echo "\$ ddpm eval $set.idx --data $DIR --threads 1"
    "$build/ddpm" eval "$tmp/$S/$set.idx" --data "$DIR" --threads 1 2> "$tmp/err" | grep -E '^(n|n_reference|net|net_sha256|net_test_accuracy|reference_images|fid|kid|kid_std|precision|recall|confidence|class_entropy)='
    grep -v '^ddpm eval: [0-9]* images against' "$tmp/err" >&2 || true
  done
done
