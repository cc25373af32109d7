/* resample.c: nearest x2 upsample, channel concat and the per-(n, c) broadcast
 * bias add (the time embedding added to a feature map). NCHW throughout.
 * Shape letters: N batch, C channels, H W size, HW = H*W. Backward functions
 * accumulate (+=). Loops run over independent (n, c) planes, so every output
 * is computed by one thread in a fixed order. See resample.h. */
#include "ddpm/resample.h"

#include <stddef.h>
#include <string.h>

#include "core/util.h"

/* out (N, C, 2H, 2W); in (N, C, H, W). */
void ddpm_upsample2x_forward(float *out, const float *in, int N, int C, int H, int W) {
    long planes = (long)N * C;
    size_t hw = (size_t)H * W, W2 = 2 * (size_t)W;
#pragma omp parallel for schedule(static) if (planes * (long)hw * 4 >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        const float *in_p = in + (size_t)p * hw;
        float *out_p = out + (size_t)p * 4 * hw;
        for (int h = 0; h < H; h++) {
            const float *src = in_p + (size_t)h * W;
            float *row0 = out_p + (size_t)(2 * h) * W2;
            float *row1 = row0 + W2;
            for (int w = 0; w < W; w++) {
                row0[2 * w] = src[w];
                row0[2 * w + 1] = src[w];
            }
            memcpy(row1, row0, W2 * sizeof(float));
        }
    }
}

/* din (N, C, H, W) += sum of its 2x2 block of dout (N, C, 2H, 2W). */
void ddpm_upsample2x_backward(float *din, const float *dout, int N, int C, int H, int W) {
    long planes = (long)N * C;
    size_t hw = (size_t)H * W, W2 = 2 * (size_t)W;
#pragma omp parallel for schedule(static) if (planes * (long)hw * 4 >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        float *din_p = din + (size_t)p * hw;
        const float *dout_p = dout + (size_t)p * 4 * hw;
        for (int h = 0; h < H; h++) {
            const float *row0 = dout_p + (size_t)(2 * h) * W2;
            const float *row1 = row0 + W2;
            float *dst = din_p + (size_t)h * W;
            for (int w = 0; w < W; w++)
                dst[w] += (row0[2 * w] + row0[2 * w + 1]) + (row1[2 * w] + row1[2 * w + 1]);
        }
    }
}

/* out (N, CA+CB, HW); a (N, CA, HW); b (N, CB, HW). One copy per output
 * plane (n, c), so large calls split evenly over the threads. */
void ddpm_concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW) {
    long C = (long)CA + CB;
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * (long)HW >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        long n = p / C, c = p % C;
        const float *src = c < CA ? a + ((size_t)n * CA + (size_t)c) * HW
                                  : b + ((size_t)n * CB + (size_t)(c - CA)) * HW;
        memcpy(out + (size_t)p * HW, src, (size_t)HW * sizeof(float));
    }
}

/* The plane of da (N, CA, HW) or db (N, CB, HW) that plane p of their
 * concatenation (N, CA+CB, HW) belongs to; NULL when that side is NULL. */
static float *split_plane(float *da, float *db, long p, int CA, int CB, int HW) {
    long C = (long)CA + CB, n = p / C, c = p % C;
    if (c < CA) return da ? da + ((size_t)n * CA + (size_t)c) * HW : NULL;
    return db ? db + ((size_t)n * CB + (size_t)(c - CA)) * HW : NULL;
}

/* dout (N, CA+CB, HW); da (N, CA, HW) += its first CA channels, db (N, CB, HW)
 * += the rest. Either may be NULL. */
void ddpm_concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW) {
    long planes = (long)N * ((long)CA + CB);
#pragma omp parallel for schedule(static) if (planes * (long)HW >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        float *dst = split_plane(da, db, p, CA, CB, HW);
        if (!dst) continue;
        const float *src = dout + (size_t)p * HW;
        for (int i = 0; i < HW; i++) dst[i] += src[i];
    }
}

/* dout (N, CA+CB, HW); da (N, CA, HW) = its first CA channels, db (N, CB, HW)
 * = the rest. Either may be NULL. */
void ddpm_concat_split(float *da, float *db, const float *dout, int N, int CA, int CB, int HW) {
    long planes = (long)N * ((long)CA + CB);
#pragma omp parallel for schedule(static) if (planes * (long)HW >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        float *dst = split_plane(da, db, p, CA, CB, HW);
        if (dst) memcpy(dst, dout + (size_t)p * HW, (size_t)HW * sizeof(float));
    }
}

/* out (N, C, HW) = in (N, C, HW) + bias (N, C) broadcast over HW. out may equal in. */
void ddpm_add_bias_nc_forward(float *out, const float *in, const float *bias, int N, int C, int HW) {
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * (long)HW >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        const float *in_p = in + (size_t)p * HW;
        float *out_p = out + (size_t)p * HW;
        float b = bias[p];
        for (int i = 0; i < HW; i++) out_p[i] = in_p[i] + b;
    }
}

/* Partial sums of sum_plane: element i goes to lane i % SUM_LANES, so the
 * loop vectorises; the lanes are then added pairwise in a fixed order. */
#define SUM_LANES 16

/* sum of x[0..n) in the fixed order above. */
static float sum_plane(const float *restrict x, int n) {
    float a[SUM_LANES] = {0};
    int i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int k = 0; k < SUM_LANES; k++) a[k] += x[i + k];
    for (int k = 0; i < n; i++, k++) a[k] += x[i];
    for (int w = SUM_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) a[k] += a[k + w];
    return a[0];
}

/* dout (N, C, HW); din (N, C, HW) += dout (din may be NULL);
 * dbias (N, C) += sum over HW of dout (sum_plane, within one thread). */
void ddpm_add_bias_nc_backward(float *din, float *dbias, const float *dout, int N, int C, int HW) {
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * (long)HW >= DDPM_PAR_MIN_ELEMS)
    for (long p = 0; p < planes; p++) {
        const float *dout_p = dout + (size_t)p * HW;
        if (din) {
            float *din_p = din + (size_t)p * HW;
            for (int i = 0; i < HW; i++) din_p[i] += dout_p[i];
        }
        dbias[p] += sum_plane(dout_p, HW);
    }
}
