/* test_safetensors.c: round trips, byte-exact PyTorch files, every kind of
 * damaged file, random corruption, and atomic saving. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddpm/rng.h"
#include "ddpm/safetensors.h"

/* ---- helpers ----------------------------------------------------------------- */

static char g_dir[64]; /* the mkdtemp directory every test writes into */

static const char *in_dir(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len) assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* 8-byte little-endian `hlen`, the header text, then `dlen` data bytes. */
static size_t build(unsigned char *out, uint64_t hlen, const char *header, const void *data, size_t dlen) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(hlen >> (8 * i));
    size_t n = strlen(header);
    memcpy(out + 8, header, n);
    if (dlen) memcpy(out + 8 + n, data, dlen);
    return 8 + n + dlen;
}

/* Little-endian bytes of 1.0f, 2.0f, 3.0f, ... (host independent). */
static const unsigned char k_data[32] = {
    0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40,
    0, 0, 0xa0, 0x40, 0, 0, 0xc0, 0x40, 0, 0, 0xe0, 0x40, 0, 0, 0, 0x41,
};

static int dir_has_tmp(void) {
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) found = 1;
    closedir(d);
    return found;
}

/* The message names the file, says `needle`, and is one line. */
static void check_message(const char *path, const char *needle) {
    const char *msg = ddpm_last_error();
    printf("    rejected: %s\n", msg);
    assert_non_null(strstr(msg, path));
    if (!strstr(msg, needle)) fail_msg("message '%s' lacks '%s'", msg, needle);
    assert_null(strchr(msg, '\n'));
}

/* Writes the bytes as `name`, expects ddpm_st_load to fail with `status`. */
static void expect_fail(const char *name, const void *bytes, size_t len, ddpm_status status, const char *needle) {
    const char *path = in_dir(name);
    write_bytes(path, bytes, len);
    ddpm_st_file f;
    ddpm_clear_error();
    assert_int_equal(ddpm_st_load(&f, path), status);
    check_message(path, needle);
    assert_null(f.tensors); /* left empty */
    assert_int_equal(f.ntensors, 0);
    ddpm_st_free(&f);
    unlink(path);
}

/* Same with a header whose length field is its true length. */
static void expect_fail_hdr(const char *name, const char *header, size_t dlen, const char *needle) {
    unsigned char buf[4096];
    size_t n = build(buf, strlen(header), header, k_data, dlen);
    expect_fail(name, buf, n, DDPM_ERR_FORMAT, needle);
}

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/ddpm_test_st_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        const char *p = in_dir(e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    return rmdir(g_dir);
}

/* ---- round trip ----------------------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 42);
    static float w[4 * 3 * 3 * 5], b[7], special[8], scalar[1];
    ddpm_rng_fill_normal(&rng, w, sizeof w / sizeof *w);
    ddpm_rng_fill_normal(&rng, b, 7);
    uint32_t bits[8] = {0x7fc00001u /* NaN with payload */, 0x80000000u /* -0 */, 0x7f800000u /* inf */,
                        0xff800000u, 0x00000001u /* denormal */, 0x7f7fffffu, 0x3f800000u, 0xbf800000u};
    memcpy(special, bits, sizeof bits);
    scalar[0] = 3.25f;
    ddpm_st_entry t[] = {
        {"down.0.conv.weight", 4, {4, 3, 3, 5}, w},
        {"ema.down.0.conv.bias", 1, {7}, b},
        {"we\"ird\\name\n\x01 \xc3\xa9\xf0\x9f\x98\x80", 2, {2, 4}, special},
        {"scalar", 0, {0}, scalar},
        {"empty", 1, {0}, NULL},
        {"empty2", 3, {2, 0, 3}, NULL},
    };
    int nt = (int)(sizeof t / sizeof *t);
    ddpm_st_meta meta[] = {
        {"config", "{\"ch\": 32, \"ch_mult\": [1,2,2]}"},
        {"step", "1234"},
        {"tab\tkey", "line1\nline2\\ \xc3\xa9 \x1f"},
        {"empty", ""},
    };
    const char *path = in_dir("round.safetensors");
    assert_int_equal(ddpm_st_save(path, t, nt, meta, 4), DDPM_OK);
    assert_false(dir_has_tmp());

    /* header padded to a multiple of 8, metadata first */
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{", 17);
    assert_int_equal(len, 8 + hlen + sizeof w + sizeof b + sizeof special + sizeof scalar);
    free(raw);

    ddpm_st_file f;
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_int_equal(f.ntensors, nt);
    for (int i = 0; i < nt; i++) { /* header order kept */
        const ddpm_st_tensor *lt = &f.tensors[i];
        assert_string_equal(lt->name, t[i].name);
        assert_ptr_equal(ddpm_st_find(&f, t[i].name), lt);
        assert_int_equal(lt->ndim, t[i].ndim);
        size_t numel = 1;
        for (int d = 0; d < lt->ndim; d++) {
            assert_int_equal(lt->shape[d], t[i].shape[d]);
            numel *= (size_t)t[i].shape[d];
        }
        assert_int_equal(lt->numel, numel);
        assert_int_equal((uintptr_t)lt->data % 4, 0);
        if (numel) assert_memory_equal(lt->data, t[i].data, numel * 4); /* bit-identical */
    }
    assert_null(ddpm_st_find(&f, "missing"));
    assert_null(ddpm_st_find(&f, ""));
    assert_int_equal(f.nmeta, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(f.meta[i].key, meta[i].key);
        assert_string_equal(f.meta[i].value, meta[i].value);
        assert_string_equal(ddpm_st_meta_get(&f, meta[i].key), meta[i].value);
    }
    assert_null(ddpm_st_meta_get(&f, "nope"));
    ddpm_st_free(&f);
    ddpm_st_free(&f); /* idempotent */

    /* no metadata, no tensors */
    assert_int_equal(ddpm_st_save(path, NULL, 0, NULL, 0), DDPM_OK);
    raw = read_bytes(path, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(raw + 8, "{}      ", 8);
    free(raw);
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_int_equal(f.ntensors, 0);
    assert_int_equal(f.nmeta, 0);
    assert_null(ddpm_st_meta_get(&f, "step"));
    ddpm_st_free(&f);
}

/* ---- files as PyTorch's safetensors writes them ------------------------------------ */

static void test_pytorch_bytes(void **state) {
    (void)state;
    unsigned char buf[256];
    ddpm_st_file f;
    /* safetensors.torch.save_file({"a": torch.tensor([1., 2.])}) */
    const char *h1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    size_t n = build(buf, strlen(h1), h1, k_data, 8);
    assert_int_equal(strlen(h1) % 8, 0);
    const char *path = in_dir("torch.safetensors");
    write_bytes(path, buf, n);
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_int_equal(f.ntensors, 1);
    const ddpm_st_tensor *a = ddpm_st_find(&f, "a");
    assert_non_null(a);
    assert_int_equal(a->ndim, 1);
    assert_int_equal(a->shape[0], 2);
    assert_true(a->data[0] == 1.0f && a->data[1] == 2.0f);
    ddpm_st_free(&f);

    /* our writer produces the same bytes */
    float v[2] = {1.0f, 2.0f};
    ddpm_st_entry e = {"a", 1, {2}, v};
    const char *path2 = in_dir("ours.safetensors");
    assert_int_equal(ddpm_st_save(path2, &e, 1, NULL, 0), DDPM_OK);
    size_t len;
    unsigned char *raw = read_bytes(path2, &len);
    assert_int_equal(len, n);
    assert_memory_equal(raw, buf, n);
    free(raw);

    /* save_file(..., metadata={"format": "pt"}) */
    const char *h2 = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ";
    n = build(buf, strlen(h2), h2, k_data, 8);
    write_bytes(path, buf, n);
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_string_equal(ddpm_st_meta_get(&f, "format"), "pt");
    assert_true(ddpm_st_find(&f, "a")->data[1] == 2.0f);
    ddpm_st_free(&f);
    ddpm_st_meta m = {"format", "pt"};
    assert_int_equal(ddpm_st_save(path2, &e, 1, &m, 1), DDPM_OK);
    raw = read_bytes(path2, &len);
    assert_int_equal(len, n);
    assert_memory_equal(raw, buf, n);
    free(raw);

    /* other writers: pretty-printed, other field order, escapes, tensors out of data order */
    const char *h3 =
        "\n{ \"b\\u00e9\\n\\ud83d\\ude00\\/\" : { \"shape\" : [ 1, 2 ], \"data_offsets\" : [ 8, 16 ], \"dtype\" : \"F32\" },\r\n"
        "\t\"c\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [4, 8]},"
        "  \"d\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]} }\n";
    n = build(buf, strlen(h3), h3, k_data, 16);
    write_bytes(path, buf, n);
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_int_equal(f.ntensors, 3);
    const ddpm_st_tensor *b = ddpm_st_find(&f, "b\xc3\xa9\n\xf0\x9f\x98\x80/");
    assert_non_null(b);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->numel, 2);
    assert_true(b->data[0] == 3.0f && b->data[1] == 4.0f);
    const ddpm_st_tensor *c = ddpm_st_find(&f, "c");
    assert_int_equal(c->ndim, 0);
    assert_int_equal(c->numel, 1);
    assert_true(c->data[0] == 2.0f);
    assert_true(ddpm_st_find(&f, "d")->data[0] == 1.0f);
    ddpm_st_free(&f);
}

/* ---- damaged files ---------------------------------------------------------------- */

static void test_damaged_files(void **state) {
    (void)state;
    unsigned char buf[4096];
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t n = build(buf, strlen(good), good, k_data, 8);

    /* sizes */
    expect_fail("empty", buf, 0, DDPM_ERR_FORMAT, "too short");
    expect_fail("short", buf, 5, DDPM_ERR_FORMAT, "too short");
    expect_fail("trunc_data", buf, n - 1, DDPM_ERR_FORMAT, "exceed the data buffer of 7 bytes");
    expect_fail("trunc_header", buf, 30, DDPM_ERR_FORMAT, "header length 54 exceeds file size 30");
    n = build(buf, UINT64_MAX, good, k_data, 8);
    expect_fail("huge_header", buf, n, DDPM_ERR_FORMAT, "header length 18446744073709551615 exceeds file size 70");
    n = build(buf, strlen(good) + 8, good, k_data, 8); /* length covers the data too */
    expect_fail("header_len_plus", buf, n, DDPM_ERR_FORMAT, "malformed JSON header");
    {
        ddpm_st_file f;
        const char *path = in_dir("does_not_exist.safetensors");
        assert_int_equal(ddpm_st_load(&f, path), DDPM_ERR_IO);
        check_message(path, "No such file or directory");
        assert_int_equal(ddpm_st_load(&f, g_dir), DDPM_ERR_IO);
        check_message(g_dir, "not a regular file");
    }
    {   /* a header over the 100 MB cap in a (sparse) file that really is that long */
        const char *path = in_dir("sparse");
        uint64_t big = DDPM_ST_MAX_HEADER + 1;
        n = build(buf, big, good, NULL, 0);
        write_bytes(path, buf, n);
        assert_int_equal(truncate(path, (off_t)(8 + big)), 0);
        ddpm_st_file f;
        assert_int_equal(ddpm_st_load(&f, path), DDPM_ERR_FORMAT);
        check_message(path, "header length 104857601 exceeds the limit of 104857600 bytes");
        unlink(path);
    }

    /* JSON syntax */
    expect_fail_hdr("garbage", "this is not json", 0, "malformed JSON header at byte 0: unexpected character");
    expect_fail_hdr("binary", "\x01\x02\x03\xff\xfe", 0, "malformed JSON header");
    expect_fail_hdr("unterminated", "{\"a\":{\"dtype\":\"F32", 0, "unterminated string");
    expect_fail_hdr("missing_colon", "{\"a\" {}}", 0, "expected ':'");
    expect_fail_hdr("trailing_comma", "{\"a\":{\"dtype\":\"F32\",}}", 0, "expected a string key");
    expect_fail_hdr("trailing_garbage", "{} x", 0, "trailing characters");
    expect_fail_hdr("two_values", "{}{}", 0, "trailing characters");
    n = build(buf, 8, "{}", NULL, 0); /* NUL padding is not whitespace */
    memset(buf + n, 0, 6);
    expect_fail("nul_padding", buf, n + 6, DDPM_ERR_FORMAT, "at byte 2: trailing characters");
    expect_fail_hdr("bad_escape", "{\"a\\x\":{}}", 0, "bad escape");
    expect_fail_hdr("bad_u", "{\"a\\u12G4\":{}}", 0, "bad \\u escape");
    expect_fail_hdr("lone_surrogate", "{\"a\\ud800\":{}}", 0, "unpaired surrogate");
    expect_fail_hdr("lone_low", "{\"a\\udc00x\":{}}", 0, "unpaired surrogate");
    expect_fail_hdr("u0000", "{\"a\\u0000\":{}}", 0, "\\u0000");
    expect_fail_hdr("ctrl_in_string", "{\"a\tb\":{}}", 0, "control character");
    expect_fail_hdr("bad_utf8", "{\"a\xff\":{}}", 0, "invalid UTF-8");
    expect_fail_hdr("overlong_utf8", "{\"a\xc0\xaf\":{}}", 0, "invalid UTF-8");
    expect_fail_hdr("surrogate_utf8", "{\"a\xed\xa0\x80\":{}}", 0, "invalid UTF-8");
    expect_fail_hdr("leading_zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero");
    expect_fail_hdr("bad_literal", "{\"__metadata__\":{\"k\":tru}}", 0, "unexpected character");
    expect_fail_hdr("not_object", "[1, 2]", 0, "header is not a JSON object");
    expect_fail_hdr("string_root", "\"a\"", 0, "header is not a JSON object");
    {   /* deep nesting: 100000 '[' */
        size_t depth = 100000;
        char *deep = malloc(depth * 2 + 64);
        strcpy(deep, "{\"__metadata__\":{\"k\":");
        size_t k = strlen(deep);
        memset(deep + k, '[', depth);
        memset(deep + k + depth, ']', depth);
        strcpy(deep + k + 2 * depth, "}}");
        unsigned char *big = malloc(strlen(deep) + 8);
        n = build(big, strlen(deep), deep, NULL, 0);
        expect_fail("deep", big, n, DDPM_ERR_FORMAT, "nesting deeper than 64 levels");
        free(big);
        free(deep);
    }

    /* schema */
    expect_fail_hdr("dtype_f16", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8,
                    "tensor 'a' has dtype F16; only F32 is supported");
    expect_fail_hdr("dtype_num", "{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "not a string");
    expect_fail_hdr("entry_not_obj", "{\"a\":[0,8]}", 8, "entry of tensor 'a' is not an object");
    expect_fail_hdr("no_dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a' has no dtype");
    expect_fail_hdr("no_shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "has no shape");
    expect_fail_hdr("no_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "has no data_offsets");
    expect_fail_hdr("two_dtypes", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                    8, "two dtype fields");
    expect_fail_hdr("unknown_field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
                    "unknown field 'x'");
    expect_fail_hdr("ndim9", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
                    "more than 8 dimensions");
    expect_fail_hdr("shape_negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                    "non-negative integers");
    expect_fail_hdr("shape_float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
                    "non-negative integers");
    expect_fail_hdr("shape_exp", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8,
                    "non-negative integers");
    expect_fail_hdr("shape_string", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
                    "not an array");
    expect_fail_hdr("shape_big", "{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}}", 8,
                    "does not fit in 64 bits");
    expect_fail_hdr("shape_overflow",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                    "shape [4294967296, 4294967296] of tensor 'a' overflows");
    expect_fail_hdr("offsets_big", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}",
                    8, "do not fit in 64 bits");
    expect_fail_hdr("offsets_three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
                    "must be [begin, end]");
    expect_fail_hdr("offsets_one", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8,
                    "must be [begin, end]");
    expect_fail_hdr("offsets_empty", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[]}}", 8,
                    "must be [begin, end]");
    expect_fail_hdr("offsets_negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                    "non-negative integers");
    expect_fail_hdr("offsets_reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                    "data_offsets [8, 0] of tensor 'a' have begin > end");
    expect_fail_hdr("offsets_out", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                    "data_offsets [0, 16] of tensor 'a' exceed the data buffer of 8 bytes");
    expect_fail_hdr("offsets_wrap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,0]}}", 8,
                    "begin > end");
    expect_fail_hdr("size_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                    "tensor 'a' has 8 bytes of data but F32 shape [3] needs 12");
    /* more bytes than the shape needs (the tiling check alone would take them) */
    expect_fail_hdr("bytes_extra", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                    "tensor 'a' has 8 bytes of data but F32 shape [1] needs 4");
    expect_fail_hdr("overlap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    12, "tensors 'a' and 'b' overlap");
    expect_fail_hdr("same_range",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                    8, "overlap");
    expect_fail_hdr("gap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                    20, "gap of 4 bytes between tensors 'a' and 'b'");
    expect_fail_hdr("gap_first", "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                    "gap of 4 bytes before tensor 'b'");
    expect_fail_hdr("trailing_bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
                    "4 trailing bytes after the last tensor");
    expect_fail_hdr("data_no_tensors", "{}", 8, "8 trailing bytes");
    expect_fail_hdr("duplicate",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "duplicate tensor name 'a'");
    expect_fail_hdr("duplicate_escaped", /* the same name spelled two ways */
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "duplicate tensor name 'a'");
    expect_fail_hdr("meta_number", "{\"__metadata__\":{\"step\":12}}", 0, "metadata value of 'step' is not a string");
    expect_fail_hdr("meta_null", "{\"__metadata__\":{\"step\":null}}", 0, "is not a string");
    expect_fail_hdr("meta_object", "{\"__metadata__\":{\"cfg\":{\"ch\":\"32\"}}}", 0, "is not a string");
    expect_fail_hdr("meta_not_object", "{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
    expect_fail_hdr("meta_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "two __metadata__");
    expect_fail_hdr("meta_dup_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate metadata key 'k'");
    expect_fail_hdr("name_ctrl", /* a control character in a name is shown as '?' */
                    "{\"a\\nb\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'a?b' has dtype BF16");
    {   /* a long name is cut in the message */
        char hdr[512], name[201];
        memset(name, 'x', 200);
        name[200] = '\0';
        snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", name);
        expect_fail_hdr("long_name", hdr, 8, "xxx...' has dtype I64");
        assert_true(strlen(ddpm_last_error()) < 200);
    }
}

/* ---- random corruption ------------------------------------------------------------------ */

static void test_random_corruption(void **state) {
    (void)state;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 7);
    float w[24], b[3], s[1] = {0.5f};
    ddpm_rng_fill_normal(&rng, w, 24);
    ddpm_rng_fill_normal(&rng, b, 3);
    ddpm_st_entry t[] = {{"conv.weight", 4, {2, 3, 2, 2}, w}, {"conv.bias", 1, {3}, b}, {"scale", 0, {0}, s}};
    ddpm_st_meta meta[] = {{"step", "10"}, {"config", "{\"a\": [1, 2]}"}};
    const char *good_path = in_dir("fuzz_good.safetensors");
    assert_int_equal(ddpm_st_save(good_path, t, 3, meta, 2), DDPM_OK);
    size_t len;
    unsigned char *good = read_bytes(good_path, &len);
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | good[i];
    unsigned char *buf = malloc(len + 16);
    const char alphabet[] = "{}[]\":,0123456789-+.eE\\u \tntfa_F";
    const char *path = in_dir("fuzz.safetensors");
    int ok = 0, rejected = 0, iters = 3000;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, good, len);
        size_t n = len;
        int kind = (int)ddpm_rng_below(&rng, 6);
        int count = 1 + (int)ddpm_rng_below(&rng, 3);
        for (int c = 0; c < count; c++) {
            if (kind == 0) { /* flip a bit anywhere */
                buf[ddpm_rng_below(&rng, (uint32_t)n)] ^= (unsigned char)(1u << ddpm_rng_below(&rng, 8));
            } else if (kind == 1) { /* a JSON-ish character in the header */
                buf[8 + ddpm_rng_below(&rng, (uint32_t)hlen)] = (unsigned char)alphabet[ddpm_rng_below(&rng, sizeof alphabet - 1)];
            } else if (kind == 2) { /* a random byte in the header */
                buf[8 + ddpm_rng_below(&rng, (uint32_t)hlen)] = (unsigned char)ddpm_rng_below(&rng, 256);
            } else if (kind == 3) { /* delete a header byte and fix the length */
                size_t h = 0;
                for (int i = 7; i >= 0; i--) h = h << 8 | buf[i];
                if (h == 0 || h + 8 > n) break;
                size_t at = 8 + ddpm_rng_below(&rng, (uint32_t)h);
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--, h--;
                for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
            }
        }
        if (kind == 4) n = ddpm_rng_below(&rng, (uint32_t)len); /* truncate */
        if (kind == 5) {                                        /* another header length */
            uint64_t h = ddpm_rng_below(&rng, 2) ? ddpm_rng_u64(&rng) : hlen + ddpm_rng_below(&rng, 17) - 8;
            for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
        }
        write_bytes(path, buf, n);
        ddpm_st_file f;
        ddpm_clear_error();
        ddpm_status st = ddpm_st_load(&f, path);
        if (st == DDPM_OK) {
            ok++;
            volatile float sum = 0; /* touch every byte (ASan) */
            for (int i = 0; i < f.ntensors; i++) {
                assert_ptr_equal(ddpm_st_find(&f, f.tensors[i].name), &f.tensors[i]);
                for (size_t k = 0; k < f.tensors[i].numel; k++) sum += f.tensors[i].data[k];
            }
            for (int i = 0; i < f.nmeta; i++) assert_non_null(ddpm_st_meta_get(&f, f.meta[i].key));
            (void)sum;
        } else {
            rejected++;
            assert_int_equal(st, DDPM_ERR_FORMAT);
            const char *msg = ddpm_last_error();
            assert_non_null(strstr(msg, path));
            assert_null(strchr(msg, '\n'));
            assert_null(f.tensors);
        }
        ddpm_st_free(&f);
    }
    printf("    random corruption: %d loaded, %d rejected of %d\n", ok, rejected, iters);
    assert_true(ok > 0 && rejected > iters / 2);
    free(buf);
    free(good);
    unlink(path);
    unlink(good_path);
}

/* ---- saving ------------------------------------------------------------------------------ */

static void test_save_failures(void **state) {
    (void)state;
    float v[3] = {1, 2, 3};
    ddpm_st_entry e = {"v", 1, {3}, v};

    /* a directory that does not exist */
    const char *path = in_dir("no/such/dir/x.safetensors");
    ddpm_clear_error();
    assert_int_equal(ddpm_st_save(path, &e, 1, NULL, 0), DDPM_ERR_IO);
    check_message(path, "No such file or directory");
    assert_false(dir_has_tmp());

    /* rename over a directory fails after the data was written: temp removed */
    const char *dirpath = in_dir("a_directory");
    assert_int_equal(mkdir(dirpath, 0700), 0);
    ddpm_clear_error();
    assert_int_equal(ddpm_st_save(dirpath, &e, 1, NULL, 0), DDPM_ERR_IO);
    check_message(dirpath, "cannot rename");
    assert_false(dir_has_tmp());
    struct stat st;
    assert_int_equal(stat(dirpath, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    rmdir(dirpath);

    /* bad arguments write nothing */
    const char *p2 = in_dir("args.safetensors");
    ddpm_st_entry dup[2] = {e, e};
    assert_int_equal(ddpm_st_save(p2, dup, 2, NULL, 0), DDPM_ERR_ARG);
    check_message(p2, "duplicate tensor name 'v'");
    ddpm_st_entry bad = {"__metadata__", 1, {3}, v};
    assert_int_equal(ddpm_st_save(p2, &bad, 1, NULL, 0), DDPM_ERR_ARG);
    bad.name = "bad\xff";
    assert_int_equal(ddpm_st_save(p2, &bad, 1, NULL, 0), DDPM_ERR_ARG);
    check_message(p2, "tensor name 'bad?' is not valid UTF-8");
    bad.name = "x";
    bad.ndim = 9;
    assert_int_equal(ddpm_st_save(p2, &bad, 1, NULL, 0), DDPM_ERR_ARG);
    bad.ndim = 1;
    bad.shape[0] = -1;
    assert_int_equal(ddpm_st_save(p2, &bad, 1, NULL, 0), DDPM_ERR_ARG);
    bad.shape[0] = 3;
    bad.data = NULL;
    assert_int_equal(ddpm_st_save(p2, &bad, 1, NULL, 0), DDPM_ERR_ARG);
    ddpm_st_meta m2[2] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(ddpm_st_save(p2, &e, 1, m2, 2), DDPM_ERR_ARG);
    check_message(p2, "duplicate metadata key 'k'");
    assert_int_equal(access(p2, F_OK), -1);
    assert_false(dir_has_tmp());
}

static void test_save_replaces_atomically(void **state) {
    (void)state;
    const char *path = in_dir("ckpt.safetensors");
    float a[3] = {1, 2, 3}, b[5] = {5, 6, 7, 8, 9};
    ddpm_st_entry ea = {"a", 1, {3}, a}, eb = {"b", 2, {5, 1}, b};
    ddpm_st_meta ma = {"step", "1"}, mb = {"step", "2"};
    assert_int_equal(ddpm_st_save(path, &ea, 1, &ma, 1), DDPM_OK);
    assert_int_equal(ddpm_st_save(path, &eb, 1, &mb, 1), DDPM_OK);
    assert_false(dir_has_tmp());
    ddpm_st_file f;
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_int_equal(f.ntensors, 1);
    assert_null(ddpm_st_find(&f, "a"));
    assert_memory_equal(ddpm_st_find(&f, "b")->data, b, sizeof b);
    assert_string_equal(ddpm_st_meta_get(&f, "step"), "2");
    ddpm_st_free(&f);

    /* a write that fails midway (file size limit) leaves the old file intact */
    size_t nbig = 1 << 16;
    float *big = calloc(nbig, sizeof *big);
    ddpm_st_entry ebig = {"big", 1, {(int64_t)nbig}, big};
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ddpm_clear_error();
    ddpm_status st = ddpm_st_save(path, &ebig, 1, &ma, 1);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    free(big);
    assert_int_equal(st, DDPM_ERR_IO);
    check_message(path, "File too large");
    assert_false(dir_has_tmp());
    assert_int_equal(ddpm_st_load(&f, path), DDPM_OK);
    assert_memory_equal(ddpm_st_find(&f, "b")->data, b, sizeof b);
    assert_string_equal(ddpm_st_meta_get(&f, "step"), "2");
    ddpm_st_free(&f);
    unlink(path);

    /* a path without a directory part (the directory synced is ".") */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    ddpm_status s1 = ddpm_st_save("rel.safetensors", &ea, 1, NULL, 0);
    ddpm_status s2 = ddpm_st_load(&f, "rel.safetensors");
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(s1, DDPM_OK);
    assert_int_equal(s2, DDPM_OK);
    assert_memory_equal(ddpm_st_find(&f, "a")->data, a, sizeof a);
    ddpm_st_free(&f);
    unlink(in_dir("rel.safetensors"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pytorch_bytes),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_save_failures),
        cmocka_unit_test(test_save_replaces_atomically),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
