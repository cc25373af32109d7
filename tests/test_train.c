/* test_train.c: the trainer API: iterations on attached data, exact resume
 * through save/resume, and checkpoint metadata checked value by value (a bad
 * value names the file and the key). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/train.h"

enum { N = 24, S = 8 };
static char g_dir[256], g_ck[400];
static uint8_t g_px[N * S * S];
static int g_lab[N];
static ddpm_dataset g_ds = {.n = N, .c = 1, .h = S, .w = S, .pixels = g_px, .labels = g_lab, .num_classes = 3};

static void tiny(ddpm_train_config *c) {
    ddpm_train_config_default(c);
    c->model = (ddpm_unet_config){.in_ch = 1, .res = S, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2,
                                  .num_res_blocks = 1, .attn_res = {4}, .num_attn = 1, .groups = 4,
                                  .num_classes = 3, .dropout = 0.1f};
    c->T = 20, c->batch = 5, c->iters = 6, c->warmup = 1, c->seed = 11;
}

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    for (int i = 0; i < N * S * S; i++) g_px[i] = (uint8_t)(i * 29 % 251);
    for (int i = 0; i < N; i++) g_lab[i] = i % 3;
    snprintf(g_ck, sizeof g_ck, "%s/half.safetensors", g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    b[*n] = '\0';
    fclose(f);
    return b;
}

static void spit(const char *path, const char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* 6 iterations straight == 3, save, resume, 3 (the data order crosses an
 * epoch: 6 * 5 > 24), with a stop requested by the callback in between. */
static ddpm_status stop_at_3(void *ctx, ddpm_trainer *tr, const ddpm_train_stats *st, bool *stop) {
    *stop = st->iter == 3;
    (*(int *)ctx)++;
    return DDPM_OK;
}

static void test_resume_exact(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny(&c);
    char full[400];
    snprintf(full, sizeof full, "%s/full.safetensors", g_dir);
    ddpm_trainer *a, *b;
    assert_int_equal(ddpm_trainer_create(&a, &c), DDPM_OK);
    assert_int_equal(ddpm_trainer_next(a, NULL), DDPM_ERR_ARG); /* no data yet */
    assert_int_equal(ddpm_trainer_set_data(a, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(a, c.iters, NULL, NULL), DDPM_OK);
    assert_int_equal(ddpm_trainer_save(a, full), DDPM_OK);
    ddpm_trainer_free(a);

    int calls = 0;
    assert_int_equal(ddpm_trainer_create(&a, &c), DDPM_OK);
    assert_int_equal(ddpm_trainer_set_data(a, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(a, c.iters, stop_at_3, &calls), DDPM_OK);
    assert_int_equal(calls, 3);
    assert_int_equal(ddpm_trainer_step_count(a), 3);
    assert_int_equal(ddpm_trainer_save(a, g_ck), DDPM_OK);
    ddpm_trainer_free(a);
    assert_int_equal(ddpm_trainer_resume(&b, g_ck, 0), DDPM_OK);
    assert_string_equal(ddpm_trainer_data_name(b), "synthetic");
    assert_int_equal(ddpm_trainer_set_data(b, &g_ds, "synthetic"), DDPM_OK);
    assert_int_equal(ddpm_trainer_run(b, c.iters, NULL, NULL), DDPM_OK);
    char rest[400];
    snprintf(rest, sizeof rest, "%s/rest.safetensors", g_dir);
    assert_int_equal(ddpm_trainer_save(b, rest), DDPM_OK);
    ddpm_trainer_free(b);
    size_t n1, n2;
    char *x = slurp(full, &n1), *y = slurp(rest, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(x, y, n1);
    free(x);
    free(y);
}

/* Replace `"key":"old"` by a value of the same length in the checkpoint's
 * JSON header and expect resume (or set_data) to name the file and key. */
static void expect_bad(const char *key, const char *bad, const char *why) {
    size_t n;
    char *b = slurp(g_ck, &n), pat[200];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    char *v = strstr(b + 8, pat);
    if (!v) fail_msg("no %s in the checkpoint", key);
    v += strlen(pat);
    char *end = strchr(v, '"');
    if ((size_t)(end - v) != strlen(bad)) fail_msg("%s: '%.*s' and '%s' differ in length", key, (int)(end - v), v, bad);
    memcpy(v, bad, strlen(bad));
    char path[450];
    snprintf(path, sizeof path, "%s/bad.safetensors", g_dir);
    spit(path, b, n);
    free(b);
    ddpm_trainer *tr = NULL;
    ddpm_clear_error();
    ddpm_status s = ddpm_trainer_resume(&tr, path, 0);
    if (!s) {
        s = ddpm_trainer_set_data(tr, &g_ds, "synthetic");
        ddpm_trainer_free(tr);
    } else {
        assert_null(tr);
    }
    assert_int_equal(s, DDPM_ERR_FORMAT);
    const char *msg = ddpm_last_error();
    char want[600];
    snprintf(want, sizeof want, "'%s': metadata '%s' is %s", path, key, why);
    if (!strstr(msg, want)) fail_msg("%s='%s': got \"%s\", want \"%s\"", key, bad, msg, want);
}

static void test_bad_metadata(void **state) {
    (void)state; /* g_ck is the 3-iteration checkpoint of test_resume_exact: step 3, pos 15 */
    expect_bad(DDPM_META_STEP, "x", "not an integer");
    expect_bad(DDPM_META_STEP, "-", "not an integer");
    expect_bad(DDPM_META_BATCH, "0", "out of range");
    expect_bad(DDPM_META_TIMESTEPS, "1x", "not an integer");
    expect_bad(DDPM_META_SEED, "-1", "not an unsigned integer");
    expect_bad(DDPM_META_DATA_POS, "-5", "not an integer");
    expect_bad(DDPM_META_DATA_POS, "99", "99, beyond the 24 images");
    expect_bad(DDPM_META_DATA_EPOCH, "x", "not an integer");
    expect_bad(DDPM_META_SCHEDULE, "cubic_", "an unknown value");
    expect_bad(DDPM_META_RNG, "g000000000000000000000000000000000000000000000000000000000000000",
               "not a generator state");
    expect_bad(DDPM_META_RNG, "0000000000000000000000000000000000000000000000000000000000000000",
               "the all-zero generator state");
    /* numbers past 2^64 - 1 (the data seed is a random u64: 20 digits or fewer) */
    size_t n;
    char *b = slurp(g_ck, &n);
    const char *v = strstr(b + 8, "\"data_seed\":\"") + strlen("\"data_seed\":\"");
    char nines[32];
    int len = (int)(strchr(v, '"') - v);
    free(b);
    if (len == 20) {
        memset(nines, '9', 20);
        nines[20] = '\0';
        expect_bad(DDPM_META_DATA_SEED, nines, "not an unsigned integer");
    }
}

/* A model that does not fit the data, with the library's own words. */
static void test_data_mismatch(void **state) {
    (void)state;
    ddpm_train_config c;
    tiny(&c);
    c.model.num_classes = 2;
    ddpm_trainer *tr;
    assert_int_equal(ddpm_trainer_create(&tr, &c), DDPM_OK);
    assert_int_equal(ddpm_trainer_set_data(tr, &g_ds, "three"), DDPM_ERR_ARG);
    assert_string_equal(ddpm_last_error(), "the model has 2 classes, but the labels in 'three' go up to 2");
    ddpm_dataset big = g_ds;
    big.h = big.w = 16;
    assert_int_equal(ddpm_trainer_set_data(tr, &big, "big"), DDPM_ERR_ARG);
    assert_string_equal(ddpm_last_error(), "the model takes 1x8x8 images, the data in 'big' is 1x16x16");
    ddpm_trainer_free(tr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_data_mismatch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
