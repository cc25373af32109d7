#!/usr/bin/env bash
# sampler_quality.sh: sample quality against model calls, and guidance (docs/usage.md).
#
#   (a) sample quality against the number of model calls: ddpm, ddim and
#       dpm++2m at 10, 20, 50, 100 and 1000 steps on an unconditional model,
#       scored by `ddpm eval FILE.idx` (FID against MNIST and the digit
#       classifier's mean confidence);
#   (b) classifier-free guidance on a class-conditional model: the share of
#       samples the classifier puts in the requested class (label_accuracy)
#       at W = 0, 1, 2, 3, and the label grid docs/label_grid.png.
#
# usage: scripts/sampler_quality.sh [UNCOND_CKPT] [COND_CKPT]
#   defaults: runs/mnist/ckpt.safetensors runs/cond/ckpt.safetensors
#   (a missing checkpoint skips its part). Environment:
#     DDPM=build/ddpm  N=256 (images per run in (a))  NG=500 (per W in (b))
#     STEPS="10 20 50 100 1000"  SAMPLERS="ddpm ddim dpm++2m"
#     CALLS="10 20 50": instead of STEPS, model calls per image (heun's K
#       steps make 2K-1 calls: it runs K = (calls + 1) / 2, the others K = calls)
#     GSAMPLER=dpm++2m GSTEPS=20 (the sampler of (b))  THREADS=0  SEED=0
#     OUT=runs/sampler_quality (IDX files, tables)  DATA_DIR (MNIST for eval)
# calls_per_image is K, and 2K-1 for heun (Euler alone on its last step).
# dpm++2m takes at most T-1 steps (it never calls the model at t = 0): its
# "1000" runs 999 steps on a T = 1000 model, and the table says so.
#
# Cost: one model call per step per image (two images' worth with guidance);
# the default UNet is 0.55 GFLOP per image per call. (a) with N = 256 is
# 3540 steps x 256 images = 0.9 M image-calls, about 500 TFLOP: hours on two
# cores. Lower N or drop 1000 from STEPS for a quick look.
#
# Output: results/sampler_quality.tsv (a) and results/guidance.tsv (b) under
# OUT, one line per run: sampler, steps, model calls per image, seconds, and
# every key=value `ddpm eval` prints (fid, confidence, label_accuracy, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
DDPM=${DDPM:-build/ddpm}
UNCOND=${1:-runs/mnist/ckpt.safetensors}
COND=${2:-runs/cond/ckpt.safetensors}
N=${N:-256} NG=${NG:-500} SEED=${SEED:-0} THREADS=${THREADS:-0}
STEPS=${STEPS:-"10 20 50 100 1000"} SAMPLERS=${SAMPLERS:-"ddpm ddim dpm++2m"}
GSAMPLER=${GSAMPLER:-dpm++2m} GSTEPS=${GSTEPS:-20}
OUT=${OUT:-runs/sampler_quality}
EVAL_FLAGS=()
[ -n "${DATA_DIR:-}" ] && EVAL_FLAGS+=(--data-dir "$DATA_DIR")
mkdir -p "$OUT/results"
"$DDPM" eval --help >/dev/null 2>&1 || { echo "sampler_quality: '$DDPM eval' is missing (scripts/bootstrap.sh builds it)" >&2; exit 1; }

# T of a checkpoint, from `ddpm sample`'s header line (1000 when unknown).
timesteps() { "$DDPM" sample -c "$1" -n 1 --sampler ddim --sample-steps 1 -o "$OUT/probe.png" 2>&1 |
  sed -n 's/.* schedule T=\([0-9]*\);.*/\1/p' | head -1; }

# eval_line FILE.idx [eval flags]: the key=value lines of `ddpm eval` on one line.
eval_line() { "$DDPM" eval "$@" "${EVAL_FLAGS[@]}" | tr '\n' ' '; }

# (a) quality against model calls
if [ -f "$UNCOND" ]; then
  T=$(timesteps "$UNCOND"); T=${T:-1000}
  tsv="$OUT/results/sampler_quality.tsv"
  printf 'sampler\tsteps\tcalls_per_image\tseconds\teval\n' > "$tsv"
  for s in $SAMPLERS; do
    for k in ${CALLS:-$STEPS}; do
      kk=$k
      [ -n "${CALLS:-}" ] && [ "$s" = heun ] && kk=$(((k + 1) / 2))
      [ "$s" = dpm++2m ] && [ "$k" -ge "$T" ] && kk=$((T - 1))
      [ "$kk" -gt "$T" ] && continue
      f="$OUT/${s}_${kk}.idx"
      t0=$(date +%s.%N)
      "$DDPM" sample -c "$UNCOND" -n "$N" --sampler "$s" --sample-steps "$kk" --seed "$SEED" \
        --threads "$THREADS" -o "$OUT/${s}_${kk}.png" --idx "$f" 2>>"$OUT/log.txt"
      t1=$(date +%s.%N)
      calls=$kk
      [ "$s" = heun ] && calls=$((2 * kk - 1))
      printf '%s\t%s\t%s\t%.0f\t%s\n' "$s" "$kk" "$calls" "$(echo "$t1 - $t0" | bc)" "$(eval_line "$f")" | tee -a "$tsv"
    done
  done
else
  echo "sampler_quality: no unconditional checkpoint '$UNCOND': skipping (a)" >&2
fi

# (b) guidance: label accuracy at W = 0..3, and the label grid
if [ -f "$COND" ]; then
  tsv="$OUT/results/guidance.tsv"
  printf 'guidance\tsampler\tsteps\tcalls_per_image\tseconds\teval\n' > "$tsv"
  for w in 0 1 2 3; do
    f="$OUT/guided_w$w.idx"
    t0=$(date +%s.%N)
    "$DDPM" sample -c "$COND" -n "$NG" --sampler "$GSAMPLER" --sample-steps "$GSTEPS" --guidance "$w" \
      --seed "$SEED" --threads "$THREADS" -o "$OUT/guided_w$w.png" --idx "$f" --label-idx "$OUT/guided_w$w.labels.idx" \
      2>>"$OUT/log.txt"
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%.0f\t%s\n' "$w" "$GSAMPLER" "$GSTEPS" "$((2 * GSTEPS))" "$(echo "$t1 - $t0" | bc)" \
      "$(eval_line "$f" --labels "$OUT/guided_w$w.labels.idx")" | tee -a "$tsv"
  done
  mkdir -p docs
  "$DDPM" sample -c "$COND" -n 80 --sampler "$GSAMPLER" --sample-steps "$GSTEPS" --guidance 3 --seed "$SEED" \
    --threads "$THREADS" --scale 2 -o docs/label_grid.png 2>>"$OUT/log.txt"
  echo "sampler_quality: wrote docs/label_grid.png (8 rows x 10 classes, W = 3)" >&2
else
  echo "sampler_quality: no class-conditional checkpoint '$COND': skipping (b)" >&2
fi
