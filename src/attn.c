/* attn.c: single-head spatial self-attention core. See attn.h.
 *
 * Per image n, with q, k, v the (C, T) slices of qkv and s = 1/sqrt(C):
 *   S   = s * q^T k                    (T, T)
 *   att = softmax over each row of S   (T, T)
 *   out = v att^T                      (C, T)
 * All products go through ddpm_gemm, one call per image; the row-wise
 * softmax (and its backward) runs over all N*T rows at once in one OpenMP
 * loop, each row computed by one thread in a fixed order, so results do not
 * depend on the thread count.
 */
#include "ddpm/attn.h"

#include <math.h>

#include "ddpm/tensor.h"

size_t ddpm_attention_workspace(int N, int C, int T) {
    (void)C;
    return (size_t)N * (size_t)T * (size_t)T; /* datt / dS (N, T, T) */
}

void ddpm_attention_forward(float *out, float *att, const float *qkv, int N, int C, int T) {
    /* out (N, C, T); att (N, T, T); qkv (N, 3C, T) */
    const float scale = 1.0f / sqrtf((float)C);
    const size_t CT = (size_t)C * T, TT = (size_t)T * T;

    /* att_n = S = scale * q^T k: (T, C) @ (C, T) */
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * CT; /* (C, T) */
        const float *k = q + CT;                   /* (C, T) */
        ddpm_gemm(true, false, T, T, C, scale, q, T, k, T, 0.0f, att + (size_t)n * TT, T);
    }

    /* numerically stable softmax of every row (N*T rows of length T), in place */
    const size_t rows = (size_t)N * T;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        float *a = att + r * T; /* (T,) */
        float maxv = a[0];
        for (int j = 1; j < T; j++) maxv = a[j] > maxv ? a[j] : maxv;
        float sum = 0.0f;
        for (int j = 0; j < T; j++) {
            a[j] = expf(a[j] - maxv);
            sum += a[j];
        }
        const float inv = 1.0f / sum; /* sum >= 1: the max element gives exp(0) */
        for (int j = 0; j < T; j++) a[j] *= inv;
    }

    /* out_n = v att_n^T: (C, T) @ (T, T)^T */
    for (int n = 0; n < N; n++) {
        const float *v = qkv + (size_t)n * 3 * CT + 2 * CT; /* (C, T) */
        ddpm_gemm(false, true, C, T, T, 1.0f, v, T, att + (size_t)n * TT, T, 0.0f,
                  out + (size_t)n * CT, T);
    }
}

void ddpm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                             int N, int C, int T, float *work) {
    /* dqkv (N, 3C, T) accumulated; dout (N, C, T); qkv (N, 3C, T); att (N, T, T);
     * work (N, T, T): datt, turned into dS in place */
    const float scale = 1.0f / sqrtf((float)C);
    const size_t CT = (size_t)C * T, TT = (size_t)T * T;

    for (int n = 0; n < N; n++) {
        const float *v = qkv + (size_t)n * 3 * CT + 2 * CT; /* (C, T) */
        const float *dout_n = dout + (size_t)n * CT;        /* (C, T) */
        const float *att_n = att + (size_t)n * TT;          /* (T, T) */
        float *dv = dqkv + (size_t)n * 3 * CT + 2 * CT;     /* (C, T) */
        /* datt = dout^T v: (T, C) @ (C, T) */
        ddpm_gemm(true, false, T, T, C, 1.0f, dout_n, T, v, T, 0.0f, work + (size_t)n * TT, T);
        /* dv += dout att: (C, T) @ (T, T) */
        ddpm_gemm(false, false, C, T, T, 1.0f, dout_n, T, att_n, T, 1.0f, dv, T);
    }

    /* softmax backward per row: dS_ij = att_ij * (datt_ij - sum_j' datt_ij' att_ij') */
    const size_t rows = (size_t)N * T;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *a = att + r * T; /* (T,) */
        float *d = work + r * T;      /* (T,) datt in, dS out */
        float dot = 0.0f;
        for (int j = 0; j < T; j++) dot += d[j] * a[j];
        for (int j = 0; j < T; j++) d[j] = a[j] * (d[j] - dot);
    }

    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * CT; /* (C, T) */
        const float *k = q + CT;                   /* (C, T) */
        const float *dS = work + (size_t)n * TT;   /* (T, T) */
        float *dq = dqkv + (size_t)n * 3 * CT;     /* (C, T) */
        float *dk = dq + CT;                       /* (C, T) */
        /* dq += scale * k dS^T: (C, T) @ (T, T)^T */
        ddpm_gemm(false, true, C, T, T, scale, k, T, dS, T, 1.0f, dq, T);
        /* dk += scale * q dS: (C, T) @ (T, T) */
        ddpm_gemm(false, false, C, T, T, scale, q, T, dS, T, 1.0f, dk, T);
    }
}

/* Scaled score S[n,i,j] in double. */
static double naive_score(const float *q, const float *k, int C, int T, int i, int j) {
    double s = 0.0;
    for (int c = 0; c < C; c++) s += (double)q[(size_t)c * T + i] * (double)k[(size_t)c * T + j];
    return s / sqrt((double)C);
}

void ddpm_attention_forward_naive(float *out, const float *qkv, int N, int C, int T) {
    /* out (N, C, T); qkv (N, 3C, T). Recomputes the scores instead of storing
     * them (no scratch), O(N T^2 C^2): for tests on small shapes only. */
    const size_t CT = (size_t)C * T;
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * 3 * CT, *k = q + CT, *v = q + 2 * CT;
        for (int i = 0; i < T; i++) {
            double maxv = -INFINITY;
            for (int j = 0; j < T; j++) {
                double s = naive_score(q, k, C, T, i, j);
                if (s > maxv) maxv = s;
            }
            double z = 0.0;
            for (int j = 0; j < T; j++) z += exp(naive_score(q, k, C, T, i, j) - maxv);
            for (int c = 0; c < C; c++) {
                double acc = 0.0;
                for (int j = 0; j < T; j++)
                    acc += (double)v[(size_t)c * T + j] * exp(naive_score(q, k, C, T, i, j) - maxv);
                out[(size_t)n * CT + (size_t)c * T + i] = (float)(acc / z);
            }
        }
    }
}
