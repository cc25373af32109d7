/* gradcheck.c: see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"

static double objective(gc_forward_fn forward, void *ctx, const float *out, size_t nout,
                        const float *proj) {
    forward(ctx);
    double L = 0.0;
    for (size_t i = 0; i < nout; i++) L += (double)out[i] * (double)proj[i];
    return L;
}

double gc_check(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                double eps, double tol, size_t max_elems) {
    double worst = 0.0;
    for (int t = 0; t < ntensors; t++) {
        gc_tensor *T = &tensors[t];
        size_t stride = T->n <= max_elems ? 1 : (T->n + max_elems - 1) / max_elems;
        double max_ana = 0.0, max_num = 0.0, max_diff = 0.0;
        size_t checked = 0, worst_i = 0;
        for (size_t i = 0; i < T->n; i++) {
            double a = fabs((double)T->grad[i]);
            if (a > max_ana) max_ana = a;
        }
        for (size_t i = 0; i < T->n; i += stride) {
            float orig = T->x[i];
            T->x[i] = orig + (float)eps;
            double hi_x = (double)T->x[i];
            double Lp = objective(forward, ctx, out, nout, proj);
            T->x[i] = orig - (float)eps;
            double lo_x = (double)T->x[i];
            double Lm = objective(forward, ctx, out, nout, proj);
            T->x[i] = orig;
            /* divide by the step actually taken in float */
            double num = (Lp - Lm) / (hi_x - lo_x);
            double diff = fabs(num - (double)T->grad[i]);
            if (fabs(num) > max_num) max_num = fabs(num);
            if (diff > max_diff) {
                max_diff = diff;
                worst_i = i;
            }
            checked++;
        }
        forward(ctx); /* leave the outputs consistent with the unperturbed inputs */
        double denom = max_ana > max_num ? max_ana : max_num;
        double err = denom > 0.0 ? max_diff / denom : INFINITY;
        printf("gradcheck %s %s: max_rel_err=%.3g (checked %zu of %zu, max|g|=%.3g)\n", layer,
               T->name, err, checked, T->n, max_ana);
        fflush(stdout);
        if (max_ana == 0.0) fail_msg("%s %s: analytic gradient is all zero", layer, T->name);
        if (max_num == 0.0) fail_msg("%s %s: numeric gradient is all zero", layer, T->name);
        if (!(err <= tol))
            fail_msg("%s %s: max_rel_err %.3g > %.3g (worst element %zu: analytic %.6g)", layer,
                     T->name, err, tol, worst_i, (double)T->grad[worst_i]);
        if (err > worst) worst = err;
    }
    return worst;
}

void gc_fill_uniform(ddpm_rng *rng, float *x, size_t n, float lo, float hi) {
    ddpm_rng_fill_uniform(rng, x, n, lo, hi);
}

void gc_fill_normal(ddpm_rng *rng, float *x, size_t n) { ddpm_rng_fill_normal(rng, x, n); }

float *gc_alloc(size_t n) {
    float *p = ddpm_calloc(n ? n : 1, sizeof(float));
    if (!p) fail_msg("allocation of %zu floats failed", n);
    return p;
}

double gc_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY; /* a NaN is always a failure */
        if (d > m) m = d;
    }
    return m;
}

double gc_max_abs(const float *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    return m;
}
