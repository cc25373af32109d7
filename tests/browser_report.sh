#!/bin/sh
# browser_report.sh: `ddpm report` pages opened in a real browser.
#
#   tests/browser_report.sh DDPM_BIN SOURCE_DIR
#
# Trains two tiny MNIST runs and a short 2-D toy run, writes a run report,
# a toy report and a comparison page, checks that no text from a file is
# left unescaped, then opens every page in headless Chromium
# (tests/browser_check.js, through node): any console error or warning,
# any request that is not file: or data:, any image that does not decode, a
# missing plot or a blank page fails the test. A comparison of a train run
# with a toy run must be refused with one line.
#
# Needs Debian's chromium and nodejs. Without either the test is skipped
# (exit 77), except under CI (CI set), where it fails. MNIST comes from
# $DDPM_SHARED_MNIST (as for the other CLI tests); without it the test fails
# unless DDPM_ALLOW_SKIP=1. DDPM_REPORT_SHOTS=DIR keeps screenshots there.
set -eu
BIN=$1
SRC=$2

missing() { # what is missing, how to get it
    if [ -n "${CI:-}" ]; then
        echo "browser_report: $1 not found (apt-get install -y $2); CI must run this test" >&2
        exit 1
    fi
    echo "browser_report: skipped: $1 not found (apt-get install -y $2)"
    exit 77
}
CHROME=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROME" ] || missing chromium chromium
NODE=$(command -v node || command -v nodejs || true)
[ -n "$NODE" ] || missing node nodejs
MNIST=${DDPM_SHARED_MNIST:-}
if [ -z "$MNIST" ] || [ ! -f "$MNIST/train-images-idx3-ubyte.gz" ]; then
    if [ "${DDPM_ALLOW_SKIP:-}" = 1 ]; then echo "browser_report: skipped: no MNIST"; exit 77; fi
    echo "browser_report: no MNIST in '$MNIST' (scripts/fetch_mnist.sh, or DDPM_ALLOW_SKIP=1)" >&2
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
XSS='<img src=x onerror=alert(1)>'
train() { # DIR [flags]: 10 iterations of a tiny model (under ASan too, on a busy machine, ~40 s)
    d=$1
    shift
    "$BIN" train --data mnist --data-dir "$MNIST" --ch 8 --ch-mult 1,2 --res-blocks 1 --groups 4 --batch 4 \
        --steps 10 --iters 10 --sample-every 5 --log-every 1 --threads 1 --out "$d" "$@" >/dev/null 2>"$d.err" ||
        { cat "$d.err" >&2; exit 1; }
}
train a
train b --lr 3e-4 --seed 1
# run.txt as the run module writes it, with a hostile value
printf 'command=ddpm train --out a %s\ncpu=test cpu\nthreads=1\nprecision=fp32\nstatus=finished\nwall_s=4.5\n' "$XSS" >a/run.txt
printf 'command=ddpm train --out b\nstatus=running\n' >b/run.txt
"$BIN" toy --iters 300 --points 500 -n 300 --steps 20 -o toy >/dev/null 2>toy.err || { cat toy.err >&2; exit 1; }

"$BIN" report a >/dev/null
"$BIN" report toy >/dev/null
"$BIN" report a b -o compare.html >/dev/null
for f in a/report.html toy/report.html compare.html; do
    if grep -qF "$XSS" "$f"; then
        echo "browser_report: $f holds the run.txt value unescaped" >&2
        exit 1
    fi
done
grep -qF '&lt;img src=x onerror=alert(1)&gt;' a/report.html || { echo "browser_report: the escaped value is missing from a/report.html" >&2; exit 1; }
grep -q 'http-equiv="refresh"' compare.html || { echo "browser_report: compare.html: no reload while b is running" >&2; exit 1; }
if "$BIN" report a toy -o mixed.html 2>err.txt; then
    echo "browser_report: a train run and a toy run were compared" >&2
    exit 1
fi
[ "$(wc -l <err.txt)" -eq 1 ] && [ ! -e mixed.html ] || { echo "browser_report: refusal: $(cat err.txt)" >&2; exit 1; }

SHOTS=${DDPM_REPORT_SHOTS:-}
shot() { [ -n "$SHOTS" ] && echo "$SHOTS/$1" || true; }
# run: samples.png + 2 grids, >= 3 plots (loss, lr, grad_norm); toy: 3 panels; comparison: 2 grids, >= 3 plots
"$NODE" "$SRC/tests/browser_check.js" "$CHROME" a/report.html 3 3 $(shot report.png)
"$NODE" "$SRC/tests/browser_check.js" "$CHROME" toy/report.html 3 1 $(shot toy.png)
"$NODE" "$SRC/tests/browser_check.js" "$CHROME" compare.html 2 3 $(shot compare.png)
echo "browser_report: all pages passed"
