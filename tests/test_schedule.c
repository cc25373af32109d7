/* test_schedule.c: beta schedules, their derived arrays and respacing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/schedule.h"

static const ddpm_schedule_kind KINDS[] = {DDPM_SCHED_LINEAR, DDPM_SCHED_COSINE,
                                           DDPM_SCHED_QUADRATIC, DDPM_SCHED_SIGMOID};
static const int TS[] = {2, 10, 300, 1000};
#define NKINDS 4
#define NTS 4

static int close_rel(double a, double b, double tol) {
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) + 1e-300;
}

static void test_all_kinds_basic_properties(void **state) {
    (void)state;
    for (int k = 0; k < NKINDS; k++) {
        for (int ti = 0; ti < NTS; ti++) {
            int T = TS[ti];
            ddpm_schedule s;
            assert_int_equal(ddpm_schedule_init(&s, KINDS[k], T), DDPM_OK);
            assert_int_equal(s.T, T);
            assert_int_equal(s.kind, KINDS[k]);
            double ab = 1.0;
            for (int t = 0; t < T; t++) {
                double b = s.beta[t];
                assert_true(b > 0.0 && b < 1.0);
                assert_true(b <= 0.999);
                assert_true(close_rel(s.alpha[t], 1.0 - b, 1e-15));
                double abp = ab;
                ab *= 1.0 - b; /* independent cumulative product */
                assert_true(close_rel(s.alpha_bar[t], ab, 1e-12));
                assert_true(close_rel(s.alpha_bar_prev[t], abp, 1e-12));
                if (t > 0) assert_true(s.alpha_bar[t] < s.alpha_bar[t - 1]);
                assert_true(s.alpha_bar[t] > 0.0);
                assert_true(close_rel(s.sqrt_alpha_bar[t], sqrt(ab), 1e-12));
                assert_true(close_rel(s.sqrt_one_minus_alpha_bar[t], sqrt(1.0 - ab), 1e-12));
                /* posterior q(x_{t-1} | x_t, x_0) */
                double pv = b * (1.0 - abp) / (1.0 - ab);
                assert_true(fabs(s.posterior_var[t] - pv) <= 1e-12 * b);
                assert_true(close_rel(s.coef_x0[t], sqrt(abp) * b / (1.0 - ab), 1e-12));
                assert_true(fabs(s.coef_xt[t] - sqrt(1.0 - b) * (1.0 - abp) / (1.0 - ab)) <=
                            1e-12);
                if (t > 0) {
                    assert_true(s.posterior_var[t] > 0.0 && s.posterior_var[t] < b);
                    assert_true(close_rel(s.posterior_log_var_clipped[t], log(pv), 1e-9));
                }
                assert_int_equal(s.timesteps[t], t);
            }
            assert_true(s.alpha_bar_prev[0] == 1.0);
            assert_true(s.posterior_var[0] == 0.0);
            assert_true(s.posterior_log_var_clipped[0] == s.posterior_log_var_clipped[1]);
            assert_true(fabs(s.coef_x0[0] - 1.0) < 1e-12 && fabs(s.coef_xt[0]) < 1e-15);
            ddpm_schedule_free(&s);
            assert_null(s.beta);
        }
    }
}

static void test_linear_endpoints_and_scaling(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    assert_true(fabs(s.beta[0] - 1e-4) < 1e-15);
    assert_true(fabs(s.beta[999] - 0.02) < 1e-15);
    /* evenly spaced */
    double step = (0.02 - 1e-4) / 999.0;
    for (int t = 1; t < 1000; t++) assert_true(fabs(s.beta[t] - s.beta[t - 1] - step) < 1e-12);
    assert_true(s.sqrt_alpha_bar[999] < 0.01);
    ddpm_schedule_free(&s);

    /* s = 1000/T: at T = 300 the schedule still ends near pure noise (the
     * unscaled one would leave sqrt(alpha_bar) ~ 0.22). */
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 300), DDPM_OK);
    double sc = 1000.0 / 300.0;
    assert_true(close_rel(s.beta[0], sc * 1e-4, 1e-12));
    assert_true(close_rel(s.beta[299], sc * 0.02, 1e-12));
    assert_true(s.sqrt_alpha_bar[299] < 0.01);
    ddpm_schedule_free(&s);

    /* the sigmoid schedule has the same range and the same scaling */
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_SIGMOID, 300), DDPM_OK);
    double lo = sc * 1e-4, hi = sc * 0.02;
    assert_true(close_rel(s.beta[0], lo + (hi - lo) / (1.0 + exp(6.0)), 1e-12));
    assert_true(close_rel(s.beta[299], lo + (hi - lo) / (1.0 + exp(-6.0)), 1e-12));
    assert_true(s.sqrt_alpha_bar[299] < 0.01);
    ddpm_schedule_free(&s);

    /* quadratic: linspace of square roots, squared */
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_QUADRATIC, 300), DDPM_OK);
    assert_true(close_rel(s.beta[0], lo, 1e-12));
    assert_true(close_rel(s.beta[299], hi, 1e-12));
    double r = sqrt(lo) + (sqrt(hi) - sqrt(lo)) * 100.0 / 299.0;
    assert_true(close_rel(s.beta[100], r * r, 1e-12));
    ddpm_schedule_free(&s);

    /* tiny T: the scaled betas exceed 1 and are clipped */
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 2), DDPM_OK);
    assert_true(close_rel(s.beta[0], 0.05, 1e-12));
    assert_true(s.beta[1] == 0.999);
    ddpm_schedule_free(&s);
}

/* Continuous cosine alpha_bar (unnormalised). */
static double cosine_f(double u) {
    double c = cos((u + 0.008) / 1.008 * 3.14159265358979323846 / 2.0);
    return c * c;
}

static void test_cosine_closed_form(void **state) {
    (void)state;
    for (int ti = 0; ti < NTS; ti++) {
        int T = TS[ti];
        ddpm_schedule s;
        assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_COSINE, T), DDPM_OK);
        int checked = 0;
        for (int t = 0; t < T; t++) {
            if (s.beta[t] >= 0.999) break; /* clipped: later alpha_bars differ */
            double want = cosine_f((double)(t + 1) / T) / cosine_f(0.0);
            assert_true(close_rel(s.alpha_bar[t], want, 1e-9));
            checked++;
        }
        assert_true(checked >= T - 1); /* only the last beta is clipped */
        assert_true(s.beta[T - 1] == 0.999); /* f(1) = 0 */
        ddpm_schedule_free(&s);
    }
}

static void test_rejects_bad_arguments(void **state) {
    (void)state;
    ddpm_schedule s;
    int bad[] = {1, 0, -5, DDPM_SCHEDULE_MAX_T + 1};
    for (int i = 0; i < 4; i++) {
        ddpm_clear_error();
        assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, bad[i]), DDPM_ERR_ARG);
        assert_true(strlen(ddpm_last_error()) > 0);
        assert_null(s.beta);
        ddpm_schedule_free(&s); /* safe on a failed init */
    }
    assert_int_equal(ddpm_schedule_init(&s, (ddpm_schedule_kind)7, 10), DDPM_ERR_ARG);
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_COSINE, DDPM_SCHEDULE_MAX_T), DDPM_OK);
    ddpm_schedule_free(&s);
}

static void test_parse_and_name(void **state) {
    (void)state;
    for (int k = 0; k < NKINDS; k++)
        assert_int_equal(ddpm_schedule_parse(ddpm_schedule_name(KINDS[k])), (int)KINDS[k]);
    assert_string_equal(ddpm_schedule_name(DDPM_SCHED_COSINE), "cosine");
    assert_int_equal(ddpm_schedule_parse("linear"), DDPM_SCHED_LINEAR);
    assert_int_equal(ddpm_schedule_parse("Linear"), -1);
    assert_int_equal(ddpm_schedule_parse(""), -1);
    assert_int_equal(ddpm_schedule_parse(NULL), -1);
}

static void test_respace(void **state) {
    (void)state;
    int tau[1000];
    assert_int_equal(ddpm_schedule_respace(tau, 1000, 1000), DDPM_OK);
    for (int i = 0; i < 1000; i++) assert_int_equal(tau[i], i);
    assert_int_equal(ddpm_schedule_respace(tau, 1, 1000), DDPM_OK);
    assert_int_equal(tau[0], 999);
    assert_int_equal(ddpm_schedule_respace(tau, 10, 1000), DDPM_OK);
    for (int i = 0; i < 10; i++) assert_int_equal(tau[i], 111 * i);
    /* uneven ratios: strictly increasing, ends at 0 and T-1, gaps differ by <= 1 */
    int Ks[] = {2, 7, 50, 299, 300};
    for (int k = 0; k < 5; k++) {
        int K = Ks[k], T = 300;
        assert_int_equal(ddpm_schedule_respace(tau, K, T), DDPM_OK);
        assert_int_equal(tau[0], 0);
        assert_int_equal(tau[K - 1], T - 1);
        int gmin = T, gmax = 0;
        for (int i = 1; i < K; i++) {
            int g = tau[i] - tau[i - 1];
            assert_true(g >= 1);
            gmin = g < gmin ? g : gmin;
            gmax = g > gmax ? g : gmax;
        }
        if (K > 1) assert_true(gmax - gmin <= 1);
    }
    /* the rounding of i (T-1)/(K-1): to nearest, halves away from zero (C's
     * round()), e.g. T = 10, K = 3: 0, 4.5 -> 5, 9 */
    const int KT[4][2] = {{3, 10}, {7, 100}, {5, 12}, {4, 1000}};
    for (int c = 0; c < 4; c++) {
        int K = KT[c][0], T = KT[c][1];
        assert_int_equal(ddpm_schedule_respace(tau, K, T), DDPM_OK);
        for (int i = 0; i < K; i++) assert_int_equal(tau[i], (int)round(i * (double)(T - 1) / (K - 1)));
    }
    assert_int_equal(ddpm_schedule_respace(tau, 3, 10), DDPM_OK);
    assert_int_equal(tau[1], 5);
    assert_int_equal(ddpm_schedule_respace(tau, 0, 10), DDPM_ERR_ARG);
    assert_int_equal(ddpm_schedule_respace(tau, 11, 10), DDPM_ERR_ARG);
}

static void test_respaced_schedule(void **state) {
    (void)state;
    for (int k = 0; k < NKINDS; k++) {
        ddpm_schedule base, r;
        assert_int_equal(ddpm_schedule_init(&base, KINDS[k], 1000), DDPM_OK);
        int tau[10];
        assert_int_equal(ddpm_schedule_respace(tau, 10, 1000), DDPM_OK);
        assert_int_equal(ddpm_schedule_init_respaced(&r, &base, tau, 10), DDPM_OK);
        assert_int_equal(r.T, 10);
        assert_int_equal(r.kind, base.kind);
        double ab = 1.0;
        for (int i = 0; i < 10; i++) {
            assert_true(r.alpha_bar[i] == base.alpha_bar[tau[i]]);
            assert_int_equal(r.timesteps[i], tau[i]);
            double abp = i > 0 ? base.alpha_bar[tau[i - 1]] : 1.0;
            assert_true(close_rel(r.alpha_bar_prev[i], abp, 1e-15));
            assert_true(close_rel(r.beta[i], 1.0 - base.alpha_bar[tau[i]] / abp, 1e-12));
            assert_true(r.beta[i] > 0.0 && r.beta[i] < 1.0);
            ab *= 1.0 - r.beta[i]; /* the new betas reproduce the kept alpha_bars */
            assert_true(close_rel(ab, r.alpha_bar[i], 1e-9));
            double pv = r.beta[i] * (1.0 - abp) / (1.0 - r.alpha_bar[i]);
            assert_true(fabs(r.posterior_var[i] - pv) <= 1e-12 * r.beta[i]);
        }
        assert_true(r.beta[0] == base.beta[0]); /* tau_0 = 0 follows t = -1 */

        /* respacing a respaced schedule keeps the ORIGINAL timesteps */
        int sub[3] = {1, 4, 9};
        ddpm_schedule r2;
        assert_int_equal(ddpm_schedule_init_respaced(&r2, &r, sub, 3), DDPM_OK);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(r2.timesteps[i], tau[sub[i]]);
            assert_true(r2.alpha_bar[i] == base.alpha_bar[tau[sub[i]]]);
        }
        ddpm_schedule_free(&r2);
        ddpm_schedule_free(&r);

        /* K = T reproduces the base schedule exactly */
        int id[1000];
        assert_int_equal(ddpm_schedule_respace(id, 1000, 1000), DDPM_OK);
        assert_int_equal(ddpm_schedule_init_respaced(&r, &base, id, 1000), DDPM_OK);
        assert_memory_equal(r.beta, base.beta, 1000 * sizeof(double));
        assert_memory_equal(r.alpha_bar, base.alpha_bar, 1000 * sizeof(double));
        assert_memory_equal(r.posterior_var, base.posterior_var, 1000 * sizeof(double));
        assert_memory_equal(r.coef_x0, base.coef_x0, 1000 * sizeof(double));
        assert_memory_equal(r.timesteps, base.timesteps, 1000 * sizeof(int));
        ddpm_schedule_free(&r);

        /* K = 1: one step straight from T-1 to x_0 */
        int one = 999;
        assert_int_equal(ddpm_schedule_init_respaced(&r, &base, &one, 1), DDPM_OK);
        assert_true(r.alpha_bar[0] == base.alpha_bar[999]);
        assert_true(fabs(r.coef_x0[0] - 1.0) < 1e-12 && fabs(r.coef_xt[0]) < 1e-15);
        assert_true(isfinite(r.posterior_log_var_clipped[0]));
        ddpm_schedule_free(&r);

        /* bad subsequences */
        int dup[3] = {0, 5, 5}, out_of_range[2] = {3, 1000};
        assert_int_equal(ddpm_schedule_init_respaced(&r, &base, dup, 3), DDPM_ERR_ARG);
        assert_int_equal(ddpm_schedule_init_respaced(&r, &base, out_of_range, 2), DDPM_ERR_ARG);
        ddpm_schedule_free(&base);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_kinds_basic_properties),
        cmocka_unit_test(test_linear_endpoints_and_scaling),
        cmocka_unit_test(test_cosine_closed_form),
        cmocka_unit_test(test_rejects_bad_arguments),
        cmocka_unit_test(test_parse_and_name),
        cmocka_unit_test(test_respace),
        cmocka_unit_test(test_respaced_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
