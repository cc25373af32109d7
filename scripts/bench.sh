#!/bin/bash
# bench.sh: ddpm against PyTorch on the same workload, and the performance targets.
#
#   scripts/bench.sh [--threads N] [--seconds S] [--rounds R] [--quick] [--settings env|unset|both]
#                    [--no-presets] [--build-dir DIR] [-- MODEL FLAGS]
#
# Builds ddpm if needed (cmake --build build), then, under each OpenBLAS
# kernel setting (below), runs one after the other (never at the same time):
#   1. ddpm bench                      --threads N (default 2): train, sample, sgemm
#   2. scripts/bench_torch.py          the same workload in PyTorch, same threads
#   3. ddpm bench --only train         at 1 thread        (thread scaling)
#   4. ddpm bench --only train         at --batch 16 and  (small-batch efficiency)
#   5. ddpm bench --only train         at --batch 128
#   6. the RGB model presets of image folders (src/model/presets.c), train and
#      sample parts, ddpm and PyTorch each: `--size 32 --channels 3` (batch 64)
#      and `--size 64 --channels 3` (batch 16: one 64 px step of 64 images
#      takes tens of seconds on 2 cores); both sides pick the preset's widths
#      from --size alone (--no-presets skips them)
# and prints the key=value results side by side per setting, then one line
# per target of the performance targets (docs/performance.md) with its ratio under every
# setting, each PASS or MISS:
#   training img/s         ours / torch                  >= 3
#   sampling img-steps/s   ours / torch                  >= 3
#   peak RSS               ours / torch                  <= 0.4
#   train_gflops / sgemm_gflops (ours)                   >= 0.6
#   training img/s         N threads / 1 thread (ours)   >= 0.95 N (1.9 at 2 threads)
#   time per image         batch 16 / batch 128 (ours)   <= 1.3
#   RGB presets, training  ours / torch (ms per step)    >= 2 (32 px and 64 px)
#
# Kernel settings. OpenBLAS picks its kernels from OPENBLAS_CORETYPE (ddpm
# sets SkylakeX itself on AVX-512 CPUs when the variable is unset, and
# respects an explicit value); PyTorch (Debian's, linked to the same
# OpenBLAS) reads it too. --settings both (default) measures under the
# environment's value ("env") and with the variable removed ("unset");
# when the environment does not set it, the two are the same and run once.
#
# --rounds R (default 1) repeats every run R times, ddpm and PyTorch
# alternating, and reports per key the median over the rounds: on a shared
# machine the load drifts over minutes, and alternating keeps each ratio's
# two sides under the same load.
# --seconds is the time budget of every measured part (default 10; medians
# over the iterations that fit, at least 3, after 3 warm-up iterations);
# --quick is a smoke run (1 s, 1 warm-up iteration). On a shared or loaded
# machine the numbers are noisy: compare medians, look at p10/p90, rerun.
# Flags after `--` (model flags such as --ch 16) go to every run, both sides;
# the targets in docs/performance.md are for the reference model (width 32).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
PY=/usr/bin/python3
threads=2 seconds= warmup=3 quick=0 presets=1 rounds=1 settings=both
extra=()

usage() {
    echo "usage: scripts/bench.sh [--threads N] [--seconds S] [--rounds R] [--quick] [--settings env|unset|both]"
    echo "                        [--no-presets] [--build-dir DIR] [-- MODEL FLAGS]"
    echo "ddpm bench next to scripts/bench_torch.py (PyTorch), and the performance targets."
    echo "options: --threads N (default 2), --seconds S (default 10), --quick (1 s, 1 warm-up),"
    echo "         --rounds R (default 1: every run R times, ddpm and PyTorch alternating; medians),"
    echo "         --settings env|unset|both (OPENBLAS_CORETYPE as the environment has it, removed,"
    echo "         or both: default), --no-presets (skip the 32 and 64 px RGB presets),"
    echo "         --build-dir DIR (default build), -- MODEL FLAGS (passed to every run)"
}

while [ $# -gt 0 ]; do
    case $1 in
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --threads=*) threads=${1#*=}; shift ;;
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --presets) presets=1; shift ;; # the default; kept for old command lines
    --no-presets) presets=0; shift ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --rounds=*) rounds=${1#*=}; shift ;;
    --settings) settings=${2:?--settings needs a value}; shift 2 ;;
    --settings=*) settings=${1#*=}; shift ;;
    --build-dir) BUILD=${2:?--build-dir needs a value}; shift 2 ;;
    --build-dir=*) BUILD=${1#*=}; shift ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case $threads in '' | *[!0-9]* | 0) echo "bench.sh: --threads must be a positive integer" >&2; exit 2 ;; esac
case $rounds in '' | *[!0-9]* | 0) echo "bench.sh: --rounds must be a positive integer" >&2; exit 2 ;; esac
case $settings in env | unset | both) ;; *) echo "bench.sh: --settings must be env, unset or both" >&2; exit 2 ;; esac
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


# ---- kernel settings -----------------------------------------------------------------
# with_setting TAG CMD...: CMD under the setting TAG (env: as given; unset: without
# OPENBLAS_CORETYPE, so that ddpm picks its own and OpenBLAS its default)
with_setting() {
    local tag=$1
    shift
    if [ "$tag" = unset ]; then env -u OPENBLAS_CORETYPE "$@"; else "$@"; fi
}
if [ -n "${OPENBLAS_CORETYPE+x}" ]; then
    env_name="OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
    case $settings in env) tags=(env) ;; unset) tags=(unset) ;; both) tags=(env unset) ;; esac
else
    env_name="OPENBLAS_CORETYPE unset"
    tags=(unset) # the environment's setting is "unset": one setting
fi
setting_name() { if [ "$1" = unset ]; then echo "OPENBLAS_CORETYPE unset"; else echo "$env_name"; fi; }

common=(--seconds "$seconds" --warmup "$warmup" ${extra[@]+"${extra[@]}"})
names=(ours torch one b16 b128)
[ "$presets" = 1 ] && names+=(p32 q32 t32 u32 p64 q64 t64 u64)
torch_ok=1

# torch_run NAME TAG ARGS...: bench_torch.py, or an empty result once it has failed
torch_run() {
    local name=$1 tag=$2
    shift 2
    if [ "$torch_ok" = 1 ] && run "$name" with_setting "$tag" "$PY" "$ROOT/scripts/bench_torch.py" "$@"; then
        return 0
    fi
    if [ "$torch_ok" = 1 ]; then
        echo "bench.sh: the PyTorch side failed (is python3-torch installed for $PY?); continuing without it" >&2
        torch_ok=0
    fi
    : >"$tmp/$name"
}

# measure TAG R: every run of one round under setting TAG, into $tmp/TAG.NAME.R
measure() {
    local t=$1 r=$2
    run "$t.ours.$r" with_setting "$t" "$DDPM" bench --threads "$threads" "${common[@]}"
    torch_run "$t.torch.$r" "$t" --threads "$threads" "${common[@]}"
    if [ "$threads" -gt 1 ]; then
        run "$t.one.$r" with_setting "$t" "$DDPM" bench --only train --threads 1 "${common[@]}"
    else
        : >"$tmp/$t.one.$r"
    fi
    run "$t.b16.$r" with_setting "$t" "$DDPM" bench --only train --threads "$threads" --batch 16 "${common[@]}"
    run "$t.b128.$r" with_setting "$t" "$DDPM" bench --only train --threads "$threads" --batch 128 "${common[@]}"
    [ "$presets" = 1 ] || return 0
    local spec
    for spec in "32 64" "64 16"; do
        set -- $spec
        local pf=(--size "$1" --channels 3 --batch "$2" --seconds "$seconds" --warmup "$warmup")
        run "$t.p$1.$r" with_setting "$t" "$DDPM" bench --threads "$threads" --only train "${pf[@]}"
        torch_run "$t.t$1.$r" "$t" --threads "$threads" --only train "${pf[@]}"
        run "$t.q$1.$r" with_setting "$t" "$DDPM" bench --threads "$threads" --only sample "${pf[@]}"
        torch_run "$t.u$1.$r" "$t" --threads "$threads" --only sample "${pf[@]}"
    done
}

# merge OUT FILES...: per key the median over the files (numbers), else the first value
merge() {
    local out=$1
    shift
    awk '
    function isnum(v) { return v ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
    { i = index($0, "="); if (i == 0) next
      k = substr($0, 1, i - 1); v = substr($0, i + 1)
      if (!(k in n)) { order[++nk] = k; first[k] = v }
      val[k, ++n[k]] = v; if (!isnum(v)) str[k] = 1 }
    END {
        for (j = 1; j <= nk; j++) {
            k = order[j]
            if (k in str) { print k "=" first[k]; continue }
            m = n[k]; for (a = 1; a <= m; a++) s[a] = val[k, a] + 0
            for (a = 2; a <= m; a++) { x = s[a]; for (b = a - 1; b >= 1 && s[b] > x; b--) s[b + 1] = s[b]; s[b + 1] = x }
            med = m % 2 ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2
            print k "=" (med == int(med) ? med : sprintf("%.6g", med))
        }
    }' "$@" >"$out"
}

for ((r = 1; r <= rounds; r++)); do
    for t in "${tags[@]}"; do measure "$t" "$r"; done
done
for t in "${tags[@]}"; do
    for name in "${names[@]}"; do
        files=()
        for ((r = 1; r <= rounds; r++)); do files+=("$tmp/$t.$name.$r"); done
        merge "$tmp/$t.$name" "${files[@]}"
    done
done

# ---- report ----------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
echo
echo "ddpm vs PyTorch: $threads threads, ${seconds} s per part, $warmup warm-up iterations, $rounds round(s)"
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"

# report TAG: the side-by-side table of one setting; its targets into $tmp/TAG.targets
report() {
    local t=$1
    echo
    echo "== $(setting_name "$t") (ddpm: $(sed -n 's/^blas_core=//p' "$tmp/$t.ours") sgemm, $(sed -n 's/^tile_kernel=//p' "$tmp/$t.ours") tile kernels;" \
        "PyTorch: $(sed -n 's/^blas_core=//p' "$tmp/$t.torch" | head -1))"
    awk -v threads="$threads" -v torch_ok="$torch_ok" -v presets="$presets" -v tfile="$tmp/$t.targets" '
    function isnum(v) { return v ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ }
    function get(f, k) { return (f SUBSEP k) in val ? val[f, k] : "" }
    function target(what, x, op, goal) { printf "%s|%s|%s|%s\n", what, x, op, goal > tfile }
    function ratio(a, b) { return isnum(a) && isnum(b) && b + 0 > 0 && a + 0 > 0 ? a / b : "" }
    {
        f = FILENAME; sub(/.*\//, "", f); sub(/^[^.]*\./, "", f)
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
        ti = get("ours", "train_img_per_s"); tt = get("torch", "train_img_per_s")
        si = get("ours", "sample_img_steps_per_s"); st = get("torch", "sample_img_steps_per_s")
        ri = get("ours", "peak_rss_mb"); rt = get("torch", "peak_rss_mb")
        gr = get("ours", "gflops_ratio"); one = get("one", "train_img_per_s")
        m16 = get("b16", "train_ms_per_iter"); m128 = get("b128", "train_ms_per_iter")
        target("training img/s, ddpm / pytorch", torch_ok ? ratio(ti, tt) : "", ">=", 3)
        target("sampling img-steps/s, ddpm / pytorch", torch_ok ? ratio(si, st) : "", ">=", 3)
        target("peak RSS, ddpm / pytorch", torch_ok ? ratio(ri, rt) : "", "<=", 0.4)
        target("train_gflops / sgemm_gflops (ddpm)", gr, ">=", 0.6)
        target("training, " threads " threads / 1 thread (ddpm)", ratio(ti, one), ">=", 0.95 * threads)
        target("time per image, batch 16 / batch 128 (ddpm)", m128 > 0 ? (m16 / 16) / (m128 / 128) : "", "<=", 1.3)
        if (presets != 1) exit
        print ""
        print "RGB presets (image folders): median ms per training step / per denoising call, and PyTorch / ddpm"
        printf "  %-36s %-6s %11s %11s %7s %11s %11s %7s\n", "preset", "batch", "ddpm train", "torch train", "ratio",
            "ddpm sample", "torch samp.", "ratio"
        split("32 64", px, " ")
        for (j = 1; j <= 2; j++) {
            p = px[j]; a = get("p" p, "train_ms_per_iter"); b = get("t" p, "train_ms_per_iter")
            c = get("q" p, "sample_ms_per_step"); d = get("u" p, "sample_ms_per_step")
            tr = ratio(b, a); sr = ratio(d, c)
            printf "  %-36s %-6s %11s %11s %7s %11s %11s %7s\n", get("p" p, "model") " " p "px", get("p" p, "batch"),
                a == "" ? "-" : a, b == "" ? "-" : b, tr == "" ? "-" : sprintf("%.3f", tr),
                c == "" ? "-" : c, d == "" ? "-" : d, sr == "" ? "-" : sprintf("%.3f", sr)
            target("RGB " p " px (batch " get("p" p, "batch") "), training, pytorch ms / ddpm ms", torch_ok ? tr : "", ">=", 2)
            target("RGB " p " px, sampling, pytorch ms / ddpm ms (no target)", torch_ok ? sr : "", "", "")
        }
    }' "$tmp/$t.ours" "$tmp/$t.torch" "$tmp/$t.one" "$tmp/$t.b16" "$tmp/$t.b128" \
        $([ "$presets" = 1 ] && for p in 32 64; do for x in p t q u; do echo "$tmp/$t.$x$p"; done; done)
}
for t in "${tags[@]}"; do report "$t"; done

# the targets, one column per setting
echo
echo "targets:"
hdr=$(for t in "${tags[@]}"; do printf " %-27s" "$(setting_name "$t")"; done)
printf "  %-58s %-7s%s\n" "" "goal" "$hdr"
awk -F'|' -v ntags="${#tags[@]}" '
{ what = $1; if (!(what in row)) { row[what] = ++n; name[n] = what; goal[n] = $3 " " $4 }
  x = $2; op = $3; g = $4; t = FILENAME
  if (!(t in tix)) tix[t] = ++nt
  if (x == "") cell = "n/a"
  else if (op == "") cell = sprintf("%.3f", x)
  else cell = sprintf("%.3f %s", x, (op == ">=" ? x >= g : x <= g) ? "PASS" : "MISS")
  c[row[what], tix[t]] = cell }
END {
    for (i = 1; i <= n; i++) {
        line = sprintf("  %-58s %-7s", name[i], goal[i])
        for (j = 1; j <= nt; j++) line = line sprintf(" %-27s", (i SUBSEP j) in c ? c[i, j] : "-")
        print line
    }
}' $(for t in "${tags[@]}"; do echo "$tmp/$t.targets"; done)
