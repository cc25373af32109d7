/* act.c: SiLU, ReLU and inverted dropout, elementwise over n floats. The
 * sigmoid (ddpm_sigmoid) is defined inline in act.h. */
#include "ddpm/act.h"

#include "core/util.h"


void ddpm_sigmoid_forward(float *out, const float *in, size_t n) {
    // out (n), in (n)
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) out[i] = ddpm_sigmoid(in[i]);
}

void ddpm_silu_forward(float *out, const float *in, size_t n) {
    // out (n), in (n)
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) out[i] = in[i] * ddpm_sigmoid(in[i]);
}

void ddpm_silu_backward(float *din, const float *dout, const float *in, size_t n) {
    // din (n), dout (n), in (n); d/dx x*s(x) = s(x) * (1 + x * (1 - s(x)))
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) {
        float x = in[i], s = ddpm_sigmoid(x);
        din[i] += dout[i] * (s * (1.0f + x * (1.0f - s)));
    }
}

void ddpm_relu_forward(float *out, const float *in, size_t n) {
    // out (n), in (n)
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ddpm_relu_backward(float *din, const float *dout, const float *in, size_t n) {
    // din (n), dout (n), in (n)
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
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
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) out[i] = in[i] * mask[i];
}

void ddpm_dropout_backward(float *din, const float *dout, const float *mask, size_t n) {
    // din (n), dout (n), mask (n)
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS_MATH)
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * mask[i];
}
