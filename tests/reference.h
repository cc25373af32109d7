/* reference.h: test-only reference kernels (direct loops, double
 * accumulation). The library's fast paths are checked against these. */
#ifndef DDPM_TEST_REFERENCE_H
#define DDPM_TEST_REFERENCE_H

#include <stdbool.h>

#include "ddpm/conv.h"

/* Row-major C[M,N] = alpha * op(A) @ op(B) + beta * C, as ddpm_gemm. */
void ddpm_gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc);

/* out (N, C, T) from qkv (N, 3C, T), as ddpm_attention_forward. Recomputes
 * the scores (no scratch), O(N T^2 C^2): small shapes only. */
void ddpm_attention_forward_naive(float *out, const float *qkv, int N, int C, int T);

/* Direct seven-loop convolution, as ddpm_conv2d_forward. */
void ddpm_conv2d_forward_naive(float *out, const float *in, const float *weight,
                               const float *bias, const ddpm_conv2d_desc *d);

#endif
