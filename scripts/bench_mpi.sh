#!/usr/bin/env bash
# bench_mpi.sh [ITERS]: data-parallel training on one machine.
#  1. img/s of the reference model (width 32, batch 64; the model of ddpm bench) for 1 rank x 2 threads and for
#     2 ranks x 1 thread (mean over the iterations after the first, from log.csv);
#  2. the time `ddpm train` spends summing gradients per iteration (its own
#     report: the allreduce plus waiting for the slower rank);
#  3. the bare MPI_Allreduce of that model's 1,623,169 float gradients
#     (6.5 MB) between 2 ranks, after a barrier (a tiny mpicc program).
# Needs MNIST (data/mnist or DDPM_DATA_DIR) and an MPI build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-8}
DATA=${DDPM_DATA_DIR:-$PWD/data/mnist}
BIN=$PWD/build/ddpm
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_mpi.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MPIRUN=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2)
ARGS=(train --data-dir "$DATA" --ch 32 --batch 64 --iters "$ITERS" --log-every 1 --seed 0 --ckpt-every 0)

ips() {  # mean img/s over log rows 2..N
  awk -F, 'NR > 2 { s += $5; n++ } END { printf "%.1f", s / n }' "$1/log.csv"
}

OMP_NUM_THREADS=2 "$BIN" "${ARGS[@]}" --threads 2 -o "$WORK/r1t2" >/dev/null 2>"$WORK/r1t2.err"
echo "1 rank  x 2 threads: $(ips "$WORK/r1t2") img/s"
"${MPIRUN[@]}" "$BIN" "${ARGS[@]}" --threads 1 -o "$WORK/r2t1" >/dev/null 2>"$WORK/r2t1.err"
echo "2 ranks x 1 thread:  $(ips "$WORK/r2t1") img/s"
grep -o "summing the gradients across ranks took .* per iteration" "$WORK/r2t1.err" | sed 's/^/  ddpm train: /'

cat > "$WORK/allreduce.c" <<'C'
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, reps = 30, n = 1623169; /* the reference model's parameters */
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    float *g = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) g[i] = 1e-3f * (float)(i % 1000);
    double best = 1e9, sum = 0;
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t = MPI_Wtime() - t0;
        sum += t;
        best = t < best ? t : best;
    }
    if (rank == 0)
        printf("MPI_Allreduce of %.1f MB (2 ranks, shared memory): %.2f ms mean, %.2f ms best of %d\n",
               n * 4.0 / 1e6, 1e3 * sum / reps, 1e3 * best, reps);
    free(g);
    MPI_Finalize();
    return 0;
}
C
mpicc -O2 "$WORK/allreduce.c" -o "$WORK/allreduce"
"${MPIRUN[@]}" "$WORK/allreduce"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
