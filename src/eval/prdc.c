/* prdc.c: k-NN precision and recall (Kynkäänniemi et al. 2019) and the
 * metrics of the classifier's output (see eval.h). */
#include "ddpm/eval.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PR_ROWS 256 /* rows of a distance block */

static double *to_double(const float *x, size_t n) {
    double *y = malloc(n * sizeof(double));
    if (y)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static void sq_norms(double *out, const double *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < d; j++) s += x[(size_t)i * d + j] * x[(size_t)i * d + j];
        out[i] = s;
    }
}

/* dist (rows, nb) = squared distances between a[r0 .. r0+rows) and all of b,
 * |a|^2 + |b|^2 - 2 a.b clamped at 0. */
static void dist_block(double *dist, const double *a, const double *na, int r0, int rows, const double *b,
                       const double *nb_, int nb, int d) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nb, d, -2.0, a + (size_t)r0 * d, d, b, d, 0.0,
                dist, nb);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < nb; j++) {
            double v = dist[(size_t)i * nb + j] + na[r0 + i] + nb_[j];
            dist[(size_t)i * nb + j] = v > 0.0 ? v : 0.0;
        }
}

/* radius[i] = squared distance from x_i to its k-th nearest other row of x. */
static void knn_radii(double *radius, const double *x, const double *nx, int n, int d, int k, double *dist) {
    for (int r0 = 0; r0 < n; r0 += PR_ROWS) {
        int rows = n - r0 < PR_ROWS ? n - r0 : PR_ROWS;
        dist_block(dist, x, nx, r0, rows, x, nx, n, d);
        for (int i = 0; i < rows; i++) {
            double best[64]; /* the k smallest, ascending (k <= 64) */
            int m = 0;
            for (int j = 0; j < n; j++) {
                if (j == r0 + i) continue;
                double v = dist[(size_t)i * n + j];
                if (m == k && v >= best[k - 1]) continue;
                int p = m < k ? m++ : k - 1;
                while (p > 0 && best[p - 1] > v) best[p] = best[p - 1], p--;
                best[p] = v;
            }
            radius[r0 + i] = best[k - 1];
        }
    }
}

/* Fraction of rows q of `a` with |q - p|^2 <= radius_p for some row p of b. */
static double coverage(const double *a, const double *na, int n_a, const double *b, const double *nb,
                       const double *radius_b, int n_b, int d, double *dist) {
    long inside = 0;
    for (int r0 = 0; r0 < n_a; r0 += PR_ROWS) {
        int rows = n_a - r0 < PR_ROWS ? n_a - r0 : PR_ROWS;
        dist_block(dist, a, na, r0, rows, b, nb, n_b, d);
        for (int i = 0; i < rows; i++) {
            const double *row = dist + (size_t)i * n_b;
            int hit = 0;
            for (int j = 0; j < n_b && !hit; j++) hit = row[j] <= radius_b[j];
            inside += hit;
        }
    }
    return (double)inside / n_a;
}

ddpm_status ddpm_precision_recall(double *precision, double *recall, const float *real, int nr, const float *fake,
                                  int nf, int d, int k) {
    if (k < 1 || k > 64 || k >= nr || k >= nf)
        return ddpm_error(DDPM_ERR_ARG, "precision/recall with k = %d need more than k rows (have %d real, %d fake)",
                          k, nr, nf);
    int nmax = nr > nf ? nr : nf;
    double *r = to_double(real, (size_t)nr * d), *f = to_double(fake, (size_t)nf * d);
    double *nrm = malloc((size_t)(nr + nf) * sizeof(double)), *rad = malloc((size_t)(nr + nf) * sizeof(double));
    double *dist = malloc((size_t)PR_ROWS * nmax * sizeof(double));
    ddpm_status st = DDPM_OK;
    if (!r || !f || !nrm || !rad || !dist) {
        st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for precision/recall (%d and %d rows)", nr, nf);
    } else {
        double *nr_ = nrm, *nf_ = nrm + nr, *rad_r = rad, *rad_f = rad + nr;
        sq_norms(nr_, r, nr, d);
        sq_norms(nf_, f, nf, d);
        knn_radii(rad_r, r, nr_, nr, d, k, dist);
        knn_radii(rad_f, f, nf_, nf, d, k, dist);
        *precision = coverage(f, nf_, nf, r, nr_, rad_r, nr, d, dist);
        *recall = coverage(r, nr_, nr, f, nf_, rad_f, nf, d, dist);
    }
    free(r);
    free(f);
    free(nrm);
    free(rad);
    free(dist);
    return st;
}

ddpm_status ddpm_class_metrics_compute(ddpm_class_metrics *out, const float *probs, const int *labels, int n,
                                       int K) {
    double conf = 0.0;
    long right = 0, *hist = calloc((size_t)K, sizeof(long));
    if (!hist) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the class histogram");
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++) best = p[k] > p[best] ? k : best;
        conf += p[best];
        hist[best]++;
        if (labels) right += best == labels[i];
    }
    double h = 0.0;
    for (int k = 0; k < K; k++)
        if (hist[k]) {
            double q = (double)hist[k] / n;
            h -= q * log2(q);
        }
    free(hist);
    out->confidence = n ? conf / n : 0.0;
    out->class_entropy = h;
    out->label_accuracy = labels && n ? (double)right / n : -1.0;
    return DDPM_OK;
}
