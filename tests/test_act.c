/* test_act.c: sigmoid, SiLU, ReLU and dropout: accuracy of the inline
 * exp/sigmoid against double precision in ulps, edge cases, vector lanes vs
 * scalar tail, closed-form values, gradient checks, extreme inputs, dropout
 * mask statistics and determinism. */
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

/* ---- sigmoid accuracy ------------------------------------------------------- */

/* |got - want| in units of the last place of a float of magnitude |want|
 * (normal range: |want| >= FLT_MIN). */
static double ulps(double got, double want) {
    int e;
    frexp(fabs(want), &e); /* |want| = m 2^e, m in [0.5, 1): ulp = 2^(e - 24) */
    return fabs(got - want) / ldexp(1.0, e - 24);
}

static float float_of_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* The worst points of an exhaustive run over every float in [-100, 100]
 * (FMA and non-FMA builds), so the sampled sweep below finds the true maxima. */
static const float worst_points[] = {-26.6856499f, -71.0455322f, -4.1572938f, 7.85921097f,
                                     -7.59728003f, -3.20843959f};

/* The floats of [-100, 100] with every 509th bit pattern, the worst points
 * and the boundaries: 4.4 million inputs. Returns the count. */
static size_t sweep_inputs(float *x, size_t cap) {
    float hundred = 100.0f;
    uint32_t top;
    memcpy(&top, &hundred, sizeof top);
    size_t n = 0;
    for (uint32_t b = 0; b <= top && n + 2 <= cap; b += 509) {
        x[n++] = float_of_bits(b);
        x[n++] = float_of_bits(b | 0x80000000u);
    }
    const float extra[] = {-87.3365402f, -87.3365479f, -87.33f, -16.7f, 16.6355f, 16.7f, 100.0f, -100.0f};
    for (size_t i = 0; i < sizeof worst_points / sizeof *worst_points && n < cap; i++)
        x[n++] = worst_points[i];
    for (size_t i = 0; i < sizeof extra / sizeof *extra && n < cap; i++) x[n++] = extra[i];
    return n;
}

#define SWEEP_CAP ((size_t)4500000)
#define EXP_MIN_ARG -87.3365402f /* the least float with exp >= FLT_MIN */

typedef struct {
    double sig_neg, sig_pos, silu; /* max ulps */
    float at_neg, at_pos, at_silu;
} act_err;

/* Max errors of s = sigmoid(x), l = silu(x) over the inputs, in ulps where
 * the true value is >= FLT_MIN; below that (x < EXP_MIN_ARG) s must be 0 and
 * l must be -0, and a subnormal silu (x/2 for subnormal x) must be within
 * FLT_TRUE_MIN. Also checks the exact limits for x >= 16.7. */
static act_err measure(const float *x, const float *s, const float *l, size_t n, const char *what) {
    act_err r = {0};
    for (size_t i = 0; i < n; i++) {
        double xd = x[i], rs = 1.0 / (1.0 + exp(-xd)), rl = xd * rs;
        if (x[i] < EXP_MIN_ARG) {
            if (!(s[i] == 0.0f && l[i] == 0.0f && signbit(l[i]) && rs < FLT_MIN))
                fail_msg("%s: x=%.9g: sigmoid %g silu %g, want 0 and -0", what, xd, (double)s[i],
                         (double)l[i]);
            continue;
        }
        if (x[i] >= 16.7f && !(s[i] == 1.0f && l[i] == x[i]))
            fail_msg("%s: x=%.9g: sigmoid %.9g, want exactly 1", what, xd, (double)s[i]);
        double us = ulps(s[i], rs), ul = ulps(l[i], rl);
        if (x[i] < 0.0f && us > r.sig_neg) r.sig_neg = us, r.at_neg = x[i];
        if (x[i] >= 0.0f && us > r.sig_pos) r.sig_pos = us, r.at_pos = x[i];
        if (fabs(rl) >= FLT_MIN) {
            if (ul > r.silu) r.silu = ul, r.at_silu = x[i];
        } else if (!(fabs(l[i] - rl) <= FLT_TRUE_MIN)) { /* 0 or x/2 subnormal */
            fail_msg("%s: silu(%g) = %g", what, xd, (double)l[i]);
        }
    }
    printf("%s: sigmoid max %.3f ulp (x < 0, at %.9g), %.3f ulp (x >= 0, at %.9g); "
           "silu max %.3f ulp (at %.9g)\n",
           what, r.sig_neg, (double)r.at_neg, r.sig_pos, (double)r.at_pos, r.silu,
           (double)r.at_silu);
    return r;
}

/* The bounds documented in act.h (exhaustive maxima: sigmoid 2.41 / 1.5 ulp,
 * silu 3.23 ulp with FMA and 3.29 without). */
static void check_bounds(act_err r) {
    assert_true(r.sig_neg <= 2.41);
    assert_true(r.sig_pos <= 1.5);
    assert_true(r.silu <= 3.29);
}

static void test_sigmoid_accuracy(void **state) {
    (void)state;
    float *x = gc_alloc(SWEEP_CAP), *s = gc_alloc(SWEEP_CAP), *l = gc_alloc(SWEEP_CAP);
    size_t n = sweep_inputs(x, SWEEP_CAP);
    assert_true(n > 4000000);

    /* the library's (vectorised, -march=native) build */
    ddpm_sigmoid_forward(s, x, n);
    ddpm_silu_forward(l, x, n);
    act_err lib = measure(x, s, l, n, "library");
    check_bounds(lib);

    /* the inline function as this test file is compiled (may differ from
     * the library in the last bit: with or without FMA) */
    for (size_t i = 0; i < n; i++) s[i] = ddpm_sigmoid(x[i]), l[i] = x[i] * s[i];
#ifdef FP_FAST_FMAF
    const char *what = "inline, FMA";
#else
    const char *what = "inline, no FMA";
#endif
    check_bounds(measure(x, s, l, n, what));

    /* exp itself, over the sweep's z <= 0 */
    double worst = 0.0;
    float at = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float z = x[i];
        if (z > 0.0f || z < EXP_MIN_ARG) continue;
        double u = ulps(ddpm_exp_nonpos(z), exp((double)z));
        if (u > worst) worst = u, at = z;
    }
    printf("%s: exp_nonpos max %.3f ulp (at %.9g)\n", what, worst, (double)at);
    assert_true(worst <= 1.18);
    assert_true(ddpm_exp_nonpos(0.0f) == 1.0f && ddpm_exp_nonpos(-0.0f) == 1.0f);
    assert_true(ddpm_exp_nonpos(EXP_MIN_ARG) >= FLT_MIN);
    assert_true(ddpm_exp_nonpos(nextafterf(EXP_MIN_ARG, -INFINITY)) == 0.0f);
    assert_true(ddpm_exp_nonpos(-INFINITY) == 0.0f && ddpm_exp_nonpos(NAN) == 0.0f);
    ddpm_free(x);
    ddpm_free(s);
    ddpm_free(l);
}

/* Edge cases through the library: +-0, the flush boundary, +-88.7, huge,
 * FLT_MAX, infinities, subnormals, NaN. */
static void test_sigmoid_edge_cases(void **state) {
    (void)state;
    const float tiny = FLT_TRUE_MIN, sub = 0x1.2p-140f;
    float x[] = {0.0f, -0.0f, EXP_MIN_ARG, nextafterf(EXP_MIN_ARG, -INFINITY), 88.7f, -88.7f,
                 1e30f, -1e30f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, tiny, -tiny, sub, -sub,
                 FLT_MIN, -FLT_MIN, NAN};
    enum { n = sizeof x / sizeof *x };
    float s[n], l[n], d[n], dout[n];
    for (int i = 0; i < n; i++) d[i] = 0.0f, dout[i] = 1.0f;
    ddpm_sigmoid_forward(s, x, n);
    ddpm_silu_forward(l, x, n);
    ddpm_silu_backward(d, dout, x, n);
    for (int i = 0; i < n; i++) {
        float xi = x[i];
        if (isnan(xi)) { /* sigmoid(NaN) = 0, silu and its slope propagate NaN */
            assert_true(s[i] == 0.0f && isnan(l[i]) && isnan(d[i]));
            continue;
        }
        if (fabsf(xi) <= FLT_MIN) { /* 0 and subnormals: sigmoid 1/2, silu x/2 */
            assert_true(s[i] == 0.5f);
            assert_true(l[i] == xi * 0.5f && signbit(l[i]) == signbit(xi));
            assert_true(d[i] == 0.5f);
        } else if (xi > 0.0f) { /* 1, x, 1 exactly (+inf: slope 1 + inf * 0 = NaN) */
            assert_true(s[i] == 1.0f && l[i] == xi);
            if (isfinite(xi)) assert_true(d[i] == 1.0f);
        } else if (xi < EXP_MIN_ARG) { /* 0, -0, slope -0 (-inf: silu -inf * 0 = NaN) */
            assert_true(s[i] == 0.0f);
            if (isfinite(xi)) assert_true(l[i] == 0.0f && signbit(l[i]) && d[i] == 0.0f);
        } else { /* x = EXP_MIN_ARG: the last nonzero value */
            assert_true(s[i] >= FLT_MIN && s[i] < 1.2e-38f);
            assert_true(l[i] < 0.0f && isfinite(d[i]));
        }
        if (isfinite(xi)) assert_true(isfinite(s[i]) && isfinite(l[i]) && isfinite(d[i]));
    }
}

/* Every finite |x| >= 100 (every 4099th float up to FLT_MAX): exact limits,
 * nothing NaN or inf, in silu, its slope and the sigmoid. */
static void test_sigmoid_large_inputs(void **state) {
    (void)state;
    float lo = 100.0f;
    uint32_t b0, b1 = 0x7f7fffffu; /* FLT_MAX */
    memcpy(&b0, &lo, sizeof b0);
    size_t cap = (b1 - b0) / 4099 + 2, n = 0;
    float *x = gc_alloc(2 * cap), *s = gc_alloc(2 * cap), *l = gc_alloc(2 * cap),
          *d = gc_alloc(2 * cap), *ones = gc_alloc(2 * cap);
    for (uint32_t b = b0; b <= b1 && b >= b0; b += 4099) {
        x[n++] = float_of_bits(b);
        x[n++] = -float_of_bits(b);
    }
    x[n++] = FLT_MAX;
    x[n++] = -FLT_MAX;
    for (size_t i = 0; i < n; i++) d[i] = 0.0f, ones[i] = 1.0f;
    ddpm_sigmoid_forward(s, x, n);
    ddpm_silu_forward(l, x, n);
    ddpm_silu_backward(d, ones, x, n);
    for (size_t i = 0; i < n; i++) {
        if (x[i] > 0.0f ? !(s[i] == 1.0f && l[i] == x[i] && d[i] == 1.0f)
                        : !(s[i] == 0.0f && l[i] == 0.0f && d[i] == 0.0f))
            fail_msg("x=%g: sigmoid %g silu %g slope %g", (double)x[i], (double)s[i],
                     (double)l[i], (double)d[i]);
    }
    ddpm_free(x);
    ddpm_free(s);
    ddpm_free(l);
    ddpm_free(d);
    ddpm_free(ones);
}

/* The vectorised loop body and the scalar remainder give the same bits: a
 * long call (vector lanes, 16 at a time) against one call per element (the
 * scalar path only), for sigmoid, silu and the silu backward. */
static void test_vector_lanes_match_scalar(void **state) {
    (void)state;
    const size_t n = 20011;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 9);
    float *x = gc_alloc(n), *dy = gc_alloc(n), *v = gc_alloc(n), *sc = gc_alloc(n);
    gc_fill_uniform(&rng, x, n, -20.0f, 20.0f);
    gc_fill_normal(&rng, dy, n);
    for (size_t i = 0; i < 64; i++) x[i] = -90.0f + 3.0f * (float)i; /* across the flush point */
    x[100] = 0.0f, x[101] = -0.0f, x[102] = EXP_MIN_ARG;

    ddpm_sigmoid_forward(v, x, n);
    for (size_t i = 0; i < n; i++) ddpm_sigmoid_forward(sc + i, x + i, 1);
    assert_memory_equal(v, sc, n * sizeof(float));

    ddpm_silu_forward(v, x, n);
    for (size_t i = 0; i < n; i++) ddpm_silu_forward(sc + i, x + i, 1);
    assert_memory_equal(v, sc, n * sizeof(float));

    for (size_t i = 0; i < n; i++) v[i] = sc[i] = 0.125f;
    ddpm_silu_backward(v, dy, x, n);
    for (size_t i = 0; i < n; i++) ddpm_silu_backward(sc + i, dy + i, x + i, 1);
    assert_memory_equal(v, sc, n * sizeof(float));

    /* and odd-length calls mixing both paths agree with them */
    for (size_t i = 0; i < n; i += 37) ddpm_silu_forward(sc + i, x + i, n - i < 37 ? n - i : 37);
    ddpm_silu_forward(v, x, n);
    assert_memory_equal(v, sc, n * sizeof(float));
    ddpm_free(x);
    ddpm_free(dy);
    ddpm_free(v);
    ddpm_free(sc);
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
        cmocka_unit_test(test_sigmoid_accuracy),
        cmocka_unit_test(test_sigmoid_edge_cases),
        cmocka_unit_test(test_sigmoid_large_inputs),
        cmocka_unit_test(test_vector_lanes_match_scalar),
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
