/* test_checkpoint.c: model checkpoints: bit-exact round trip with training
 * state, and every kind of damaged file rejected with a message naming the
 * file and the problem. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "gradcheck.h"

static char g_dir[256];

static void tiny_config(ddpm_unet_config *c) {
    ddpm_unet_config_default(c);
    c->res = 8;
    c->ch = 8;
    c->num_levels = 2;
    c->ch_mult[0] = 1;
    c->ch_mult[1] = 2;
    c->ch_mult[2] = 0; /* unused levels stay zero, as a loaded config has them */
    c->num_res_blocks = 1;
    c->num_attn = 1;
    c->attn_res[0] = 4;
    c->groups = 4;
    c->num_classes = 3;
}

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* A model with random parameters and the tensor entries of its checkpoint. */
typedef struct {
    ddpm_unet_config cfg;
    ddpm_param_info *table;
    int n;
    size_t total;
    float *params;
    ddpm_st_entry *e;
    ddpm_st_meta meta[11];
    int nmeta;
    char vals[11][32];
} fixture;

static void make_fixture(fixture *f) {
    memset(f, 0, sizeof *f);
    tiny_config(&f->cfg);
    assert_int_equal(ddpm_unet_param_layout(&f->cfg, &f->table, &f->n, &f->total), DDPM_OK);
    f->params = gc_alloc(f->total);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 5);
    gc_fill_normal(&rng, f->params, f->total);
    f->e = calloc((size_t)f->n, sizeof *f->e);
    for (int i = 0; i < f->n; i++) {
        f->e[i].name = f->table[i].name;
        f->e[i].ndim = f->table[i].ndim;
        for (int d = 0; d < f->table[i].ndim; d++) f->e[i].shape[d] = f->table[i].shape[d];
        f->e[i].data = f->params + f->table[i].offset;
    }
    const char *kv[][2] = {{"format", "ddpm"}, {"format_version", "1"}, {"in_ch", "1"}, {"res", "8"},
                           {"ch", "8"}, {"ch_mult", "1,2"}, {"num_res_blocks", "1"}, {"attn_res", "4"},
                           {"groups", "4"}, {"dropout", "0"}, {"num_classes", "3"}};
    f->nmeta = 11;
    for (int i = 0; i < f->nmeta; i++) f->meta[i] = (ddpm_st_meta){kv[i][0], kv[i][1]};
}

static void free_fixture(fixture *f) {
    free(f->table);
    free(f->e);
    ddpm_free(f->params);
}

/* Opening `path` must fail with a message naming it and containing `what`. */
static void expect_reject(const char *path, const char *what) {
    ddpm_checkpoint ck;
    ddpm_status s = ddpm_checkpoint_open(&ck, path);
    const char *msg = ddpm_last_error();
    printf("rejected: %s\n", msg);
    if (s == DDPM_OK) fail_msg("'%s' was accepted; expected an error about '%s'", path, what);
    if (!strstr(msg, path)) fail_msg("message does not name the file: %s", msg);
    if (!strstr(msg, what)) fail_msg("message does not say '%s': %s", what, msg);
    if (strchr(msg, '\n')) fail_msg("message is not one line: %s", msg);
}

static void test_round_trip(void **state) {
    (void)state;
    ddpm_unet_config c;
    tiny_config(&c);
    c.dropout = 0.25f;
    ddpm_unet *m;
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 42);
    size_t n = ddpm_unet_num_params(m);
    float *ema = gc_alloc(n), *am = gc_alloc(n), *av = gc_alloc(n), *back = gc_alloc(n);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    gc_fill_normal(&rng, ema, n);
    gc_fill_normal(&rng, am, n);
    gc_fill_uniform(&rng, av, n, 0, 1);
    ema[0] = -0.0f; /* sign of zero survives */
    ddpm_st_meta extra[] = {{"step", "1234"}, {"schedule", "cosine"}, {"note", "a \"quoted\" value"}};
    ddpm_checkpoint_extras x = {.ema = ema, .adam_m = am, .adam_v = av, .extra = extra, .nextra = 3};
    const char *p = path_of("rt.safetensors");
    assert_int_equal(ddpm_checkpoint_save(p, &c, ddpm_unet_params(m), &x), DDPM_OK);

    ddpm_checkpoint ck;
    assert_int_equal(ddpm_checkpoint_open(&ck, p), DDPM_OK);
    assert_memory_equal(&ck.cfg, &c, sizeof c);
    assert_true(ck.has_ema && ck.has_adam);
    assert_int_equal(ck.total, n);
    assert_int_equal(ddpm_checkpoint_read(&ck, "", back), DDPM_OK);
    assert_memory_equal(back, ddpm_unet_params(m), n * sizeof(float));
    assert_int_equal(ddpm_checkpoint_read(&ck, "ema.", back), DDPM_OK);
    assert_memory_equal(back, ema, n * sizeof(float));
    assert_int_equal(ddpm_checkpoint_read(&ck, "adam_m.", back), DDPM_OK);
    assert_memory_equal(back, am, n * sizeof(float));
    assert_int_equal(ddpm_checkpoint_read(&ck, "adam_v.", back), DDPM_OK);
    assert_memory_equal(back, av, n * sizeof(float));
    assert_string_equal(ddpm_checkpoint_meta(&ck, "step"), "1234");
    assert_string_equal(ddpm_checkpoint_meta(&ck, "note"), "a \"quoted\" value");
    assert_string_equal(ddpm_checkpoint_meta(&ck, "ch_mult"), "1,2");
    ddpm_checkpoint_close(&ck);

    /* model only, no attention anywhere */
    c.num_attn = 0;
    ddpm_unet_free(m);
    assert_int_equal(ddpm_unet_create(&m, &c, 1, false), DDPM_OK);
    ddpm_unet_init_params(m, 43);
    p = path_of("plain.safetensors");
    assert_int_equal(ddpm_checkpoint_save(p, &c, ddpm_unet_params(m), NULL), DDPM_OK);
    assert_int_equal(ddpm_checkpoint_open(&ck, p), DDPM_OK);
    assert_false(ck.has_ema || ck.has_adam);
    assert_int_equal(ck.cfg.num_attn, 0);
    assert_string_equal(ddpm_checkpoint_meta(&ck, "attn_res"), "none");
    ddpm_checkpoint_close(&ck);

    /* reserved metadata keys are refused */
    ddpm_st_meta bad[] = {{"ch", "9"}};
    ddpm_checkpoint_extras bx = {.extra = bad, .nextra = 1};
    assert_int_equal(ddpm_checkpoint_save(path_of("bad.safetensors"), &c, ddpm_unet_params(m), &bx), DDPM_ERR_ARG);
    assert_false(cli_exists(path_of("bad.safetensors")));

    ddpm_unet_free(m);
    ddpm_free(ema);
    ddpm_free(am);
    ddpm_free(av);
    ddpm_free(back);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void test_damaged_files(void **state) {
    (void)state;
    fixture f;
    make_fixture(&f);
    const char *good = path_of("good.safetensors");
    assert_int_equal(ddpm_st_save(good, f.e, f.n, f.meta, f.nmeta), DDPM_OK);
    ddpm_checkpoint ck;
    assert_int_equal(ddpm_checkpoint_open(&ck, good), DDPM_OK);
    ddpm_checkpoint_close(&ck);
    size_t n;
    char *bytes = read_all(good, &n);

    /* 1. truncated */
    const char *p = path_of("truncated.safetensors");
    write_bytes(p, bytes, n - 10);
    expect_reject(p, "'");
    /* 2. garbage header */
    char *g = malloc(n);
    memcpy(g, bytes, n);
    memcpy(g + 8, "garbage!!!", 10);
    p = path_of("garbage.safetensors");
    write_bytes(p, g, n);
    expect_reject(p, "JSON");
    /* 3. huge header length */
    memcpy(g, bytes, n);
    memset(g, 0xff, 8);
    p = path_of("huge.safetensors");
    write_bytes(p, g, n);
    expect_reject(p, "header length");
    /* 4. shorter than the length field */
    p = path_of("tiny.safetensors");
    write_bytes(p, bytes, 5);
    expect_reject(p, "'");
    free(g);
    free(bytes);

    /* 5. wrong shape (same element count) */
    ddpm_st_entry *e = calloc((size_t)f.n + 1, sizeof *e);
    memcpy(e, f.e, (size_t)f.n * sizeof *e);
    int ci = -1;
    for (int i = 0; i < f.n; i++)
        if (!strcmp(e[i].name, "conv_in.weight")) ci = i;
    assert_true(ci >= 0);
    e[ci].ndim = 2;
    e[ci].shape[0] = 8;
    e[ci].shape[1] = 9;
    p = path_of("shape.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "conv_in.weight' has shape [8,9], the config implies [8,1,3,3]");
    memcpy(e, f.e, (size_t)f.n * sizeof *e);
    /* the same rank and first dimension, the other dimensions permuted */
    e[ci].shape[1] = 3;
    e[ci].shape[2] = 1;
    assert_int_equal(ddpm_st_save(p, e, f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "conv_in.weight' has shape [8,3,1,3], the config implies [8,1,3,3]");
    memcpy(e, f.e, (size_t)f.n * sizeof *e);

    /* 6. missing tensor */
    p = path_of("missing.safetensors");
    assert_int_equal(ddpm_st_save(p, e + 1, f.n - 1, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "missing tensor 'temb.dense.0.weight'");

    /* 7. unexpected tensor */
    static const float one = 1.0f;
    e[f.n] = (ddpm_st_entry){.name = "extra.weight", .ndim = 1, .shape = {1}, .data = &one};
    p = path_of("unexpected.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n + 1, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "unexpected tensor 'extra.weight'");

    /* 8. non-finite value */
    float saved = f.params[7];
    f.params[7] = NAN;
    p = path_of("nan.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "non-finite");
    f.params[7] = saved;

    /* 9. no ddpm metadata (e.g. an unrelated safetensors file) */
    p = path_of("nometa.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n, NULL, 0), DDPM_OK);
    expect_reject(p, "not a ddpm checkpoint");

    /* 10. malformed and inconsistent config */
    ddpm_st_meta meta[11];
    memcpy(meta, f.meta, sizeof meta);
    meta[4].value = "eight";
    p = path_of("badcfg.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n, meta, f.nmeta), DDPM_OK);
    expect_reject(p, "metadata 'ch' is not an integer");
    memcpy(meta, f.meta, sizeof meta);
    meta[8].value = "3"; /* 8 channels in 3 groups */
    assert_int_equal(ddpm_st_save(p, e, f.n, meta, f.nmeta), DDPM_OK);
    expect_reject(p, "invalid model config");
    memcpy(meta, f.meta, sizeof meta);
    meta[4].value = "16"; /* a different width: every shape is off */
    assert_int_equal(ddpm_st_save(p, e, f.n, meta, f.nmeta), DDPM_OK);
    expect_reject(p, "has shape");

    /* 11. one Adam moment without the other */
    ddpm_st_entry *e2 = calloc(2 * (size_t)f.n, sizeof *e2);
    char (*names)[80] = calloc((size_t)f.n, sizeof *names);
    memcpy(e2, f.e, (size_t)f.n * sizeof *e2);
    for (int i = 0; i < f.n; i++) {
        e2[f.n + i] = f.e[i];
        snprintf(names[i], sizeof names[i], "adam_m.%s", f.e[i].name);
        e2[f.n + i].name = names[i];
    }
    p = path_of("adam.safetensors");
    assert_int_equal(ddpm_st_save(p, e2, 2 * f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "adam_v");
    /* 12. a partial EMA set */
    for (int i = 0; i < f.n; i++) snprintf(names[i], sizeof names[i], "ema.%s", f.e[i].name);
    assert_int_equal(ddpm_st_save(p, e2, 2 * f.n - 1, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "missing tensor 'ema.");

    /* 13. offsets out of range, hand-written */
    const char *hdr = "{\"__metadata__\":{\"format\":\"ddpm\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4000]}}";
    size_t hl = strlen(hdr);
    char buf[512];
    uint64_t hl64 = hl;
    memcpy(buf, &hl64, 8); /* little-endian host */
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, 0, 8);
    p = path_of("offsets.safetensors");
    write_bytes(p, buf, 8 + hl + 8);
    expect_reject(p, "'");

    /* 15. found by fuzz_checkpoint: a tensor name holding a newline ("temb.d\nse.1.weight",
     * written in the JSON as \n) made a two-line message; a long name or metadata value
     * made one longer than a line. Names and values are now shown printable and cut. */
    memcpy(e, f.e, (size_t)f.n * sizeof *e);
    e[0].name = "temb.d\nse.1.weight";
    p = path_of("newline.safetensors");
    assert_int_equal(ddpm_st_save(p, e, f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "unexpected tensor 'temb.d?se.1.weight'");
    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    e[0].name = longname;
    assert_int_equal(ddpm_st_save(p, e, f.n, f.meta, f.nmeta), DDPM_OK);
    expect_reject(p, "unexpected tensor 'xxxxxxxxxx");
    assert_true(strlen(ddpm_last_error()) < 200);
    assert_non_null(strstr(ddpm_last_error(), "...'"));
    e[0].name = f.e[0].name;
    memcpy(meta, f.meta, sizeof meta);
    meta[4].value = "8\n9";
    assert_int_equal(ddpm_st_save(p, e, f.n, meta, f.nmeta), DDPM_OK);
    expect_reject(p, "metadata 'ch' is not an integer: '8?9'");
    meta[4].value = f.meta[4].value;
    meta[0].value = longname; /* 'format' */
    assert_int_equal(ddpm_st_save(p, e, f.n, meta, f.nmeta), DDPM_OK);
    expect_reject(p, "not a ddpm checkpoint (metadata 'format' is 'xxxxxxxx");
    assert_true(strlen(ddpm_last_error()) < 200);

    /* 14. a file that does not exist */
    expect_reject(path_of("nope.safetensors"), "No such file");

    free(names);
    free(e2);
    free(e);
    free_fixture(&f);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
