/* test_cli_noise.c: `ddpm noise` end to end: usage and runtime errors, the
 * grid geometry and its pixels (decoded with stb_image), the coefficient
 * table, reproducibility; on a small synthetic dataset made here and, when
 * present, on real MNIST ($DDPM_SHARED_MNIST). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <stb_image.h>

#include "cliutil.h"
#include "testenv.h"
#include "ddpm/data.h"
#include "ddpm/image.h"
#include "ddpm/schedule.h"

#define NS 5 /* synthetic test split: 5 images of 6 x 7 */
#define SH 6
#define SW 7

static char g_dir[256];
static cli_result g_r;
static uint8_t g_px[NS * SH * SW];

static const char *P(const char *name) {
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void expect(int status, const char *in_err) { cli_expect(&g_r, status, in_err); }

static int grid_px(int cols, int side) { return cols * (side + DDPM_GRID_PAD) + DDPM_GRID_PAD; }

/* Decodes a grayscale PNG and checks its size. */
static uint8_t *load_png(const char *path, int w, int h) {
    int pw, ph, comp;
    uint8_t *img = stbi_load(path, &pw, &ph, &comp, 1);
    if (!img) fail_msg("'%s' is not a readable PNG", path);
    assert_int_equal(comp, 1);
    assert_int_equal(pw, w);
    assert_int_equal(ph, h);
    return img;
}

/* Pixel (y, x) of tile (row, col) in a grid of th x tw tiles, W px wide. */
static int tile_px(const uint8_t *img, int W, int th, int tw, int row, int col, int y, int x) {
    int oy = DDPM_GRID_PAD + row * (th + DDPM_GRID_PAD), ox = DDPM_GRID_PAD + col * (tw + DDPM_GRID_PAD);
    return img[(size_t)(oy + y) * W + ox + x];
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    /* a test split (t10k) of NS images with a varied pattern and its labels */
    for (int i = 0; i < NS * SH * SW; i++) g_px[i] = (uint8_t)((i * 37 + (i / 7) * 11) % 256);
    uint8_t labels[NS] = {0, 1, 2, 3, 4};
    int dims[3] = {NS, SH, SW}, ldims[1] = {NS};
    if (mkdir(P("syn"), 0755) != 0) return -1;
    if (ddpm_idx_write(P("syn/t10k-images-idx3-ubyte"), g_px, 3, dims) ||
        ddpm_idx_write(P("syn/t10k-labels-idx1-ubyte"), labels, 1, ldims))
        return -1;
    if (mkdir(P("nodata"), 0755) != 0) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* ---- usage ------------------------------------------------------------------------ */

static void test_help(void **state) {
    (void)state;
    const char *const flags[] = {"--data", "--data-dir", "--t", "--steps", "--schedule", "--seed", "-n",
                                 "-o", "cosine", "noise.png"};
    cli_check_help("noise", flags, (int)(sizeof flags / sizeof *flags));
}

static void test_usage_errors(void **state) {
    (void)state;
    const char *d = P("syn"), *o = P("u.png");
    cli_run(&g_r, "noise --data '%s' -o '%s' --bogus", d, o);
    expect(2, "--bogus");
    cli_run(&g_r, "noise --data '%s' -o '%s' -n 0", d, o);
    expect(2, "-n");
    cli_run(&g_r, "noise --data '%s' -o '%s' -n 1001", d, o);
    expect(2, "1001");
    cli_run(&g_r, "noise --data '%s' -o '%s' --steps 1", d, o);
    expect(2, "--steps");
    cli_run(&g_r, "noise --data '%s' -o '%s' --steps 100001", d, o);
    expect(2, "--steps");
    cli_run(&g_r, "noise --data '%s' -o '%s' --t 1000", d, o); /* T = 1000: t <= 999 */
    expect(2, "999");
    cli_run(&g_r, "noise --data '%s' -o '%s' --t 0,5 --steps 5", d, o);
    expect(2, "5");
    cli_run(&g_r, "noise --data '%s' -o '%s' --t -1", d, o);
    expect(2, "--t");
    const char *bad[] = {"1,,2", "a", "3,", ",3", "1.5", "7x", " 4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cli_run(&g_r, "noise --data '%s' -o '%s' --t '%s'", d, o, bad[i]);
        expect(2, "--t");
    }
    cli_run(&g_r, "noise --data '%s' -o '%s' --schedule exponential", d, o);
    expect(2, "exponential");
    cli_run(&g_r, "noise --data '%s' -o '%s' --seed x", d, o);
    expect(2, "--seed");
    cli_run(&g_r, "noise --data '%s' --data-dir '%s' -o '%s'", d, d, o); /* dir twice */
    expect(2, "--data-dir");
    assert_false(cli_exists(o));
}

/* ---- runtime errors --------------------------------------------------------------- */

static void test_missing_data(void **state) {
    (void)state;
    cli_run(&g_r, "noise --data '%s' -o '%s'", P("no_such_dir"), P("m.png"));
    expect(1, "no_such_dir");
    cli_run(&g_r, "noise --data mnist --data-dir '%s' -o '%s'", P("no_such_dir2"), P("m.png"));
    expect(1, "no_such_dir2");
    cli_run(&g_r, "noise --data fashion --data-dir '%s' -o '%s'", P("no_such_dir3"), P("m.png"));
    expect(1, "no_such_dir3");
    /* a directory without the test split names the file it wanted */
    cli_run(&g_r, "noise --data '%s' -o '%s'", P("nodata"), P("m.png"));
    expect(1, "t10k-images-idx3-ubyte");
    /* more images than the split has */
    cli_run(&g_r, "noise --data '%s' -n %d -o '%s'", P("syn"), NS + 1, P("m.png"));
    expect(1, "only 5");
    assert_false(cli_exists(P("m.png")));
}

static void test_unwritable_output(void **state) {
    (void)state;
    cli_run(&g_r, "noise --data '%s' -o '%s'", P("syn"), P("missing/dir/n.png"));
    expect(1, "missing/dir' does not exist");
    assert_false(cli_exists(P("missing/dir/n.png")));
    cli_run(&g_r, "noise --data '%s' -o '%s'", P("syn"), g_dir);
    expect(1, "directory");
}

/* ---- outputs ---------------------------------------------------------------------- */

static void test_grid_and_table(void **state) {
    (void)state;
    cli_run(&g_r, "noise --data '%s' -n 3 --t 0,5,9 --steps 10 -o '%s'", P("syn"), P("g.png"));
    expect(0, "g.png");
    int W = grid_px(4, SW), H = grid_px(3, SH); /* x_0 + 3 columns, 3 rows */
    uint8_t *img = load_png(P("g.png"), W, H);
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 10), DDPM_OK);
    int far = 0;
    for (int r = 0; r < 3; r++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++) {
                int p = g_px[(r * SH + y) * SW + x];
                /* column 0 is the clean image, exactly */
                assert_int_equal(tile_px(img, W, SH, SW, r, 0, y, x), p);
                /* t = 0 (beta_0 = 0.01 at T = 10): x_0 plus a little noise (6 sigma) */
                int q = tile_px(img, W, SH, SW, r, 1, y, x);
                double b0 = s.sqrt_one_minus_alpha_bar[0];
                assert_true(fabs((double)q - p) <= 127.5 * (1 - s.sqrt_alpha_bar[0]) * 2 + 127.5 * b0 * 6 + 1);
                far += abs(tile_px(img, W, SH, SW, r, 3, y, x) - p) > 20;
            }
    assert_true(far > 3 * SH * SW / 2); /* t = T-1 is mostly noise */
    stbi_image_free(img);

    /* the table: a header, the x_0 row and one row per t with its coefficients */
    char want[64];
    for (int j = 0; j < 3; j++) {
        int t = j == 0 ? 0 : j == 1 ? 5 : 9;
        snprintf(want, sizeof want, "%-7d %-6d %16.6f %20.6f", j + 1, t, s.sqrt_alpha_bar[t],
                 s.sqrt_one_minus_alpha_bar[t]);
        if (!strstr(g_r.out, want)) fail_msg("stdout lacks '%s':\n%s", want, g_r.out);
    }
    assert_non_null(strstr(g_r.out, "x_0"));
    assert_non_null(strstr(g_r.out, "sqrt(alpha_bar)"));
    ddpm_schedule_free(&s);
}

/* Every column of a row uses the same eps: recover eps = (x_t - a x_0) / b
 * from two columns and compare, wherever neither pixel was clipped. */
static void test_one_noise_per_row(void **state) {
    (void)state;
    cli_run(&g_r, "noise --data '%s' -n 2 --t 1,2 --steps 10 -o '%s'", P("syn"), P("e.png"));
    expect(0, NULL);
    int W = grid_px(3, SW);
    uint8_t *img = load_png(P("e.png"), W, grid_px(2, SH));
    ddpm_schedule s;
    assert_int_equal(ddpm_schedule_init(&s, DDPM_SCHED_LINEAR, 10), DDPM_OK);
    int used = 0;
    double maxdiff = 0;
    for (int r = 0; r < 2; r++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++) {
                double x0 = g_px[(r * SH + y) * SW + x] / 127.5 - 1, e[2];
                int v[2];
                for (int j = 0; j < 2; j++) {
                    v[j] = tile_px(img, W, SH, SW, r, 1 + j, y, x);
                    e[j] = (v[j] / 127.5 - 1 - s.sqrt_alpha_bar[1 + j] * x0) / s.sqrt_one_minus_alpha_bar[1 + j];
                }
                if (v[0] < 1 || v[0] > 254 || v[1] < 1 || v[1] > 254) continue;
                used++;
                if (fabs(e[0] - e[1]) > maxdiff) maxdiff = fabs(e[0] - e[1]);
            }
    /* quantisation: 0.5/127.5 / b with b >= 0.49 is under 0.01 per column */
    assert_true(used >= 2 * SH * SW / 3);
    if (maxdiff > 0.03) fail_msg("columns of a row use different noise (max |eps1 - eps2| = %g)", maxdiff);
    ddpm_schedule_free(&s);
    stbi_image_free(img);
}

static void test_default_columns(void **state) {
    (void)state;
    /* default: ten evenly spaced t from 0 to T-1 */
    cli_run(&g_r, "noise --data '%s' -n 2 -o '%s'", P("syn"), P("d.png"));
    expect(0, NULL);
    stbi_image_free(load_png(P("d.png"), grid_px(11, SW), grid_px(2, SH)));
    if (!strstr(g_r.out, "\n10      999 ") || !strstr(g_r.out, "\n1       0 "))
        fail_msg("columns 1 and 10 should be t = 0 and t = 999:\n%s", g_r.out);
    /* T < 10: every t once */
    cli_run(&g_r, "noise --data '%s' -n 1 --steps 4 --schedule cosine -o '%s'", P("syn"), P("d4.png"));
    expect(0, NULL);
    stbi_image_free(load_png(P("d4.png"), grid_px(5, SW), grid_px(1, SH)));
    assert_non_null(strstr(g_r.out, "cosine"));
    /* every schedule name works */
    const char *names[] = {"linear", "quadratic", "sigmoid"};
    for (int i = 0; i < 3; i++) {
        cli_run(&g_r, "noise --data '%s' -n 1 --t 3 --steps 7 --schedule %s -o '%s'", P("syn"), names[i],
                P("sch.png"));
        expect(0, NULL);
        assert_non_null(strstr(g_r.out, names[i]));
    }
}

static void test_reproducible(void **state) {
    (void)state;
    const char *fmt = "noise --data '%s' -n %d --t 2,6 --steps 10 --seed %d -o '%s'";
    cli_run(&g_r, fmt, P("syn"), 3, 5, P("r1.png"));
    expect(0, NULL);
    cli_run(&g_r, fmt, P("syn"), 3, 5, P("r2.png"));
    expect(0, NULL);
    assert_true(cli_same_file(P("r1.png"), P("r2.png")));
    cli_run(&g_r, fmt, P("syn"), 3, 6, P("r3.png"));
    expect(0, NULL);
    assert_false(cli_same_file(P("r1.png"), P("r3.png")));
    /* image i's noise does not depend on -n: -n 2 gives the first two rows */
    cli_run(&g_r, fmt, P("syn"), 2, 5, P("r4.png"));
    expect(0, NULL);
    int W = grid_px(3, SW);
    uint8_t *a = load_png(P("r1.png"), W, grid_px(3, SH)), *b = load_png(P("r4.png"), W, grid_px(2, SH));
    assert_memory_equal(a, b, (size_t)W * (grid_px(2, SH) - DDPM_GRID_PAD));
    stbi_image_free(a);
    stbi_image_free(b);
}

static void test_mnist(void **state) {
    (void)state;
    const char *dir = test_mnist_dir(); /* fails without MNIST unless DDPM_ALLOW_SKIP=1 */
    cli_run(&g_r, "noise --data '%s' -n 3 -o '%s'", dir, P("mnist.png"));
    expect(0, NULL);
    int W = grid_px(11, 28), H = grid_px(3, 28);
    uint8_t *img = load_png(P("mnist.png"), W, H);
    ddpm_dataset ds;
    assert_int_equal(ddpm_dataset_load(&ds, dir, false), DDPM_OK);
    for (int r = 0; r < 3; r++)
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                assert_int_equal(tile_px(img, W, 28, 28, r, 0, y, x), ds.pixels[(size_t)r * 784 + y * 28 + x]);
    ddpm_dataset_free(&ds);
    stbi_image_free(img);
    /* --data-dir with the dataset name */
    cli_run(&g_r, "noise --data mnist --data-dir '%s' -n 1 --t 500 -o '%s'", dir, P("mnist2.png"));
    expect(0, NULL);
    stbi_image_free(load_png(P("mnist2.png"), grid_px(2, 28), grid_px(1, 28)));
}

/* --scale S: every pixel of a tile becomes an S x S block, the padding stays 2 px */
static void test_scale(void **state) {
    (void)state;
    cli_run(&g_r, "noise --data '%s' -n 2 --t 0,50 -o '%s'", P("syn"), P("s1.png"));
    expect(0, NULL);
    cli_run(&g_r, "noise --data '%s' -n 2 --t 0,50 --scale 3 -o '%s'", P("syn"), P("s3.png"));
    expect(0, NULL);
    int W1 = grid_px(3, SW), W3 = grid_px(3, 3 * SW);
    uint8_t *a = load_png(P("s1.png"), W1, grid_px(2, SH));
    uint8_t *b = load_png(P("s3.png"), W3, grid_px(2, 3 * SH));
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 3 * SH; y++)
                for (int x = 0; x < 3 * SW; x++)
                    assert_int_equal(tile_px(b, W3, 3 * SH, 3 * SW, r, c, y, x),
                                     tile_px(a, W1, SH, SW, r, c, y / 3, x / 3));
    stbi_image_free(a);
    stbi_image_free(b);
    cli_run(&g_r, "noise --data '%s' --scale 0 -o '%s'", P("syn"), P("s0.png"));
    expect(2, "--scale");
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "passive", 0); /* see test_cli_sample.c */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_missing_data),
        cmocka_unit_test(test_unwritable_output),
        cmocka_unit_test(test_grid_and_table),
        cmocka_unit_test(test_one_noise_per_row),
        cmocka_unit_test(test_default_columns),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_mnist),
    };
    return test_exit(cmocka_run_group_tests(tests, setup, teardown));
}
