/* fid.c: Gaussian statistics of features and the Fréchet distance between
 * two Gaussians (docs/design.md §7), in double, with LAPACK's dsyev from
 * OpenBLAS for the symmetric square root and eigenvalues. */
#include "ddpm/eval.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran ABI, in libopenblas): eigenvalues (and vectors with
 * jobz = 'V') of a symmetric matrix. The trailing size_t are the hidden
 * lengths of the two character arguments. */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                   double *work, const int *lwork, int *info, size_t ljobz, size_t luplo);

ddpm_status ddpm_gauss_stats_compute(ddpm_gauss_stats *s, const float *feats, int n, int d) {
    memset(s, 0, sizeof *s);
    if (n < 2 || d < 1) return ddpm_error(DDPM_ERR_ARG, "statistics need at least 2 rows (got %d)", n);
    s->mu = calloc((size_t)d, sizeof(double));
    s->cov = calloc((size_t)d * d, sizeof(double));
    double *c = malloc((size_t)n * d * sizeof(double)); /* (n, d) centred rows */
    if (!s->mu || !s->cov || !c) {
        free(c);
        ddpm_gauss_stats_free(s);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for feature statistics (%d x %d)", n, d);
    }
    s->d = d;
    s->n = n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) s->mu[j] += feats[(size_t)i * d + j];
    for (int j = 0; j < d; j++) s->mu[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) c[(size_t)i * d + j] = feats[(size_t)i * d + j] - s->mu[j];
    /* cov = c^T c / (n - 1), upper triangle from dsyrk, mirrored */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0 / (n - 1), c, d, 0.0, s->cov, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) s->cov[(size_t)i * d + j] = s->cov[(size_t)j * d + i];
    free(c);
    return DDPM_OK;
}

void ddpm_gauss_stats_free(ddpm_gauss_stats *s) {
    free(s->mu);
    free(s->cov);
    memset(s, 0, sizeof *s);
}

/* Eigen-decomposition of the symmetric a (d, d), overwritten by the
 * eigenvectors (jobz 'V') ; w (d) the eigenvalues, ascending. */
static ddpm_status syev(char jobz, double *a, double *w, int d) {
    int lwork = -1, info = 0;
    double q;
    dsyev_(&jobz, "U", &d, a, &d, w, &q, &lwork, &info, 1, 1);
    lwork = info == 0 && q >= 1.0 ? (int)q : 3 * d;
    double *work = malloc((size_t)lwork * sizeof(double));
    if (!work) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for dsyev");
    dsyev_(&jobz, "U", &d, a, &d, w, work, &lwork, &info, 1, 1);
    free(work);
    if (info != 0) return ddpm_error(DDPM_ERR_NUMERIC, "dsyev failed (info %d)", info);
    return DDPM_OK;
}

/* out = sqrt(S) (d, d) for symmetric PSD S: V diag(sqrt(max(w, 0))) V^T. */
static ddpm_status sym_sqrt(double *out, const double *S, int d) {
    double *v = malloc((size_t)d * d * sizeof(double)), *w = malloc((size_t)d * sizeof(double));
    double *vs = malloc((size_t)d * d * sizeof(double));
    ddpm_status st = !v || !w || !vs ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for a matrix square root") : DDPM_OK;
    if (!st) {
        memcpy(v, S, (size_t)d * d * sizeof(double));
        st = syev('V', v, w, d); /* column-major: eigenvector j is v[j*d .. j*d+d) */
    }
    if (!st) {
        for (int j = 0; j < d; j++) {
            double r = sqrt(w[j] > 0.0 ? w[j] : 0.0);
            for (int i = 0; i < d; i++) vs[(size_t)j * d + i] = v[(size_t)j * d + i] * r;
        }
        /* column-major V diag(r) V^T = vs v^T; symmetric, so the layout does not matter */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0, vs, d, v, d, 0.0, out, d);
    }
    free(v);
    free(w);
    free(vs);
    return st;
}

ddpm_status ddpm_frechet_distance(double *out, const double *mu1, const double *cov1, const double *mu2,
                                  const double *cov2, int d) {
    size_t dd = (size_t)d * d;
    double *r = malloc(dd * sizeof(double)), *t = malloc(dd * sizeof(double));
    double *m = malloc(dd * sizeof(double)), *w = malloc((size_t)d * sizeof(double));
    ddpm_status st = !r || !t || !m || !w ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for the Frechet distance") : DDPM_OK;
    if (!st) st = sym_sqrt(r, cov1, d);
    if (!st) {
        /* m = r S2 r, symmetrised against round-off */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, r, d, cov2, d, 0.0, t, d);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, t, d, r, d, 0.0, m, d);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < i; j++) m[(size_t)i * d + j] = m[(size_t)j * d + i] = 0.5 * (m[(size_t)i * d + j] + m[(size_t)j * d + i]);
        st = syev('N', m, w, d);
    }
    if (!st) {
        double dist = 0.0, tr = 0.0;
        for (int i = 0; i < d; i++) {
            double dm = mu1[i] - mu2[i];
            dist += dm * dm;
            tr += cov1[(size_t)i * d + i] + cov2[(size_t)i * d + i];
            tr -= 2.0 * sqrt(w[i] > 0.0 ? w[i] : 0.0);
        }
        *out = dist + tr;
        if (!isfinite(*out)) st = ddpm_error(DDPM_ERR_NUMERIC, "the Frechet distance is not finite");
    }
    free(r);
    free(t);
    free(m);
    free(w);
    return st;
}
