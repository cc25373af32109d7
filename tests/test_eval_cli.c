/* test_eval_cli.c: `ddpm eval` end to end on a synthetic labelled dataset
 * (8x8 images, 4 classes: a bright 2x2 block in one quadrant over dim
 * noise), so it needs no MNIST and runs in seconds: the network is trained
 * on first use and cached (and reused), real test images score better than
 * uniform noise on every metric, --json, sampling from a checkpoint,
 * label_accuracy, --bpd with --terms, and the one-line errors for bad input. */
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

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/pipeline.h"
#include "ddpm/rng.h"
#include "ddpm/unet.h"

#define R 8
#define NCLS 4
static char g_dir[400], g_data[500], g_real[520], g_noise[520], g_net[560];

static void make_split(const char *dir, bool train, int n, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    uint8_t *px = malloc((size_t)n * R * R), *lab = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        int k = (int)ddpm_rng_below(&rng, NCLS), y0 = 1 + 4 * (k / 2), x0 = 1 + 4 * (k % 2);
        y0 += (int)ddpm_rng_below(&rng, 2), x0 += (int)ddpm_rng_below(&rng, 2);
        lab[i] = (uint8_t)k;
        for (int p = 0; p < R * R; p++) px[(size_t)i * R * R + p] = (uint8_t)ddpm_rng_below(&rng, 60);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) px[(size_t)i * R * R + (y0 + a) * R + x0 + b] = (uint8_t)(200 + ddpm_rng_below(&rng, 56));
    }
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/%s-images-idx3-ubyte", dir, train ? "train" : "t10k");
    snprintf(p2, sizeof p2, "%s/%s-labels-idx1-ubyte", dir, train ? "train" : "t10k");
    int dims[1] = {n};
    assert_int_equal(ddpm_idx_write_images(p1, px, n, 1, R, R), DDPM_OK);
    assert_int_equal(ddpm_idx_write(p2, lab, 1, dims), DDPM_OK);
    free(px);
    free(lab);
}

static void write_noise(const char *path, int n, int c, int h, int w) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 99);
    size_t sz = (size_t)n * c * h * w;
    uint8_t *px = malloc(sz);
    for (size_t i = 0; i < sz; i++) px[i] = (uint8_t)ddpm_rng_below(&rng, 256);
    assert_int_equal(ddpm_idx_write_images(path, px, n, c, h, w), DDPM_OK);
    free(px);
}

/* A random tiny UNet for 1x8x8 images; meta: schedule/timesteps/data when with_meta. */
static void write_ckpt(const char *path, int classes, bool with_meta) {
    ddpm_unet_config c = {.in_ch = 1, .res = R, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2, .num_res_blocks = 1,
                          .num_attn = 0, .groups = 4, .dropout = 0.0f, .num_classes = classes};
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 5);
    ddpm_st_meta meta[3] = {{"schedule", "linear"}, {"timesteps", "10"}, {"data", g_data}};
    ddpm_checkpoint_extras x = {.extra = meta, .nextra = with_meta ? 3 : 0};
    assert_int_equal(ddpm_checkpoint_save(path, &c, ddpm_unet_params(m), &x), DDPM_OK);
    ddpm_unet_free(m);
}

/* The value of "key=" in r's stdout, or NAN. */
static double value(const cli_result *r, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s=", key);
    const char *p = strstr(r->out, pat);
    if (!p && !strncmp(r->out, pat + 1, strlen(pat + 1))) p = r->out - 1;
    return p ? atof(p + strlen(pat)) : NAN;
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/synth", g_dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_data);
    if (system(cmd)) return -1;
    make_split(g_data, true, 2000, 1);
    make_split(g_data, false, 400, 2);
    snprintf(g_real, sizeof g_real, "%s/real.idx", g_dir);
    snprintf(g_noise, sizeof g_noise, "%s/noise.idx", g_dir);
    make_split(g_dir, false, 300, 3); /* t10k-* in g_dir: fresh images of the same distribution */
    snprintf(cmd, sizeof cmd, "mv %s/t10k-images-idx3-ubyte %s", g_dir, g_real);
    if (system(cmd)) return -1;
    write_noise(g_noise, 300, 1, R, R);
    char cache[500];
    snprintf(cache, sizeof cache, "%s/cache", g_dir);
    setenv("DDPM_EVAL_CACHE", cache, 1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* First use trains and caches the network; the second run reuses it. Real
 * images beat noise on every metric. */
static void test_real_vs_noise(void **state) {
    (void)state;
    cli_result r;
    if (cli_run(&r, "eval %s --data %s --threads 1", g_real, g_data)) fail_msg("%s", r.err);
    assert_non_null(strstr(r.err, "training one"));
    assert_non_null(strstr(r.err, "test accuracy"));
    printf("%s", r.out);
    const char *net = strstr(r.out, "net=");
    assert_non_null(net);
    sscanf(net + 4, "%559s", g_net);
    assert_non_null(strstr(g_net, "/cache/synth-"));
    assert_true(value(&r, "net_test_accuracy") > 0.95);
    double fid_real = value(&r, "fid"), p_real = value(&r, "precision"), rc_real = value(&r, "recall");
    double conf_real = value(&r, "confidence"), h_real = value(&r, "class_entropy");
    assert_true(value(&r, "n") == 300 && value(&r, "n_reference") == 400);
    assert_true(isnan(value(&r, "label_accuracy")));
    if (cli_run(&r, "eval %s --data %s --threads 1", g_noise, g_data)) fail_msg("%s", r.err);
    assert_null(strstr(r.err, "training one")); /* cached */
    printf("%s", r.out);
    assert_true(fid_real < value(&r, "fid"));
    assert_true(p_real > value(&r, "precision") && rc_real > value(&r, "recall"));
    assert_true(conf_real > value(&r, "confidence"));
    assert_true(h_real > 1.9 && h_real <= 2.0); /* four balanced classes: log2 4 = 2 */
    /* the same network by name, -n, --labels, --json */
    char lab[520];
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte", g_dir);
    if (cli_run(&r, "eval %s --net %s --data %s -n 100 --labels %s --json", g_real, g_net, g_data, lab))
        fail_msg("%s", r.err);
    assert_true(r.out[0] == '{' && strstr(r.out, "\"fid\": ") && strstr(r.out, "\"n\": 100,"));
    const char *la = strstr(r.out, "\"label_accuracy\": ");
    assert_non_null(la);
    assert_true(atof(la + 18) > 0.95);
}

static void test_checkpoint(void **state) {
    (void)state;
    if (!g_net[0]) fail_msg("no evaluation network: test_real_vs_noise failed");
    char ck[520], ckc[520], terms[520];
    snprintf(ck, sizeof ck, "%s/u.safetensors", g_dir);
    snprintf(ckc, sizeof ckc, "%s/c.safetensors", g_dir);
    snprintf(terms, sizeof terms, "%s/terms.csv", g_dir);
    write_ckpt(ck, 0, true);
    write_ckpt(ckc, NCLS, true);
    cli_result r;
    /* the reference comes from the checkpoint's 'data' */
    if (cli_run(&r, "eval -c %s --net %s -n 16 --sampler ddim --sample-steps 2", ck, g_net)) fail_msg("%s", r.err);
    assert_true(isfinite(value(&r, "fid")) && value(&r, "sample_steps") == 2);
    assert_non_null(strstr(r.out, "reference=" ));
    double fid_c = value(&r, "fid");
    /* the same images as `ddpm sample --idx` with the same flags */
    char sidx[520], spng[520];
    snprintf(sidx, sizeof sidx, "%s/s.idx", g_dir);
    snprintf(spng, sizeof spng, "%s/s.png", g_dir);
    if (cli_run(&r, "sample -c %s -n 16 --sampler ddim --sample-steps 2 --idx %s -o %s", ck, sidx, spng))
        fail_msg("%s", r.err);
    if (cli_run(&r, "eval %s --net %s --data %s", sidx, g_net, g_data)) fail_msg("%s", r.err);
    assert_true(value(&r, "fid") == fid_c);
    if (cli_run(&r, "eval -c %s --net %s -n 16 --sampler dpm++2m --sample-steps 3 --guidance 2", ckc, g_net))
        fail_msg("%s", r.err);
    double la = value(&r, "label_accuracy");
    assert_true(la >= 0 && la <= 1 && value(&r, "guidance") == 2);
    assert_non_null(strstr(r.out, "sampler=dpm++2m"));
    if (cli_run(&r, "eval --bpd -c %s -n 3 --terms %s", ck, terms)) fail_msg("%s", r.err);
    printf("%s", r.out);
    double bpd = value(&r, "bpd"), sum = value(&r, "bpd_prior") + value(&r, "bpd_decoder") + value(&r, "bpd_kl");
    assert_true(bpd > 0 && fabs(bpd - sum) < 1e-5 * bpd);
    assert_non_null(strstr(r.err, "bits/dim of 3 test images"));
    FILE *fp = fopen(terms, "r");
    assert_non_null(fp);
    char line[128];
    int lines = 0;
    while (fgets(line, sizeof line, fp)) lines++;
    fclose(fp);
    assert_int_equal(lines, 1 + 10 + 1); /* header, T terms, prior */
}

/* The u8 draw of a pipeline created over the tensors under prefix of ck,
 * with the flags "--sampler ddim --sample-steps 2" (seed 0). */
static void expected_u8(uint8_t *u8, const char *ck, const char *prefix, int n) {
    ddpm_checkpoint c;
    assert_int_equal(ddpm_checkpoint_open(&c, ck), DDPM_OK);
    float *w = malloc(c.total * sizeof(float));
    assert_int_equal(ddpm_checkpoint_read(&c, prefix, w), DDPM_OK);
    ddpm_pipeline_model m = {.cfg = c.cfg, .params = w, .schedule = DDPM_SCHED_LINEAR, .T = 10, .objective = DDPM_OBJ_EPS};
    ddpm_pipeline *p;
    assert_int_equal(ddpm_pipeline_create(&p, &m, NULL), DDPM_OK);
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler.kind = DDPM_SAMPLER_DDIM;
    o.sampler.steps = 2;
    assert_int_equal(ddpm_pipeline_draw_u8(p, &o, 0, n, u8), DDPM_OK);
    ddpm_pipeline_free(p);
    ddpm_checkpoint_close(&c);
    free(w);
}

/* EMA by default, raw with --no-ema, the same in `ddpm sample` and `ddpm
 * eval -c`: the IDX images are the pipeline's draw over the checkpoint's
 * "ema." (or "") tensors, and eval -c scores exactly those images. */
static void test_ema_weights_cli(void **state) {
    (void)state;
    if (!g_net[0]) fail_msg("no evaluation network: test_real_vs_noise failed");
    char ck[520], idx[2][520], png[520];
    snprintf(ck, sizeof ck, "%s/ema.safetensors", g_dir);
    snprintf(png, sizeof png, "%s/ema.png", g_dir);
    ddpm_unet_config c = {.in_ch = 1, .res = R, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2, .num_res_blocks = 1,
                          .num_attn = 0, .groups = 4, .dropout = 0.0f, .num_classes = 0};
    float *w[2];
    for (int k = 0; k < 2; k++) {
        ddpm_unet *m;
        assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
        ddpm_unet_init_params(m, 5 + k);
        size_t np = ddpm_unet_num_params(m);
        w[k] = malloc(np * sizeof(float));
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 50 + k);
        for (size_t i = 0; i < np; i++) w[k][i] = ddpm_unet_params(m)[i] + 0.05f * ddpm_rng_normal(&rng);
        ddpm_unet_free(m);
    }
    ddpm_st_meta meta[3] = {{"schedule", "linear"}, {"timesteps", "10"}, {"data", g_data}};
    ddpm_checkpoint_extras x = {.ema = w[1], .extra = meta, .nextra = 3};
    assert_int_equal(ddpm_checkpoint_save(ck, &c, w[0], &x), DDPM_OK);
    free(w[0]);
    free(w[1]);
    enum { N = 16 };
    double fid[2];
    uint8_t *got[2];
    for (int k = 0; k < 2; k++) {
        const char *flag = k ? " --no-ema" : "";
        cli_result r;
        snprintf(idx[k], sizeof idx[k], "%s/ema%d.idx", g_dir, k);
        if (cli_run(&r, "sample -c %s -n %d --sampler ddim --sample-steps 2 --idx %s -o %s%s", ck, N, idx[k], png, flag))
            fail_msg("%s", r.err);
        ddpm_idx im;
        assert_int_equal(ddpm_idx_read(&im, idx[k], DDPM_IDX_IMAGES), DDPM_OK);
        assert_int_equal(im.dims[0], N);
        uint8_t want[N * R * R];
        expected_u8(want, ck, k ? "" : "ema.", N);
        if (memcmp(im.data, want, sizeof want)) {
            uint8_t other[N * R * R];
            expected_u8(other, ck, k ? "ema." : "", N);
            int dw = 0, dot = 0;
            for (size_t i = 0; i < sizeof want; i++) dw += im.data[i] != want[i], dot += im.data[i] != other[i];
            fail_msg("%s: %d of %zu pixels differ from the expected draw (%d from the other weights): %s", flag, dw,
                     sizeof want, dot, r.err);
        }
        got[k] = im.data;
        if (cli_run(&r, "eval -c %s --net %s -n %d --sampler ddim --sample-steps 2%s", ck, g_net, N, flag))
            fail_msg("%s", r.err);
        fid[k] = value(&r, "fid");
        if (cli_run(&r, "eval %s --net %s --data %s", idx[k], g_net, g_data)) fail_msg("%s", r.err);
        assert_true(isfinite(fid[k]) && value(&r, "fid") == fid[k]);
    }
    assert_true(memcmp(got[0], got[1], (size_t)N * R * R) != 0);
    assert_true(fid[0] != fid[1]);
    free(got[0]);
    free(got[1]);
}

/* ddpm train --eval-every: rows with the metrics in log.csv, fid.png, a
 * progress line, and the cached network reused. */
static void test_train_eval_every(void **state) {
    (void)state;
    if (!g_net[0]) fail_msg("no evaluation network: test_real_vs_noise failed");
    char out[520], path[600];
    snprintf(out, sizeof out, "%s/run", g_dir);
    cli_result r;
    if (cli_run(&r, "train --data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 8 --iters 4 "
                    "--steps 10 --eval-every 2 --eval-n 16 --threads 1 --out %s", g_data, out))
        fail_msg("%s", r.err);
    assert_non_null(strstr(r.err, "eval at iter 2: fid "));
    assert_non_null(strstr(r.err, "eval at iter 4: fid "));
    assert_null(strstr(r.err, "trained the evaluation network")); /* cached by test_real_vs_noise */
    snprintf(path, sizeof path, "%s/log.csv", out);
    assert_int_equal(cli_log_evals(path, 2), 2);
    snprintf(path, sizeof path, "%s/fid.png", out);
    assert_true(cli_exists(path));
}

static void expect_error(const char *what, int status, const char *needle, const char *fmt, ...);

/* The metadata value of key in a checkpoint, as a double (NAN when absent). */
static double ckpt_meta(const char *path, const char *key) {
    ddpm_checkpoint ck;
    assert_int_equal(ddpm_checkpoint_open(&ck, path), DDPM_OK);
    const char *v = ddpm_checkpoint_meta(&ck, key);
    double x = v ? atof(v) : NAN;
    ddpm_checkpoint_close(&ck);
    return x;
}

/* --keep-best: best.safetensors holds the state of the lowest-FID evaluation
 * (its FID and iteration in its metadata, the iteration's weights), survives
 * a stop and resume, samples like any checkpoint, and a fresh run over the
 * directory removes it. Without --eval-every the flag is an error. */
static void test_train_keep_best(void **state) {
    (void)state;
    if (!g_net[0]) fail_msg("no evaluation network: test_real_vs_noise failed");
    char out[520], best[600], log[600], line[512];
    snprintf(out, sizeof out, "%s/best_run", g_dir);
    snprintf(best, sizeof best, "%s/best.safetensors", out);
    snprintf(log, sizeof log, "%s/log.csv", out);
    const char *base = "train --data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 8 --iters 8 "
                       "--steps 10 --eval-every 2 --eval-n 16 --threads 1 --out %s --keep-best --lr 0.01";
    cli_result r;
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s --stop-after 4", base);
    if (cli_run(&r, cmd, g_data, out)) fail_msg("%s", r.err);
    assert_true(cli_exists(best));
    double f4 = ckpt_meta(best, "best_fid");
    if (cli_run(&r, "train --out %s --resume --threads 1 --eval-every 2 --eval-n 16 --keep-best", out))
        fail_msg("%s", r.err);
    /* the lowest FID of log.csv, and its iteration */
    FILE *fp = fopen(log, "r");
    assert_non_null(fp);
    double lo = INFINITY;
    long long lo_it = -1;
    while (fgets(line, sizeof line, fp)) {
        long long it;
        double loss, lr, g, t, fid;
        if (sscanf(line, "%lld,%lf,%lf,%lf,%lf,%lf", &it, &loss, &lr, &g, &t, &fid) == 6 && fid < lo) lo = fid, lo_it = it;
    }
    fclose(fp);
    if (!(lo_it > 0 && lo <= f4 + 1e-4)) fail_msg("lowest fid %g at %lld, best after 4: %g", lo, lo_it, f4);
    assert_true(fabs(ckpt_meta(best, "best_fid") - lo) < 1e-3);
    assert_true(ckpt_meta(best, "best_iter") == (double)lo_it);
    assert_true(ckpt_meta(best, "step") == (double)lo_it);
    if (cli_run(&r, "sample -c %s -n 2 -o %s/best.png --sampler ddim --sample-steps 5 --threads 1", best, out))
        fail_msg("%s", r.err);
    /* a fresh run over the directory does not inherit the old best */
    if (cli_run(&r, "train --data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 8 --iters 2 "
                    "--steps 10 --threads 1 --out %s --force", g_data, out))
        fail_msg("%s", r.err);
    assert_false(cli_exists(best));
    expect_error("--keep-best without --eval-every", 2, "--keep-best needs --eval-every", "train --keep-best --out %s/x",
                 g_dir);
}

static void expect_error(const char *what, int status, const char *needle, const char *fmt, ...) {
    char args[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cli_result r;
    int st = cli_run(&r, "%s", args);
    if (st != status || !strstr(r.err, needle) || cli_lines(r.err) != 1 || r.out[0])
        fail_msg("%s: status %d (want %d), stderr '%s' (want one line with '%s'), stdout '%.80s'", what, st, status,
                 r.err, needle, r.out);
}

static void test_bad_input(void **state) {
    (void)state;
    if (!g_net[0]) fail_msg("no evaluation network: test_real_vs_noise failed");
    char p[520], ck[520];
    snprintf(p, sizeof p, "%s/small.idx", g_dir);
    write_noise(p, 20, 1, 4, 4);
    expect_error("wrong size", 1, "holds 1 x 4 x 4 images", "eval %s --net %s --data %s", p, g_net, g_data);
    snprintf(p, sizeof p, "%s/rgb.idx", g_dir);
    write_noise(p, 20, 3, R, R);
    expect_error("wrong channels", 1, "holds 3 x 8 x 8 images", "eval %s --net %s --data %s", p, g_net, g_data);
    expect_error("n too large", 2, "-n 301 exceeds the 300 images", "eval %s --net %s --data %s -n 301", g_real, g_net, g_data);
    expect_error("not idx", 1, "bad magic", "eval %s --net %s --data %s", g_net, g_net, g_data);
    expect_error("net is not a file", 1, "cannot open", "eval %s --net %s/none --data %s", g_real, g_dir, g_data);
    snprintf(ck, sizeof ck, "%s/nometa.safetensors", g_dir);
    write_ckpt(ck, 0, false);
    expect_error("net is a checkpoint", 1, "not an evaluation network", "eval %s --net %s --data %s", g_real, ck, g_data);
    expect_error("n too small", 2, "at least 4 images", "eval %s --net %s --data %s -n 3", g_real, g_net, g_data);
    expect_error("no data meta", 1, "metadata lacks 'data'", "eval -c %s --net %s", ck, g_net);
    /* one policy for checkpoints without a schedule (as `ddpm sample`): linear, T = 1000, with a note */
    cli_result nr;
    assert_int_equal(cli_run(&nr, "eval -c %s --net %s --data %s -n 4 --sampler ddim --sample-steps 2", ck, g_net, g_data), 0);
    assert_non_null(strstr(nr.err, "note"));
    assert_non_null(strstr(nr.out, "fid="));
    assert_int_equal(cli_run(&nr, "eval --bpd -c %s --data %s -n 1", ck, g_data), 0);
    assert_non_null(strstr(nr.out, "timesteps=1000"));
    expect_error("bpd n", 2, "exceeds the 400 test images", "eval --bpd -c %s --data %s -n 401", ck, g_data);
    expect_error("no input", 2, "name an IDX file", "eval --data %s", g_data);
    expect_error("unknown flag", 2, "unknown option", "eval %s --frobnicate", g_real);
    expect_error("sampler flag on idx", 2, "apply to -c CKPT only", "eval %s --sampler ddim", g_real);
    expect_error("terms without bpd", 2, "--terms applies to --bpd", "eval %s --terms x.csv", g_real);
    snprintf(ck, sizeof ck, "%s/u.safetensors", g_dir);
    expect_error("guidance unconditional", 2, "is unconditional", "eval -c %s --net %s --guidance 2", ck, g_net);
    expect_error("too many steps", 2, "at most 10 steps", "eval -c %s --net %s --sampler ddim --sample-steps 11", ck, g_net);
}

static void test_help(void **state) {
    (void)state;
    const char *const words[] = {"--ckpt", "-n", "--data", "--net", "--json", "--bpd", "--terms", "--sampler",
                                 "--sample-steps", "--labels", "fid", "precision", "recall", "confidence",
                                 "class_entropy", "label_accuracy"};
    cli_check_help("eval", words, (int)(sizeof words / sizeof *words));
}

/* Two evaluations that need the same uncached network at once (a recipe
 * search runs several): it is trained once, under the cache's lock, and both
 * use the one complete file; no temporary is left behind. */
static void test_cache_two_at_once(void **state) {
    (void)state;
    char cache[600], env[620], err[2][620];
    snprintf(cache, sizeof cache, "%s/cache2", g_dir);
    snprintf(env, sizeof env, "DDPM_EVAL_CACHE=%s", cache);
    char *const envv[] = {env, NULL};
    char *argv[] = {"eval", g_real, "--data", g_data, "--threads", "1", NULL};
    int pid[2];
    for (int i = 0; i < 2; i++) {
        snprintf(err[i], sizeof err[i], "%s/two%d.err", g_dir, i);
        pid[i] = cli_spawn(argv, err[i], envv);
    }
    int trained = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cli_wait(pid[i]), 0);
        size_t n;
        char *e = cli_slurp(err[i], &n);
        assert_non_null(e);
        trained += strstr(e, "training one") != NULL;
        free(e);
    }
    assert_int_equal(trained, 1);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "test $(ls %s | grep -c .) = 2 && ls %s/*.safetensors.lock > /dev/null", cache, cache);
    assert_int_equal(system(cmd), 0); /* the network and its lock, nothing else */
    snprintf(cmd, sizeof cmd, "cmp -s %s/$(basename %s) %s", cache, g_net, g_net);
    assert_int_equal(system(cmd), 0); /* byte for byte the network trained alone */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_real_vs_noise),
        cmocka_unit_test(test_cache_two_at_once),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_ema_weights_cli),
        cmocka_unit_test(test_train_eval_every),
        cmocka_unit_test(test_train_keep_best),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
