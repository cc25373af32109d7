#!/usr/bin/env bash
# recipe_search.sh DDPM SOURCE_DIR: scripts/recipe_search.sh on a tiny
# candidate (its row carries FID and KID), three ways: from scratch; resumed from a run stopped half way
# (the checkpoint fixes the recipe, so the resumed run must not pass the
# recipe's flags again); and run again once finished (skipped). The resumed
# run ends where the uninterrupted one does, with the same iteration count.
# MNIST: $DDPM_SHARED_MNIST (CMake sets it).
set -euo pipefail
DDPM=$1 SRC=$2
MNIST=${DDPM_SHARED_MNIST:-$SRC/data/mnist}
W=$(mktemp -d "${TMPDIR:-/tmp}/recipe_search.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "recipe_search: $*" >&2; exit 1; }

TFLAGS="--ch 8 --ch-mult 1,2 --res-blocks 1 --attn none --groups 4 --batch 4 --iters 6 --warmup 2"
printf 'tiny\t%s\t--sampler ddim --sample-steps 2\n' "$TFLAGS" > "$W/cands.tsv"
search() { DDPM=$DDPM "$SRC/scripts/recipe_search.sh" -c "$W/cands.tsv" -o "$W/$1.tsv" -r "$W/$1" -d "$MNIST" -t 1 -n 8 \
             2> "$W/$1.log" || fail "$1: $(cat "$W/$1.log")"; }

search whole
# the row's KID (the last two columns) is a number, as ddpm eval printed it
awk -F'\t' 'NR == 1 { ok = ($14 == "kid" && $15 == "kid_std") } NR == 2 { ok = ok && $14 ~ /^-?[0-9.]+$/ && $15 ~ /^[0-9.]+$/ }
             END { exit !ok }' "$W/whole.tsv" || fail "no KID in the results table: $(cat "$W/whole.tsv")"
# shellcheck disable=SC2086  # the flags are words
"$DDPM" train $TFLAGS --stop-after 3 --ckpt-every 50 --threads 1 --data-dir "$MNIST" --out "$W/part/tiny" \
  > /dev/null 2> "$W/stop.log" || fail "stopped run: $(cat "$W/stop.log")"
grep -qx "iter=3" "$W/part/tiny/run.txt" || fail "the stopped run did not stop at iteration 3"
search part
grep -q -- "--resume" "$W/part.log" || fail "the stopped candidate was not resumed: $(cat "$W/part.log")"
grep -qx "iter=6" "$W/part/tiny/run.txt" || fail "the resumed run did not reach iteration 6"
cmp -s "$W/whole/tiny/ckpt.safetensors" "$W/part/tiny/ckpt.safetensors" ||
  fail "the resumed checkpoint differs from the uninterrupted run's"
[[ $(grep -c '^tiny' "$W/part.tsv") == 1 ]] || fail "no results row for the resumed candidate"
search part
[[ $(grep -c '^tiny' "$W/part.tsv") == 1 ]] || fail "a finished candidate was run again"
echo "recipe_search: ok"
