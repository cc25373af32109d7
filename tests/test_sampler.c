/* test_sampler.c: the sampler driver (sampler.h).
 *
 * - Every sampler against the analytic model: for data x0 ~ N(mu, s^2 I) the
 *   optimal noise predictor is known in closed form. Each sampler with it is
 *   a linear Gaussian chain, so the exact law of its output at a given step
 *   count follows from a moment recursion written here from DESIGN.md §5/§7
 *   (in terms of the posterior mean E[x0 | x_t], not the library's
 *   coefficients); the samples must match it within tolerances from the
 *   sample size, and at the larger step counts the law must be the data's.
 *   The same optimal predictor written as a v or x0 model, through the
 *   objective wrapper (objective.h), must follow the same laws.
 * - DPM-Solver++(2M) against scripts/dpmpp_reference.py (diffusers' update
 *   rules in numpy float64): timesteps, one first-order step, one
 *   second-order step and whole runs.
 * - Guidance: W = 0 equals the unconditional model and W = 1 the conditional
 *   one bit for bit (one call and whole runs, a real UNet).
 * - Per-image streams: batch size and offset do not change an image.
 * - Spacings, option checks, label layout. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "diffusion/loop.h"
#include "ddpm/objective.h"
#include "ddpm/sampler.h"
#include "ddpm/unet.h"
#include "fixture.h"
#include "gradcheck.h"

/* ---- the analytic model ------------------------------------------------------------ */

#define MU 0.1 /* clipping x0_hat to [-1, 1] needs a 4.5-sigma sample: negligible */
#define SD 0.2

typedef struct {
    const ddpm_schedule *s;
    int calls;
    ddpm_objective obj; /* gauss_pred's output space (0: eps) */
} gauss_ctx;

/* E[eps | x_t] = sqrt(1 - ab) (x - sqrt(ab) mu) / (ab s^2 + 1 - ab). */
static ddpm_status gauss_eps(void *p, float *eps, const float *x, const int *t, const int *labels,
                             int N) {
    (void)labels;
    gauss_ctx *c = p;
    c->calls++;
    double ab = c->s->alpha_bar[t[0]], V = ab * SD * SD + 1.0 - ab;
    for (int j = 0; j < N * 32; j++) eps[j] = (float)(sqrt(1.0 - ab) * (x[j] - sqrt(ab) * MU) / V);
    return DDPM_OK;
}

/* The same optimal predictor as a v or x0 model: with a = sqrt(ab), b = sqrt(1 - ab),
 * E[x0 | x_t] = mu + a s^2 (x - a mu) / V and v = a E[eps | x_t] - b E[x0 | x_t]. */
static ddpm_status gauss_pred(void *p, float *out, const float *x, const int *t, const int *labels,
                              int N) {
    (void)labels;
    gauss_ctx *c = p;
    c->calls++;
    double ab = c->s->alpha_bar[t[0]], a = sqrt(ab), b = sqrt(1.0 - ab), V = ab * SD * SD + 1.0 - ab;
    for (int j = 0; j < N * 32; j++) {
        double e = b * (x[j] - a * MU) / V, x0 = MU + a * SD * SD * (x[j] - a * MU) / V;
        out[j] = (float)(c->obj == DDPM_OBJ_V ? a * e - b * x0 : x0);
    }
    return DDPM_OK;
}

/* E[x0 | x_t] = g x_t + k. */
static void posterior_mean(double ab, double *g, double *k) {
    *g = sqrt(ab) * SD * SD / (ab * SD * SD + 1.0 - ab);
    *k = MU - *g * sqrt(ab) * MU;
}

/* The law of (x, previous x0_hat): means m[2], covariance v[3] = (xx, xp, pp). */
typedef struct {
    double m[2], v[3];
} law2;

/* x' = a x + b x0 + b1 x0_prev + sig z with x0 = g x + k; x0_prev' = x0. */
static void push(law2 *L, double ab, double a, double b, double b1, double sig) {
    double g, k;
    posterior_mean(ab, &g, &k);
    double A = a + b * g, m0 = L->m[0], m1 = L->m[1];
    double vxx = L->v[0], vxp = L->v[1], vpp = L->v[2];
    L->m[0] = A * m0 + b1 * m1 + b * k;
    L->m[1] = g * m0 + k;
    L->v[0] = A * A * vxx + 2 * A * b1 * vxp + b1 * b1 * vpp + sig * sig;
    L->v[1] = g * (A * vxx + b1 * vxp);
    L->v[2] = g * g * vxx;
}

static double ab_or_1(const double *ab, int t) { return t >= 0 ? ab[t] : 1.0; }
static double lam(double ab) { return 0.5 * log(ab / (1.0 - ab)); }

/* The exact law of a sampler's output for the analytic model, from x_T ~ N(0, 1). */
static law2 expected_law(const ddpm_sampler *sm) {
    const ddpm_sampler_opts *o = &sm->o;
    const double *ab = sm->s->alpha_bar;
    law2 L = {{0.0, 0.0}, {1.0, 0.0, 0.0}};
    for (int i = sm->K - 1; i >= 0; i--) {
        int t = sm->tau[i], tp = i > 0 ? sm->tau[i - 1] : -1;
        double a_t = ab[t], a_p = ab_or_1(ab, tp);
        if (o->kind == DDPM_SAMPLER_DDPM) { /* posterior q(x_prev | x_t, x0) on the subsequence */
            double beta = 1.0 - a_t / a_p, var = o->var == DDPM_VAR_LARGE ? beta : beta * (1 - a_p) / (1 - a_t);
            push(&L, a_t, sqrt(1 - beta) * (1 - a_p) / (1 - a_t), sqrt(a_p) * beta / (1 - a_t), 0.0,
                 i > 0 ? sqrt(var) : 0.0);
        } else if (o->kind == DDPM_SAMPLER_DDIM) {
            double sig = i > 0 ? o->eta * sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)) : 0.0;
            double ce = sqrt(fmax(0.0, 1 - a_p - sig * sig)) / sqrt(1 - a_t);
            push(&L, a_t, ce, sqrt(a_p) - ce * sqrt(a_t), 0.0, sig);
        } else if (tp < 0) {
            push(&L, a_t, 0.0, 1.0, 0.0, 0.0); /* to sigma = 0: x0_hat */
        } else {
            double h = lam(a_p) - lam(a_t), c = -sqrt(a_p) * expm1(-h), c0 = 1.0, c1 = 0.0;
            if (i < sm->K - 1) {
                double r = (lam(a_t) - lam(ab[sm->tau[i + 1]])) / h;
                c0 = 1.0 + 0.5 / r;
                c1 = -0.5 / r;
            }
            push(&L, a_t, sqrt((1 - a_p) / (1 - a_t)), c * c0, c * c1, 0.0);
        }
    }
    return L;
}

/* obj: the analytic model as an eps model (gauss_eps), or as a v / x0 model
 * (gauss_pred) seen through the objective wrapper. */
static void check_moments_obj(ddpm_sampler_kind kind, int K, float eta, ddpm_var_kind var,
                              ddpm_spacing sp, const ddpm_schedule *s, int truth, ddpm_objective obj) {
    enum { N = 512, D = 32 };
    ddpm_sampler sm;
    ddpm_sampler_opts o = {kind, K, eta, var, sp};
    assert_int_equal(ddpm_sampler_create(&sm, s, &o, D, N), DDPM_OK);
    float *x = gc_alloc((size_t)N * D);
    gauss_ctx c = {s, 0, obj};
    ddpm_objective_model om;
    assert_int_equal(ddpm_objective_model_init(&om, gauss_pred, &c, obj, s, D), DDPM_OK);
    if (obj == DDPM_OBJ_EPS)
        assert_int_equal(ddpm_sampler_run(&sm, x, 0, N, 99, NULL, gauss_eps, &c, NULL, NULL), DDPM_OK);
    else
        assert_int_equal(ddpm_sampler_run(&sm, x, 0, N, 99, NULL, ddpm_objective_eps, &om, NULL, NULL), DDPM_OK);
    assert_int_equal(c.calls, K);
    double sum = 0.0, sq = 0.0, n = (double)N * D;
    for (int j = 0; j < N * D; j++) sum += x[j];
    double mean = sum / n;
    for (int j = 0; j < N * D; j++) sq += (x[j] - mean) * (x[j] - mean);
    double v = sq / (n - 1);
    law2 L = expected_law(&sm);
    double em = L.m[0], ev = L.v[0];
    double tol_m = 5.0 * sqrt(ev / n), tol_v = 5.0 * ev * sqrt(2.0 / (n - 1));
    printf("  %-3s %-8s K=%4d %-9s eta %.1f: mean %.5f (law %.5f, +-%.5f)  var %.6f (law %.6f, +-%.6f)\n",
           ddpm_objective_name(obj), ddpm_sampler_name(kind), K, ddpm_spacing_name(sm.o.spacing), (double)eta, mean, em,
           tol_m, v, ev, tol_v);
    if (fabs(mean - em) > tol_m || fabs(v - ev) > tol_v)
        fail_msg("samples do not follow the sampler's law");
    /* enough steps: the law is the data's (within the same tolerances) */
    if (truth && (fabs(em - MU) > tol_m || fabs(ev - SD * SD) > tol_v))
        fail_msg("the law N(%g, %g) is not the data's N(%g, %g)", em, ev, MU, SD * SD);
    ddpm_free(x);
    ddpm_sampler_destroy(&sm);
}

static void check_moments(ddpm_sampler_kind kind, int K, float eta, ddpm_var_kind var,
                          ddpm_spacing sp, const ddpm_schedule *s, int truth) {
    check_moments_obj(kind, K, eta, var, sp, s, truth, DDPM_OBJ_EPS);
}

/* v and x0 models through the wrapper follow the same laws, on a linear and a
 * cosine schedule (where x0 = (x_t - b eps)/a at t = T-1 divides by a ~ 5e-5). */
static void test_analytic_objectives(void **state) {
    (void)state;
    ddpm_schedule s, cs;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    assert_int_equal(ddpm_schedule_init(&cs, DDPM_SCHED_COSINE, 1000), DDPM_OK);
    for (int obj = DDPM_OBJ_V; obj <= DDPM_OBJ_X0; obj++) {
        check_moments_obj(DDPM_SAMPLER_DDPM, 1000, 0.0f, DDPM_VAR_SMALL, 0, &s, 1, obj);
        check_moments_obj(DDPM_SAMPLER_DDPM, 10, 0.0f, DDPM_VAR_LARGE, 0, &s, 0, obj);
        check_moments_obj(DDPM_SAMPLER_DDIM, 50, 1.0f, 0, DDPM_SPACING_QUADRATIC, &s, 0, obj);
        check_moments_obj(DDPM_SAMPLER_DDIM, 5, 0.0f, 0, 0, &cs, 0, obj);
        check_moments_obj(DDPM_SAMPLER_DPMPP_2M, 20, 0.0f, 0, 0, &s, 1, obj);
        check_moments_obj(DDPM_SAMPLER_DPMPP_2M, 10, 0.0f, 0, DDPM_SPACING_UNIFORM, &cs, 0, obj);
    }
    ddpm_schedule_free(&s);
    ddpm_schedule_free(&cs);
}

static void test_analytic_gaussian(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    check_moments(DDPM_SAMPLER_DDPM, 1000, 0.0f, DDPM_VAR_SMALL, 0, &s, 1);
    check_moments(DDPM_SAMPLER_DDPM, 100, 0.0f, DDPM_VAR_SMALL, 0, &s, 0); /* var 0.0305 */
    check_moments(DDPM_SAMPLER_DDPM, 10, 0.0f, DDPM_VAR_LARGE, 0, &s, 0);
    check_moments(DDPM_SAMPLER_DDIM, 1000, 0.0f, 0, 0, &s, 1);
    check_moments(DDPM_SAMPLER_DDIM, 50, 0.0f, 0, 0, &s, 0);
    check_moments(DDPM_SAMPLER_DDIM, 50, 1.0f, 0, DDPM_SPACING_QUADRATIC, &s, 0);
    check_moments(DDPM_SAMPLER_DDIM, 5, 0.0f, 0, 0, &s, 0);
    check_moments(DDPM_SAMPLER_DPMPP_2M, 20, 0.0f, 0, 0, &s, 1); /* logsnr: var 0.0408 */
    check_moments(DDPM_SAMPLER_DPMPP_2M, 10, 0.0f, 0, DDPM_SPACING_UNIFORM, &s, 0);
    check_moments(DDPM_SAMPLER_DPMPP_2M, 4, 0.0f, 0, DDPM_SPACING_QUADRATIC, &s, 0);
    check_moments(DDPM_SAMPLER_DPMPP_2M, 999, 0.0f, 0, DDPM_SPACING_UNIFORM, &s, 1);
    ddpm_schedule_free(&s);
}

/* ---- the Karras samplers against the analytic model ---------------------------------- */

/* eps_hat of the analytic model at x_t = x~ / sqrt(sg^2 + 1), timestep t, as
 * c1 x~ + c0. */
static void eps_affine(const ddpm_schedule *s, double sg, double *c1, double *c0) {
    int t = (int)floor(ddpm_sigma_to_t(s, sg) + 0.5);
    double ab = s->alpha_bar[t], V = ab * SD * SD + 1.0 - ab;
    *c1 = sqrt(1.0 - ab) / V / sqrt(sg * sg + 1.0);
    *c0 = -sqrt(1.0 - ab) * sqrt(ab) * MU / V;
}

/* The exact law (mean, variance) of a Karras sampler's output: every update
 * is affine in x~ plus independent noise (docs/design.md §9's rules written
 * out here, not the library's code). */
static void karras_law(const ddpm_sampler *sm, double *mean, double *var) {
    const double *sig = sm->sig;
    int K = sm->K;
    double m = 0.0, v = sig[0] * sig[0] + 1.0, churn = sm->o.churn;
    double gamma = churn > 0 ? fmin(churn / K, sqrt(2.0) - 1.0) : 0.0;
    for (int j = 0; j < K; j++) {
        double s = sig[j], sn = sig[j + 1], sh = s * (1.0 + gamma), c1, c0, A, B, noise = 0.0;
        v += sh * sh - s * s;
        eps_affine(sm->s, sh, &c1, &c0);
        if (sm->o.kind == DDPM_SAMPLER_EULER_A) {
            double su = sn > 0 ? sqrt(sn * sn * (s * s - sn * sn) / (s * s)) : 0.0, sd = sqrt(sn * sn - su * su);
            A = 1.0 + (sd - s) * c1, B = (sd - s) * c0, noise = su * su;
        } else if (sm->o.kind == DDPM_SAMPLER_EULER || sn == 0.0) {
            A = 1.0 + (sn - sh) * c1, B = (sn - sh) * c0;
        } else {
            double d1, d0, dt = sn - sh;
            eps_affine(sm->s, sn, &d1, &d0);
            A = 1.0 + 0.5 * dt * (c1 + d1 * (1.0 + dt * c1));
            B = 0.5 * dt * (c0 + d1 * dt * c0 + d0);
        }
        m = A * m + B;
        v = A * A * v + noise;
    }
    *mean = m, *var = v;
}

static void check_karras(ddpm_sampler_kind kind, int K, float churn, ddpm_sigmas g, const ddpm_schedule *s, int truth,
                         ddpm_objective obj) {
    enum { N = 512, D = 32 };
    ddpm_sampler sm;
    ddpm_sampler_opts o = {kind, K, 0.0f, 0, 0, churn, g};
    assert_int_equal(ddpm_sampler_create(&sm, s, &o, D, N), DDPM_OK);
    float *x = gc_alloc((size_t)N * D);
    gauss_ctx c = {s, 0, obj};
    ddpm_objective_model om;
    assert_int_equal(ddpm_objective_model_init(&om, gauss_pred, &c, obj, s, D), DDPM_OK);
    assert_int_equal(ddpm_sampler_run(&sm, x, 0, N, 99, NULL, obj ? ddpm_objective_eps : gauss_eps,
                                      obj ? (void *)&om : (void *)&c, NULL, NULL), DDPM_OK);
    assert_int_equal(c.calls, kind == DDPM_SAMPLER_HEUN ? 2 * K - 1 : K);
    double sum = 0.0, sq = 0.0, n = (double)N * D, em, ev;
    for (int j = 0; j < N * D; j++) sum += x[j];
    double mean = sum / n;
    for (int j = 0; j < N * D; j++) sq += (x[j] - mean) * (x[j] - mean);
    double v = sq / (n - 1);
    karras_law(&sm, &em, &ev);
    double tol_m = 5.0 * sqrt(ev / n), tol_v = 5.0 * ev * sqrt(2.0 / (n - 1));
    printf("  %-3s %-8s K=%4d %-8s churn %.1f: mean %.5f (law %.5f, +-%.5f)  var %.6f (law %.6f, +-%.6f)\n",
           ddpm_objective_name(obj), ddpm_sampler_name(kind), K, ddpm_sigmas_name(g), (double)churn, mean, em, tol_m,
           v, ev, tol_v);
    if (fabs(mean - em) > tol_m || fabs(v - ev) > tol_v) fail_msg("samples do not follow the sampler's law");
    if (truth && (fabs(em - MU) > tol_m || fabs(ev - SD * SD) > tol_v))
        fail_msg("the law N(%g, %g) is not the data's N(%g, %g)", em, ev, MU, SD * SD);
    ddpm_free(x);
    ddpm_sampler_destroy(&sm);
}

static void test_analytic_karras(void **state) {
    (void)state;
    ddpm_schedule s, cs;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    assert_int_equal(ddpm_schedule_init(&cs, DDPM_SCHED_COSINE, 1000), DDPM_OK);
    check_karras(DDPM_SAMPLER_HEUN, 60, 0.0f, DDPM_SIGMAS_KARRAS, &s, 1, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_HEUN, 5, 0.0f, DDPM_SIGMAS_KARRAS, &s, 0, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_EULER, 500, 0.0f, DDPM_SIGMAS_KARRAS, &s, 1, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_EULER, 10, 0.0f, DDPM_SIGMAS_SCHEDULE, &s, 0, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_EULER_A, 500, 0.0f, DDPM_SIGMAS_KARRAS, &s, 1, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_EULER_A, 12, 0.0f, DDPM_SIGMAS_KARRAS, &cs, 0, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_HEUN, 60, 5.0f, DDPM_SIGMAS_KARRAS, &s, 1, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_EULER, 8, 3.0f, DDPM_SIGMAS_KARRAS, &cs, 0, DDPM_OBJ_EPS);
    check_karras(DDPM_SAMPLER_HEUN, 20, 0.0f, DDPM_SIGMAS_KARRAS, &cs, 0, DDPM_OBJ_V);
    check_karras(DDPM_SAMPLER_EULER_A, 30, 0.0f, DDPM_SIGMAS_KARRAS, &s, 0, DDPM_OBJ_X0);
    ddpm_schedule_free(&s);
    ddpm_schedule_free(&cs);
}

/* ---- DPM-Solver++(2M) against the numpy reference ----------------------------------- */

typedef struct {
    int K, D;
    float *step1, *step2; /* [N, D] state after steps 1 and 2 */
} probe;

static void grab(void *ud, int step, int nsteps, const float *x) {
    probe *p = ud;
    (void)nsteps;
    if (step == 1) memcpy(p->step1, x, 4 * 6 * sizeof(float));
    if (step == 2) memcpy(p->step2, x, 4 * 6 * sizeof(float));
}

static ddpm_status gauss_eps6(void *p, float *eps, const float *x, const int *t, int N) {
    const ddpm_schedule *s = p;
    double ab = s->alpha_bar[t[0]], V = ab * SD * SD + 1.0 - ab;
    for (int j = 0; j < N * 6; j++) eps[j] = (float)(sqrt(1.0 - ab) * (x[j] - sqrt(ab) * MU) / V);
    return DDPM_OK;
}

static void expect_close(const float *got, const float *want, int n, double tol, const char *what) {
    for (int j = 0; j < n; j++)
        if (fabs((double)got[j] - want[j]) > tol)
            fail_msg("%s[%d]: %.8f, the reference says %.8f", what, j, got[j], want[j]);
}

static void test_dpmpp_reference(void **state) {
    (void)state;
    char path[1024], err[256], name[64];
    fx_file f;
    assert_int_equal(fx_data_path(path, sizeof path, "dpmpp_ref.fix"), 0);
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    const int Ks[2] = {10, 3};
    float x[24], s1[24], s2[24], work[72];
    for (int r = 0; r < 2; r++) {
        int K = Ks[r], tau[10];
        snprintf(name, sizeof name, "K%d.timesteps", K);
        const fx_entry *ts = fx_get(&f, name, FX_I32);
        assert_non_null(ts);
        assert_int_equal((int)ts->numel, K);
        assert_int_equal(ddpm_sampler_timesteps(tau, K, &s, DDPM_SPACING_UNIFORM, 1), DDPM_OK);
        for (int i = 0; i < K; i++) assert_int_equal(tau[K - 1 - i], ((const int32_t *)ts->data)[i]);
        memcpy(x, fx_f32(&f, "x_T", 24), sizeof x);
        probe p = {K, 6, s1, s2};
        ddpm_sampler_opts o = {DDPM_SAMPLER_DPMPP_2M, K, 0.0f, 0, DDPM_SPACING_UNIFORM};
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 1);
        assert_int_equal(ddpm_sample_loop(x, 4, 6, &s, &o, gauss_eps6, &s, &rng, work, grab, &p),
                         DDPM_OK);
        const char *keys[3] = {"step1", "step2", "x0"};
        const float *got[3] = {s1, s2, x};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "K%d.%s", K, keys[k]);
            const float *want = fx_f32(&f, name, 24);
            assert_non_null(want);
            expect_close(got[k], want, 24, 2e-6, name);
        }
    }
    ddpm_schedule_free(&s);
    fx_free(&f);
}

/* ---- the Karras samplers against the numpy reference -------------------------------- */

static ddpm_status gauss_eps6m(void *p, float *eps, const float *x, const int *t, const int *labels, int N) {
    (void)labels;
    return gauss_eps6(p, eps, x, t, N);
}

typedef struct {
    int K;
    float *states; /* [K + 1, 4, 6] */
} karras_probe;

static void grab_all(void *ud, int first, int N, int step, int K, const float *x) {
    karras_probe *p = ud;
    assert_int_equal(K, p->K);
    memcpy(p->states + ((size_t)step * 4 + first) * 6, x, (size_t)N * 6 * sizeof(float));
}

/* scripts/karras_reference.py: diffusers' Euler, Heun and Euler-ancestral
 * updates (and Algorithm 2's churn) in float64 with the library's own noise.
 * Tolerance: every step rounds x~, the model input and eps to float
 * (relative 2^-24 each, a handful per step, the Heun step twice as many)
 * and this model's flow does not amplify errors (its slope in x is below 1
 * in the x_t view), so after k steps the error is below 16 (k + 1) 2^-24
 * times the state's largest magnitude. */
static void test_karras_reference(void **state) {
    (void)state;
    char path[1024], err[256], name[64];
    fx_file f;
    assert_int_equal(fx_data_path(path, sizeof path, "karras_ref.fix"), 0);
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    const struct { const char *name; ddpm_sampler_kind kind; int K; float churn; } cases[] = {
        {"euler10", DDPM_SAMPLER_EULER, 10, 0.0f}, {"heun5", DDPM_SAMPLER_HEUN, 5, 0.0f},
        {"eulera8", DDPM_SAMPLER_EULER_A, 8, 0.0f}, {"heun6c", DDPM_SAMPLER_HEUN, 6, 2.0f},
        {"euler6c", DDPM_SAMPLER_EULER, 6, 1.0f}};
    for (int c = 0; c < 5; c++) {
        int K = cases[c].K;
        ddpm_sampler_opts o = {cases[c].kind, K, 0.0f, 0, 0, cases[c].churn, DDPM_SIGMAS_KARRAS};
        for (int B = 4; B >= 1; B -= 3) { /* one batch of 4, batches of 1 */
            ddpm_sampler sm;
            assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 6, B), DDPM_OK);
            snprintf(name, sizeof name, "%s.sigmas", cases[c].name);
            const float *sig = fx_f32(&f, name, (size_t)K + 1);
            assert_non_null(sig);
            for (int j = 0; j <= K; j++) assert_true(fabs(sm.sig[j] - sig[j]) <= 1e-6 * sm.sig[j]);
            snprintf(name, sizeof name, "%s.timesteps", cases[c].name);
            const fx_entry *ts = fx_get(&f, name, FX_I32);
            assert_non_null(ts);
            for (int j = 0; j < K; j++) assert_int_equal(sm.tau[K - 1 - j], ((const int32_t *)ts->data)[j]);
            snprintf(name, sizeof name, "%s.noise", cases[c].name);
            const fx_entry *nz = fx_get(&f, name, FX_F32);
            assert_non_null(nz);
            int M = nz->dims[1]; /* the library's streams draw the fixture's noise */
            float *z = gc_alloc((size_t)M);
            for (int i = 0; i < 4; i++) {
                ddpm_rng r;
                ddpm_rng_seed(&r, ddpm_sampler_image_seed(7, i));
                ddpm_rng_fill_normal(&r, z, (size_t)M);
                assert_memory_equal(z, (const float *)nz->data + (size_t)i * M, (size_t)M * sizeof(float));
            }
            ddpm_free(z);
            karras_probe p = {K, gc_alloc((size_t)(K + 1) * 24)};
            float x[24];
            assert_int_equal(ddpm_sampler_run(&sm, x, 0, 4, 7, NULL, gauss_eps6m, &s, grab_all, &p), DDPM_OK);
            snprintf(name, sizeof name, "%s.states", cases[c].name);
            const float *want = fx_f32(&f, name, (size_t)(K + 1) * 24);
            assert_non_null(want);
            double worst = 0.0;
            for (int k = 0; k <= K; k++) {
                double mx = 0.0;
                for (int j = 0; j < 24; j++) mx = fmax(mx, fabs(want[k * 24 + j]));
                double tol = 16.0 * (k + 1) * 0x1p-24 * mx;
                snprintf(name, sizeof name, "%s step %d", cases[c].name, k);
                expect_close(p.states + k * 24, want + k * 24, 24, tol, name);
                for (int j = 0; j < 24; j++) worst = fmax(worst, fabs(p.states[k * 24 + j] - want[k * 24 + j]) / (tol / 16.0));
            }
            assert_memory_equal(x, p.states + K * 24, sizeof x);
            if (B == 4) printf("  %-8s K=%2d: worst error %.2f of the per-step rounding unit\n", cases[c].name, K, worst);
            ddpm_free(p.states);
            ddpm_sampler_destroy(&sm);
        }
    }
    ddpm_schedule_free(&s);
    fx_free(&f);
}

/* ---- guidance -------------------------------------------------------------------------- */

static ddpm_unet *tiny_unet(int num_classes, int max_batch) {
    ddpm_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1;
    c.res = 8;
    c.ch = 8;
    c.ch_mult[0] = 1;
    c.ch_mult[1] = 2;
    c.num_levels = 2;
    c.num_res_blocks = 1;
    c.groups = 4;
    c.num_classes = num_classes;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, max_batch, false), DDPM_OK);
    ddpm_unet_init_params(m, 5);
    ddpm_rng r; /* no zero-initialised output layer: every parameter random */
    ddpm_rng_seed(&r, 6);
    float *p = ddpm_unet_params(m);
    for (size_t j = 0; j < ddpm_unet_num_params(m); j++) p[j] += 0.05f * ddpm_rng_normal(&r);
    return m;
}

/* The UNet one image at a time. A batched UNet call is not batch-invariant
 * in the last bits (OpenBLAS picks other sgemm kernels for other row counts
 * in the time-embedding Linear layers), so the bit-for-bit checks use this
 * batch-invariant form; the batched UNet is checked to rounding below. */
static ddpm_status unet_each(void *m, float *eps, const float *x, const int *t, const int *labels,
                             int N) {
    for (int n = 0; n < N; n++) {
        ddpm_status st = ddpm_unet_forward(m, eps + n * 64, x + n * 64, t + n, labels + n, 1);
        if (st) return st;
    }
    return DDPM_OK;
}

static void test_guidance_bits(void **state) {
    (void)state;
    enum { N = 3, D = 64, C = 4 };
    ddpm_unet *m = tiny_unet(C, 2 * N);
    float *x = gc_alloc(N * D), *e = gc_alloc(N * D), *ref = gc_alloc(N * D);
    ddpm_rng r;
    ddpm_rng_seed(&r, 7);
    ddpm_rng_fill_normal(&r, x, N * D);
    int t[N] = {17, 17, 17}, lab[N] = {0, 3, 1}, none[N] = {C, C, C};
    const float ws[3] = {0.0f, 1.0f, 2.5f};
    for (int k = 0; k < 3; k++) {
        ddpm_guidance g;
        assert_int_equal(ddpm_guidance_init(&g, unet_each, m, ws[k], C, D, N), DDPM_OK);
        assert_int_equal(ddpm_guidance_eps(&g, e, x, t, lab, N), DDPM_OK);
        float *eu = gc_alloc(N * D), *ec = gc_alloc(N * D);
        assert_int_equal(unet_each(m, eu, x, t, none, N), DDPM_OK);
        assert_int_equal(unet_each(m, ec, x, t, lab, N), DDPM_OK);
        if (k < 2) {
            assert_memory_equal(e, k == 0 ? eu : ec, N * D * sizeof(float));
            ddpm_guidance g2; /* the batched UNet: the same up to rounding */
            assert_int_equal(ddpm_guidance_init(&g2, ddpm_unet_eps, m, ws[k], C, D, N), DDPM_OK);
            assert_int_equal(ddpm_guidance_eps(&g2, ref, x, t, lab, N), DDPM_OK);
            expect_close(ref, e, N * D, 1e-5, "batched guided eps");
            ddpm_guidance_free(&g2);
        } else {
            for (int j = 0; j < N * D; j++) ref[j] = eu[j] + 2.5f * (ec[j] - eu[j]);
            expect_close(e, ref, N * D, 1e-5, "eps at W = 2.5");
            assert_memory_not_equal(e, ec, N * D * sizeof(float));
        }
        ddpm_free(eu);
        ddpm_free(ec);
        ddpm_guidance_free(&g);
    }
    /* whole runs: W = 1 is the conditional sampler, W = 0 the unconditional one */
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 50), DDPM_OK);
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDPM, 6, 0.0f, DDPM_VAR_SMALL, 0};
    ddpm_sampler sm;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, D, N), DDPM_OK);
    for (int k = 0; k < 2; k++) {
        ddpm_guidance g;
        assert_int_equal(ddpm_guidance_init(&g, unet_each, m, ws[k], C, D, N), DDPM_OK);
        assert_int_equal(ddpm_sampler_run(&sm, e, 0, N, 3, lab, ddpm_guidance_eps, &g, NULL, NULL), 0);
        assert_int_equal(ddpm_sampler_run(&sm, ref, 0, N, 3, k ? lab : none, unet_each, m, NULL, NULL), 0);
        assert_memory_equal(e, ref, N * D * sizeof(float));
        ddpm_guidance_free(&g);
    }
    ddpm_sampler_destroy(&sm);
    ddpm_schedule_free(&s);
    /* bad weights and models */
    ddpm_guidance g;
    assert_int_equal(ddpm_guidance_init(&g, ddpm_unet_eps, m, -0.5f, C, D, N), DDPM_ERR_ARG);
    assert_int_equal(ddpm_guidance_init(&g, ddpm_unet_eps, m, NAN, C, D, N), DDPM_ERR_ARG);
    assert_int_equal(ddpm_guidance_init(&g, ddpm_unet_eps, m, INFINITY, C, D, N), DDPM_ERR_ARG);
    assert_int_equal(ddpm_guidance_init(&g, ddpm_unet_eps, m, 1.0f, 0, D, N), DDPM_ERR_ARG);
    ddpm_free(x);
    ddpm_free(e);
    ddpm_free(ref);
    ddpm_unet_free(m);
}

/* ---- per-image streams ------------------------------------------------------------------ */

static void test_streams(void **state) {
    (void)state;
    enum { N = 5, D = 32 };
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    const ddpm_sampler_kind kinds[5] = {DDPM_SAMPLER_DDPM, DDPM_SAMPLER_DDIM, DDPM_SAMPLER_DPMPP_2M,
                                        DDPM_SAMPLER_EULER_A, DDPM_SAMPLER_HEUN};
    for (int k = 0; k < 5; k++) { /* the noisy ones: ddpm, ddim eta 0.5, euler_a, heun with churn */
        ddpm_sampler_opts o = {kinds[k], 10, 0.5f * (k == 1), DDPM_VAR_SMALL, 0, 2.0f * (k == 4), 0};
        ddpm_sampler a, b;
        assert_int_equal(ddpm_sampler_create(&a, &s, &o, D, N), DDPM_OK);
        assert_int_equal(ddpm_sampler_create(&b, &s, &o, D, 2), DDPM_OK);
        float xa[N * D], xb[N * D], xc[2 * D];
        gauss_ctx c = {&s, 0};
        assert_int_equal(ddpm_sampler_run(&a, xa, 0, N, 42, NULL, gauss_eps, &c, NULL, NULL), 0);
        assert_int_equal(ddpm_sampler_run(&b, xb, 0, N, 42, NULL, gauss_eps, &c, NULL, NULL), 0);
        assert_memory_equal(xa, xb, sizeof xa); /* batches of 5 or of 2, 2, 1 */
        assert_int_equal(ddpm_sampler_run(&b, xc, 3, 2, 42, NULL, gauss_eps, &c, NULL, NULL), 0);
        assert_memory_equal(xa + 3 * D, xc, sizeof xc); /* images 3 and 4 alone */
        assert_int_equal(ddpm_sampler_run(&b, xc, 3, 2, 43, NULL, gauss_eps, &c, NULL, NULL), 0);
        assert_memory_not_equal(xa + 3 * D, xc, sizeof xc);
        ddpm_sampler_destroy(&a);
        ddpm_sampler_destroy(&b);
    }
    assert_true(ddpm_sampler_image_seed(1, 0) != ddpm_sampler_image_seed(1, 1));
    assert_true(ddpm_sampler_image_seed(1, 0) != ddpm_sampler_image_seed(2, 0));
    ddpm_schedule_free(&s);
}

/* ---- spacings, options, labels ----------------------------------------------------------- */

static void check_increasing(const int *tau, int K, int T) {
    for (int i = 0; i < K; i++) {
        assert_true(tau[i] >= 0 && tau[i] < T);
        if (i) assert_true(tau[i] > tau[i - 1]);
    }
    assert_int_equal(tau[K - 1], T - 1);
}

static void test_spacings(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    int tau[1000], ref[1000];
    /* uniform without skip_zero is the respacing every sampler used before */
    assert_int_equal(ddpm_sampler_timesteps(tau, 50, &s, DDPM_SPACING_UNIFORM, 0), DDPM_OK);
    assert_int_equal(ddpm_schedule_respace(ref, 50, 1000), DDPM_OK);
    assert_memory_equal(tau, ref, 50 * sizeof(int));
    /* quadratic by hand: round((i/4)^2 999) */
    assert_int_equal(ddpm_sampler_timesteps(tau, 5, &s, DDPM_SPACING_QUADRATIC, 0), DDPM_OK);
    const int quad[5] = {0, 62, 250, 562, 999};
    assert_memory_equal(tau, quad, sizeof quad);
    /* logsnr: evenly spaced lambda, within half a timestep's lambda change */
    int K = 12;
    assert_int_equal(ddpm_sampler_timesteps(tau, K, &s, DDPM_SPACING_LOGSNR, 0), DDPM_OK);
    check_increasing(tau, K, 1000);
    assert_int_equal(tau[0], 0);
    double l0 = lam(s.alpha_bar[0]), l1 = lam(s.alpha_bar[999]);
    for (int i = 1; i < K - 1; i++) {
        double want = l1 + (1.0 - (double)i / (K - 1)) * (l0 - l1), got = lam(s.alpha_bar[tau[i]]);
        double step = fabs(lam(s.alpha_bar[tau[i] - 1]) - lam(s.alpha_bar[tau[i] + 1]));
        assert_true(fabs(got - want) <= step);
    }
    /* every spacing at every K: strictly increasing, ends at T - 1, K = T is all */
    const ddpm_spacing sps[3] = {DDPM_SPACING_UNIFORM, DDPM_SPACING_QUADRATIC, DDPM_SPACING_LOGSNR};
    for (int k = 0; k < 3; k++)
        for (int kk = 1; kk <= 1000; kk += kk < 20 ? 1 : 97) {
            int skip = kk % 2;
            if (kk + skip > 1000) continue;
            assert_int_equal(ddpm_sampler_timesteps(tau, kk, &s, sps[k], skip), DDPM_OK);
            check_increasing(tau, kk, 1000);
            if (!skip && kk > 1) assert_int_equal(tau[0], 0);
            if (skip) assert_true(tau[0] > 0);
        }
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ddpm_sampler_timesteps(tau, 1000, &s, sps[k], 0), DDPM_OK);
        for (int i = 0; i < 1000; i++) assert_int_equal(tau[i], i);
        assert_int_equal(ddpm_sampler_timesteps(tau, 1000, &s, sps[k], 1), DDPM_ERR_ARG);
    }
    ddpm_schedule_free(&s);
}

static void test_options(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    ddpm_sampler sm;
    ddpm_sampler_opts o = {DDPM_SAMPLER_DPMPP_2M, 0, 0.0f, 0, 0};
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_OK);
    assert_int_equal(sm.K, 20); /* defaults */
    assert_int_equal(sm.o.spacing, DDPM_SPACING_LOGSNR);
    ddpm_sampler_destroy(&sm);
    o.steps = 100; /* dpm++2m never calls the model at t = 0: at most T - 1 */
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_ERR_ARG);
    o.steps = 99;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_OK);
    ddpm_sampler_destroy(&sm);
    o = (ddpm_sampler_opts){DDPM_SAMPLER_DDIM, 101, 0.0f, 0, 0};
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_ERR_ARG);
    o.steps = 0;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_OK);
    assert_int_equal(sm.K, 50);
    ddpm_sampler_destroy(&sm);
    o.eta = NAN;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_ERR_ARG);
    o.eta = 0.0f;
    o.spacing = (ddpm_spacing)9;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_ERR_ARG);
    o.spacing = 0;
    o.kind = (ddpm_sampler_kind)7;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o, 4, 2), DDPM_ERR_ARG);
    ddpm_sampler_destroy(&sm); /* safe after a failure */
    assert_int_equal(ddpm_sampler_parse("dpm++2m"), DDPM_SAMPLER_DPMPP_2M);
    assert_string_equal(ddpm_sampler_name(DDPM_SAMPLER_DPMPP_2M), "dpm++2m");
    assert_int_equal(ddpm_spacing_parse("logsnr"), DDPM_SPACING_LOGSNR);
    assert_int_equal(ddpm_spacing_parse("default"), -1);
    assert_string_equal(ddpm_last_error(), "unknown spacing 'default' (expected uniform, quadratic or logsnr)");
    assert_int_equal(ddpm_sampler_parse("plms"), -1);
    assert_string_equal(ddpm_last_error(), "unknown sampler 'plms' (expected ddpm, ddim, dpm++2m, euler, heun or euler_a)");
    assert_string_equal(ddpm_spacing_name(DDPM_SPACING_QUADRATIC), "quadratic");
    ddpm_schedule_free(&s);
}

/* The header line's words for each kind of sampler options. */
static void test_describe(void **state) {
    (void)state;
    char buf[96];
    ddpm_sampler_opts o = {.kind = DDPM_SAMPLER_DDPM, .var = DDPM_VAR_LARGE};
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "var large");
    o = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .eta = 0.5f};
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "eta 0.5, uniform spacing");
    o = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DPMPP_2M};
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "deterministic, logsnr spacing"); /* the sampler's default spacing */
    o.spacing = DDPM_SPACING_QUADRATIC;
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "deterministic, quadratic spacing");
    o = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_HEUN, .churn = 2.0f, .sigmas = DDPM_SIGMAS_SCHEDULE};
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "churn, schedule sigmas, S_churn 2");
    o = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_EULER_A};
    ddpm_sampler_describe(buf, sizeof buf, &o);
    assert_string_equal(buf, "ancestral, karras sigmas");
    ddpm_sampler_describe(buf, 8, &o); /* cut, still terminated */
    assert_string_equal(buf, "ancestr");
}

static void test_labels(void **state) {
    (void)state;
    int lab[12];
    assert_int_equal(ddpm_sampler_labels(lab, 12, 5, -1), 5);
    for (int i = 0; i < 12; i++) assert_int_equal(lab[i], i % 5);
    assert_int_equal(ddpm_sampler_labels(lab, 12, 5, 3), 0);
    for (int i = 0; i < 12; i++) assert_int_equal(lab[i], 3);
    assert_int_equal(ddpm_sampler_labels(lab, 12, DDPM_LABEL_COLS_MAX + 1, -1), 0);
}

/* The default step counts: ddpm respaced to 100 (the default, docs/quality.md), ddim 50,
 * dpm++2m 20, each capped by what the schedule allows. */
static void test_default_steps(void **state) {
    (void)state;
    assert_int_equal(ddpm_sampler_default_steps(DDPM_SAMPLER_DDPM, 1000), 100);
    assert_int_equal(ddpm_sampler_default_steps(DDPM_SAMPLER_DDPM, 40), 40);
    assert_int_equal(ddpm_sampler_default_steps(DDPM_SAMPLER_DDIM, 1000), 50);
    assert_int_equal(ddpm_sampler_default_steps(DDPM_SAMPLER_DPMPP_2M, 1000), 20);
    assert_int_equal(ddpm_sampler_default_steps(DDPM_SAMPLER_DPMPP_2M, 10), 9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analytic_gaussian), cmocka_unit_test(test_analytic_objectives),
        cmocka_unit_test(test_analytic_karras),
        cmocka_unit_test(test_dpmpp_reference),  cmocka_unit_test(test_karras_reference),
        cmocka_unit_test(test_guidance_bits),     cmocka_unit_test(test_streams),
        cmocka_unit_test(test_spacings),          cmocka_unit_test(test_options),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_default_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
