#!/usr/bin/env bash
# check_identity.sh OLD_DDPM NEW_DDPM: runs the same seeded commands with two
# ddpm binaries and compares what they write byte for byte (checkpoints, loss
# plots, sample PNG/IDX, trajectories, noise grids), and of each log.csv the
# iter,loss,lr columns. Used to show that a refactor changed no behaviour.
# Needs MNIST in data/mnist (scripts/fetch_mnist.sh) or DDPM_DATA_DIR; exits 1
# on the first difference.
#
# Not compared: the training runs' sample grids (samples.png,
# samples_NNNNNN.png), which `ddpm train` draws through the sampling pipeline
# since the run module: one random stream per image instead of one generator
# for the whole grid, so their pixels changed on purpose while the
# checkpoints did not; log.csv's other columns (wall time, gradient norm
# printed at another precision by earlier versions) and run.txt (times, CPU).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_DDPM NEW_DDPM" >&2; exit 2; }
OLD=$(realpath "$1"); NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
DATA=${DDPM_DATA_DIR:-$PWD/data/mnist}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/identity.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

run() {  # run BIN DIR: the fixed workload, all outputs under DIR
  local bin=$1 d=$2
  mkdir -p "$d"
  "$bin" train --data-dir "$DATA" --iters 6 --batch 8 --ch 16 --threads 2 --seed 3 \
    --sample-every 3 -o "$d/u" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" train --data-dir "$DATA" --iters 4 --batch 8 --ch 16 --threads 2 --seed 4 \
    --stop-after 2 -o "$d/r" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" train --data-dir "$DATA" --threads 2 --resume -o "$d/r" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" train --data-dir "$DATA" --iters 5 --batch 8 --ch 16 --classes 10 --threads 2 \
    --seed 5 -o "$d/c" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" sample -c "$d/u/ckpt.safetensors" -n 5 --sampler ddim --sample-steps 8 --seed 7 \
    -o "$d/ddim.png" --idx "$d/ddim.idx" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" sample -c "$d/u/ckpt.safetensors" -n 3 --sampler ddpm --sample-steps 40 --threads 1 --seed 8 \
    -o "$d/ddpm.png" --trajectory "$d/traj.png" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" sample -c "$d/c/ckpt.safetensors" -n 4 --sampler ddim --sample-steps 5 \
    -o "$d/cond.png" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  "$bin" noise --data-dir "$DATA" --t 0,10,500 -o "$d/noise.png" >>"$d.log" 2>&1 || { echo "identity: $bin failed, see:" >&2; tail -3 "$d.log" >&2; exit 1; }
  (cd "$d" && find . -type f ! -name log.csv ! -name run.txt ! -name report.html ! -path './[urc]/samples*.png' | sort | xargs sha256sum
   for l in $(find . -name log.csv | sort); do printf '%s  %s[iter,loss,lr]\n' "$(cut -d, -f1-3 "$l" | sha256sum | cut -c1-64)" "$l"; done)
}

# The old binary's sums are kept by its hash and the CPU's model and flags
# (the kernels, and so the last bits, depend on them): a baseline is run once
# per machine.
CACHE=${TMPDIR:-/tmp}/ddpm-identity-cache
mkdir -p "$CACHE"
key=$( (cat "$OLD" "$0"; grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) | sha256sum | cut -c1-16)
if [ -s "$CACHE/$key.sums" ]; then cp "$CACHE/$key.sums" "$WORK/old.sums"
else run "$OLD" "$WORK/old" > "$WORK/old.sums" && cp "$WORK/old.sums" "$CACHE/$key.sums"; fi
run "$NEW" "$WORK/new" > "$WORK/new.sums"
n=$(wc -l < "$WORK/old.sums")
if diff "$WORK/old.sums" "$WORK/new.sums"; then
  echo "identity: $n files byte-identical"
else
  echo "identity: outputs differ" >&2; exit 1
fi
