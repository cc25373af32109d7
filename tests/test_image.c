/* test_image.c: PNG grids (geometry, pixel values, RGB), raw RGB, atomic
 * failure, the loss plot. PNGs are decoded back with stb_image. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <stb_image.h>

#include "cliutil.h"
#include "ddpm/data.h"
#include "ddpm/image.h"
#include "ddpm/rng.h"

#define PAD DDPM_GRID_PAD

/* ---- a scratch directory per test ---------------------------------------------- */

static char g_dir[256];

static int make_dir(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    return 0;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int remove_dir(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static const char *tpath(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

/* ---- grids ---------------------------------------------------------------------- */

static void test_grid_geometry(void **state) {
    (void)state;
    int W, H;
    ddpm_image_grid_size(5, 4, 3, 2, &W, &H); /* 2 columns, 3 rows */
    assert_int_equal(W, 2 * (3 + PAD) + PAD);
    assert_int_equal(H, 3 * (4 + PAD) + PAD);
    ddpm_image_grid_size(3, 28, 28, 8, &W, &H); /* nrow > n: one row of 3 */
    assert_int_equal(W, 3 * 30 + 2);
    assert_int_equal(H, 32);
    ddpm_image_grid_size(10, 5, 5, 0, &W, &H); /* nrow <= 0: ceil(sqrt(10)) = 4 columns */
    assert_int_equal(W, 4 * 7 + 2);
    assert_int_equal(H, 3 * 7 + 2);

    /* the PNG has exactly that size */
    int n = 5, h = 4, w = 3;
    float *x = calloc((size_t)n * h * w, sizeof(float));
    assert_int_equal(ddpm_image_write_grid(tpath("g.png"), x, n, 1, h, w, 2, -1.0f, 1.0f), DDPM_OK);
    int pw, ph, comp;
    uint8_t *img = stbi_load(tpath("g.png"), &pw, &ph, &comp, 0);
    assert_non_null(img);
    ddpm_image_grid_size(n, h, w, 2, &W, &H);
    assert_int_equal(pw, W);
    assert_int_equal(ph, H);
    assert_int_equal(comp, 1);
    stbi_image_free(img);
    free(x);
}

/* Pixel (k, i, j) of image k lands at row PAD + r*(h+PAD) + i, column PAD + c*(w+PAD) + j. */
/* The size check before drawing agrees with the writer's limit (2^30 bytes):
 * 28 px tiles at zoom 16 (448 px, + padding). */
static void test_grid_check(void **state) {
    (void)state;
    int gw, gh;
    ddpm_image_grid_size(4, 28 * 16, 28 * 16, 0, &gw, &gh);
    assert_int_equal(ddpm_image_grid_check("g.png", 4, 3, 28, 28, 0, 16), DDPM_OK);
    int n = 2000; /* a 45 x 45 grid: about 20250^2 px, over 2^30 bytes in RGB, not in gray */
    ddpm_image_grid_size(n, 28 * 16, 28 * 16, 0, &gw, &gh);
    assert_true((int64_t)gw * gh * 3 > ((int64_t)1 << 30));
    assert_int_equal(ddpm_image_grid_check("g.png", n, 3, 28, 28, 0, 16), DDPM_ERR_ARG);
    char want[128];
    snprintf(want, sizeof want, "'g.png' would be a %d x %d grid, too large for a PNG", gw, gh);
    assert_string_equal(ddpm_last_error(), want);
    assert_true((int64_t)gw * gh * 1 <= ((int64_t)1 << 30)); /* the same grid in gray fits */
    assert_int_equal(ddpm_image_grid_check("g.png", n, 1, 28, 28, 0, 16), DDPM_OK);
}

/* Model-space images as a u8 IDX file: the layout (N, C, H, W) and
 * ddpm_image_to_u8's rounding and clamping. */
static void test_write_idx(void **state) {
    (void)state;
    const float x[2 * 3 * 1 * 2] = {-1.0f, 1.0f, 0.0f, -2.0f, 5.0f, NAN, 0.5f, -0.5f, 0.1f, 0.2f, 0.3f, 0.4f};
    uint8_t want[12];
    ddpm_image_to_u8(want, x, 12);
    assert_int_equal(want[0], 0);
    assert_int_equal(want[1], 255);
    assert_int_equal(ddpm_image_write_idx(tpath("x.idx"), x, 2, 3, 1, 2), DDPM_OK);
    ddpm_idx idx;
    assert_int_equal(ddpm_idx_read(&idx, tpath("x.idx"), DDPM_IDX_IMAGES), DDPM_OK);
    assert_int_equal(idx.ndim, 4);
    assert_int_equal(idx.dims[0], 2);
    assert_int_equal(idx.dims[1], 3);
    assert_memory_equal(idx.data, want, 12);
    ddpm_idx_free(&idx);
}

static void test_grid_pixels_gray(void **state) {
    (void)state;
    int n = 5, h = 4, w = 3, nrow = 2;
    float *x = malloc((size_t)n * h * w * sizeof(float)); /* (n, 1, h, w) */
    for (int k = 0; k < n; k++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                x[(k * h + i) * w + j] = -1.0f + 0.1f * k + 0.02f * (i * w + j);
    x[0] = -7.0f;                  /* clamps to 0 */
    x[1] = 3.0f;                   /* clamps to 255 */
    x[2] = 0.0f;                   /* 127.5 rounds to 128 */
    x[(1 * h + 3) * w + 2] = 1.0f; /* exactly 255 */
    x[(2 * h + 1) * w + 0] = NAN;  /* NaN -> 0 */
    assert_int_equal(ddpm_image_write_grid(tpath("p.png"), x, n, 1, h, w, nrow, -1.0f, 1.0f),
                     DDPM_OK);
    int W, H, comp;
    uint8_t *img = stbi_load(tpath("p.png"), &W, &H, &comp, 1);
    assert_non_null(img);
    for (int k = 0; k < n; k++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int yy = PAD + (k / nrow) * (h + PAD) + i, xx = PAD + (k % nrow) * (w + PAD) + j;
                float v = x[(k * h + i) * w + j];
                float e = isnan(v) ? 0.0f : fminf(fmaxf((v + 1.0f) * 127.5f, 0.0f), 255.0f);
                assert_int_equal(img[yy * W + xx], (int)(e + 0.5f));
            }
    assert_int_equal(img[PAD * W + PAD], 0);
    assert_int_equal(img[PAD * W + PAD + 1], 255);
    assert_int_equal(img[PAD * W + PAD + 2], 128);
    /* padding: the corners, the gap between tiles, the empty 6th cell */
    assert_int_equal(img[0], DDPM_GRID_PAD_VALUE);
    assert_int_equal(img[(H - 1) * W + W - 1], DDPM_GRID_PAD_VALUE);
    assert_int_equal(img[PAD * W + PAD + w], DDPM_GRID_PAD_VALUE);
    int yy = PAD + 2 * (h + PAD), xx = PAD + 1 * (w + PAD);
    assert_int_equal(img[(yy + 1) * W + xx + 1], DDPM_GRID_PAD_VALUE);
    stbi_image_free(img);
    free(x);
}

static void test_grid_pixels_rgb(void **state) {
    (void)state;
    int n = 3, c = 3, h = 2, w = 5, nrow = 3;
    float *x = malloc((size_t)n * c * h * w * sizeof(float)); /* (n, 3, h, w) in [0, 1] */
    for (int k = 0; k < n; k++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < h * w; p++)
                x[(k * c + ch) * h * w + p] = ch == k ? 1.0f : 0.2f * ch;
    assert_int_equal(ddpm_image_write_grid(tpath("rgb.png"), x, n, c, h, w, nrow, 0.0f, 1.0f),
                     DDPM_OK);
    int W, H, comp;
    uint8_t *img = stbi_load(tpath("rgb.png"), &W, &H, &comp, 0);
    assert_non_null(img);
    assert_int_equal(comp, 3);
    assert_int_equal(W, 3 * (w + PAD) + PAD);
    assert_int_equal(H, h + 2 * PAD);
    for (int k = 0; k < n; k++) {
        const uint8_t *p = img + ((size_t)(PAD + 1) * W + PAD + k * (w + PAD) + 4) * 3;
        for (int ch = 0; ch < 3; ch++) {
            int e = ch == k ? 255 : (int)(0.2f * ch * 255.0f + 0.5f);
            assert_int_equal(p[ch], e);
        }
    }
    stbi_image_free(img);
    free(x);
}

static void test_write_rgb(void **state) {
    (void)state;
    int w = 7, h = 3;
    uint8_t rgb[7 * 3 * 3];
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)(i * 11);
    assert_int_equal(ddpm_image_write_rgb(tpath("raw.png"), rgb, w, h), DDPM_OK);
    int W, H, comp;
    uint8_t *img = stbi_load(tpath("raw.png"), &W, &H, &comp, 0);
    assert_non_null(img);
    assert_int_equal(W, w);
    assert_int_equal(H, h);
    assert_int_equal(comp, 3);
    assert_memory_equal(img, rgb, sizeof rgb);
    stbi_image_free(img);
}

static void test_bad_arguments(void **state) {
    (void)state;
    float x[4] = {0};
    assert_int_equal(ddpm_image_write_grid(tpath("a.png"), x, 1, 2, 2, 1, 1, -1, 1), DDPM_ERR_ARG);
    assert_int_equal(ddpm_image_write_grid(tpath("a.png"), x, 0, 1, 2, 2, 1, -1, 1), DDPM_ERR_ARG);
    assert_int_equal(ddpm_image_write_grid(tpath("a.png"), x, 1, 1, 2, 2, 1, 1, 1), DDPM_ERR_ARG);
    assert_int_equal(count_entries(g_dir), 0);
}

/* Failures leave nothing behind: a missing directory, and a target that is a
 * directory (the temporary file is written, the rename fails, it is removed). */
static void test_unwritable_path(void **state) {
    (void)state;
    float x[4] = {0};
    ddpm_clear_error();
    const char *bad = tpath("no-such-dir/grid.png");
    char badc[512];
    snprintf(badc, sizeof badc, "%s", bad);
    assert_int_equal(ddpm_image_write_grid(badc, x, 1, 1, 2, 2, 1, -1, 1), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), badc));
    assert_non_null(strstr(ddpm_last_error(), "No such file or directory"));
    assert_int_equal(count_entries(g_dir), 0);

    char sub[512];
    snprintf(sub, sizeof sub, "%s", tpath("adir"));
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(ddpm_image_write_grid(sub, x, 1, 1, 2, 2, 1, -1, 1), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), sub));
    assert_int_equal(count_entries(g_dir), 1); /* only adir: the temporary file is gone */
    uint8_t rgb[12] = {0};
    assert_int_equal(ddpm_image_write_rgb(sub, rgb, 2, 2), DDPM_ERR_IO);
    assert_int_equal(ddpm_plot_line_png(sub, (float[]){1, 2}, 2, 200, 120, false, "x"),
                     DDPM_ERR_IO);
    assert_int_equal(count_entries(g_dir), 1);
    assert_int_equal(count_entries(sub), 0);
}

/* An existing file is replaced whole. */
static void test_overwrite(void **state) {
    (void)state;
    float a[4] = {-1, -1, -1, -1}, b[4] = {1, 1, 1, 1};
    assert_int_equal(ddpm_image_write_grid(tpath("o.png"), a, 1, 1, 2, 2, 1, -1, 1), DDPM_OK);
    assert_int_equal(ddpm_image_write_grid(tpath("o.png"), b, 1, 1, 2, 2, 1, -1, 1), DDPM_OK);
    int W, H, comp;
    uint8_t *img = stbi_load(tpath("o.png"), &W, &H, &comp, 1);
    assert_non_null(img);
    assert_int_equal(img[PAD * W + PAD], 255);
    stbi_image_free(img);
    assert_int_equal(count_entries(g_dir), 1);
}

/* ---- loss plot ---------------------------------------------------------------------- */

static int count_color(const uint8_t *img, int n, int r, int g, int b) {
    int c = 0;
    for (int i = 0; i < n; i++) c += img[3 * i] == r && img[3 * i + 1] == g && img[3 * i + 2] == b;
    return c;
}

static void test_loss_plot(void **state) {
    (void)state;
    int n = 800;
    float *y = malloc(n * sizeof(float));
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    for (int i = 0; i < n; i++)
        y[i] = 0.03f + 0.9f * expf(-i / 60.0f) + 0.01f * fabsf(ddpm_rng_normal(&rng));
    y[100] = NAN; /* skipped */
    struct {
        const char *name;
        int w, h;
        bool log_y;
    } cases[] = {{"loss.png", 640, 360, false},
                 {"loss_log.png", 640, 360, true},
                 {"small.png", 200, 120, true}};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ddpm_plot_line_png(tpath(cases[k].name), y, n, cases[k].w, cases[k].h,
                                            cases[k].log_y, "train loss (mse)"),
                         DDPM_OK);
        int W, H, comp;
        uint8_t *img = stbi_load(tpath(cases[k].name), &W, &H, &comp, 3);
        assert_non_null(img);
        assert_int_equal(W, cases[k].w);
        assert_int_equal(H, cases[k].h);
        assert_int_equal(comp, 3);
        assert_true(count_color(img, W * H, 20, 60, 170) > W / 2);   /* the EMA curve */
        assert_true(count_color(img, W * H, 160, 190, 235) > W / 4); /* the raw curve */
        assert_true(count_color(img, W * H, 0, 0, 0) > W + H);       /* axes and title */
        stbi_image_free(img);
    }
    /* degenerate inputs still give a readable (empty or flat) plot */
    assert_int_equal(ddpm_plot_line_png(tpath("empty.png"), y, 0, 300, 200, false, "empty"),
                     DDPM_OK);
    float flat[3] = {2, 2, 2};
    assert_int_equal(ddpm_plot_line_png(tpath("flat.png"), flat, 3, 300, 200, true, "flat"),
                     DDPM_OK);
    assert_int_equal(ddpm_plot_line_png(tpath("tiny.png"), y, n, 20, 20, false, "x"), DDPM_ERR_ARG);
    if (getenv("DDPM_KEEP_PLOT")) { /* for looking at it: copy the plot out */
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cp %s/*.png %s/", g_dir, getenv("DDPM_KEEP_PLOT"));
        if (system(cmd) != 0) fprintf(stderr, "copy failed\n");
    }
    free(y);
}

/* ---- scatter plot ---------------------------------------------------------------------- */

/* Points blend with opacity alpha: one point of colour c over white gives
 * 255 + a (c - 255) per channel (rounded), a second on the same pixel blends
 * again. Limits are shared by the panels; points outside them and NaN are
 * not drawn; the figure is cols x rows panels plus the title strip. */
static void test_scatter_plot(void **state) {
    (void)state;
    float p1[2 * 4] = {3.3f, 6.7f, 20.0f, 5.0f, NAN, 1.0f, 7.3f, -3.0f}; /* one inside */
    float p2[2 * 2] = {6.7f, 3.3f, 6.7f, 3.3f};                          /* two on one pixel */
    ddpm_scatter_panel panels[3] = {{p1, 4, "one"}, {p2, 2, "two"}, {p2, 0, "none"}};
    ddpm_scatter_opts o;
    ddpm_scatter_opts_default(&o);
    o.cols = 2, o.panel_w = o.panel_h = 200, o.xlo = o.ylo = 0, o.xhi = o.yhi = 10;
    o.alpha = 0.5f, o.radius = 0, o.color[0] = 10, o.color[1] = 200, o.color[2] = 30;
    o.title = "scatter";
    assert_int_equal(ddpm_plot_scatter_png(tpath("sc.png"), panels, 3, &o), DDPM_OK);
    int W, H, comp;
    uint8_t *img = stbi_load(tpath("sc.png"), &W, &H, &comp, 3);
    assert_non_null(img);
    assert_int_equal(W, 400);
    assert_int_equal(H, 400 + 28);
    assert_int_equal(count_color(img, W * H, 133, 228, 143), 1); /* (255 + c) / 2, rounded */
    assert_int_equal(count_color(img, W * H, 72, 214, 87), 1);   /* blended twice */
    assert_true(count_color(img, W * H, 0, 0, 0) > 3 * 4 * 100); /* three boxes, title */
    stbi_image_free(img);
    /* radius 2 disks, automatic limits */
    o.radius = 2, o.xlo = o.xhi = 0;
    assert_int_equal(ddpm_plot_scatter_png(tpath("sc2.png"), panels, 1, &o), DDPM_OK);
    img = stbi_load(tpath("sc2.png"), &W, &H, &comp, 3);
    assert_non_null(img);
    assert_true(count_color(img, W * H, 133, 228, 143) >= 9 * 3); /* three disks (NaN skipped) */
    stbi_image_free(img);
    o.alpha = 0.0f;
    assert_int_equal(ddpm_plot_scatter_png(tpath("bad.png"), panels, 1, &o), DDPM_ERR_ARG);
    o.alpha = 1.0f, o.panel_w = 50;
    assert_int_equal(ddpm_plot_scatter_png(tpath("bad.png"), panels, 1, &o), DDPM_ERR_ARG);
    assert_false(cli_exists(tpath("bad.png")));
}

/* cli_grid_min_spread (the flat-sample check of test_cli_train): black flat
 * tiles on grey padding have spread 0 inside every tile although the whole
 * image spans 0..128; one flat tile among textured ones still gives 0. */
static void test_grid_tile_spread(void **state) {
    (void)state;
    enum { N = 4, S = 6 };
    float x[N * S * S];
    for (int i = 0; i < N * S * S; i++) x[i] = -1.0f; /* black */
    assert_int_equal(ddpm_image_write_grid(tpath("flat.png"), x, N, 1, S, S, 2, -1.0f, 1.0f), DDPM_OK);
    int w, h, ch;
    unsigned char *px = stbi_load(tpath("flat.png"), &w, &h, &ch, 1);
    assert_non_null(px);
    assert_int_equal(cli_grid_min_spread(px, w, h, S, S, DDPM_GRID_PAD), 0);
    int lo = 255, hi = 0;
    for (int i = 0; i < w * h; i++) lo = px[i] < lo ? px[i] : lo, hi = px[i] > hi ? px[i] : hi;
    assert_true(hi - lo > 32); /* what the old whole-image check measured */
    stbi_image_free(px);
    for (int i = 0; i < N * S * S; i++) x[i] = (float)(i % (S * S)) / (S * S) * 2.0f - 1.0f;
    assert_int_equal(ddpm_image_write_grid(tpath("ramp.png"), x, N, 1, S, S, 2, -1.0f, 1.0f), DDPM_OK);
    px = stbi_load(tpath("ramp.png"), &w, &h, &ch, 1);
    assert_true(cli_grid_min_spread(px, w, h, S, S, DDPM_GRID_PAD) > 200);
    stbi_image_free(px);
    for (int i = 2 * S * S; i < 3 * S * S; i++) x[i] = 0.25f; /* tile 2 flat */
    assert_int_equal(ddpm_image_write_grid(tpath("one.png"), x, N, 1, S, S, 2, -1.0f, 1.0f), DDPM_OK);
    px = stbi_load(tpath("one.png"), &w, &h, &ch, 1);
    assert_int_equal(cli_grid_min_spread(px, w, h, S, S, DDPM_GRID_PAD), 0);
    stbi_image_free(px);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_check),
        cmocka_unit_test_setup_teardown(test_grid_geometry, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_grid_tile_spread, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_grid_pixels_gray, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_grid_pixels_rgb, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_write_rgb, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_bad_arguments, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unwritable_path, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_overwrite, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_write_idx, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_loss_plot, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_scatter_plot, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
