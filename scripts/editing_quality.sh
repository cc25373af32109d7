#!/usr/bin/env bash
# editing_quality.sh CKPT: what editing keeps, on an unconditional MNIST model.
#
#   inpainting: the lower half (rows 14-27) of the first 100 MNIST test digits
#     regenerated (RePaint), the upper half kept; how often the evaluation
#     network still reads the original label, against the originals and the
#     originals with the lower half blacked out (what the model starts from);
#   image-to-image (SDEdit) at strengths 0.1 to 0.9: the same measure;
#   and, with CALLS set (e.g. CALLS="10 20 50"), FID at N images against model
#     calls per image for each of SAMPLERS, by scripts/sampler_quality.sh.
#
# usage: scripts/editing_quality.sh CKPT
#   environment: DDPM=build/ddpm  DATA_DIR=data/mnist  OUT=runs/editing_quality
#     THREADS=0  SAMPLER=ddpm STEPS=100 (the editing draws)  RESAMPLE="0 4"
#     STRENGTHS="0.1 0.3 0.5 0.7 0.9"  CALLS=""  N=1000
#     SAMPLERS="heun euler euler_a dpm++2m ddim"
# Output: OUT/editing.tsv (what, label_accuracy, fid, precision, recall,
# seconds, kept_exact: inpainting left the upper halves byte for byte) and,
# with CALLS, OUT/calls/results/sampler_quality.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: scripts/editing_quality.sh CKPT}
DDPM=${DDPM:-build/ddpm} DATA_DIR=${DATA_DIR:-data/mnist} OUT=${OUT:-runs/editing_quality} THREADS=${THREADS:-0}
SAMPLER=${SAMPLER:-ddpm} STEPS=${STEPS:-100} RESAMPLE=${RESAMPLE:-"0 4"} STRENGTHS=${STRENGTHS:-"0.1 0.3 0.5 0.7 0.9"}
CALLS=${CALLS:-} N=${N:-1000} SAMPLERS=${SAMPLERS:-"heun euler euler_a dpm++2m ddim"}
[[ -r $CKPT ]] || { echo "editing_quality: cannot read '$CKPT'" >&2; exit 1; }
mkdir -p "$OUT"

# bytes FILE SKIP COUNT: COUNT bytes of FILE from offset SKIP
bytes() { dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none; }
# The MNIST test split, decompressed when it is gzip'd.
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [[ -r $DATA_DIR/$f.gz ]]; then gzip -dc "$DATA_DIR/$f.gz" > "$OUT/$f"; else cp "$DATA_DIR/$f" "$OUT/$f"; fi
done
# The first 100 test digits and their labels: an IDX header with the count 100, then the data.
HDR='\x00\x00\x08\x03\x00\x00\x00\x64\x00\x00\x00\x1c\x00\x00\x00\x1c'
{ printf %b "$HDR"; bytes "$OUT/t10k-images-idx3-ubyte" 16 $((100 * 784)); } > "$OUT/test100.idx"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x64'; bytes "$OUT/t10k-labels-idx1-ubyte" 8 100; } > "$OUT/labels100.idx"
# The mask as a binary PGM: rows 0-13 black (kept), rows 14-27 white (regenerated).
{ printf 'P5\n28 28\n255\n'; head -c $((14 * 28)) /dev/zero; head -c $((14 * 28)) /dev/zero | tr '\0' '\377'; } > "$OUT/lower.pgm"
# upper FILE.idx: its 100 images with rows 14-27 zeroed (the blacked-out inputs,
# and what an inpainted file must reduce to if it kept rows 0-13)
upper() {
  local i
  printf %b "$HDR"
  for i in $(seq 0 99); do bytes "$1" $((16 + i * 784)) $((14 * 28)); head -c $((14 * 28)) /dev/zero; done
}
upper "$OUT/test100.idx" > "$OUT/upper100.idx"

tsv=$OUT/editing.tsv
printf 'what\tlabel_accuracy\tfid\tprecision\trecall\tseconds\tkept_exact\n' > "$tsv"
# kept FILE.idx: "yes" when rows 0-13 of all 100 images equal the inputs' byte for byte
kept() { if cmp -s <(upper "$1") "$OUT/upper100.idx"; then echo yes; else echo no; fi; }
# row WHAT FILE.idx SECONDS [KEPT]: its eval line against the 100 labels
row() {
  local ev
  ev=$("$DDPM" eval "$2" --labels "$OUT/labels100.idx" --data-dir "$DATA_DIR" --threads "$THREADS" 2>/dev/null)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(sed -n 's/^label_accuracy=//p' <<< "$ev")" "$(sed -n 's/^fid=//p' <<< "$ev")" \
    "$(sed -n 's/^precision=//p' <<< "$ev")" "$(sed -n 's/^recall=//p' <<< "$ev")" "$3" "${4:--}" | tee -a "$tsv"
}
# edit NAME FLAGS...: one draw over the 100 digits, then its row
edit() {
  local name=$1 t0 t1; shift
  t0=$(date +%s.%N)
  "$DDPM" sample -c "$CKPT" --init "$OUT/test100.idx" "$@" --sampler "$SAMPLER" --sample-steps "$STEPS" \
    --threads "$THREADS" --idx "$OUT/$name.idx" -o "$OUT/$name.png" 2>> "$OUT/log.txt"
  t1=$(date +%s.%N)
  row "$name $SAMPLER $STEPS $*" "$OUT/$name.idx" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')" \
    "$([[ $name == inpaint* ]] && kept "$OUT/$name.idx" || echo -)"
}
row "originals" "$OUT/test100.idx" 0
row "upper half only (lower half black)" "$OUT/upper100.idx" 0
for r in $RESAMPLE; do edit "inpaint_r$r" --mask "$OUT/lower.pgm" --resample "$r"; done
for s in $STRENGTHS; do edit "sdedit_$s" --strength "$s"; done

if [[ -n $CALLS ]]; then
  OUT=$OUT/calls N=$N CALLS=$CALLS SAMPLERS=$SAMPLERS THREADS=$THREADS DATA_DIR=$DATA_DIR DDPM=$DDPM \
    scripts/sampler_quality.sh "$CKPT" /nonexistent
fi
