/* test_legacy_ckpt.c: checkpoints written by earlier code keep sampling the
 * same images. tests/data/legacy/ holds tiny checkpoints (a v-objective one
 * with today's defaults, an eps one without the 'objective' and 'snr_gamma'
 * keys, a class-conditional one, and one written from PyTorch with only the
 * model config in its metadata) and tests/data/expected/ what `ddpm sample`
 * made of them when they were written (scripts/make_legacy_fixtures.py;
 * tests/data/legacy/README.md lists the files and commands). Each case runs
 * the same command and compares the IDX file byte for byte.
 *
 * Byte equality is the right test here: the expected files were written by
 * this code on this kind of machine, and sampling is deterministic and does
 * not depend on --threads (the script checks 1 and 2 threads agree). The
 * metadata-default tests show that what the missing keys mean is what the
 * bytes pin: adding the documented defaults explicitly gives the same
 * images, and a different value gives different ones. */
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
#include "ddpm/safetensors.h"
#include "fixture.h"

static cli_result g_r; /* large: keep it off the stack */

#define DDIM6 "--sampler ddim --sample-steps 6"
#define BASE "-n 4 --seed 5"

/* The table of scripts/make_legacy_fixtures.py (EXPECTED). */
typedef struct {
    const char *expected, *ckpt, *flags;
} legacy_case;

static const legacy_case CASES[] = {
    {"ckpt_v.ddim6.idx", "ckpt_v", DDIM6},
    {"ckpt_v.ddpm10.idx", "ckpt_v", "--sampler ddpm --sample-steps 10"},
    {"ckpt_v.ddim6.no_ema.idx", "ckpt_v", DDIM6 " --no-ema"},
    {"ckpt_eps_noobj.ddim6.idx", "ckpt_eps_noobj", DDIM6},
    {"ckpt_cond.ddim6.idx", "ckpt_cond", DDIM6},
    {"ckpt_cond.ddim6.guidance2.idx", "ckpt_cond", DDIM6 " --guidance 2"},
    {"torch_nometa.ddim6.idx", "torch_nometa", DDIM6},
};
#define NCASES ((int)(sizeof CASES / sizeof *CASES))

static void data_path(char *out, size_t cap, const char *sub, const char *name, const char *ext) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s%s", sub, name, ext);
    assert_int_equal(fx_data_path(out, cap, rel), 0);
}

/* Samples ckpt with BASE + flags into dir/out.idx and returns its path. */
static const char *sample(const char *dir, const char *ckpt, const char *flags) {
    static char idx[600];
    snprintf(idx, sizeof idx, "%s/out.idx", dir);
    cli_run(&g_r, "sample -c '%s' " BASE " %s --idx '%s' -o '%s/out.png'", ckpt, flags, idx, dir);
    cli_expect(&g_r, 0, NULL);
    return idx;
}

/* Index of the first differing byte, or -1 when a and b hold the same bytes. */
static long first_difference(const char *a, const char *b) {
    size_t na, nb;
    char *x = cli_slurp(a, &na), *y = cli_slurp(b, &nb);
    long at = -1;
    for (size_t i = 0; i < (na < nb ? na : nb) && at < 0; i++)
        if (x[i] != y[i]) at = (long)i;
    if (at < 0 && na != nb) at = (long)(na < nb ? na : nb);
    free(x);
    free(y);
    return at;
}

static void test_legacy_outputs(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    int bad = 0;
    for (int i = 0; i < NCASES; i++) {
        char ckpt[512], want[512];
        data_path(ckpt, sizeof ckpt, "legacy", CASES[i].ckpt, ".safetensors");
        data_path(want, sizeof want, "expected", CASES[i].expected, "");
        const char *got = sample(dir, ckpt, CASES[i].flags);
        long at = first_difference(got, want);
        printf("%-32s %s\n", CASES[i].expected, at < 0 ? "same" : "DIFFERS");
        if (at >= 0) {
            fprintf(stderr, "ddpm sample -c %s " BASE " %s: the IDX differs from %s at byte %ld\n", ckpt,
                    CASES[i].flags, want, at);
            bad++;
        }
    }
    cli_rmtree(dir);
    if (bad) fail_msg("%d of %d legacy outputs changed", bad, NCASES);
}

/* ---- what the missing metadata means ----------------------------------------- */

/* Copies src to dst with the metadata keys of `put` (key, value pairs, NULL
 * terminated) set: replaced where present, appended otherwise. */
static void copy_with_meta(const char *src, const char *dst, const char *const *put) {
    ddpm_st_file f;
    if (ddpm_st_load(&f, src)) fail_msg("cannot load %s", src);
    int nput = 0;
    while (put[2 * nput]) nput++;
    ddpm_st_meta *meta = calloc((size_t)(f.nmeta + nput), sizeof *meta);
    ddpm_st_entry *e = calloc((size_t)f.ntensors, sizeof *e);
    assert_non_null(meta);
    assert_non_null(e);
    int nm = 0;
    for (int i = 0; i < f.nmeta; i++) {
        bool replaced = false;
        for (int j = 0; j < nput; j++) replaced |= !strcmp(f.meta[i].key, put[2 * j]);
        if (!replaced) meta[nm++] = f.meta[i];
    }
    for (int j = 0; j < nput; j++) meta[nm++] = (ddpm_st_meta){put[2 * j], put[2 * j + 1]};
    for (int i = 0; i < f.ntensors; i++) {
        const ddpm_st_tensor *t = &f.tensors[i];
        e[i] = (ddpm_st_entry){.name = t->name, .ndim = t->ndim, .data = t->data};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    if (ddpm_st_save(dst, e, f.ntensors, meta, nm)) fail_msg("cannot write %s", dst);
    free(meta);
    free(e);
    ddpm_st_free(&f);
}

/* For fixture `name` and its DDIM expected file: a copy with the keys `same`
 * samples the same bytes, a copy with the keys `differ` does not. */
static void check_meta_default(const char *name, const char *const *same, const char *const *differ) {
    char dir[256], src[512], want[512], copy[600];
    cli_tmpdir(dir, sizeof dir);
    data_path(src, sizeof src, "legacy", name, ".safetensors");
    char exp_name[128];
    snprintf(exp_name, sizeof exp_name, "%s.ddim6", name);
    data_path(want, sizeof want, "expected", exp_name, ".idx");
    snprintf(copy, sizeof copy, "%s/copy.safetensors", dir);

    copy_with_meta(src, copy, same);
    long at = first_difference(sample(dir, copy, DDIM6), want);
    if (at >= 0) fail_msg("%s with the defaults written out (%s=%s ...) samples differently (byte %ld)", name,
                          same[0], same[1], at);
    copy_with_meta(src, copy, differ);
    at = first_difference(sample(dir, copy, DDIM6), want);
    if (at < 0) fail_msg("%s with %s=%s samples the same bytes: the expected file does not pin it", name,
                         differ[0], differ[1]);
    cli_rmtree(dir);
}

/* No 'objective' and 'snr_gamma': an eps model (snr_gamma only matters to training). */
static void test_missing_objective_is_eps(void **state) {
    (void)state;
    const char *const same[] = {"objective", "eps", "snr_gamma", "0", NULL};
    const char *const differ[] = {"objective", "v", NULL};
    check_meta_default("ckpt_eps_noobj", same, differ);
}

/* Only the model config: eps, linear schedule, T = 1000. */
static void test_config_only_is_eps_linear_1000(void **state) {
    (void)state;
    const char *const same[] = {"objective", "eps", "schedule", "linear", "timesteps", "1000", NULL};
    const char *const v[] = {"objective", "v", NULL};
    const char *const cosine[] = {"schedule", "cosine", NULL};
    const char *const t500[] = {"timesteps", "500", NULL};
    check_meta_default("torch_nometa", same, v);
    check_meta_default("torch_nometa", same, cosine);
    check_meta_default("torch_nometa", same, t500);
}

/* The fixtures carry the metadata the README says (and the rewrite removed
 * what it should): a checkpoint's keys decide what the pipeline assumes. */
static void test_fixture_metadata(void **state) {
    (void)state;
    static const char *const config[] = {"format", "in_ch", "res", "ch", "ch_mult", "num_res_blocks",
                                         "attn_res", "groups", "dropout", "num_classes"};
    static const char *const absent_noobj[] = {"objective", "snr_gamma"};
    static const char *const absent_torch[] = {"format_version", "objective", "snr_gamma", "data", "step",
                                               "schedule", "timesteps"};
    const char *names[] = {"ckpt_v", "ckpt_eps_noobj", "ckpt_cond", "torch_nometa"};
    for (int k = 0; k < 4; k++) {
        char path[512];
        data_path(path, sizeof path, "legacy", names[k], ".safetensors");
        ddpm_st_file f;
        if (ddpm_st_load(&f, path)) fail_msg("cannot load %s", path);
        for (size_t i = 0; i < sizeof config / sizeof *config; i++)
            if (!ddpm_st_meta_get(&f, config[i])) fail_msg("%s lacks '%s'", path, config[i]);
        if (k == 0) assert_string_equal(ddpm_st_meta_get(&f, "objective"), "v");
        if (k == 2) assert_string_equal(ddpm_st_meta_get(&f, "num_classes"), "10");
        for (size_t i = 0; k == 1 && i < 2; i++)
            if (ddpm_st_meta_get(&f, absent_noobj[i])) fail_msg("%s has '%s'", path, absent_noobj[i]);
        if (k == 3) {
            assert_int_equal(f.nmeta, (int)(sizeof config / sizeof *config));
            for (size_t i = 0; i < sizeof absent_torch / sizeof *absent_torch; i++)
                if (ddpm_st_meta_get(&f, absent_torch[i])) fail_msg("%s has '%s'", path, absent_torch[i]);
        }
        ddpm_st_free(&f);
    }
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "passive", 0); /* as test_cli_sample.c: idle threads sleep */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_metadata),
        cmocka_unit_test(test_legacy_outputs),
        cmocka_unit_test(test_missing_objective_is_eps),
        cmocka_unit_test(test_config_only_is_eps_linear_1000),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
