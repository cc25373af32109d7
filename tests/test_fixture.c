/* test_fixture.c: the fixture reader (tests/fixture.c) on the committed UNet
 * fixtures, and its rejection of corrupt copies written to /tmp. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, unlink */
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

#include "fixture.h"

/* ---- helpers ---------------------------------------------------------------- */

static void load_ok(fx_file *f, const char *name) {
    char path[4096], err[512];
    assert_int_equal(fx_data_path(path, sizeof path, name), 0);
    int rc = fx_load(f, path, err, sizeof err);
    if (rc) fail_msg("fx_load: %s", err);
    assert_int_equal(f->version, FX_VERSION);
}

/* Raw bytes of a fixture, to corrupt. */
static unsigned char *read_raw(const char *name, size_t *len) {
    char path[4096];
    assert_int_equal(fx_data_path(path, sizeof path, name), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n > 16);
    rewind(fp);
    unsigned char *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* Writes buf[0, len) to a temporary file in /tmp and expects fx_load to fail
 * with a message containing `want`. */
static void expect_reject(const unsigned char *buf, size_t len, const char *want) {
    char path[] = "/tmp/ddpm_fixture_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);

    fx_file f;
    char err[512];
    int rc = fx_load(&f, path, err, sizeof err);
    unlink(path);
    if (rc == 0) {
        fx_free(&f);
        fail_msg("fx_load accepted a corrupt file (%zu bytes, expected '%s')", len, want);
    }
    assert_int_equal(f.n, 0);
    assert_null(f.e);
    if (want && !strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
    fx_free(&f); /* harmless on a failed load */
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Shared checks of a UNet fixture: entries, shapes, pairs, loss. Returns the
 * number of parameters (sum of param.* sizes). */
static size_t check_unet_fixture(const fx_file *f, int N, int C, int R, int num_classes) {
    int v, mult[8], attn[8];
    double dropout;
    assert_int_equal(fx_config_int(f, "in_ch", &v), 0);
    assert_int_equal(v, C);
    assert_int_equal(fx_config_int(f, "res", &v), 0);
    assert_int_equal(v, R);
    assert_int_equal(fx_config_int(f, "ch", &v), 0);
    assert_int_equal(v, 8);
    assert_int_equal(fx_config_ints(f, "ch_mult", mult, 8), 2);
    assert_int_equal(mult[0], 1);
    assert_int_equal(mult[1], 2);
    assert_int_equal(fx_config_int(f, "num_res_blocks", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(fx_config_ints(f, "attn_res", attn, 8), 1);
    assert_int_equal(attn[0], R / 2);
    assert_int_equal(fx_config_int(f, "groups", &v), 0);
    assert_int_equal(fx_config_double(f, "dropout", &dropout), 0);
    assert_true(dropout == 0.0);
    assert_int_equal(fx_config_int(f, "num_classes", &v), 0);
    assert_int_equal(v, num_classes);
    assert_int_equal(fx_config_int(f, "no_such_key", &v), -1);
    assert_int_equal(fx_config_int(f, "ch_mult", &v), -1); /* a list is not one int */

    size_t nx = (size_t)N * C * R * R;
    const fx_entry *x = fx_get(f, "x", FX_F32);
    assert_non_null(x);
    assert_int_equal(x->ndim, 4);
    assert_int_equal(x->dims[0], N);
    assert_int_equal(x->dims[1], C);
    assert_int_equal(x->dims[2], R);
    assert_int_equal(x->dims[3], R);
    assert_int_equal(x->numel, nx);
    const fx_entry *t = fx_get(f, "t", FX_I32);
    assert_non_null(t);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->dims[0], N);
    for (int n = 0; n < N; n++) {
        int32_t tn = ((const int32_t *)t->data)[n];
        assert_true(tn >= 0 && tn < 1000);
    }
    const fx_entry *lab = fx_get(f, "labels", FX_I32);
    if (num_classes > 0) {
        assert_non_null(lab);
        assert_int_equal(lab->numel, N);
        int has_null = 0;
        for (int n = 0; n < N; n++) {
            int32_t l = ((const int32_t *)lab->data)[n];
            assert_true(l >= 0 && l <= num_classes);
            has_null |= l == num_classes;
        }
        assert_true(has_null);
    } else {
        assert_null(fx_find(f, "labels"));
    }

    const float *noise = fx_f32(f, "noise", nx), *out = fx_f32(f, "out", nx);
    const float *loss = fx_f32(f, "loss", 1), *gx = fx_f32(f, "grad_input.x", nx);
    assert_non_null(noise);
    assert_non_null(out);
    assert_non_null(loss);
    assert_non_null(gx);
    assert_null(fx_f32(f, "out", nx + 1)); /* size mismatch is refused */
    assert_null(fx_get(f, "out", FX_I32)); /* dtype mismatch is refused */
    assert_null(fx_find(f, "param.no.such.tensor"));

    /* loss = mean((out - noise)^2), and grad_input.x is not all zero */
    double l = 0, gmax = 0;
    for (size_t i = 0; i < nx; i++) {
        double d = (double)out[i] - noise[i];
        l += d * d;
        gmax = fmax(gmax, fabs(gx[i]));
    }
    l /= (double)nx;
    assert_true(isfinite(loss[0]) && loss[0] > 0);
    assert_true(fabs(l - loss[0]) <= 1e-5 * loss[0]);
    assert_true(gmax > 0);

    /* every param.K has a grad.K of the same shape, and some of it is nonzero */
    size_t nparams = 0;
    int npairs = 0;
    for (int i = 0; i < f->n; i++) {
        const fx_entry *p = &f->e[i];
        if (strncmp(p->name, "param.", 6) != 0) continue;
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", p->name + 6);
        const fx_entry *g = fx_get(f, gname, FX_F32);
        if (!g) fail_msg("missing %s", gname);
        assert_int_equal(p->dtype, FX_F32);
        assert_int_equal(g->ndim, p->ndim);
        for (int d = 0; d < p->ndim; d++) assert_int_equal(g->dims[d], p->dims[d]);
        assert_int_equal(g->numel, p->numel);
        double m = 0;
        for (size_t k = 0; k < g->numel; k++) m = fmax(m, fabs(((const float *)g->data)[k]));
        if (!(m > 0)) fail_msg("%s is all zero", gname);
        nparams += p->numel;
        npairs++;
    }
    /* config, x, t, [labels], noise, out, loss, grad_input.x, and the pairs */
    assert_int_equal(f->n, 7 + (num_classes > 0) + 2 * npairs);
    /* the first tensor of the state_dict, and up[0] listed before up[1] */
    assert_string_equal(f->e[6 + (num_classes > 0)].name, "param.temb.dense.0.weight");
    const fx_entry *up0 = fx_find(f, "param.up.0.block.0.norm1.weight");
    const fx_entry *up1 = fx_find(f, "param.up.1.block.0.norm1.weight");
    assert_non_null(up0);
    assert_non_null(up1);
    assert_true(up0 < up1);
    return nparams;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_load_unet_tiny(void **state) {
    (void)state;
    fx_file f;
    load_ok(&f, "unet_tiny.fix");
    size_t np = check_unet_fixture(&f, 2, 1, 16, 0);
    assert_int_equal(np, 44969); /* scripts/torch_reference.py's count */
    const fx_entry *t = fx_find(&f, "t");
    assert_int_equal(((const int32_t *)t->data)[0], 3);
    assert_int_equal(((const int32_t *)t->data)[1], 917);
    const fx_entry *w = fx_get(&f, "param.conv_in.weight", FX_F32);
    assert_non_null(w);
    assert_int_equal(w->ndim, 4);
    assert_int_equal(w->dims[0], 8);
    assert_int_equal(w->dims[1], 1);
    assert_int_equal(w->dims[2], 3);
    assert_int_equal(w->dims[3], 3);
    assert_int_equal((uintptr_t)w->data % sizeof(float), 0);
    const fx_entry *cfg = fx_get(&f, "config", FX_TEXT);
    assert_non_null(cfg);
    assert_int_equal(strlen(cfg->data), cfg->numel); /* NUL-terminated copy */
    fx_free(&f);
    assert_int_equal(f.n, 0);
    assert_null(f.e);
}

static void test_load_unet_tiny_cond(void **state) {
    (void)state;
    fx_file f;
    load_ok(&f, "unet_tiny_cond.fix");
    size_t np = check_unet_fixture(&f, 3, 3, 8, 3);
    assert_int_equal(np, 45387);
    const fx_entry *emb = fx_get(&f, "param.label_emb.weight", FX_F32);
    assert_non_null(emb);
    assert_int_equal(emb->ndim, 2);
    assert_int_equal(emb->dims[0], 4); /* num_classes + 1 */
    assert_int_equal(emb->dims[1], 32);
    fx_free(&f);
}

static void test_reject_missing_file(void **state) {
    (void)state;
    fx_file f;
    char err[512];
    assert_int_equal(fx_load(&f, "/tmp/ddpm_fixture_does_not_exist.fix", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(f.n, 0);
    fx_free(&f);
}

static void test_reject_bad_header(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = read_raw("unet_tiny_cond.fix", &len);

    buf[0] = 'X';
    expect_reject(buf, len, "bad magic");
    buf[0] = 'D';
    buf[7] = '1';
    expect_reject(buf, len, "bad magic");
    buf[7] = '\0';

    put32(buf + 8, 2);
    expect_reject(buf, len, "unsupported version 2");
    put32(buf + 8, 0);
    expect_reject(buf, len, "unsupported version 0");
    put32(buf + 8, FX_VERSION);

    uint32_t count = (uint32_t)buf[12] | (uint32_t)buf[13] << 8;
    put32(buf + 12, 0xFFFFFFFFu);
    expect_reject(buf, len, "count");
    put32(buf + 12, count + 1); /* one entry more than the file holds */
    expect_reject(buf, len, "truncated");
    put32(buf + 12, count - 1); /* the last entry becomes trailing garbage */
    expect_reject(buf, len, "trailing");
    put32(buf + 12, count);

    /* the first entry is "config": u16 name_len at 16, name at 18, dtype at 24,
     * ndim at 25, dims[0] at 26 */
    assert_int_equal(buf[16], 6);
    assert_memory_equal(buf + 18, "config", 6);
    buf[24] = 7;
    expect_reject(buf, len, "unknown dtype");
    buf[24] = FX_TEXT;
    buf[25] = 9;
    expect_reject(buf, len, "ndim");
    buf[25] = 1;
    unsigned char d0[4];
    memcpy(d0, buf + 26, 4);
    put32(buf + 26, 0xFFFFFFFFu);
    expect_reject(buf, len, "dim too large");
    put32(buf + 26, 0x7FFFFFFFu);
    expect_reject(buf, len, "past the end");
    memcpy(buf + 26, d0, 4);
    buf[16] = 0;
    buf[17] = 0;
    expect_reject(buf, len, "empty name");
    buf[16] = 0xFF;
    buf[17] = 0xFF;
    expect_reject(buf, len, NULL);
    buf[16] = 6;
    buf[17] = 0;

    /* renaming the second entry to "config" duplicates a name */
    size_t second = 26 + 4 + (size_t)buf[26];
    assert_int_equal(buf[second], 1); /* "x" */
    assert_int_equal(buf[second + 2], 'x');
    buf[second + 2] = 'y';
    { /* still valid after renaming to an unused name */
        char path[] = "/tmp/ddpm_fixture_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        close(fd);
        fx_file f;
        char err[512];
        int rc = fx_load(&f, path, err, sizeof err);
        unlink(path);
        if (rc) fail_msg("%s", err);
        assert_non_null(fx_find(&f, "y"));
        assert_null(fx_find(&f, "x"));
        fx_free(&f);
    }
    /* make the "x" entry a duplicate "t": same length name */
    buf[second + 2] = 't';
    expect_reject(buf, len, "duplicate");
    buf[second + 2] = 'x';

    unsigned char *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    expect_reject(longer, len + 1, "trailing");
    free(longer);
    free(buf);
}

static void test_reject_truncated(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = read_raw("unet_tiny.fix", &len);
    /* every prefix of the first 300 bytes (header, config text, x's dims and
     * data), then some in the middle and at the very end */
    for (size_t cut = 0; cut < 300; cut++) expect_reject(buf, cut, NULL);
    size_t cuts[] = {len / 3, len / 2, len / 2 + 1, len - 5, len - 4, len - 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) expect_reject(buf, cuts[i], NULL);
    expect_reject(buf, len - 1, "past the end");
    expect_reject(buf, 10, "truncated header");
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_unet_tiny),
        cmocka_unit_test(test_load_unet_tiny_cond),
        cmocka_unit_test(test_reject_missing_file),
        cmocka_unit_test(test_reject_bad_header),
        cmocka_unit_test(test_reject_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
