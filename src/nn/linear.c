/* linear.c: fully connected layer, y = x W^T + b (PyTorch nn.Linear layout).
 * Shape letters: N rows (batch), I in features, O out features. See linear.h. */
#include "ddpm/linear.h"

#include <stdbool.h>
#include <stddef.h>

#include "ddpm/tensor.h"
#include "nn/gemm_tile.h"

/* out (N, O); in (N, I); weight (O, I); bias (O) or NULL. */
void ddpm_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                         int N, int I, int O) {
    ddpm_linear_forward_prec(DDPM_PREC_FP32, out, in, weight, bias, N, I, O);
}

void ddpm_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, int N, int I, int O) {
    ddpm_linear_backward_prec(DDPM_PREC_FP32, din, dweight, dbias, dout, in, weight, N, I, O);
}

void ddpm_linear_forward_prec(ddpm_precision prec, float *out, const float *in,
                              const float *weight, const float *bias, int N, int I, int O) {
    if (N <= 0 || O <= 0) return;
    if (I <= 0) { /* empty product: out = bias or 0 (cblas rejects lda = 0) */
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) out[(size_t)n * O + o] = bias ? bias[o] : 0.0f;
        return;
    }
    if (bias) {
        /* out = bias broadcast over rows, then out += in W^T */
        for (int n = 0; n < N; n++) {
            float *out_n = out + (size_t)n * O;
            for (int o = 0; o < O; o++) out_n[o] = bias[o];
        }
    }
    ddpm_gemm_prec(prec, false, true, N, O, I, 1.0f, in, I, weight, I, bias ? 1.0f : 0.0f, out, O);
}

/* dout (N, O); in (N, I); weight (O, I).
 * din (N, I) += dout W;  dweight (O, I) += dout^T in;  dbias (O) += sum_n dout[n]. */
void ddpm_linear_backward_prec(ddpm_precision prec, float *din, float *dweight, float *dbias,
                               const float *dout, const float *in, const float *weight, int N,
                               int I, int O) {
    if (N <= 0 || O <= 0) return;
    if (din && I > 0) ddpm_gemm_prec(prec, false, false, N, I, O, 1.0f, dout, O, weight, I, 1.0f, din, I);
    if (dweight && I > 0) ddpm_gemm_prec(prec, true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dweight, I);
    if (dbias) {
        /* rows in order: each dbias[o] is summed in a fixed order */
        for (int n = 0; n < N; n++) {
            const float *dout_n = dout + (size_t)n * O;
            for (int o = 0; o < O; o++) dbias[o] += dout_n[o];
        }
    }
}
