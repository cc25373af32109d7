/* test_linear.c: linear forward against the naive loop, gradient checks of
 * input, weight and bias, NULL gradients skipped, backward accumulates. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reference.h"
#include "ddpm/linear.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

typedef struct {
    float *out, *in, *weight, *bias; /* out (N, O), in (N, I), weight (O, I), bias (O) */
    int N, I, O;
} linear_ctx;

static void linear_fwd(void *p) {
    linear_ctx *c = p;
    ddpm_linear_forward(c->out, c->in, c->weight, c->bias, c->N, c->I, c->O);
}

/* out[n, o] = sum_i in[n, i] weight[o, i] + bias[o], in double. */
static void linear_naive(float *out, const float *in, const float *weight, const float *bias,
                         int N, int I, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < I; i++) acc += (double)in[n * I + i] * weight[o * I + i];
            out[n * O + o] = (float)acc;
        }
}

static void check_forward(int N, int I, int O, int use_bias) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, (uint64_t)(N * 1000 + I * 10 + O));
    float *in = gc_alloc((size_t)N * I), *w = gc_alloc((size_t)O * I), *b = gc_alloc(O);
    float *out = gc_alloc((size_t)N * O), *ref = gc_alloc((size_t)N * O);
    gc_fill_uniform(&rng, in, (size_t)N * I, -1, 1);
    gc_fill_uniform(&rng, w, (size_t)O * I, -1, 1);
    gc_fill_uniform(&rng, b, O, -1, 1);
    for (size_t k = 0; k < (size_t)N * O; k++) out[k] = NAN; /* forward must overwrite */
    ddpm_linear_forward(out, in, w, use_bias ? b : NULL, N, I, O);
    linear_naive(ref, in, w, use_bias ? b : NULL, N, I, O);
    double err = gc_max_abs_diff(out, ref, (size_t)N * O);
    if (err > 1e-5 * (I + 1))
        fail_msg("linear forward N=%d I=%d O=%d bias=%d: max abs err %g", N, I, O, use_bias, err);
    ddpm_free(in);
    ddpm_free(w);
    ddpm_free(b);
    ddpm_free(out);
    ddpm_free(ref);
}

static void test_forward_matches_naive(void **state) {
    (void)state;
    int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 13, 6}, {2, 64, 128}, {17, 33, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int bias = 0; bias < 2; bias++)
            check_forward(shapes[s][0], shapes[s][1], shapes[s][2], bias);
}

static void check_grad(int N, int I, int O) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, (uint64_t)(N * 7919 + I * 31 + O));
    linear_ctx c = {gc_alloc((size_t)N * O), gc_alloc((size_t)N * I), gc_alloc((size_t)O * I),
                    gc_alloc(O), N, I, O};
    float *proj = gc_alloc((size_t)N * O);
    float *din = gc_alloc((size_t)N * I), *dw = gc_alloc((size_t)O * I), *db = gc_alloc(O);
    gc_fill_uniform(&rng, c.in, (size_t)N * I, -1, 1);
    gc_fill_uniform(&rng, c.weight, (size_t)O * I, -1, 1);
    gc_fill_uniform(&rng, c.bias, O, -1, 1);
    gc_fill_normal(&rng, proj, (size_t)N * O);

    linear_fwd(&c);
    ddpm_linear_backward(din, dw, db, proj, c.in, c.weight, N, I, O);
    gc_tensor t[] = {
        {"input", c.in, din, (size_t)N * I},
        {"weight", c.weight, dw, (size_t)O * I},
        {"bias", c.bias, db, (size_t)O},
    };
    char name[64];
    snprintf(name, sizeof name, "linear N=%d I=%d O=%d", N, I, O);
    /* affine in every checked tensor: no truncation error, so a step of
     * 10 * GC_EPS only cuts the rounding noise (worst elementwise ratio 0.74
     * at GC_EPS on N=4 I=32 O=16) */
    gc_check(name, linear_fwd, &c, c.out, (size_t)N * O, proj, t, 3, 10 * GC_EPS, GC_TOL,
             GC_MAX_ELEMS);

    /* NULL din and dbias are skipped; dweight is unchanged by that. */
    float *dw2 = gc_alloc((size_t)O * I);
    ddpm_linear_backward(NULL, dw2, NULL, proj, c.in, c.weight, N, I, O);
    assert_memory_equal(dw, dw2, (size_t)O * I * sizeof(float));

    /* A second backward accumulates: every gradient doubles (exact in float). */
    float *din1 = gc_alloc((size_t)N * I), *db1 = gc_alloc(O);
    memcpy(din1, din, (size_t)N * I * sizeof(float));
    memcpy(db1, db, (size_t)O * sizeof(float));
    ddpm_linear_backward(din, dw, db, proj, c.in, c.weight, N, I, O);
    for (int k = 0; k < N * I; k++) assert_float_equal(din[k], 2 * din1[k], 1e-5f * (1 + fabsf(din1[k])));
    for (int k = 0; k < O * I; k++) assert_float_equal(dw[k], 2 * dw2[k], 1e-5f * (1 + fabsf(dw2[k])));
    for (int k = 0; k < O; k++) assert_float_equal(db[k], 2 * db1[k], 1e-5f * (1 + fabsf(db1[k])));

    float *bufs[] = {c.out, c.in, c.weight, c.bias, proj, din, dw, db, dw2, din1, db1};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ddpm_free(bufs[k]);
}

static void test_gradients(void **state) {
    (void)state;
    check_grad(3, 5, 7);
    check_grad(1, 1, 1);
    check_grad(5, 11, 3);
    check_grad(4, 32, 16);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_naive),
        cmocka_unit_test(test_gradients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
