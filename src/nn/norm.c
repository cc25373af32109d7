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
#include "core/util.h"

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

/* Adds dy[i] into lane sdy[k] and dy[i] * (x[i] - m) into sdyx[k], in double,
 * element i to lane i % GN_LANES. Only the last call on a row may have n not a
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

/* Adds d = x[j] - K into lane a[(o + j) % GN_LANES] and d^2 into q[...], in
 * double, for j in [0, n), in order; returns the lane after the last element.
 * Started at the lane where the previous segment of a group stopped, a group
 * in two segments gives the same lanes, summed in the same order, as one
 * contiguous call over the whole group. */
static int acc_stats(double *restrict a, double *restrict q, const float *restrict x, size_t n,
                     int o, double K) {
    size_t j = 0;
    for (; o > 0 && j < n; j++) { /* finish the lane row the last segment began */
        double d = x[j] - K;
        a[o] += d;
        q[o] += d * d;
        if (++o == GN_LANES) o = 0;
    }
    if (o > 0) return o;
    for (; j + GN_LANES <= n; j += GN_LANES)
        for (int k = 0; k < GN_LANES; k++) {
            double d = x[j + k] - K;
            a[k] += d;
            q[k] += d * d;
        }
    for (; j < n; j++, o++) {
        double d = x[j] - K;
        a[o] += d;
        q[o] += d * d;
    }
    return o;
}

/* mean and rstd of one group: n1 floats at x1 followed by n2 at x2 (n2 = 0
 * for a contiguous group), rounded to float once. One pass in double,
 * shifted by the group's first element K = x1[0]:
 *     mean = K + S1/n,  var = S2/n - (S1/n)^2,  S1 = sum (x - K), S2 = sum (x - K)^2.
 * Each x - K and (x - K)^2 is exact or within half an ulp of double, and the
 * sums carry a relative error of at most g = (n/GN_LANES + 5) * 2^-53. The
 * subtraction then loses about S2/n / var = 1 + (mean - K)^2 / var of that,
 * and (mean - K)^2 / var <= n - 1 for any data (Samuelson's inequality: no
 * element is more than sqrt(n - 1) standard deviations from the mean). So
 * the variance is within ~3 n g of exact, relative: 2e-9 at the largest
 * default-UNet group (n = 12544), 6e-8 (half a float ulp) only past
 * n = 73000 and then only for an x1[0] that is an extreme outlier; for
 * typical data (mean - K)^2 / var is a few and the error a few g. Unlike
 * E[x^2] - E[x]^2 without the shift, a large |mean| / std costs nothing. */
static void group_stats(const float *x1, size_t n1, const float *x2, size_t n2, float *mean,
                        float *rstd) {
    double a[GN_LANES] = {0}, q[GN_LANES] = {0};
    const double K = x1[0];
    int o = acc_stats(a, q, x1, n1, 0, K);
    if (n2) acc_stats(a, q, x2, n2, o, K);
    const double n = (double)(n1 + n2);
    double m = lanes_total(a) / n;
    double var = lanes_total(q) / n - m * m; /* biased */
    if (var < 0.0) var = 0.0;
    *mean = (float)(K + m);
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
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > DDPM_PAR_MIN_ELEMS_MATH)
    for (int ng = 0; ng < NG; ng++) {
        const float *x = in + (size_t)ng * gsize;
        group_stats(x, gsize, NULL, 0, &mean[ng], &rstd[ng]);
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
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > DDPM_PAR_MIN_ELEMS_MATH)
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
#pragma omp parallel for schedule(static) if (total > DDPM_PAR_MIN_ELEMS_MATH)
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
#pragma omp parallel for schedule(static) if (total > DDPM_PAR_MIN_ELEMS_MATH)
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
    ddpm_groupnorm_silu_forward_cat(out, mean, rstd, in, NULL, C, gamma, beta, mask, N, C, HW, G);
}

void ddpm_groupnorm_silu_forward_cat(float *out, float *mean, float *rstd, const float *a,
                                     const float *b, int CA, const float *gamma, const float *beta,
                                     const float *mask, int N, int C, int HW, int G) {
    // out (N, C, HW), mean (N, G), rstd (N, G), a (N, CA, HW), b (N, C - CA, HW),
    // gamma (C), beta (C), mask (N, C, HW) or NULL
    int cpg = C / G, CB = C - CA;
    size_t gsize = (size_t)cpg * HW;
    int NG = N * G;
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > DDPM_PAR_MIN_ELEMS_MATH)
    for (int ng = 0; ng < NG; ng++) {
        size_t off = (size_t)ng * gsize;
        int n = ng / G, c0 = (ng % G) * cpg;
        /* channels [c0, c0 + ca) of the group come from a, the other cb from b */
        int ca = c0 >= CA ? 0 : (CA - c0 < cpg ? CA - c0 : cpg), cb = cpg - ca;
        const float *xa = ca ? a + ((size_t)n * CA + c0) * HW : NULL;       /* (ca, HW) */
        const float *xb = cb ? b + ((size_t)n * CB + c0 + ca - CA) * HW : NULL; /* (cb, HW) */
        if (ca) group_stats(xa, (size_t)ca * HW, xb, (size_t)cb * HW, &mean[ng], &rstd[ng]);
        else group_stats(xb, (size_t)cb * HW, NULL, 0, &mean[ng], &rstd[ng]);
        const float *mk = mask ? mask + off : NULL;
        if (ca) gn_silu_group(out + off, xa, mk, mean[ng], rstd[ng], gamma + c0, beta + c0, ca, HW);
        if (cb) {
            size_t o2 = (size_t)ca * HW;
            gn_silu_group(out + off + o2, xb, mk ? mk + o2 : NULL, mean[ng], rstd[ng],
                          gamma + c0 + ca, beta + c0 + ca, cb, HW);
        }
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
#pragma omp parallel for schedule(static) if ((size_t)NG * gsize > DDPM_PAR_MIN_ELEMS_MATH)
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
#pragma omp parallel for schedule(static) if (total > DDPM_PAR_MIN_ELEMS_MATH)
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
#pragma omp parallel for schedule(static) if ((size_t)N * C > DDPM_PAR_MIN_ELEMS_MATH)
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
