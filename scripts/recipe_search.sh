#!/usr/bin/env bash
# recipe_search.sh: train candidate recipes on equal training-time budgets and
# measure their FID and KID.
#
# For each candidate (a line of the candidate file):
#   1. its iteration count: the candidate's own --iters, else the number that
#      fills the budget (-b SECONDS) at the candidate's images/s on RATE_THREADS
#      threads (-T, default 2: the quick start's machine). The rate is looked
#      up in the rate table (-R) by the flags that set a step's cost (--data, --batch,
#      --ch, --ch-mult, --res-blocks, --attn, --precision, --size, --channels);
#      a missing one is measured by a short probe run and added. Measure rates
#      on a quiet machine: the search itself may then run on fewer threads, two
#      candidates at a time, without changing what each candidate trains;
#   2. --warmup P% becomes P percent of those iterations; without --warmup a
#      candidate warms up for 9 % of them (the quick start's 200 of 2200);
#   3. `ddpm train FLAGS --iters N` (wall time = train_s), checkpointing every
#      50 iterations: a search stopped at any point continues where it was
#      when run again (a run with a checkpoint resumes; a candidate already in
#      the results table is skipped);
#   4. `ddpm sample -n 16 -o RUNS/NAME/grid.png SAMPLE_FLAGS` (kept for looking at);
#   5. `ddpm eval -c ckpt -n EVAL_N SAMPLE_FLAGS`: FID, precision, recall and
#      KID of the EMA weights, and with -w also the FID of the raw weights
#      (fid_raw); a model trained on an image folder is measured against that
#      folder (the checkpoint names it);
# and appends one row to the results table (tab-separated, header on first use):
#   name iters train_s fid fid_raw precision recall eval_s threads load date
#   train_flags sample_flags kid kid_std
# (kid and kid_std last, so that tables begun before they were added still line up).
#
# An image folder is a training flag like any other: --data data/emoji.
#
# Candidate file: one candidate a line, '#' starts a comment, fields separated
# by a TAB:  NAME <TAB> TRAIN FLAGS <TAB> SAMPLE FLAGS (may be empty)
#   base	--objective v	--sampler dpm++2m --sample-steps 20
#   b32	--batch 32 --warmup 5%	--sampler dpm++2m --sample-steps 20
#
# usage: scripts/recipe_search.sh -c CANDIDATES [-o RESULTS.tsv] [-b SECONDS] [-R RATES.tsv]
#            [-r RUNS_DIR] [-t THREADS] [-T RATE_THREADS] [-d DATA_DIR] [-n EVAL_N] [-w]
#   -o  results table (default results/recipe_search.tsv)
#   -b  training budget in seconds on RATE_THREADS threads (default 770)
#   -R  rate table: speed key <TAB> images/s (default RUNS/rates.tsv)
#   -r  where runs go (default runs/search; each candidate in RUNS/NAME)
#   -t  threads for training and evaluation (default 2)
#   -T  threads the budget is measured on (default 2)
#   -d  MNIST directory (default data/mnist; also $DDPM_DATA_DIR)
#   -n  samples for FID (default 1000)
#   -w  also evaluate the raw weights (--no-ema)
set -euo pipefail

cd "$(dirname "$0")/.."
DDPM=${DDPM:-build/ddpm}
CANDS="" OUT=results/recipe_search.tsv BUDGET=770 RUNS=runs/search THREADS=2 RTHREADS=2 RATES=""
DATA=${DDPM_DATA_DIR:-data/mnist} EVAL_N=1000 RAW=0
while getopts "c:o:b:R:r:t:T:d:n:wh" opt; do
  case $opt in
    c) CANDS=$OPTARG ;; o) OUT=$OPTARG ;; b) BUDGET=$OPTARG ;; R) RATES=$OPTARG ;; r) RUNS=$OPTARG ;;
    t) THREADS=$OPTARG ;; T) RTHREADS=$OPTARG ;; d) DATA=$OPTARG ;; n) EVAL_N=$OPTARG ;; w) RAW=1 ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
[[ -n $CANDS && -r $CANDS ]] || { echo "recipe_search: need a readable candidate file (-c FILE)" >&2; exit 2; }
[[ -x $DDPM ]] || { echo "recipe_search: no $DDPM (run scripts/bootstrap.sh)" >&2; exit 1; }
[[ $BUDGET =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ && $RTHREADS =~ ^[0-9]+$ && $EVAL_N =~ ^[0-9]+$ ]] ||
  { echo "recipe_search: -b, -t, -T and -n take whole numbers" >&2; exit 2; }
RATES=${RATES:-$RUNS/rates.tsv}
mkdir -p "$RUNS" "$(dirname "$OUT")" "$(dirname "$RATES")"
[[ -s $OUT ]] || printf 'name\titers\ttrain_s\tfid\tfid_raw\tprecision\trecall\teval_s\tthreads\tload\tdate\ttrain_flags\tsample_flags\tkid\tkid_std\n' > "$OUT"
touch "$RATES"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
load1() { awk '{ print $1 }' /proc/loadavg; }
# The value of flag $2 in the flag string $1, else $3.
flag() { local v; v=$(awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) v = $(i + 1) } END { print v }' <<< "$1"); echo "${v:-$3}"; }
# The flag string $1 without the flags $2... and their values.
without() {
  local s=$1; shift
  awk -v drop=" $* " '{ for (i = 1; i <= NF; i++) if (index(drop, " " $i " ")) i++; else o = o (o ? " " : "") $i } END { print o }' <<< "$s"
}
# The flags of $1 that set the cost of a step, in a fixed order: the rate table's key.
speed_key() {
  local k="" f v
  for f in --data --batch --ch --ch-mult --res-blocks --attn --precision --size --channels; do
    v=$(flag "$1" "$f" "")
    [[ -n $v ]] && k="$k${k:+ }$f $v"
  done
  echo "${k:-default}"
}
# key=value from ddpm eval's output.
value() { sed -n "s/^$2=//p" <<< "$1"; }

# Images/s of the flags $2 on RTHREADS threads: from the table, else a probe
# (iterations 10 to 35 of a 35-iteration run) whose result joins the table.
rate_of() {
  local name=$1 flags=$2 key rate dir="$RUNS/$1.probe"
  key=$(speed_key "$flags")
  rate=$(awk -F'\t' -v k="$key" '$1 == k { r = $2 } END { print r }' "$RATES")
  if [[ -z $rate ]]; then
    # shellcheck disable=SC2086,SC2046  # the flags are words
    "$DDPM" train $(without "$flags" --iters --warmup --log-every --ckpt-every) --iters 35 --warmup 1 --log-every 1 \
      --threads "$RTHREADS" --data-dir "$DATA" --out "$dir" --force > /dev/null 2> "$dir.log" ||
      { echo "recipe_search: $name: probe run failed (see $dir.log)" >&2; return 1; }
    rate=$(awk -F, -v b="$(flag "$flags" --batch 64)" '$1 == 10 { t0 = $5 } $1 == 35 { t1 = $5 }
           END { if (t1 > t0) printf "%.2f", 25 * b / (t1 - t0) }' "$dir/log.csv")
    [[ -n $rate ]] || { echo "recipe_search: $name: no rate in $dir/log.csv" >&2; return 1; }
    printf '%s\t%s\n' "$key" "$rate" >> "$RATES"
    rm -rf "$dir" "$dir.log"
    echo "recipe_search: $name: $key: probe $rate img/s on $RTHREADS threads" >&2
  fi
  echo "$rate"
}

run_candidate() {
  local name=$1 tflags=$2 sflags=$3 dir="$RUNS/$1" iters rate warm load t1 ev evr="" fid_raw=-
  iters=$(flag "$tflags" --iters "")
  if [[ -z $iters ]]; then
    rate=$(rate_of "$name" "$tflags") || return 1
    iters=$(awk -v r="$rate" -v b="$(flag "$tflags" --batch 64)" -v s="$BUDGET" 'BEGIN { n = int(r * s / b); print (n > 0 ? n : 1) }')
    tflags="$tflags --iters $iters"
  fi
  warm=$(flag "$tflags" --warmup 9%)
  if [[ $warm == *% ]]; then
    tflags="$(without "$tflags" --warmup) --warmup $(awk -v p="${warm%\%}" -v n="$iters" 'BEGIN { print int(p * n / 100 + 0.5) }')"
  fi
  load=$(load1)
  if [[ -f $dir/ckpt.safetensors ]] && grep -qx "iter=$iters" "$dir/run.txt" 2> /dev/null; then
    echo "recipe_search: $name: trained already" >&2
  else
    # a resumed run takes its recipe from the checkpoint, which refuses the flags that set it
    local again="--force" args=$tflags
    [[ -f $dir/ckpt.safetensors ]] && again="--resume" args="--iters $iters"
    echo "recipe_search: $name: train $tflags ($again, $THREADS threads, load $load)" >&2
    # shellcheck disable=SC2086
    "$DDPM" train $args --ckpt-every 50 --threads "$THREADS" --data-dir "$DATA" --out "$dir" $again \
      >> "$dir.train.log" 2>&1 || { echo "recipe_search: $name: training failed (see $dir.train.log)" >&2; return 1; }
  fi
  t1=$(now)
  # shellcheck disable=SC2086
  "$DDPM" sample -c "$dir/ckpt.safetensors" -n 16 -o "$dir/grid.png" $sflags --threads "$THREADS" 2> "$dir.sample.log" ||
    { echo "recipe_search: $name: sampling failed (see $dir.sample.log)" >&2; return 1; }
  # shellcheck disable=SC2086
  ev=$("$DDPM" eval -c "$dir/ckpt.safetensors" -n "$EVAL_N" $sflags --data-dir "$DATA" --threads "$THREADS" \
       2> "$dir.eval.log") || { echo "recipe_search: $name: eval failed (see $dir.eval.log)" >&2; return 1; }
  if [[ $RAW == 1 ]]; then
    # shellcheck disable=SC2086
    evr=$("$DDPM" eval -c "$dir/ckpt.safetensors" -n "$EVAL_N" $sflags --no-ema --data-dir "$DATA" \
          --threads "$THREADS" 2>> "$dir.eval.log") || { echo "recipe_search: $name: eval failed" >&2; return 1; }
    fid_raw=$(value "$evr" fid)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$iters" \
    "$(awk -F, 'NR > 1 { t = $5 } END { print t }' "$dir/log.csv")" "$(value "$ev" fid)" "$fid_raw" \
    "$(value "$ev" precision)" "$(value "$ev" recall)" "$(secs "$t1" "$(now)")" "$THREADS" "$load" \
    "$(date -u +%FT%TZ)" "$tflags" "$sflags" "$(value "$ev" kid)" "$(value "$ev" kid_std)" >> "$OUT"
  echo "recipe_search: $name: FID $(value "$ev" fid) (raw $fid_raw), KID $(value "$ev" kid), $iters iterations" >&2
}

fails=0
while IFS= read -r -u 3 line || [[ -n ${line:-} ]]; do
  # cut, not read: read would merge the two tabs around empty train flags
  name=$(cut -f1 <<< "$line") tflags=$(cut -s -f2 <<< "$line") sflags=$(cut -s -f3 <<< "$line")
  [[ -z ${name// /} || $name == \#* ]] && continue
  if awk -F'\t' -v n="$name" '$1 == n { found = 1 } END { exit !found }' "$OUT"; then continue; fi
  run_candidate "$name" "${tflags:-}" "${sflags:-}" || fails=$((fails + 1))
done 3< "$CANDS"
echo "recipe_search: results in $OUT$( ((fails)) && echo " ($fails candidate(s) failed)")" >&2
[[ $fails == 0 ]]
