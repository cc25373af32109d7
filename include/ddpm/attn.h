/* attn.h: single-head spatial self-attention core.
 *
 * Shape letters: N batch, C channels, T = H*W positions.
 * Given qkv (N, 3C, T) (channels [0,C) are q, [C,2C) k, [2C,3C) v, as the one
 * 1x1 conv of docs/design.md §4 produces them):
 *   w[n,i,j] = softmax_j( sum_c q[n,c,i] k[n,c,j] / sqrt(C) )
 *   h[n,c,i] = sum_j w[n,i,j] v[n,c,j]
 * The GroupNorm, the qkv conv and the output projection are separate layers.
 */
#ifndef DDPM_ATTN_H
#define DDPM_ATTN_H

#include <stddef.h>

#include "ddpm/common.h"

/* Floats of scratch `work` needed by backward: N*T*T (datt / dS). */
size_t ddpm_attention_workspace(int N, int C, int T);

/* out (N, C, T); att (N, T, T) softmax weights saved for backward (row
 * att[n,i,:] sums to 1); qkv (N, 3C, T). Overwrites out and att. */
void ddpm_attention_forward(float *out, float *att, const float *qkv, int N, int C, int T);

/* Accumulates into dqkv (N, 3C, T). dout (N, C, T); qkv and att as given to
 * and produced by the forward; work holds ddpm_attention_workspace(N, C, T)
 * floats of scratch (contents on entry are ignored, clobbered on exit). */
void ddpm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                             int N, int C, int T, float *work);

/* The same with the products' precision chosen (the two above are FP32):
 * BF16 rounds both operands of each product (q^T k, v att^T; in backward
 * dout^T v, dout att, k dS^T, q dS) to bf16 and sums in float; the softmax,
 * its backward and the 1/sqrt(C) scaling stay float. */
void ddpm_attention_forward_prec(ddpm_precision prec, float *out, float *att, const float *qkv,
                                 int N, int C, int T);
void ddpm_attention_backward_prec(ddpm_precision prec, float *dqkv, const float *dout,
                                  const float *qkv, const float *att, int N, int C, int T,
                                  float *work);


#endif
