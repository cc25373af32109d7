/* test_loss.c: l2 / l1 / huber values and gradients against hand-computed
 * examples, gradient checks of pred, double accumulation, name parsing;
 * softmax cross-entropy: hand-computed values, extreme logits, gradient check. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/loss.h"
#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "gradcheck.h"

/* d = pred - target = 0.75, -1.5, 2.5, -0.25, 0 (all exact in float): both
 * huber branches, both signs, and d = 0 */
static const float PRED[5] = {0.75f, -0.5f, 2.0f, 0.0f, 3.0f};
static const float TARGET[5] = {0.0f, 1.0f, -0.5f, 0.25f, 3.0f};

static void check_loss(ddpm_loss_kind kind, double want, const float want_grad[5]) {
    float dpred[5];
    for (int i = 0; i < 5; i++) dpred[i] = NAN; /* must be overwritten */
    double L = ddpm_loss(dpred, PRED, TARGET, 5, kind);
    if (fabs(L - want) > 1e-12)
        fail_msg("%s loss = %.17g, want %.17g", ddpm_loss_name(kind), L, want);
    for (int i = 0; i < 5; i++) assert_float_equal(dpred[i], want_grad[i], 1e-7f);
    /* same value without the gradient */
    assert_true(ddpm_loss(NULL, PRED, TARGET, 5, kind) == L);
}

static void test_l2_values(void **state) {
    (void)state;
    /* (0.5625 + 2.25 + 6.25 + 0.0625 + 0) / 5; grad 2 d / 5 */
    const float g[5] = {0.3f, -0.6f, 1.0f, -0.1f, 0.0f};
    check_loss(DDPM_LOSS_L2, 9.125 / 5, g);
}

static void test_l1_values(void **state) {
    (void)state;
    /* (0.75 + 1.5 + 2.5 + 0.25 + 0) / 5; grad sign(d) / 5, 0 at d = 0 */
    const float g[5] = {0.2f, -0.2f, 0.2f, -0.2f, 0.0f};
    check_loss(DDPM_LOSS_L1, 5.0 / 5, g);
}

static void test_huber_values(void **state) {
    (void)state;
    /* 0.5*0.5625 + (1.5 - 0.5) + (2.5 - 0.5) + 0.5*0.0625 + 0 = 3.3125; grad
     * d / 5 inside |d| < 1, sign(d) / 5 outside */
    const float g[5] = {0.15f, -0.2f, 0.2f, -0.05f, 0.0f};
    check_loss(DDPM_LOSS_HUBER, 3.3125 / 5, g);
}

static void test_huber_at_one(void **state) {
    (void)state;
    /* |d| = 1 exactly: both branches give 0.5; gradient sign(d) = d (torch agrees) */
    float p[2] = {1.0f, -1.0f}, y[2] = {0.0f, 0.0f}, g[2];
    assert_true(ddpm_loss(g, p, y, 2, DDPM_LOSS_HUBER) == 0.5);
    assert_float_equal(g[0], 0.5f, 0);
    assert_float_equal(g[1], -0.5f, 0);
}

typedef struct {
    float out[1]; /* the loss, rounded to float */
    float *pred;
    const float *target;
    size_t n;
    ddpm_loss_kind kind;
} loss_ctx;

static void loss_fwd(void *p) {
    loss_ctx *c = p;
    c->out[0] = (float)ddpm_loss(NULL, c->pred, c->target, c->n, c->kind);
}

/* pred = target + d with |d| drawn from [lo1, hi1] or [lo2, hi2], random sign:
 * the ranges keep d away from the kinks of l1 (0) and huber (+-1). */
static void check_gradcheck(ddpm_loss_kind kind, int n, float lo1, float hi1, float lo2, float hi2) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 100 + (uint64_t)kind);
    float *pred = gc_alloc(n), *target = gc_alloc(n), *dpred = gc_alloc(n);
    gc_fill_normal(&rng, target, n);
    for (int i = 0; i < n; i++) {
        double u = ddpm_rng_uniform(&rng);
        float mag = (i % 2 == 0) ? lo1 + (float)u * (hi1 - lo1) : lo2 + (float)u * (hi2 - lo2);
        float sign = ddpm_rng_uniform(&rng) < 0.5 ? -1.0f : 1.0f;
        pred[i] = target[i] + sign * mag;
    }
    loss_ctx c = {{0}, pred, target, (size_t)n, kind};
    loss_fwd(&c);
    ddpm_loss(dpred, pred, target, n, kind);
    float proj[1] = {1.0f};
    gc_tensor t[] = {{"pred", pred, dpred, (size_t)n}};
    char name[64];
    snprintf(name, sizeof name, "loss %s n=%d", ddpm_loss_name(kind), n);
    gc_check(name, loss_fwd, &c, c.out, 1, proj, t, 1, GC_EPS, GC_TOL, GC_MAX_ELEMS);
    ddpm_free(pred);
    ddpm_free(target);
    ddpm_free(dpred);
}

static void test_gradcheck(void **state) {
    (void)state;
    /* |d| - kink > 0.05 >> eps = 1e-3 (plus the float rounding of pred) */
    check_gradcheck(DDPM_LOSS_L2, 9, 0.05f, 0.9f, 0.1f, 1.5f);
    check_gradcheck(DDPM_LOSS_L1, 9, 0.05f, 0.5f, 0.1f, 0.9f);
    check_gradcheck(DDPM_LOSS_HUBER, 7, 0.05f, 0.95f, 1.05f, 2.0f);
}

static void test_accumulates_in_double(void **state) {
    (void)state;
    /* 2^21 terms of 0.1f: a float running sum drifts by percents, a double one
     * is exact to ~1e-10. */
    size_t n = (size_t)1 << 21;
    float *p = gc_alloc(n), *y = gc_alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = 0.1f;
    double want = (double)0.1f;
    double l1 = ddpm_loss(NULL, p, y, n, DDPM_LOSS_L1);
    double l2 = ddpm_loss(NULL, p, y, n, DDPM_LOSS_L2);
    if (fabs(l1 - want) > 1e-9 * want) fail_msg("l1 mean %.17g, want %.17g", l1, want);
    if (fabs(l2 - want * want) > 1e-9 * want * want)
        fail_msg("l2 mean %.17g, want %.17g", l2, want * want);
    ddpm_free(p);
    ddpm_free(y);
}

static void test_parse_and_name(void **state) {
    (void)state;
    assert_int_equal(ddpm_loss_parse("l2"), DDPM_LOSS_L2);
    assert_int_equal(ddpm_loss_parse("l1"), DDPM_LOSS_L1);
    assert_int_equal(ddpm_loss_parse("huber"), DDPM_LOSS_HUBER);
    const char *bad[] = {"", "L2", "mse", "l3", "huber ", "hub", "l2x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_int_equal(ddpm_loss_parse(bad[i]), -1);
    assert_int_equal(ddpm_loss_parse(NULL), -1);
    for (int k = DDPM_LOSS_L2; k <= DDPM_LOSS_HUBER; k++)
        assert_int_equal(ddpm_loss_parse(ddpm_loss_name((ddpm_loss_kind)k)), k);
    assert_string_equal(ddpm_loss_name(DDPM_LOSS_HUBER), "huber");
}

/* ---- softmax cross-entropy ---------------------------------------------------- */

/* Hand-computed: logits (0, ln 2, ln 5) -> softmax (1/8, 2/8, 5/8); with
 * label 1 the loss is ln 4, with label 2 ln(8/5). Rows of a batch average. */
static void test_softmax_ce_values(void **state) {
    (void)state;
    const float logits[6] = {0.0f, (float)log(2.0), (float)log(5.0), 0.0f, (float)log(2.0), (float)log(5.0)};
    const int labels[2] = {1, 2};
    float probs[6], dl[6] = {0};
    double loss = ddpm_softmax_ce_forward(probs, logits, labels, 2, 3);
    assert_true(fabs(loss - 0.5 * (log(4.0) + log(8.0 / 5.0))) < 1e-7);
    const double want_p[3] = {0.125, 0.25, 0.625};
    for (int i = 0; i < 6; i++) assert_true(fabs(probs[i] - want_p[i % 3]) < 1e-7);
    ddpm_softmax_ce_backward(dl, probs, labels, 2, 3, 1.0f);
    const double want_g[6] = {0.0625, -0.375, 0.3125, 0.0625, 0.125, -0.1875};
    for (int i = 0; i < 6; i++) assert_true(fabs(dl[i] - want_g[i]) < 1e-7);
    float p2[3];
    ddpm_softmax_forward(p2, logits, 1, 3);
    for (int i = 0; i < 3; i++) assert_true(p2[i] == probs[i]);
}

/* Huge logits neither overflow nor give inf: a confident wrong answer costs
 * its margin. */
static void test_softmax_ce_extreme(void **state) {
    (void)state;
    const float logits[3] = {1000.0f, -1000.0f, 0.0f};
    const int lab0[1] = {0}, lab1[1] = {1};
    float probs[3];
    assert_true(ddpm_softmax_ce_forward(probs, logits, lab0, 1, 3) < 1e-300 + 1e-12);
    double l1 = ddpm_softmax_ce_forward(probs, logits, lab1, 1, 3);
    assert_true(fabs(l1 - 2000.0) < 1e-9);
    assert_true(probs[0] == 1.0f && probs[1] == 0.0f && isfinite(probs[2]));
    assert_true(ddpm_softmax_ce_forward(NULL, logits, lab1, 0, 3) == 0.0);
}

typedef struct {
    float out[1];
    float *logits;
    int *labels;
    int N, K;
    double base; /* the unperturbed loss */
} sce_ctx;

/* The checked output is loss - base: the constant does not change the
 * gradient, and the small difference survives the rounding to float that
 * the loss itself (~2) would lose at eps = 1e-3. */
static void sce_fwd(void *p) {
    sce_ctx *c = p;
    c->out[0] = (float)(ddpm_softmax_ce_forward(NULL, c->logits, c->labels, c->N, c->K) - c->base);
}

static void test_softmax_ce_gradcheck(void **state) {
    (void)state;
    const int shapes[][2] = {{1, 2}, {5, 10}, {16, 7}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], K = shapes[s][1];
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 500 + (uint64_t)s);
        float *logits = gc_alloc((size_t)N * K), *probs = gc_alloc((size_t)N * K);
        float *dl = gc_alloc((size_t)N * K);
        int labels[16];
        gc_fill_normal(&rng, logits, (size_t)N * K);
        for (int n = 0; n < N; n++) labels[n] = (int)ddpm_rng_below(&rng, (uint32_t)K);
        sce_ctx c = {{0}, logits, labels, N, K, 0.0};
        c.base = ddpm_softmax_ce_forward(probs, logits, labels, N, K);
        float dloss = 0.75f;
        ddpm_softmax_ce_backward(dl, probs, labels, N, K, dloss);
        float proj[1] = {dloss};
        gc_tensor t[] = {{"logits", logits, dl, (size_t)N * K}};
        char name[64];
        snprintf(name, sizeof name, "softmax_ce N=%d K=%d", N, K);
        gc_check(name, sce_fwd, &c, c.out, 1, proj, t, 1, GC_EPS, GC_TOL, GC_MAX_ELEMS);
        /* backward accumulates */
        float *dl2 = gc_alloc((size_t)N * K);
        for (int i = 0; i < N * K; i++) dl2[i] = 1.0f;
        ddpm_softmax_ce_backward(dl2, probs, labels, N, K, dloss);
        for (int i = 0; i < N * K; i++) assert_true(fabsf(dl2[i] - 1.0f - dl[i]) < 1e-6f);
        ddpm_free(logits);
        ddpm_free(probs);
        ddpm_free(dl);
        ddpm_free(dl2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_l2_values),
        cmocka_unit_test(test_l1_values),
        cmocka_unit_test(test_huber_values),
        cmocka_unit_test(test_huber_at_one),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulates_in_double),
        cmocka_unit_test(test_parse_and_name),
        cmocka_unit_test(test_softmax_ce_values),
        cmocka_unit_test(test_softmax_ce_extreme),
        cmocka_unit_test(test_softmax_ce_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
