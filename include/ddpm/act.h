/* act.h: elementwise activations and dropout over n floats.
 * Backward functions accumulate (+=) into din. Every function is purely
 * elementwise, so out may be the same buffer as in (in place). Loops over
 * more than 2^14 elements run on OpenMP threads; results do not depend on
 * the thread count. */
#ifndef DDPM_ACT_H
#define DDPM_ACT_H

#include <stddef.h>

#include "ddpm/rng.h"

/* SiLU (swish): y = x * sigmoid(x). */
void ddpm_silu_forward(float *out, const float *in, size_t n);
void ddpm_silu_backward(float *din, const float *dout, const float *in, size_t n);

/* ReLU: y = max(x, 0); the gradient at 0 is 0. */
void ddpm_relu_forward(float *out, const float *in, size_t n);
void ddpm_relu_backward(float *din, const float *dout, const float *in, size_t n);

/* Inverted dropout. ddpm_dropout_mask draws mask[i] = 0 with probability p,
 * else 1/(1-p) (p in [0, 1)). forward: out = in * mask; backward:
 * din += dout * mask.
 * The mask is drawn sequentially, mask[0] first, with exactly one
 * ddpm_rng_uniform per element (dropped when the draw is < p), so the same
 * rng state always gives the same mask and leaves the same state behind.
 * p <= 0 gives all ones and p >= 1 all zeros; neither consumes any draw. */
void ddpm_dropout_mask(float *mask, size_t n, float p, ddpm_rng *rng);
void ddpm_dropout_forward(float *out, const float *in, const float *mask, size_t n);
void ddpm_dropout_backward(float *din, const float *dout, const float *mask, size_t n);

#endif
