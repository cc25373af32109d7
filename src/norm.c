/* norm.c: group normalization (torch.nn.GroupNorm(G, C, eps=1e-5, affine=True)).
 *
 * In NCHW the group g of sample n is one contiguous block of cpg*HW floats
 * (cpg = C/G channels), starting at (n*G + g) * cpg*HW. Statistics are
 * accumulated in double with a fixed number of partial sums combined in a
 * fixed order, so results are the same for any thread count.
 */
#include "ddpm/norm.h"

#include <math.h>
#include <stddef.h>

/* Below this many elements a layer runs on one thread. */
#define GN_PAR_MIN (1 << 14)

/* sum x[0..n) in double: 4 independent accumulators (vectorisable, deterministic). */
static double sum_d(const float *x, size_t n) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += x[i];
        a1 += x[i + 1];
        a2 += x[i + 2];
        a3 += x[i + 3];
    }
    for (; i < n; i++) a0 += x[i];
    return (a0 + a1) + (a2 + a3);
}

/* sum (x[i] - m)^2 in double. */
static double sumsq_dev_d(const float *x, size_t n, double m) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = x[i] - m, d1 = x[i + 1] - m, d2 = x[i + 2] - m, d3 = x[i + 3] - m;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; i < n; i++) {
        double d = x[i] - m;
        a0 += d * d;
    }
    return (a0 + a1) + (a2 + a3);
}

/* *sdy = sum dy[i], *sdyx = sum dy[i] * (x[i] - m), both in double. */
static void sums_dy_d(const float *dy, const float *x, size_t n, double m, double *sdy,
                      double *sdyx) {
    double a0 = 0.0, a1 = 0.0, b0 = 0.0, b1 = 0.0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        a0 += dy[i];
        a1 += dy[i + 1];
        b0 += (double)dy[i] * (x[i] - m);
        b1 += (double)dy[i + 1] * (x[i + 1] - m);
    }
    for (; i < n; i++) {
        a0 += dy[i];
        b0 += (double)dy[i] * (x[i] - m);
    }
    *sdy = a0 + a1;
    *sdyx = b0 + b1;
}

/* y = (x - mean) * (rstd * gamma) + beta for one (n, g) group: the single
 * place the normalized output is formed, so forward and a recompute from the
 * saved statistics (ddpm_groupnorm_apply) agree bit for bit. */
static void apply_group(float *y, const float *x, float mf, float rf, const float *gamma,
                        const float *beta, int cpg, int HW) {
    for (int j = 0; j < cpg; j++) {
        float s = rf * gamma[j], b = beta[j];
        const float *xr = x + (size_t)j * HW;
        float *yr = y + (size_t)j * HW;
        for (int i = 0; i < HW; i++) yr[i] = (xr[i] - mf) * s + b;
    }
}

void ddpm_groupnorm_forward(float *out, float *mean, float *rstd, const float *in,
                            const float *gamma, const float *beta, int N, int C, int HW, int G) {
    // out (N, C, HW), mean (N, G), rstd (N, G), in (N, C, HW), gamma (C), beta (C)
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW; /* elements per (n, g) */
    int NG = N * G;
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        const float *x = in + (size_t)ng * gsize;
        double m = sum_d(x, gsize) / (double)gsize;
        double var = sumsq_dev_d(x, gsize, m) / (double)gsize; /* biased */
        float mf = (float)m;
        float rf = (float)(1.0 / sqrt(var + (double)DDPM_GN_EPS));
        mean[ng] = mf;
        rstd[ng] = rf;
        int c0 = (ng % G) * cpg;
        apply_group(out + (size_t)ng * gsize, x, mf, rf, gamma + c0, beta + c0, cpg, HW);
    }
}

void ddpm_groupnorm_apply(float *out, const float *in, const float *mean, const float *rstd,
                          const float *gamma, const float *beta, int N, int C, int HW, int G) {
    // out (N, C, HW), in (N, C, HW), mean (N, G), rstd (N, G), gamma (C), beta (C)
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    int NG = N * G;
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        int c0 = (ng % G) * cpg;
        apply_group(out + (size_t)ng * gsize, in + (size_t)ng * gsize, mean[ng], rstd[ng], gamma + c0,
                    beta + c0, cpg, HW);
    }
}

void ddpm_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *mean, const float *rstd,
                             const float *gamma, int N, int C, int HW, int G) {
    // din (N, C, HW), dgamma (C), dbeta (C), dout (N, C, HW), in (N, C, HW),
    // mean (N, G), rstd (N, G), gamma (C)
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    size_t total = (size_t)N * C * HW;
    int NG = N * G;

    /* din: with xhat = (x - mean) * rstd and dxhat = dout * gamma,
     * din = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) over the group. */
#pragma omp parallel for schedule(static) if (total > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        const float *x = in + (size_t)ng * gsize;
        const float *dy = dout + (size_t)ng * gsize;
        float *dx = din + (size_t)ng * gsize;
        int c0 = (ng % G) * cpg;
        float mf = mean[ng], rf = rstd[ng];
        double s1 = 0.0, s2 = 0.0; /* sum dxhat, sum dxhat * (x - mean) */
        for (int j = 0; j < cpg; j++) {
            double sdy, sdyx;
            sums_dy_d(dy + (size_t)j * HW, x + (size_t)j * HW, HW, mf, &sdy, &sdyx);
            s1 += (double)gamma[c0 + j] * sdy;
            s2 += (double)gamma[c0 + j] * sdyx;
        }
        float m1 = (float)(s1 / (double)gsize);                  /* mean(dxhat) */
        float m2 = (float)(s2 * (double)rf / (double)gsize);     /* mean(dxhat * xhat) */
        for (int j = 0; j < cpg; j++) {
            float g = gamma[c0 + j];
            const float *xr = x + (size_t)j * HW, *dyr = dy + (size_t)j * HW;
            float *dxr = dx + (size_t)j * HW;
            for (int i = 0; i < HW; i++) {
                float xhat = (xr[i] - mf) * rf;
                dxr[i] += rf * (dyr[i] * g - m1 - xhat * m2);
            }
        }
    }

    /* dgamma, dbeta: one channel per iteration, summed over (n, hw) in order. */
#pragma omp parallel for schedule(static) if (total > GN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        int g = c / cpg;
        double sg = 0.0, sb = 0.0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            double sdy, sdyx;
            sums_dy_d(dout + off, in + off, HW, mean[n * G + g], &sdy, &sdyx);
            sb += sdy;
            sg += sdyx * (double)rstd[n * G + g];
        }
        dgamma[c] += (float)sg;
        dbeta[c] += (float)sb;
    }
}
