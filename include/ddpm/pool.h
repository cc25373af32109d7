/* pool.h: 2x2 max pooling with stride 2, NCHW (PyTorch nn.MaxPool2d(2)).
 * Shape letters: N batch, C channels, H W input size (both even),
 * HO = H/2, WO = W/2.
 *
 * The forward records, for every output element, which of its four inputs
 * won (the first maximum in row-major order within the window, as PyTorch);
 * backward routes the gradient to that input only. A NaN input wins its
 * window (the output is NaN). */
#ifndef DDPM_POOL_H
#define DDPM_POOL_H

#include <stdint.h>

/* out (N, C, HO, WO); argmax (N, C, HO, WO) the winning position 0..3
 * (dy * 2 + dx), may be NULL (inference); in (N, C, H, W). */
void ddpm_maxpool2_forward(float *out, uint8_t *argmax, const float *in, int N, int C, int H,
                           int W);

/* Accumulates (+=) into din (N, C, H, W); dout and argmax (N, C, HO, WO). */
void ddpm_maxpool2_backward(float *din, const float *dout, const uint8_t *argmax, int N, int C,
                            int H, int W);

#endif
