/* test_eval_metrics.c: the Fréchet distance against closed forms (diagonal,
 * commuting and non-commuting 2x2 Gaussians, identical sets) and against
 * scripts/eval_reference.py's numpy route (tests/data/eval_ref.fix);
 * precision/recall against the numpy brute force and hand-made sets; the
 * class metrics against hand-computed values. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ddpm/common.h"
#include "ddpm/eval.h"
#include "fixture.h"

static double fd(const double *m1, const double *c1, const double *m2, const double *c2, int d) {
    double v = NAN;
    assert_int_equal(ddpm_frechet_distance(&v, m1, c1, m2, c2, d), DDPM_OK);
    return v;
}

static void test_fid_closed_forms(void **state) {
    (void)state;
    /* diagonal: |dmu|^2 + sum (sqrt a - sqrt b)^2 */
    double m1[3] = {1, 2, 3}, m2[3] = {0, 2, 5};
    double a[9] = {4, 0, 0, 0, 9, 0, 0, 0, 0.25}, b[9] = {1, 0, 0, 0, 16, 0, 0, 0, 0};
    double want = 1 + 0 + 4 + (2 - 1) * (2 - 1) + (3 - 4) * (3 - 4) + 0.25;
    assert_true(fabs(fd(m1, a, m2, b, 3) - want) < 1e-12);
    /* identical Gaussians: 0 */
    assert_true(fabs(fd(m1, a, m1, a, 3)) < 1e-12);
    /* 2x2 non-commuting: Tr sqrt(sqrt(A) B sqrt(A)) = sqrt(Tr(AB) + 2 sqrt(det A det B)) */
    double A[4] = {2, 0.6, 0.6, 1}, B[4] = {1, -0.4, -0.4, 3}, z[2] = {0, 0}, mu[2] = {0.5, -1};
    double trab = A[0] * B[0] + A[1] * B[2] + A[2] * B[1] + A[3] * B[3];
    double det = (A[0] * A[3] - A[1] * A[2]) * (B[0] * B[3] - B[1] * B[2]);
    double w2 = 0.25 + 1 + (A[0] + A[3]) + (B[0] + B[3]) - 2 * sqrt(trab + 2 * sqrt(det));
    double got = fd(z, A, mu, B, 2);
    printf("fid 2x2: %.15g want %.15g\n", got, w2);
    assert_true(fabs(got - w2) < 1e-12 * (1 + w2));
    /* symmetric in its arguments */
    assert_true(fabs(fd(mu, B, z, A, 2) - w2) < 1e-12 * (1 + w2));
}

static void test_stats(void **state) {
    (void)state;
    /* rows (1,2), (3,2), (5,8): mean (3,4), cov with 1/(n-1) */
    const float x[6] = {1, 2, 3, 2, 5, 8};
    ddpm_gauss_stats s;
    assert_int_equal(ddpm_gauss_stats_compute(&s, x, 3, 2), DDPM_OK);
    assert_true(s.mu[0] == 3 && s.mu[1] == 4);
    const double want[4] = {4, 6, 6, 12};
    for (int i = 0; i < 4; i++) assert_true(fabs(s.cov[i] - want[i]) < 1e-12);
    ddpm_gauss_stats_free(&s);
    assert_int_not_equal(ddpm_gauss_stats_compute(&s, x, 1, 2), DDPM_OK);
}

static fx_file load_ref(void) {
    char path[1024], err[256];
    assert_int_equal(fx_data_path(path, sizeof path, "eval_ref.fix"), 0);
    fx_file f;
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    return f;
}

static void test_fid_numpy(void **state) {
    (void)state;
    fx_file f = load_ref();
    const fx_entry *a = fx_get(&f, "fid.a", FX_F32), *b = fx_get(&f, "fid.b", FX_F32);
    assert_non_null(a);
    assert_non_null(b);
    int d = a->dims[1];
    ddpm_gauss_stats sa, sb;
    assert_int_equal(ddpm_gauss_stats_compute(&sa, a->data, a->dims[0], d), DDPM_OK);
    assert_int_equal(ddpm_gauss_stats_compute(&sb, b->data, b->dims[0], d), DDPM_OK);
    double want, got = fd(sa.mu, sa.cov, sb.mu, sb.cov, d);
    assert_int_equal(fx_config_double(&f, "fid", &want), 0);
    printf("fid: C %.15g numpy %.15g rel %.2g\n", got, want, fabs(got - want) / want);
    assert_true(fabs(got - want) <= 1e-9 * want);
    ddpm_gauss_stats_free(&sa);
    ddpm_gauss_stats_free(&sb);
    fx_free(&f);
}

static void test_pr_numpy(void **state) {
    (void)state;
    fx_file f = load_ref();
    const fx_entry *r = fx_get(&f, "pr.real", FX_F32), *g = fx_get(&f, "pr.fake", FX_F32);
    assert_non_null(r);
    assert_non_null(g);
    double wp, wr, p, rc;
    assert_int_equal(fx_config_double(&f, "precision", &wp), 0);
    assert_int_equal(fx_config_double(&f, "recall", &wr), 0);
    assert_int_equal(ddpm_precision_recall(&p, &rc, r->data, r->dims[0], g->data, g->dims[0], r->dims[1], 3), DDPM_OK);
    printf("precision %.6f (numpy %.6f) recall %.6f (numpy %.6f)\n", p, wp, rc, wr);
    assert_true(p == wp && rc == wr);
    fx_free(&f);
}

static void test_pr_hand(void **state) {
    (void)state;
    /* real: 0, 1, 2, 3 on a line (k = 1 radius 1 each); fake: 0.5 (inside),
     * 10 and 11 (outside; their radius 1 covers no real point) */
    const float real[4] = {0, 1, 2, 3}, fake[3] = {0.5f, 10, 11};
    double p, r;
    assert_int_equal(ddpm_precision_recall(&p, &r, real, 4, fake, 3, 1, 1), DDPM_OK);
    assert_true(fabs(p - 1.0 / 3) < 1e-15);
    /* fake radii: 0.5 -> 9.5, 10 -> 1, 11 -> 1; 0.5's ball covers 0..3 */
    assert_true(r == 1.0);
    /* identical sets: everything covered */
    assert_int_equal(ddpm_precision_recall(&p, &r, real, 4, real, 4, 1, 3), DDPM_OK);
    assert_true(p == 1.0 && r == 1.0);
    assert_int_not_equal(ddpm_precision_recall(&p, &r, real, 4, fake, 3, 1, 3), DDPM_OK); /* k >= nf */
}

static void test_class_metrics(void **state) {
    (void)state;
    const float probs[8] = {0.9f, 0.1f, 0.3f, 0.7f, 0.6f, 0.4f, 0.2f, 0.8f}; /* argmax 0, 1, 0, 1 */
    const int labels[4] = {0, 1, 1, 1};
    ddpm_class_metrics m;
    assert_int_equal(ddpm_class_metrics_compute(&m, probs, labels, 4, 2), DDPM_OK);
    assert_true(fabs(m.confidence - (0.9 + 0.7 + 0.6 + 0.8) / 4) < 1e-7);
    assert_true(fabs(m.class_entropy - 1.0) < 1e-15);
    assert_true(fabs(m.label_accuracy - 0.75) < 1e-15);
    const float one[6] = {0.2f, 0.5f, 0.3f, 0.1f, 0.8f, 0.1f};
    assert_int_equal(ddpm_class_metrics_compute(&m, one, NULL, 2, 3), DDPM_OK);
    assert_true(m.class_entropy == 0.0 && m.label_accuracy == -1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fid_closed_forms), cmocka_unit_test(test_stats),
        cmocka_unit_test(test_fid_numpy),        cmocka_unit_test(test_pr_numpy),
        cmocka_unit_test(test_pr_hand),          cmocka_unit_test(test_class_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
