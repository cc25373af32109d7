/* gradcheck.h: finite-difference gradient checking for the layer tests.
 *
 * The scalar under test is L = sum_i out[i] * proj[i] for a fixed random
 * projection `proj`, accumulated in double. The caller runs the layer's
 * backward with dout = proj to get the analytic gradients, then calls
 * gc_check, which perturbs every checked element of every tensor by +-eps,
 * re-runs the forward and forms the central difference
 *     g_num = (L(x + eps) - L(x - eps)) / (2 eps).
 *
 * Error metric (per tensor), the "max-norm relative error":
 *     err = max_i |g_ana[i] - g_num[i]| / max( max_i |g_ana[i]|, max_i |g_num[i]| )
 * It is scale-free like the elementwise relative error but does not blow up
 * on elements whose true gradient is ~0 (where float32 finite differences
 * are pure rounding noise). The check fails if err > tol, or if either the
 * analytic or the numeric gradient is all zero (a dead backward pass).
 */
#ifndef DDPM_TEST_GRADCHECK_H
#define DDPM_TEST_GRADCHECK_H

#include <stddef.h>

#include "ddpm/rng.h"

typedef struct {
    const char *name;  /* "input", "weight", ... */
    float *x;          /* the tensor the forward reads; perturbed in place and restored */
    const float *grad; /* analytic dL/dx from the layer's backward with dout = proj */
    size_t n;
} gc_tensor;

typedef void (*gc_forward_fn)(void *ctx);

/* Checks at most max_elems elements per tensor (all of them when n <= max_elems,
 * else an evenly strided subset). Prints one line per tensor:
 *     gradcheck conv2d k3s2p1 weight: max_rel_err=1.2e-05 (checked 216 of 216)
 * Fails the running cmocka test on a violation. Returns the largest error. */
double gc_check(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                double eps, double tol, size_t max_elems);

/* The same with a choice of stencil: order 2 is the central difference above;
 * order 4 is the five-point stencil
 *     g = (-L(x+2h) + 8 L(x+h) - 8 L(x-h) + L(x-2h)) / (12 h),
 * whose truncation error is O(h^4), so a larger h can be used. That matters
 * through a whole float32 network, where rounding noise (~ 1e-7 |L| / h)
 * dominates the error of a small step. */
double gc_check_order(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                      size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                      double eps, double tol, size_t max_elems, int order);

/* Convenience for tests. */
void gc_fill_uniform(ddpm_rng *rng, float *x, size_t n, float lo, float hi);
void gc_fill_normal(ddpm_rng *rng, float *x, size_t n);
float *gc_alloc(size_t n);  /* zeroed, aborts the test on failure */
double gc_max_abs_diff(const float *a, const float *b, size_t n);
double gc_max_abs(const float *a, size_t n);

#define GC_EPS 1e-3
#define GC_TOL 1e-3
#define GC_MAX_ELEMS 400

#endif
