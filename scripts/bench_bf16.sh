#!/bin/bash
# bench_bf16.sh: bfloat16 against float32, ddpm and PyTorch, in one run.
#
#   scripts/bench_bf16.sh [--threads N] [--seconds S] [--rounds R] [--no-presets]
#                         [--build-dir DIR]
#
# For each workload, R rounds (default 3) of four runs one after the other,
# in this order every round so that a drift of the machine falls on all four:
#   ddpm bench --precision fp32           ddpm bench --precision bf16
#   bench_torch.py --precision fp32       bench_torch.py --precision bf16
#                                         (torch.autocast("cpu", bfloat16))
# each timing the training step and the denoiser (`--only` is not used: the
# peak RSS is the training part's). Workloads: the bench's reference model on
# MNIST shapes (batch 64), and unless --no-presets the 32 px and 64 px RGB
# presets of image folders (batch 64 and 16), one round each (a PyTorch step
# of the 64 px preset takes seconds).
#
# Prints every run's key=value lines to stderr, then one table per workload:
# the median over rounds of train_img_per_s, sample_img_steps_per_s and
# peak_rss_mb for each of the four, and the ratios bf16 / fp32 (ours and
# PyTorch's) and ours / PyTorch (each precision). The first line names the
# CPU (`ddpm bench`'s cpu_* keys) and OPENBLAS_CORETYPE as set.
#
# Run it on a quiet machine: every other CPU-heavy job skews the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2 SECONDS_=8 ROUNDS=3 PRESETS=1 BUILD=build
while (($#)); do
  case $1 in
    --threads) THREADS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-presets) PRESETS=0; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_bf16.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
DDPM=$BUILD/ddpm
[[ -x $DDPM ]] || { echo "bench_bf16.sh: no $DDPM (build first: scripts/bootstrap.sh)" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
  { echo "bench_bf16.sh: /usr/bin/python3 cannot import torch (apt-get install python3-torch)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one run: NAME then the command; keeps its key=value lines in $tmp/NAME.R
run() {
  local name=$1 r=$2; shift 2
  echo "== $name round $r: $*" >&2
  "$@" 2>>"$tmp/stderr" | tee "$tmp/$name.$r" >&2
}

key() { sed -n "s/^$1=//p" "$2"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# workload TITLE ROUNDS -- FLAGS...
workload() {
  local title=$1 rounds=$2; shift 3
  rm -f "$tmp"/*.[0-9]*
  for ((r = 1; r <= rounds; r++)); do
    for p in fp32 bf16; do
      run "ddpm_$p" "$r" "$DDPM" bench --threads "$THREADS" --seconds "$SECONDS_" --warmup 2 --precision "$p" "$@"
    done
    for p in fp32 bf16; do
      run "torch_$p" "$r" /usr/bin/python3 scripts/bench_torch.py --threads "$THREADS" --seconds "$SECONDS_" \
        --warmup 2 --precision "$p" "$@"
    done
  done
  local m
  m=$(key model "$tmp/ddpm_fp32.1")
  printf '\n%s: %s, %s threads, median of %d round(s)\n' "$title" "$m" "$THREADS" "$rounds"
  printf '%-24s %12s %12s %12s %12s\n' "" "ddpm fp32" "ddpm bf16" "torch fp32" "torch bf16"
  declare -A v
  for k in train_img_per_s sample_img_steps_per_s peak_rss_mb; do
    printf '%-24s' "$k"
    for n in ddpm_fp32 ddpm_bf16 torch_fp32 torch_bf16; do
      v[$n.$k]=$(for f in "$tmp/$n".*; do key "$k" "$f"; done | median)
      printf ' %12.1f' "${v[$n.$k]}"
    done
    echo
  done
  for k in train_img_per_s sample_img_steps_per_s; do
    awk -v k="$k" -v a="${v[ddpm_fp32.$k]}" -v b="${v[ddpm_bf16.$k]}" -v c="${v[torch_fp32.$k]}" \
      -v d="${v[torch_bf16.$k]}" 'BEGIN {
        printf "%-24s bf16/fp32: ddpm %.2f, torch %.2f; ddpm/torch: fp32 %.2f, bf16 %.2f\n", k, b/a, d/c, a/c, b/d }'
  done
  awk -v a="${v[ddpm_fp32.peak_rss_mb]}" -v b="${v[ddpm_bf16.peak_rss_mb]}" \
    'BEGIN { printf "%-24s ddpm bf16/fp32 %.3f\n", "peak_rss_mb", b/a }'
}

probe=$("$DDPM" bench --only sgemm --seconds 0 --warmup 0 --sgemm-size 64 2>/dev/null)
printf 'cpu: %s (%s family %s model %s; %s); OPENBLAS_CORETYPE=%s; %s\n' "$(key cpu_name <(echo "$probe"))" \
  "$(key cpu_vendor <(echo "$probe"))" "$(key cpu_family <(echo "$probe"))" "$(key cpu_model <(echo "$probe"))" \
  "$(key cpu_features <(echo "$probe"))" "${OPENBLAS_CORETYPE-(unset)}" "$(key bf16_kernel <(echo "$probe") | sed 's/^/bf16 kernel /')"
workload "reference model, MNIST shapes, batch 64" "$ROUNDS" --
if ((PRESETS)); then
  workload "32 px RGB preset, batch 64" 1 -- --size 32 --channels 3
  workload "64 px RGB preset, batch 16" 1 -- --size 64 --channels 3 --batch 16
fi
