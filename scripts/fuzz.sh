#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang,
# ASan and UBSan in build-fuzz/, then run them on their seed corpora.
#
#   scripts/fuzz.sh                  every target for 60 s each
#   scripts/fuzz.sh TARGET [SECONDS] one target (idx, idx_gz, safetensors, checkpoint, args, ...)
#   scripts/fuzz.sh all SECONDS      every target, one after the other
#   scripts/fuzz.sh --seeds          rewrite tests/fuzz/corpus/ with files made by the library
#
# Environment: FUZZ_RUNS (stop a target after this many executions, default
# unlimited), FUZZ_BUILD_DIR (default build-fuzz), FUZZ_NICE (default 10),
# FUZZ_ARGS (extra libFuzzer flags), OMP_NUM_THREADS (default 1). New inputs go to $FUZZ_BUILD_DIR/corpus/T
# (the checked-in seeds in tests/fuzz/corpus/T are only read), crashes to
# $FUZZ_BUILD_DIR/artifacts/T/, the log to $FUZZ_BUILD_DIR/logs/T.log.
# One process per target (-jobs=1 semantics): the machine is shared.
# Exit status 1 when a target found a crash, leak or timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

B=${FUZZ_BUILD_DIR:-build-fuzz}
# clang 14 (Debian 12), its libFuzzer/sanitizer runtimes and OpenMP runtime
PACKAGES=(clang libclang-rt-14-dev libomp-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -f "$B/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DDDPM_FUZZ=ON -DDDPM_BUILD_TESTS=OFF >/dev/null
fi
nice -n "${FUZZ_NICE:-10}" cmake --build "$B" -j2 >/dev/null

if [ "${1:-}" = "--seeds" ]; then
  rm -rf tests/fuzz/corpus
  "$B/fuzz/make_seeds" tests/fuzz/corpus
  echo "fuzz.sh: seeds written to tests/fuzz/corpus"
  exit 0
fi

TARGET=${1:-all}
SECONDS_EACH=${2:-60}
if [ "$TARGET" = all ]; then
  targets=()
  for f in tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    [ -x "$B/fuzz/$n" ] && targets+=("${n#fuzz_}") # CMake skips a target whose reader is absent
  done
else
  targets=("${TARGET#fuzz_}")
fi

# one thread: the readers' OpenMP loops would otherwise spin a second core
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
for t in "${targets[@]}"; do
  exe="$B/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz.sh: no target '$t' ($exe)" >&2; exit 2; }
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
  seeds=()
  [ -d "tests/fuzz/corpus/$t" ] && seeds=("tests/fuzz/corpus/$t")
  runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=("-runs=$FUZZ_RUNS")
  log="$B/logs/$t.log"
  start=$(date +%s)
  rc=0
  # shellcheck disable=SC2086
  nice -n "${FUZZ_NICE:-10}" "$exe" -max_total_time="$SECONDS_EACH" "${runs[@]}" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" ${FUZZ_ARGS:-} \
    "$B/corpus/$t" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz.sh: $t: FAILED after ${secs}s (exit $rc), see $log and $B/artifacts/$t/"
    grep -m3 -E 'ERROR|runtime error|invariant failed|SUMMARY' "$log" || true
  else
    echo "fuzz.sh: $t: ${execs:-?} executions in ${secs}s, ${cov:-cov ?}, no findings"
  fi
done
exit "$status"
