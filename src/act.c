/* act.c: SiLU, ReLU and inverted dropout, elementwise over n floats. */
#include "ddpm/act.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this many elements a loop runs on one thread. */
#define ACT_PAR_MIN ((size_t)1 << 14)

/* exp(z) for z <= 0, branch-free so the loops below vectorise (libm's expf
 * does not without -ffast-math). Cody-Waite reduction z = k ln2 + r,
 * |r| <= ln2/2, and the Cephes expf polynomial (about 1 ulp). Below -87
 * (exp = 1.6e-38, where 2^k would leave the normal range) it returns 0, so
 * silu(x) = -0 for x < -87 (true value above -2e-36).
 * Measured over [-90, 90]: silu within 2 ulp of the double-precision value. */
static inline float exp_nonpos(float z) {
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

/* sigmoid without overflow: exp is only taken of -|x|. */
static inline float sigmoid_stable(float x) {
    float e = exp_nonpos(-fabsf(x)), d = 1.0f / (1.0f + e);
    return x >= 0.0f ? d : e * d;
}

void ddpm_silu_forward(float *out, const float *in, size_t n) {
    // out (n), in (n)
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = in[i] * sigmoid_stable(in[i]);
}

void ddpm_silu_backward(float *din, const float *dout, const float *in, size_t n) {
    // din (n), dout (n), in (n); d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = in[i], s = sigmoid_stable(x);
        din[i] += dout[i] * (s * (1.0f + x * (1.0f - s)));
    }
}

void ddpm_relu_forward(float *out, const float *in, size_t n) {
    // out (n), in (n)
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ddpm_relu_backward(float *din, const float *dout, const float *in, size_t n) {
    // din (n), dout (n), in (n)
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        if (in[i] > 0.0f) din[i] += dout[i];
}

void ddpm_dropout_mask(float *mask, size_t n, float p, ddpm_rng *rng) {
    // mask (n). Sequential: one ddpm_rng_uniform per element when 0 < p < 1.
    if (!(p > 0.0f)) { /* p <= 0 (or NaN): keep everything, draw nothing */
        for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    if (p >= 1.0f) { /* drop everything, draw nothing */
        for (size_t i = 0; i < n; i++) mask[i] = 0.0f;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    double pd = (double)p;
    for (size_t i = 0; i < n; i++) mask[i] = ddpm_rng_uniform(rng) < pd ? 0.0f : keep;
}

void ddpm_dropout_forward(float *out, const float *in, const float *mask, size_t n) {
    // out (n), in (n), mask (n)
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = in[i] * mask[i];
}

void ddpm_dropout_backward(float *din, const float *dout, const float *mask, size_t n) {
    // din (n), dout (n), mask (n)
#pragma omp parallel for schedule(static) if (n > ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * mask[i];
}
