/* norm.c: group normalization (torch.nn.GroupNorm(G, C, eps=1e-5, affine=True)),
 * alone and fused with the SiLU (and dropout mask) that follows it.
 *
 * In NCHW the group g of sample n is one contiguous block of cpg*HW floats
 * (cpg = C/G channels), starting at (n*G + g) * cpg*HW. Sums are accumulated
 * in double in GN_LANES independent partial sums (so the loops vectorise)
 * combined in a fixed order, and every parallel loop writes disjoint
 * outputs, so results are the same for any thread count.
 */
#include "ddpm/norm.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "ddpm/act.h"

/* Below this many elements a layer runs on one thread. */
#define GN_PAR_MIN (1 << 14)
/* Independent partial sums per accumulation: enough to hide the latency of
 * the double adds (the loops are latency-bound with fewer). */
#define GN_LANES 32
/* The fused backward forms dy in tiles of this many floats (a multiple of
 * GN_LANES, so tiling does not change which lane sums an element). */
#define GN_TILE 256
/* The fused backward keeps dy of a whole group on the stack when the group
 * has at most this many floats (64 KB), instead of forming it twice. */
#define GN_CACHE 16384

/* The lanes added pairwise in a fixed order: a[k] += a[k + w] for w = 16, 8, ..., 1. */
static double lanes_total(double a[GN_LANES]) {
    for (int w = GN_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) a[k] += a[k + w];
    return a[0];
}

/* sum x[0..n) in double; element i goes to lane i % GN_LANES. */
static double sum_d(const float *restrict x, size_t n) {
    double a[GN_LANES] = {0};
    size_t i = 0;
    for (; i + GN_LANES <= n; i += GN_LANES)
        for (int k = 0; k < GN_LANES; k++) a[k] += x[i + k];
    for (int k = 0; i < n; i++, k++) a[k] += x[i];
    return lanes_total(a);
}

/* sum (x[i] - m)^2 in double. */
static double sumsq_dev_d(const float *restrict x, size_t n, double m) {
    double a[GN_LANES] = {0};
    size_t i = 0;
    for (; i + GN_LANES <= n; i += GN_LANES)
        for (int k = 0; k < GN_LANES; k++) {
            double d = x[i + k] - m;
            a[k] += d * d;
        }
    for (int k = 0; i < n; i++, k++) {
        double d = x[i] - m;
        a[k] += d * d;
    }
    return lanes_total(a);
}

/* Adds dy[i] into lane sdy[k] and dy[i] * (x[i] - m) into sdyx[k], in double,
 * lanes assigned as in sum_d. Only the last call on a row may have n not a
 * multiple of GN_LANES, so a row summed tile by tile gives the same lanes as
 * one call over the whole row. */
static void acc_dy(double *restrict sdy, double *restrict sdyx, const float *restrict dy,
                   const float *restrict x, size_t n, double m) {
    size_t i = 0;
    for (; i + GN_LANES <= n; i += GN_LANES)
        for (int k = 0; k < GN_LANES; k++) {
            sdy[k] += dy[i + k];
            sdyx[k] += (double)dy[i + k] * (x[i + k] - m);
        }
    for (int k = 0; i < n; i++, k++) {
        sdy[k] += dy[i];
        sdyx[k] += (double)dy[i] * (x[i] - m);
    }
}

/* mean and rstd of one group of gsize floats: two passes in double (no
 * cancellation from E[x^2] - E[x]^2), rounded to float once. */
static void group_stats(const float *x, size_t gsize, float *mean, float *rstd) {
    double m = sum_d(x, gsize) / (double)gsize;
    double var = sumsq_dev_d(x, gsize, m) / (double)gsize; /* biased */
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(var + (double)DDPM_GN_EPS));
}

/* ---- GroupNorm ---------------------------------------------------------------- */

/* y = (x - mean) * (rstd * gamma) + beta for one (n, g) group: the single
 * place the normalized output is formed, so forward and a recompute from the
 * saved statistics (ddpm_groupnorm_apply) agree bit for bit. The fused
 * GroupNorm + SiLU below forms y with the same expression. */
static void apply_group(float *restrict y, const float *restrict x, float mf, float rf,
                        const float *gamma, const float *beta, int cpg, int HW) {
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
        group_stats(x, gsize, &mean[ng], &rstd[ng]);
        int c0 = (ng % G) * cpg;
        apply_group(out + (size_t)ng * gsize, x, mean[ng], rstd[ng], gamma + c0, beta + c0, cpg, HW);
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

/* din += rstd * (dy * gamma - m1 - xhat * m2) over one row of n floats,
 * xhat = (x - mean) * rstd; m1 = mean(dy * gamma), m2 = mean(dy * gamma * xhat)
 * over the group. Shared by both backward passes. */
static void din_row(float *restrict dx, const float *restrict dy, const float *restrict x, float mf,
                    float rf, float g, float m1, float m2, int n) {
    for (int i = 0; i < n; i++) {
        float xhat = (x[i] - mf) * rf;
        dx[i] += rf * (dy[i] * g - m1 - xhat * m2);
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
        size_t off = (size_t)ng * gsize;
        int c0 = (ng % G) * cpg;
        float mf = mean[ng], rf = rstd[ng];
        double s1 = 0.0, s2 = 0.0; /* sum dxhat, sum dxhat * (x - mean) */
        for (int j = 0; j < cpg; j++) {
            size_t r = off + (size_t)j * HW;
            double sdy[GN_LANES] = {0}, sdyx[GN_LANES] = {0};
            acc_dy(sdy, sdyx, dout + r, in + r, (size_t)HW, mf);
            s1 += (double)gamma[c0 + j] * lanes_total(sdy);
            s2 += (double)gamma[c0 + j] * lanes_total(sdyx);
        }
        float m1 = (float)(s1 / (double)gsize);              /* mean(dxhat) */
        float m2 = (float)(s2 * (double)rf / (double)gsize); /* mean(dxhat * xhat) */
        for (int j = 0; j < cpg; j++) {
            size_t r = off + (size_t)j * HW;
            din_row(din + r, dout + r, in + r, mf, rf, gamma[c0 + j], m1, m2, HW);
        }
    }

    /* dgamma, dbeta: one channel per iteration, summed over (n, hw) in order. */
#pragma omp parallel for schedule(static) if (total > GN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        int g = c / cpg;
        double sg = 0.0, sb = 0.0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            double sdy[GN_LANES] = {0}, sdyx[GN_LANES] = {0};
            acc_dy(sdy, sdyx, dout + off, in + off, (size_t)HW, mean[n * G + g]);
            sb += lanes_total(sdy);
            sg += lanes_total(sdyx) * (double)rstd[n * G + g];
        }
        dgamma[c] += (float)sg;
        dbeta[c] += (float)sb;
    }
}

/* ---- GroupNorm + SiLU (+ dropout) ------------------------------------------------ */

/* out = silu(y) [* mask], y = (x - mean) * (rstd * gamma) + beta, for one
 * (n, g) group: the single place the fused output is formed (forward and
 * apply), with y as in apply_group and the sigmoid of ddpm_silu_forward. */
static void gn_silu_group(float *restrict out, const float *restrict x, const float *restrict mask,
                          float mf, float rf, const float *gamma, const float *beta, int cpg,
                          int HW) {
    for (int j = 0; j < cpg; j++) {
        float s = rf * gamma[j], b = beta[j];
        size_t r = (size_t)j * HW;
        if (mask) {
            for (int i = 0; i < HW; i++) {
                float y = (x[r + i] - mf) * s + b;
                out[r + i] = y * ddpm_sigmoid(y) * mask[r + i];
            }
        } else {
            for (int i = 0; i < HW; i++) {
                float y = (x[r + i] - mf) * s + b;
                out[r + i] = y * ddpm_sigmoid(y);
            }
        }
    }
}

void ddpm_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *in,
                                 const float *gamma, const float *beta, const float *mask, int N,
                                 int C, int HW, int G) {
    // out (N, C, HW), mean (N, G), rstd (N, G), in (N, C, HW), gamma (C), beta (C),
    // mask (N, C, HW) or NULL
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    int NG = N * G;
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        size_t off = (size_t)ng * gsize;
        group_stats(in + off, gsize, &mean[ng], &rstd[ng]);
        int c0 = (ng % G) * cpg;
        gn_silu_group(out + off, in + off, mask ? mask + off : NULL, mean[ng], rstd[ng], gamma + c0,
                      beta + c0, cpg, HW);
    }
}

void ddpm_groupnorm_silu_apply(float *out, const float *in, const float *mean, const float *rstd,
                               const float *gamma, const float *beta, const float *mask, int N,
                               int C, int HW, int G) {
    // out (N, C, HW), in (N, C, HW), mean (N, G), rstd (N, G), gamma (C), beta (C),
    // mask (N, C, HW) or NULL
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    int NG = N * G;
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        size_t off = (size_t)ng * gsize;
        int c0 = (ng % G) * cpg;
        gn_silu_group(out + off, in + off, mask ? mask + off : NULL, mean[ng], rstd[ng], gamma + c0,
                      beta + c0, cpg, HW);
    }
}

size_t ddpm_groupnorm_silu_workspace(int N, int C) {
    return 4 * (size_t)N * (size_t)C; /* 2 doubles per (n, c) */
}

/* dy = dL/dy for one row of n <= GN_TILE floats, from dout = dL/d(silu(y) * mask):
 * dy = (dout * mask) * silu'(y), silu'(y) = s (1 + y (1 - s)), s = sigmoid(y),
 * with y recomputed as in gn_silu_group (s = rstd * gamma, b = beta). */
static void silu_grad_row(float *restrict dy, const float *restrict dout, const float *restrict x,
                          const float *restrict mask, float mf, float s, float b, int n) {
    if (mask) {
        for (int i = 0; i < n; i++) {
            float y = (x[i] - mf) * s + b, sg = ddpm_sigmoid(y);
            dy[i] = (dout[i] * mask[i]) * (sg * (1.0f + y * (1.0f - sg)));
        }
    } else {
        for (int i = 0; i < n; i++) {
            float y = (x[i] - mf) * s + b, sg = ddpm_sigmoid(y);
            dy[i] = dout[i] * (sg * (1.0f + y * (1.0f - sg)));
        }
    }
}

void ddpm_groupnorm_silu_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                  const float *in, const float *mean, const float *rstd,
                                  const float *gamma, const float *beta, const float *mask, int N,
                                  int C, int HW, int G, float *work) {
    // din (N, C, HW), dgamma (C), dbeta (C), dout (N, C, HW), in (N, C, HW),
    // mean (N, G), rstd (N, G), gamma (C), beta (C), mask (N, C, HW) or NULL,
    // work: part (N, C, 2) doubles, per (n, c) sum dy and sum dy * (x - mean)
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    size_t total = (size_t)N * C * HW;
    int NG = N * G;
    double *part = (double *)work;

    /* Per (n, g), as ddpm_groupnorm_backward, with dy formed from dout tile by
     * tile instead of read. A group of up to GN_CACHE floats keeps its dy for
     * the din pass; a larger one forms each tile again (the same values). */
#pragma omp parallel for schedule(static) if (total > GN_PAR_MIN)
    for (int ng = 0; ng < NG; ng++) {
        size_t off = (size_t)ng * gsize;
        int n = ng / G, c0 = (ng % G) * cpg;
        float mf = mean[ng], rf = rstd[ng];
        float dyc[GN_CACHE]; /* dL/dy (cpg, HW) of the group, or one tile of it */
        bool whole = gsize <= GN_CACHE;
        double s1 = 0.0, s2 = 0.0; /* sum dy * gamma, sum dy * gamma * (x - mean) */
        for (int j = 0; j < cpg; j++) {
            size_t r = off + (size_t)j * HW;
            float s = rf * gamma[c0 + j], b = beta[c0 + j];
            double sdy[GN_LANES] = {0}, sdyx[GN_LANES] = {0};
            for (int i = 0; i < HW; i += GN_TILE) {
                int len = HW - i < GN_TILE ? HW - i : GN_TILE;
                float *dy = whole ? dyc + (size_t)j * HW + i : dyc;
                silu_grad_row(dy, dout + r + i, in + r + i, mask ? mask + r + i : NULL, mf, s, b, len);
                acc_dy(sdy, sdyx, dy, in + r + i, (size_t)len, mf);
            }
            double *p = part + 2 * ((size_t)n * C + c0 + j);
            p[0] = lanes_total(sdy);
            p[1] = lanes_total(sdyx);
            s1 += (double)gamma[c0 + j] * p[0];
            s2 += (double)gamma[c0 + j] * p[1];
        }
        float m1 = (float)(s1 / (double)gsize);
        float m2 = (float)(s2 * (double)rf / (double)gsize);
        for (int j = 0; j < cpg; j++) {
            size_t r = off + (size_t)j * HW;
            float g = gamma[c0 + j];
            if (whole) {
                din_row(din + r, dyc + (size_t)j * HW, in + r, mf, rf, g, m1, m2, HW);
                continue;
            }
            for (int i = 0; i < HW; i += GN_TILE) {
                int len = HW - i < GN_TILE ? HW - i : GN_TILE;
                silu_grad_row(dyc, dout + r + i, in + r + i, mask ? mask + r + i : NULL, mf, rf * g,
                              beta[c0 + j], len);
                din_row(din + r + i, dyc, in + r + i, mf, rf, g, m1, m2, len);
            }
        }
    }

    /* dgamma, dbeta: one channel per iteration, the (n, c) sums added over n
     * in order (the same sums, in the same order, as ddpm_groupnorm_backward). */
#pragma omp parallel for schedule(static) if ((size_t)N * C > GN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        double sg = 0.0, sb = 0.0;
        for (int n = 0; n < N; n++) {
            const double *p = part + 2 * ((size_t)n * C + c);
            sb += p[0];
            sg += p[1] * (double)rstd[n * G + c / cpg];
        }
        dgamma[c] += (float)sg;
        dbeta[c] += (float)sb;
    }
}
