/* winograd.h: 3x3 stride-1 pad-1 convolution by Winograd F(2x2, 3x3)
 * (Lavin & Gray 2015), forward and backward, and F(4x4, 3x3), forward only:
 * the fast paths behind ddpm_conv2d_forward/backward.
 *
 * Callers outside conv.c use the conv API (conv.h), which picks this path by
 * itself; these functions are for conv.c. Shapes as in conv.h: in (N, C, H, W),
 * weight (F, C, 3, 3), out (N, F, H, W). Any H, W >= 1 works.
 */
#ifndef DDPM_WINOGRAD_H
#define DDPM_WINOGRAD_H

#include <stddef.h>

#include "ddpm/conv.h"

/* True when d is a conv this path computes: K = 3, S = 1, P = 1. */
int ddpm_winograd_applies(const ddpm_conv2d_desc *d);

/* Floats of scratch for the forward with output tiles of m x m (m = 2:
 * F(2x2, 3x3), m = 4: F(4x4, 3x3)) and for the backward (always F(2x2)), with
 * up to T threads. Never decreases with d->N or T. */
size_t ddpm_winograd_workspace(const ddpm_conv2d_desc *d, int m, int T);

/* out (N, F, H, W) = conv(in) + bias by F(m x m, 3x3), m = 2 or 4 (anything
 * else means 2), with up to T threads (T = 1: no parallel region). bias may be
 * NULL. work: ddpm_winograd_workspace(d, m, T). */
void ddpm_winograd_forward(float *out, const float *in, const float *weight, const float *bias,
                           const ddpm_conv2d_desc *d, int m, int T, float *work);

/* Accumulates (+=) into dweight (F, C, 3, 3) and, unless NULL, din (N, C, H, W),
 * by F(2x2, 3x3) whichever forward ran. dout (N, F, H, W). The bias gradient
 * is left to the caller. work: ddpm_winograd_workspace(d, m, T), any m. */
void ddpm_winograd_backward(float *din, float *dweight, const float *dout, const float *in,
                            const float *weight, const ddpm_conv2d_desc *d, int T, float *work);

#endif
