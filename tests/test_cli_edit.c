/* test_cli_edit.c: `ddpm sample --init/--mask/...` and `ddpm interp` end to
 * end on tiny checkpoints made here: every bad input (exit code, one-line
 * message, no output file left), the outputs' counts and sizes, strength 1
 * equal to plain sampling, inpainted pixels kept byte for byte, --batch not
 * changing an edit, and the new samplers' flags. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stb_image.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/image.h"
#include "ddpm/unet.h"

static char g_dir[256];
static cli_result g_r; /* large: keep it off the stack */

static const char *P(const char *name) {
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void expect(int status, const char *in_err) { cli_expect(&g_r, status, in_err); }

/* A tiny 8 x 8 checkpoint (random weights, T = 20) with num_classes classes. */
static void make_ckpt(const char *path, int in_ch, int num_classes) {
    ddpm_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = in_ch, c.res = 8, c.ch = 8, c.ch_mult[0] = 1, c.ch_mult[1] = 2, c.num_levels = 2;
    c.num_res_blocks = 1, c.groups = 4, c.num_classes = num_classes;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 1);
    ddpm_st_meta extra[2] = {{"schedule", "linear"}, {"timesteps", "20"}};
    ddpm_checkpoint_extras x = {0};
    x.extra = extra, x.nextra = 2;
    assert_int_equal(ddpm_checkpoint_save(path, &c, ddpm_unet_params(m), &x), DDPM_OK);
    ddpm_unet_free(m);
}

/* An s x s RGB PNG: a gradient, or the lower half white (mask). */
static void write_png(const char *path, int s, bool mask) {
    uint8_t *rgb = malloc((size_t)s * s * 3);
    assert_non_null(rgb);
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * s + x) * 3 + c] = mask ? (y >= s / 2 ? 255 : 0) : (uint8_t)((x * 29 + y * 13 + c * 50) % 256);
    assert_int_equal(ddpm_image_write_rgb(path, rgb, s, s), DDPM_OK);
    free(rgb);
}

static void write_idx(const char *path, int n, int s) {
    uint8_t *px = malloc((size_t)n * s * s);
    assert_non_null(px);
    for (int j = 0; j < n * s * s; j++) px[j] = (uint8_t)(j * 37 % 256);
    assert_int_equal(ddpm_idx_write_images(path, px, n, 1, s, s), DDPM_OK);
    free(px);
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    make_ckpt(P("ck.safetensors"), 1, 0);
    make_ckpt(P("rgb.safetensors"), 3, 3);
    write_png(P("in.png"), 20, false); /* resized to 8 x 8 on loading */
    write_png(P("mask.png"), 16, true);
    write_idx(P("three.idx"), 3, 8);
    write_idx(P("big.idx"), 2, 16);
    cli_write_text(P("text.png"), "not an image\n");
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/folder' && cp '%s/in.png' '%s/folder/a.png' && cp '%s/in.png' '%s/folder/b.png'",
             g_dir, g_dir, g_dir, g_dir, g_dir);
    return system(cmd) ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static void test_help(void **state) {
    (void)state;
    const char *const s[] = {"--init", "--strength", "--mask", "--resample", "--per-image", "--churn", "--sigmas",
                             "euler_a", "heun", "2K-1"};
    cli_check_help("sample", s, 10);
    const char *const i[] = {"--seeds", "--images", "--steps", "slerp"};
    cli_check_help("interp", i, 4);
}

/* Every bad input: its exit code, its message, and no output file. */
static void test_bad_input(void **state) {
    (void)state;
    char ck[512], out[512];
    snprintf(ck, sizeof ck, "%s", P("ck.safetensors"));
    snprintf(out, sizeof out, "%s", P("o.png"));
    const struct {
        const char *args;
        int status;
        const char *msg;
    } cases[] = {
        {"--mask '%s/mask.png'", 2, "--mask needs --init"},
        {"--init '%s/in.png' --resample 2", 2, "--resample needs --mask"},
        {"--init '%s/in.png' --strength 0", 2, "(0, 1]"},
        {"--init '%s/in.png' --strength 1.5", 2, "--strength"},
        {"--init '%s/in.png' --strength -0.5", 2, "--strength"},
        {"--init '%s/in.png' --per-image 0", 2, "--per-image"},
        {"--strength 0.5", 2, "need --init"},
        {"--init '%s/missing.png'", 1, "cannot read"},
        {"--init '%s/text.png'", 1, "not an image"},
        {"--init '%s/in.png' --mask '%s/text.png'", 1, "not an image"},
        {"--init '%s/in.png' --mask '%s/nothere.png'", 1, "nothere.png"},
        {"--init '%s/big.idx'", 1, "holds 1 x 16 x 16 images; the model takes 1 x 8 x 8"},
        {"--init '%s/in.png' --mask '%s/mask.png' --resample 1 --sampler dpm++2m", 2, "dpm++2m"},
        {"--sampler ddim --churn 1", 2, "--churn applies to euler and heun"},
        {"--sampler euler_a --churn 1", 2, "--churn applies to euler and heun"},
        {"--sampler ddpm --sigmas karras", 2, "--sigmas applies"},
        {"--sampler heun --sigmas log", 2, "--sigmas: unknown sigma grid"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char args[1200];
        snprintf(args, sizeof args, cases[k].args, g_dir, g_dir);
        cli_run(&g_r, "sample -c '%s' %s -o '%s' --sample-steps 4", ck, args, out);
        expect(cases[k].status, cases[k].msg);
        if (cli_lines(g_r.err) != 1) fail_msg("%s: not one line:\n%s", args, g_r.err);
        assert_false(cli_exists(out));
    }
    cli_run(&g_r, "interp -c '%s' --seeds 1 -o '%s'", ck, out);
    expect(2, "exactly one of");
    cli_run(&g_r, "interp -c '%s' --seeds 1,2 --images a,b -o '%s'", ck, out);
    expect(2, "exactly one of");
    cli_run(&g_r, "interp -c '%s' --seeds 1,x -o '%s'", ck, out);
    expect(2, "non-negative integers");
    cli_run(&g_r, "interp -c '%s' --images '%s/in.png,%s/missing.png' -o '%s'", ck, g_dir, g_dir, out);
    expect(1, "missing.png");
    cli_run(&g_r, "interp -c '%s' --seeds 1,2 --steps 1 -o '%s'", ck, out);
    expect(2, "--steps");
    assert_false(cli_exists(out));
}

static uint8_t *read_idx(const char *path, int *n) {
    ddpm_idx im;
    assert_int_equal(ddpm_idx_read(&im, path, DDPM_IDX_IMAGES), DDPM_OK);
    *n = im.dims[0];
    return im.data;
}

static void test_outputs(void **state) {
    (void)state;
    char ck[512]; /* P's buffers are reused after 16 calls */
    snprintf(ck, sizeof ck, "%s", P("ck.safetensors"));
    /* one output per input image whatever -n, K per image with --per-image */
    cli_run(&g_r, "sample -c '%s' --init '%s' --per-image 2 -n 1 --strength 0.6 --sampler heun --sample-steps 4 -o '%s' --idx '%s'",
            ck, P("three.idx"), P("a.png"), P("a.idx"));
    expect(0, "editing 3 images");
    int n;
    free(read_idx(P("a.idx"), &n));
    assert_int_equal(n, 6);
    cli_run(&g_r, "sample -c '%s' --init '%s' --sampler euler_a --sample-steps 4 -o '%s' --idx '%s'", ck,
            P("folder"), P("f.png"), P("f.idx"));
    expect(0, "editing 2 images");
    /* strength 1 is plain sampling, image for image */
    cli_run(&g_r, "sample -c '%s' --init '%s' --strength 1 --sampler ddim --sample-steps 5 --idx '%s' -o '%s'", ck,
            P("three.idx"), P("s1.idx"), P("s1.png"));
    expect(0, NULL);
    cli_run(&g_r, "sample -c '%s' -n 3 --sampler ddim --sample-steps 5 --idx '%s' -o '%s'", ck, P("p.idx"), P("p.png"));
    expect(0, NULL);
    assert_true(cli_same_file(P("s1.idx"), P("p.idx")));
    /* inpainting: the black half of the mask is the input's, byte for byte; --batch changes nothing */
    for (int b = 0; b < 2; b++) {
        cli_run(&g_r, "sample -c '%s' --init '%s' --mask '%s' --resample 1 --per-image 2 --sampler ddpm --sample-steps 6 "
                      "--batch %d --idx '%s' -o '%s'", ck, P("three.idx"), P("mask.png"), b ? 1 : 64, P(b ? "i1.idx" : "i0.idx"),
                P("i.png"));
        expect(0, "inpainting");
    }
    assert_true(cli_same_file(P("i0.idx"), P("i1.idx")));
    int ni, no;
    uint8_t *in = read_idx(P("three.idx"), &ni), *out = read_idx(P("i0.idx"), &no);
    assert_int_equal(no, 6);
    int changed = 0;
    for (int i = 0; i < 6; i++)
        for (int p = 0; p < 64; p++) {
            if (p / 8 < 4) assert_int_equal(out[i * 64 + p], in[(i / 2) * 64 + p]);
            else changed += out[i * 64 + p] != in[(i / 2) * 64 + p];
        }
    assert_true(changed > 6 * 32 / 2);
    free(in);
    free(out);
    /* RGB, class-conditional, guided, a PNG input */
    cli_run(&g_r, "sample -c '%s' --init '%s' --mask '%s' --label 1 --guidance 2 --sampler euler --churn 1 "
                  "--sample-steps 3 -o '%s' --trajectory '%s'", P("rgb.safetensors"), P("in.png"), P("mask.png"),
            P("rgb.png"), P("traj.png"));
    expect(0, "wrote 1 image");
    /* interp: a strip of N frames */
    cli_run(&g_r, "interp -c '%s' --seeds 3,4 --steps 5 --sample-steps 4 -o '%s'", ck, P("strip.png"));
    expect(0, "wrote 5 frames");
    int w, h, comp;
    assert_true(stbi_info(P("strip.png"), &w, &h, &comp));
    assert_int_equal(w, 5 * (8 + DDPM_GRID_PAD) + DDPM_GRID_PAD);
    assert_int_equal(h, 8 + 2 * DDPM_GRID_PAD);
    cli_run(&g_r, "interp -c '%s' --images '%s,%s' --steps 3 --sample-steps 4 -o '%s'", P("rgb.safetensors"), P("in.png"),
            P("mask.png"), P("strip2.png"));
    expect(0, "wrote 3 frames");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_outputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
