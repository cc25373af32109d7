/* test_attn.c: the attention core against the naive loops, softmax rows,
 * numerical stability, gradient checks on qkv (whole, and q/k/v separately),
 * accumulation of backward and independence from the OpenMP thread count. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reference.h"
#include "ddpm/attn.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

typedef struct {
    int N, C, T;
} shape3;

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* ---- forward ----------------------------------------------------------------- */

static void check_forward(shape3 s, float lo, float hi, uint64_t seed) {
    const int N = s.N, C = s.C, T = s.T;
    const size_t nqkv = (size_t)N * 3 * C * T, nout = (size_t)N * C * T, natt = (size_t)N * T * T;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    float *qkv = gc_alloc(nqkv), *out = gc_alloc(nout), *ref = gc_alloc(nout),
          *att = gc_alloc(natt);
    gc_fill_uniform(&rng, qkv, nqkv, lo, hi);
    fill_nan(out, nout); /* forward must overwrite, not accumulate */
    fill_nan(att, natt);
    ddpm_attention_forward(out, att, qkv, N, C, T);
    ddpm_attention_forward_naive(ref, qkv, N, C, T);
    /* outputs are convex combinations of v, |v| <= hi; float32 rounding */
    double err = gc_max_abs_diff(out, ref, nout);
    double tol = 2e-5 * (fabs(hi) > fabs(lo) ? fabs(hi) : fabs(lo));
    if (!(err <= tol))
        fail_msg("forward N=%d C=%d T=%d range [%g,%g]: max abs err %g > %g", N, C, T, lo, hi,
                 err, tol);
    for (size_t r = 0; r < (size_t)N * T; r++) {
        double sum = 0.0;
        for (int j = 0; j < T; j++) {
            float a = att[r * T + j];
            if (!(a >= 0.0f && a <= 1.0f)) fail_msg("att[%zu,%d] = %g not in [0,1]", r, j, a);
            sum += a;
        }
        if (!(fabs(sum - 1.0) <= 1e-5)) fail_msg("att row %zu sums to %.9g", r, sum);
    }
    ddpm_free(qkv);
    ddpm_free(out);
    ddpm_free(ref);
    ddpm_free(att);
}

static const shape3 k_shapes[] = {
    {2, 3, 5}, {1, 8, 49}, {3, 4, 7 * 5}, {1, 2, 1}, {2, 16, 64}, {1, 1, 3}, {2, 5, 11},
};

static void test_forward_matches_naive(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_shapes / sizeof *k_shapes; i++)
        check_forward(k_shapes[i], -1.0f, 1.0f, 100 + i);
}

/* Scores of several hundred: exp overflows unless the row max is subtracted. */
static void test_forward_large_scores_stable(void **state) {
    (void)state;
    check_forward((shape3){2, 4, 9}, -30.0f, 30.0f, 7);
    check_forward((shape3){1, 8, 49}, -30.0f, 30.0f, 8);
}

/* A known case: q = 0 gives uniform attention, so out[c,i] = mean_j v[c,j]. */
static void test_forward_uniform_when_q_zero(void **state) {
    (void)state;
    const int N = 1, C = 2, T = 4;
    float qkv[3 * 2 * 4] = {
        0, 0, 0, 0, 0, 0, 0, 0,     /* q */
        1, 2, 3, 4, -1, 5, 0, 2,    /* k */
        1, 2, 3, 6, -4, 0, 4, 8,    /* v: row means 3 and 2 */
    };
    float out[2 * 4], att[4 * 4];
    ddpm_attention_forward(out, att, qkv, N, C, T);
    for (int i = 0; i < 16; i++) assert_float_equal(att[i], 0.25f, 1e-7f);
    for (int i = 0; i < T; i++) {
        assert_float_equal(out[i], 3.0f, 1e-6f);
        assert_float_equal(out[T + i], 2.0f, 1e-6f);
    }
}

/* ---- gradient checks ----------------------------------------------------------- */

/* Finite-difference step. With GC_EPS (1e-3) the float32 rounding of the
 * outputs alone gives errors of 5e-4..2e-3 on the small k gradients (checked
 * against a double-precision finite difference: the analytic gradient agrees
 * to ~1e-7 there). The rounding noise scales as 1/eps and the truncation error
 * as eps^2, so 1e-2 leaves both well under GC_TOL (worst 2.7e-4 over 30 seeds
 * of these shapes). */
#define ATTN_GC_EPS 1e-2

typedef struct {
    int N, C, T;
    float *qkv;      /* (N, 3C, T) */
    float *out, *att;
    int split;       /* 1: assemble qkv from q, k, v below before each forward */
    float *q, *k, *v; /* (N, C, T) each */
} gc_ctx;

static void pack_qkv(gc_ctx *c) {
    const size_t CT = (size_t)c->C * c->T;
    for (int n = 0; n < c->N; n++) {
        memcpy(c->qkv + (size_t)n * 3 * CT, c->q + n * CT, CT * sizeof(float));
        memcpy(c->qkv + (size_t)n * 3 * CT + CT, c->k + n * CT, CT * sizeof(float));
        memcpy(c->qkv + (size_t)n * 3 * CT + 2 * CT, c->v + n * CT, CT * sizeof(float));
    }
}

static void gc_forward(void *p) {
    gc_ctx *c = p;
    if (c->split) pack_qkv(c);
    ddpm_attention_forward(c->out, c->att, c->qkv, c->N, c->C, c->T);
}

static void check_grad(shape3 s, uint64_t seed) {
    const int N = s.N, C = s.C, T = s.T;
    const size_t CT = (size_t)C * T, nqkv = (size_t)N * 3 * CT, nout = (size_t)N * CT;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    gc_ctx c = {N, C, T, gc_alloc(nqkv), gc_alloc(nout), gc_alloc((size_t)N * T * T), 0,
                gc_alloc(nout), gc_alloc(nout), gc_alloc(nout)};
    float *proj = gc_alloc(nout), *dqkv = gc_alloc(nqkv);
    float *work = gc_alloc(ddpm_attention_workspace(N, C, T));
    fill_nan(work, ddpm_attention_workspace(N, C, T)); /* scratch contents must not matter */
    gc_fill_uniform(&rng, c.qkv, nqkv, -1.0f, 1.0f);
    gc_fill_uniform(&rng, proj, nout, -1.0f, 1.0f);

    gc_forward(&c);
    ddpm_attention_backward(dqkv, proj, c.qkv, c.att, N, C, T, work);

    char name[64];
    snprintf(name, sizeof name, "attention N%d C%d T%d", N, C, T);
    gc_tensor whole[] = {{"qkv", c.qkv, dqkv, nqkv}};
    gc_check(name, gc_forward, &c, c.out, nout, proj, whole, 1, ATTN_GC_EPS, GC_TOL, GC_MAX_ELEMS);

    /* q, k and v separately, so a wrong (or missing) gradient of the smaller
     * parts cannot hide behind the scale of the others. */
    float *dq = gc_alloc(nout), *dk = gc_alloc(nout), *dv = gc_alloc(nout);
    for (int n = 0; n < N; n++) {
        const float *x = c.qkv + (size_t)n * 3 * CT, *g = dqkv + (size_t)n * 3 * CT;
        memcpy(c.q + n * CT, x, CT * sizeof(float));
        memcpy(c.k + n * CT, x + CT, CT * sizeof(float));
        memcpy(c.v + n * CT, x + 2 * CT, CT * sizeof(float));
        memcpy(dq + n * CT, g, CT * sizeof(float));
        memcpy(dk + n * CT, g + CT, CT * sizeof(float));
        memcpy(dv + n * CT, g + 2 * CT, CT * sizeof(float));
    }
    c.split = 1;
    gc_tensor parts[] = {{"q", c.q, dq, nout}, {"k", c.k, dk, nout}, {"v", c.v, dv, nout}};
    gc_check(name, gc_forward, &c, c.out, nout, proj, parts, 3, ATTN_GC_EPS, GC_TOL, GC_MAX_ELEMS);

    float *bufs[] = {c.qkv, c.out, c.att, c.q, c.k, c.v, proj, dqkv, work, dq, dk, dv};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ddpm_free(bufs[i]);
}

static void test_gradcheck(void **state) {
    (void)state;
    check_grad((shape3){2, 3, 5}, 11);
    check_grad((shape3){3, 4, 7 * 5}, 12);
    check_grad((shape3){1, 5, 9}, 13);
}

/* ---- accumulation and reproducibility -------------------------------------------- */

static void test_backward_accumulates(void **state) {
    (void)state;
    const int N = 2, C = 3, T = 7;
    const size_t nqkv = (size_t)N * 3 * C * T, nout = (size_t)N * C * T;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 21);
    float *qkv = gc_alloc(nqkv), *out = gc_alloc(nout), *att = gc_alloc((size_t)N * T * T);
    float *dout = gc_alloc(nout), *work = gc_alloc(ddpm_attention_workspace(N, C, T));
    float *g0 = gc_alloc(nqkv), *g1 = gc_alloc(nqkv), *gacc = gc_alloc(nqkv);
    gc_fill_uniform(&rng, qkv, nqkv, -1.0f, 1.0f);
    gc_fill_uniform(&rng, dout, nout, -1.0f, 1.0f);
    gc_fill_uniform(&rng, g0, nqkv, -1.0f, 1.0f);
    ddpm_attention_forward(out, att, qkv, N, C, T);

    ddpm_attention_backward(g1, dout, qkv, att, N, C, T, work); /* from zero */
    assert_true(gc_max_abs(g1, nqkv) > 0.0);
    memcpy(gacc, g0, nqkv * sizeof(float));
    fill_nan(work, ddpm_attention_workspace(N, C, T));
    ddpm_attention_backward(gacc, dout, qkv, att, N, C, T, work); /* onto g0 */
    for (size_t i = 0; i < nqkv; i++) {
        float want = g0[i] + g1[i];
        if (!(fabsf(gacc[i] - want) <= 1e-6f))
            fail_msg("dqkv[%zu]: accumulated %g, expected %g + %g", i, gacc[i], g0[i], g1[i]);
    }
    /* twice onto zero = 2x once */
    memset(gacc, 0, nqkv * sizeof(float));
    ddpm_attention_backward(gacc, dout, qkv, att, N, C, T, work);
    ddpm_attention_backward(gacc, dout, qkv, att, N, C, T, work);
    for (size_t i = 0; i < nqkv; i++) assert_float_equal(gacc[i], 2.0f * g1[i], 1e-6f);

    float *bufs[] = {qkv, out, att, dout, work, g0, g1, gacc};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ddpm_free(bufs[i]);
}

static void run_once(int threads, const float *qkv, const float *dout, float *out, float *att,
                     float *dqkv, float *work, int N, int C, int T) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    ddpm_attention_forward(out, att, qkv, N, C, T);
    memset(dqkv, 0, (size_t)N * 3 * C * T * sizeof(float));
    ddpm_attention_backward(dqkv, dout, qkv, att, N, C, T, work);
    omp_set_num_threads(saved);
}

/* 1 and 2 threads give the same bits, and so does the batch run image by image
 * (N = 1 calls always run on one thread): on a small shape that stays on one
 * thread and on the default UNet's (C 64, T 49) with enough images to be
 * split over the threads. */
static void check_threads(int N, int C, int T, uint64_t seed) {
    const size_t nqkv = (size_t)N * 3 * C * T, nout = (size_t)N * C * T, natt = (size_t)N * T * T;
    const size_t CT = (size_t)C * T, TT = (size_t)T * T;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    float *qkv = gc_alloc(nqkv), *dout = gc_alloc(nout), *work = gc_alloc(natt);
    float *o1 = gc_alloc(nout), *a1 = gc_alloc(natt), *d1 = gc_alloc(nqkv);
    float *o2 = gc_alloc(nout), *a2 = gc_alloc(natt), *d2 = gc_alloc(nqkv);
    gc_fill_uniform(&rng, qkv, nqkv, -2.0f, 2.0f);
    gc_fill_uniform(&rng, dout, nout, -1.0f, 1.0f);
    run_once(1, qkv, dout, o1, a1, d1, work, N, C, T);
    run_once(2, qkv, dout, o2, a2, d2, work, N, C, T);
    assert_memory_equal(o1, o2, nout * sizeof(float));
    assert_memory_equal(a1, a2, natt * sizeof(float));
    assert_memory_equal(d1, d2, nqkv * sizeof(float));
    for (int n = 0; n < N; n++)
        run_once(2, qkv + n * 3 * CT, dout + n * CT, o2 + n * CT, a2 + n * TT, d2 + n * 3 * CT, work,
                 1, C, T);
    assert_memory_equal(o1, o2, nout * sizeof(float));
    assert_memory_equal(a1, a2, natt * sizeof(float));
    assert_memory_equal(d1, d2, nqkv * sizeof(float));
    float *bufs[] = {qkv, dout, work, o1, a1, d1, o2, a2, d2};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ddpm_free(bufs[i]);
}

static void test_thread_count_bit_identical(void **state) {
    (void)state;
    check_threads(3, 8, 49, 31);
    check_threads(9, 64, 49, 32); /* 5.5 MFLOP: split over the threads */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_naive),
        cmocka_unit_test(test_forward_large_scores_stable),
        cmocka_unit_test(test_forward_uniform_when_q_zero),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_thread_count_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
