/* test_cli_folder.c: `ddpm train --data DIR` on a generated folder of images:
 * the class map in the checkpoint and in `ddpm info -c`, `ddpm sample --label
 * NAME`, skip counts and --strict, bad flags, the cache across runs, and
 * exact resume with random crops and flips. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <stb_image_write.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"

static char g_dir[256], g_data[300];

#define TINY "--data %s --size 8 --ch 8 --ch-mult 1,2 --res-blocks 1 --attn none --groups 4 --batch 4 " \
             "--steps 10 --threads 2 --log-every 1"

static void png(const char *rel, int w, int h, int seed) {
    char p[600], cmd[700];
    snprintf(p, sizeof p, "%s/%s", g_data, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", p);
    assert_int_equal(system(cmd), 0);
    uint8_t px[16 * 16 * 3];
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(seed * 50 + i * 7);
    assert_true(stbi_write_png(p, w, h, 3, px, w * 3));
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/imgs", g_dir);
    const char *cls[3] = {"circle", "square", "star"};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 3; i++) {
            char rel[64];
            snprintf(rel, sizeof rel, "%s/%d.png", cls[c], i);
            png(rel, 8 + 3 * i, 12 - i, c * 3 + i); /* odd, non-square sizes */
        }
    char cache[400];
    snprintf(cache, sizeof cache, "%s/cache", g_dir);
    setenv("DDPM_CACHE_DIR", cache, 1); /* not the user's ~/.cache */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static void test_classes_info_and_label(void **state) {
    (void)state;
    char out[400], a[1200];
    snprintf(out, sizeof out, "%s/cls", g_dir);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --classes 3 --iters 2 --warmup 1 --out %s", g_data, out);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    assert_non_null(strstr(r.err, "9 images, 3 classes"));
    assert_non_null(strstr(r.err, "3x8x8"));
    char ck[500];
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", out);
    ddpm_checkpoint c;
    assert_int_equal(ddpm_checkpoint_open(&c, ck), DDPM_OK);
    assert_string_equal(ddpm_checkpoint_meta(&c, "classes"), "[\"circle\",\"square\",\"star\"]");
    assert_string_equal(ddpm_checkpoint_meta(&c, "data_hflip"), "1"); /* default on for folders */
    ddpm_checkpoint_close(&c);
    assert_int_equal(cli_run(&r, "info -c %s", ck), 0);
    assert_non_null(strstr(r.out, "classes (folder name -> label):"));
    assert_non_null(strstr(r.out, "      2  star"));
    char png_out[500];
    snprintf(png_out, sizeof png_out, "%s/star.png", g_dir);
    if (cli_run(&r, "sample -c %s -n 2 --sampler ddim --sample-steps 2 --label star -o %s", ck, png_out))
        fail_msg("sample --label star: %s", r.err);
    assert_non_null(strstr(r.err, "label 2"));
    assert_true(cli_exists(png_out));
    assert_int_equal(cli_run(&r, "sample -c %s -n 2 --sample-steps 2 --label moon -o %s", ck, png_out), 2);
    assert_non_null(strstr(r.err, "--label: 'moon': no such class"));
    assert_non_null(strstr(r.err, "circle square star"));
    assert_int_equal(cli_lines(r.err), 1);
    assert_int_equal(cli_run(&r, "sample -c %s -n 2 --sample-steps 2 --label 1 -o %s", ck, png_out), 0);
    assert_non_null(strstr(r.err, "label 1"));
}

static void test_bad_files_and_strict(void **state) {
    (void)state;
    char p[600], out[400], a[1200];
    snprintf(p, sizeof p, "%s/star/notes.txt", g_data);
    FILE *f = fopen(p, "w");
    fputs("not an image\n", f);
    fclose(f);
    snprintf(out, sizeof out, "%s/bad", g_dir);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --iters 1 --warmup 0 --out %s", g_data, out);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    assert_non_null(strstr(r.err, "star/notes.txt': not an image"));
    assert_non_null(strstr(r.err, "skipped 1 of 10 files: 1 not an image"));
    snprintf(a, sizeof a, "train " TINY " --iters 1 --warmup 0 --strict --out %s/strict", g_data, g_dir);
    assert_int_equal(cli_run(&r, "%s", a), 1);
    assert_non_null(strstr(r.err, "notes.txt': not an image (no format stb_image reads) (strict: a skipped file is an error)"));
    snprintf(p, sizeof p, "%s/strict", g_dir);
    assert_false(cli_exists(p));
    remove(p);
    snprintf(p, sizeof p, "%s/star/notes.txt", g_data);
    remove(p);
}

static void test_bad_flags(void **state) {
    (void)state;
    cli_result r;
    assert_int_equal(cli_run(&r, "train --data %s --alpha grey", g_data), 2);
    assert_non_null(strstr(r.err, "--alpha: unknown background 'grey' (expected white or black)"));
    assert_int_equal(cli_run(&r, "train --data %s --crop left", g_data), 2);
    assert_non_null(strstr(r.err, "--crop: unknown crop 'left'"));
    assert_int_equal(cli_run(&r, "train --data %s --hflip --no-hflip", g_data), 2);
    char empty[400];
    snprintf(empty, sizeof empty, "%s/empty", g_dir);
    mkdir(empty, 0755);
    assert_int_equal(cli_run(&r, "train --data %s --out %s/e", empty, g_dir), 1);
    assert_non_null(strstr(r.err, "no usable image among 0 files"));
    assert_int_equal(cli_lines(r.err), 1);
    /* --classes needs every image in a class folder */
    png("loose.png", 8, 8, 1);
    char a[1200];
    snprintf(a, sizeof a, "train " TINY " --classes 3 --iters 1 --out %s/l", g_data, g_dir);
    assert_int_equal(cli_run(&r, "%s", a), 1);
    assert_non_null(strstr(r.err, "1 images lie directly in"));
    char p[600];
    snprintf(p, sizeof p, "%s/loose.png", g_data);
    remove(p);
}

/* Straight == stop + resume, with random crops and flips on; the second run
 * reads the cache. */
static void test_resume_exact_with_augmentation(void **state) {
    (void)state;
    char a[1200], A[400], B[400];
    snprintf(A, sizeof A, "%s/straight", g_dir);
    snprintf(B, sizeof B, "%s/halves", g_dir);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --crop random --iters 6 --warmup 1 --seed 3 --out %s", g_data, A);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    snprintf(a, sizeof a, "train " TINY " --crop random --iters 6 --warmup 1 --seed 3 --out %s --stop-after 3", g_data, B);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    assert_non_null(strstr(r.err, "from the cache"));
    if (cli_run(&r, "train --resume --out %s --threads 2", B)) fail_msg("resume: %s", r.err);
    char pa[500], pb[500];
    snprintf(pa, sizeof pa, "%s/ckpt.safetensors", A);
    snprintf(pb, sizeof pb, "%s/ckpt.safetensors", B);
    size_t na, nb;
    char *ba = cli_slurp(pa, &na), *bb = cli_slurp(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    /* and the augmentation matters: without flips the weights differ */
    snprintf(a, sizeof a, "train " TINY " --crop random --no-hflip --iters 6 --warmup 1 --seed 3 --out %s/noflip", g_data, g_dir);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    snprintf(pb, sizeof pb, "%s/noflip/ckpt.safetensors", g_dir);
    ba = cli_slurp(pa, &na), bb = cli_slurp(pb, &nb);
    assert_true(na != nb || memcmp(ba, bb, na) != 0);
    free(ba);
    free(bb);
}

/* The recipe follows the image size unless flags say otherwise: at 32 px
 * the preset's (width 32, batch 32, 9000 iterations, dpm++2m recorded as
 * the model's sampler: at this T = 10 at its default steps; not with
 * another objective than the recipe's v), at a size
 * without a preset the quick start's (width 16, batch 32, 9370 iterations,
 * no sampler recorded: ddpm); the warmup is 9 % of the iterations, and a
 * flag overrides its field only. A NULL value: the key is absent. */
static void recipe(const char *flags, const char *name, const char *const *want, int n) {
    char out[400], ck[500];
    cli_result r;
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    if (cli_run(&r, "train --data %s %s --steps 10 --threads 2 --stop-after 1 --out %s", g_data, flags, out))
        fail_msg("%s: %s", flags, r.err);
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", out);
    ddpm_checkpoint c;
    assert_int_equal(ddpm_checkpoint_open(&c, ck), DDPM_OK);
    for (int i = 0; i < n; i += 2) {
        const char *v = ddpm_checkpoint_meta(&c, want[i]);
        if (v ? !want[i + 1] || strcmp(v, want[i + 1]) : want[i + 1] != NULL)
            fail_msg("%s: %s = %s, want %s", flags, want[i], v ? v : "(absent)", want[i + 1] ? want[i + 1] : "(absent)");
    }
    ddpm_checkpoint_close(&c);
}

static void test_recipe_by_size(void **state) {
    (void)state;
    const char *preset[] = {"res", "32", "ch", "32", "batch", "32", "iters", "9000", "warmup", "810",
                            "sampler", "dpm++2m", "sample_steps", "0"};
    recipe("--size 32", "r32", preset, 14);
    const char *flags[] = {"res", "32", "ch", "8", "batch", "8", "iters", "50", "warmup", "5",
                           "sampler", "ddim", "sample_steps", "0"};
    recipe("--size 32 --ch 8 --groups 4 --batch 8 --iters 50 --sampler ddim", "r32f", flags, 14);
    const char *steps[] = {"sampler", "dpm++2m", "sample_steps", "7"};
    recipe("--size 32 --sample-steps 7", "r32k", steps, 4);
    const char *eps[] = {"objective", "eps", "sampler", NULL, "sample_steps", NULL}; /* the sampler goes with v */
    recipe("--size 32 --objective eps", "r32e", eps, 6);
    const char *digits[] = {"res", "12", "ch", "16", "batch", "32", "iters", "9370", "warmup", "843",
                            "sampler", NULL, "sample_steps", NULL};
    recipe("--size 12 --attn none", "r12", digits, 14);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recipe_by_size),
        cmocka_unit_test(test_classes_info_and_label),
        cmocka_unit_test(test_bad_files_and_strict),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_resume_exact_with_augmentation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
