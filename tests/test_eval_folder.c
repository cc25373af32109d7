/* test_eval_folder.c: KID (against a numpy re-implementation of clean-fid's
 * and torch-fidelity's unbiased estimator, tests/data/kid_ref.fix from
 * scripts/kid_reference.py, and closed forms), the held-out split of an
 * image folder, and `ddpm eval` on a folder with class subfolders written
 * here (three classes of coloured shapes on a transparent background, 32 px
 * PNGs evaluated at 16 px): the network trains on first use, real images
 * score better than blurred ones and those better than noise, PNG folders
 * as input, a folder without classes (rotation prediction), -c CKPT
 * finds the folder in the checkpoint, `ddpm train
 * --eval-every` on the folder, and the one-line errors for bad input. */
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
#include <stb_image_write.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/eval.h"
#include "ddpm/rng.h"
#include "ddpm/unet.h"
#include "fixture.h"

/* ---- KID ------------------------------------------------------------------------------- */

/* The largest error of one kernel value (g / d + 1)^3 when g = x.y (x, y >=
 * 0) comes from a float dot product: |g~ - g| <= gamma_d g with gamma_d =
 * d u / (1 - d u), u = 2^-24 (Higham, Thm 3.5; the terms are >= 0), and the
 * cube's slope 3 (g / d + 1)^2 / d at the larger end. */
static double kernel_err(const float *a, int na, const float *b, int nb, int d) {
    double u = ldexp(1.0, -24), gam = d * u / (1 - d * u), e = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) {
            double g = 0;
            for (int k = 0; k < d; k++) g += (double)a[(size_t)i * d + k] * b[(size_t)j * d + k];
            double hi = g * (1 + gam) / d + 1, err = 3 * hi * hi * gam * g / d;
            e = err > e ? err : e;
        }
    return e;
}

static void test_kid_reference(void **state) {
    (void)state;
    char path[1024], err[256];
    fx_file f;
    assert_int_equal(fx_data_path(path, sizeof path, "kid_ref.fix"), 0);
    if (fx_load(&f, path, err, sizeof err)) fail_msg("%s", err);
    const int d = 16, S = 20, m = 50;
    const float *a = fx_f32(&f, "kid.a", 300 * d), *b = fx_f32(&f, "kid.b", 200 * d);
    const float *fa = fx_f32(&f, "kid.ia", S * m), *fb = fx_f32(&f, "kid.ib", S * m);
    assert_true(a && b && fa && fb);
    int ia[20 * 50], ib[20 * 50];
    for (int i = 0; i < S * m; i++) ia[i] = (int)fa[i], ib[i] = (int)fb[i];
    double want, want_std, mean, std;
    assert_int_equal(fx_config_double(&f, "kid", &want), 0);
    assert_int_equal(fx_config_double(&f, "kid_std", &want_std), 0);
    assert_int_equal(ddpm_kid_subsets(&mean, &std, a, b, d, ia, ib, S, m), DDPM_OK);
    /* every kernel value within E: a subset's MMD^2 within 4 E (the three
     * means, the cross term twice), the mean too, the std within 8 E
     * (|std(v + e) - std(v)| <= max |e - mean e|); plus the double sums */
    double E = fmax(fmax(kernel_err(a, 300, a, 300, d), kernel_err(b, 200, b, 200, d)), kernel_err(a, 300, b, 200, d));
    double tol = 4 * E + 1e-12 * fabs(want), tol_std = 8 * E + 1e-12 * want_std;
    print_message("kid %.10g (numpy %.10g, tol %.2g), std %.10g (numpy %.10g)\n", mean, want, tol, std, want_std);
    assert_true(fabs(mean - want) <= tol);
    assert_true(fabs(std - want_std) <= tol_std);
    fx_free(&f);
}

static float *gauss(int n, int d, float shift, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    float *x = malloc((size_t)n * d * sizeof(float));
    ddpm_rng_fill_normal(&rng, x, (size_t)n * d);
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] += shift;
    return x;
}

/* The same set twice with m = n: every subset is the whole set, so each
 * MMD^2 is exactly 2 / (m - 1) (mean of all k - mean of the diagonal k). */
static void test_kid_identical_closed_form(void **state) {
    (void)state;
    int n = 300, d = 8;
    float *x = gauss(n, d, 0.0f, 3);
    double all = 0, diag = 0, mean, std;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double g = 0;
            for (int k = 0; k < d; k++) g += (double)x[i * d + k] * x[j * d + k];
            double kv = pow(g / d + 1, 3);
            all += kv, diag += i == j ? kv : 0;
        }
    double want = 2.0 / (n - 1) * (all / ((double)n * n) - diag / n);
    assert_int_equal(ddpm_kid(&mean, &std, x, n, x, n, d, 7), DDPM_OK);
    print_message("identical: kid %.8g (closed form %.8g), std %.3g\n", mean, want, std);
    /* float products of |g| up to ~d * 10: relative 1e-4 is far above their error, far below the value */
    assert_true(fabs(mean - want) <= 1e-4 * fabs(want) && std <= 1e-4 * fabs(want));
    free(x);
}

/* Two samples of one Gaussian: the unbiased estimate is 0 within its spread
 * (a biased, V-statistic one is 2 (E k(x,x) - E k(x,y)) / m above it: with
 * d = 8, E k(x,x) ~ 10 and E k(x,y) ~ 1.4, about 0.016 at m = 1000, some 7
 * of the subsets' standard deviations of ~0.0024); a shifted Gaussian is
 * well above 0. */
static void test_kid_same_and_shifted(void **state) {
    (void)state;
    int n = 2000, d = 8;
    float *a = gauss(n, d, 0.0f, 11), *b = gauss(n, d, 0.0f, 12), *c = gauss(n, d, 0.5f, 13);
    double m0, s0, m1, s1, m2, s2;
    assert_int_equal(ddpm_kid(&m0, &s0, a, n, b, n, d, 1), DDPM_OK);
    assert_int_equal(ddpm_kid(&m1, &s1, a, n, c, n, d, 1), DDPM_OK);
    assert_int_equal(ddpm_kid(&m2, &s2, a, n, b, n, d, 1), DDPM_OK);
    print_message("same: %.5g +- %.5g; shifted: %.5g +- %.5g\n", m0, s0, m1, s1);
    assert_true(m0 == m2 && s0 == s2); /* seeded: deterministic */
    assert_true(fabs(m0) <= 3 * s0 && s0 > 0);
    assert_true(m1 > 10 * s1);
    free(a), free(b), free(c);
}

/* ---- the held-out split ------------------------------------------------------------------------ */

static void test_held_out_split(void **state) {
    (void)state;
    enum { N = 2000, D = 48 };
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 5);
    uint8_t *px = malloc((size_t)(N + 1) * D);
    for (size_t i = 0; i < (size_t)(N + 1) * D; i++) px[i] = (uint8_t)ddpm_rng_below(&rng, 256);
    bool held[N];
    int nh = 0;
    for (int i = 0; i < N; i++) nh += held[i] = ddpm_eval_held_out(px + (size_t)(i + 1) * D, D, i % 3);
    /* Binomial(2000, 0.1): mean 200, sd 13.4; 5 sd either side */
    print_message("held out %d of %d\n", nh, N);
    assert_true(nh > 133 && nh < 267);
    /* a new image in front (every index moves) leaves every other image where it was */
    for (int i = 0; i < N; i++) assert_int_equal(ddpm_eval_held_out(px + (size_t)(i + 1) * D, D, i % 3), held[i]);
    /* the label is part of the key */
    int moved = 0;
    for (int i = 0; i < N; i++) moved += ddpm_eval_held_out(px + (size_t)(i + 1) * D, D, i % 3 + 1) != held[i];
    assert_true(moved > 0);
    free(px);
}

/* ---- `ddpm eval` on an image folder ------------------------------------------------------------ */

#define S 32     /* the PNGs */
#define E 16     /* evaluated at */
#define NPER 70  /* images per class */
static char g_dir[400], g_data[500], g_flat[520], g_few[520], g_cache[520];

/* A shape of class k (0 disc, 1 square, 2 triangle) in a random colour at a
 * random place, RGBA on a transparent background. */
static void shape(uint8_t *px, int k, ddpm_rng *rng) {
    memset(px, 0, S * S * 4);
    int r = 6 + (int)ddpm_rng_below(rng, 5), cx = r + (int)ddpm_rng_below(rng, S - 2 * r), cy = r + (int)ddpm_rng_below(rng, S - 2 * r);
    uint8_t col[3] = {(uint8_t)(40 + ddpm_rng_below(rng, 200)), (uint8_t)(40 + ddpm_rng_below(rng, 200)),
                      (uint8_t)(40 + ddpm_rng_below(rng, 200))};
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int dx = x - cx, dy = y - cy;
            bool in = k == 0 ? dx * dx + dy * dy <= r * r
                    : k == 1 ? abs(dx) <= r * 3 / 4 && abs(dy) <= r * 3 / 4
                             : dy >= -r && dy <= r && 2 * abs(dx) <= dy + r;
            if (!in) continue;
            memcpy(px + (y * S + x) * 4, col, 3);
            px[(y * S + x) * 4 + 3] = 255;
        }
}

static void write_png(const char *dir, const char *name, const uint8_t *px, int s, int comp) {
    char p[700], cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_true(stbi_write_png(p, s, s, comp, px, s * comp));
}

/* n fresh images as the folder's loader sees them at E px (white
 * background, then the 2 x 2 mean that stb's box filter computes), planar. */
static uint8_t *fresh(int n, uint64_t seed, int only) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    uint8_t rgba[S * S * 4], planar[3 * S * S];
    uint8_t *out = malloc((size_t)n * 3 * E * E);
    for (int i = 0; i < n; i++) {
        shape(rgba, only >= 0 ? only : i % 3, &rng);
        for (int p = 0; p < S * S; p++)
            for (int c = 0; c < 3; c++) planar[c * S * S + p] = rgba[p * 4 + 3] ? rgba[p * 4 + c] : 255;
        ddpm_eval_downsample(out + (size_t)i * 3 * E * E, planar, 1, 3, S, S, S / E);
    }
    return out;
}

static void blur(uint8_t *px, int n) {
    uint8_t tmp[E * E];
    for (int p = 0; p < n * 3; p++) {
        uint8_t *q = px + (size_t)p * E * E;
        memcpy(tmp, q, sizeof tmp);
        for (int y = 0; y < E; y++)
            for (int x = 0; x < E; x++) {
                int s = 0;
                for (int a = -1; a <= 1; a++)
                    for (int b = -1; b <= 1; b++) {
                        int yy = y + a < 0 ? 0 : y + a >= E ? E - 1 : y + a, xx = x + b < 0 ? 0 : x + b >= E ? E - 1 : x + b;
                        s += tmp[yy * E + xx];
                    }
                q[y * E + x] = (uint8_t)((s + 4) / 9);
            }
    }
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/shapes", g_dir);
    snprintf(g_flat, sizeof g_flat, "%s/flat", g_dir);
    snprintf(g_few, sizeof g_few, "%s/few", g_dir);
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_dir);
    setenv("DDPM_EVAL_CACHE", g_cache, 1);
    setenv("DDPM_CACHE_DIR", g_cache, 1); /* the folder decode cache: not the user's ~/.cache */
    const char *cls[3] = {"disc", "square", "triangle"};
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    uint8_t px[S * S * 4];
    for (int i = 0; i < 3 * NPER; i++) {
        char sub[600], name[32];
        shape(px, i % 3, &rng);
        snprintf(sub, sizeof sub, "%s/%s", g_data, cls[i % 3]);
        snprintf(name, sizeof name, "%03d.png", i);
        write_png(sub, name, px, S, 4);
        if (i < 8) write_png(g_few, name, px, S, 4); /* folders without classes */
        if (i >= 90) continue;
        shape(px, 2, &rng); /* triangles: discs and squares look the same turned */
        write_png(g_flat, name, px, S, 4);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static double value(const cli_result *r, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s=", key);
    const char *p = strstr(r->out, pat);
    if (!p && !strncmp(r->out, pat + 1, strlen(pat + 1))) p = r->out - 1;
    return p ? atof(p + strlen(pat)) : NAN;
}

static void test_folder_metrics_order(void **state) {
    (void)state;
    int n = 120;
    uint8_t *real = fresh(n, 2, -1), *blurred = fresh(n, 2, -1), *noise = malloc((size_t)n * 3 * E * E);
    blur(blurred, n);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 9);
    for (size_t i = 0; i < (size_t)n * 3 * E * E; i++) noise[i] = (uint8_t)ddpm_rng_below(&rng, 256);
    char preal[600], pblur[600], pnoise[600];
    snprintf(preal, sizeof preal, "%s/real", g_dir); /* the real ones as a folder of PNGs */
    for (int i = 0; i < n; i++) {
        uint8_t inter[3 * E * E];
        for (int p = 0; p < E * E; p++)
            for (int c = 0; c < 3; c++) inter[p * 3 + c] = real[(size_t)i * 3 * E * E + c * E * E + p];
        char name[32];
        snprintf(name, sizeof name, "g%04d.png", i);
        write_png(preal, name, inter, E, 3);
    }
    snprintf(pblur, sizeof pblur, "%s/blur.idx", g_dir);
    snprintf(pnoise, sizeof pnoise, "%s/noise.idx", g_dir);
    assert_int_equal(ddpm_idx_write_images(pblur, blurred, n, 3, E, E), DDPM_OK);
    assert_int_equal(ddpm_idx_write_images(pnoise, noise, n, 3, E, E), DDPM_OK);
    cli_result r;
    double fid[3], kid[3], prec[3];
    const char *in[3] = {preal, pblur, pnoise};
    for (int k = 0; k < 3; k++) {
        if (cli_run(&r, "eval %s --data %s --threads 1", in[k], g_data)) fail_msg("%s", r.err);
        printf("%s", r.out);
        if (k == 0) {
            assert_non_null(strstr(r.err, "training one"));
            assert_true(value(&r, "net_test_accuracy") > 0.8);
            assert_true(value(&r, "n_reference") == 3 * NPER && value(&r, "n") == n);
            assert_non_null(strstr(r.out, "split=all"));
            assert_non_null(strstr(r.out, "reference_images=16 px, 3 channels"));
        } else {
            assert_null(strstr(r.err, "training one")); /* cached */
        }
        fid[k] = value(&r, "fid"), kid[k] = value(&r, "kid"), prec[k] = value(&r, "precision");
        assert_true(isfinite(value(&r, "kid_std")));
    }
    assert_true(fid[0] < fid[1] && fid[1] < fid[2]);
    assert_true(kid[0] < kid[1] && kid[1] < kid[2]);
    assert_true(prec[0] > prec[2]);
    free(real), free(blurred), free(noise);
}

/* A folder without classes (triangles): the network predicts rotations;
 * real images beat noise, and are mostly seen upright. */
static void test_rotation_network(void **state) {
    (void)state;
    char pnoise[600], preal[600];
    snprintf(pnoise, sizeof pnoise, "%s/noise.idx", g_dir);
    snprintf(preal, sizeof preal, "%s/triangles.idx", g_dir);
    uint8_t *real = fresh(120, 4, 2);
    assert_int_equal(ddpm_idx_write_images(preal, real, 120, 3, E, E), DDPM_OK);
    free(real);
    cli_result r;
    if (cli_run(&r, "eval %s --data %s --threads 1", preal, g_flat)) fail_msg("%s", r.err);
    printf("%s", r.out);
    assert_non_null(strstr(r.err, "training one"));
    assert_non_null(strstr(r.out, "it predicts rotations"));
    assert_true(value(&r, "n_reference") == 90 && value(&r, "net_test_accuracy") > 0.6); /* chance: 0.25 */
    double fid = value(&r, "fid"), kid = value(&r, "kid"), conf = value(&r, "confidence");
    if (cli_run(&r, "eval %s --data %s --threads 1", pnoise, g_flat)) fail_msg("%s", r.err);
    assert_true(fid < value(&r, "fid") && kid < value(&r, "kid"));
    assert_true(conf > 0.5);
}

/* Gray generated images: the folder is read in gray, with its own network. */
static void test_gray(void **state) {
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/gray.idx", g_dir);
    uint8_t px[8 * E * E];
    for (int i = 0; i < 8 * E * E; i++) px[i] = (uint8_t)(i * 37);
    assert_int_equal(ddpm_idx_write_images(p, px, 8, 1, E, E), DDPM_OK);
    cli_result r;
    if (cli_run(&r, "eval %s --data %s --threads 1", p, g_data)) fail_msg("%s", r.err);
    assert_non_null(strstr(r.err, "training one")); /* not the RGB network */
    assert_non_null(strstr(r.out, "reference_images=16 px, 1 channels"));
    assert_true(isfinite(value(&r, "fid")) && isfinite(value(&r, "kid")));
}

/* A random tiny UNet for 3 x 16 x 16 images whose metadata names the folder. */
static void write_ckpt(const char *path, const char *data) {
    ddpm_unet_config c = {.in_ch = 3, .res = E, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2, .num_res_blocks = 1,
                          .num_attn = 0, .groups = 4, .dropout = 0.0f, .num_classes = 0};
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 5);
    ddpm_st_meta meta[4] = {{"schedule", "linear"}, {"timesteps", "10"}, {"data", data}, {"data_alpha", "white"}};
    ddpm_checkpoint_extras x = {.extra = meta, .nextra = 4};
    assert_int_equal(ddpm_checkpoint_save(path, &c, ddpm_unet_params(m), &x), DDPM_OK);
    ddpm_unet_free(m);
}

static void test_checkpoint_finds_folder(void **state) {
    (void)state;
    char ck[600];
    snprintf(ck, sizeof ck, "%s/u.safetensors", g_dir);
    write_ckpt(ck, g_data);
    cli_result r;
    if (cli_run(&r, "eval -c %s -n 8 --sampler ddim --sample-steps 2 --threads 1", ck)) fail_msg("%s", r.err);
    printf("%s", r.out);
    char want[700];
    snprintf(want, sizeof want, "reference=%s\n", g_data);
    assert_non_null(strstr(r.out, want));
    assert_true(value(&r, "n_reference") == 3 * NPER && isfinite(value(&r, "kid")));
    assert_non_null(strstr(r.out, "net_sha256="));
    /* --data overrides the checkpoint's: here a folder of 8 images without classes, too few to train on */
    assert_int_not_equal(cli_run(&r, "eval -c %s -n 8 --data %s", ck, g_few), 0);
    assert_non_null(strstr(r.err, "to train the evaluation network on"));
}

/* `ddpm train --eval-every` on the folder: the metrics against the folder in log.csv. */
static void test_train_eval_every(void **state) {
    (void)state;
    cli_result r;
    if (cli_run(&r, "train --data %s --size %d --ch 8 --ch-mult 1,2 --res-blocks 1 --attn none --groups 4 --batch 4 "
                    "--iters 4 --steps 10 --eval-every 2 --eval-n 8 --threads 1 --out %s/run",
                g_data, E, g_dir))
        fail_msg("%s", r.err);
    assert_non_null(strstr(r.err, "against the 210 images of"));
    assert_non_null(strstr(r.err, "eval at iter 4: fid "));
    char path[600];
    snprintf(path, sizeof path, "%s/run/log.csv", g_dir);
    assert_int_equal(cli_log_evals(path, 2), 2);
}

static void expect_error(const char *what, const char *needle, const char *fmt, ...) {
    char args[2000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cli_result r;
    int st = cli_run(&r, "%s", args);
    if (st == 0 || !strstr(r.err, needle) || cli_lines(r.err) != 1 || r.out[0])
        fail_msg("%s: status %d (want non-zero), stderr '%s' (want one line with '%s'), stdout '%.80s'", what, st,
                 r.err, needle, r.out);
}

static void test_bad_input(void **state) {
    (void)state;
    char p[600], q[600], cmd[1400];
    snprintf(p, sizeof p, "%s/noise.idx", g_dir);
    expect_error("too few images", "to train the evaluation network on", "eval %s --data %s", p, g_few);
    char lab[600];
    snprintf(lab, sizeof lab, "%s/lab.idx", g_dir);
    int labels[120] = {0};
    assert_int_equal(ddpm_idx_write_labels(lab, labels, 120), DDPM_OK);
    expect_error("labels without classes", "has no classes", "eval %s --data %s --labels %s", p, g_flat, lab);
    snprintf(q, sizeof q, "%s/empty", g_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", q);
    assert_int_equal(system(cmd), 0);
    expect_error("empty folder", "no usable image", "eval %s --data %s", p, q);
    expect_error("no folder", "/nowhere", "eval %s --data %s/nowhere", p, g_dir);
    expect_error("no PNGs", "no PNG images", "eval %s --data %s", q, g_data);
    /* a generated image of another size among the PNGs: the file is named */
    snprintf(q, sizeof q, "%s/real", g_dir);
    uint8_t px[8 * 8 * 3] = {0};
    write_png(q, "g9999.png", px, 8, 3);
    expect_error("size mismatch", "g9999.png' is 8 x 8; the reference is 16 x 16", "eval %s --data %s", q, g_data);
    /* an IDX of non-square images */
    snprintf(q, sizeof q, "%s/wide.idx", g_dir);
    uint8_t w[4 * 3 * 8 * 16] = {0};
    assert_int_equal(ddpm_idx_write_images(q, w, 4, 3, 8, 16), DDPM_OK);
    expect_error("not square", "holds 8 x 16 images", "eval %s --data %s", q, g_data);
    snprintf(q, sizeof q, "%s/six.idx", g_dir);
    assert_int_equal(ddpm_idx_write_images(q, w, 4, 3, 6, 6), DDPM_OK);
    expect_error("size the network cannot take", "at 6 px: the evaluation network takes", "eval %s --data %s", q, g_data);
    expect_error("bad alpha", "--alpha", "eval %s --data %s --alpha grey", p, g_data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kid_reference),
        cmocka_unit_test(test_kid_identical_closed_form),
        cmocka_unit_test(test_kid_same_and_shifted),
        cmocka_unit_test(test_held_out_split),
        cmocka_unit_test_setup_teardown(test_folder_metrics_order, NULL, NULL),
        cmocka_unit_test(test_checkpoint_finds_folder),
        cmocka_unit_test(test_rotation_network),
        cmocka_unit_test(test_gray),
        cmocka_unit_test(test_train_eval_every),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
