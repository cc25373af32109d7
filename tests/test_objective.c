/* test_objective.c: the eps / v / x0 objectives and min-SNR-gamma
 * (objective.h), and the weighted loss (loss.h).
 *
 * - Targets against the closed forms, and the conversion of each target
 *   back to eps and x0 at t = 0, 1, T/2, T-2, T-1 of a linear and a cosine
 *   schedule, within the float rounding of the inputs carried through the
 *   conversion's coefficients (a bound computed per element).
 * - min-SNR-gamma weights against hand-computed fractions on a schedule
 *   with SNR 9, 9/11, 9/91.
 * - The weighted loss: w = 1 equals ddpm_loss, values by hand, gradients by
 *   central differences (l2, l1, huber).
 * - The wrapper: eps passes the model through bit for bit; guidance mixed in
 *   eps space (the library's order) equals mixing a v / x0 UNet's outputs
 *   and converting once, to float rounding.
 * - Bits/dim: the analytic Gaussian's optimal predictor written as eps, v
 *   and x0 gives the same bound through the wrapper.
 * The samplers with v and x0 models against the closed-form laws are in
 * test_sampler.c (test_analytic_objectives). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/eval.h"
#include "ddpm/loss.h"
#include "ddpm/objective.h"
#include "ddpm/unet.h"
#include "gradcheck.h"

#define U 0x1p-24 /* unit roundoff of float */

static void test_names(void **state) {
    (void)state;
    const char *names[] = {"eps", "v", "x0"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ddpm_objective_parse(names[k]), k);
        assert_string_equal(ddpm_objective_name((ddpm_objective)k), names[k]);
    }
    assert_int_equal(ddpm_objective_parse("V"), -1);
    assert_int_equal(ddpm_objective_parse("noise"), -1);
    assert_int_equal(ddpm_objective_parse(NULL), -1);
    assert_string_equal(ddpm_objective_name((ddpm_objective)3), "?");
}

/* ---- targets and their conversion back ------------------------------------------ */

/* |got - want| <= tol, or fail with the context. */
static void near(double got, double want, double tol, const char *what, int t) {
    if (!(fabs(got - want) <= tol))
        fail_msg("%s at t = %d: %.9g, expected %.9g (tol %.3g)", what, t, got, want, tol);
}

static void check_schedule(ddpm_schedule_kind kind) {
    enum { D = 64 };
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, kind, 1000), DDPM_OK);
    const int ts[] = {0, 1, 500, 998, 999};
    float x0[D], eps[D], xt[D], tgt[D], e_hat[D], x_hat[D];
    ddpm_rng r;
    ddpm_rng_seed(&r, 3);
    ddpm_rng_fill_uniform(&r, x0, D, -1.0f, 1.0f);
    ddpm_rng_fill_normal(&r, eps, D);
    for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
        int t = ts[k];
        double a = sqrt(s.alpha_bar[t]), b = sqrt(1.0 - s.alpha_bar[t]);
        ddpm_q_sample(xt, x0, eps, &t, &s, 1, D);
        for (int obj = 0; obj < 3; obj++) {
            ddpm_objective_target(tgt, x0, eps, &t, &s, (ddpm_objective)obj, 1, D);
            ddpm_objective_convert(e_hat, x_hat, tgt, xt, &t, &s, (ddpm_objective)obj, 1, D);
            for (int j = 0; j < D; j++) {
                double e = eps[j], x = x0[j], y = xt[j], p = tgt[j];
                double want = obj == DDPM_OBJ_V ? a * e - b * x : obj == DDPM_OBJ_X0 ? x : e;
                near(p, want, U * fabs(want) + 1e-30, "target", t);
                /* rounding of x_t (relative U) and of the target, through the closed form */
                double te, tx;
                if (obj == DDPM_OBJ_V) {
                    te = 4 * U * (a * fabs(p) + b * fabs(y) + fabs(e));
                    tx = 4 * U * (a * fabs(y) + b * fabs(p) + fabs(x));
                } else if (obj == DDPM_OBJ_X0) {
                    te = 4 * U * (fabs(y) + a * fabs(p) + b * fabs(e)) / b;
                    tx = 0.0;
                } else {
                    te = 0.0;
                    tx = 4 * U * (fabs(y) + b * fabs(p) + a * fabs(x)) / a;
                }
                near(e_hat[j], e, te, "eps_hat", t);
                near(x_hat[j], x, tx, "x0_hat", t);
            }
            if (obj == DDPM_OBJ_EPS) assert_memory_equal(e_hat, tgt, sizeof tgt);
            if (obj == DDPM_OBJ_X0) assert_memory_equal(x_hat, tgt, sizeof tgt);
        }
    }
    /* in place, as the wrapper converts */
    int t = 500;
    ddpm_objective_target(tgt, x0, eps, &t, &s, DDPM_OBJ_V, 1, D);
    ddpm_objective_convert(e_hat, NULL, tgt, xt, &t, &s, DDPM_OBJ_V, 1, D);
    ddpm_objective_convert(tgt, NULL, tgt, xt, &t, &s, DDPM_OBJ_V, 1, D);
    assert_memory_equal(tgt, e_hat, sizeof tgt);
    ddpm_schedule_free(&s);
}

static void test_targets(void **state) {
    (void)state;
    check_schedule(DDPM_SCHED_LINEAR);
    check_schedule(DDPM_SCHED_COSINE);
}

/* ---- min-SNR-gamma weights ---------------------------------------------------------- */

static void test_weights(void **state) {
    (void)state;
    /* alpha_bar = 0.9, 0.45, 0.09: SNR 9, 9/11, 9/91 */
    const double beta[3] = {0.1, 0.5, 0.8};
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init_betas(&s, DDPM_SCHED_LINEAR, beta, 3), DDPM_OK);
    const int t[3] = {0, 1, 2};
    /* [objective][t] at gamma 5 and gamma 0.5 */
    const double g5[3][3] = {{5.0 / 9, 1.0, 1.0}, {0.5, 0.45, 0.09}, {5.0, 9.0 / 11, 9.0 / 91}};
    const double g05[3][3] = {{1.0 / 18, 11.0 / 18, 1.0}, {0.05, 0.5 / (20.0 / 11), 0.09}, {0.5, 0.5, 9.0 / 91}};
    for (int obj = 0; obj < 3; obj++) {
        double w[3];
        ddpm_min_snr_weights(w, t, &s, (ddpm_objective)obj, 5.0, 3);
        for (int k = 0; k < 3; k++) near(w[k], g5[obj][k], 1e-12, "weight (gamma 5)", k);
        ddpm_min_snr_weights(w, t, &s, (ddpm_objective)obj, 0.5, 3);
        for (int k = 0; k < 3; k++) near(w[k], g05[obj][k], 1e-12, "weight (gamma 0.5)", k);
        ddpm_min_snr_weights(w, t, &s, (ddpm_objective)obj, 0.0, 3);
        for (int k = 0; k < 3; k++) assert_true(w[k] == 1.0);
    }
    ddpm_schedule_free(&s);
}

/* ---- the weighted loss -------------------------------------------------------------- */

static void test_weighted_loss(void **state) {
    (void)state;
    enum { N = 3, D = 5 };
    float p[N * D], y[N * D], g[N * D], g1[N * D];
    ddpm_rng r;
    ddpm_rng_seed(&r, 9);
    ddpm_rng_fill_normal(&r, p, N * D);
    ddpm_rng_fill_normal(&r, y, N * D);
    for (int j = 0; j < N * D; j++) { /* keep |p - y| away from the kinks at 0 and 1 */
        float d = p[j] - y[j];
        if (fabsf(d) < 0.05f || fabsf(fabsf(d) - 1.0f) < 0.05f) p[j] += 0.2f;
    }
    const double ones[N] = {1, 1, 1}, w[N] = {0.5, 2.0, 0.125};
    for (int kind = 0; kind < 3; kind++) {
        double l0 = ddpm_loss(g1, p, y, N * D, (ddpm_loss_kind)kind);
        double l1 = ddpm_loss_weighted(g, p, y, ones, N, D, (ddpm_loss_kind)kind);
        near(l1, l0, 1e-15 * l0, "w = 1 loss", kind);
        assert_memory_equal(g, g1, sizeof g);
        /* by hand: sum_r w_r sum_j l(d) / (N D) */
        double want = 0.0;
        for (int j = 0; j < N * D; j++) {
            double d = (double)(p[j] - y[j]), ad = fabs(d);
            double l = kind == DDPM_LOSS_L2 ? d * d : kind == DDPM_LOSS_L1 ? ad : ad < 1 ? 0.5 * d * d : ad - 0.5;
            want += w[j / D] * l;
        }
        want /= N * D;
        double lw = ddpm_loss_weighted(g, p, y, w, N, D, (ddpm_loss_kind)kind);
        near(lw, want, 1e-14 * want, "weighted loss", kind);
        /* central differences in pred */
        for (int j = 0; j < N * D; j++) {
            float keep = p[j], h = 1e-3f;
            p[j] = keep + h;
            double up = ddpm_loss_weighted(NULL, p, y, w, N, D, (ddpm_loss_kind)kind);
            p[j] = keep - h;
            double dn = ddpm_loss_weighted(NULL, p, y, w, N, D, (ddpm_loss_kind)kind);
            p[j] = keep;
            double num = (up - dn) / ((double)(keep + h) - (double)(keep - h));
            near(g[j], num, 1e-4 * fabs(num) + 1e-7, "weighted loss gradient", j);
        }
    }
    assert_true(ddpm_loss_weighted(g, p, y, w, 0, D, DDPM_LOSS_L2) == 0.0);
}

/* ---- the wrapper ------------------------------------------------------------------------ */

static ddpm_unet *tiny_unet(int num_classes, int max_batch) {
    ddpm_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1, c.res = 8, c.ch = 8, c.ch_mult[0] = 1, c.ch_mult[1] = 2, c.num_levels = 2;
    c.num_res_blocks = 1, c.groups = 4, c.num_classes = num_classes;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, max_batch, false), DDPM_OK);
    ddpm_unet_init_params(m, 5);
    ddpm_rng r; /* no zero-initialised output layer */
    ddpm_rng_seed(&r, 6);
    float *p = ddpm_unet_params(m);
    for (size_t j = 0; j < ddpm_unet_num_params(m); j++) p[j] += 0.05f * ddpm_rng_normal(&r);
    return m;
}

/* Guidance over the wrapper (mixing eps) against mixing the raw outputs of
 * one batched call and converting once; eps passes through bit for bit. */
static void test_guidance_space(void **state) {
    (void)state;
    enum { N = 3, D = 64, C = 4 };
    ddpm_unet *m = tiny_unet(C, 2 * N);
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    float *x = gc_alloc(N * D), *e = gc_alloc(N * D), *ref = gc_alloc(N * D);
    float *x2 = gc_alloc(2 * N * D), *o2 = gc_alloc(2 * N * D);
    ddpm_rng r;
    ddpm_rng_seed(&r, 7);
    ddpm_rng_fill_normal(&r, x, N * D);
    int t[N] = {3, 50, 97}, lab[N] = {0, 3, 1}, t2[2 * N], lab2[2 * N];
    for (int n = 0; n < N; n++) t2[n] = t2[N + n] = t[n], lab2[n] = lab[n], lab2[N + n] = C;
    memcpy(x2, x, sizeof(float) * N * D);
    memcpy(x2 + N * D, x, sizeof(float) * N * D);
    assert_int_equal(ddpm_unet_forward(m, o2, x2, t2, lab2, 2 * N), DDPM_OK);
    for (int obj = 0; obj < 3; obj++) {
        ddpm_objective_model om;
        ddpm_guidance g;
        assert_int_equal(ddpm_objective_model_init(&om, ddpm_unet_eps, m, (ddpm_objective)obj, &s, D), DDPM_OK);
        assert_int_equal(ddpm_guidance_init(&g, ddpm_objective_eps, &om, 2.5f, C, D, N), DDPM_OK);
        assert_int_equal(ddpm_guidance_eps(&g, e, x, t, lab, N), DDPM_OK);
        double err = 0.0, scale = 0.0;
        for (int j = 0; j < N * D; j++) ref[j] = (float)(-1.5 * (double)o2[N * D + j] + 2.5 * (double)o2[j]);
        ddpm_objective_convert(ref, NULL, ref, x, t, &s, (ddpm_objective)obj, N, D);
        for (int j = 0; j < N * D; j++) err = fmax(err, fabs(e[j] - ref[j])), scale = fmax(scale, fabs(ref[j]));
        printf("  %-3s guided eps: output-space vs eps-space mixing, max diff %.3g (scale %.3g)\n",
               ddpm_objective_name((ddpm_objective)obj), err, scale);
        /* x0 at t = 3 divides by b = 0.04: the inputs' rounding grows 1/b times */
        if (!(err <= 1e-5 * scale)) fail_msg("guidance mixes differently in the two spaces");
        if (obj == DDPM_OBJ_EPS) { /* the wrapper adds nothing */
            ddpm_guidance g0;
            assert_int_equal(ddpm_guidance_init(&g0, ddpm_unet_eps, m, 2.5f, C, D, N), DDPM_OK);
            assert_int_equal(ddpm_guidance_eps(&g0, ref, x, t, lab, N), DDPM_OK);
            assert_memory_equal(e, ref, sizeof(float) * N * D);
            ddpm_guidance_free(&g0);
        } else {
            assert_memory_not_equal(e, o2, sizeof(float) * N * D);
        }
        ddpm_guidance_free(&g);
    }
    /* bad arguments: a respaced schedule, an unknown objective, a timestep outside T */
    ddpm_objective_model om;
    ddpm_schedule rs;
    int tau[3] = {0, 50, 99};
    assert_int_equal(ddpm_schedule_init_respaced(&rs, &s, tau, 3), DDPM_OK);
    assert_int_equal(ddpm_objective_model_init(&om, ddpm_unet_eps, m, DDPM_OBJ_V, &rs, D), DDPM_ERR_ARG);
    assert_int_equal(ddpm_objective_model_init(&om, ddpm_unet_eps, m, (ddpm_objective)3, &s, D), DDPM_ERR_ARG);
    assert_int_equal(ddpm_objective_model_init(&om, ddpm_unet_eps, m, DDPM_OBJ_X0, &s, D), DDPM_OK);
    int bad[N] = {3, 100, 5};
    assert_int_equal(ddpm_objective_eps(&om, e, x, bad, lab, N), DDPM_ERR_ARG);
    ddpm_schedule_free(&rs);
    ddpm_schedule_free(&s);
    ddpm_free(x), ddpm_free(e), ddpm_free(ref), ddpm_free(x2), ddpm_free(o2);
    ddpm_unet_free(m);
}

/* ---- bits/dim with equivalent predictors ------------------------------------------------- */

#define MU 0.1
#define SD 0.2
enum { BD = 32 };

typedef struct {
    const ddpm_schedule *s;
    ddpm_objective obj;
} gauss_ctx;

/* The optimal predictor for x0 ~ N(mu, s^2 I) in obj's space:
 * E[x0 | x_t] = mu + a s^2 (x - a mu) / V, E[eps | x_t] = b (x - a mu) / V,
 * V = a^2 s^2 + b^2. */
static ddpm_status gauss_pred(void *p, float *out, const float *x, const int *t, const int *labels, int N) {
    (void)labels;
    const gauss_ctx *c = p;
    for (int n = 0; n < N; n++) {
        double ab = c->s->alpha_bar[t[n]], a = sqrt(ab), b = sqrt(1.0 - ab), V = ab * SD * SD + 1.0 - ab;
        for (int j = n * BD; j < (n + 1) * BD; j++) {
            double e = b * (x[j] - a * MU) / V, x0 = MU + a * SD * SD * (x[j] - a * MU) / V;
            out[j] = (float)(c->obj == DDPM_OBJ_V ? a * e - b * x0 : c->obj == DDPM_OBJ_X0 ? x0 : e);
        }
    }
    return DDPM_OK;
}

static void test_bpd_equivalent(void **state) {
    (void)state;
    enum { N = 4, T = 100 };
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, T), DDPM_OK);
    float x0[N * BD], *work = gc_alloc(ddpm_bpd_workspace(N, BD));
    ddpm_rng r;
    ddpm_rng_seed(&r, 21);
    for (int j = 0; j < N * BD; j++) x0[j] = (float)(MU + SD * ddpm_rng_normal(&r));
    double terms[3][N * (T + 1)];
    for (int obj = 0; obj < 3; obj++) {
        gauss_ctx g = {&s, (ddpm_objective)obj};
        ddpm_objective_model om;
        assert_int_equal(ddpm_objective_model_init(&om, gauss_pred, &g, (ddpm_objective)obj, &s, BD), DDPM_OK);
        ddpm_rng rngs[N];
        for (int n = 0; n < N; n++) ddpm_rng_seed(&rngs[n], 100 + (uint64_t)n);
        assert_int_equal(ddpm_bpd_loop(terms[obj], x0, N, BD, &s, DDPM_VAR_SMALL, ddpm_objective_eps, &om, rngs, work, NULL, NULL),
                         DDPM_OK);
    }
    for (int obj = 1; obj < 3; obj++) {
        double worst = 0.0;
        for (int n = 0; n < N; n++) {
            double te = 0.0, to = 0.0;
            for (int t = 0; t <= T; t++) te += terms[0][n * (T + 1) + t], to += terms[obj][n * (T + 1) + t];
            worst = fmax(worst, fabs(to - te) / te);
        }
        printf("  bits/dim of the %s model vs the eps model: max relative difference %.3g\n",
               ddpm_objective_name((ddpm_objective)obj), worst);
        if (!(worst <= 1e-6)) fail_msg("the %s model's bound differs from the eps model's", ddpm_objective_name((ddpm_objective)obj));
    }
    /* the control: a different predictor (x0 read as eps) changes the bound */
    gauss_ctx g = {&s, DDPM_OBJ_X0};
    ddpm_objective_model om;
    assert_int_equal(ddpm_objective_model_init(&om, gauss_pred, &g, DDPM_OBJ_EPS, &s, BD), DDPM_OK);
    ddpm_rng rngs[N];
    for (int n = 0; n < N; n++) ddpm_rng_seed(&rngs[n], 100 + (uint64_t)n);
    double wrong[N * (T + 1)];
    assert_int_equal(ddpm_bpd_loop(wrong, x0, N, BD, &s, DDPM_VAR_SMALL, ddpm_objective_eps, &om, rngs, work, NULL, NULL), DDPM_OK);
    double a = 0.0, b = 0.0;
    for (int t = 0; t <= T; t++) a += terms[0][t], b += wrong[t];
    assert_true(fabs(a - b) > 0.01 * a);
    ddpm_free(work);
    ddpm_schedule_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_targets),
        cmocka_unit_test(test_weights),        cmocka_unit_test(test_weighted_loss),
        cmocka_unit_test(test_guidance_space), cmocka_unit_test(test_bpd_equivalent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
