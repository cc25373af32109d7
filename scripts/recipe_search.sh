#!/usr/bin/env bash
# recipe_search.sh: train candidate recipes, time them and measure their FID.
#
# For each candidate (a line of the candidate file):
#   1. the iteration count: the candidate's own --iters, else one chosen to fill
#      the training budget (-b SECONDS) at the images/s a short probe run of
#      that candidate measures (log.csv of a --log-every 1 run, iterations
#      PROBE..end only, so startup is not counted);
#   2. `ddpm train FLAGS --iters N` (wall time = train_s);
#   3. `ddpm sample -n 16 -o grid.png SAMPLE_FLAGS`, the README quick start's
#      second command (wall time = sample_s; the grid is kept for looking at);
#   4. `ddpm eval -c ckpt -n 1000 SAMPLE_FLAGS`: FID (and precision, recall)
#      of 1000 samples drawn with the same sampler flags (eval_s, not part of
#      the quick start);
# and appends one row to the results table (tab-separated, header on first use):
#   name iters train_s sample_s quick_s fid precision recall eval_s threads
#   load commit date train_flags sample_flags
# quick_s = train_s + sample_s: the quick start's time without build and fetch.
#
# Candidate file: one candidate a line, '#' starts a comment, fields separated
# by a TAB:  NAME <TAB> TRAIN FLAGS <TAB> SAMPLE FLAGS (may be empty)
#   base	--iters 1400	--sampler dpm++2m --sample-steps 20
#   v5	--objective v --snr-gamma 5	--sampler dpm++2m
#
# usage: scripts/recipe_search.sh -c CANDIDATES [-o RESULTS.tsv] [-b TRAIN_SECONDS]
#            [-r RUNS_DIR] [-t THREADS] [-d DATA_DIR] [-n EVAL_N] [-p PROBE_ITERS] [-k]
#   -o  results table (default results/recipe_search.tsv)
#   -b  training budget in seconds for candidates without --iters (default 900)
#   -r  where runs go (default runs/search; each candidate in RUNS/NAME)
#   -t  threads for every command (default 2, the quick start's machine)
#   -d  MNIST directory (default data/mnist; also $DDPM_DATA_DIR)
#   -n  samples for FID (default 1000)
#   -p  probe iterations (default 30)
#   -k  keep a candidate's run directory if it already has a checkpoint (skip training)
# Speeds depend on the machine and its load: the table records `uptime`'s
# 1-minute load at the start of each training, and a budget-derived --iters is
# only as good as the probe's conditions.
set -euo pipefail

cd "$(dirname "$0")/.."
DDPM=${DDPM:-build/ddpm}
CANDS="" OUT=results/recipe_search.tsv BUDGET=900 RUNS=runs/search THREADS=2
DATA=${DDPM_DATA_DIR:-data/mnist} EVAL_N=1000 PROBE=30 KEEP=0
while getopts "c:o:b:r:t:d:n:p:kh" opt; do
  case $opt in
    c) CANDS=$OPTARG ;; o) OUT=$OPTARG ;; b) BUDGET=$OPTARG ;; r) RUNS=$OPTARG ;;
    t) THREADS=$OPTARG ;; d) DATA=$OPTARG ;; n) EVAL_N=$OPTARG ;; p) PROBE=$OPTARG ;; k) KEEP=1 ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
[[ -n $CANDS && -r $CANDS ]] || { echo "recipe_search: need a readable candidate file (-c FILE)" >&2; exit 2; }
[[ -x $DDPM ]] || { echo "recipe_search: no $DDPM (run scripts/bootstrap.sh)" >&2; exit 1; }
[[ $BUDGET =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ && $EVAL_N =~ ^[0-9]+$ && $PROBE =~ ^[0-9]+$ ]] ||
  { echo "recipe_search: -b, -t, -n and -p take whole numbers" >&2; exit 2; }
mkdir -p "$RUNS" "$(dirname "$OUT")"
[[ -s $OUT ]] || printf 'name\titers\ttrain_s\tsample_s\tquick_s\tfid\tprecision\trecall\teval_s\tthreads\tload\tcommit\tdate\ttrain_flags\tsample_flags\n' > "$OUT"

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
# key=value from ddpm eval's output.
value() { sed -n "s/^$2=//p" <<< "$1"; }

# Iterations that fill $BUDGET seconds at the probe's measured rate.
budget_iters() {
  local name=$1 flags=$2 dir="$RUNS/$1.probe" batch rate
  batch=$(flag "$flags" --batch 64)
  # shellcheck disable=SC2086  # the flags are words
  "$DDPM" train $(without "$flags" --iters --warmup --log-every) --iters $((PROBE + 10)) --warmup 1 --log-every 1 --threads "$THREADS" \
    --data-dir "$DATA" --out "$dir" --force > /dev/null 2> "$dir.log" ||
    { echo "recipe_search: $name: probe run failed (see $dir.log)" >&2; return 1; }
  # iterations per second between iteration PROBE/3 and the last
  rate=$(awk -F, -v from=$((PROBE / 3)) 'NR > 1 && $1 >= from { if (!n++) { i0 = $1; t0 = $6 } i1 = $1; t1 = $6 }
         END { if (t1 > t0) printf "%.6f", (i1 - i0) / (t1 - t0) }' "$dir/log.csv")
  [[ -n $rate ]] || { echo "recipe_search: $name: no rate in $dir/log.csv" >&2; return 1; }
  echo "recipe_search: $name: probe $(awk -v r="$rate" -v b="$batch" 'BEGIN { printf "%.1f img/s", r * b }')" >&2
  rm -rf "$dir"
  awk -v r="$rate" -v s="$BUDGET" 'BEGIN { n = int(r * s); print (n > 0 ? n : 1) }'
}

run_candidate() {
  local name=$1 tflags=$2 sflags=$3 dir="$RUNS/$1" iters load t0 t1 t2 t3 ev fid
  iters=$(flag "$tflags" --iters "")
  if [[ -z $iters ]]; then
    iters=$(budget_iters "$name" "$tflags") || return 1
    tflags="$tflags --iters $iters"
  fi
  load=$(load1)
  echo "recipe_search: $name: train $tflags ($THREADS threads, load $load)" >&2
  t0=$(now)
  if [[ $KEEP == 1 && -f $dir/ckpt.safetensors ]]; then
    echo "recipe_search: $name: keeping $dir/ckpt.safetensors (-k)" >&2
  else
    # shellcheck disable=SC2086
    "$DDPM" train $tflags --threads "$THREADS" --data-dir "$DATA" --out "$dir" --force > "$dir.train.log" 2>&1 ||
      { echo "recipe_search: $name: training failed (see $dir.train.log)" >&2; return 1; }
  fi
  t1=$(now)
  # shellcheck disable=SC2086
  "$DDPM" sample -c "$dir/ckpt.safetensors" -n 16 -o "$dir/grid.png" $sflags --threads "$THREADS" 2> "$dir.sample.log" ||
    { echo "recipe_search: $name: sampling failed (see $dir.sample.log)" >&2; return 1; }
  t2=$(now)
  # shellcheck disable=SC2086
  ev=$("$DDPM" eval -c "$dir/ckpt.safetensors" -n "$EVAL_N" $sflags --data-dir "$DATA" --threads "$THREADS" \
       2> "$dir.eval.log") || { echo "recipe_search: $name: eval failed (see $dir.eval.log)" >&2; return 1; }
  t3=$(now)
  fid=$(value "$ev" fid)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$iters" "$(secs "$t0" "$t1")" \
    "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" "$fid" "$(value "$ev" precision)" "$(value "$ev" recall)" \
    "$(secs "$t2" "$t3")" "$THREADS" "$load" "$(git rev-parse --short HEAD 2>/dev/null || echo -)" \
    "$(date -u +%FT%TZ)" "$tflags" "$sflags" >> "$OUT"
  echo "recipe_search: $name: FID $fid, train $(secs "$t0" "$t1") s, sample $(secs "$t1" "$t2") s" >&2
}

fails=0
while IFS=$'\t' read -r -u 3 name tflags sflags || [[ -n ${name:-} ]]; do
  [[ -z ${name// /} || $name == \#* ]] && continue
  run_candidate "$name" "${tflags:-}" "${sflags:-}" || fails=$((fails + 1))
done 3< "$CANDS"
echo "recipe_search: results in $OUT$( ((fails)) && echo " ($fails candidate(s) failed)")" >&2
[[ $fails == 0 ]]
