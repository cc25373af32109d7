/* test_norm.c: GroupNorm forward against a double-precision reference, output
 * statistics, gradient checks of input/gamma/beta, accumulation and
 * thread-count determinism; the fused GroupNorm + SiLU (+ dropout) against the
 * separate layers (bit for bit), its gradient checks and determinism, and its
 * variant reading a concatenation from the two parts (bit for bit). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "ddpm/act.h"
#include "ddpm/common.h"
#include "ddpm/norm.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

typedef struct {
    int N, C, HW, G;
} gn_shape;

/* y (N, C, HW) from the textbook definition, everything in double. */
static void gn_reference(double *y, const float *x, const float *gamma, const float *beta,
                         int N, int C, int HW, int G) {
    int cpg = C / G;
    size_t gsize = (size_t)cpg * HW;
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((size_t)n * G + g) * gsize;
            double m = 0.0, v = 0.0;
            for (size_t i = 0; i < gsize; i++) m += xg[i];
            m /= (double)gsize;
            for (size_t i = 0; i < gsize; i++) v += (xg[i] - m) * (xg[i] - m);
            v /= (double)gsize;
            for (int j = 0; j < cpg; j++) {
                int c = g * cpg + j;
                for (int i = 0; i < HW; i++) {
                    size_t k = ((size_t)n * C + c) * HW + i;
                    y[k] = (x[k] - m) / sqrt(v + 1e-5) * gamma[c] + beta[c];
                }
            }
        }
}

static void check_forward(gn_shape s, float offset, float scale, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    size_t n = (size_t)s.N * s.C * s.HW;
    float *x = gc_alloc(n), *y = gc_alloc(n), *gamma = gc_alloc(s.C), *beta = gc_alloc(s.C);
    float *mean = gc_alloc((size_t)s.N * s.G), *rstd = gc_alloc((size_t)s.N * s.G);
    double *ref = test_malloc(n * sizeof(double));
    gc_fill_normal(&rng, x, n);
    for (size_t i = 0; i < n; i++) x[i] = offset + scale * x[i];
    gc_fill_uniform(&rng, gamma, s.C, -2.0f, 2.0f);
    gc_fill_uniform(&rng, beta, s.C, -1.0f, 1.0f);
    ddpm_groupnorm_forward(y, mean, rstd, x, gamma, beta, s.N, s.C, s.HW, s.G);
    gn_reference(ref, x, gamma, beta, s.N, s.C, s.HW, s.G);
    double err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(y[i] - ref[i]);
        if (!(d <= err)) err = d; /* NaN-safe */
    }
    printf("groupnorm forward N=%d C=%d HW=%d G=%d offset=%g: max_abs_err=%.3g\n", s.N, s.C,
           s.HW, s.G, offset, err);
    /* A few float ulps of |y| ~ 10, plus the float rounding of the saved mean
     * (ulp(offset)), which y sees amplified by |gamma| * rstd ~ 2 / scale. */
    double tol = 1e-5 * (1.0 + fabs(offset) / scale);
    if (!(err <= tol))
        fail_msg("groupnorm forward N=%d C=%d HW=%d G=%d: max abs err %g", s.N, s.C, s.HW, s.G,
                 err);
    /* saved statistics match too */
    int cpg = s.C / s.G;
    for (int ng = 0; ng < s.N * s.G; ng++) {
        const float *xg = x + (size_t)ng * cpg * s.HW;
        double m = 0.0, v = 0.0;
        for (size_t i = 0; i < (size_t)cpg * s.HW; i++) m += xg[i];
        m /= (double)cpg * s.HW;
        for (size_t i = 0; i < (size_t)cpg * s.HW; i++) v += (xg[i] - m) * (xg[i] - m);
        v /= (double)cpg * s.HW;
        assert_true(fabs(mean[ng] - m) <= 1e-6 * (1.0 + fabs(m)));
        double r = 1.0 / sqrt(v + 1e-5);
        assert_true(fabs(rstd[ng] - r) <= 1e-6 * r);
    }
    test_free(ref);
    ddpm_free(x);
    ddpm_free(y);
    ddpm_free(gamma);
    ddpm_free(beta);
    ddpm_free(mean);
    ddpm_free(rstd);
}

static void test_forward_matches_reference(void **state) {
    (void)state;
    gn_shape shapes[] = {
        {2, 6, 5 * 7, 3}, /* odd spatial size, 2 channels per group */
        {3, 4, 1 * 9, 4}, /* G = C: instance norm */
        {2, 5, 11, 1},    /* G = 1: layer norm over (C, HW) */
        {1, 8, 1, 2},     /* HW = 1 */
        {3, 3, 1, 3},     /* one element per group: var 0, out = beta */
        {2, 32, 7 * 7, 8},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        check_forward(shapes[i], 0.0f, 1.0f, 100 + i);
        check_forward(shapes[i], 3.0f, 0.25f, 200 + i);
    }
    /* a large offset with a small spread: a one-pass E[x^2] - E[x]^2 in
     * float would lose every digit of the variance here */
    check_forward((gn_shape){2, 6, 35, 3}, 1000.0f, 0.5f, 7);
    /* |mean| / std = 3e6: E[x^2] - E[x]^2 even in double keeps only ~1e-2 of
     * the variance here; the one pass shifted by the group's first element
     * keeps it all (the saved rstd is checked to 1e-6) */
    check_forward((gn_shape){2, 6, 35, 3}, 30000.0f, 0.01f, 8);
    check_forward((gn_shape){1, 4, 4100, 1}, -30000.0f, 0.01f, 9); /* 16400 per group */
}

static void test_output_statistics(void **state) {
    (void)state;
    const int N = 3, C = 12, HW = 9 * 11, G = 4, cpg = C / G;
    size_t n = (size_t)N * C * HW;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 42);
    float *x = gc_alloc(n), *y = gc_alloc(n), *gamma = gc_alloc(C), *beta = gc_alloc(C);
    float *mean = gc_alloc(N * G), *rstd = gc_alloc(N * G);
    gc_fill_normal(&rng, x, n);
    for (size_t i = 0; i < n; i++) x[i] = 5.0f + 3.0f * x[i] + (float)(i % 7);
    for (int c = 0; c < C; c++) gamma[c] = 1.0f, beta[c] = 0.0f;
    ddpm_groupnorm_forward(y, mean, rstd, x, gamma, beta, N, C, HW, G);
    for (int ng = 0; ng < N * G; ng++) {
        const float *yg = y + (size_t)ng * cpg * HW;
        size_t gs = (size_t)cpg * HW;
        double m = 0.0, v = 0.0;
        for (size_t i = 0; i < gs; i++) m += yg[i];
        m /= (double)gs;
        for (size_t i = 0; i < gs; i++) v += (yg[i] - m) * (yg[i] - m);
        v /= (double)gs;
        if (!(fabs(m) < 1e-5 && fabs(v - 1.0) < 1e-4))
            fail_msg("group %d: output mean %g var %g, want 0 and 1", ng, m, v);
    }
    ddpm_free(x);
    ddpm_free(y);
    ddpm_free(gamma);
    ddpm_free(beta);
    ddpm_free(mean);
    ddpm_free(rstd);
}

/* ---- gradient check ------------------------------------------------------- */

typedef struct {
    gn_shape s;
    float *out, *mean, *rstd, *in, *gamma, *beta;
} gn_ctx;

static void gn_forward(void *p) {
    gn_ctx *c = p;
    ddpm_groupnorm_forward(c->out, c->mean, c->rstd, c->in, c->gamma, c->beta, c->s.N, c->s.C,
                           c->s.HW, c->s.G);
}

/* The step of the GroupNorm checks: the five-point stencil with 30 * GC_EPS.
 * The central difference at GC_EPS is too noisy for gradcheck's elementwise
 * test (forward rounding over 2 eps: max-norm error 6.2e-4, worst elementwise
 * ratio 3.95 on "N=2 C=6 HW=35 G=3" and 4.32 for the fused layer). With the
 * five-point stencil the worst ratio was 1.43 at h = 5e-3, 1.04 at 1e-2,
 * 0.74 at 2e-2 and 0.31 at 3e-2 (noise falls as 1/h; the O(h^4) truncation
 * stays below it). */
#define GN_GC_EPS (30 * GC_EPS)

static void check_grad(gn_shape s, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    size_t n = (size_t)s.N * s.C * s.HW;
    gn_ctx c = {s,
                gc_alloc(n),
                gc_alloc((size_t)s.N * s.G),
                gc_alloc((size_t)s.N * s.G),
                gc_alloc(n),
                gc_alloc(s.C),
                gc_alloc(s.C)};
    float *proj = gc_alloc(n), *din = gc_alloc(n), *dgamma = gc_alloc(s.C),
          *dbeta = gc_alloc(s.C);
    gc_fill_normal(&rng, c.in, n);
    for (size_t i = 0; i < n; i++) c.in[i] = 0.5f + 1.5f * c.in[i];
    gc_fill_uniform(&rng, c.gamma, s.C, -1.5f, 1.5f);
    gc_fill_uniform(&rng, c.beta, s.C, -1.0f, 1.0f);
    gc_fill_uniform(&rng, proj, n, -1.0f, 1.0f);

    gn_forward(&c);
    ddpm_groupnorm_backward(din, dgamma, dbeta, proj, c.in, c.mean, c.rstd, c.gamma, s.N, s.C,
                            s.HW, s.G);
    char name[96];
    snprintf(name, sizeof name, "groupnorm N=%d C=%d HW=%d G=%d", s.N, s.C, s.HW, s.G);
    gc_tensor t[] = {{"input", c.in, din, n},
                     {"gamma", c.gamma, dgamma, (size_t)s.C},
                     {"beta", c.beta, dbeta, (size_t)s.C}};
    gc_check_order(name, gn_forward, &c, c.out, n, proj, t, 3, GN_GC_EPS, GC_TOL, GC_MAX_ELEMS, 4);

    ddpm_free(c.out);
    ddpm_free(c.mean);
    ddpm_free(c.rstd);
    ddpm_free(c.in);
    ddpm_free(c.gamma);
    ddpm_free(c.beta);
    ddpm_free(proj);
    ddpm_free(din);
    ddpm_free(dgamma);
    ddpm_free(dbeta);
}

static void test_gradients(void **state) {
    (void)state;
    check_grad((gn_shape){2, 6, 5 * 7, 3}, 1);
    check_grad((gn_shape){3, 4, 3 * 3, 4}, 2);
    check_grad((gn_shape){2, 5, 7, 1}, 3);
    check_grad((gn_shape){1, 8, 3 * 5, 2}, 4);
}

/* ---- accumulation and determinism ------------------------------------------ */

typedef struct {
    float *y, *mean, *rstd, *din, *dgamma, *dbeta;
} gn_result;

static gn_result run_fwd_bwd(gn_shape s, const float *x, const float *gamma, const float *beta,
                             const float *dy, float init) {
    size_t n = (size_t)s.N * s.C * s.HW;
    gn_result r = {gc_alloc(n),  gc_alloc((size_t)s.N * s.G), gc_alloc((size_t)s.N * s.G),
                   gc_alloc(n),  gc_alloc(s.C),               gc_alloc(s.C)};
    for (size_t i = 0; i < n; i++) r.din[i] = init;
    for (int c = 0; c < s.C; c++) r.dgamma[c] = r.dbeta[c] = init;
    ddpm_groupnorm_forward(r.y, r.mean, r.rstd, x, gamma, beta, s.N, s.C, s.HW, s.G);
    ddpm_groupnorm_backward(r.din, r.dgamma, r.dbeta, dy, x, r.mean, r.rstd, gamma, s.N, s.C,
                            s.HW, s.G);
    return r;
}

static void free_result(gn_result r) {
    ddpm_free(r.y);
    ddpm_free(r.mean);
    ddpm_free(r.rstd);
    ddpm_free(r.din);
    ddpm_free(r.dgamma);
    ddpm_free(r.dbeta);
}

static void test_accumulates_and_thread_invariant(void **state) {
    (void)state;
    /* large enough to take the OpenMP path (> 1 << 14 elements) */
    gn_shape s = {3, 32, 15 * 15, 8};
    size_t n = (size_t)s.N * s.C * s.HW;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 9);
    float *x = gc_alloc(n), *dy = gc_alloc(n), *gamma = gc_alloc(s.C), *beta = gc_alloc(s.C);
    gc_fill_normal(&rng, x, n);
    gc_fill_normal(&rng, dy, n);
    gc_fill_uniform(&rng, gamma, s.C, -1.5f, 1.5f);
    gc_fill_uniform(&rng, beta, s.C, -1.0f, 1.0f);

    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    gn_result a = run_fwd_bwd(s, x, gamma, beta, dy, 0.0f);
    omp_set_num_threads(3);
    gn_result b = run_fwd_bwd(s, x, gamma, beta, dy, 0.0f);
    gn_result acc = run_fwd_bwd(s, x, gamma, beta, dy, 0.5f);
    omp_set_num_threads(saved);

    /* bit-for-bit the same for 1 and 3 threads */
    assert_memory_equal(a.y, b.y, n * sizeof(float));
    assert_memory_equal(a.mean, b.mean, (size_t)s.N * s.G * sizeof(float));
    assert_memory_equal(a.rstd, b.rstd, (size_t)s.N * s.G * sizeof(float));
    assert_memory_equal(a.din, b.din, n * sizeof(float));
    assert_memory_equal(a.dgamma, b.dgamma, s.C * sizeof(float));
    assert_memory_equal(a.dbeta, b.dbeta, s.C * sizeof(float));

    /* backward adds into the gradient buffers */
    for (size_t i = 0; i < n; i++) assert_true(acc.din[i] == 0.5f + a.din[i]);
    for (int c = 0; c < s.C; c++) {
        assert_true(acc.dgamma[c] == 0.5f + a.dgamma[c]);
        assert_true(acc.dbeta[c] == 0.5f + a.dbeta[c]);
    }
    assert_true(gc_max_abs(a.din, n) > 0.0);

    free_result(a);
    free_result(b);
    free_result(acc);
    ddpm_free(x);
    ddpm_free(dy);
    ddpm_free(gamma);
    ddpm_free(beta);
}

/* ddpm_groupnorm_apply rebuilds the forward output from the saved statistics
 * bit for bit (the UNet drops GroupNorm outputs and recomputes them). */
static void test_apply_matches_forward(void **state) {
    (void)state;
    int N = 3, C = 12, HW = 5 * 7, G = 4;
    size_t n = (size_t)N * C * HW;
    float *x = gc_alloc(n), *y = gc_alloc(n), *y2 = gc_alloc(n), *gamma = gc_alloc(C), *beta = gc_alloc(C);
    float mean[12], rstd[12];
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 21);
    gc_fill_normal(&rng, x, n);
    for (size_t i = 0; i < n; i++) x[i] = 3.0f * x[i] + 1.5f;
    gc_fill_uniform(&rng, gamma, C, 0.5f, 1.5f);
    gc_fill_uniform(&rng, beta, C, -0.5f, 0.5f);
    ddpm_groupnorm_forward(y, mean, rstd, x, gamma, beta, N, C, HW, G);
    ddpm_groupnorm_apply(y2, x, mean, rstd, gamma, beta, N, C, HW, G);
    assert_memory_equal(y, y2, n * sizeof(float));
    ddpm_free(x);
    ddpm_free(y);
    ddpm_free(y2);
    ddpm_free(gamma);
    ddpm_free(beta);
}

/* ---- fused GroupNorm + SiLU (+ dropout) -------------------------------------- */

/* Random x (N, C, HW) around 0.5 with spread 1.5, gamma in [-1.5, 1.5], beta
 * in [-1, 1], and a dropout mask with drop probability p (NULL when p = 0). */
typedef struct {
    gn_shape s;
    size_t n;
    float *x, *gamma, *beta, *mask;
} gs_data;

static gs_data gs_make(gn_shape s, float p, ddpm_rng *rng) {
    gs_data d = {s, (size_t)s.N * s.C * s.HW, NULL, NULL, NULL, NULL};
    d.x = gc_alloc(d.n);
    d.gamma = gc_alloc(s.C);
    d.beta = gc_alloc(s.C);
    gc_fill_normal(rng, d.x, d.n);
    for (size_t i = 0; i < d.n; i++) d.x[i] = 0.5f + 1.5f * d.x[i];
    gc_fill_uniform(rng, d.gamma, s.C, -1.5f, 1.5f);
    gc_fill_uniform(rng, d.beta, s.C, -1.0f, 1.0f);
    if (p > 0.0f) {
        d.mask = gc_alloc(d.n);
        ddpm_dropout_mask(d.mask, d.n, p, rng);
    }
    return d;
}

static void gs_free(gs_data d) {
    ddpm_free(d.x);
    ddpm_free(d.gamma);
    ddpm_free(d.beta);
    ddpm_free(d.mask);
}

typedef struct {
    gn_shape s;
    float *out, *mean, *rstd, *in, *gamma, *beta;
    const float *mask;
} gs_ctx;

static void gs_forward(void *p) {
    gs_ctx *c = p;
    ddpm_groupnorm_silu_forward(c->out, c->mean, c->rstd, c->in, c->gamma, c->beta, c->mask,
                                c->s.N, c->s.C, c->s.HW, c->s.G);
}

/* order 2 (central difference) or 4 (five-point stencil, see GN_GC_EPS);
 * the stencil with a larger step is needed where float rounding of the
 * forward (and of the saved mean) is too loud for the central difference. */
static void check_gs_grad(gn_shape s, float p, uint64_t seed, int order, double eps) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gs_data d = gs_make(s, p, &rng);
    size_t n = d.n, ng = (size_t)s.N * s.G;
    gs_ctx c = {s, gc_alloc(n), gc_alloc(ng), gc_alloc(ng), d.x, d.gamma, d.beta, d.mask};
    float *proj = gc_alloc(n), *din = gc_alloc(n), *dgamma = gc_alloc(s.C), *dbeta = gc_alloc(s.C);
    float *work = gc_alloc(ddpm_groupnorm_silu_workspace(s.N, s.C));
    gc_fill_uniform(&rng, proj, n, -1.0f, 1.0f);

    gs_forward(&c);
    ddpm_groupnorm_silu_backward(din, dgamma, dbeta, proj, d.x, c.mean, c.rstd, d.gamma, d.beta,
                                 d.mask, s.N, s.C, s.HW, s.G, work);
    char name[96];
    snprintf(name, sizeof name, "groupnorm_silu N=%d C=%d HW=%d G=%d dropout=%g", s.N, s.C, s.HW,
             s.G, (double)p);
    gc_tensor t[] = {{"input", d.x, din, n},
                     {"gamma", d.gamma, dgamma, (size_t)s.C},
                     {"beta", d.beta, dbeta, (size_t)s.C}};
    gc_check_order(name, gs_forward, &c, c.out, n, proj, t, 3, eps, GC_TOL, GC_MAX_ELEMS, order);

    gs_free(d);
    ddpm_free(c.out);
    ddpm_free(c.mean);
    ddpm_free(c.rstd);
    ddpm_free(proj);
    ddpm_free(din);
    ddpm_free(dgamma);
    ddpm_free(dbeta);
    ddpm_free(work);
}

static void test_fused_gradients(void **state) {
    (void)state;
    check_gs_grad((gn_shape){2, 6, 5 * 7, 3}, 0.0f, 11, 4, GN_GC_EPS);
    check_gs_grad((gn_shape){2, 6, 5 * 7, 3}, 0.3f, 12, 4, GN_GC_EPS);
    check_gs_grad((gn_shape){3, 4, 3 * 3, 4}, 0.0f, 13, 4, GN_GC_EPS); /* instance norm */
    check_gs_grad((gn_shape){2, 5, 7, 1}, 0.5f, 14, 4, GN_GC_EPS);     /* G = 1, odd C */
    check_gs_grad((gn_shape){1, 8, 3 * 5, 2}, 0.2f, 15, 4, GN_GC_EPS);
    /* rows of 261 > 256 floats: the backward forms dy in two tiles */
    check_gs_grad((gn_shape){2, 2, 261, 2}, 0.1f, 16, 4, GN_GC_EPS); /* ratio 1.55 at 1e-2 */
}

/* Results of the fused layer: forward, the apply recompute, backward. */
typedef struct {
    float *out, *again, *mean, *rstd, *din, *dgamma, *dbeta;
} gs_result;

static gs_result gs_run(const gs_data *d, const float *dy, float init) {
    gn_shape s = d->s;
    size_t n = d->n, ng = (size_t)s.N * s.G;
    gs_result r = {gc_alloc(n), gc_alloc(n), gc_alloc(ng), gc_alloc(ng),
                   gc_alloc(n), gc_alloc(s.C), gc_alloc(s.C)};
    float *work = gc_alloc(ddpm_groupnorm_silu_workspace(s.N, s.C));
    for (size_t i = 0; i < n; i++) r.din[i] = init;
    for (int c = 0; c < s.C; c++) r.dgamma[c] = r.dbeta[c] = init;
    ddpm_groupnorm_silu_forward(r.out, r.mean, r.rstd, d->x, d->gamma, d->beta, d->mask, s.N, s.C,
                                s.HW, s.G);
    ddpm_groupnorm_silu_apply(r.again, d->x, r.mean, r.rstd, d->gamma, d->beta, d->mask, s.N, s.C,
                              s.HW, s.G);
    ddpm_groupnorm_silu_backward(r.din, r.dgamma, r.dbeta, dy, d->x, r.mean, r.rstd, d->gamma,
                                 d->beta, d->mask, s.N, s.C, s.HW, s.G, work);
    ddpm_free(work);
    return r;
}

static void gs_result_free(gs_result r) {
    ddpm_free(r.out);
    ddpm_free(r.again);
    ddpm_free(r.mean);
    ddpm_free(r.rstd);
    ddpm_free(r.din);
    ddpm_free(r.dgamma);
    ddpm_free(r.dbeta);
}

/* The fused layer is bit for bit the chain GroupNorm -> SiLU -> dropout, forward
 * and backward (the backward chain through zeroed intermediate buffers), its
 * apply is bit for bit its forward, and its backward accumulates. */
static void check_fused_matches_chain(gn_shape s, float p, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gs_data d = gs_make(s, p, &rng);
    size_t n = d.n, ng = (size_t)s.N * s.G;
    float *dy = gc_alloc(n);
    gc_fill_normal(&rng, dy, n);
    gs_result f = gs_run(&d, dy, 0.25f);

    /* the chain of separate layers */
    float *y = gc_alloc(n), *a = gc_alloc(n), *mean = gc_alloc(ng), *rstd = gc_alloc(ng);
    float *ga = gc_alloc(n), *gy = gc_alloc(n), *din = gc_alloc(n), *dgamma = gc_alloc(s.C),
          *dbeta = gc_alloc(s.C);
    ddpm_groupnorm_forward(y, mean, rstd, d.x, d.gamma, d.beta, s.N, s.C, s.HW, s.G);
    ddpm_silu_forward(a, y, n);
    if (d.mask) ddpm_dropout_forward(a, a, d.mask, n);
    if (d.mask) ddpm_dropout_backward(ga, dy, d.mask, n);
    else memcpy(ga, dy, n * sizeof *ga);
    ddpm_silu_backward(gy, ga, y, n);
    for (size_t i = 0; i < n; i++) din[i] = 0.25f;
    for (int c = 0; c < s.C; c++) dgamma[c] = dbeta[c] = 0.25f;
    ddpm_groupnorm_backward(din, dgamma, dbeta, gy, d.x, mean, rstd, d.gamma, s.N, s.C, s.HW, s.G);

    printf("groupnorm_silu N=%d C=%d HW=%d G=%d dropout=%g: max |fused - chain| out %g din %g "
           "dgamma %g dbeta %g\n",
           s.N, s.C, s.HW, s.G, (double)p, gc_max_abs_diff(f.out, a, n),
           gc_max_abs_diff(f.din, din, n), gc_max_abs_diff(f.dgamma, dgamma, s.C),
           gc_max_abs_diff(f.dbeta, dbeta, s.C));
    assert_memory_equal(f.mean, mean, ng * sizeof(float));
    assert_memory_equal(f.rstd, rstd, ng * sizeof(float));
    assert_memory_equal(f.out, a, n * sizeof(float));
    assert_memory_equal(f.again, f.out, n * sizeof(float));
    assert_memory_equal(f.din, din, n * sizeof(float));
    assert_memory_equal(f.dgamma, dgamma, s.C * sizeof(float));
    assert_memory_equal(f.dbeta, dbeta, s.C * sizeof(float));

    /* accumulation: the same backward from zero differs by exactly the 0.25 */
    gs_result z = gs_run(&d, dy, 0.0f);
    for (size_t i = 0; i < n; i++) assert_true(f.din[i] == 0.25f + z.din[i]);
    for (int c = 0; c < s.C; c++) {
        assert_true(f.dgamma[c] == 0.25f + z.dgamma[c]);
        assert_true(f.dbeta[c] == 0.25f + z.dbeta[c]);
    }
    if (s.C / s.G * s.HW > 1) assert_true(gc_max_abs(z.din, n) > 0.0); /* else exactly 0 */
    assert_true(gc_max_abs(z.dgamma, s.C) > 0.0 || s.C / s.G * s.HW == 1);
    assert_true(gc_max_abs(z.dbeta, s.C) > 0.0);

    gs_result_free(f);
    gs_result_free(z);
    gs_free(d);
    ddpm_free(dy);
    ddpm_free(y);
    ddpm_free(a);
    ddpm_free(mean);
    ddpm_free(rstd);
    ddpm_free(ga);
    ddpm_free(gy);
    ddpm_free(din);
    ddpm_free(dgamma);
    ddpm_free(dbeta);
}

static void test_fused_matches_chain(void **state) {
    (void)state;
    check_fused_matches_chain((gn_shape){2, 6, 5 * 7, 3}, 0.0f, 31);
    check_fused_matches_chain((gn_shape){2, 6, 5 * 7, 3}, 0.4f, 32);
    check_fused_matches_chain((gn_shape){3, 3, 1, 3}, 0.0f, 33); /* var 0 */
    check_fused_matches_chain((gn_shape){1, 8, 1, 2}, 0.3f, 34); /* HW = 1 */
    check_fused_matches_chain((gn_shape){2, 2, 261, 2}, 0.1f, 38); /* two tiles per row */
    check_fused_matches_chain((gn_shape){3, 32, 15 * 15, 8}, 0.2f, 35); /* OpenMP path */
    /* a group of 16400 floats: larger than the backward's stack cache, so dy
     * is formed twice, tile by tile (4100 = 16 tiles of 256 and 4 more) */
    check_fused_matches_chain((gn_shape){2, 4, 4100, 1}, 0.0f, 36);
    check_fused_matches_chain((gn_shape){2, 4, 4100, 1}, 0.5f, 37);
}

/* The fused forward of a concatenation read from its two parts is bit for bit
 * the forward of the concatenated tensor, groups straddling the boundary
 * included (and it leaves the channels of the parts untouched). */
static void check_cat(gn_shape s, int CA, float p, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gs_data d = gs_make(s, p, &rng);
    int CB = s.C - CA;
    size_t n = d.n, ng = (size_t)s.N * s.G, hw = (size_t)s.HW;
    float *a = gc_alloc((size_t)s.N * CA * hw), *b = gc_alloc((size_t)s.N * CB * hw + 1);
    float *out = gc_alloc(n), *mean = gc_alloc(ng), *rstd = gc_alloc(ng);
    float *out2 = gc_alloc(n), *mean2 = gc_alloc(ng), *rstd2 = gc_alloc(ng);
    for (int i = 0; i < s.N; i++) {
        memcpy(a + (size_t)i * CA * hw, d.x + (size_t)i * s.C * hw, (size_t)CA * hw * sizeof(float));
        memcpy(b + (size_t)i * CB * hw, d.x + ((size_t)i * s.C + CA) * hw,
               (size_t)CB * hw * sizeof(float));
    }
    ddpm_groupnorm_silu_forward(out, mean, rstd, d.x, d.gamma, d.beta, d.mask, s.N, s.C, s.HW, s.G);
    for (size_t i = 0; i < n; i++) out2[i] = NAN;
    ddpm_groupnorm_silu_forward_cat(out2, mean2, rstd2, a, CB ? b : NULL, CA, d.gamma, d.beta,
                                    d.mask, s.N, s.C, s.HW, s.G);
    printf("groupnorm_silu_cat N=%d C=%d (%d + %d) HW=%d G=%d: max |cat - whole| %g\n", s.N, s.C,
           CA, CB, s.HW, s.G, gc_max_abs_diff(out2, out, n));
    assert_memory_equal(out2, out, n * sizeof(float));
    assert_memory_equal(mean2, mean, ng * sizeof(float));
    assert_memory_equal(rstd2, rstd, ng * sizeof(float));
    float *bufs[] = {a, b, out, mean, rstd, out2, mean2, rstd2};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ddpm_free(bufs[i]);
    gs_free(d);
}

static void test_fused_cat_matches_whole(void **state) {
    (void)state;
    check_cat((gn_shape){2, 12, 37, 4}, 5, 0.0f, 60);  /* groups 1 straddles: 2 + 1 channels */
    check_cat((gn_shape){2, 12, 37, 4}, 4, 0.3f, 61);  /* 1 + 2, with dropout */
    check_cat((gn_shape){2, 12, 37, 4}, 6, 0.0f, 62);  /* on a group boundary */
    check_cat((gn_shape){2, 12, 37, 4}, 12, 0.0f, 63); /* all from a, b NULL */
    check_cat((gn_shape){2, 6, 35, 3}, 1, 0.0f, 64);
    check_cat((gn_shape){3, 3, 1, 3}, 2, 0.0f, 65);    /* HW = 1, var 0 */
    check_cat((gn_shape){3, 96, 49, 8}, 64, 0.2f, 66); /* the UNet's up path, OpenMP */
}

/* Bit-identical for 1 and 3 threads, on the OpenMP path, with and without
 * the stack cache of the backward. */
static void test_fused_thread_invariant(void **state) {
    (void)state;
    gn_shape shapes[] = {{3, 32, 15 * 15, 8}, {2, 4, 4100, 1}};
    for (int k = 0; k < 2; k++) {
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 50 + k);
        gs_data d = gs_make(shapes[k], 0.25f, &rng);
        gn_shape s = d.s;
        float *dy = gc_alloc(d.n);
        gc_fill_normal(&rng, dy, d.n);
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        gs_result a = gs_run(&d, dy, 0.0f);
        omp_set_num_threads(3);
        gs_result b = gs_run(&d, dy, 0.0f);
        omp_set_num_threads(saved);
        assert_memory_equal(a.out, b.out, d.n * sizeof(float));
        assert_memory_equal(a.mean, b.mean, (size_t)s.N * s.G * sizeof(float));
        assert_memory_equal(a.rstd, b.rstd, (size_t)s.N * s.G * sizeof(float));
        assert_memory_equal(a.din, b.din, d.n * sizeof(float));
        assert_memory_equal(a.dgamma, b.dgamma, s.C * sizeof(float));
        assert_memory_equal(a.dbeta, b.dbeta, s.C * sizeof(float));
        gs_result_free(a);
        gs_result_free(b);
        gs_free(d);
        ddpm_free(dy);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_matches_forward),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_output_statistics),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_accumulates_and_thread_invariant),
        cmocka_unit_test(test_fused_gradients),
        cmocka_unit_test(test_fused_matches_chain),
        cmocka_unit_test(test_fused_thread_invariant),
        cmocka_unit_test(test_fused_cat_matches_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
