/* gradcheck.h: finite-difference gradient checking for the layer tests.
 *
 * The scalar under test is L = sum_i out[i] * proj[i] for a fixed random
 * projection `proj`, accumulated in double. The caller runs the layer's
 * backward with dout = proj to get the analytic gradients, then calls
 * gc_check, which perturbs every checked element of every tensor by +-eps,
 * re-runs the forward and forms the central difference
 *     g_num = (L(x + eps) - L(x - eps)) / (2 eps).
 *
 * Which elements: all of them when n <= max_elems, else every stride-th one
 * (stride = ceil(n / max_elems)) from a start offset in [0, stride) that a
 * hash of the layer and tensor names picks, so different tensors and shapes
 * check different residues.
 *
 * Tests, per tensor, over the checked elements only (g_a analytic, g_n
 * numeric, D = max over the checked elements of max(|g_a|, |g_n|)):
 *   - every analytic element (all n, checked or not) and every numeric one
 *     is finite;
 *   - neither the analytic nor the numeric gradient is all zero (a dead
 *     backward pass, or a tensor the forward does not read);
 *   - the max-norm relative error  max |g_a - g_n| / D <= tol: scale-free,
 *     and quiet on elements whose true gradient is ~0, where float32 finite
 *     differences are pure rounding noise;
 *   - elementwise  |g_a - g_n| <= tol |g_n| + atol  with atol = a * tol * D
 *     (a = GC_ATOL = 0.1 unless gc_check_opts says otherwise): small
 *     entries must be right too, to 1e-4 of the largest one, where the
 *     max-norm error would let an entry below tol * D be anything.
 * The step eps must make the rounding noise of the forward (~ 1e-7 |L| /
 * eps) small against a * tol * D; layers that are linear in the checked
 * tensor (conv, linear) have no truncation error and take a larger step.
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

/* Checks at most max_elems elements per tensor. Prints one line per tensor:
 *     gradcheck conv2d k3s2p1 weight: max_rel_err=1.2e-05 elem=0.31 (checked 216 of 216 from 0, ...)
 * where elem is the worst |g_a - g_n| / (tol |g_n| + atol) (<= 1 passes).
 * Fails the running cmocka test on a violation (see the tests above).
 * Returns the largest max-norm relative error. */
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

/* All the knobs: eps, tol, atol (the a above), max_elems and order. */
typedef struct {
    double eps, tol, atol;
    size_t max_elems;
    int order;
} gc_opts;

double gc_check_opts(const char *layer, gc_forward_fn forward, void *ctx, const float *out,
                     size_t nout, const float *proj, gc_tensor *tensors, int ntensors,
                     const gc_opts *o);

/* One tensor's checks without failing the test: returns 0 if they pass, else
 * -1 with a one-line reason in r->msg. gc_compare is the verdict alone, on
 * numeric derivatives num[m] of the elements idx[m] of grad[n] (for testing
 * the checker itself). */
typedef struct {
    double err;          /* max-norm relative error */
    double elem;         /* worst |g_a - g_n| / (tol |g_n| + atol), <= 1 passes */
    double max_abs;      /* max |g_a| over the checked elements */
    size_t checked, first, worst, worst_elem;
    char msg[256];
} gc_result;

int gc_check_tensor(const char *layer, gc_tensor *T, gc_forward_fn forward, void *ctx,
                    const float *out, size_t nout, const float *proj, const gc_opts *o,
                    gc_result *r);
int gc_compare(const float *grad, size_t n, const size_t *idx, const double *num, size_t m,
               double tol, double atol_frac, gc_result *r);

/* Convenience for tests. */
void gc_fill_uniform(ddpm_rng *rng, float *x, size_t n, float lo, float hi);
void gc_fill_normal(ddpm_rng *rng, float *x, size_t n);
float *gc_alloc(size_t n);  /* zeroed, aborts the test on failure */
double gc_max_abs_diff(const float *a, const float *b, size_t n);
double gc_max_abs(const float *a, size_t n);

#define GC_EPS 1e-3
#define GC_TOL 1e-3
#define GC_MAX_ELEMS 400
#define GC_ATOL 0.1

#endif
