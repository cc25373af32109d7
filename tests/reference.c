/* reference.c: direct loops with double accumulation, the references the
 * tests compare the library's kernels against. Test-only: not in the library. */
#include "reference.h"

#include <math.h>
#include <stddef.h>

void ddpm_gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
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

void ddpm_conv2d_forward_naive(float *out, const float *in, const float *weight,
                               const float *bias, const ddpm_conv2d_desc *d) {
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F, K = d->K, S = d->S, P = d->P;
    const int HO = ddpm_conv2d_out(H, K, S, P), WO = ddpm_conv2d_out(W, K, S, P);
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++)
            for (int oh = 0; oh < HO; oh++)
                for (int ow = 0; ow < WO; ow++) {
                    double acc = bias ? (double)bias[f] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * S - P + ki, iw = ow * S - P + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)in[(((size_t)n * C + c) * H + ih) * W + iw] *
                                       (double)weight[(((size_t)f * C + c) * K + ki) * K + kj];
                            }
                    out[(((size_t)n * F + f) * HO + oh) * WO + ow] = (float)acc;
                }
}
