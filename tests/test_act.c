/* test_act.c: SiLU, ReLU and dropout: closed-form values, gradient checks,
 * extreme inputs, dropout mask statistics and determinism. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/act.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

/* ---- forward values --------------------------------------------------------- */

static void test_silu_forward_values(void **state) {
    (void)state;
    const size_t n = 4001; /* x = -86 ... 86 in steps of 0.043, x[2000] = 0 */
    float *x = gc_alloc(n), *y = gc_alloc(n);
    for (size_t i = 0; i < n; i++) x[i] = -86.0f + 172.0f * (float)i / (float)(n - 1);
    x[n / 2] = 0.0f;
    ddpm_silu_forward(y, x, n);
    for (size_t i = 0; i < n; i++) {
        double want = (double)x[i] / (1.0 + exp(-(double)x[i]));
        double tol = 4.0 * FLT_EPSILON * fmax(fabs(want), 1e-30);
        if (!(fabs(y[i] - want) <= tol))
            fail_msg("silu(%g) = %.9g, want %.9g", (double)x[i], (double)y[i], want);
    }
    assert_true(y[n / 2] == 0.0f);
    ddpm_free(x);
    ddpm_free(y);
}

static void test_relu_forward_values(void **state) {
    (void)state;
    float x[] = {-3.5f, -1e-30f, -0.0f, 0.0f, 1e-30f, 2.25f, 1e30f, -1e30f};
    size_t n = sizeof x / sizeof *x;
    float y[8], want[] = {0.0f, 0.0f, 0.0f, 0.0f, 1e-30f, 2.25f, 1e30f, 0.0f};
    ddpm_relu_forward(y, x, n);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == want[i]);

    /* ReLU gradient at exactly 0 is 0; elsewhere 0 or 1; accumulates */
    float dout[8], din[8];
    for (size_t i = 0; i < n; i++) dout[i] = 2.0f, din[i] = 0.5f;
    ddpm_relu_backward(din, dout, x, n);
    float wantd[] = {0.5f, 0.5f, 0.5f, 0.5f, 2.5f, 2.5f, 2.5f, 0.5f};
    for (size_t i = 0; i < n; i++) assert_true(din[i] == wantd[i]);
}

static void test_silu_extreme_inputs(void **state) {
    (void)state;
    float x[] = {100.0f, -100.0f, 88.8f, -88.8f, 89.0f, -89.0f, 1000.0f, -1000.0f,
                 1e30f, -1e30f, FLT_MAX, -FLT_MAX};
    size_t n = sizeof x / sizeof *x;
    float y[12], dout[12], din[12];
    for (size_t i = 0; i < n; i++) dout[i] = 1.0f, din[i] = 0.0f;
    ddpm_silu_forward(y, x, n);
    ddpm_silu_backward(din, dout, x, n);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]) || !isfinite(din[i]))
            fail_msg("silu(%g): y=%g dy/dx=%g", (double)x[i], (double)y[i], (double)din[i]);
        if (x[i] > 0) { /* silu(x) -> x, slope -> 1 */
            assert_true(y[i] == x[i]);
            assert_true(din[i] == 1.0f);
        } else { /* silu(x) -> 0-, slope -> 0 */
            assert_true(fabsf(y[i]) < 1e-30f);
            assert_true(fabsf(din[i]) < 1e-30f);
        }
    }
}

/* ---- gradient checks -------------------------------------------------------- */

typedef void (*act_fwd)(float *out, const float *in, size_t n);

typedef struct {
    act_fwd f;
    float *out, *in;
    size_t n;
} act_ctx;

static void act_forward(void *p) {
    act_ctx *c = p;
    c->f(c->out, c->in, c->n);
}

static void check_act_grad(const char *name, act_fwd fwd,
                           void (*bwd)(float *, const float *, const float *, size_t), size_t n,
                           int away_from_zero, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    act_ctx c = {fwd, gc_alloc(n), gc_alloc(n), n};
    float *proj = gc_alloc(n), *din = gc_alloc(n);
    gc_fill_uniform(&rng, c.in, n, -5.0f, 5.0f);
    if (away_from_zero) /* |x| >= 0.05, far beyond the FD step 1e-3 */
        for (size_t i = 0; i < n; i++)
            c.in[i] = copysignf(0.05f + fabsf(c.in[i]), c.in[i]);
    gc_fill_uniform(&rng, proj, n, -1.0f, 1.0f);
    fwd(c.out, c.in, n);
    bwd(din, proj, c.in, n);
    gc_tensor t[] = {{"input", c.in, din, n}};
    char label[64];
    snprintf(label, sizeof label, "%s n=%zu", name, n);
    gc_check(label, act_forward, &c, c.out, n, proj, t, 1, GC_EPS, GC_TOL, GC_MAX_ELEMS);
    ddpm_free(c.out);
    ddpm_free(c.in);
    ddpm_free(proj);
    ddpm_free(din);
}

static void test_silu_grad(void **state) {
    (void)state;
    check_act_grad("silu", ddpm_silu_forward, ddpm_silu_backward, 37, 0, 1);
    check_act_grad("silu", ddpm_silu_forward, ddpm_silu_backward, 1001, 0, 2);
}

static void test_relu_grad(void **state) {
    (void)state;
    check_act_grad("relu", ddpm_relu_forward, ddpm_relu_backward, 41, 1, 3);
    check_act_grad("relu", ddpm_relu_forward, ddpm_relu_backward, 1003, 1, 4);
}

/* The OpenMP path (n > 1 << 14) gives bit-identical results to the serial one
 * (so the gradient checks above, on the serial path, cover it too), and
 * backward accumulates. */
static void test_parallel_matches_serial(void **state) {
    (void)state;
    const size_t n = (1 << 15) + 3, chunk = 1000;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 5);
    float *x = gc_alloc(n), *dy = gc_alloc(n), *y1 = gc_alloc(n), *y2 = gc_alloc(n);
    float *d1 = gc_alloc(n), *d2 = gc_alloc(n);
    gc_fill_uniform(&rng, x, n, -8.0f, 8.0f);
    gc_fill_normal(&rng, dy, n);
    for (size_t i = 0; i < n; i++) d1[i] = 0.25f, d2[i] = 0.25f;
    ddpm_silu_forward(y1, x, n);
    ddpm_silu_backward(d1, dy, x, n);
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        ddpm_silu_forward(y2 + i, x + i, m);
        ddpm_silu_backward(d2 + i, dy + i, x + i, m);
    }
    assert_memory_equal(y1, y2, n * sizeof(float));
    assert_memory_equal(d1, d2, n * sizeof(float));
    /* accumulation: d1 - 0.25 is the gradient, and it is not all zero */
    float *d0 = gc_alloc(n);
    ddpm_silu_backward(d0, dy, x, n);
    for (size_t i = 0; i < n; i++) assert_true(d1[i] == 0.25f + d0[i]);
    assert_true(gc_max_abs(d0, n) > 0.0);
    ddpm_free(x);
    ddpm_free(dy);
    ddpm_free(y1);
    ddpm_free(y2);
    ddpm_free(d1);
    ddpm_free(d2);
    ddpm_free(d0);
}

/* ---- dropout ------------------------------------------------------------------ */

static void test_dropout_mask_statistics(void **state) {
    (void)state;
    const size_t n = 1 << 20;
    float *mask = gc_alloc(n);
    float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        float p = ps[k], keep = 1.0f / (1.0f - p);
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 1234 + k);
        ddpm_dropout_mask(mask, n, p, &rng);
        size_t zeros = 0;
        for (size_t i = 0; i < n; i++) {
            if (mask[i] == 0.0f)
                zeros++;
            else if (mask[i] != keep)
                fail_msg("p=%g: mask[%zu] = %.9g, want 0 or %.9g", (double)p, i,
                         (double)mask[i], (double)keep);
        }
        double frac = (double)zeros / (double)n;
        double sigma = sqrt((double)p * (1.0 - p) / (double)n);
        printf("dropout p=%g: fraction zero %.5f (sigma %.1e)\n", (double)p, frac, sigma);
        if (!(fabs(frac - p) < 6.0 * sigma))
            fail_msg("p=%g: fraction zero %g, off by more than 6 sigma", (double)p, frac);
        /* no long runs: the first and second halves both look like p */
        size_t z1 = 0;
        for (size_t i = 0; i < n / 2; i++) z1 += mask[i] == 0.0f;
        assert_true(fabs((double)z1 / (n / 2) - p) < 6.0 * sigma * sqrt(2.0));
    }
    ddpm_free(mask);
}

static void test_dropout_mask_determinism(void **state) {
    (void)state;
    const size_t n = 4097;
    float *a = gc_alloc(n), *b = gc_alloc(n), *c = gc_alloc(n);
    ddpm_rng r1, r2, r3;
    ddpm_rng_seed(&r1, 77);
    ddpm_rng_seed(&r2, 77);
    ddpm_rng_seed(&r3, 78);
    ddpm_dropout_mask(a, n, 0.25f, &r1);
    ddpm_dropout_mask(b, n, 0.25f, &r2);
    ddpm_dropout_mask(c, n, 0.25f, &r3);
    assert_memory_equal(a, b, n * sizeof(float)); /* same seed, same mask */
    assert_memory_equal(&r1, &r2, sizeof r1);     /* and the same state after */
    assert_true(memcmp(a, c, n * sizeof(float)) != 0);

    /* documented consumption: one ddpm_rng_uniform per element, in order */
    ddpm_rng ref;
    ddpm_rng_seed(&ref, 77);
    for (size_t i = 0; i < n; i++) {
        double u = ddpm_rng_uniform(&ref);
        assert_true(a[i] == (u < 0.25 ? 0.0f : 1.0f / 0.75f));
    }
    assert_memory_equal(&r1, &ref, sizeof r1);

    /* p = 0: all ones, no draws; p = 1: all zeros, no draws */
    ddpm_rng before = r1;
    ddpm_dropout_mask(a, n, 0.0f, &r1);
    for (size_t i = 0; i < n; i++) assert_true(a[i] == 1.0f);
    ddpm_dropout_mask(a, n, 1.0f, &r1);
    for (size_t i = 0; i < n; i++) assert_true(a[i] == 0.0f);
    assert_memory_equal(&r1, &before, sizeof r1);
    ddpm_free(a);
    ddpm_free(b);
    ddpm_free(c);
}

static void test_dropout_forward_backward_use_mask(void **state) {
    (void)state;
    const size_t n = (1 << 14) + 77; /* takes the OpenMP path */
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 3);
    float *x = gc_alloc(n), *mask = gc_alloc(n), *y = gc_alloc(n), *dy = gc_alloc(n),
          *dx = gc_alloc(n);
    gc_fill_normal(&rng, x, n);
    gc_fill_normal(&rng, dy, n);
    ddpm_dropout_mask(mask, n, 0.4f, &rng);
    for (size_t i = 0; i < n; i++) dx[i] = 1.0f;
    ddpm_dropout_forward(y, x, mask, n);
    ddpm_dropout_backward(dx, dy, mask, n);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(y[i] == x[i] * mask[i]);
        assert_true(dx[i] == 1.0f + dy[i] * mask[i]);
        if (mask[i] == 0.0f) {
            zeros++;
            assert_true(y[i] == 0.0f && dx[i] == 1.0f);
        }
    }
    assert_true(zeros > 0 && zeros < n);
    ddpm_free(x);
    ddpm_free(mask);
    ddpm_free(y);
    ddpm_free(dy);
    ddpm_free(dx);
}

typedef struct {
    float *out, *in;
    const float *mask;
    size_t n;
} drop_ctx;

static void drop_forward(void *p) {
    drop_ctx *c = p;
    ddpm_dropout_forward(c->out, c->in, c->mask, c->n);
}

static void test_dropout_grad(void **state) {
    (void)state;
    const size_t n = 53;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    float *mask = gc_alloc(n), *proj = gc_alloc(n), *din = gc_alloc(n);
    drop_ctx c = {gc_alloc(n), gc_alloc(n), mask, n};
    ddpm_dropout_mask(mask, n, 0.3f, &rng); /* fixed for the whole check */
    gc_fill_uniform(&rng, c.in, n, -2.0f, 2.0f);
    gc_fill_uniform(&rng, proj, n, -1.0f, 1.0f);
    drop_forward(&c);
    ddpm_dropout_backward(din, proj, mask, n);
    gc_tensor t[] = {{"input", c.in, din, n}};
    gc_check("dropout p=0.3", drop_forward, &c, c.out, n, proj, t, 1, GC_EPS, GC_TOL,
             GC_MAX_ELEMS);
    ddpm_free(mask);
    ddpm_free(proj);
    ddpm_free(din);
    ddpm_free(c.out);
    ddpm_free(c.in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silu_forward_values),
        cmocka_unit_test(test_relu_forward_values),
        cmocka_unit_test(test_silu_extreme_inputs),
        cmocka_unit_test(test_silu_grad),
        cmocka_unit_test(test_relu_grad),
        cmocka_unit_test(test_parallel_matches_serial),
        cmocka_unit_test(test_dropout_mask_statistics),
        cmocka_unit_test(test_dropout_mask_determinism),
        cmocka_unit_test(test_dropout_forward_backward_use_mask),
        cmocka_unit_test(test_dropout_grad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
