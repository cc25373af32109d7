/* test_toy.c: the toy diffusion library: the seed's schedule and its trap,
 * schedules from explicit betas, the datasets (each on its shape), the
 * scaling, exact resume (N steps = N/2 + save + resume + N/2, byte for
 * byte), checkpoint validation, and sampling through ddpm_sample_loop. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#ifndef M_SQRT2
#define M_SQRT2 1.41421356237309504880
#endif

#include "cliutil.h"
#include "ddpm/safetensors.h"
#include "ddpm/run.h"
#include "ddpm/toy.h"

static char g_dir[256];

static const char *P(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* The numbers: at T = 100 the seed's betas sum to about 0.25 and
 * alpha_bar_{T-1} = 0.78, so sqrt(alpha_bar) = 0.88 of the signal is left. */
static void test_seed_schedule_trap(void **state) {
    (void)state;
    ddpm_toy_config c;
    ddpm_toy_config_default(&c);
    c.seed_betas = true;
    ddpm_schedule s;
    assert_int_equal(ddpm_toy_schedule_init(&s, &c), DDPM_OK);
    double sum = 0.0, ab = 1.0;
    for (int t = 0; t < 100; t++) {
        double u = -6.0 + 12.0 * t / 99.0, b = (0.5e-2 - 1e-5) / (1.0 + exp(-u)) + 1e-5;
        assert_true(fabs(s.beta[t] - b) < 1e-15);
        sum += b, ab *= 1.0 - b;
    }
    printf("seed schedule: sum beta %.4f, alpha_bar_T %.4f, sqrt %.4f\n", sum, ab, sqrt(ab));
    assert_true(fabs(sum - 0.25) < 0.005);
    assert_true(fabs(s.alpha_bar[99] - ab) < 1e-12 && fabs(ab - 0.78) < 0.005);
    assert_true(fabs(s.sqrt_alpha_bar[99] - 0.88) < 0.005);
    assert_string_equal(ddpm_toy_schedule_name(&c), "seed-sigmoid");
    ddpm_schedule_free(&s);
    /* the default (the library's sigmoid, scaled by 1000/T) does reach noise */
    c.seed_betas = false;
    assert_int_equal(ddpm_toy_schedule_init(&s, &c), DDPM_OK);
    assert_true(s.alpha_bar[99] < 1e-4);
    ddpm_schedule_free(&s);
}

static void test_schedule_from_betas(void **state) {
    (void)state;
    ddpm_schedule a, b;
    assert_int_equal(ddpm_schedule_init(&a, DDPM_SCHED_LINEAR, 50), DDPM_OK);
    assert_int_equal(ddpm_schedule_init_betas(&b, DDPM_SCHED_LINEAR, a.beta, 50), DDPM_OK);
    for (int t = 0; t < 50; t++) {
        assert_true(a.alpha_bar[t] == b.alpha_bar[t] && a.coef_x0[t] == b.coef_x0[t]);
        assert_true(a.posterior_log_var_clipped[t] == b.posterior_log_var_clipped[t]);
        assert_int_equal(b.timesteps[t], t);
    }
    ddpm_schedule_free(&b);
    double bad[3] = {0.1, 0.0, 0.2};
    assert_int_equal(ddpm_schedule_init_betas(&b, DDPM_SCHED_LINEAR, bad, 3), DDPM_ERR_ARG);
    assert_null(b.beta);
    ddpm_schedule_free(&a);
    ddpm_schedule_free(&b);
}

static void test_datasets_on_their_shapes(void **state) {
    (void)state;
    enum { N = 2000 };
    static float xy[2 * N], xy2[2 * N];
    ddpm_rng rng;
    for (int k = 0; k < 5; k++) {
        assert_int_equal(ddpm_toy_data_parse(ddpm_toy_data_name((ddpm_toy_data_kind)k)), k);
        ddpm_rng_seed(&rng, 42);
        ddpm_toy_data_draw(xy, N, (ddpm_toy_data_kind)k, &rng);
        ddpm_rng_seed(&rng, 42);
        ddpm_toy_data_draw(xy2, N, (ddpm_toy_data_kind)k, &rng);
        assert_memory_equal(xy, xy2, sizeof xy); /* a seed fixes the data */
        for (int i = 0; i < N; i++) {
            double x = xy[2 * i], y = xy[2 * i + 1];
            switch (k) {
            case DDPM_TOY_SCURVE: /* (sin t, sign(t)(cos t - 1)) / 10: x^2 + (1 - |y|)^2 = 1 */
                x *= 10, y *= 10;
                assert_true(fabs(x * x + (1 - fabs(y)) * (1 - fabs(y)) - 1) < 1e-5 && fabs(y) <= 2 + 1e-6);
                break;
            case DDPM_TOY_SWISSROLL: { /* radius = angle: |p| 10 = t in [1.5 pi, 4.5 pi] */
                double r = 10 * hypot(x, y);
                assert_true(r >= 1.5 * M_PI - 1e-4 && r <= 4.5 * M_PI + 1e-4);
                assert_true(fabs(cos(r) * r / 10 - x) < 1e-4 && fabs(sin(r) * r / 10 - y) < 1e-4);
                break;
            }
            case DDPM_TOY_CHECKERBOARD: /* black squares of the 4 x 4 board on [-4, 4]^2 */
                assert_true(x >= -4 && x < 4 && y >= -4 && y < 4);
                assert_int_equal(((int)floor(x / 2) + (int)floor(y / 2)) & 1, 0);
                break;
            case DDPM_TOY_8GAUSSIANS: { /* within 6 std of a centre at radius 2 sqrt(2) */
                double best = INFINITY;
                for (int c = 0; c < 8; c++)
                    best = fmin(best, hypot(x - 2 * M_SQRT2 * cos(c * M_PI / 4), y - 2 * M_SQRT2 * sin(c * M_PI / 4)));
                assert_true(best < 6 * 0.5 / M_SQRT2);
                break;
            }
            default: /* moons: within 6 noise std of one of the two arcs */
                assert_true(fmin(fabs(hypot(x, y) - 1), fabs(hypot(x - 1, y - 0.5) - 1)) < 0.3);
            }
        }
    }
    assert_int_equal(ddpm_toy_data_parse("circles"), -1);
    assert_int_equal(ddpm_toy_data_check("moons"), DDPM_OK);
    assert_int_equal(ddpm_toy_data_check("points.csv"), DDPM_OK); /* a path: a '.' or a '/' */
    assert_int_equal(ddpm_toy_data_check("runs/pts"), DDPM_OK);
    assert_int_equal(ddpm_toy_data_check("circles"), DDPM_ERR_ARG);
    assert_string_equal(ddpm_last_error(), "unknown toy dataset 'circles' (expected scurve, swissroll, moons, 8gaussians, "
                                           "checkerboard or a FILE.csv)");
}

static void test_scaling(void **state) {
    (void)state;
    float xy[8] = {1, 2, 3, 6, 5, 2, 3, -2}, orig[8];
    memcpy(orig, xy, sizeof xy);
    ddpm_toy_scaling s = ddpm_toy_scaling_unit(xy, 4);
    assert_true(s.shift[0] == 3 && s.shift[1] == 2 && s.scale == 4); /* centred: max |.| = 4 */
    ddpm_toy_to_model(xy, 4, &s);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < 8; i++) lo = fminf(lo, xy[i]), hi = fmaxf(hi, xy[i]);
    assert_true(lo == -1 && hi == 1);
    ddpm_toy_to_data(xy, 4, &s);
    assert_memory_equal(xy, orig, sizeof xy);
}

/* A small trainer on 64 moons points: hidden 16, T 10, batch 7 (odd: the
 * antithetic pairing has a leftover), `iters` steps in total. */
static ddpm_toy *small_trainer(int64_t iters) {
    ddpm_toy_config c;
    ddpm_toy_config_default(&c);
    c.hidden = 16, c.T = 10, c.batch = 7, c.iters = iters, c.seed = 5;
    float xy[128];
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    ddpm_toy_data_draw(xy, 64, DDPM_TOY_MOONS, &rng);
    ddpm_toy_scaling s = ddpm_toy_scaling_unit(xy, 64);
    ddpm_toy_to_model(xy, 64, &s);
    ddpm_toy *t;
    assert_int_equal(ddpm_toy_create(&t, &c, xy, 64, &s, "moons"), DDPM_OK);
    return t;
}

static void run_steps(ddpm_toy *t, int n) {
    for (int i = 0; i < n; i++) assert_int_equal(ddpm_toy_step(t, NULL), DDPM_OK);
}

static void test_resume_is_exact(void **state) {
    (void)state;
    ddpm_toy *full = small_trainer(40);
    run_steps(full, 40);
    assert_int_equal(ddpm_toy_step(full, NULL), DDPM_ERR_ARG); /* done */
    assert_int_equal(ddpm_toy_save(full, P("full.safetensors")), DDPM_OK);

    ddpm_toy *half = small_trainer(40);
    run_steps(half, 20);
    assert_int_equal(ddpm_toy_save(half, P("half.safetensors")), DDPM_OK);
    ddpm_toy_free(half);
    ddpm_toy *res;
    assert_int_equal(ddpm_toy_resume(&res, P("half.safetensors"), 0), DDPM_OK);
    assert_int_equal(ddpm_toy_step_count(res), 20);
    assert_string_equal(ddpm_toy_data_label(res), "moons");
    run_steps(res, 20);
    assert_int_equal(ddpm_toy_save(res, P("resumed.safetensors")), DDPM_OK);
    assert_true(cli_same_file(P("full.safetensors"), P("resumed.safetensors")));
    /* the resumed run's history is the full one's, and so are its samples */
    assert_memory_equal(ddpm_toy_loss_log(full), ddpm_toy_loss_log(res), 40 * sizeof(float));
    float a[2 * 50], b[2 * 50];
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDPM, 0, 0.0f, DDPM_VAR_SMALL, DDPM_SPACING_DEFAULT};
    assert_int_equal(ddpm_toy_sample(full, a, 50, &o, 3, NULL, NULL), DDPM_OK);
    assert_int_equal(ddpm_toy_sample(res, b, 50, &o, 3, NULL, NULL), DDPM_OK);
    assert_memory_equal(a, b, sizeof a);
    /* resuming with more iterations trains longer */
    ddpm_toy_free(res);
    assert_int_equal(ddpm_toy_resume(&res, P("half.safetensors"), 60), DDPM_OK);
    assert_int_equal(ddpm_toy_get_config(res)->iters, 60); /* training longer */
    run_steps(res, 40);
    assert_int_equal(ddpm_toy_resume(&half, P("full.safetensors"), 10), DDPM_ERR_ARG); /* iters < step */
    ddpm_toy_free(res);
    ddpm_toy_free(full);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    ddpm_toy *t = small_trainer(4);
    run_steps(t, 2);
    assert_int_equal(ddpm_toy_save(t, P("ok.safetensors")), DDPM_OK);
    /* drop one tensor: the file is still valid safetensors but not a toy checkpoint */
    ddpm_st_file f;
    assert_int_equal(ddpm_st_load(&f, P("ok.safetensors")), DDPM_OK);
    ddpm_st_entry e[64];
    int ne = 0;
    for (int i = 0; i < f.ntensors; i++) {
        const ddpm_st_tensor *x = &f.tensors[i];
        if (!strcmp(x->name, "adam_v.linears.2.bias")) continue;
        e[ne] = (ddpm_st_entry){x->name, x->ndim, {0}, x->data};
        for (int d = 0; d < x->ndim; d++) e[ne].shape[d] = x->shape[d];
        ne++;
    }
    assert_int_equal(ddpm_st_save(P("missing.safetensors"), e, ne, f.meta, f.nmeta), DDPM_OK);
    ddpm_st_meta meta[1] = {{"format", "ddpm"}};
    assert_int_equal(ddpm_st_save(P("unet.safetensors"), e, ne, meta, 1), DDPM_OK);
    ddpm_st_free(&f);
    ddpm_toy *r = (ddpm_toy *)1;
    assert_int_equal(ddpm_toy_resume(&r, P("missing.safetensors"), 0), DDPM_ERR_FORMAT);
    assert_null(r);
    assert_non_null(strstr(ddpm_last_error(), "missing tensor 'adam_v.linears.2.bias'"));
    assert_int_equal(ddpm_toy_resume(&r, P("unet.safetensors"), 0), DDPM_ERR_FORMAT);
    assert_non_null(strstr(ddpm_last_error(), "not a ddpm toy checkpoint"));
    assert_int_equal(ddpm_toy_resume(&r, P("nonexistent.safetensors"), 0), DDPM_ERR_IO);
    ddpm_toy_free(t);
}

/* Sampling goes through the sampler driver: a seed fixes the points, on_step
 * sees x_T (step 0) to x_0, each point depends only on its own stream (the
 * first 7 of 20 equal a run of 7), every sampler kind runs. */
static int g_steps;
static void count_step(void *ud, int first, int N, int k, int K, const float *x) {
    (void)ud, (void)x;
    assert_int_equal(first, 0);
    assert_int_equal(N, 20);
    assert_int_equal(k, g_steps++);
    assert_int_equal(K, 5);
}

static void test_sampling(void **state) {
    (void)state;
    ddpm_toy *t = small_trainer(30);
    run_steps(t, 30);
    float x[2 * 20], y[2 * 20], z[2 * 7];
    ddpm_sampler_opts o = {DDPM_SAMPLER_DDIM, 5, 0.0f, DDPM_VAR_SMALL, DDPM_SPACING_DEFAULT};
    g_steps = 0;
    assert_int_equal(ddpm_toy_sample(t, x, 20, &o, 8, count_step, NULL), DDPM_OK);
    assert_int_equal(g_steps, 6);
    assert_int_equal(ddpm_toy_sample(t, y, 20, &o, 8, NULL, NULL), DDPM_OK);
    assert_memory_equal(x, y, sizeof x);
    assert_int_equal(ddpm_toy_sample(t, z, 7, &o, 8, NULL, NULL), DDPM_OK);
    assert_memory_equal(x, z, sizeof z);
    for (int i = 0; i < 40; i++) assert_true(isfinite(x[i]));
    for (int k = 0; k < 3; k++) {
        ddpm_sampler_opts ok = {(ddpm_sampler_kind)k, 0, 0.5f, DDPM_VAR_SMALL, DDPM_SPACING_DEFAULT};
        assert_int_equal(ddpm_toy_sample(t, y, 20, &ok, 9, NULL, NULL), DDPM_OK);
        assert_true(memcmp(x, y, sizeof x) != 0);
    }
    assert_int_equal(ddpm_toy_sample(t, x, 0, &o, 8, NULL, NULL), DDPM_ERR_ARG);
    ddpm_toy_free(t);
}

/* The toy's run (run.h): every output written, the measures in range, and
 * the same seed giving the same samples; a CSV of points works the same way. */
static void test_toy_run(void **state) {
    (void)state;
    ddpm_toy_config c;
    ddpm_toy_config_default(&c);
    c.hidden = 16, c.batch = 16, c.iters = 40;
    ddpm_toy_run_opts o = {.dir = P("run/a"), .sampler = {DDPM_SAMPLER_DDIM, 10, 0.0f, DDPM_VAR_SMALL, DDPM_SPACING_DEFAULT},
                           .num = 50, .seed = 3};
    ddpm_toy_result r;
    for (int k = 0; k < 2; k++) {
        ddpm_toy *t;
        assert_int_equal(ddpm_toy_run_create(&t, &c, "moons", 200, true, 3), DDPM_OK);
        o.dir = P(k ? "run/b" : "run/a");
        assert_int_equal(ddpm_toy_run(t, &o, &r), DDPM_OK);
        ddpm_toy_free(t);
        assert_int_equal(r.steps, 40);
        assert_true(r.fresh && r.m == 50);
        assert_true(r.energy > 0 && r.energy_floor > 0 && isfinite(r.energy));
        assert_true(r.near_frac >= 0 && r.near_frac <= 1 && r.near_r > 0);
    }
    const char *files[] = {"toy.safetensors", "log.csv", "loss.png", "forward.png", "reverse.png", "samples.csv",
                           "samples.png"};
    for (int i = 0; i < 7; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/run/a/%s", g_dir, files[i]);
        snprintf(b, sizeof b, "%s/run/b/%s", g_dir, files[i]);
        if (!cli_exists(a)) fail_msg("no %s", a);
        if (!cli_same_file(a, b)) fail_msg("%s differs between two runs of one seed", files[i]);
    }
    size_t n;
    char *csv = cli_slurp(P("run/a/samples.csv"), &n);
    assert_int_equal(cli_lines(csv), 1 + 50);
    free(csv);
    /* a user's points: distances against disjoint subsets of them */
    cli_write_text(P("pts.csv"), "x,y\n0,0\n1,0\n0,1\n1,1\n2,2\n3,1\n");
    ddpm_toy *t;
    assert_int_equal(ddpm_toy_run_create(&t, &c, P("pts.csv"), 0, false, 3), DDPM_OK);
    o.dir = P("run/csv");
    assert_int_equal(ddpm_toy_run(t, &o, &r), DDPM_OK);
    assert_true(!r.fresh && r.m == 3); /* half the 6 points */
    ddpm_toy_free(t);
    assert_int_equal(ddpm_toy_run_create(&t, &c, P("missing.csv"), 0, false, 3), DDPM_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_schedule_trap),
        cmocka_unit_test(test_schedule_from_betas),
        cmocka_unit_test(test_datasets_on_their_shapes),
        cmocka_unit_test(test_scaling),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_bad_checkpoints),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_toy_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
