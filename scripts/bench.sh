#!/bin/bash
# bench.sh: ddpm against PyTorch on the same workload, and the performance targets.
#
#   scripts/bench.sh [--threads N] [--seconds S] [--quick] [--presets] [--build-dir DIR] [-- MODEL FLAGS]
#
# Builds ddpm if needed (cmake --build build), then runs, one after the other
# (never at the same time):
#   1. ddpm bench                      --threads N (default 2): train, sample, sgemm
#   2. scripts/bench_torch.py          the same workload in PyTorch, same threads
#   3. ddpm bench --only train         at 1 thread        (thread scaling)
#   4. ddpm bench --only train         at --batch 16 and  (small-batch efficiency)
#   5. ddpm bench --only train         at --batch 128
# and prints the key=value results side by side, then one line per target of
# the performance issue, each PASS or MISS:
#   training img/s         ours / torch                  >= 1.5
#   sampling img-steps/s   ours / torch                  >= 2
#   peak RSS               ours / torch                  <= 0.5
#   train_gflops / sgemm_gflops (ours)                   >= 0.6
#   training img/s         N threads / 1 thread (ours)   >= 0.9 N (1.8 at 2 threads)
#   time per image         batch 16 / batch 128 (ours)   <= 1.3
#
# --presets adds the RGB model presets of image folders (src/model/presets.c),
# train and sample parts, ddpm and PyTorch each: `--size 32 --channels 3`
# (batch 64) and `--size 64 --channels 3` (batch 16: one 64 px step of 64
# images takes tens of seconds on 2 cores). Both sides pick the preset's
# widths from --size alone.
# --seconds is the time budget of every measured part (default 10; medians
# over the iterations that fit, at least 3, after 3 warm-up iterations);
# --quick is a smoke run (1 s, 1 warm-up iteration). On a shared or loaded
# machine the numbers are noisy: compare medians, look at p10/p90, rerun.
# Flags after `--` (model flags such as --ch 16) go to every run, both sides;
# the issue's targets are for the default model.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
PY=/usr/bin/python3
threads=2 seconds= warmup=3 quick=0 presets=0
extra=()

usage() {
    echo "usage: scripts/bench.sh [--threads N] [--seconds S] [--quick] [--presets] [--build-dir DIR] [-- MODEL FLAGS]"
    echo "ddpm bench next to scripts/bench_torch.py (PyTorch), and the performance targets."
    echo "options: --threads N (default 2), --seconds S (default 10), --quick (1 s, 1 warm-up),"
    echo "         --presets (also the 32 and 64 px RGB presets, both sides),"
    echo "         --build-dir DIR (default build), -- MODEL FLAGS (passed to every run)"
}

while [ $# -gt 0 ]; do
    case $1 in
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --threads=*) threads=${1#*=}; shift ;;
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --presets) presets=1; shift ;;
    --build-dir) BUILD=${2:?--build-dir needs a value}; shift 2 ;;
    --build-dir=*) BUILD=${1#*=}; shift ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case $threads in '' | *[!0-9]* | 0) echo "bench.sh: --threads must be a positive integer" >&2; exit 2 ;; esac
if [ "$quick" = 1 ]; then
    warmup=1
    : "${seconds:=1}"
fi
: "${seconds:=10}"
if ! awk -v s="$seconds" 'BEGIN { exit !(s + 0 == s && s >= 0) }'; then
    echo "bench.sh: --seconds must be a non-negative number" >&2
    exit 2
fi

# ---- build ---------------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$BUILD" -j "$(nproc)" --target ddpm >&2
DDPM=$BUILD/ddpm
if ! "$DDPM" bench --help >/dev/null 2>&1; then
    echo "bench.sh: '$DDPM' has no 'bench' command" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run NAME CMD...: stdout (key=value lines) into $tmp/NAME; progress stays on stderr
run() {
    local name=$1
    shift
    echo "bench.sh: $*" >&2
    if ! "$@" >"$tmp/$name"; then
        echo "bench.sh: failed: $*" >&2
        return 1
    fi
}

common=(--seconds "$seconds" --warmup "$warmup" ${extra[@]+"${extra[@]}"})
run ours "$DDPM" bench --threads "$threads" "${common[@]}"
torch_ok=1
if ! run torch "$PY" "$ROOT/scripts/bench_torch.py" --threads "$threads" "${common[@]}"; then
    echo "bench.sh: the PyTorch side failed (is python3-torch installed for $PY?); continuing without it" >&2
    torch_ok=0
    : >"$tmp/torch"
fi
if [ "$threads" -gt 1 ]; then
    run one "$DDPM" bench --only train --threads 1 "${common[@]}"
else
    : >"$tmp/one"
fi
run b16 "$DDPM" bench --only train --threads "$threads" --batch 16 "${common[@]}"
run b128 "$DDPM" bench --only train --threads "$threads" --batch 128 "${common[@]}"

# ---- report ----------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
echo
echo "ddpm vs PyTorch: $threads threads, ${seconds} s per part, $warmup warm-up iterations"
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

awk -v threads="$threads" -v torch_ok="$torch_ok" '
function isnum(v) { return v ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
function get(f, k) { return (f SUBSEP k) in val ? val[f, k] : "" }
function target(what, x, op, goal, ok) {
    if (x == "") { printf "  %-52s %8s   %s %-4s  n/a\n", what, "-", op, goal; return }
    ok = op == ">=" ? x >= goal : x <= goal
    printf "  %-52s %8.3f   %s %-4s  %s\n", what, x, op, goal, ok ? "PASS" : "MISS"
}
{
    f = FILENAME; sub(/.*\//, "", f)
    i = index($0, "="); if (i == 0) next
    k = substr($0, 1, i - 1); v = substr($0, i + 1)
    if ((f == "ours" || f == "torch") && !(k in seen)) { seen[k] = 1; order[++n] = k }
    val[f, k] = v
}
END {
    printf "%-24s %-30s %-30s %s\n", "key", "ddpm", "pytorch", "ddpm/pytorch"
    for (i = 1; i <= n; i++) {
        k = order[i]; a = get("ours", k); b = get("torch", k)
        r = ""
        if (isnum(a) && isnum(b) && b + 0 != 0 && k !~ /^(batch|threads|params|timesteps|sgemm_n)$|_iters$/)
            r = sprintf("%.3f", a / b)
        printf "%-24s %-30s %-30s %s\n", k, a == "" ? "-" : a, b == "" ? "-" : b, r
    }
    print ""
    print "ddpm training at other settings (median ms per iteration, images/s, ms per image):"
    split("one ours b16 b128", runs, " ")
    for (j = 1; j <= 4; j++) {
        f = runs[j]; ms = get(f, "train_ms_per_iter"); bs = get(f, "batch")
        if (ms == "") continue
        printf "  %2d thread(s), batch %-4d %10.4g ms %10.4g img/s %10.4g ms/image\n",
            get(f, "threads"), bs, ms, get(f, "train_img_per_s"), ms / bs
    }
    print ""
    print "targets:"
    ti = get("ours", "train_img_per_s"); tt = get("torch", "train_img_per_s")
    si = get("ours", "sample_img_steps_per_s"); st = get("torch", "sample_img_steps_per_s")
    ri = get("ours", "peak_rss_mb"); rt = get("torch", "peak_rss_mb")
    gr = get("ours", "gflops_ratio"); one = get("one", "train_img_per_s")
    m16 = get("b16", "train_ms_per_iter"); m128 = get("b128", "train_ms_per_iter")
    target("training img/s, ddpm / pytorch", torch_ok && tt > 0 ? ti / tt : "", ">=", 1.5)
    target("sampling img-steps/s, ddpm / pytorch", torch_ok && st > 0 ? si / st : "", ">=", 2)
    target("peak RSS, ddpm / pytorch", torch_ok && rt > 0 ? ri / rt : "", "<=", 0.5)
    target("train_gflops / sgemm_gflops (ddpm)", gr, ">=", 0.6)
    target("training speedup, " threads " threads / 1 thread (ddpm)", one > 0 ? ti / one : "", ">=", 0.9 * threads)
    target("time per image, batch 16 / batch 128 (ddpm)", m128 > 0 ? (m16 / 16) / (m128 / 128) : "", "<=", 1.3)
}' "$tmp/ours" "$tmp/torch" "$tmp/one" "$tmp/b16" "$tmp/b128"

# ---- the RGB presets of image folders --------------------------------------------------
if [ "$presets" = 1 ]; then
    echo
    echo "RGB presets (image folders), $threads threads: median ms per training step / per denoising call"
    printf "  %-28s %-6s %12s %12s %12s %12s\n" preset batch "ddpm train" "torch train" "ddpm sample" "torch sample"
    for spec in "32 64" "64 16"; do
        set -- $spec
        pf=(--size "$1" --channels 3 --batch "$2" --seconds "$seconds" --warmup "$warmup")
        run "p$1" "$DDPM" bench --threads "$threads" --only train "${pf[@]}"
        run "q$1" "$DDPM" bench --threads "$threads" --only sample "${pf[@]}"
        : >"$tmp/t$1"
        : >"$tmp/u$1"
        if [ "$torch_ok" = 1 ]; then
            run "t$1" "$PY" "$ROOT/scripts/bench_torch.py" --threads "$threads" --only train "${pf[@]}" || : >"$tmp/t$1"
            run "u$1" "$PY" "$ROOT/scripts/bench_torch.py" --threads "$threads" --only sample "${pf[@]}" || : >"$tmp/u$1"
        fi
        val() { sed -n "s/^$2=//p" "$tmp/$1" | head -1; }
        printf "  %-28s %-6s %12s %12s %12s %12s\n" "$(val "p$1" model) ${1}px" "$2" \
            "$(val "p$1" train_ms_per_iter)" "$(val "t$1" train_ms_per_iter)" \
            "$(val "q$1" sample_ms_per_step)" "$(val "u$1" sample_ms_per_step)"
    done
fi
