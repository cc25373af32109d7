/* linear.h: fully connected layer, y = x W^T + b (PyTorch nn.Linear).
 * Shape letters: N rows (batch), I in features, O out features. */
#ifndef DDPM_LINEAR_H
#define DDPM_LINEAR_H

#include "ddpm/common.h"

/* out (N, O); in (N, I); weight (O, I); bias (O) or NULL. */
void ddpm_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                         int N, int I, int O);

/* Accumulates into din (N, I) (may be NULL), dweight (O, I), dbias (O) (may be NULL). */
void ddpm_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, int N, int I, int O);

/* The same with the products' precision chosen (the two above are FP32):
 * BF16 rounds both operands of each of the three products to bf16 and sums
 * in float; the bias and its gradient stay float. */
void ddpm_linear_forward_prec(ddpm_precision prec, float *out, const float *in,
                              const float *weight, const float *bias, int N, int I, int O);
void ddpm_linear_backward_prec(ddpm_precision prec, float *din, float *dweight, float *dbias,
                               const float *dout, const float *in, const float *weight, int N,
                               int I, int O);

#endif
