/* test_pipeline.c: what the pipeline (pipeline.h) decides, pinned by the
 * images it draws, never by its messages:
 * - which weights: EMA by default, the raw ones with raw_weights or when the
 *   file has no EMA tensors (draws compared byte for byte with pipelines
 *   created over the tensors ddpm_checkpoint_read returns);
 * - the policy for old files (no schedule/T: linear/1000, no objective: eps),
 *   a recorded schedule, T and objective actually used, unknown values
 *   rejected naming the file and key;
 * - the objective: a v-model's draw equals ddpm_sampler_run over the raw
 *   network with ddpm_objective_convert applied by hand;
 * - labels: cycling from the image index, a fixed label, the labels array,
 *   --label by index and by class name, guidance weights 0 and 1 (what
 *   guidance.c promises bit for bit), all against ddpm_sampler_run over the
 *   bare UNet;
 * - per-image streams (first/n, max_batch) and ddpm_pipeline_set_weights.
 * The model is a tiny random UNet on 1 x 8 x 8 images with T = 10, so every
 * draw is a few milliseconds. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/image.h"
#include "ddpm/meta.h"
#include "ddpm/objective.h"
#include "ddpm/pipeline.h"
#include "ddpm/rng.h"
#include "ddpm/sampler.h"
#include "ddpm/unet.h"

#define RES 8
#define D (RES * RES)
#define NCLS 3
#define NMAX 8

static char g_dir[400];

static ddpm_unet_config tiny_cfg(int classes) {
    return (ddpm_unet_config){.in_ch = 1, .res = RES, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2,
                              .num_res_blocks = 1, .num_attn = 0, .groups = 4, .dropout = 0.0f,
                              .num_classes = classes};
}

/* Random weights: the initialisation plus noise on every tensor, so that the
 * output head (which an initialisation may zero) depends on the seed too. */
static float *random_params(const ddpm_unet_config *c, uint64_t seed) {
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, seed);
    size_t n = ddpm_unet_num_params(m);
    float *p = malloc(n * sizeof(float));
    memcpy(p, ddpm_unet_params(m), n * sizeof(float));
    ddpm_unet_free(m);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed + 1000);
    for (size_t i = 0; i < n; i++) p[i] += 0.05f * ddpm_rng_normal(&rng);
    return p;
}

static size_t nparams(const ddpm_unet_config *c) {
    size_t n;
    assert_int_equal(ddpm_unet_describe(c, &n, NULL), DDPM_OK);
    return n;
}

/* A checkpoint in g_dir/name with raw weights (seed 1), EMA weights (seed 2)
 * when ema, and the metadata meta[0..nmeta). Returns the path (static buffer
 * per call site is not needed: the caller copies). */
static void write_ck(char *path, size_t cap, const char *name, int classes, bool ema, const ddpm_st_meta *meta,
                     int nmeta) {
    snprintf(path, cap, "%s/%s", g_dir, name);
    ddpm_unet_config c = tiny_cfg(classes);
    float *raw = random_params(&c, 1), *e = ema ? random_params(&c, 2) : NULL;
    ddpm_checkpoint_extras x = {.ema = e, .extra = meta, .nextra = nmeta};
    assert_int_equal(ddpm_checkpoint_save(path, &c, raw, &x), DDPM_OK);
    free(raw);
    free(e);
}

/* The tensors under prefix of a checkpoint. */
static float *read_tensors(const char *path, const char *prefix, ddpm_unet_config *cfg) {
    ddpm_checkpoint ck;
    assert_int_equal(ddpm_checkpoint_open(&ck, path), DDPM_OK);
    float *p = malloc(ck.total * sizeof(float));
    assert_int_equal(ddpm_checkpoint_read(&ck, prefix, p), DDPM_OK);
    if (cfg) *cfg = ck.cfg;
    ddpm_checkpoint_close(&ck);
    return p;
}

static ddpm_pipeline *create(const ddpm_unet_config *c, const float *params, ddpm_schedule_kind k, int T,
                             ddpm_objective obj, int max_batch) {
    ddpm_pipeline_model m = {.cfg = *c, .params = params, .schedule = k, .T = T, .objective = obj};
    ddpm_pipeline_opts o = {.max_batch = max_batch};
    ddpm_pipeline *p;
    assert_int_equal(ddpm_pipeline_create(&p, &m, &o), DDPM_OK);
    return p;
}

static ddpm_pipeline *open_ck(const char *path, bool raw) {
    ddpm_pipeline_opts o = {.raw_weights = raw};
    ddpm_pipeline *p;
    if (ddpm_pipeline_open(&p, path, &o)) fail_msg("%s", ddpm_last_error());
    return p;
}

/* A DDPM-sampler draw (noise at every step, so the seed streams matter). */
static ddpm_draw_opts opts(void) {
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.seed = 7;
    return o;
}

static void draw(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, float *x) {
    if (ddpm_pipeline_draw(p, o, first, n, x)) fail_msg("%s", ddpm_last_error());
}

static bool same(const float *a, const float *b, int n) { return !memcmp(a, b, (size_t)n * D * sizeof(float)); }

/* A draw must differ substantially for "differs" to mean something. */
static double max_diff(const float *a, const float *b, int n) {
    double m = 0.0;
    for (int i = 0; i < n * D; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
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

static const ddpm_st_meta META10[] = {{DDPM_META_SCHEDULE, "linear"}, {DDPM_META_TIMESTEPS, "10"}};

/* ---- which weights ------------------------------------------------------------------ */

static void test_ema_or_raw(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "ema.safetensors", 0, true, META10, 2);
    ddpm_unet_config c;
    float *ema = read_tensors(ck, "ema.", &c), *raw = read_tensors(ck, "", NULL);
    ddpm_pipeline *pe = open_ck(ck, false), *pr = open_ck(ck, true);
    ddpm_pipeline *ce = create(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, 0);
    ddpm_pipeline *cr = create(&c, raw, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, 0);
    const ddpm_pipeline_info *ie = ddpm_pipeline_info_get(pe), *ir = ddpm_pipeline_info_get(pr);
    assert_true(ie->has_ema && ie->ema);
    assert_true(ir->has_ema && !ir->ema);
    ddpm_draw_opts o = opts();
    float a[4 * D], b[4 * D], r1[4 * D], r2[4 * D];
    draw(pe, &o, 0, 4, a);
    draw(ce, &o, 0, 4, b);
    assert_true(same(a, b, 4));
    draw(pr, &o, 0, 4, r1);
    draw(cr, &o, 0, 4, r2);
    assert_true(same(r1, r2, 4));
    assert_true(max_diff(a, r1, 4) > 1e-3);
    /* u8 is the same draw through ddpm_image_to_u8 */
    uint8_t u[4 * D], v[4 * D];
    assert_int_equal(ddpm_pipeline_draw_u8(pe, &o, 0, 4, u), DDPM_OK);
    ddpm_image_to_u8(v, a, 4 * D);
    assert_memory_equal(u, v, sizeof u);
    ddpm_pipeline_free(pe);
    ddpm_pipeline_free(pr);
    ddpm_pipeline_free(ce);
    ddpm_pipeline_free(cr);
    free(ema);
    free(raw);
}

static void test_no_ema_uses_raw(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "noema.safetensors", 0, false, META10, 2);
    ddpm_unet_config c;
    float *raw = read_tensors(ck, "", &c);
    ddpm_pipeline *p = open_ck(ck, false), *cr = create(&c, raw, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, 0);
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    assert_false(in->has_ema);
    assert_false(in->ema);
    ddpm_draw_opts o = opts();
    float a[3 * D], b[3 * D];
    draw(p, &o, 0, 3, a);
    draw(cr, &o, 0, 3, b);
    assert_true(same(a, b, 3));
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(cr);
    free(raw);
}

/* ---- the recipe: schedule, T, objective --------------------------------------------- */

static void test_legacy_policy(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "old.safetensors", 0, false, NULL, 0);
    ddpm_unet_config c;
    float *raw = read_tensors(ck, "", &c);
    ddpm_pipeline *p = open_ck(ck, false);
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    assert_true(in->schedule_assumed && in->T_assumed && in->objective_assumed);
    assert_int_equal(in->schedule, DDPM_SCHED_LINEAR);
    assert_int_equal(in->T, 1000);
    assert_int_equal(in->objective, DDPM_OBJ_EPS);
    assert_int_equal(ddpm_pipeline_schedule(p)->T, 1000);
    /* by output: the draw of linear/1000/eps, and not that of T = 999 */
    ddpm_draw_opts o = opts();
    o.sampler.kind = DDPM_SAMPLER_DDIM;
    o.sampler.steps = 3;
    ddpm_pipeline *ref = create(&c, raw, DDPM_SCHED_LINEAR, 1000, DDPM_OBJ_EPS, 0);
    ddpm_pipeline *other = create(&c, raw, DDPM_SCHED_LINEAR, 999, DDPM_OBJ_EPS, 0);
    float a[2 * D], b[2 * D], d[2 * D];
    draw(p, &o, 0, 2, a);
    draw(ref, &o, 0, 2, b);
    draw(other, &o, 0, 2, d);
    assert_true(same(a, b, 2));
    assert_false(same(a, d, 2));
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(ref);
    ddpm_pipeline_free(other);
    free(raw);
}

/* A recorded schedule, T and objective are the ones used (none assumed). */
static void test_recorded_recipe(void **state) {
    (void)state;
    const ddpm_schedule_kind kinds[] = {DDPM_SCHED_COSINE, DDPM_SCHED_QUADRATIC, DDPM_SCHED_SIGMOID};
    const char *names[] = {"cosine", "quadratic", "sigmoid"};
    for (int k = 0; k < 3; k++) {
        char ck[600];
        ddpm_st_meta meta[3] = {{DDPM_META_SCHEDULE, names[k]}, {DDPM_META_TIMESTEPS, "12"},
                                {DDPM_META_OBJECTIVE, k == 1 ? "x0" : "eps"}};
        write_ck(ck, sizeof ck, "rec.safetensors", 0, false, meta, 3);
        ddpm_unet_config c;
        float *raw = read_tensors(ck, "", &c);
        ddpm_pipeline *p = open_ck(ck, false);
        const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
        assert_false(in->schedule_assumed || in->T_assumed || in->objective_assumed);
        assert_int_equal(in->schedule, kinds[k]);
        assert_int_equal(in->T, 12);
        ddpm_objective obj = k == 1 ? DDPM_OBJ_X0 : DDPM_OBJ_EPS;
        assert_int_equal(in->objective, obj);
        ddpm_pipeline *ref = create(&c, raw, kinds[k], 12, obj, 0);
        ddpm_pipeline *lin = create(&c, raw, DDPM_SCHED_LINEAR, 12, obj, 0);
        ddpm_draw_opts o = opts();
        float a[2 * D], b[2 * D], d[2 * D];
        draw(p, &o, 0, 2, a);
        draw(ref, &o, 0, 2, b);
        draw(lin, &o, 0, 2, d);
        assert_true(same(a, b, 2));
        assert_true(max_diff(a, d, 2) > 1e-4);
        ddpm_pipeline_free(p);
        ddpm_pipeline_free(ref);
        ddpm_pipeline_free(lin);
        free(raw);
    }
}

/* A valid recipe (dpm++2m at 4 steps as the model's sampler) with key's value replaced. */
static void expect_open_error(const char *name, const char *key, const char *value) {
    char ck[600];
    ddpm_st_meta meta[5] = {{DDPM_META_SCHEDULE, "linear"}, {DDPM_META_TIMESTEPS, "10"}, {DDPM_META_OBJECTIVE, "eps"},
                            {DDPM_META_SAMPLER, "dpm++2m"}, {DDPM_META_SAMPLE_STEPS, "4"}};
    for (int i = 0; i < 5; i++)
        if (!strcmp(meta[i].key, key)) meta[i].value = value;
    write_ck(ck, sizeof ck, name, 0, false, meta, 5);
    ddpm_pipeline *p = (ddpm_pipeline *)1;
    ddpm_status st = ddpm_pipeline_open(&p, ck, NULL);
    assert_int_not_equal(st, DDPM_OK);
    assert_null(p);
    const char *e = ddpm_last_error();
    if (!strstr(e, ck) || !strstr(e, key)) fail_msg("the error for %s=%s names neither file nor key: %s", key, value, e);
}

static void test_unknown_values(void **state) {
    (void)state;
    expect_open_error("badsched.safetensors", DDPM_META_SCHEDULE, "cosinus");
    expect_open_error("badobj.safetensors", DDPM_META_OBJECTIVE, "score");
    expect_open_error("badT.safetensors", DDPM_META_TIMESTEPS, "ten");
    expect_open_error("bigT.safetensors", DDPM_META_TIMESTEPS, "1000000000");
    expect_open_error("oneT.safetensors", DDPM_META_TIMESTEPS, "1");
}

/* The model's default sampler: recorded (dpm++2m, 4 steps) it is what
 * ddpm_pipeline_draw_opts_default draws with, bit for bit the explicit
 * options; absent it is ddpm at its default steps; a created pipeline takes
 * the model's; bad values fail naming the file and the key
 * (expect_open_error, whose valid recipe records dpm++2m at 4 steps). */
static void test_recorded_sampler(void **state) {
    (void)state;
    char ck[600], plain[600];
    const ddpm_st_meta meta[4] = {{DDPM_META_SCHEDULE, "linear"}, {DDPM_META_TIMESTEPS, "10"},
                                  {DDPM_META_SAMPLER, "dpm++2m"}, {DDPM_META_SAMPLE_STEPS, "4"}};
    write_ck(ck, sizeof ck, "smp.safetensors", 0, false, meta, 4);
    write_ck(plain, sizeof plain, "plain.safetensors", 0, false, META10, 2);
    ddpm_pipeline *p = open_ck(ck, false), *q = open_ck(plain, false);
    assert_int_equal(ddpm_pipeline_info_get(p)->sampler, DDPM_SAMPLER_DPMPP_2M);
    assert_int_equal(ddpm_pipeline_info_get(p)->sample_steps, 4);
    assert_int_equal(ddpm_pipeline_info_get(q)->sampler, DDPM_SAMPLER_DDPM);
    assert_int_equal(ddpm_pipeline_info_get(q)->sample_steps, 0);
    ddpm_draw_opts a, b, c;
    ddpm_pipeline_draw_opts_default(p, &a);
    ddpm_draw_opts_default(&b);
    b.sampler.kind = DDPM_SAMPLER_DPMPP_2M, b.sampler.steps = 4;
    ddpm_pipeline_draw_opts_default(q, &c);
    assert_int_equal(c.sampler.kind, DDPM_SAMPLER_DDPM);
    assert_int_equal(c.sampler.steps, 0);
    float x[2 * D], y[2 * D], z[2 * D];
    draw(p, &a, 0, 2, x);
    draw(p, &b, 0, 2, y);
    draw(p, &c, 0, 2, z);
    assert_true(same(x, y, 2));
    assert_true(max_diff(x, z, 2) > 1e-4);
    ddpm_unet_config cfg = tiny_cfg(0);
    float *raw = random_params(&cfg, 1);
    ddpm_pipeline_model m = {.cfg = cfg, .params = raw, .T = 10, .sampler = DDPM_SAMPLER_DDIM, .sample_steps = 3};
    ddpm_pipeline *r;
    assert_int_equal(ddpm_pipeline_create(&r, &m, NULL), DDPM_OK);
    ddpm_pipeline_draw_opts_default(r, &a);
    assert_int_equal(a.sampler.kind, DDPM_SAMPLER_DDIM);
    assert_int_equal(a.sampler.steps, 3);
    ddpm_pipeline_free(r);
    free(raw);
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(q);
    expect_open_error("badsmp.safetensors", DDPM_META_SAMPLER, "lms");
    expect_open_error("badk.safetensors", DDPM_META_SAMPLE_STEPS, "four");
    expect_open_error("bigk.safetensors", DDPM_META_SAMPLE_STEPS, "10"); /* dpm++2m takes at most T - 1 */
    expect_open_error("negk.safetensors", DDPM_META_SAMPLE_STEPS, "-1");
}

/* The network's raw output converted from obj by ddpm_objective_convert. */
typedef struct {
    ddpm_unet *unet;
    const ddpm_schedule *s;
    ddpm_objective obj;
} conv_ctx;

static ddpm_status convert_fn(void *ctx, float *eps, const float *x, const int *t, const int *labels, int N) {
    conv_ctx *c = ctx;
    float pred[NMAX * 2 * D];
    ddpm_status st = ddpm_unet_forward(c->unet, pred, x, t, labels, N);
    if (st) return st;
    ddpm_objective_convert(eps, NULL, pred, x, t, c->s, c->obj, N, D);
    return DDPM_OK;
}

/* Draws images first..first+n-1 with ddpm_sampler_run over the bare UNet
 * (objective converted by hand, optional guidance): the reference the
 * pipeline must reproduce. */
static void ref_draw(const ddpm_unet_config *c, const float *params, ddpm_schedule_kind k, int T, ddpm_objective obj,
                     const ddpm_draw_opts *o, const int *labels, int first, int n, float *x) {
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, k, T), DDPM_OK);
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, c, 2 * n, false), DDPM_OK);
    memcpy(ddpm_unet_params(m), params, nparams(c) * sizeof(float));
    conv_ctx cc = {m, &s, obj};
    ddpm_sampler sm;
    assert_int_equal(ddpm_sampler_create(&sm, &s, &o->sampler, D, n), DDPM_OK);
    ddpm_guidance g = {0};
    if (o->guided) assert_int_equal(ddpm_guidance_init(&g, convert_fn, &cc, o->guidance, c->num_classes, D, n), DDPM_OK);
    assert_int_equal(ddpm_sampler_run(&sm, x, first, n, o->seed, labels, o->guided ? ddpm_guidance_eps : convert_fn,
                                      o->guided ? (void *)&g : (void *)&cc, NULL, NULL),
                     DDPM_OK);
    ddpm_guidance_free(&g);
    ddpm_sampler_destroy(&sm);
    ddpm_unet_free(m);
    ddpm_schedule_free(&s);
}

static void test_objective_v(void **state) {
    (void)state;
    char ck[600];
    ddpm_st_meta meta[3] = {{DDPM_META_SCHEDULE, "linear"}, {DDPM_META_TIMESTEPS, "10"}, {DDPM_META_OBJECTIVE, "v"}};
    write_ck(ck, sizeof ck, "v.safetensors", 0, true, meta, 3);
    ddpm_unet_config c;
    float *ema = read_tensors(ck, "ema.", &c);
    ddpm_pipeline *p = open_ck(ck, false);
    assert_int_equal(ddpm_pipeline_info_get(p)->objective, DDPM_OBJ_V);
    const ddpm_sampler_kind kinds[] = {DDPM_SAMPLER_DDPM, DDPM_SAMPLER_DDIM, DDPM_SAMPLER_DPMPP_2M};
    for (int k = 0; k < 3; k++) {
        ddpm_draw_opts o = opts();
        o.sampler.kind = kinds[k];
        o.sampler.steps = 4;
        float a[3 * D], b[3 * D], e[3 * D];
        draw(p, &o, 0, 3, a);
        ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_V, &o, NULL, 0, 3, b);
        ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &o, NULL, 0, 3, e);
        if (!same(a, b, 3)) fail_msg("sampler %d: the v-model's draw is not the converted one (max diff %g)", k, max_diff(a, b, 3));
        assert_true(max_diff(a, e, 3) > 1e-3); /* read as eps, the same network draws something else */
    }
    /* ddpm_pipeline_eps: the converted output, and at most max_batch images */
    float x[2 * D], eps[2 * D], want[2 * D];
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 3);
    ddpm_rng_fill_normal(&rng, x, 2 * D);
    int t[2] = {9, 4};
    assert_int_equal(ddpm_pipeline_eps(p, eps, x, t, NULL, 2), DDPM_OK);
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 10), DDPM_OK);
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 2, false), DDPM_OK);
    memcpy(ddpm_unet_params(m), ema, nparams(&c) * sizeof(float));
    conv_ctx cc = {m, &s, DDPM_OBJ_V};
    assert_int_equal(convert_fn(&cc, want, x, t, NULL, 2), DDPM_OK);
    assert_memory_equal(eps, want, sizeof eps);
    ddpm_unet_free(m);
    ddpm_schedule_free(&s);
    ddpm_pipeline_free(p);
    ddpm_pipeline_opts po = {.max_batch = 1};
    assert_int_equal(ddpm_pipeline_open(&p, ck, &po), DDPM_OK);
    assert_int_equal(ddpm_pipeline_eps(p, eps, x, t, NULL, 2), DDPM_ERR_ARG);
    ddpm_pipeline_free(p);
    free(ema);
}

/* ---- labels and guidance --------------------------------------------------------------- */

static const ddpm_st_meta META_CLS[] = {{DDPM_META_SCHEDULE, "linear"}, {DDPM_META_TIMESTEPS, "10"},
                                        {DDPM_META_CLASSES, "[\"ant\",\"bee\",\"cat\"]"}};

static void test_labels(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "cond.safetensors", NCLS, true, META_CLS, 3);
    ddpm_unet_config c;
    float *ema = read_tensors(ck, "ema.", &c);
    ddpm_pipeline *p = open_ck(ck, false);
    ddpm_draw_opts o = opts();
    /* cycling from the image index, also from an offset */
    int lab[NMAX], want[NMAX];
    ddpm_pipeline_labels(p, &o, 4, 5, lab);
    for (int i = 0; i < 5; i++) assert_int_equal(lab[i], (4 + i) % NCLS);
    float a[NMAX * D], b[NMAX * D];
    draw(p, &o, 4, 5, a);
    ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &o, lab, 4, 5, b);
    assert_true(same(a, b, 5));
    /* a fixed label */
    o.label = 2;
    ddpm_pipeline_labels(p, &o, 0, 5, lab);
    for (int i = 0; i < 5; i++) want[i] = 2, assert_int_equal(lab[i], 2);
    draw(p, &o, 0, 5, a);
    ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &o, want, 0, 5, b);
    assert_true(same(a, b, 5));
    float cyc[NMAX * D];
    o.label = -1;
    draw(p, &o, 0, 5, cyc);
    assert_true(max_diff(a, cyc, 5) > 1e-4); /* the label matters */
    /* the labels array overrides label */
    const int arr[5] = {1, 1, 0, 2, 0};
    o.label = 2;
    o.labels = arr;
    ddpm_pipeline_labels(p, &o, 3, 5, lab);
    assert_memory_equal(lab, arr, sizeof arr);
    draw(p, &o, 3, 5, a);
    ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &o, arr, 3, 5, b);
    assert_true(same(a, b, 5));
    /* an unconditional model: all -1 */
    ddpm_pipeline_free(p);
    free(ema);
    char cu[600];
    write_ck(cu, sizeof cu, "uncond.safetensors", 0, false, META10, 2);
    p = open_ck(cu, false);
    o = opts();
    ddpm_pipeline_labels(p, &o, 0, 3, lab);
    for (int i = 0; i < 3; i++) assert_int_equal(lab[i], -1);
    int K = 0;
    o.label = 0;
    assert_int_equal(ddpm_pipeline_check(p, &o, &K), DDPM_ERR_ARG);
    o.label = -1;
    o.guided = true;
    assert_int_equal(ddpm_pipeline_check(p, &o, &K), DDPM_ERR_ARG);
    ddpm_pipeline_free(p);
}

static void test_label_arg(void **state) {
    (void)state;
    char ck[600], cn[600], cu[600];
    write_ck(ck, sizeof ck, "names.safetensors", NCLS, false, META_CLS, 3);
    write_ck(cn, sizeof cn, "nonames.safetensors", NCLS, false, META10, 2);
    write_ck(cu, sizeof cu, "u.safetensors", 0, false, META10, 2);
    ddpm_pipeline *p = open_ck(ck, false), *q = open_ck(cn, false), *u = open_ck(cu, false);
    assert_int_equal(ddpm_pipeline_info_get(p)->num_class_names, NCLS);
    assert_int_equal(ddpm_pipeline_info_get(q)->num_class_names, 0);
    assert_string_equal(ddpm_pipeline_class_name(p, 1), "bee");
    assert_null(ddpm_pipeline_class_name(p, NCLS));
    assert_null(ddpm_pipeline_class_name(p, -1));
    assert_null(ddpm_pipeline_class_name(q, 0));
    int l = 99;
    const char *ok[] = {"0", "1", "2", "ant", "bee", "cat", "02"};
    const int want[] = {0, 1, 2, 0, 1, 2, 2};
    for (int i = 0; i < 7; i++) {
        if (ddpm_pipeline_label(p, ok[i], &l)) fail_msg("'%s': %s", ok[i], ddpm_last_error());
        assert_int_equal(l, want[i]);
    }
    assert_int_equal(ddpm_pipeline_label(q, "2", &l), DDPM_OK);
    assert_int_equal(l, 2);
    const char *bad[] = {"3", "dog", "-1", "1x", "Ant", "99999999999999999999"};
    for (int i = 0; i < 6; i++) {
        if (ddpm_pipeline_label(p, bad[i], &l) != DDPM_ERR_ARG) fail_msg("'%s' accepted as %d", bad[i], l);
        assert_int_equal(l, -1);
    }
    assert_int_equal(ddpm_pipeline_label(q, "ant", &l), DDPM_ERR_ARG);
    assert_int_equal(ddpm_pipeline_label(u, "0", &l), DDPM_ERR_ARG);
    /* the name draws what the index draws */
    ddpm_draw_opts o1 = opts(), o2 = opts();
    assert_int_equal(ddpm_pipeline_label(p, "cat", &o1.label), DDPM_OK);
    o2.label = 2;
    float a[2 * D], b[2 * D];
    draw(p, &o1, 0, 2, a);
    draw(p, &o2, 0, 2, b);
    assert_true(same(a, b, 2));
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(q);
    ddpm_pipeline_free(u);
}

/* A batched UNet call is not batch-invariant in the last bits (OpenBLAS
 * picks other sgemm kernels for other row counts; see test_sampler.c), so
 * draws whose model calls have other batch sizes agree to rounding only:
 * float32 rounding (6e-8 relative) of one call, compounded over <= 10
 * sampler steps through the network, stays far below BATCH_TOL (observed:
 * at most 5e-5); any wrong decision (another stream, label or weight)
 * moves pixels by more than WRONG, which is asserted where it matters. */
#define BATCH_TOL 1e-3
#define WRONG 1e-1

/* guidance.c promises w = 0 gives eps_u and w = 1 gives eps_c bit for bit
 * for the same inner model outputs. The pipeline's guided draw equals the
 * reference's (ddpm_guidance over the bare UNet: the same model calls) bit
 * for bit at w = 0, 1, 3; against the unguided draws (other batch sizes,
 * see BATCH_TOL) it agrees to rounding: w = 0 with the "no label" draw,
 * w = 1 with the conditional one. */
static void test_guidance(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "g.safetensors", NCLS, true, META_CLS, 3);
    ddpm_unet_config c;
    float *ema = read_tensors(ck, "ema.", &c);
    ddpm_pipeline *p = open_ck(ck, false);
    int lab[4], none[4] = {NCLS, NCLS, NCLS, NCLS};
    ddpm_draw_opts o = opts();
    ddpm_pipeline_labels(p, &o, 0, 4, lab);
    float g[4 * D], r[4 * D], plain[4 * D], uncond[4 * D];
    draw(p, &o, 0, 4, plain);
    ddpm_draw_opts un = opts();
    ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &un, none, 0, 4, uncond);
    assert_true(max_diff(uncond, plain, 4) > WRONG); /* the label matters */
    const float ws[3] = {0.0f, 1.0f, 3.0f};
    for (int k = 0; k < 3; k++) {
        o.guided = true;
        o.guidance = ws[k];
        draw(p, &o, 0, 4, g);
        ref_draw(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, &o, lab, 0, 4, r);
        if (!same(g, r, 4)) fail_msg("w = %g: not the reference's guided draw (max %g)", (double)ws[k], max_diff(g, r, 4));
        if (k == 0) assert_true(max_diff(g, uncond, 4) < BATCH_TOL);
        if (k == 1) assert_true(max_diff(g, plain, 4) < BATCH_TOL);
        if (k == 2) assert_true(max_diff(g, plain, 4) > WRONG && max_diff(g, uncond, 4) > WRONG);
    }
    ddpm_pipeline_free(p);
    free(ema);
}

/* ---- streams, batches, weights ------------------------------------------------------------ */

static void test_streams_and_batches(void **state) {
    (void)state;
    char ck[600];
    write_ck(ck, sizeof ck, "s.safetensors", NCLS, true, META_CLS, 3);
    ddpm_unet_config c;
    float *ema = read_tensors(ck, "ema.", &c);
    ddpm_pipeline_opts one = {.max_batch = 1};
    ddpm_pipeline *p = open_ck(ck, false), *p1, *small = create(&c, ema, DDPM_SCHED_LINEAR, 10, DDPM_OBJ_EPS, 3);
    assert_int_equal(ddpm_pipeline_open(&p1, ck, &one), DDPM_OK);
    assert_int_equal(ddpm_pipeline_max_batch(small), 3);
    assert_int_equal(ddpm_pipeline_max_batch(p), 64);
    const ddpm_sampler_kind kinds[] = {DDPM_SAMPLER_DDPM, DDPM_SAMPLER_DDIM, DDPM_SAMPLER_DPMPP_2M};
    for (int k = 0; k < 3; k++) {
        for (int guided = 0; guided < 2; guided++) {
            ddpm_draw_opts o = opts();
            o.sampler.kind = kinds[k];
            o.sampler.eta = 0.5f;
            o.guided = guided, o.guidance = 2.0f;
            float all[8 * D], part[2 * D], b3[8 * D], a1[8 * D];
            /* one image per model call: images 3..4 bit for bit */
            draw(p1, &o, 0, 8, a1);
            draw(p1, &o, 3, 2, part);
            if (!same(part, a1 + 3 * D, 2))
                fail_msg("sampler %d guided %d: images 3..4 differ (max %g)", k, guided, max_diff(part, a1 + 3 * D, 2));
            /* other batches: the same images to rounding */
            draw(p, &o, 0, 8, all);
            draw(small, &o, 0, 8, b3);
            assert_true(max_diff(all, a1, 8) < BATCH_TOL);
            assert_true(max_diff(b3, a1, 8) < BATCH_TOL);
            draw(p, &o, 3, 2, part);
            assert_true(max_diff(part, a1 + 3 * D, 2) < BATCH_TOL);
            /* another seed, other images */
            o.seed++;
            draw(p1, &o, 3, 2, part);
            assert_true(max_diff(part, a1 + 3 * D, 2) > WRONG);
        }
    }
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(p1);
    ddpm_pipeline_free(small);
    free(ema);
}

static void test_set_weights(void **state) {
    (void)state;
    ddpm_unet_config c = tiny_cfg(NCLS);
    float *w1 = random_params(&c, 11), *w2 = random_params(&c, 12);
    /* max_batch 2: the guided draw below re-creates the unet from the kept weights */
    ddpm_pipeline *p = create(&c, w1, DDPM_SCHED_COSINE, 10, DDPM_OBJ_X0, 2);
    ddpm_pipeline *q = create(&c, w2, DDPM_SCHED_COSINE, 10, DDPM_OBJ_X0, 2);
    ddpm_draw_opts o = opts();
    float a[4 * D], b[4 * D], before[4 * D];
    draw(p, &o, 0, 4, before);
    ddpm_pipeline_set_weights(p, w2);
    draw(p, &o, 0, 4, a);
    draw(q, &o, 0, 4, b);
    assert_true(same(a, b, 4));
    assert_true(max_diff(a, before, 4) > 1e-3);
    o.guided = true, o.guidance = 2.0f;
    draw(p, &o, 0, 4, a);
    draw(q, &o, 0, 4, b);
    assert_true(same(a, b, 4));
    /* and back */
    ddpm_pipeline_set_weights(p, w1);
    o.guided = false;
    draw(p, &o, 0, 4, a);
    assert_true(same(a, before, 4));
    ddpm_pipeline_free(p);
    ddpm_pipeline_free(q);
    free(w1);
    free(w2);
}

/* The draw's progress line names the batch and counts sampler steps over all
 * batches (steps, not model calls: a heun step makes two): 10 images in
 * batches of 4 with K = 4 are 3 batches, 12 steps. */
static void test_draw_progress(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    ddpm_draw_progress v;
    ddpm_draw_progress_start(&v, f, 10, 4, 4);
    assert_int_equal(v.nchunks, 3);
    for (int first = 0; first < 10; first += 4)
        for (int step = 0; step <= 4; step++) ddpm_draw_progress_step(&v, first, first + 4 <= 10 ? 4 : 2, step, 4, NULL);
    ddpm_progress_done(&v.p);
    char text[4096] = "";
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "sampling 10 images, batch 1/3: 2/12 steps"));
    assert_non_null(strstr(text, "sampling 10 images, batch 2/3: 5/12 steps")); /* batch 2's first step */
    assert_non_null(strstr(text, "sampling 10 images, batch 3/3: 12 steps in"));
    ddpm_draw_progress_start(&v, NULL, 3, 64, 5); /* one batch, silent */
    assert_int_equal(v.B, 3);
    assert_int_equal(v.nchunks, 1);
    ddpm_draw_progress_step(&v, 0, 3, 1, 5, NULL);
    assert_string_equal(v.p.what, "sampling 3 images");
    assert_int_equal(v.p.done, 1);
}

/* The trajectory keeps the first 100 images at 10 evenly spaced steps of
 * 0..K, whatever the batches, and passes every call on. */
static int g_calls;
static void count_calls(void *ud, int first, int N, int step, int K, const float *x) {
    (void)ud, (void)first, (void)N, (void)step, (void)K, (void)x;
    g_calls++;
}

static void test_trajectory(void **state) {
    (void)state;
    enum { K = 20, DIM = 2, B = 64 };
    ddpm_trajectory t;
    assert_int_equal(ddpm_trajectory_init(&t, 130, K, DIM), DDPM_OK);
    assert_int_equal(t.rows, DDPM_TRAJ_ROWS);
    assert_int_equal(t.cols, DDPM_TRAJ_COLS);
    const int want[DDPM_TRAJ_COLS] = {0, 2, 4, 7, 9, 11, 13, 16, 18, 20}; /* round(j K / 9) */
    for (int j = 0; j < DDPM_TRAJ_COLS; j++) assert_int_equal(t.step[j], want[j]);
    t.next = count_calls, g_calls = 0;
    static float x[B * DIM];
    for (int first = 0; first < 130; first += B)
        for (int step = 0; step <= K; step++) {
            for (int i = 0; i < B * DIM; i++) x[i] = (float)(1000 * (first + i / DIM) + step); /* image, step */
            ddpm_trajectory_step(&t, first, first + B <= 130 ? B : 130 - first, step, K, x);
        }
    assert_int_equal(g_calls, 3 * (K + 1));
    for (int r = 0; r < t.rows; r++)
        for (int j = 0; j < t.cols; j++)
            for (int d = 0; d < DIM; d++)
                assert_true(t.x[((size_t)r * t.cols + j) * DIM + d] == (float)(1000 * r + want[j]));
    ddpm_trajectory_free(&t);
    assert_int_equal(ddpm_trajectory_init(&t, 3, 4, DIM), DDPM_OK); /* fewer steps than columns: all K + 1 */
    assert_int_equal(t.cols, 5);
    assert_int_equal(t.rows, 3);
    assert_int_equal(t.step[4], 4);
    ddpm_trajectory_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ema_or_raw),
        cmocka_unit_test(test_no_ema_uses_raw),
        cmocka_unit_test(test_legacy_policy),
        cmocka_unit_test(test_recorded_recipe),
        cmocka_unit_test(test_unknown_values),
        cmocka_unit_test(test_recorded_sampler),
        cmocka_unit_test(test_objective_v),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_label_arg),
        cmocka_unit_test(test_guidance),
        cmocka_unit_test(test_streams_and_batches),
        cmocka_unit_test(test_set_weights),
        cmocka_unit_test(test_draw_progress),
        cmocka_unit_test(test_trajectory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
