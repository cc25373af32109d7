/* test_cli_sample.c: `ddpm sample` end to end, on tiny checkpoints made here
 * with the library: usage and runtime errors, the outputs (grid, IDX,
 * trajectory) and their sizes, reproducibility and independence of --batch
 * (the per-image streams of sampler.h). */
#define _POSIX_C_SOURCE 200809L
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
#include "ddpm/checkpoint.h"
#include "ddpm/diffusion.h"
#include "ddpm/image.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

#define T_STEPS 20 /* timesteps of the test checkpoints */

static char g_dir[256];
static cli_result g_r; /* large: keep it off the stack */

static const char *P(const char *name) {
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Image i's generator: the library's per-image stream. */
static void image_rng(ddpm_rng *r, uint64_t seed, int i) {
    ddpm_rng_seed(r, ddpm_sampler_image_seed(seed, i));
}

/* A value in [-1, 1] as the grid and IDX writers store it. */
static int to_u8(float x) {
    float v = (x + 1.0f) * 127.5f;
    v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
    return (int)(v + 0.5f);
}

static void tiny_config(ddpm_unet_config *c, int num_classes) {
    memset(c, 0, sizeof *c);
    c->in_ch = 1;
    c->res = 8;
    c->ch = 8;
    c->ch_mult[0] = 1;
    c->ch_mult[1] = 2;
    c->num_levels = 2;
    c->num_res_blocks = 1;
    c->num_attn = 0;
    c->groups = 4;
    c->dropout = 0.0f;
    c->num_classes = num_classes;
}

/* A tiny checkpoint: random weights, optional EMA weights (different from
 * the raw ones) and optional schedule metadata, then a recorded default
 * sampler when sampler is not NULL. */
static void make_ckpt_with(const char *path, int num_classes, bool ema, bool meta, const char *sampler,
                           const char *steps) {
    ddpm_unet_config c;
    tiny_config(&c, num_classes);
    ddpm_unet *m, *m2;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    assert_int_equal(ddpm_unet_create(&m2, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 1);
    ddpm_unet_init_params(m2, 2);
    char tbuf[16];
    snprintf(tbuf, sizeof tbuf, "%d", T_STEPS);
    ddpm_st_meta extra[4] = {{"schedule", "linear"}, {"timesteps", tbuf}, {"sampler", sampler}, {"sample_steps", steps}};
    ddpm_checkpoint_extras x = {0};
    x.ema = ema ? ddpm_unet_params(m2) : NULL;
    x.extra = meta ? extra : NULL;
    x.nextra = meta ? (sampler ? 4 : 2) : 0;
    assert_int_equal(ddpm_checkpoint_save(path, &c, ddpm_unet_params(m), &x), DDPM_OK);
    ddpm_unet_free(m);
    ddpm_unet_free(m2);
}

static void make_ckpt(const char *path, int num_classes, bool ema, bool meta) {
    make_ckpt_with(path, num_classes, ema, meta, NULL, NULL);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *slurp(const char *path, long *len) {
    *len = file_size(path);
    if (*len < 0) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = malloc((size_t)*len + 1);
    if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void assert_png(const char *path, int w, int h) {
    int pw = 0, ph = 0, comp = 0;
    if (!stbi_info(path, &pw, &ph, &comp)) fail_msg("'%s' is not a readable PNG", path);
    assert_int_equal(pw, w);
    assert_int_equal(ph, h);
    assert_int_equal(comp, 1);
}

static int grid_px(int cols, int side) { return cols * (side + DDPM_GRID_PAD) + DDPM_GRID_PAD; }

static void expect(int status, const char *in_err) { cli_expect(&g_r, status, in_err); }

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    make_ckpt(P("ck.safetensors"), 0, true, true);
    make_ckpt(P("cond.safetensors"), 3, false, true);
    make_ckpt(P("nometa.safetensors"), 0, false, false);
    /* a truncated copy */
    long len;
    unsigned char *b = slurp(P("ck.safetensors"), &len);
    if (!b) return -1;
    FILE *f = fopen(P("trunc.safetensors"), "wb");
    if (!f) return -1;
    fwrite(b, 1, (size_t)len / 2, f);
    fclose(f);
    free(b);
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
    const char *const flags[] = {"--ckpt", "-n", "-o", "--sampler", "--sample-steps", "--eta", "--var",
                                 "--seed", "--nrow", "--no-ema", "--label", "--batch", "--threads",
                                 "--idx", "--trajectory", "ddim", "runs/mnist/ckpt.safetensors",
                                 "dpm++2m", "--spacing", "logsnr", "--guidance", "--scale"};
    cli_check_help("sample", flags, (int)(sizeof flags / sizeof *flags));
}

static void test_usage_errors(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors");
    cli_run(&g_r, "sample -c '%s' --bogus", ck);
    expect(2, "--bogus");
    cli_run(&g_r, "sample -c '%s' -n 0", ck);
    expect(2, "-n");
    cli_run(&g_r, "sample -c '%s' -n -4", ck);
    expect(2, "-n");
    cli_run(&g_r, "sample -c '%s' -n 100001", ck);
    expect(2, "100001");
    cli_run(&g_r, "sample -c '%s' -n 12x", ck);
    expect(2, "12x");
    cli_run(&g_r, "sample -c '%s' --sampler plms", ck);
    expect(2, "plms");
    cli_run(&g_r, "sample -c '%s' --var medium", ck);
    expect(2, "medium");
    cli_run(&g_r, "sample -c '%s' --sampler ddim --eta 1.5", ck);
    expect(2, "--eta");
    cli_run(&g_r, "sample -c '%s' --sampler ddim --eta -0.1", ck);
    expect(2, "--eta");
    cli_run(&g_r, "sample -c '%s' --eta 0.5", ck); /* eta needs ddim */
    expect(2, "ddim");
    cli_run(&g_r, "sample -c '%s' --sampler ddim --var large", ck); /* var needs ddpm */
    expect(2, "--var");
    cli_run(&g_r, "sample -c '%s' --sample-steps 0", ck);
    expect(2, "--sample-steps");
    cli_run(&g_r, "sample -c '%s' --sample-steps %d", ck, T_STEPS + 1);
    expect(2, "20");
    cli_run(&g_r, "sample -c '%s' --sampler ddim --sample-steps %d", ck, T_STEPS + 1);
    expect(2, "--sample-steps");
    cli_run(&g_r, "sample -c '%s' --batch 0", ck);
    expect(2, "--batch");
    cli_run(&g_r, "sample -c '%s' --seed -1", ck);
    expect(2, "--seed");
    cli_run(&g_r, "sample -c '%s' --label 0", ck); /* unconditional model */
    expect(2, "unconditional");
    cli_run(&g_r, "sample -c '%s' --label 3", P("cond.safetensors")); /* classes 0..2 */
    expect(2, "--label");
    cli_run(&g_r, "sample -c '%s' -o '%s' --idx '%s'", ck, P("same"), P("same"));
    expect(2, "same file");
    cli_run(&g_r, "sample -c '%s' extra", ck);
    expect(2, "extra");
    assert_false(cli_exists(P("same")));
    /* an option given twice is an error, not "the last one wins": nothing drawn */
    cli_run(&g_r, "sample -c '%s' -n 2 -n 3 -o '%s'", ck, P("twice.png"));
    expect(2, "-n");
    assert_false(cli_exists(P("twice.png")));
}

/* ---- runtime errors --------------------------------------------------------------- */

static void test_missing_checkpoint(void **state) {
    (void)state;
    cli_run(&g_r, "sample -c '%s' -o '%s'", P("nope.safetensors"), P("x.png"));
    expect(1, "nope.safetensors");
    assert_false(cli_exists(P("x.png")));

    /* the default checkpoint, from an empty working directory */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(mkdir(P("empty"), 0755), 0);
    assert_int_equal(chdir(P("empty")), 0);
    cli_run(&g_r, "sample");
    int ok = chdir(cwd);
    assert_int_equal(ok, 0);
    expect(1, "runs/mnist/ckpt.safetensors");
    if (!strstr(g_r.err, "ddpm train") || !strstr(g_r.err, "-c"))
        fail_msg("the message should say to run 'ddpm train' or pass -c: %s", g_r.err);
    assert_false(cli_exists(P("empty/samples.png")));
}

static void test_default_checkpoint(void **state) {
    (void)state;
    /* `ddpm sample` with no flags finds runs/mnist/ckpt.safetensors */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(mkdir(P("wd"), 0755), 0);
    assert_int_equal(mkdir(P("wd/runs"), 0755), 0);
    assert_int_equal(mkdir(P("wd/runs/mnist"), 0755), 0);
    make_ckpt(P("wd/runs/mnist/ckpt.safetensors"), 0, true, true);
    assert_int_equal(chdir(P("wd")), 0);
    cli_run(&g_r, "sample --sampler ddim --sample-steps 3");
    int ok = chdir(cwd);
    assert_int_equal(ok, 0);
    expect(0, "EMA");
    assert_png(P("wd/samples.png"), grid_px(4, 8), grid_px(4, 8)); /* 16 images, 4 x 4 */
}

static void test_damaged_checkpoint(void **state) {
    (void)state;
    cli_run(&g_r, "sample -c '%s' -o '%s'", P("trunc.safetensors"), P("t.png"));
    expect(1, "trunc.safetensors");
    assert_false(cli_exists(P("t.png")));
    FILE *f = fopen(P("garbage.safetensors"), "wb");
    assert_non_null(f);
    fputs("this is not a checkpoint", f);
    fclose(f);
    cli_run(&g_r, "sample -c '%s' -o '%s'", P("garbage.safetensors"), P("t.png"));
    expect(1, "garbage.safetensors");
    assert_false(cli_exists(P("t.png")));
}

static void test_unwritable_output(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors");
    cli_run(&g_r, "sample -c '%s' -o '%s'", ck, P("no/such/dir/out.png"));
    expect(1, "no/such/dir' does not exist");
    assert_false(cli_exists(P("no/such/dir/out.png")));
    assert_null(strstr(g_r.err, "sampling")); /* failed before sampling */

    /* a bad --idx or --trajectory path fails before anything is written */
    cli_run(&g_r, "sample -c '%s' -o '%s' --idx '%s'", ck, P("ok1.png"), P("missing/a.idx"));
    expect(1, "missing/a.idx");
    assert_false(cli_exists(P("ok1.png")));
    assert_null(strstr(g_r.err, "sampling"));
    cli_run(&g_r, "sample -c '%s' -o '%s' --trajectory '%s'", ck, P("ok2.png"), P("missing/t.png"));
    expect(1, "missing/t.png");
    assert_false(cli_exists(P("ok2.png")));

    /* -o naming a directory */
    cli_run(&g_r, "sample -c '%s' -o '%s'", ck, g_dir);
    expect(1, "directory");

    /* a read-only directory (root ignores permissions: skip that part) */
    if (geteuid() != 0) {
        assert_int_equal(mkdir(P("ro"), 0555), 0);
        cli_run(&g_r, "sample -c '%s' -o '%s'", ck, P("ro/x.png"));
        expect(1, "ro/x.png");
        assert_false(cli_exists(P("ro/x.png")));
    }
}

/* ---- outputs ---------------------------------------------------------------------- */

static void test_outputs(void **state) {
    (void)state;
    cli_run(&g_r, "sample -c '%s' -n 5 --seed 3 -o '%s' --idx '%s' --trajectory '%s'",
            P("ck.safetensors"), P("s.png"), P("s.idx"), P("traj.png"));
    expect(0, "EMA");
    /* 5 images, ceil(sqrt(5)) = 3 columns, 2 rows */
    assert_png(P("s.png"), grid_px(3, 8), grid_px(2, 8));
    /* trajectory: one row per image, min(10, T + 1) = 10 columns */
    assert_png(P("traj.png"), grid_px(10, 8), grid_px(5, 8));
    /* IDX: magic 0x00000803, dims 5, 8, 8, then 5 * 64 bytes */
    long len;
    unsigned char *b = slurp(P("s.idx"), &len);
    assert_non_null(b);
    assert_int_equal(len, 16 + 5 * 64);
    const unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 8};
    assert_memory_equal(b, hdr, 16);
    int distinct = 0;
    for (long i = 17; i < len; i++) distinct += b[i] != b[16];
    assert_true(distinct > 0); /* not a constant image */
    /* the trajectory starts at x_T (image i's first 64 normals) and ends at
     * the image in the grid */
    int gw = grid_px(3, 8), tw = grid_px(10, 8), comp;
    uint8_t *g = stbi_load(P("s.png"), &gw, &(int){0}, &comp, 1);
    uint8_t *tr = stbi_load(P("traj.png"), &tw, &(int){0}, &comp, 1);
    assert_non_null(g);
    assert_non_null(tr);
    for (int i = 0; i < 5; i++) {
        ddpm_rng r;
        float xT[64];
        image_rng(&r, 3, i);
        ddpm_rng_fill_normal(&r, xT, 64);
        for (int y = 0; y < 8; y++)
            for (int xx = 0; xx < 8; xx++) {
                int ty = 2 + i * 10 + y;
                assert_int_equal(tr[ty * tw + 2 + xx], to_u8(xT[y * 8 + xx]));               /* col 0 */
                int gy = 2 + (i / 3) * 10 + y, gx = 2 + (i % 3) * 10 + xx;
                assert_int_equal(tr[ty * tw + 2 + 9 * 10 + xx], g[gy * gw + gx]);          /* col 9 */
                assert_int_equal(g[gy * gw + gx], b[16 + i * 64 + y * 8 + xx]);            /* IDX */
            }
    }
    stbi_image_free(g);
    stbi_image_free(tr);
    free(b);
    /* the last stderr line says what was written */
    assert_non_null(strstr(g_r.err, "s.png"));
    assert_non_null(strstr(g_r.err, "s.idx"));
    assert_non_null(strstr(g_r.err, "traj.png"));
    /* non-terminal progress: plain lines, no carriage returns */
    assert_null(strchr(g_r.err, '\r'));
    assert_non_null(strstr(g_r.err, "step"));
    /* stdout stays empty */
    assert_string_equal(g_r.out, "");
}

static void test_ddim_and_options(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors");
    cli_run(&g_r, "sample -c '%s' -n 4 --sampler ddim --sample-steps 5 --eta 0.5 --nrow 4 "
                  "-o '%s' --trajectory '%s'",
            ck, P("d.png"), P("dt.png"));
    expect(0, NULL);
    assert_png(P("d.png"), grid_px(4, 8), grid_px(1, 8));
    assert_png(P("dt.png"), grid_px(6, 8), grid_px(4, 8)); /* min(10, 5 + 1) columns */

    /* one step */
    cli_run(&g_r, "sample -c '%s' -n 2 --sampler ddim --sample-steps 1 -o '%s' --trajectory '%s'", ck,
            P("d1.png"), P("d1t.png"));
    expect(0, NULL);
    assert_png(P("d1t.png"), grid_px(2, 8), grid_px(2, 8));

    /* respaced DDPM, large variance, raw weights */
    cli_run(&g_r, "sample -c '%s' -n 3 --sample-steps 7 --var large --no-ema -o '%s'", ck, P("r.png"));
    expect(0, "raw");
    assert_png(P("r.png"), grid_px(2, 8), grid_px(2, 8));

    /* no schedule metadata: linear, T = 1000, with a note */
    cli_run(&g_r, "sample -c '%s' -n 2 --sampler ddim --sample-steps 3 -o '%s'",
            P("nometa.safetensors"), P("nm.png"));
    expect(0, "T=1000");
    assert_non_null(strstr(g_r.err, "note"));
    assert_non_null(strstr(g_r.err, "no EMA")); /* and it has no EMA weights */
    cli_run(&g_r, "sample -c '%s' --sample-steps 1001", P("nometa.safetensors"));
    expect(2, "1000");
}

static void test_labels(void **state) {
    (void)state;
    const char *ck = P("cond.safetensors");
    /* cycled labels: one column per class by default */
    cli_run(&g_r, "sample -c '%s' -n 7 --sample-steps 4 -o '%s' --idx '%s'", ck, P("c.png"), P("c.idx"));
    expect(0, "3 classes");
    assert_png(P("c.png"), grid_px(3, 8), grid_px(3, 8));
    /* a fixed label differs from the cycle for images 1 and 2 only */
    cli_run(&g_r, "sample -c '%s' -n 7 --sample-steps 4 --label 0 -o '%s' --idx '%s'", ck, P("c0.png"),
            P("c0.idx"));
    expect(0, "label 0");
    assert_png(P("c0.png"), grid_px(3, 8), grid_px(3, 8)); /* ceil(sqrt(7)) = 3 */
    long la, lb;
    unsigned char *a = slurp(P("c.idx"), &la), *b = slurp(P("c0.idx"), &lb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(la, lb);
    const long D = 64;
    assert_memory_equal(a + 16, b + 16, D);                    /* image 0: label 0 both times */
    assert_memory_not_equal(a + 16 + D, b + 16 + D, D);        /* image 1: label 1 vs 0 */
    assert_memory_equal(a + 16 + 3 * D, b + 16 + 3 * D, D);    /* image 3: label 0 both times */
    free(a);
    free(b);
}

/* ---- DPM-Solver++, spacings, guidance, --scale -------------------------------- */

static void test_new_flags_errors(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors"), *cond = P("cond.safetensors");
    struct {
        const char *ckpt, *flags, *in_err;
        int status;
    } bad[] = {
        {ck, "--guidance 2", "unconditional", 2},           /* unconditional model */
        {cond, "--guidance -1", "--guidance", 2},           /* negative W */
        {cond, "--guidance nan", "--guidance", 2},          /* non-finite W */
        {cond, "--guidance inf", "--guidance", 2},
        {cond, "--label 7 --guidance 2", "--label", 2},     /* label out of range */
        {ck, "--sampler dpm++2m --sample-steps 20", "T-1 = 19", 2}, /* dpm++2m: at most T-1 */
        {ck, "--sampler ddim --spacing cubic", "cubic", 2},
        {ck, "--spacing logsnr", "--spacing", 2},           /* ddpm has no spacing */
        {ck, "--sampler dpm++2m --eta 0.5", "--eta", 2},
        {ck, "--sampler dpm++2m --var large", "--var", 2},
        {ck, "--scale 0", "--scale", 2},
        {ck, "--scale 17", "--scale", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cli_run(&g_r, "sample -c '%s' -n 2 %s -o '%s'", bad[i].ckpt, bad[i].flags, P("bad.png"));
        expect(bad[i].status, bad[i].in_err);
        assert_false(cli_exists(P("bad.png")));
        int lines = 0;
        for (const char *q = g_r.err; *q; q++) lines += *q == '\n';
        assert_int_equal(lines, 1); /* a one-line error */
    }
}

static void test_dpmpp_and_spacing(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors");
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler dpm++2m -o '%s' --idx '%s' --trajectory '%s'", ck,
            P("p.png"), P("p.idx"), P("pt.png"));
    expect(0, "dpm++2m sampler, 19 steps"); /* default min(20, T-1) */
    assert_non_null(strstr(g_r.err, "logsnr spacing"));
    assert_png(P("pt.png"), grid_px(10, 8), grid_px(3, 8));
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler dpm++2m --sample-steps 5 --spacing uniform -o '%s' "
                  "--idx '%s' --trajectory '%s'", ck, P("q.png"), P("q.idx"), P("qt.png"));
    expect(0, "uniform spacing");
    assert_png(P("qt.png"), grid_px(6, 8), grid_px(3, 8));
    assert_false(cli_same_file(P("p.idx"), P("q.idx")));
    /* deterministic, but x_T comes from the seed: another seed, other images */
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler dpm++2m --sample-steps 5 --spacing uniform --seed 4 "
                  "-o '%s' --idx '%s'", ck, P("q2.png"), P("q2.idx"));
    expect(0, NULL);
    assert_false(cli_same_file(P("q.idx"), P("q2.idx")));
    cli_run(&g_r, "sample -c '%s' -n 2 --sampler ddim --spacing quadratic --sample-steps 4 -o '%s'", ck,
            P("dq.png"));
    expect(0, "quadratic spacing");
}

/* A checkpoint that records its sampler (a folder recipe's) is drawn with
 * it unless a flag names a sampler or one of a sampler's own options. */
static void test_model_sampler(void **state) {
    (void)state;
    const char *ck = P("smp.safetensors");
    make_ckpt_with(ck, 0, true, true, "dpm++2m", "5");
    cli_run(&g_r, "sample -c '%s' -n 3 -o '%s' --idx '%s'", ck, P("m.png"), P("m.idx"));
    expect(0, "dpm++2m sampler, 5 steps");
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler dpm++2m --sample-steps 5 -o '%s' --idx '%s'", ck, P("m2.png"),
            P("m2.idx"));
    expect(0, NULL);
    assert_true(cli_same_file(P("m.idx"), P("m2.idx")));
    cli_run(&g_r, "sample -c '%s' -n 3 --sample-steps 4 -o '%s'", ck, P("m3.png"));
    expect(0, "dpm++2m sampler, 4 steps");
    cli_run(&g_r, "sample -c '%s' -n 3 --var large -o '%s'", ck, P("m4.png"));
    expect(0, "ddpm sampler");
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler ddim -o '%s'", ck, P("m5.png"));
    expect(0, "ddim sampler");
    cli_run(&g_r, "sample -c '%s' -n 3 -o '%s'", P("ck.safetensors"), P("m6.png")); /* none recorded */
    expect(0, "ddpm sampler");
}

static void test_guidance_and_scale(void **state) {
    (void)state;
    const char *cond = P("cond.safetensors");
    /* cycled labels with guidance: 3 classes -> 3 columns; --scale 2 doubles the tiles */
    cli_run(&g_r, "sample -c '%s' -n 6 --sample-steps 4 --guidance 3 --scale 2 -o '%s' --idx '%s' "
                  "--trajectory '%s'", cond, P("g.png"), P("g.idx"), P("gt.png"));
    expect(0, "guidance 3");
    assert_png(P("g.png"), grid_px(3, 16), grid_px(2, 16));
    assert_png(P("gt.png"), grid_px(5, 16), grid_px(6, 16));
    /* W = 1 is the conditional sampler (to the rounding of a double-size batch) */
    cli_run(&g_r, "sample -c '%s' -n 6 --sample-steps 4 --guidance 1 -o '%s' --idx '%s'", cond,
            P("g1.png"), P("g1.idx"));
    expect(0, NULL);
    cli_run(&g_r, "sample -c '%s' -n 6 --sample-steps 4 -o '%s' --idx '%s'", cond, P("g_.png"), P("g_.idx"));
    expect(0, NULL);
    long la, lb, lc;
    unsigned char *a = slurp(P("g1.idx"), &la), *b = slurp(P("g_.idx"), &lb), *c = slurp(P("g.idx"), &lc);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(la, lb);
    int maxd = 0, differ = 0;
    for (long i = 16; i < la; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        maxd = d > maxd ? d : maxd;
        differ += a[i] != c[i];
    }
    assert_true(maxd <= 1);
    assert_true(differ > 0); /* W = 3 is not W = 1 */
    free(a);
    free(b);
    free(c);
    /* --label-idx: the labels, cycling or fixed, as IDX u8 */
    cli_run(&g_r, "sample -c '%s' -n 7 --sample-steps 2 -o '%s' --label-idx '%s'", cond, P("l.png"), P("l.idx"));
    expect(0, "7 u8 labels");
    unsigned char *l = slurp(P("l.idx"), &la);
    assert_non_null(l);
    const unsigned char want[15] = {0, 0, 8, 1, 0, 0, 0, 7, 0, 1, 2, 0, 1, 2, 0};
    assert_int_equal(la, 15);
    assert_memory_equal(l, want, 15);
    free(l);
    cli_run(&g_r, "sample -c '%s' -n 2 -o '%s' --label-idx '%s'", P("ck.safetensors"), P("l2.png"), P("l2.idx"));
    expect(2, "unconditional");
    assert_false(cli_exists(P("l2.idx")));
}

/* ---- reproducibility -------------------------------------------------------------- */

static void test_reproducible(void **state) {
    (void)state;
    char ck[512];
    snprintf(ck, sizeof ck, "%s", P("ck.safetensors"));
    const char *fmt = "sample -c '%s' -n 6 --seed %d %s -o '%s' --idx '%s'";
    cli_run(&g_r, fmt, ck, 7, "", P("a.png"), P("a.idx"));
    expect(0, NULL);
    cli_run(&g_r, fmt, ck, 7, "", P("b.png"), P("b.idx"));
    expect(0, NULL);
    assert_true(cli_same_file(P("a.png"), P("b.png")));
    assert_true(cli_same_file(P("a.idx"), P("b.idx")));
    /* --batch and --threads do not change the images */
    cli_run(&g_r, fmt, ck, 7, "--batch 4 --threads 1", P("c.png"), P("c.idx"));
    expect(0, "batch 2/2");
    assert_true(cli_same_file(P("a.idx"), P("c.idx")));
    cli_run(&g_r, fmt, ck, 7, "--batch 1 --threads 2", P("d.png"), P("d.idx"));
    expect(0, NULL);
    assert_true(cli_same_file(P("a.idx"), P("d.idx")));
    /* another seed gives other images */
    cli_run(&g_r, fmt, ck, 8, "", P("e.png"), P("e.idx"));
    expect(0, NULL);
    assert_false(cli_same_file(P("a.idx"), P("e.idx")));
    /* -n 2 gives the first two images of -n 6 */
    cli_run(&g_r, "sample -c '%s' -n 2 --seed 7 -o '%s' --idx '%s'", ck, P("g.png"), P("g.idx"));
    expect(0, NULL);
    long la, lb;
    unsigned char *a = slurp(P("a.idx"), &la), *g = slurp(P("g.idx"), &lb);
    assert_non_null(a);
    assert_non_null(g);
    assert_int_equal(lb, 16 + 2 * 64);
    assert_memory_equal(a + 16, g + 16, 2 * 64);
    free(a);
    free(g);
}

/* --precision: bf16 products draw other (close) images than fp32 from the
 * same seed; an unknown name is a usage error that writes nothing. */
static void test_precision(void **state) {
    (void)state;
    const char *ck = P("ck.safetensors");
    cli_run(&g_r, "sample -c '%s' -n 3 --sample-steps 4 --seed 2 -o '%s' --idx '%s'", ck, P("p32.png"), P("p32.idx"));
    expect(0, NULL);
    cli_run(&g_r, "sample -c '%s' -n 3 --sample-steps 4 --seed 2 --precision fp32 -o '%s' --idx '%s'", ck, P("q32.png"),
            P("q32.idx"));
    expect(0, NULL);
    assert_true(cli_same_file(P("p32.idx"), P("q32.idx"))); /* the checkpoint's precision is fp32 */
    cli_run(&g_r, "sample -c '%s' -n 3 --sample-steps 4 --seed 2 --precision bf16 -o '%s' --idx '%s'", ck, P("p16.png"),
            P("p16.idx"));
    expect(0, "bf16 products");
    assert_false(cli_same_file(P("p32.idx"), P("p16.idx")));
    cli_run(&g_r, "sample -c '%s' --precision fp16 -o '%s'", ck, P("bad.png"));
    expect(2, "--precision: unknown precision 'fp16'");
    assert_false(cli_exists(P("bad.png")));
}

int main(void) {
    /* The ddpm processes use every core; on a shared, oversubscribed machine
     * OpenMP threads spinning while they wait can stretch a 1 s run to 30 s.
     * These tests check behaviour, not speed: let idle threads sleep (a
     * setting from the environment wins). */
    setenv("OMP_WAIT_POLICY", "passive", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_missing_checkpoint),
        cmocka_unit_test(test_default_checkpoint),
        cmocka_unit_test(test_damaged_checkpoint),
        cmocka_unit_test(test_unwritable_output),
        cmocka_unit_test(test_outputs),
        cmocka_unit_test(test_ddim_and_options),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_new_flags_errors),
        cmocka_unit_test(test_dpmpp_and_spacing),
        cmocka_unit_test(test_model_sampler),
        cmocka_unit_test(test_guidance_and_scale),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_precision),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
