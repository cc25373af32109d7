/* test_optim.c: AdamW against torch.optim.AdamW, the deterministic gradient
 * norm and clipping, the LR schedule, EMA and the finiteness check. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reference.h"
#include "ddpm/common.h"
#include "ddpm/optim.h"
#include "ddpm/rng.h"

/* ---- AdamW reference ------------------------------------------------------------
 * Produced by (torch 1.13, lr/betas/eps/weight_decay given as their float32
 * values, see the script's docstring):
 *     /usr/bin/python3 scripts/optim_reference.py
 */
static const float REF_INIT[7] = {0.5f, -1.25f, 2.0f, 0.75f, -0.3f, 1.5f, -2.5f};
static const float REF_G[5][7] = {
    {0.1f, -0.2f, 0.3f, 0.0f, 1.5f, -0.05f, 0.7f},
    {0.12f, -0.25f, -0.1f, 0.0f, 1.25f, 0.0f, -0.6f},
    {-0.3f, -0.2f, 0.35f, 0.0f, 2.0f, 0.0f, 0.65f},
    {0.05f, 0.4f, 0.3f, 0.0f, -1.75f, 0.02f, 0.8f},
    {0.2f, -0.15f, -0.5f, 0.0f, 1.0f, -0.04f, 0.75f}};
/* case 0: lr 0.001, weight_decay 0 */
static const float REF_P0[7] = {0.4980802f, -1.2466165f, 1.9970062f, 0.75f, -0.30382958f, 1.502812f, -2.502701f};
/* case 1: lr 0.001, weight_decay 0.01 */
static const float REF_P1[7] = {0.49805525f, -1.2465539f, 1.996906f, 0.74996245f, -0.30381447f, 1.5027369f, -2.5025759f};
/* case 2: lr 0.1, weight_decay 0.1 */
static const float REF_P2[7] = {0.2899223f, -0.859424f, 1.6098651f, 0.71324253f, -0.65901524f, 1.7005394f, -2.6421971f};
/* exp_avg and exp_avg_sq after step 5 (the same in every case) */
static const float REF_M[7] = {0.015509004f, -0.026547004f, 0.017743006f, 0.0f, 0.29404002f, -0.005480501f, 0.20183703f};
static const float REF_V[7] = {0.00015663248f, 0.00032440881f, 0.0005617684f, 0.0f, 0.01185012f, 4.4895573e-06f, 0.0024704477f};

#define NREF 7
#define NSTEPS 5
static const float REF_LR[3] = {1e-3f, 1e-3f, 0.1f};
static const float REF_WD[3] = {0.0f, 0.01f, 0.1f};
static const float *const REF_P[3] = {REF_P0, REF_P1, REF_P2};

/* |a - b| / max(|a|, |b|), so an expected 0 must come out exactly 0; infinite
 * when either is NaN or Inf (and they differ), so fmax cannot drop it. */
static double rel_err(double a, double b) {
    if (a == b) return 0.0;
    if (!isfinite(a) || !isfinite(b)) return INFINITY;
    return fabs(a - b) / fmax(fabs(a), fabs(b));
}

/* Runs the 5 reference steps on `reps` copies of the 7-element problem laid
 * end to end (reps > 1 takes the OpenMP path) and checks every copy. */
static void check_adamw_case(int k, int reps) {
    size_t n = (size_t)NREF * (size_t)reps;
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    assert_non_null(p);
    assert_non_null(g);
    assert_non_null(m);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) p[i] = REF_INIT[i % NREF];
    ddpm_adamw_cfg c;
    ddpm_adamw_default(&c);
    c.weight_decay = REF_WD[k];
    for (int s = 0; s < NSTEPS; s++) {
        for (size_t i = 0; i < n; i++) g[i] = REF_G[s][i % NREF];
        ddpm_adamw_step(p, g, m, v, n, &c, REF_LR[k], s + 1);
    }
    double ep = 0, em = 0, ev = 0;
    int exact = 1;
    for (size_t i = 0; i < n; i++) {
        size_t j = i % NREF;
        ep = fmax(ep, rel_err(p[i], REF_P[k][j]));
        em = fmax(em, rel_err(m[i], REF_M[j]));
        ev = fmax(ev, rel_err(v[i], REF_V[j]));
        exact &= p[i] == REF_P[k][j] && m[i] == REF_M[j] && v[i] == REF_V[j];
    }
    printf("adamw case %d (lr %g, wd %g, n %zu): max_rel_err param=%.3g m=%.3g v=%.3g%s\n", k,
           (double)REF_LR[k], (double)REF_WD[k], n, ep, em, ev, exact ? " (bit-exact)" : "");
    assert_true(ep <= 1e-6);
    assert_true(em <= 1e-6);
    assert_true(ev <= 1e-6);
    free(p);
    free(g);
    free(m);
    free(v);
}

static void test_adamw_matches_torch(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) check_adamw_case(k, 1);
}

static void test_adamw_matches_torch_parallel(void **state) {
    (void)state;
    omp_set_num_threads(2);
    for (int k = 0; k < 3; k++) check_adamw_case(k, 7001); /* n = 49007: parallel loop */
}

static void test_adamw_defaults_and_first_step(void **state) {
    (void)state;
    ddpm_adamw_cfg c;
    ddpm_adamw_default(&c);
    assert_true(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0.0f);
    /* step 1 with bias correction moves every parameter by ~lr * sign(g) */
    float p[3] = {1.0f, 1.0f, 1.0f}, g[3] = {1e-3f, -5.0f, 0.0f}, m[3] = {0}, v[3] = {0};
    ddpm_adamw_step(p, g, m, v, 3, &c, 0.01f, 1);
    assert_true(fabs(p[0] - 0.99) < 1e-6);
    assert_true(fabs(p[1] - 1.01) < 1e-6);
    assert_true(p[2] == 1.0f && m[2] == 0.0f && v[2] == 0.0f);
}

/* ---- gradient norm ------------------------------------------------------------------ */

static double naive_norm(const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

static void test_grad_norm_matches_naive_and_is_deterministic(void **state) {
    (void)state;
    size_t n = 1000003;
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    ddpm_rng_fill_normal(&rng, g, n);
    double ref = naive_norm(g, n);
    omp_set_num_threads(1);
    double n1 = ddpm_grad_norm(g, n);
    omp_set_num_threads(2);
    double n2 = ddpm_grad_norm(g, n);
    printf("grad_norm n=%zu: naive %.17g, 1 thread %.17g, 2 threads %.17g\n", n, ref, n1, n2);
    assert_true(rel_err(n1, ref) <= 1e-12);
    assert_memory_equal(&n1, &n2, sizeof n1); /* bit-identical */
    /* small sizes: empty, one element, a tail shorter than 8 */
    assert_true(ddpm_grad_norm(g, 0) == 0.0);
    assert_true(ddpm_grad_norm(g, 1) == fabs((double)g[0]));
    float t[5] = {3, 4, 0, 12, 0};
    assert_true(ddpm_grad_norm(t, 5) == 13.0);
    free(g);
}

/* n above DDPM_NORM_CHUNK * DDPM_NORM_MAX_CHUNKS: the chunk grows and the
 * partials still fit (ASan would catch an overflow). Integer squares make
 * the exact answer computable. */
static void test_grad_norm_huge_n(void **state) {
    (void)state;
    size_t n = (size_t)DDPM_NORM_CHUNK * DDPM_NORM_MAX_CHUNKS + 5;
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)((int)(i % 7) - 3);
        s += (double)g[i] * (double)g[i];
    }
    omp_set_num_threads(2);
    assert_true(ddpm_grad_norm(g, n) == sqrt(s));
    free(g);
}

/* ---- clipping -------------------------------------------------------------------------- */

static void test_clip_grad_norm(void **state) {
    (void)state;
    float g[2] = {3.0f, 4.0f};
    /* below the threshold: untouched */
    assert_true(ddpm_clip_grad_norm(g, 2, 10.0) == 5.0);
    assert_true(g[0] == 3.0f && g[1] == 4.0f);
    /* disabled */
    assert_true(ddpm_clip_grad_norm(g, 2, 0.0) == 5.0);
    assert_true(ddpm_clip_grad_norm(g, 2, -1.0) == 5.0);
    assert_true(g[0] == 3.0f && g[1] == 4.0f);
    /* above: scaled by max_norm / (norm + 1e-6) */
    float s = (float)(1.0 / (5.0 + 1e-6));
    assert_true(ddpm_clip_grad_norm(g, 2, 1.0) == 5.0);
    assert_true(g[0] == 3.0f * s && g[1] == 4.0f * s);
    assert_true(fabs(naive_norm(g, 2) - 1.0) < 1e-6);
    /* exactly at the threshold torch still scales by 5 / (5 + 1e-6) */
    float h[2] = {3.0f, 4.0f};
    assert_true(ddpm_clip_grad_norm(h, 2, 5.0) == 5.0);
    assert_true(h[0] == 3.0f * (float)(5.0 / (5.0 + 1e-6)) && h[0] < 3.0f);
    /* a non-finite norm is returned and g left alone */
    float bad[3] = {1.0f, NAN, 2.0f};
    assert_true(isnan(ddpm_clip_grad_norm(bad, 3, 1.0)));
    assert_true(bad[0] == 1.0f && bad[2] == 2.0f);
}

static void test_clip_grad_norm_large(void **state) {
    (void)state;
    size_t n = 100003;
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 3);
    ddpm_rng_fill_normal(&rng, g, n);
    omp_set_num_threads(2);
    double before = ddpm_clip_grad_norm(g, n, 2.5);
    assert_true(before > 300.0); /* ~sqrt(n) */
    double after = naive_norm(g, n);
    assert_true(fabs(after - 2.5) < 1e-5);
    free(g);
}

/* ---- LR schedule ------------------------------------------------------------------------- */

static void assert_lr(float got, double want) {
    if (!(rel_err(got, want) <= 1e-6)) {
        printf("lr %.9g, want %.9g\n", (double)got, want);
        fail();
    }
}

static void test_lr_names(void **state) {
    (void)state;
    assert_int_equal(ddpm_lr_decay_parse("cosine"), DDPM_LR_COSINE);
    assert_int_equal(ddpm_lr_decay_parse("constant"), DDPM_LR_CONSTANT);
    assert_int_equal(ddpm_lr_decay_parse("linear"), -1);
    assert_int_equal(ddpm_lr_decay_parse("Cosine"), -1);
    assert_int_equal(ddpm_lr_decay_parse(NULL), -1);
    assert_string_equal(ddpm_lr_decay_name(DDPM_LR_COSINE), "cosine");
    assert_string_equal(ddpm_lr_decay_name(DDPM_LR_CONSTANT), "constant");
    assert_string_equal(ddpm_lr_decay_name((ddpm_lr_decay)7), "?");
}

static void test_lr_schedule(void **state) {
    (void)state;
    /* 101 steps, 10 of warmup: cosine runs over steps 10 ... 100 (span 90) */
    const int64_t T = 101, W = 10;
    const float base = 2e-3f, r = 0.1f;
    const double b = base, lo = (double)base * (double)r;
    for (int d = 0; d < 2; d++) {
        ddpm_lr_decay dec = d == 0 ? DDPM_LR_COSINE : DDPM_LR_CONSTANT;
        assert_lr(ddpm_lr_at(0, T, W, base, dec, r), b / 10);      /* first step */
        assert_lr(ddpm_lr_at(-3, T, W, base, dec, r), b / 10);     /* negative = 0 */
        assert_lr(ddpm_lr_at(4, T, W, base, dec, r), b * 5 / 10);  /* in warmup */
        assert_lr(ddpm_lr_at(W - 1, T, W, base, dec, r), b);       /* warmup end */
        assert_lr(ddpm_lr_at(W, T, W, base, dec, r), b);           /* decay start */
    }
    /* cosine */
    assert_lr(ddpm_lr_at(W + 45, T, W, base, DDPM_LR_COSINE, r), lo + (b - lo) * 0.5); /* mid */
    assert_lr(ddpm_lr_at(W + 30, T, W, base, DDPM_LR_COSINE, r),
              lo + (b - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 / 3.0))); /* a third */
    assert_lr(ddpm_lr_at(T - 1, T, W, base, DDPM_LR_COSINE, r), lo);   /* last */
    assert_lr(ddpm_lr_at(T + 50, T, W, base, DDPM_LR_COSINE, r), lo);  /* beyond */
    for (int64_t s = W; s < T - 1; s++) /* strictly decreasing */
        assert_true(ddpm_lr_at(s + 1, T, W, base, DDPM_LR_COSINE, r) <
                    ddpm_lr_at(s, T, W, base, DDPM_LR_COSINE, r));
    assert_true(ddpm_lr_at(T - 1, T, W, base, DDPM_LR_COSINE, 0.0f) == 0.0f);
    /* constant */
    assert_true(ddpm_lr_at(W + 45, T, W, base, DDPM_LR_CONSTANT, r) == base);
    assert_true(ddpm_lr_at(T - 1, T, W, base, DDPM_LR_CONSTANT, r) == base);
    assert_true(ddpm_lr_at(T + 50, T, W, base, DDPM_LR_CONSTANT, r) == base);
    /* no warmup: step 0 is the full rate */
    assert_lr(ddpm_lr_at(0, T, 0, base, DDPM_LR_COSINE, r), b);
    assert_lr(ddpm_lr_at(50, T, 0, base, DDPM_LR_COSINE, r), lo + (b - lo) * 0.5);
    assert_lr(ddpm_lr_at(100, T, 0, base, DDPM_LR_COSINE, r), lo);
    /* no room to decay (total - 1 <= warmup): base after warmup */
    assert_lr(ddpm_lr_at(0, 5, 10, base, DDPM_LR_COSINE, r), b / 10);
    assert_lr(ddpm_lr_at(20, 5, 10, base, DDPM_LR_COSINE, r), b);
    assert_lr(ddpm_lr_at(0, 1, 0, base, DDPM_LR_COSINE, r), b);
}

/* ---- EMA ------------------------------------------------------------------------------------ */

static void test_ema_decay_warmup(void **state) {
    (void)state;
    assert_true(ddpm_ema_decay_at(0, 0.9999f) == 0.1f);
    assert_true(ddpm_ema_decay_at(-5, 0.9999f) == 0.1f);
    assert_true(ddpm_ema_decay_at(1, 0.9999f) == (float)(2.0 / 11.0));
    assert_true(ddpm_ema_decay_at(8, 0.9999f) == 0.5f);
    assert_true(ddpm_ema_decay_at(990, 0.9999f) == (float)(991.0 / 1000.0));
    assert_true(ddpm_ema_decay_at(80000, 0.9999f) == (float)(80001.0 / 80010.0)); /* < cap */
    assert_true(ddpm_ema_decay_at(80000, 0.9999f) < 0.9999f);
    assert_true(ddpm_ema_decay_at(89991, 0.9999f) == 0.9999f);    /* capped */
    assert_true(ddpm_ema_decay_at(INT64_C(1) << 40, 0.9999f) == 0.9999f);
    assert_true(ddpm_ema_decay_at(8, 0.3f) == 0.3f);
}

/* The power-function profile: (1 - 1/k)^(g+1) for the k-th update, so the
 * average weighs the k-th parameters about as k^g (Karras et al. 2024): for
 * parameters equal to k at step k, the average after N steps is about
 * N (g+1)/(g+2), and never the initial value after the first update. */
static void test_ema_power_profile(void **state) {
    (void)state;
    assert_true(ddpm_ema_power_decay(0, 6.94f) == 0.0f);
    assert_true(ddpm_ema_power_decay(-3, 6.94f) == 0.0f);
    assert_true(fabsf(ddpm_ema_power_decay(9, 1.0f) - 0.81f) < 1e-7f); /* k = 10: 0.9^2 */
    assert_true(fabsf(ddpm_ema_power_decay(1, 0.0f) - 0.5f) < 1e-7f);  /* g = 0: the plain mean */
    const float gs[3] = {0.0f, 3.0f, 16.97f};
    for (int i = 0; i < 3; i++) {
        float e = 123.0f;
        const int N = 20000;
        for (int k = 1; k <= N; k++) {
            float p = (float)k;
            ddpm_ema_update(&e, &p, 1, ddpm_ema_power_decay(k - 1, gs[i]));
        }
        double want = N * (gs[i] + 1.0) / (gs[i] + 2.0);
        if (fabs(e - want) > 2e-3 * want) fail_msg("gamma %g: average %g, want about %g", (double)gs[i], (double)e, want);
    }
}

static void test_ema_update(void **state) {
    (void)state;
    /* dyadic values: exact */
    float e[4] = {1.0f, 2.0f, -4.0f, 0.5f}, p[4] = {3.0f, 2.0f, 0.0f, -0.5f};
    ddpm_ema_update(e, p, 4, 0.75f);
    assert_true(e[0] == 1.5f && e[1] == 2.0f && e[2] == -3.0f && e[3] == 0.25f);
    ddpm_ema_update(e, p, 4, 1.0f); /* decay 1: frozen */
    assert_true(e[0] == 1.5f && e[1] == 2.0f && e[2] == -3.0f && e[3] == 0.25f);
    /* large n (parallel): the documented float form, and the direct form in double */
    size_t n = 100003;
    float *ema = malloc(n * sizeof *ema), *par = malloc(n * sizeof *par);
    float *want = malloc(n * sizeof *want);
    assert_non_null(ema);
    assert_non_null(par);
    assert_non_null(want);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 11);
    ddpm_rng_fill_normal(&rng, ema, n);
    ddpm_rng_fill_normal(&rng, par, n);
    const float d = 0.999f;
    for (size_t i = 0; i < n; i++) want[i] = ema[i] + (1.0f - d) * (par[i] - ema[i]);
    double maxdiff = 0.0;
    for (size_t i = 0; i < n; i++) {
        double direct = (double)d * ema[i] + (1.0 - (double)d) * par[i];
        maxdiff = fmax(maxdiff, fabs(direct - want[i]));
    }
    assert_true(maxdiff < 1e-6);
    omp_set_num_threads(2);
    ddpm_ema_update(ema, par, n, d);
    assert_memory_equal(ema, want, n * sizeof *ema);
    /* where ema == params it stays put */
    memcpy(ema, par, n * sizeof *ema);
    ddpm_ema_update(ema, par, n, 0.3f);
    assert_memory_equal(ema, par, n * sizeof *ema);
    free(ema);
    free(par);
    free(want);
}

/* ---- finiteness ------------------------------------------------------------------------------ */

static void test_all_finite(void **state) {
    (void)state;
    size_t sizes[2] = {13, 1000003}; /* serial and parallel paths */
    for (int k = 0; k < 2; k++) {
        size_t n = sizes[k];
        float *x = malloc(n * sizeof *x);
        assert_non_null(x);
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 5);
        ddpm_rng_fill_normal(&rng, x, n);
        x[0] = 3.4028235e38f; /* FLT_MAX is finite */
        x[1] = -0.0f;
        x[2] = 1e-45f; /* denormal */
        omp_set_num_threads(2);
        assert_true(ddpm_all_finite(x, n));
        const float planted[3] = {NAN, INFINITY, -INFINITY};
        for (int j = 0; j < 3; j++) {
            float keep = x[n - 1];
            x[n - 1] = planted[j];
            assert_false(ddpm_all_finite(x, n));
            assert_true(ddpm_all_finite(x, n - 1));
            x[n - 1] = keep;
        }
        assert_true(ddpm_all_finite(x, 0));
        free(x);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_adamw_matches_torch_parallel),
        cmocka_unit_test(test_adamw_defaults_and_first_step),
        cmocka_unit_test(test_grad_norm_matches_naive_and_is_deterministic),
        cmocka_unit_test(test_grad_norm_huge_n),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_clip_grad_norm_large),
        cmocka_unit_test(test_lr_names),
        cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_ema_decay_warmup),
        cmocka_unit_test(test_ema_power_profile),
        cmocka_unit_test(test_ema_update),
        cmocka_unit_test(test_all_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
