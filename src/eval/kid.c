/* kid.c: the kernel inception distance (Binkowski et al. 2018) in the
 * evaluation network's features, as clean-fid's kernel_distance and
 * torch-fidelity's kid compute it (see eval.h). */
#include "ddpm/eval.h"
#include "ddpm/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sum of k(g) = (g / d + 1)^3 over the entries of G (m, m), and over its
 * diagonal (*diag), in double. */
static double kernel_sum(const float *G, int m, int d, double *diag) {
    double s = 0.0, t = 0.0;
    for (int i = 0; i < m; i++) {
        const float *row = G + (size_t)i * m;
        for (int j = 0; j < m; j++) {
            double k = (double)row[j] / d + 1.0;
            s += k * k * k;
        }
        double k = (double)row[i] / d + 1.0;
        t += k * k * k;
    }
    if (diag) *diag = t;
    return s;
}

static void gather(float *out, const float *x, const int *idx, int m, int d) {
    for (int i = 0; i < m; i++) memcpy(out + (size_t)i * d, x + (size_t)idx[i] * d, (size_t)d * sizeof(float));
}

ddpm_status ddpm_kid_subsets(double *mean, double *std, const float *a, const float *b, int d, const int *ia,
                             const int *ib, int S, int m) {
    if (S < 1 || m < 2 || d < 1) return ddpm_error(DDPM_ERR_ARG, "KID: %d subsets of %d rows of %d features", S, m, d);
    float *X = ddpm_malloc((size_t)m * d * sizeof(float)), *Y = ddpm_malloc((size_t)m * d * sizeof(float));
    float *G = ddpm_malloc((size_t)m * m * sizeof(float));
    double *v = malloc((size_t)S * sizeof(double));
    if (!X || !Y || !G || !v) {
        ddpm_free(X), ddpm_free(Y), ddpm_free(G), free(v);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for KID (%d rows)", m);
    }
    for (int s = 0; s < S; s++) {
        gather(X, a, ia + (size_t)s * m, m, d);
        gather(Y, b, ib + (size_t)s * m, m, d);
        double dx, dy;
        ddpm_gemm(false, true, m, m, d, 1.0f, X, d, X, d, 0.0f, G, m);
        double kxx = kernel_sum(G, m, d, &dx);
        ddpm_gemm(false, true, m, m, d, 1.0f, Y, d, Y, d, 0.0f, G, m);
        double kyy = kernel_sum(G, m, d, &dy);
        ddpm_gemm(false, true, m, m, d, 1.0f, X, d, Y, d, 0.0f, G, m);
        double kxy = kernel_sum(G, m, d, NULL);
        v[s] = (kxx - dx + kyy - dy) / ((double)m * (m - 1)) - 2.0 * kxy / ((double)m * m);
    }
    double mu = 0.0, var = 0.0;
    for (int s = 0; s < S; s++) mu += v[s];
    mu /= S;
    for (int s = 0; s < S; s++) var += (v[s] - mu) * (v[s] - mu);
    *mean = mu;
    *std = sqrt(var / S); /* numpy's np.std (ddof 0), as torch-fidelity */
    ddpm_free(X), ddpm_free(Y), ddpm_free(G), free(v);
    return DDPM_OK;
}

/* m distinct indices of 0..n-1: the first m of a partial Fisher-Yates
 * shuffle of perm (n), which carries over from one subset to the next. */
static void draw_subset(int *out, int *perm, int n, int m, ddpm_rng *rng) {
    for (int i = 0; i < m; i++) {
        int j = i + (int)ddpm_rng_below(rng, (uint32_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        out[i] = perm[i];
    }
}

int ddpm_kid_subset_size(int nr, int nf) {
    int m = nr < nf ? nr : nf;
    return m < DDPM_KID_SUBSET_MAX ? m : DDPM_KID_SUBSET_MAX;
}

ddpm_status ddpm_kid(double *mean, double *std, const float *real, int nr, const float *fake, int nf, int d,
                     uint64_t seed) {
    int m = ddpm_kid_subset_size(nr, nf), S = DDPM_KID_SUBSETS;
    if (m < 2) return ddpm_error(DDPM_ERR_ARG, "KID needs at least 2 images in each set (got %d and %d)", nf, nr);
    int *ia = malloc((size_t)S * m * sizeof(int)), *ib = malloc((size_t)S * m * sizeof(int));
    int *pa = malloc((size_t)nf * sizeof(int)), *pb = malloc((size_t)nr * sizeof(int));
    ddpm_status st = DDPM_OK;
    if (!ia || !ib || !pa || !pb) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for KID");
    if (!st) {
        ddpm_rng rng;
        ddpm_rng_seed(&rng, seed);
        for (int i = 0; i < nf; i++) pa[i] = i;
        for (int i = 0; i < nr; i++) pb[i] = i;
        for (int s = 0; s < S; s++) { /* as clean-fid: the generated subset, then the reference one */
            draw_subset(ia + (size_t)s * m, pa, nf, m, &rng);
            draw_subset(ib + (size_t)s * m, pb, nr, m, &rng);
        }
        st = ddpm_kid_subsets(mean, std, fake, real, d, ia, ib, S, m);
    }
    free(ia), free(ib), free(pa), free(pb);
    return st;
}
