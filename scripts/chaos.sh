#!/usr/bin/env bash
# chaos.sh: `ddpm train` on the default model, SIGKILLed KILLS times and
# resumed each time, must end byte-identical to the uninterrupted run: the
# same ckpt.safetensors and grids, log.csv with one row per iteration and the
# same iter,loss,lr,grad_norm, no temporary file left. Every third kill is
# aimed (DDPM_TEST_KILL_AT) inside a checkpoint, log row, grid, run.txt or
# loss.png write; the rest fall at random moments. Then, if mpirun is there
# and ddpm has MPI, the same with 2 ranks, one rank killed each time.
#
#   scripts/chaos.sh [ITERS] [KILLS]      (default 90 20)
#
# Environment: DDPM (default build/ddpm), DATA_DIR (MNIST; default
# ../shared/mnist or data/mnist), SEED (the kill moments; default 1),
# PIN (default "taskset -c 1"), MPI_KILLS (default 4; 0: no MPI part),
# WORK (default a fresh directory under /tmp, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-90}
KILLS=${2:-20}
DDPM=${DDPM:-build/ddpm}
SEED=${SEED:-1}
PIN=${PIN:-taskset -c 1}
MPI_KILLS=${MPI_KILLS:-4}
if [ -z "${DATA_DIR:-}" ]; then
    DATA_DIR=../shared/mnist
    [ -e "$DATA_DIR/train-images-idx3-ubyte.gz" ] || DATA_DIR=data/mnist
fi
WORK=${WORK:-$(mktemp -d /tmp/ddpm-chaos-XXXXXX)}
mkdir -p "$WORK"
RANDOM=$SEED
CADENCE=(--ckpt-every 3 --log-every 1 --sample-every 10 --threads 1)
FRESH=(train --data-dir "$DATA_DIR" --iters "$ITERS" --seed 7 "${CADENCE[@]}")
AIMED=(ckpt.safetensors:1 log.csv:3 samples_:1 ckpt.safetensors:2 log.csv:1 run.txt:2 loss.png:1)

die() { echo "chaos.sh: $*" >&2; exit 1; }

# same DIR REF: the chaos run DIR ended exactly like REF
same() {
    cmp -s "$1/ckpt.safetensors" "$2/ckpt.safetensors" || die "$1/ckpt.safetensors differs from $2's"
    for g in "$2"/samples*.png; do cmp -s "$g" "$1/$(basename "$g")" || die "$1/$(basename "$g") differs"; done
    diff <(cut -d, -f1-4 "$1/log.csv") <(cut -d, -f1-4 "$2/log.csv") >/dev/null || die "$1/log.csv differs from $2's"
    [ "$(($(wc -l < "$1/log.csv") - 1))" -eq "$ITERS" ] || die "$1/log.csv: not one row per iteration"
    ! ls "$1" | grep -q '\.tmp\.' || die "temporary files left in $1: $(ls "$1" | grep '\.tmp\.')"
}

step() { # the iteration run.txt describes (0: no checkpoint); a kill between the checkpoint and run.txt leaves it one checkpoint behind
    [ -e "$1/ckpt.safetensors" ] || { echo 0; return; }
    tr -d '\0' < "$1/run.txt" | sed -n 's/^iter=//p'
}

# chaos NAME LAUNCH...: KILLS kills of `LAUNCH ddpm train ...` in $WORK/NAME
chaos() {
    local name=$1; shift
    local out=$WORK/$name ref=$WORK/$name-ref kills=$KILLS aimed=0 t0 pid victim
    [ "$name" = mpi ] && kills=$MPI_KILLS
    t0=$(date +%s)
    $PIN "$@" "$DDPM" "${FRESH[@]}" --out "$ref" 2>"$WORK/$name-ref.err" || die "reference run failed: $(tail -1 "$WORK/$name-ref.err")"
    local ref_s=$(($(date +%s) - t0))
    t0=$(date +%s)
    for ((k = 0; k < kills; k++)); do
        local args=("${FRESH[@]}")
        [ -e "$out/ckpt.safetensors" ] && args=(train --resume "${CADENCE[@]}")
        local at=""
        if [ $((k % 3)) -eq 1 ]; then at=${AIMED[$((k / 3 % ${#AIMED[@]}))]}; fi
        if [ -n "$at" ]; then
            DDPM_TEST_KILL_AT=$at $PIN "$@" "$DDPM" "${args[@]}" --out "$out" 2>"$out.err" &
        else
            $PIN "$@" "$DDPM" "${args[@]}" --out "$out" 2>"$out.err" &
        fi
        pid=$!
        if [ -z "$at" ]; then
            sleep "$((RANDOM % 12)).$((RANDOM % 10))" # 0-11.9 s: the start (MNIST loading), a step or a write
            victim=$pid
            [ "$name" = mpi ] && victim=$(pgrep -P "$pid" | tail -1)
            kill -KILL "$victim" 2>/dev/null || true
        elif [ "$name" = mpi ]; then
            aimed=$((aimed + 1)) # rank 0 kills itself in the write; mpirun ends the other
        else
            aimed=$((aimed + 1))
        fi
        local rc=0
        wait "$pid" || rc=$?
        [ "$rc" -ne 0 ] || die "kill $k: the run finished before the kill (raise ITERS)"
        echo "kill $((k + 1))/$kills ${at:+(inside $at) }exit $rc; run.txt at iteration $(step "$out")"
    done
    local args=("${FRESH[@]}")
    [ -e "$out/ckpt.safetensors" ] && args=(train --resume "${CADENCE[@]}")
    $PIN "$@" "$DDPM" "${args[@]}" --out "$out" 2>"$out.err" || die "the final resume failed: $(tail -1 "$out.err")"
    local chaos_s=$(($(date +%s) - t0))
    same "$out" "$ref"
    echo "$name: $kills kills ($aimed inside a write), resumed to iteration $ITERS: checkpoint, grids and log identical" \
         "to the uninterrupted run; ${ref_s} s uninterrupted, ${chaos_s} s with the kills"
}

echo "chaos.sh: $DDPM, the default model on $DATA_DIR, $ITERS iterations, seed $SEED, in $WORK"
grep -m1 'model name' /proc/cpuinfo || true
chaos single
if [ "$MPI_KILLS" -gt 0 ] && command -v mpirun >/dev/null && "$DDPM" train --help | grep -q -- --check-sync; then
    chaos mpi mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2
else
    echo "chaos.sh: the MPI part skipped (MPI_KILLS=0, no mpirun, or ddpm without MPI)"
fi
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
