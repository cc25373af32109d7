/* test_data.c: IDX reading (raw and gzip) and every way it must fail, dataset
 * directories, --data resolution, float batches, the epoch shuffler and its
 * exact resume, the IDX writer, and (when available) the real MNIST files. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "cliutil.h"
#include "testenv.h"
#include "ddpm/data.h"

/* ---- scratch directory and file helpers ------------------------------------------- */

static char g_dir[256];

static int make_dir(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    return 0;
}


static int remove_dir(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Paths in the scratch directory (a few rotating buffers). */
static const char *tpath(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

typedef struct {
    uint8_t *p;
    size_t n;
} bytes;

static void put_be32(bytes *b, uint32_t v) {
    b->p[b->n++] = (uint8_t)(v >> 24);
    b->p[b->n++] = (uint8_t)(v >> 16);
    b->p[b->n++] = (uint8_t)(v >> 8);
    b->p[b->n++] = (uint8_t)v;
}

/* An IDX file in memory: magic, dims, then `payload` bytes of pixel i = (i * 7 + 3) & 255
 * (labels: i % 10). payload may differ from prod(dims) to make broken files. */
static bytes make_idx(uint32_t magic, int ndim, const uint32_t *dims, size_t payload) {
    bytes b = {malloc(4 + 4 * (size_t)ndim + payload), 0};
    put_be32(&b, magic);
    for (int d = 0; d < ndim; d++) put_be32(&b, dims[d]);
    for (size_t i = 0; i < payload; i++)
        b.p[b.n++] = magic == DDPM_IDX_LABELS ? (uint8_t)(i % 10) : (uint8_t)((i * 7 + 3) & 255);
    return b;
}

static void write_raw(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const uint8_t *p, size_t n) {
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (n) assert_int_equal(gzwrite(gz, p, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

static bytes read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    bytes b = {malloc((size_t)n), (size_t)n};
    assert_int_equal(fread(b.p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return b;
}

/* Expect ddpm_idx_read to fail with `status` and a message holding the path and `needle`. */
static void expect_fail(const char *path, uint32_t kind, ddpm_status status, const char *needle) {
    ddpm_idx idx;
    ddpm_clear_error();
    ddpm_status st = ddpm_idx_read(&idx, path, kind);
    if (st != status || !strstr(ddpm_last_error(), path) || !strstr(ddpm_last_error(), needle))
        fail_msg("'%s': got status %d, message \"%s\"; wanted status %d and \"%s\"", path, st,
                 ddpm_last_error(), status, needle);
    assert_null(idx.data);
}

/* ---- reading good files ----------------------------------------------------------------- */

static void check_images(const ddpm_idx *idx, int n, int h, int w) {
    assert_int_equal(idx->magic, DDPM_IDX_IMAGES);
    assert_int_equal(idx->ndim, 3);
    assert_int_equal(idx->dims[0], n);
    assert_int_equal(idx->dims[1], h);
    assert_int_equal(idx->dims[2], w);
    for (size_t i = 0; i < (size_t)n * h * w; i++)
        assert_int_equal(idx->data[i], (i * 7 + 3) & 255);
}

static void test_read_good_raw_and_gzip(void **state) {
    (void)state;
    uint32_t dims[3] = {5, 3, 4};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 60);
    write_raw(tpath("img"), b.p, b.n);
    write_gz(tpath("img.gz"), b.p, b.n);
    write_gz(tpath("img-named-raw-but-gzip"), b.p, b.n); /* detection is by magic, not name */
    const char *names[] = {"img", "img.gz", "img-named-raw-but-gzip"};
    for (int k = 0; k < 3; k++) {
        ddpm_idx idx;
        assert_int_equal(ddpm_idx_read(&idx, tpath(names[k]), DDPM_IDX_IMAGES), DDPM_OK);
        check_images(&idx, 5, 3, 4);
        ddpm_idx_free(&idx);
    }
    free(b.p);

    /* a gzip payload larger than the first buffer (64 KiB): the buffer grows */
    uint32_t dbig[3] = {300, 28, 28};
    b = make_idx(DDPM_IDX_IMAGES, 3, dbig, 300 * 28 * 28);
    write_gz(tpath("big.gz"), b.p, b.n);
    ddpm_idx ib;
    assert_int_equal(ddpm_idx_read(&ib, tpath("big.gz"), DDPM_IDX_IMAGES), DDPM_OK);
    check_images(&ib, 300, 28, 28);
    ddpm_idx_free(&ib);
    free(b.p);

    uint32_t n = 13;
    b = make_idx(DDPM_IDX_LABELS, 1, &n, 13);
    write_gz(tpath("lab.gz"), b.p, b.n);
    ddpm_idx idx;
    assert_int_equal(ddpm_idx_read(&idx, tpath("lab.gz"), DDPM_IDX_LABELS), DDPM_OK);
    assert_int_equal(idx.ndim, 1);
    assert_int_equal(idx.dims[0], 13);
    for (int i = 0; i < 13; i++) assert_int_equal(idx.data[i], i % 10);
    ddpm_idx_free(&idx);
    free(b.p);

    /* a gzip file of two concatenated members is still one valid stream */
    uint32_t d2[3] = {2, 2, 2};
    b = make_idx(DDPM_IDX_IMAGES, 3, d2, 8);
    write_gz(tpath("a.gz"), b.p, 10);
    write_gz(tpath("b.gz"), b.p + 10, b.n - 10);
    bytes ga = read_all(tpath("a.gz")), gb = read_all(tpath("b.gz"));
    FILE *f = fopen(tpath("ab.gz"), "wb");
    fwrite(ga.p, 1, ga.n, f);
    fwrite(gb.p, 1, gb.n, f);
    fclose(f);
    assert_int_equal(ddpm_idx_read(&idx, tpath("ab.gz"), DDPM_IDX_IMAGES), DDPM_OK);
    check_images(&idx, 2, 2, 2);
    ddpm_idx_free(&idx);
    free(ga.p), free(gb.p), free(b.p);
}

/* ---- every way a file can be broken --------------------------------------------------------- */

static void test_bad_magic(void **state) {
    (void)state;
    uint32_t n = 4;
    bytes b = make_idx(DDPM_IDX_LABELS, 1, &n, 4);
    write_raw(tpath("train-images-idx3-ubyte"), b.p, b.n);
    write_gz(tpath("train-images-idx3-ubyte.gz"), b.p, b.n);
    expect_fail(tpath("train-images-idx3-ubyte"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "bad magic number 0x00000801 (expected 0x00000803 for images");
    expect_fail(tpath("train-images-idx3-ubyte.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "bad magic number 0x00000801 (expected 0x00000803 for images");
    free(b.p);
    uint32_t dims[3] = {1, 1, 1};
    b = make_idx(DDPM_IDX_IMAGES, 3, dims, 1);
    write_raw(tpath("lab"), b.p, b.n);
    expect_fail(tpath("lab"), DDPM_IDX_LABELS, DDPM_ERR_FORMAT,
                "bad magic number 0x00000803 (expected 0x00000801 for labels)");
    /* a float IDX (type 0x0d) and a text file */
    b.p[2] = 0x0d;
    write_raw(tpath("float"), b.p, b.n);
    expect_fail(tpath("float"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "bad magic number 0x00000d03");
    write_raw(tpath("text"), (const uint8_t *)"hello world\n", 12);
    expect_fail(tpath("text"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "bad magic number 0x68656c6c");
    free(b.p);
}

static void test_truncated(void **state) {
    (void)state;
    uint32_t dims[3] = {5, 3, 4};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 59); /* one byte short */
    write_raw(tpath("short"), b.p, b.n);
    expect_fail(tpath("short"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "truncated: the header declares 60 bytes of data, the file holds 59");
    write_gz(tpath("short.gz"), b.p, b.n);
    expect_fail(tpath("short.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "truncated: the header declares 60 bytes of data, the gzip stream holds 59");
    write_raw(tpath("hdr"), b.p, 10); /* inside the dims */
    expect_fail(tpath("hdr"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "truncated IDX header");
    write_raw(tpath("tiny"), b.p, 3); /* inside the magic */
    expect_fail(tpath("tiny"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "truncated IDX header");
    write_raw(tpath("empty"), b.p, 0);
    expect_fail(tpath("empty"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "truncated IDX header");
    free(b.p);

    /* a gzip file cut in half: the deflate stream itself ends early */
    b = make_idx(DDPM_IDX_IMAGES, 3, dims, 60);
    write_gz(tpath("cut.gz"), b.p, b.n);
    bytes g = read_all(tpath("cut.gz"));
    write_raw(tpath("cut.gz"), g.p, g.n / 2);
    expect_fail(tpath("cut.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "truncated gzip stream");
    write_raw(tpath("cut2.gz"), g.p, g.n - 4); /* only the length trailer missing */
    expect_fail(tpath("cut2.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "truncated gzip stream");
    free(g.p), free(b.p);
}

static void test_trailing_bytes(void **state) {
    (void)state;
    uint32_t dims[3] = {5, 3, 4};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 61);
    write_raw(tpath("long"), b.p, b.n);
    expect_fail(tpath("long"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "1 trailing bytes after the 60 bytes of data the header declares");
    write_gz(tpath("long.gz"), b.p, b.n);
    expect_fail(tpath("long.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "trailing bytes after the 60 bytes of data the header declares");
    free(b.p);
    /* garbage after the gzip stream */
    b = make_idx(DDPM_IDX_IMAGES, 3, dims, 60);
    write_gz(tpath("junk.gz"), b.p, b.n);
    bytes g = read_all(tpath("junk.gz"));
    FILE *f = fopen(tpath("junk.gz"), "ab");
    fputs("junk after the stream", f);
    fclose(f);
    expect_fail(tpath("junk.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "corrupt gzip data (zlib:");
    free(g.p), free(b.p);
}

/* A gzip bomb: the header claims 10 tiny images, the stream inflates to 64 MB.
 * Reading stops one byte past the declared size. */
static void test_gzip_bomb(void **state) {
    (void)state;
    uint32_t dims[3] = {10, 2, 2};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 40);
    gzFile gz = gzopen(tpath("bomb.gz"), "wb9");
    gzwrite(gz, b.p, (unsigned)b.n);
    uint8_t *zeros = calloc(1 << 20, 1);
    for (int i = 0; i < 64; i++) gzwrite(gz, zeros, 1 << 20);
    gzclose(gz);
    free(zeros);
    expect_fail(tpath("bomb.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                "trailing bytes after the 40 bytes");
    free(b.p);
}

static void test_header_dims(void **state) {
    (void)state;
    struct {
        uint32_t dims[3];
        const char *needle;
    } cases[] = {
        {{0x7fffffffu, 4096, 4096}, "more than 17179869184 bytes of data (dims overflow)"},
        {{0xffffffffu, 28, 28}, "dimension 0 of the IDX header is larger than 2^31-1"},
        {{4, 0xffffffffu, 0xffffffffu}, "dimension 1 of the IDX header is larger than 2^31-1"},
        {{0, 28, 28}, "dimension 0 of the IDX header is 0"},
        {{3, 28, 0}, "dimension 2 of the IDX header is 0"},
        {{1, 5000, 28}, "image size 5000 x 28 exceeds 4096 x 4096"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        bytes b = make_idx(DDPM_IDX_IMAGES, 3, cases[k].dims, 16);
        write_raw(tpath("dims"), b.p, b.n);
        expect_fail(tpath("dims"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, cases[k].needle);
        write_gz(tpath("dims.gz"), b.p, b.n);
        expect_fail(tpath("dims.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, cases[k].needle);
        free(b.p);
    }
    /* a header within the caps (1 GB) over a tiny gzip stream: fails as truncated
     * without allocating the gigabyte (the buffer grows only as data arrives) */
    uint32_t big[3] = {1u << 20, 32, 32};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, big, 100);
    write_gz(tpath("liar.gz"), b.p, b.n);
    expect_fail(
        tpath("liar.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
        "truncated: the header declares 1073741824 bytes of data, the gzip stream holds 100");
    write_raw(tpath("liar"), b.p, b.n);
    expect_fail(tpath("liar"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "the file holds 100");
    free(b.p);
    /* colour: too many channels */
    uint32_t c9[4] = {1, 9, 2, 2};
    b = make_idx(DDPM_IDX_IMAGES_C, 4, c9, 36);
    write_raw(tpath("c9"), b.p, b.n);
    expect_fail(tpath("c9"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT, "9 channels");
    free(b.p);
}

/* Flip bytes in the middle of the deflate stream: zlib must reject it (bad
 * code, distance or CRC) and the reader must fail cleanly. */
static void test_corrupt_gzip(void **state) {
    (void)state;
    uint32_t dims[3] = {50, 28, 28};
    for (int variant = 0; variant < 2; variant++) {
        bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 50 * 28 * 28);
        if (variant) /* less regular: long literal runs (variant 0 is all back-references) */
            for (size_t i = 16; i < b.n; i++) b.p[i] = (uint8_t)((b.p[i] * 31 + i / 97) ^ (i >> 5));
        write_gz(tpath("ok.gz"), b.p, b.n);
        ddpm_idx idx;
        assert_int_equal(ddpm_idx_read(&idx, tpath("ok.gz"), DDPM_IDX_IMAGES), DDPM_OK);
        ddpm_idx_free(&idx);
        bytes g = read_all(tpath("ok.gz"));
        assert_true(g.n > 200);
        for (int k = 0; k < 3; k++) {
            bytes c = {malloc(g.n), g.n};
            memcpy(c.p, g.p, g.n);
            size_t mid = g.n / 2 + (size_t)k * 37;
            for (size_t i = mid; i < mid + 8; i++) c.p[i] ^= 0xA5;
            write_raw(tpath("bad.gz"), c.p, c.n);
            ddpm_clear_error();
            assert_int_equal(ddpm_idx_read(&idx, tpath("bad.gz"), DDPM_IDX_IMAGES),
                             DDPM_ERR_FORMAT);
            assert_null(idx.data);
            const char *m = ddpm_last_error();
            print_message("corrupt gzip %d/%d: %s\n", variant, k, m);
            assert_non_null(strstr(m, tpath("bad.gz")));
            assert_true(strstr(m, "corrupt gzip data (zlib: ") || strstr(m, "truncated") ||
                        strstr(m, "trailing"));
            free(c.p);
        }
        /* corrupt the CRC trailer only: the data inflates fine, the check fails */
        g.p[g.n - 6] ^= 1;
        write_raw(tpath("crc.gz"), g.p, g.n);
        expect_fail(tpath("crc.gz"), DDPM_IDX_IMAGES, DDPM_ERR_FORMAT,
                    "corrupt gzip data (zlib: incorrect data check)");
        free(g.p), free(b.p);
    }
}

static void test_missing_file(void **state) {
    (void)state;
    expect_fail(tpath("nope"), DDPM_IDX_IMAGES, DDPM_ERR_IO, "No such file or directory");
    ddpm_dataset ds;
    ddpm_clear_error();
    assert_int_equal(ddpm_dataset_load(&ds, g_dir, true), DDPM_ERR_IO);
    char want[512];
    snprintf(want, sizeof want,
             "cannot find 'train-images-idx3-ubyte' or 'train-images-idx3-ubyte.gz' in '%s'",
             g_dir);
    assert_string_equal(ddpm_last_error(), want);
    assert_null(ds.pixels);
    /* images present, labels missing */
    uint32_t dims[3] = {2, 2, 2};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 8);
    write_raw(tpath("t10k-images-idx3-ubyte"), b.p, b.n);
    assert_int_equal(ddpm_dataset_load(&ds, g_dir, false), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), "'t10k-labels-idx1-ubyte.gz' in"));
    free(b.p);
}

/* ---- datasets ------------------------------------------------------------------------------- */

static void test_dataset_load(void **state) {
    (void)state;
    uint32_t dims[3] = {6, 3, 2}, n = 6;
    bytes im = make_idx(DDPM_IDX_IMAGES, 3, dims, 36), lab = make_idx(DDPM_IDX_LABELS, 1, &n, 6);
    lab.p[8 + 2] = 7; /* labels 0 1 7 3 4 5: num_classes 8 */
    write_gz(tpath("train-images-idx3-ubyte.gz"), im.p, im.n);
    write_raw(tpath("train-labels-idx1-ubyte"), lab.p, lab.n);
    ddpm_dataset ds;
    assert_int_equal(ddpm_dataset_load(&ds, g_dir, true), DDPM_OK);
    assert_int_equal(ds.n, 6);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 3);
    assert_int_equal(ds.w, 2);
    assert_int_equal(ds.num_classes, 8);
    int want[6] = {0, 1, 7, 3, 4, 5};
    for (int i = 0; i < 6; i++) assert_int_equal(ds.labels[i], want[i]);
    assert_memory_equal(ds.pixels, im.p + 16, 36);

    /* float batches: x / 127.5 - 1, in the order of idx */
    int idx[3] = {4, 0, 4};
    float out[3 * 6];
    ddpm_dataset_to_float(out, &ds, idx, 3);
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 6; i++)
            assert_float_equal(out[b * 6 + i], ds.pixels[idx[b] * 6 + i] / 127.5f - 1.0f, 0.0f);
    int lb[3];
    ddpm_dataset_get_labels(lb, &ds, idx, 3);
    assert_int_equal(lb[0], 4);
    assert_int_equal(lb[1], 0);
    ds.pixels[0] = 0, ds.pixels[1] = 255;
    ddpm_dataset_to_float(out, &ds, (int[]){0}, 1);
    assert_true(out[0] == -1.0f && out[1] == 1.0f);
    ddpm_dataset_free(&ds);
    assert_null(ds.pixels);

    /* count mismatch: 5 labels for 6 images, the message names both files */
    free(lab.p);
    uint32_t five = 5;
    lab = make_idx(DDPM_IDX_LABELS, 1, &five, 5);
    write_raw(tpath("train-labels-idx1-ubyte"), lab.p, lab.n);
    ddpm_clear_error();
    assert_int_equal(ddpm_dataset_load(&ds, g_dir, true), DDPM_ERR_FORMAT);
    char msg[1024];
    snprintf(msg, sizeof msg, "'%s' holds 6 images but '%s' holds 5 labels",
             tpath("train-images-idx3-ubyte.gz"), tpath("train-labels-idx1-ubyte"));
    assert_string_equal(ddpm_last_error(), msg);
    assert_null(ds.pixels);
    assert_null(ds.labels);
    free(im.p), free(lab.p);
}

static void test_dataset_colour(void **state) {
    (void)state;
    uint32_t dims[4] = {2, 3, 4, 5}, n = 2;
    bytes im = make_idx(DDPM_IDX_IMAGES_C, 4, dims, 120), lab = make_idx(DDPM_IDX_LABELS, 1, &n, 2);
    write_raw(tpath("t10k-images-idx3-ubyte"), im.p, im.n);
    write_gz(tpath("t10k-labels-idx1-ubyte.gz"), lab.p, lab.n);
    ddpm_dataset ds;
    assert_int_equal(ddpm_dataset_load(&ds, g_dir, false), DDPM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.c, 3);
    assert_int_equal(ds.h, 4);
    assert_int_equal(ds.w, 5);
    assert_int_equal(ds.num_classes, 2);
    assert_memory_equal(ds.pixels, im.p + 20, 120);
    ddpm_dataset_free(&ds);
    free(im.p), free(lab.p);
}

/* ---- --data resolution ---------------------------------------------------------------------- */

static void test_find(void **state) {
    (void)state;
    char cwd[4096], out[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    const char *dirs[3] = {NULL, "env", "data/mnist"};

    ddpm_clear_error();
    assert_int_equal(ddpm_dataset_find(out, sizeof out, dirs, 3), DDPM_ERR_IO);
    assert_string_equal(ddpm_last_error(), "no train-images-idx3-ubyte[.gz] in 'env', 'data/mnist'");
    assert_int_equal(ddpm_dataset_find(out, sizeof out, dirs, 0), DDPM_ERR_IO);

    uint32_t dims[3] = {1, 1, 1};
    bytes b = make_idx(DDPM_IDX_IMAGES, 3, dims, 1);
    assert_int_equal(mkdir("data", 0755), 0);
    assert_int_equal(mkdir("data/mnist", 0755), 0);
    assert_int_equal(mkdir("env", 0755), 0);
    write_gz("data/mnist/train-images-idx3-ubyte.gz", b.p, b.n);
    assert_int_equal(ddpm_dataset_find(out, sizeof out, dirs, 3), DDPM_OK); /* env has no files: skipped */
    assert_string_equal(out, "data/mnist");
    write_raw("env/train-images-idx3-ubyte", b.p, b.n);
    assert_int_equal(ddpm_dataset_find(out, sizeof out, dirs, 3), DDPM_OK); /* the first that has them */
    assert_string_equal(out, "env");
    assert_int_equal(ddpm_dataset_find(out, 3, dirs, 3), DDPM_ERR_ARG); /* out too small */

    assert_int_equal(chdir(cwd), 0);
    free(b.p);
}

/* ---- IDX writer --------------------------------------------------------------------------------
 */

static void test_idx_write_roundtrip(void **state) {
    (void)state;
    uint8_t px[2 * 3 * 4 * 5];
    for (int i = 0; i < (int)sizeof px; i++) px[i] = (uint8_t)(i * 13 + 1);
    const char *names[] = {"gray.idx", "gray.idx.gz", "rgb.idx", "rgb.idx.gz"};
    for (int k = 0; k < 4; k++) {
        int c = k < 2 ? 1 : 3;
        assert_int_equal(ddpm_idx_write_images(tpath(names[k]), px, 2, c, 4, 5), DDPM_OK);
        bytes raw = read_all(tpath(names[k]));
        assert_int_equal(raw.n >= 2 && raw.p[0] == 0x1f && raw.p[1] == 0x8b, k % 2 == 1);
        free(raw.p);
        ddpm_idx idx;
        assert_int_equal(ddpm_idx_read(&idx, tpath(names[k]), DDPM_IDX_IMAGES), DDPM_OK);
        assert_int_equal(idx.magic, c == 1 ? DDPM_IDX_IMAGES : DDPM_IDX_IMAGES_C);
        assert_int_equal(idx.ndim, c == 1 ? 3 : 4);
        assert_int_equal(idx.dims[0], 2);
        assert_int_equal(idx.dims[idx.ndim - 2], 4);
        assert_int_equal(idx.dims[idx.ndim - 1], 5);
        if (c == 3) assert_int_equal(idx.dims[1], 3);
        assert_memory_equal(idx.data, px, (size_t)2 * c * 20);
        ddpm_idx_free(&idx);
    }
    /* raw layout is exactly the IDX header + data */
    bytes raw = read_all(tpath("gray.idx"));
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 5};
    assert_int_equal(raw.n, 16 + 40);
    assert_memory_equal(raw.p, hdr, 16);
    free(raw.p);
    /* labels */
    uint8_t lab[7] = {1, 2, 3, 4, 5, 6, 9};
    assert_int_equal(ddpm_idx_write(tpath("lab.gz"), lab, 1, (int[]){7}), DDPM_OK);
    ddpm_idx idx;
    assert_int_equal(ddpm_idx_read(&idx, tpath("lab.gz"), DDPM_IDX_LABELS), DDPM_OK);
    assert_memory_equal(idx.data, lab, 7);
    ddpm_idx_free(&idx);
    const int ilab[3] = {0, 255, 7}; /* ints that fit a byte, and one that does not */
    assert_int_equal(ddpm_idx_write_labels(tpath("ilab.idx"), ilab, 3), DDPM_OK);
    assert_int_equal(ddpm_idx_read(&idx, tpath("ilab.idx"), DDPM_IDX_LABELS), DDPM_OK);
    assert_int_equal(idx.dims[0], 3);
    assert_int_equal(idx.data[1], 255);
    assert_int_equal(idx.data[2], 7);
    ddpm_idx_free(&idx);
    assert_int_equal(ddpm_idx_write_labels(tpath("big.idx"), (int[]){3, 256}, 2), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "label 256 does not fit in a byte"));
    assert_int_equal(unlink(tpath("ilab.idx")), 0);
    int before = count_entries(g_dir);
    /* failures leave nothing behind */
    ddpm_clear_error();
    assert_int_equal(ddpm_idx_write_images(tpath("none/x.idx"), px, 2, 1, 4, 5), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), "No such file or directory"));
    assert_int_equal(mkdir(tpath("isdir"), 0755), 0);
    assert_int_equal(ddpm_idx_write_images(tpath("isdir"), px, 2, 1, 4, 5), DDPM_ERR_IO);
    assert_int_equal(ddpm_idx_write_images(tpath("isdir"), px, 2, 1, 4, 0), DDPM_ERR_ARG);
    assert_int_equal(count_entries(g_dir), before + 1); /* just isdir */
}

/* ---- the epoch shuffler -------------------------------------------------------------------------
 */

static bool is_permutation(const int *v, int n) {
    char *seen = calloc((size_t)n, 1);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = v[i] >= 0 && v[i] < n && !seen[v[i]];
        if (ok) seen[v[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_epoch_order(void **state) {
    (void)state;
    enum { N = 37, B = 5, EPOCHS = 4, TOTAL = N * EPOCHS + 3 };
    ddpm_epoch_order s;
    assert_int_equal(ddpm_epoch_order_init(&s, N, 1234), DDPM_OK);
    int seq[TOTAL + B];
    uint32_t ep[TOTAL + B];
    int pos[TOTAL + B];
    int got = 0;
    while (got < TOTAL) { /* batches straddle epoch boundaries (37 is not a multiple of 5) */
        ep[got] = s.epoch, pos[got] = s.pos;
        ddpm_epoch_order_next(&s, seq + got, B);
        got += B;
    }
    /* each epoch is a permutation, and epochs differ */
    for (int e = 0; e < EPOCHS; e++) assert_true(is_permutation(seq + e * N, N));
    for (int e = 1; e < EPOCHS; e++) assert_memory_not_equal(seq, seq + e * N, N * sizeof(int));
    int identity = 0;
    for (int i = 0; i < N; i++) identity += seq[i] == i;
    assert_true(identity < N / 2);
    assert_int_equal(s.epoch, (uint32_t)(got - 1) / N);
    ddpm_epoch_order_free(&s);

    /* same seed, same sequence; another seed, another */
    int again[TOTAL + B], other[TOTAL + B];
    ddpm_epoch_order_init(&s, N, 1234);
    ddpm_epoch_order_next(&s, again, got);
    ddpm_epoch_order_free(&s);
    assert_memory_equal(seq, again, (size_t)got * sizeof(int));
    ddpm_epoch_order_init(&s, N, 1235);
    ddpm_epoch_order_next(&s, other, got);
    ddpm_epoch_order_free(&s);
    assert_memory_not_equal(seq, other, (size_t)N * sizeof(int));

    /* resume from the (epoch, pos) saved before every batch reproduces the rest */
    for (int start = 0; start < got; start += B) {
        ddpm_epoch_order r;
        assert_int_equal(ddpm_epoch_order_resume(&r, N, 1234, ep[start], pos[start]), DDPM_OK);
        ddpm_epoch_order_next(&r, again, got - start);
        assert_memory_equal(again, seq + start, (size_t)(got - start) * sizeof(int));
        ddpm_epoch_order_free(&r);
    }
    /* resuming exactly at the end of an epoch (pos == n) */
    ddpm_epoch_order r;
    assert_int_equal(ddpm_epoch_order_resume(&r, N, 1234, 0, N), DDPM_OK);
    ddpm_epoch_order_next(&r, again, N);
    assert_memory_equal(again, seq + N, N * sizeof(int));
    assert_int_equal(r.epoch, 1);
    ddpm_epoch_order_free(&r);
    /* a batch larger than the dataset spans several epochs */
    ddpm_epoch_order_init(&r, 3, 9);
    int big[7];
    ddpm_epoch_order_next(&r, big, 7);
    assert_true(is_permutation(big, 3) && is_permutation(big + 3, 3));
    assert_int_equal(r.epoch, 2);
    ddpm_epoch_order_free(&r);

    assert_int_equal(ddpm_epoch_order_resume(&r, N, 1, 0, N + 1), DDPM_ERR_ARG);
    assert_int_equal(ddpm_epoch_order_init(&r, 0, 1), DDPM_ERR_ARG);
}

/* The shuffle is uniform over all n! orders (Fisher-Yates), not only the
 * cyclic ones (Sattolo's variant, an off-by-one away, never leaves an index
 * in place): over 600 seeds each of the 3! = 6 orders of 3 images comes up
 * 100 times on average, sd sqrt(600 (1/6)(5/6)) = 9.1; 5 sd either side. */
static void test_epoch_order_uniform(void **state) {
    (void)state;
    enum { SEEDS = 600 };
    int count[3][3][3] = {{{0}}};
    for (int seed = 0; seed < SEEDS; seed++) {
        ddpm_epoch_order r;
        assert_int_equal(ddpm_epoch_order_init(&r, 3, (uint64_t)seed), DDPM_OK);
        int p[3];
        ddpm_epoch_order_next(&r, p, 3);
        assert_true(is_permutation(p, 3));
        count[p[0]][p[1]][p[2]]++;
        ddpm_epoch_order_free(&r);
    }
    const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int k = 0; k < 6; k++) {
        int c = count[perms[k][0]][perms[k][1]][perms[k][2]];
        if (c < 100 - 46 || c > 100 + 46)
            fail_msg("order %d %d %d drawn %d times in %d (expected 100 +- 46)", perms[k][0], perms[k][1],
                     perms[k][2], c, SEEDS);
    }
}

/* ---- the real MNIST (if present) ------------------------------------------------------------- */

static void test_real_mnist(void **state) {
    (void)state;
    const char *dir = test_mnist_dir(); /* fails without MNIST unless DDPM_ALLOW_SKIP=1 */
    ddpm_dataset ds;
    assert_int_equal(ddpm_dataset_load(&ds, dir, true), DDPM_OK);
    assert_int_equal(ds.n, 60000);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 28);
    assert_int_equal(ds.w, 28);
    assert_int_equal(ds.num_classes, 10);
    assert_int_equal(ds.labels[0], 5);
    int counts[10] = {0};
    for (int i = 0; i < ds.n; i++) {
        assert_in_range(ds.labels[i], 0, 9);
        counts[ds.labels[i]]++;
    }
    assert_int_equal(counts[1], 6742); /* the well-known class counts */
    assert_int_equal(counts[5], 5421);
    long sum = 0;
    for (int i = 0; i < 784; i++) sum += ds.pixels[i];
    assert_true(sum > 10000 && sum < 784 * 255 / 2); /* a digit: mostly black, some ink */
    ddpm_dataset_free(&ds);
    assert_int_equal(ddpm_dataset_load(&ds, dir, false), DDPM_OK);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.labels[0], 7);
    ddpm_dataset_free(&ds);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, make_dir, remove_dir)
    const struct CMUnitTest tests[] = {
        T(test_read_good_raw_and_gzip),
        T(test_bad_magic),
        T(test_truncated),
        T(test_trailing_bytes),
        T(test_gzip_bomb),
        T(test_header_dims),
        T(test_corrupt_gzip),
        T(test_missing_file),
        T(test_dataset_load),
        T(test_dataset_colour),
        T(test_find),
        T(test_idx_write_roundtrip),
        T(test_epoch_order),
        T(test_epoch_order_uniform),
        T(test_real_mnist),
    };
    return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
