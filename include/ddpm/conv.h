/* conv.h: 2-D convolution, NCHW, square kernel, im2col + sgemm.
 *
 * Shape letters: N batch, C input channels, H W input size, F output
 * channels ("filters"), K kernel size, S stride, P zero padding,
 * HO = (H + 2P - K)/S + 1, WO likewise.
 */
#ifndef DDPM_CONV_H
#define DDPM_CONV_H

#include <stddef.h>

typedef struct {
    int N, C, H, W; /* input  (N, C, H, W) */
    int F;          /* output channels */
    int K, S, P;    /* kernel size, stride, padding */
} ddpm_conv2d_desc;

static inline int ddpm_conv2d_out(int in, int K, int S, int P) { return (in + 2 * P - K) / S + 1; }

/* Floats of scratch memory `work` must hold for forward and backward:
 * C*K*K*N*HO*WO (im2col matrix) + F*N*HO*WO (GEMM result). 0 for a 1x1
 * stride-1 pad-0 conv, which runs one GEMM per image straight on the NCHW
 * tensors (work may then be NULL). */
size_t ddpm_conv2d_workspace(const ddpm_conv2d_desc *d);

/* out    (N, F, HO, WO)
 * in     (N, C, H, W)
 * weight (F, C, K, K)   PyTorch layout
 * bias   (F) or NULL
 * work   ddpm_conv2d_workspace(d) floats of scratch */
void ddpm_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                         const ddpm_conv2d_desc *d, float *work);

/* Accumulates (+=) into din (N, C, H, W), dweight (F, C, K, K), dbias (F).
 * din and dbias may be NULL (not needed). dout is (N, F, HO, WO). */
void ddpm_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, const ddpm_conv2d_desc *d,
                          float *work);

/* Direct seven-loop convolution with double accumulation: the test reference. */
void ddpm_conv2d_forward_naive(float *out, const float *in, const float *weight,
                               const float *bias, const ddpm_conv2d_desc *d);

#endif
