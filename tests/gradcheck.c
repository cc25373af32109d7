/* gradcheck.c: see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

/* The numeric derivative of L in x[i] (order 2 or 4, see gradcheck.h). */
static double numeric_at(gc_tensor *T, size_t i, double eps, int order, gc_forward_fn forward,
                         void *ctx, const float *out, size_t nout, const float *proj) {
    float orig = T->x[i];
    double hp, hm;
    double Lp = objective_at(T, i, orig, 1, eps, forward, ctx, out, nout, proj, &hp);
    double Lm = objective_at(T, i, orig, -1, eps, forward, ctx, out, nout, proj, &hm);
    if (order != 4) return (Lp - Lm) / (hp - hm); /* the step actually taken in float */
    double hp2, hm2;
    double Lp2 = objective_at(T, i, orig, 2, eps, forward, ctx, out, nout, proj, &hp2);
    double Lm2 = objective_at(T, i, orig, -2, eps, forward, ctx, out, nout, proj, &hm2);
    return (-Lp2 + 8 * Lp - 8 * Lm + Lm2) / (12 * eps);
}

/* FNV-1a of the layer and tensor names: the start offset of a strided subset,
 * so different tensors and shapes check different residues. */
static size_t start_offset(const char *layer, const char *name, size_t stride) {
    uint64_t h = 1469598103934665603ull;
    for (const char *s = layer; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *s = name; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return stride > 1 ? (size_t)(h % stride) : 0;
}

double gc_check(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                double eps, double tol, size_t max_elems) {
    return gc_check_order(layer, forward, ctx, out, nout, proj, tensors, ntensors, eps, tol,
                          max_elems, 2);
}

/* The elements a check of n elements visits: first, first + stride, ... */
static size_t subset(const char *layer, const char *name, size_t n, size_t max_elems,
                     size_t *first, size_t *stride) {
    *stride = n <= max_elems ? 1 : (n + max_elems - 1) / max_elems;
    *first = start_offset(layer, name, *stride);
    return n > *first ? (n - *first + *stride - 1) / *stride : 0;
}

int gc_compare(const float *grad, size_t n, const size_t *idx, const double *num, size_t m,
               double tol, double atol_frac, gc_result *r) {
    memset(r, 0, sizeof *r);
    r->checked = m;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(grad[i])) {
            snprintf(r->msg, sizeof r->msg, "analytic gradient element %zu is %g", i, (double)grad[i]);
            return -1;
        }
    double max_ana = 0.0, max_num = 0.0;
    for (size_t k = 0; k < m; k++) {
        if (!isfinite(num[k])) {
            snprintf(r->msg, sizeof r->msg, "numeric gradient element %zu is %g", idx[k], num[k]);
            return -1;
        }
        if (fabs(num[k]) > max_num) max_num = fabs(num[k]);
        if (fabs((double)grad[idx[k]]) > max_ana) max_ana = fabs((double)grad[idx[k]]);
    }
    /* the denominator and both tests over the checked elements only */
    double denom = max_ana > max_num ? max_ana : max_num, atol = atol_frac * tol * denom;
    double max_diff = 0.0;
    for (size_t k = 0; k < m; k++) {
        double a = (double)grad[idx[k]], d = fabs(a - num[k]);
        double el = d / (tol * fabs(num[k]) + atol); /* <= 1 passes */
        if (d > max_diff) max_diff = d, r->worst = idx[k];
        if (el > r->elem) r->elem = el, r->worst_elem = idx[k];
    }
    r->max_abs = max_ana;
    r->err = denom > 0.0 ? max_diff / denom : INFINITY;
    if (max_ana == 0.0) snprintf(r->msg, sizeof r->msg, "analytic gradient is all zero");
    else if (max_num == 0.0) snprintf(r->msg, sizeof r->msg, "numeric gradient is all zero");
    else if (!(r->err <= tol))
        snprintf(r->msg, sizeof r->msg, "max_rel_err %.3g > %.3g (worst element %zu: analytic %.6g)",
                 r->err, tol, r->worst, (double)grad[r->worst]);
    else if (!(r->elem <= 1.0))
        snprintf(r->msg, sizeof r->msg,
                 "element %zu: |analytic - numeric| = %.3g x (tol |numeric| + atol) "
                 "(analytic %.6g, atol %.3g)", r->worst_elem, r->elem, (double)grad[r->worst_elem], atol);
    return r->msg[0] ? -1 : 0;
}

int gc_check_tensor(const char *layer, gc_tensor *T, gc_forward_fn forward, void *ctx,
                    const float *out, size_t nout, const float *proj, const gc_opts *o,
                    gc_result *r) {
    size_t first, stride, m = subset(layer, T->name, T->n, o->max_elems, &first, &stride);
    double *num = malloc((m ? m : 1) * sizeof *num);
    size_t *idx = malloc((m ? m : 1) * sizeof *idx);
    if (!num || !idx) fail_msg("gradcheck: out of memory");
    for (size_t k = 0; k < m; k++) {
        idx[k] = first + k * stride;
        num[k] = numeric_at(T, idx[k], o->eps, o->order, forward, ctx, out, nout, proj);
    }
    forward(ctx); /* leave the outputs consistent with the unperturbed inputs */
    int rc = gc_compare(T->grad, T->n, idx, num, m, o->tol, o->atol, r);
    r->first = first;
    free(num);
    free(idx);
    return rc;
}

double gc_check_order(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                      size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                      double eps, double tol, size_t max_elems, int order) {
    gc_opts o = {.eps = eps, .tol = tol, .atol = GC_ATOL, .max_elems = max_elems, .order = order};
    return gc_check_opts(layer, forward, ctx, out, nout, proj, tensors, ntensors, &o);
}

double gc_check_opts(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                     size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                     const gc_opts *o) {
    double worst = 0.0;
    for (int t = 0; t < ntensors; t++) {
        gc_tensor *T = &tensors[t];
        gc_result r;
        int rc = gc_check_tensor(layer, T, forward, ctx, out, nout, proj, o, &r);
        printf("gradcheck %s %s: max_rel_err=%.3g elem=%.3g (checked %zu of %zu from %zu, "
               "max|g|=%.3g)\n", layer, T->name, r.err, r.elem, r.checked, T->n, r.first, r.max_abs);
        fflush(stdout);
        if (rc) fail_msg("%s %s: %s", layer, T->name, r.msg);
        if (r.err > worst) worst = r.err;
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
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i])) return INFINITY;
        if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    }
    return m;
}
