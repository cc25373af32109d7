/* conv.h: 2-D convolution, NCHW, square kernel: im2col + sgemm per image,
 * or Winograd for 3x3 stride-1 pad-1 convs (see winograd.h): F(2x2, 3x3)
 * backward, and F(4x4, 3x3) or F(2x2, 3x3) forward depending on the shape.
 *
 * Shape letters: N batch, C input channels, H W input size, F output
 * channels ("filters"), K kernel size, S stride, P zero padding,
 * HO = (H + 2P - K)/S + 1, WO likewise.
 */
#ifndef DDPM_CONV_H
#define DDPM_CONV_H

#include <stddef.h>

#include "ddpm/common.h"

/* Algorithm. AUTO (0, what a designated initializer leaves) picks the faster
 * one for the shape; the others force it (for tests and benchmarks). WINOGRAD
 * and WINOGRAD4 apply to K 3, S 1, P 1 only: elsewhere they mean IM2COL. The
 * choice depends on the shape and algo only (never on N), so a training
 * forward and an inference forward of one conv give the same bits. */
typedef enum {
    DDPM_CONV_AUTO = 0,
    DDPM_CONV_IM2COL,
    DDPM_CONV_WINOGRAD,  /* F(2x2, 3x3) forward and backward */
    DDPM_CONV_WINOGRAD4, /* F(4x4, 3x3) forward, F(2x2, 3x3) backward */
} ddpm_conv2d_algo;

typedef struct {
    int N, C, H, W;        /* input  (N, C, H, W) */
    int F;                 /* output channels */
    int K, S, P;           /* kernel size, stride, padding */
    ddpm_conv2d_algo algo; /* usually left 0 (AUTO) */
    ddpm_precision prec;   /* products in FP32 (0) or BF16 (forward and backward) */
} ddpm_conv2d_desc;

static inline int ddpm_conv2d_out(int in, int K, int S, int P) { return (in + 2 * P - K) / S + 1; }

/* Floats of scratch memory `work` must hold for forward and backward. The
 * convs are spread over up to T = min(N, omp_get_num_procs()) threads (T = 1
 * for convs under 4 MFLOP), each with its own slice of `work`, not a multiple
 * of N: im2col takes about T * (C*K*K*HO*WO + F*C*K*K) floats (one image's
 * im2col matrix and a partial weight gradient per thread); Winograd the
 * larger of F(2x2)'s 16*C*F + T * (16*C*F + 128K + a few rows of C*W and F*W)
 * floats (a chunk of transformed tiles, its staged image rows and a partial
 * weight gradient per thread) and, where the forward takes F(4x4), of
 * 36*C*F + T * (256K + a few rows) (for the default UNet at most 1.2 MB
 * shared and 1.5 MB a thread). Which one a descriptor takes depends on its
 * shape and algo, never on N. Contract:
 *   - a buffer sized for a descriptor also serves the same descriptor with a
 *     smaller N (the size never decreases with N), and one buffer sized with
 *     the maximum over several descriptors serves all of them, one at a time;
 *   - the number of processors (omp_get_num_procs()) must not grow after
 *     sizing; the OpenMP thread count may change freely (it is capped at it).
 * A direct 1x1 stride-1 pad-0 conv needs no im2col: its workspace is only the
 * partial weight gradients (0 when T = 1), and work may be NULL, in which case
 * its backward runs the images one after another. */
size_t ddpm_conv2d_workspace(const ddpm_conv2d_desc *d);

/* out    (N, F, HO, WO)
 * in     (N, C, H, W)
 * weight (F, C, K, K)   PyTorch layout
 * bias   (F) or NULL
 * work   ddpm_conv2d_workspace(d) floats of scratch */
void ddpm_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                         const ddpm_conv2d_desc *d, float *work);

/* Accumulates (+=) into din (N, C, H, W), dweight (F, C, K, K), dbias (F).
 * din and dbias may be NULL (not needed). dout is (N, F, HO, WO).
 * Reproducibility: bit for bit for a given thread count. Across thread counts
 * results differ only by float rounding: dweight is summed from per-thread
 * partials in thread order, and a conv too small or with too few images to
 * split runs OpenBLAS-threaded GEMMs instead. dbias never depends on it. */
void ddpm_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, const ddpm_conv2d_desc *d,
                          float *work);


#endif
