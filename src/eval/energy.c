/* energy.c: the energy distance between two point sets. See energy.h. */
#include "ddpm/energy.h"

#include <math.h>
#include <stddef.h>

/* sum_i sum_j |x_i - y_j| over x [n, d], y [m, d], in double. Row sums are
 * computed in parallel and added in row order (thread-count independent). */
static double sum_dist(const float *x, int n, const float *y, int m, int d) {
    double total = 0.0;
#pragma omp parallel for ordered schedule(static, 1) if (n > 256)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        double row = 0.0;
        for (int j = 0; j < m; j++) {
            const float *yj = y + (size_t)j * d;
            double s = 0.0;
            for (int k = 0; k < d; k++) {
                double t = (double)xi[k] - (double)yj[k];
                s += t * t;
            }
            row += sqrt(s);
        }
#pragma omp ordered
        total += row;
    }
    return total;
}

double ddpm_energy_distance(const float *a, int n, const float *b, int m, int d) {
    if (n < 1 || m < 1 || d < 1) return NAN;
    double ab = sum_dist(a, n, b, m, d) / ((double)n * m);
    double aa = sum_dist(a, n, a, n, d) / ((double)n * n);
    double bb = sum_dist(b, m, b, m, d) / ((double)m * m);
    return 2.0 * ab - aa - bb;
}

double ddpm_near_fraction(const float *a, int n, const float *ref, int m, int d, double r) {
    if (n < 1 || m < 1 || d < 1) return NAN;
    long near = 0;
    double r2 = r * r;
#pragma omp parallel for schedule(static) reduction(+ : near) if (n > 64)
    for (int i = 0; i < n; i++) {
        const float *ai = a + (size_t)i * d;
        for (int j = 0; j < m; j++) {
            const float *rj = ref + (size_t)j * d;
            double s = 0.0;
            for (int k = 0; k < d; k++) {
                double t = (double)ai[k] - (double)rj[k];
                s += t * t;
            }
            if (s <= r2) {
                near++;
                break;
            }
        }
    }
    return (double)near / n;
}
