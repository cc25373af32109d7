/* par_threshold.c: when does an OpenMP team pay off for the library's loop
 * kinds (the thresholds in src/core/util.h)? For n in a ladder, the median
 * time (us) of add (y += x), silu (y = x / (1 + exp(-x))) and the chunked
 * memset of unet.c, each on one thread and on two; plus the cost of an empty
 * parallel region. Not part of the build:
 *   gcc -O2 -std=c11 -march=native -fopenmp scripts/par_threshold.c -o /tmp/par -lm && /tmp/par */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static float *X, *Y;
static void add(size_t n, int par) {
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < n; i++) Y[i] += X[i];
}
static void silu(size_t n, int par) {
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < n; i++) Y[i] = X[i] / (1.0f + expf(-X[i]));
}
static void zero(size_t n, int par) { /* the chunked memset of unet.c */
    const size_t chunk = (size_t)1 << 14;
    size_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (par)
    for (size_t k = 0; k < nchunks; k++) {
        size_t b = k * chunk;
        memset(Y + b, 0, (n - b < chunk ? n - b : chunk) * sizeof *Y);
    }
}
static double med(void (*f)(size_t, int), size_t n, int par, int reps) {
    double t[301];
    for (int r = 0; r < reps; r++) { double t0 = omp_get_wtime(); f(n, par); t[r] = omp_get_wtime() - t0; }
    qsort(t, reps, sizeof *t, cmpd);
    return t[reps / 2] * 1e6;
}
int main(void) {
    omp_set_num_threads(2);
    size_t maxn = 1 << 20;
    X = malloc(maxn * 4); Y = malloc(maxn * 4);
    for (size_t i = 0; i < maxn; i++) X[i] = Y[i] = (float)(i % 97) * 0.01f;
    double tf[301];
    for (int r = 0; r < 301; r++) { double t0 = omp_get_wtime();
#pragma omp parallel
        { (void)0; }
        tf[r] = omp_get_wtime() - t0; }
    qsort(tf, 301, sizeof *tf, cmpd);
    printf("empty parallel region: median %.2f us\n", tf[150] * 1e6);
    printf("%8s %9s %9s %9s %9s %9s %9s\n", "n", "add_1t", "add_2t", "silu_1t", "silu_2t", "zero_1t", "zero_2t");
    for (size_t n = 2048; n <= maxn; n *= 2)
        printf("%8zu %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", n, med(add, n, 0, 301), med(add, n, 1, 301),
               med(silu, n, 0, 301), med(silu, n, 1, 301), med(zero, n, 0, 301), med(zero, n, 1, 301));
    return 0;
}
