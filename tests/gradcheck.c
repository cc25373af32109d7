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

/* L at x[i] = orig + k*eps, restoring x[i]; *step receives the offset
 * actually representable in float. */
static double objective_at(gc_tensor *T, size_t i, float orig, double k, double eps,
                           gc_forward_fn forward, void *ctx, const float *out, size_t nout,
                           const float *proj, double *step) {
    T->x[i] = orig + (float)(k * eps);
    *step = (double)T->x[i] - (double)orig;
    double L = objective(forward, ctx, out, nout, proj);
    T->x[i] = orig;
    return L;
}

double gc_check(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                double eps, double tol, size_t max_elems) {
    return gc_check_order(layer, forward, ctx, out, nout, proj, tensors, ntensors, eps, tol,
                          max_elems, 2);
}

double gc_check_order(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                      size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                      double eps, double tol, size_t max_elems, int order) {
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
            double hp, hm, num;
            double Lp = objective_at(T, i, orig, 1, eps, forward, ctx, out, nout, proj, &hp);
            double Lm = objective_at(T, i, orig, -1, eps, forward, ctx, out, nout, proj, &hm);
            if (order == 4) {
                double hp2, hm2;
                double Lp2 = objective_at(T, i, orig, 2, eps, forward, ctx, out, nout, proj, &hp2);
                double Lm2 = objective_at(T, i, orig, -2, eps, forward, ctx, out, nout, proj, &hm2);
                num = (-Lp2 + 8 * Lp - 8 * Lm + Lm2) / (12 * eps);
            } else {
                /* divide by the step actually taken in float */
                num = (Lp - Lm) / (hp - hm);
            }
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
