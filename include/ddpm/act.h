/* act.h: elementwise activations and dropout over n floats.
 * Backward functions accumulate (+=) into din. Every function is purely
 * elementwise, so out may be the same buffer as in (in place). Loops over
 * more than 2^14 elements run on OpenMP threads; results do not depend on
 * the thread count. */
#ifndef DDPM_ACT_H
#define DDPM_ACT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddpm/rng.h"

/* exp(z) for z <= 0, branch-free so loops that call it vectorise (libm's
 * expf does not without -ffast-math). Cody-Waite reduction z = k ln2 + r,
 * |r| <= ln2/2, and the Cephes expf polynomial (about 1 ulp). Below -87
 * (exp = 1.6e-38, where 2^k would leave the normal range) it returns 0, so
 * silu(x) = -0 for x < -87 (true value above -2e-36).
 * Measured over [-90, 90]: silu within 2 ulp of the double-precision value. */
static inline float ddpm_exp_nonpos(float z) {
    int keep = z > -87.0f;
    z = keep ? z : -87.0f; /* also maps NaN to -87, so the int cast is defined */
    /* kf = round(z / ln2) in [-126, 0]; adding and subtracting 1.5 * 2^23
     * rounds to nearest (and vectorises, unlike floorf under if-conversion) */
    float kf = (z * 1.44269504088896341f + 0x1.8p23f) - 0x1.8p23f;
    float r = z - kf * 0.693359375f;                     /* ln2 split in a part exact */
    r = r - kf * -2.12194440e-4f;                        /* in float and the rest */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)kf + 127) << 23; /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return keep ? p * scale : 0.0f;
}

/* sigmoid(x) = 1 / (1 + exp(-x)) without overflow: exp is only taken of
 * -|x|. Every SiLU in the library (here and the fused GroupNorm + SiLU of
 * norm.h) goes through this one definition, so they agree bit for bit. */
static inline float ddpm_sigmoid(float x) {
    float e = ddpm_exp_nonpos(-fabsf(x)), d = 1.0f / (1.0f + e);
    return x >= 0.0f ? d : e * d;
}

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
