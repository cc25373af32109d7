/* test_diffusion.c: q_sample, one DDPM / DDIM step against hand-computed
 * values, and the sampler loop driven by an oracle noise predictor. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "diffusion/loop.h"
#include "ddpm/diffusion.h"
#include "gradcheck.h"

/* alpha_bar_t recomputed from the betas (t = -1 gives 1). */
static double ab_of(const ddpm_schedule *s, int t) {
    double ab = 1.0;
    for (int k = 0; k <= t; k++) ab *= 1.0 - s->beta[k];
    return ab;
}

static double clipd(double v) { return v < -1.0 ? -1.0 : v > 1.0 ? 1.0 : v; }

/* N = 2 images of D = 3 elements. At t = 500 of the linear T = 1000 schedule
 * (sqrt(ab) ~ 0.28) some x0_hat fall outside [-1, 1] and some inside. */
enum { SN = 2, SD = 3 };
static const float XT[SN * SD] = {0.9f, -0.4f, 0.5f, -1.2f, 0.5f, 0.3f};
static const float EPS[SN * SD] = {-0.3f, 0.2f, 0.45f, 0.1f, -0.8f, 0.2f};
static const float Z[SN * SD] = {0.7f, -1.3f, 0.2f, 2.1f, -0.4f, -0.9f};

static void test_q_sample(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    const float x0[SN * SD] = {1.0f, -0.5f, 0.25f, -1.0f, 0.0f, 0.75f};
    int t[SN] = {0, 999};
    float xt[SN * SD];
    ddpm_q_sample(xt, x0, EPS, t, &s, SN, SD);
    for (int n = 0; n < SN; n++) {
        double ab = ab_of(&s, t[n]);
        for (int d = 0; d < SD; d++) {
            int j = n * SD + d;
            double want = sqrt(ab) * x0[j] + sqrt(1.0 - ab) * EPS[j];
            assert_true(fabs(xt[j] - want) < 1e-6);
        }
    }
    /* t = 0: almost the image; t = T-1: almost the noise */
    assert_true(fabs(xt[0] - (sqrt(1.0 - 1e-4) * 1.0 + 0.01 * -0.3)) < 1e-6);
    for (int d = 0; d < SD; d++) assert_true(fabs(xt[SD + d] - EPS[SD + d]) < 0.01);
    /* in place */
    float buf[SN * SD];
    memcpy(buf, x0, sizeof buf);
    ddpm_q_sample(buf, buf, EPS, t, &s, SN, SD);
    assert_memory_equal(buf, xt, sizeof buf);
    ddpm_schedule_free(&s);
}

static void test_sample_timesteps(void **state) {
    (void)state;
    ddpm_rng a, b;
    ddpm_rng_seed(&a, 3);
    ddpm_rng_seed(&b, 3);
    int t1[1000], t2[1000], count[5] = {0};
    ddpm_sample_timesteps(t1, 1000, 5, &a);
    ddpm_sample_timesteps(t2, 1000, 5, &b);
    assert_memory_equal(t1, t2, sizeof t1);
    for (int n = 0; n < 1000; n++) {
        assert_true(t1[n] >= 0 && t1[n] < 5);
        count[t1[n]]++;
    }
    for (int k = 0; k < 5; k++) assert_true(count[k] > 140 && count[k] < 260);
}

/* x0_hat before clipping; asserts the fixture exercises both branches. */
static void raw_x0(double *x0, double ab) {
    int clipped = 0, inside = 0;
    for (int j = 0; j < SN * SD; j++) {
        x0[j] = (XT[j] - sqrt(1.0 - ab) * EPS[j]) / sqrt(ab);
        if (fabs(x0[j]) > 1.0) clipped++;
        else inside++;
    }
    assert_true(clipped >= 1 && inside >= 1);
}

static void test_ddpm_step_by_hand(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    int t = 500;
    double beta = s.beta[t], ab = ab_of(&s, t), abp = ab_of(&s, t - 1);
    double x0[SN * SD];
    raw_x0(x0, ab);
    float out[SN * SD];
    for (int v = 0; v < 2; v++) {
        ddpm_var_kind var = v ? DDPM_VAR_LARGE : DDPM_VAR_SMALL;
        double sigma = v ? sqrt(beta) : sqrt(beta * (1.0 - abp) / (1.0 - ab));
        ddpm_p_step(out, XT, EPS, Z, t, &s, var, SN, SD);
        for (int j = 0; j < SN * SD; j++) {
            double mu = sqrt(abp) * beta / (1.0 - ab) * clipd(x0[j]) +
                        sqrt(1.0 - beta) * (1.0 - abp) / (1.0 - ab) * XT[j];
            assert_true(fabs(out[j] - (mu + sigma * Z[j])) < 1e-6);
        }
    }
    /* z = NULL: the mean */
    ddpm_p_step(out, XT, EPS, NULL, t, &s, DDPM_VAR_SMALL, SN, SD);
    for (int j = 0; j < SN * SD; j++) {
        double mu = sqrt(abp) * beta / (1.0 - ab) * clipd(x0[j]) +
                    sqrt(1.0 - beta) * (1.0 - abp) / (1.0 - ab) * XT[j];
        assert_true(fabs(out[j] - mu) < 1e-6);
    }
    /* in place */
    float buf[SN * SD];
    memcpy(buf, XT, sizeof buf);
    ddpm_p_step(buf, buf, EPS, NULL, t, &s, DDPM_VAR_SMALL, SN, SD);
    assert_memory_equal(buf, out, sizeof buf);

    /* i = 0: x_prev = clipped x0_hat, no noise even with z given, both variances */
    for (int v = 0; v < 2; v++) {
        ddpm_p_step(out, XT, EPS, Z, 0, &s, v ? DDPM_VAR_LARGE : DDPM_VAR_SMALL, SN, SD);
        double ab0 = 1.0 - s.beta[0];
        for (int j = 0; j < SN * SD; j++) {
            double want = clipd((XT[j] - sqrt(1.0 - ab0) * EPS[j]) / sqrt(ab0));
            assert_true(fabs(out[j] - want) < 1e-6);
        }
    }
    ddpm_schedule_free(&s);
}

static void test_ddim_step_by_hand(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    int t = 500, tp = 400;
    double ab = ab_of(&s, t), abp = ab_of(&s, tp);
    double x0[SN * SD];
    raw_x0(x0, ab);
    float out[SN * SD], x0o[SN * SD];
    const float etas[3] = {0.0f, 1.0f, 0.5f};
    for (int e = 0; e < 3; e++) {
        double eta = etas[e];
        double sigma = eta * sqrt((1.0 - abp) / (1.0 - ab)) * sqrt(1.0 - ab / abp);
        ddpm_ddim_step(out, x0o, XT, EPS, Z, t, tp, etas[e], &s, SN, SD);
        for (int j = 0; j < SN * SD; j++) {
            double xc = clipd(x0[j]);
            double ep = (XT[j] - sqrt(ab) * xc) / sqrt(1.0 - ab); /* from the clipped x0 */
            double want = sqrt(abp) * xc + sqrt(1.0 - abp - sigma * sigma) * ep + sigma * Z[j];
            assert_true(fabs(out[j] - want) < 1e-6);
            assert_true(fabs(x0o[j] - xc) < 1e-6);
        }
    }
    /* eta = 0 is deterministic: z is not read */
    float out2[SN * SD];
    ddpm_ddim_step(out, NULL, XT, EPS, Z, t, tp, 0.0f, &s, SN, SD);
    ddpm_ddim_step(out2, NULL, XT, EPS, NULL, t, tp, 0.0f, &s, SN, SD);
    assert_memory_equal(out, out2, sizeof out);
    /* the final step (t_prev = -1) lands on the clipped x0_hat, whatever eta */
    ddpm_ddim_step(out, NULL, XT, EPS, Z, t, -1, 1.0f, &s, SN, SD);
    for (int j = 0; j < SN * SD; j++) assert_true(fabs(out[j] - clipd(x0[j])) < 1e-6);
    ddpm_schedule_free(&s);
}

/* ---- the sampler loop with an oracle ------------------------------------- */

/* The dataset is the single point x0star: the optimal eps predictor is
 * eps = (x_t - sqrt(ab_t) x0star) / sqrt(1 - ab_t). */
typedef struct {
    const ddpm_schedule *s; /* the base schedule (t are original timesteps) */
    const float *x0star;    /* [D] */
    size_t D;
    int calls;
    int seen_t[1000];
    int fail_at_call; /* > 0: return an error / NaN on that call */
    int nan_instead;
} oracle_ctx;

static ddpm_status oracle(void *vctx, float *eps, const float *x, const int *t, int N) {
    oracle_ctx *c = vctx;
    if (c->calls < 1000) c->seen_t[c->calls] = t[0];
    c->calls++;
    if (c->fail_at_call == c->calls && !c->nan_instead)
        return ddpm_error(DDPM_ERR_INTERRUPTED, "stop");
    double ab = ab_of(c->s, t[0]);
    for (int n = 0; n < N; n++) {
        assert_int_equal(t[n], t[0]); /* one timestep for the whole batch */
        for (size_t d = 0; d < c->D; d++) {
            size_t j = (size_t)n * c->D + d;
            eps[j] = (float)((x[j] - sqrt(ab) * c->x0star[d]) / sqrt(1.0 - ab));
        }
    }
    if (c->fail_at_call == c->calls && c->nan_instead) eps[0] = NAN;
    return DDPM_OK;
}

typedef struct {
    int count, last, nsteps, order_ok;
    const float *x;
    int probe_step; /* copy the state after this step into probe */
    float *probe;
    size_t nprobe;
} cb_state;

static void on_step(void *ud, int step, int nsteps, const float *x) {
    cb_state *c = ud;
    if (step != c->last + 1 || x != c->x || (c->nsteps && nsteps != c->nsteps)) c->order_ok = 0;
    c->nsteps = nsteps;
    c->last = step;
    c->count++;
    if (step == c->probe_step && c->probe) memcpy(c->probe, x, c->nprobe * sizeof(float));
}

static const float X0STAR[3] = {0.5f, -0.3f, 0.9f};

/* Runs the loop on N images from x_T ~ N(0, I) drawn from `seed` (the same
 * generator then supplies the sampler's noise). With cb, the state after
 * step probe_step (0: none) is copied to probe [N, 3]. */
static ddpm_status run(float *x, int N, const ddpm_schedule *s, ddpm_sampler_opts o,
                       oracle_ctx *oc, cb_state *cb, uint64_t seed, int probe_step,
                       float *probe) {
    size_t D = 3;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    ddpm_rng_fill_normal(&rng, x, (size_t)N * D);
    float *work = gc_alloc(ddpm_sample_loop_workspace(N, D));
    memset(oc, 0, sizeof *oc);
    oc->s = s;
    oc->x0star = X0STAR;
    oc->D = D;
    if (cb) {
        memset(cb, 0, sizeof *cb);
        cb->order_ok = 1;
        cb->x = x;
        cb->probe_step = probe_step;
        cb->probe = probe;
        cb->nprobe = (size_t)N * D;
    }
    ddpm_status st = ddpm_sample_loop(x, N, D, s, &o, oracle, oc, &rng, work,
                                      cb ? on_step : NULL, cb);
    ddpm_free(work);
    return st;
}

static double max_err_to_star(const float *x, int N) {
    double e = 0.0;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < 3; d++) e = fmax(e, fabs(x[n * 3 + d] - X0STAR[d]));
    return e;
}

static void test_ddim_oracle_recovers_x0(void **state) {
    (void)state;
    ddpm_schedule_kind kinds[2] = {DDPM_SCHED_LINEAR, DDPM_SCHED_COSINE};
    int steps[3] = {0, 50, 2}; /* K = 2 jumps from T-1 to 0 */
    for (int k = 0; k < 2; k++) {
        ddpm_schedule s;
        assert_int_equal(ddpm_schedule_init(&s, kinds[k], 1000), DDPM_OK);
        for (int si = 0; si < 3; si++) {
            float x[4 * 3];
            oracle_ctx oc;
            cb_state cb;
            ddpm_sampler_opts o = {DDPM_SAMPLER_DDIM, steps[si], 0.0f, DDPM_VAR_SMALL};
            assert_int_equal(run(x, 4, &s, o, &oc, &cb, 11, 0, NULL), DDPM_OK);
            int K = steps[si] ? steps[si] : 1000;
            assert_int_equal(oc.calls, K);
            assert_int_equal(cb.count, K);
            assert_int_equal(cb.nsteps, K);
            assert_true(cb.order_ok);
            assert_true(max_err_to_star(x, 4) < 1e-4);
        }
        ddpm_schedule_free(&s);
    }
}

static void test_ddpm_oracle_ends_at_x0(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    ddpm_sampler_opts opts[4] = {
        {DDPM_SAMPLER_DDPM, 0, 0.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDPM, 0, 0.0f, DDPM_VAR_LARGE},
        {DDPM_SAMPLER_DDPM, 25, 0.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDIM, 25, 1.0f, DDPM_VAR_SMALL},
    };
    for (int i = 0; i < 4; i++) {
        float x[4 * 3];
        oracle_ctx oc;
        cb_state cb;
        assert_int_equal(run(x, 4, &s, opts[i], &oc, &cb, 5, 0, NULL), DDPM_OK);
        assert_true(cb.order_ok);
        assert_int_equal(cb.count, opts[i].steps ? opts[i].steps : 1000);
        assert_true(max_err_to_star(x, 4) < 1e-4);
    }
    ddpm_schedule_free(&s);
}

/* With the oracle every step samples the exact posterior, so the state after
 * k steps is distributed as q(x_t | x0star) = N(sqrt(ab_t) x0star, 1 - ab_t).
 * This checks the posterior mean and variance (and DDIM's sigma). */
static void test_loop_marginals_match_forward_process(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 1000), DDPM_OK);
    const int N = 6000;
    float *x = gc_alloc((size_t)N * 3), *probe = gc_alloc((size_t)N * 3);
    ddpm_sampler_opts opts[4] = {
        {DDPM_SAMPLER_DDPM, 0, 0.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDPM, 100, 0.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDIM, 100, 1.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDIM, 100, 0.0f, DDPM_VAR_SMALL},
    };
    for (int i = 0; i < 4; i++) {
        int K = opts[i].steps ? opts[i].steps : 1000;
        int tau[1000];
        assert_int_equal(ddpm_schedule_respace(tau, K, 1000), DDPM_OK);
        int k = K / 2;          /* probe after k steps: ... */
        int t = tau[K - 1 - k]; /* ... the state is at timestep t */
        oracle_ctx oc;
        cb_state cb;
        assert_int_equal(run(x, N, &s, opts[i], &oc, &cb, 99, k, probe), DDPM_OK);
        assert_true(cb.order_ok);
        assert_int_equal(cb.count, K);
        double ab = ab_of(&s, t);
        for (int d = 0; d < 3; d++) {
            double m = 0.0, v = 0.0;
            for (int n = 0; n < N; n++) m += probe[n * 3 + d];
            m /= N;
            for (int n = 0; n < N; n++) v += (probe[n * 3 + d] - m) * (probe[n * 3 + d] - m);
            v /= N - 1;
            double want_m = sqrt(ab) * X0STAR[d], want_v = 1.0 - ab;
            /* ~5 standard errors */
            assert_true(fabs(m - want_m) < 5.0 * sqrt(want_v / N));
            assert_true(fabs(v - want_v) < 5.0 * want_v * sqrt(2.0 / N));
        }
        assert_true(max_err_to_star(x, N) < 1e-4);
    }
    ddpm_free(x);
    ddpm_free(probe);
    ddpm_schedule_free(&s);
}

static void test_loop_deterministic_and_calls_original_timesteps(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_COSINE, 1000), DDPM_OK);
    ddpm_sampler_opts opts[2] = {
        {DDPM_SAMPLER_DDPM, 10, 0.0f, DDPM_VAR_SMALL},
        {DDPM_SAMPLER_DDIM, 10, 0.5f, DDPM_VAR_SMALL},
    };
    for (int i = 0; i < 2; i++) {
        /* the oracle makes the endpoint nearly seed-independent, so the
         * trajectory is compared at a midpoint too */
        float a[8 * 3], b[8 * 3], c[8 * 3], pa[24], pb[24], pc[24];
        oracle_ctx oc;
        cb_state cb;
        assert_int_equal(run(a, 8, &s, opts[i], &oc, &cb, 42, 5, pa), DDPM_OK);
        assert_int_equal(cb.count, 10);
        assert_int_equal(cb.nsteps, 10);
        assert_true(cb.order_ok);
        assert_int_equal(oc.calls, 10);
        for (int k = 0; k < 10; k++) assert_int_equal(oc.seen_t[k], 999 - 111 * k);
        assert_int_equal(run(b, 8, &s, opts[i], &oc, &cb, 42, 5, pb), DDPM_OK);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(pa, pb, sizeof pa);
        assert_int_equal(run(c, 8, &s, opts[i], &oc, &cb, 43, 5, pc), DDPM_OK);
        assert_memory_not_equal(pa, pc, sizeof pa);
    }
    /* DDIM with eta = 0 draws no noise */
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDIM, 10, 0.0f, DDPM_VAR_SMALL};
    float x[3] = {0.1f, 0.2f, 0.3f}, work[6];
    ddpm_rng rng, before;
    ddpm_rng_seed(&rng, 9);
    before = rng;
    oracle_ctx oc = {.s = &s, .x0star = X0STAR, .D = 3};
    assert_int_equal(ddpm_sample_loop(x, 1, 3, &s, &o, oracle, &oc, &rng, work, NULL, NULL),
                     DDPM_OK);
    assert_memory_equal(&rng, &before, sizeof rng);
    ddpm_schedule_free(&s);
}

static void test_loop_errors(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 100), DDPM_OK);
    float x[6], work[12];
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    oracle_ctx oc = {.s = &s, .x0star = X0STAR, .D = 3};
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDPM, 101, 0.0f, DDPM_VAR_SMALL};
    memset(x, 0, sizeof x);
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, oracle, &oc, &rng, work, NULL, NULL),
                     DDPM_ERR_ARG);
    o.steps = -1;
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, oracle, &oc, &rng, work, NULL, NULL),
                     DDPM_ERR_ARG);
    o.steps = 0;
    o.kind = DDPM_SAMPLER_DDIM;
    o.eta = -1.0f;
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, oracle, &oc, &rng, work, NULL, NULL),
                     DDPM_ERR_ARG);
    o.eta = 0.0f;
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, NULL, &oc, &rng, work, NULL, NULL),
                     DDPM_ERR_ARG);
    /* the model's error stops the loop and is returned */
    oc.fail_at_call = 3;
    cb_state cb = {.order_ok = 1, .x = x};
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, oracle, &oc, &rng, work, on_step, &cb),
                     DDPM_ERR_INTERRUPTED);
    assert_int_equal(oc.calls, 3);
    assert_int_equal(cb.count, 2);
    /* a non-finite prediction is reported */
    memset(&oc, 0, sizeof oc);
    oc.s = &s;
    oc.x0star = X0STAR;
    oc.D = 3;
    oc.fail_at_call = 4;
    oc.nan_instead = 1;
    o.kind = DDPM_SAMPLER_DDPM;
    ddpm_clear_error();
    assert_int_equal(ddpm_sample_loop(x, 2, 3, &s, &o, oracle, &oc, &rng, work, NULL, NULL),
                     DDPM_ERR_NUMERIC);
    assert_non_null(strstr(ddpm_last_error(), "non-finite"));
    assert_int_equal(oc.calls, 4);
    ddpm_schedule_free(&s);
}

/* Large batches take the OpenMP path; it must match the serial one bit for bit. */
static void test_parallel_matches_serial(void **state) {
    (void)state;
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_COSINE, 100), DDPM_OK);
    const int N = 3001;
    const size_t D = 17, total = (size_t)N * D;
    float *xt = gc_alloc(total), *eps = gc_alloc(total), *z = gc_alloc(total);
    float *big = gc_alloc(total), *small = gc_alloc(total), *x0 = gc_alloc(total);
    int *t = malloc((size_t)N * sizeof(int));
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 17);
    gc_fill_normal(&rng, xt, total);
    gc_fill_normal(&rng, eps, total);
    gc_fill_normal(&rng, z, total);
    ddpm_sample_timesteps(t, N, 100, &rng);
    for (int kind = 0; kind < 3; kind++) {
        for (int n = -1; n < N; n++) { /* n = -1: the whole batch at once */
            int nn = n < 0 ? N : 1;
            size_t off = n < 0 ? 0 : (size_t)n * D;
            float *out = (n < 0 ? big : small) + off;
            if (kind == 0) ddpm_q_sample(out, xt + off, eps + off, t + (n < 0 ? 0 : n), &s, nn, D);
            if (kind == 1)
                ddpm_p_step(out, xt + off, eps + off, z + off, 37, &s, DDPM_VAR_SMALL, nn, D);
            if (kind == 2)
                ddpm_ddim_step(out, x0 + off, xt + off, eps + off, z + off, 60, 30, 0.7f, &s,
                               nn, D);
        }
        assert_memory_equal(big, small, total * sizeof(float));
    }
    ddpm_free(xt);
    ddpm_free(eps);
    ddpm_free(z);
    ddpm_free(big);
    ddpm_free(small);
    ddpm_free(x0);
    free(t);
    ddpm_schedule_free(&s);
}

static void test_names(void **state) {
    (void)state;
    assert_int_equal(ddpm_var_parse("small"), DDPM_VAR_SMALL);
    assert_int_equal(ddpm_var_parse("large"), DDPM_VAR_LARGE);
    assert_int_equal(ddpm_var_parse("big"), -1);
    assert_int_equal(ddpm_sampler_parse("ddpm"), DDPM_SAMPLER_DDPM);
    assert_int_equal(ddpm_sampler_parse("ddim"), DDPM_SAMPLER_DDIM);
    assert_int_equal(ddpm_sampler_parse(NULL), -1);
    assert_string_equal(ddpm_var_name(DDPM_VAR_LARGE), "large");
    assert_string_equal(ddpm_sampler_name(DDPM_SAMPLER_DDIM), "ddim");
}

/* `ddpm noise --t`: a list within [0, T-1], or ten evenly spaced steps. */
static void test_timesteps_parse(void **state) {
    (void)state;
    int t[8];
    assert_int_equal(ddpm_timesteps_parse("0,100,999", 1000, t, 8), 3);
    assert_int_equal(t[0], 0);
    assert_int_equal(t[1], 100);
    assert_int_equal(t[2], 999);
    assert_int_equal(ddpm_timesteps_parse("1000", 1000, t, 8), -1);
    assert_string_equal(ddpm_last_error(), "timestep 1000 out of range [0, 999] (T = 1000)");
    assert_int_equal(ddpm_timesteps_parse("1,2,3,4,5,6,7,8,9", 1000, t, 8), -1);
    assert_string_equal(ddpm_last_error(), "at most 8 timesteps");
    assert_int_equal(ddpm_timesteps_parse("1,,2", 1000, t, 8), -1);
    assert_string_equal(ddpm_last_error(), "expected a comma-separated list of integers, got '1,,2'");
    assert_int_equal(ddpm_timesteps_parse("-1", 1000, t, 8), -1);
    int d[10];
    assert_int_equal(ddpm_timesteps_parse(NULL, 1000, d, 10), 10); /* round(j 999 / 9) */
    assert_int_equal(d[0], 0);
    assert_int_equal(d[1], 111);
    assert_int_equal(d[9], 999);
    assert_int_equal(ddpm_timesteps_parse(NULL, 4, d, 10), 4); /* T < 10: every step */
    for (int j = 0; j < 4; j++) assert_int_equal(d[j], j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q_sample),
        cmocka_unit_test(test_sample_timesteps),
        cmocka_unit_test(test_ddpm_step_by_hand),
        cmocka_unit_test(test_ddim_step_by_hand),
        cmocka_unit_test(test_ddim_oracle_recovers_x0),
        cmocka_unit_test(test_ddpm_oracle_ends_at_x0),
        cmocka_unit_test(test_loop_marginals_match_forward_process),
        cmocka_unit_test(test_loop_deterministic_and_calls_original_timesteps),
        cmocka_unit_test(test_loop_errors),
        cmocka_unit_test(test_parallel_matches_serial),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_timesteps_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
