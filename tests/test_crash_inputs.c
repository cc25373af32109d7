/* test_crash_inputs.c: inputs the fuzz targets (tests/fuzz) found, kept as
 * regression tests. Each names the target and what went wrong; the ASan CI
 * build (.ci/run) turns an out-of-bounds read back into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stb_image_write.h>

#include "cliutil.h"
#include "ddpm/imagefolder.h"
#include "io/imagefolder_internal.h"

static void expect_bad_class_list(const char *json) {
    char **names = (char **)1;
    int n = -1;
    if (ddpm_folder_classes_parse(json, &names, &n) == DDPM_OK)
        fail_msg("class list '%s' accepted (%d names)", json, n);
    assert_null(names);
    assert_int_equal(n, 0);
    const char *msg = ddpm_last_error();
    assert_non_null(strstr(msg, "malformed class list"));
    assert_null(strchr(msg, '\n'));
}

/* fuzz_folder: a \u escape with fewer than 4 hex digits at the end of the
 * text: sscanf("%4x") took the 1 digit, then the parser skipped 4 bytes,
 * past the NUL, and read beyond the buffer (ASan heap-buffer-overflow). A sign
 * or a space after \u was taken as part of the number. */
static void test_class_list_short_unicode_escape(void **state) {
    (void)state;
    expect_bad_class_list("[\"\\u1");
    expect_bad_class_list("[\"\\u7");
    expect_bad_class_list("[\"\\u004");
    expect_bad_class_list("[\"\\u+7fx\"]"); /* was accepted as "\x7f" */
    expect_bad_class_list("[\"\\u 41x\"]"); /* was accepted as "A" */
    expect_bad_class_list("[\"\\u-041\"]");
    /* still fine: exactly four digits */
    char **names;
    int n;
    assert_int_equal(ddpm_folder_classes_parse("[\"a\\u0041\",\"\\u007e\"]", &names, &n), DDPM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "aA");
    assert_string_equal(names[1], "~");
    ddpm_folder_classes_free(names, n);
}

/* fuzz_folder: the error message quoted the raw text, so a class list
 * holding newlines (here the start of a PNG file) gave a multi-line error. */
static void test_class_list_error_is_one_line(void **state) {
    (void)state;
    static const char png[] = "\x89PNG\r\n\x1a\n\x00";
    expect_bad_class_list(png);
    expect_bad_class_list("[\"a\",\n\"b\"\n");
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A folder-cache header (imagefolder.h's layout): hbytes, key {1, 2}, size
 * 8, 3 channels, alpha white, then n images, ncls classes, nskip skips,
 * padded with zero bytes to `total` bytes. Returns its path in dir. */
static const char *cache_file(const char *dir, uint32_t hbytes, uint32_t n, uint32_t ncls, uint32_t nskip,
                              size_t total) {
    static char path[400];
    snprintf(path, sizeof path, "%s/cache.u8", dir);
    uint8_t *b = calloc(total, 1);
    memcpy(b, "DDPMFC01", 8);
    put32(b + 8, hbytes);
    put32(b + 12, DDPM_FOLDER_CACHE_VERSION);
    b[16] = 1, b[24] = 2;
    uint32_t v[6] = {8, 3, DDPM_ALPHA_WHITE, n, ncls, nskip};
    for (int i = 0; i < 6; i++) put32(b + 32 + 4 * i, v[i]);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, total, f), total);
    fclose(f);
    free(b);
    return path;
}

static void expect_stale(const char *path, const char *why) {
    static const uint64_t key[2] = {1, 2};
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = 8;
    o.channels = 3;
    ddpm_image_folder f;
    folder_skips k;
    memset(&f, 0, sizeof f);
    memset(&k, 0, sizeof k);
    assert_int_not_equal(folder_cache_read(path, key, &o, &f, &k), DDPM_OK);
    if (!strstr(ddpm_last_error(), why)) fail_msg("'%s', want '%s'", ddpm_last_error(), why);
}

/* fuzz_folder_cache (timeouts): the reader allocated what the header claimed
 * before checking it against the file: 200 MB for the header of a 381-byte
 * file, and 10 M records (about 200 MB) for a 68-byte header. */
static void test_folder_cache_sizes_before_allocation(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    expect_stale(cache_file(dir, 0x0c0000e2u, 1, 0, 0, 381), "truncated header");
    expect_stale(cache_file(dir, 68, 10000000, 0, 0, 68), "more entries than its bytes can hold");
    expect_stale(cache_file(dir, 68, 1, 10000000, 0, 68), "more entries than its bytes can hold");
    expect_stale(cache_file(dir, 68, 1, 0, 10000000, 68), "more entries than its bytes can hold");
    /* one record fits in 68 bytes: the check is not too strict (the file then lacks its pixels) */
    expect_stale(cache_file(dir, 68, 1, 0, 0, 68), "malformed header");
    cli_rmtree(dir);
}

/* A cache header holding no images (the writer never writes one; a crafted
 * or damaged file can hold one): it was accepted, and ddpm_folder_load then
 * said the folder had "no usable image" although its files decode. It is
 * now stale like any malformed cache, so the folder is decoded instead. */
static void test_folder_cache_without_images(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    expect_stale(cache_file(dir, 56, 0, 0, 0, 56), "no images");
    expect_stale(cache_file(dir, 60, 0, 1, 0, 60), "no images"); /* and one class, named "" */
    cli_rmtree(dir);
}

/* fuzz_folder, in the instrumented stb_image of the fuzz build (UBSan: index
 * 257 out of bounds in stbi__build_huffman): Debian's stb_image 2.27 does
 * not check that a JPEG Huffman table's 16 code counts sum to at most 256
 * and writes past the table's arrays (in the release build, silently). This
 * is the fuzzer's 55-byte input; the DHT segment after SOF claims far more
 * codes than the file holds. The folder reader now refuses such a file
 * before stb_image sees it (imagefolder.c, stb_guard). */
static const uint8_t k_jpeg_dht_257[55] = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x00, 0x00, 0x00, 0x01, 0xe1, 0x00, 0x1a,
    0x28, 0x28, 0xee, 0x28, 0x28, 0x28, 0x28, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x09,
    0x00, 0x0c, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4,
    0x01, 0xa2, 0x00, 0x01, 0x01, 0x01, 0x13, 0x9a, 0x4f, 0x99, 0xff, 0xd9, 0x6f};

typedef struct {
    uint8_t *b;
    size_t n;
} bytes;

static void to_bytes(void *ctx, void *data, int size) {
    bytes *o = ctx;
    o->b = realloc(o->b, o->n + (size_t)size);
    assert_non_null(o->b);
    memcpy(o->b + o->n, data, (size_t)size);
    o->n += (size_t)size;
}

static void write_file(const char *dir, const char *name, const uint8_t *b, size_t n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

typedef struct {
    int warns;
    char msgs[2048];
} warn_sink;

static void on_warn(void *ctx, ddpm_skip_kind k, const char *msg) {
    warn_sink *s = ctx;
    assert_int_equal(k, DDPM_SKIP_CORRUPT);
    s->warns++;
    size_t n = strlen(s->msgs);
    snprintf(s->msgs + n, sizeof s->msgs - n, "%s\n", msg);
}

/* The offset of the first FF m marker after SOI, or 0. */
static size_t find_marker(const bytes *j, uint8_t m) {
    for (size_t i = 2; i + 1 < j->n; i++)
        if (j->b[i] == 0xff && j->b[i + 1] == m) return i;
    return 0;
}

/* dir as an image folder of 8 px colour images, skip messages into s. */
static ddpm_status load_folder(ddpm_image_folder *f, const char *dir, warn_sink *s, ddpm_folder_report *r) {
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = 8, o.channels = 3, o.warn = on_warn, o.ctx = s;
    return ddpm_folder_load(f, dir, &o, r);
}

static void test_jpeg_huffman_tables(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    /* a valid JPEG from stb_image_write: it decodes */
    enum { W = 12, H = 9 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 37);
    bytes good = {0};
    assert_true(stbi_write_jpg_to_func(to_bytes, &good, W, H, 3, px, 90));
    write_file(dir, "good.jpg", good.b, good.n);
    /* the same with an APP1 segment (after SOI) whose bytes look like such a
     * DHT: segments are skipped by their length, as stb_image skips them */
    static const uint8_t app[] = {0xff, 0xe1, 0x00, 0x16, 0xff, 0xc4, 0x00, 0x13, 0x00, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff};
    uint8_t *withapp = malloc(good.n + sizeof app);
    assert_non_null(withapp);
    memcpy(withapp, good.b, 2);
    memcpy(withapp + 2, app, sizeof app);
    memcpy(withapp + 2 + sizeof app, good.b + 2, good.n - 2);
    write_file(dir, "app.jpg", withapp, good.n + sizeof app);
    /* the valid JPEG with its first Huffman table's last two counts at 255:
     * more than 256 codes */
    uint8_t *bad = malloc(good.n);
    assert_non_null(bad);
    size_t dht = find_marker(&good, 0xc4);
    assert_true(dht > 0 && dht + 21 < good.n);
    memcpy(bad, good.b, good.n);
    bad[dht + 5 + 14] = bad[dht + 5 + 15] = 255; /* FF C4, length, class/id, counts */
    write_file(dir, "dht.jpg", bad, good.n);
    write_file(dir, "fuzz.jpg", k_jpeg_dht_257, sizeof k_jpeg_dht_257);
    /* fuzz_folder, second finding: a scan that decodes with a Huffman table
     * no DHT defined (the fuzzer turned an AC table's class into DC).
     * stb_image 2.27 then read uninitialised heap memory (an assertion fired
     * on one run and not on the replay). Here: the valid JPEG with its last
     * scan component's AC table selector pointing at table 2. */
    size_t sos = find_marker(&good, 0xda);
    assert_true(sos > 0 && sos + 12 < good.n);
    memcpy(bad, good.b, good.n);
    int ns = bad[sos + 4]; /* FF DA, length, Ns, then (Cs, Td/Ta) per component */
    assert_int_equal(ns, 3);
    bad[sos + 6 + 2 * (ns - 1)] = (uint8_t)((bad[sos + 6 + 2 * (ns - 1)] & 0xf0) | 2);
    write_file(dir, "scan.jpg", bad, good.n);

    warn_sink s = {0};
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load_folder(&f, dir, &s, &r), DDPM_OK);
    assert_int_equal(f.n, 2); /* app.jpg, good.jpg */
    assert_int_equal(r.skipped[DDPM_SKIP_CORRUPT], 3);
    assert_int_equal(s.warns, 3);
    assert_non_null(strstr(s.msgs, "/scan.jpg': corrupt: JPEG scan uses a Huffman table it does not define\n"));
    assert_non_null(strstr(s.msgs, "/dht.jpg': corrupt: JPEG Huffman table with more than 256 codes\n"));
    assert_non_null(strstr(s.msgs, "/fuzz.jpg': corrupt: JPEG Huffman table with more than 256 codes\n"));
    ddpm_folder_free(&f);
    free(bad);
    free(withapp);
    free(good.b);
    cli_rmtree(dir);
}

/* fuzz_folder, on stb_image 2.30: a PNG (125 bytes) whose first IDAT chunk
 * is empty and whose next chunk has an unknown critical type. (1) UBSan:
 * "applying zero offset to null pointer" (z->idata + 0 before any IDAT
 * data), patched in third_party/stb/stb_image.h. (2) stb_image's reason for
 * the unknown chunk holds the chunk type's raw bytes (here a newline), which
 * made the skip message two lines; the reason is now shown printable and
 * every skip message is kept to one line (fuzz_folder now checks them). */
static const uint8_t k_png_empty_idat[125] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x09, 0x08, 0x00, 0x00, 0x00,
    0x00, 0x23, 0xd3, 0x92, 0x88, 0x00, 0x00, 0x00, 0x00, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x5e, 0x63, 0x64, 0x90, 0x95, 0x7d, 0x1a, 0x0a, 0x8c, 0x32, 0xc5, 0xc8, 0x9c, 0x1d,
    0xc8, 0x1c, 0x11, 0x64, 0x4e, 0x01, 0x32, 0xe7, 0x0c, 0x32, 0x47, 0x03, 0x89, 0xc3,
    0x02, 0x33, 0xf3, 0xbb, 0xcc, 0xc9, 0x40, 0x92, 0x01, 0x00, 0xee, 0xf1, 0x28, 0x1b,
    0x98, 0x62, 0x62, 0xf2, 0x00, 0x00, 0x00, 0x0d, 0x03, 0x89, 0xc3, 0x02, 0x33, 0xf3,
    0xbb, 0xcc, 0xc9, 0x40, 0x92, 0x01, 0x00, 0xee, 0xf1, 0x28, 0x1b, 0x98, 0x62, 0x62,
    0xf2, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

static void test_png_empty_idat_unknown_chunk(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    write_file(dir, "z.png", k_png_empty_idat, sizeof k_png_empty_idat);
    warn_sink s = {0};
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load_folder(&f, dir, &s, &r), DDPM_ERR_FORMAT); /* no usable image */
    assert_int_equal(r.skipped[DDPM_SKIP_CORRUPT], 1);
    assert_int_equal(s.warns, 1);
    assert_non_null(strstr(s.msgs, "/z.png': corrupt: stb_image: "));
    assert_non_null(strstr(s.msgs, " PNG chunk not known\n"));
    assert_int_equal(cli_lines(s.msgs), 1);
    for (const char *c = s.msgs; *c; c++) assert_true(*c == '\n' || (unsigned char)*c >= 0x20);
    cli_rmtree(dir);
}

/* fuzz_edit: 22 bytes that stb_image takes for an uncompressed gray TGA
 * (the ID field's length 137 is past the end, the header claims 7936 x 4096
 * pixels). stb_image filled the missing pixels with zeros and `ddpm sample
 * --init` edited a black image; resizing it took over 10 s under the
 * sanitizers. TGA has no magic number, so the size check applies to the
 * files stb_image would decode as TGA, and to each of its layouts. */
static const uint8_t k_tga_22[22] = {0x89, 0x00, 0x03, 0xff, 0xd8, 0x3f, 0x00, 0x03,
                                     0xff, 0x3f, 0xff, 0xfc, 0x00, 0x1f, 0x00, 0x10,
                                     0x08, 0x04, 0x00, 0x00, 0x00, 0x02};

static void test_tga_truncated(void **state) {
    (void)state;
    char dir[256];
    cli_tmpdir(dir, sizeof dir);
    enum { W = 12, H = 9 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 37);
    bytes raw = {0}, rle = {0}, gray = {0};
    stbi_write_tga_with_rle = 0;
    assert_true(stbi_write_tga_to_func(to_bytes, &raw, W, H, 3, px));
    assert_true(stbi_write_tga_to_func(to_bytes, &gray, W, H, 1, px));
    stbi_write_tga_with_rle = 1;
    assert_true(stbi_write_tga_to_func(to_bytes, &rle, W, H, 3, px));
    assert_int_equal(raw.n, 18 + W * H * 3); /* header, pixels */
    write_file(dir, "raw.tga", raw.b, raw.n);
    write_file(dir, "gray.tga", gray.b, gray.n);
    write_file(dir, "rle.tga", rle.b, rle.n);
    write_file(dir, "cut.tga", raw.b, raw.n - 1); /* one pixel byte short */
    write_file(dir, "fuzz.tga", k_tga_22, sizeof k_tga_22);
    /* run-length: the header of rle.tga claiming 4096 x 4096 pixels, which
     * need at least 4 bytes per 128 of them */
    rle.b[12] = rle.b[14] = 0x00;
    rle.b[13] = rle.b[15] = 0x10;
    write_file(dir, "rle_cut.tga", rle.b, rle.n);

    warn_sink s = {0};
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load_folder(&f, dir, &s, &r), DDPM_OK);
    assert_int_equal(f.n, 3); /* gray.tga, raw.tga, rle.tga */
    assert_int_equal(r.skipped[DDPM_SKIP_CORRUPT], 3);
    assert_int_equal(s.warns, 3);
    const char *why = "': corrupt: truncated TGA (fewer bytes than its header's pixels)\n";
    char want[256];
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "/%s%s", (const char *[]){"cut.tga", "fuzz.tga", "rle_cut.tga"}[i], why);
        assert_non_null(strstr(s.msgs, want));
    }
    ddpm_folder_free(&f);
    free(raw.b);
    free(rle.b);
    free(gray.b);
    cli_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_list_short_unicode_escape),
        cmocka_unit_test(test_class_list_error_is_one_line),
        cmocka_unit_test(test_folder_cache_sizes_before_allocation),
        cmocka_unit_test(test_folder_cache_without_images),
        cmocka_unit_test(test_jpeg_huffman_tables),
        cmocka_unit_test(test_png_empty_idat_unknown_chunk),
        cmocka_unit_test(test_tga_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
