/* attn.c: single-head spatial self-attention core. See attn.h.
 *
 * Per image n, with q, k, v the (C, T) slices of qkv and s = 1/sqrt(C):
 *   S   = s * q^T k                    (T, T)
 *   att = softmax over each row of S   (T, T)
 *   out = v att^T                      (C, T)
 * The images are independent and their products small (the default UNet has
 * T = 49, C = 64), so one OpenMP loop runs whole images on the threads: each
 * image's GEMMs (single-threaded inside the parallel region, see tensor.h)
 * and its softmax rows back to back, while its (T, T) block is in cache.
 * Every output is computed by one thread in a fixed order, so results do not
 * depend on the thread count.
 */
#include "ddpm/attn.h"

#include <math.h>

#include "ddpm/act.h"
#include "ddpm/tensor.h"
#include "core/util.h"
#include "nn/gemm_tile.h"

/* Independent partial maxima / sums per softmax row, so the row loops
 * vectorise (a float reduction does not without -ffast-math). */
#define SM_LANES 16

size_t ddpm_attention_workspace(int N, int C, int T) {
    (void)C;
    return (size_t)N * (size_t)T * (size_t)T; /* datt / dS (N, T, T) */
}

/* Run the images on the threads? */
static int attn_parallel(int N, int C, int T) {
    return N > 1 && 4.0 * N * C * (double)T * T >= DDPM_PAR_MIN_FLOPS;
}

/* The lanes added pairwise in a fixed order: a[k] += a[k + w] for w = 8, 4, 2, 1. */
static float lanes_sum(float a[SM_LANES]) {
    for (int w = SM_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) a[k] += a[k + w];
    return a[0];
}

/* In place: a (T,) = softmax(a), with the row max subtracted first, so every
 * exp argument is <= 0 (ddpm_exp_nonpos) and the sum is >= 1. Element j goes
 * to lane j % SM_LANES of the max and the sum. */
static void softmax_row(float *restrict a, int T) {
    float mx[SM_LANES], s[SM_LANES] = {0};
    for (int k = 0; k < SM_LANES; k++) mx[k] = a[0];
    int j = 0;
    for (; j + SM_LANES <= T; j += SM_LANES)
        for (int k = 0; k < SM_LANES; k++) mx[k] = a[j + k] > mx[k] ? a[j + k] : mx[k];
    for (int k = 0; j < T; j++, k++) mx[k] = a[j] > mx[k] ? a[j] : mx[k];
    float maxv = mx[0];
    for (int k = 1; k < SM_LANES; k++) maxv = mx[k] > maxv ? mx[k] : maxv;

    for (j = 0; j < T; j++) a[j] = ddpm_exp_nonpos(a[j] - maxv);
    for (j = 0; j + SM_LANES <= T; j += SM_LANES)
        for (int k = 0; k < SM_LANES; k++) s[k] += a[j + k];
    for (int k = 0; j < T; j++, k++) s[k] += a[j];
    const float inv = 1.0f / lanes_sum(s);
    for (j = 0; j < T; j++) a[j] *= inv;
}

/* In place: d (T,) = datt in, dS out, for one softmax row a (T,):
 * dS_j = a_j * (datt_j - sum_j' datt_j' a_j'), the dot in lanes as above. */
static void softmax_row_backward(float *restrict d, const float *restrict a, int T) {
    float s[SM_LANES] = {0};
    int j = 0;
    for (; j + SM_LANES <= T; j += SM_LANES)
        for (int k = 0; k < SM_LANES; k++) s[k] += d[j + k] * a[j + k];
    for (int k = 0; j < T; j++, k++) s[k] += d[j] * a[j];
    const float dot = lanes_sum(s);
    for (j = 0; j < T; j++) d[j] = a[j] * (d[j] - dot);
}

void ddpm_attention_forward(float *out, float *att, const float *qkv, int N, int C, int T) {
    ddpm_attention_forward_prec(DDPM_PREC_FP32, out, att, qkv, N, C, T);
}

void ddpm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                             int N, int C, int T, float *work) {
    ddpm_attention_backward_prec(DDPM_PREC_FP32, dqkv, dout, qkv, att, N, C, T, work);
}

void ddpm_attention_forward_prec(ddpm_precision prec, float *out, float *att, const float *qkv,
                                 int N, int C, int T) {
    /* out (N, C, T); att (N, T, T); qkv (N, 3C, T) */
    const float scale = 1.0f / sqrtf((float)C);
    const size_t CT = (size_t)C * T, TT = (size_t)T * T;
#pragma omp parallel for schedule(static) if (attn_parallel(N, C, T))
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * CT; /* (C, T) */
        const float *k = q + CT;                   /* (C, T) */
        const float *v = q + 2 * CT;               /* (C, T) */
        float *a = att + (size_t)n * TT;           /* (T, T) */
        /* S = scale * q^T k: (T, C) @ (C, T), then softmax of every row */
        ddpm_gemm_prec(prec, true, false, T, T, C, scale, q, T, k, T, 0.0f, a, T);
        for (int i = 0; i < T; i++) softmax_row(a + (size_t)i * T, T);
        /* out_n = v att_n^T: (C, T) @ (T, T)^T */
        ddpm_gemm_prec(prec, false, true, C, T, T, 1.0f, v, T, a, T, 0.0f, out + (size_t)n * CT, T);
    }
}

void ddpm_attention_backward_prec(ddpm_precision prec, float *dqkv, const float *dout,
                                  const float *qkv, const float *att, int N, int C, int T,
                                  float *work) {
    /* dqkv (N, 3C, T) accumulated; dout (N, C, T); qkv (N, 3C, T); att (N, T, T);
     * work (N, T, T): datt, turned into dS in place */
    const float scale = 1.0f / sqrtf((float)C);
    const size_t CT = (size_t)C * T, TT = (size_t)T * T;
#pragma omp parallel for schedule(static) if (attn_parallel(N, C, T))
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * CT;   /* (C, T) */
        const float *k = q + CT;                     /* (C, T) */
        const float *v = q + 2 * CT;                 /* (C, T) */
        const float *dout_n = dout + (size_t)n * CT; /* (C, T) */
        const float *att_n = att + (size_t)n * TT;   /* (T, T) */
        float *dq = dqkv + (size_t)n * 3 * CT;       /* (C, T) */
        float *dk = dq + CT, *dv = dq + 2 * CT;      /* (C, T) */
        float *d = work + (size_t)n * TT;            /* (T, T) datt, then dS */
        /* datt = dout^T v: (T, C) @ (C, T) */
        ddpm_gemm_prec(prec, true, false, T, T, C, 1.0f, dout_n, T, v, T, 0.0f, d, T);
        /* dv += dout att: (C, T) @ (T, T) */
        ddpm_gemm_prec(prec, false, false, C, T, T, 1.0f, dout_n, T, att_n, T, 1.0f, dv, T);
        for (int i = 0; i < T; i++) softmax_row_backward(d + (size_t)i * T, att_n + (size_t)i * T, T);
        /* dq += scale * k dS^T: (C, T) @ (T, T)^T */
        ddpm_gemm_prec(prec, false, true, C, T, T, scale, k, T, d, T, 1.0f, dq, T);
        /* dk += scale * q dS: (C, T) @ (T, T) */
        ddpm_gemm_prec(prec, false, false, C, T, T, scale, q, T, d, T, 1.0f, dk, T);
    }
}

