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

/* ddpm_exp_nonpos and ddpm_sigmoid are inline and branch-free so that every
 * loop calling them vectorises (libm's expf does not without -ffast-math).
 *
 * Bit-identical everywhere in one build: the polynomial and the reduction go
 * through DDPM_MADD, which is an explicit fmaf where the target has a fused
 * multiply-add (x86 -mfma, e.g. -march=native; aarch64) and a plain multiply
 * then add otherwise. Either way the compiler has no a * b + c left to
 * contract (or not) differently in a vector loop and its scalar remainder, so
 * the vector lanes, the scalar tail and the recompute before backward all give
 * the same bits, whatever -ffp-contract is. Builds with and without FMA differ
 * in the last bit of some results (both are within the bounds below). */
#ifdef FP_FAST_FMAF
#define DDPM_MADD(a, b, c) fmaf(a, b, c)
#else
#define DDPM_MADD(a, b, c) ((a) * (b) + (c))
#endif

/* exp(z) for z <= 0 (NaN gives 0). Reduction z = k ln2 + r, |r| <= ln2/2,
 * k = round(z / ln2), with ln2 split in two (Cody-Waite: the first part has 9
 * bits, so k * part is exact even without FMA); exp(r) by a degree-6 minimax
 * polynomial with 1 + r fixed (relative error 3.1e-9 = 0.05 ulp on
 * |r| <= ln2/2 + 2e-5); 2^k from its exponent bits. Returns 0 where
 * exp(z) < FLT_MIN (z < -87.3365402), so the result is never subnormal.
 * Max error over every float z in (-87.34, 0]: 0.89 ulp (1.18 without FMA). */
static inline float ddpm_exp_nonpos(float z) {
    int keep = z >= -87.3365402f; /* the least float with exp(z) >= FLT_MIN */
    z = keep ? z : 0.0f;          /* also maps NaN to 0, so the int cast is defined */
    /* kf = round(z / ln2) in [-126, 0]: adding and subtracting 1.5 * 2^23
     * rounds to nearest (and vectorises, unlike nearbyintf) */
    float kf = DDPM_MADD(z, 1.44269504088896341f, 0x1.8p23f) - 0x1.8p23f;
    float r = DDPM_MADD(kf, -0.693359375f, z); /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = DDPM_MADD(kf, 2.12194440e-4f, r);
    float p = 1.381460461e-3f;
    p = DDPM_MADD(p, r, 8.368713781e-3f);
    p = DDPM_MADD(p, r, 4.166838899e-2f);
    p = DDPM_MADD(p, r, 1.666652113e-1f);
    p = DDPM_MADD(p, r, 4.999999404e-1f);
    p = DDPM_MADD(p, r, 1.0f);
    p = DDPM_MADD(p, r, 1.0f);
    int32_t bits = ((int32_t)kf + 127) << 23; /* 2^k, k in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return keep ? p * scale : 0.0f;
}

/* sigmoid(x) = 1 / (1 + exp(-x)) without overflow: with e = exp(-|x|),
 * 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 (one rounded division).
 * Max error over every float x in [-100, 100] against double precision
 * (tests/test_act.c checks a sample including the worst points):
 *     sigmoid: 2.41 ulp for x < 0, 1.5 ulp for x >= 0 (where the true value
 *              is >= FLT_MIN, i.e. x >= -87.3365402; below it returns 0);
 *     silu = x * sigmoid(x): 3.23 ulp (3.29 without FMA) for x >= -87.3365402,
 *              -0 below (true value above -1.1e-36).
 * Exactly 0.5 at +-0, exactly 1 for x >= 16.7 and 0 below -87.3365402, so
 * silu(x) = x and its slope is 1 (and 0) exactly far out; never NaN or inf
 * for a finite input; sigmoid(NaN) = 0, silu(NaN) = NaN.
 * Every SiLU in the library (here and the fused GroupNorm + SiLU of norm.h)
 * goes through this one definition, so they agree bit for bit. */
static inline float ddpm_sigmoid(float x) {
    float e = ddpm_exp_nonpos(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* Sigmoid over n floats: out = ddpm_sigmoid(in) (the library's build of it,
 * vectorised). */
void ddpm_sigmoid_forward(float *out, const float *in, size_t n);

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
