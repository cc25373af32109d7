/* test_imagefolder.c: image folders on a folder generated here: PNG (RGB,
 * RGBA, gray, 16-bit written by hand with zlib), JPEG, BMP, TGA, PNM, odd
 * sizes, nested class folders, corrupt, truncated and non-image files, a
 * header bomb, a FIFO, a dangling link and a symlink loop; resize and crop
 * against hand-computed values; hflip and random crop against the documented
 * draws; the label map; the cache (reuse, invalidation, damage). */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
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
#include <stb_image_write.h>
#include <zlib.h>

#include "cliutil.h"
#include "ddpm/imagefolder.h"
#include "ddpm/rng.h"

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

/* g_dir/rel, with its parent directories created. */
static const char *at(const char *rel) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    for (char *s = p + strlen(g_dir) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    return p;
}

static void write_bytes(const char *rel, const void *b, size_t n) {
    FILE *f = fopen(at(rel), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    size_t len;
    uint8_t *b = (uint8_t *)cli_slurp(path, &len);
    *n = len;
    return b;
}

/* A w x h image with comp channels, pixel (x, y, c) = pattern. */
static uint8_t *pattern(int w, int h, int comp, int seed) {
    uint8_t *p = malloc((size_t)w * h * comp);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comp; c++)
                p[((size_t)y * w + x) * comp + c] = (uint8_t)(seed + 37 * x + 71 * y + 101 * c);
    return p;
}

static void png(const char *rel, int w, int h, int comp, int seed) {
    uint8_t *p = pattern(w, h, comp, seed);
    assert_true(stbi_write_png(at(rel), w, h, comp, p, w * comp));
    free(p);
}

/* ---- a 16-bit RGB PNG, by hand ------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static size_t chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n) {
    put32(out, n);
    memcpy(out + 4, type, 4);
    if (n) memcpy(out + 8, data, n);
    put32(out + 8 + n, (uint32_t)crc32(crc32(0, NULL, 0), out + 4, n + 4));
    return 12 + n;
}

/* RGB, 16 bits per sample, sample (x, y, c) = v16(x, y, c). */
static uint16_t v16(int x, int y, int c) { return (uint16_t)(0x1000 * (x + 2 * y + c) + 0x0abc); }

static void png16(const char *rel, int w, int h, uint32_t claim_w, uint32_t claim_h) {
    size_t raw_n = (size_t)h * (1 + 6 * w);
    uint8_t *raw = malloc(raw_n), *out = malloc(raw_n + 1024);
    for (int y = 0; y < h; y++) {
        uint8_t *r = raw + (size_t)y * (1 + 6 * w);
        r[0] = 0; /* filter: none */
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) r[1 + 6 * x + 2 * c] = (uint8_t)(v16(x, y, c) >> 8),
                                        r[2 + 6 * x + 2 * c] = (uint8_t)v16(x, y, c);
    }
    uLongf zn = compressBound(raw_n);
    uint8_t *z = malloc(zn);
    assert_int_equal(compress(z, &zn, raw, raw_n), Z_OK);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13];
    put32(ihdr, claim_w), put32(ihdr + 4, claim_h);
    ihdr[8] = 16, ihdr[9] = 2, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
    size_t n = 8;
    memcpy(out, sig, 8);
    n += chunk(out + n, "IHDR", ihdr, 13);
    n += chunk(out + n, "IDAT", z, (uint32_t)zn);
    n += chunk(out + n, "IEND", NULL, 0);
    write_bytes(rel, out, n);
    free(raw), free(out), free(z);
}

/* ---- loading -------------------------------------------------------------------------- */

typedef struct {
    int warns, kinds[DDPM_SKIP_KINDS], last_done, last_total;
    char msgs[4096];
} sink;

static void on_warn(void *ctx, ddpm_skip_kind k, const char *msg) {
    sink *s = ctx;
    s->warns++;
    s->kinds[k]++;
    size_t n = strlen(s->msgs);
    snprintf(s->msgs + n, sizeof s->msgs - n, "%s\n", msg);
}

static void on_progress(void *ctx, int done, int total) {
    sink *s = ctx;
    assert_true(done >= 1 && done <= total);
    s->last_done = done, s->last_total = total;
}

static ddpm_folder_options opts(int size, int channels, sink *s) {
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = size, o.channels = channels, o.warn = on_warn, o.progress = on_progress, o.ctx = s;
    return o;
}

static ddpm_status load(ddpm_image_folder *f, ddpm_folder_options *o, ddpm_folder_report *r) {
    return ddpm_folder_load(f, g_dir, o, r);
}

static const uint8_t *image(const ddpm_image_folder *f, int i) { return f->pixels + f->offset[i]; }

/* ---- formats ----------------------------------------------------------------------------- */

/* Every format at its stored size (no resampling): the pixels must be what
 * stb_image decodes, converted to 3 channels as documented. */
static void test_formats(void **state) {
    (void)state;
    png("a_rgb.png", 8, 8, 3, 1);
    png("b_gray.png", 8, 8, 1, 2);
    png("c_rgba.png", 8, 8, 4, 3);
    png16("d_16bit.png", 8, 8, 8, 8);
    uint8_t *p = pattern(8, 8, 3, 5);
    assert_true(stbi_write_jpg(at("e.jpg"), 8, 8, 3, p, 95));
    assert_true(stbi_write_bmp(at("f.bmp"), 8, 8, 3, p));
    assert_true(stbi_write_tga(at("g.tga"), 8, 8, 3, p));
    char pnm[64 + 192];
    int hl = snprintf(pnm, 64, "P6\n8 8\n255\n");
    memcpy(pnm + hl, p, 192);
    write_bytes("h.ppm", pnm, (size_t)hl + 192);
    sink s = {0};
    ddpm_folder_options o = opts(8, 3, &s);
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load(&f, &o, &r), DDPM_OK);
    assert_int_equal(f.n, 8);
    assert_int_equal(r.files, 8);
    assert_int_equal(r.skipped_total, 0);
    assert_int_equal(s.last_done, 8);
    const char *names[8] = {"a_rgb.png", "b_gray.png", "c_rgba.png", "d_16bit.png",
                            "e.jpg", "f.bmp", "g.tga", "h.ppm"};
    for (int i = 0; i < 8; i++) {
        int w, h, comp;
        uint8_t *ref = stbi_load(at(names[i]), &w, &h, &comp, 0);
        assert_non_null(ref);
        assert_int_equal(f.w[i], 8);
        assert_int_equal(f.h[i], 8);
        assert_int_equal(f.labels[i], -1);
        for (int k = 0; k < 64; k++)
            for (int c = 0; c < 3; c++) {
                const uint8_t *q = ref + k * comp;
                int v = comp >= 3 ? q[c] : q[0], a = comp == 4 ? q[3] : 255;
                int want = (v * a + 255 * (255 - a) + 127) / 255; /* onto white */
                assert_int_equal(image(&f, i)[k * 3 + c], want);
            }
        stbi_image_free(ref);
    }
    /* the 16-bit samples keep their high byte */
    for (int k = 0; k < 64; k++)
        for (int c = 0; c < 3; c++) assert_int_equal(image(&f, 3)[k * 3 + c], v16(k % 8, k / 8, c) >> 8);
    /* BMP, TGA and PNM are lossless: the pattern itself */
    for (int i = 5; i < 8; i++) assert_memory_equal(image(&f, i), p, 192);
    free(p);
    ddpm_folder_free(&f);
}

/* Alpha onto black and white; colour to gray with BT.601 weights. */
static void test_alpha_and_gray(void **state) {
    (void)state;
    uint8_t px[4 * 4] = {255, 0, 0, 255, 0, 255, 0, 0, 0, 0, 255, 128, 200, 100, 50, 64};
    assert_true(stbi_write_png(at("x.png"), 2, 2, 4, px, 8));
    for (int black = 0; black < 2; black++)
        for (int C = 1; C <= 3; C += 2) {
            sink s = {0};
            ddpm_folder_options o = opts(2, C, &s);
            o.alpha = black ? DDPM_ALPHA_BLACK : DDPM_ALPHA_WHITE;
            ddpm_image_folder f;
            assert_int_equal(load(&f, &o, NULL), DDPM_OK);
            int bg = black ? 0 : 255;
            for (int k = 0; k < 4; k++) {
                int v[3], a = px[4 * k + 3];
                for (int c = 0; c < 3; c++) v[c] = (px[4 * k + c] * a + bg * (255 - a) + 127) / 255;
                if (C == 1)
                    assert_int_equal(image(&f, 0)[k], (299 * v[0] + 587 * v[1] + 114 * v[2] + 500) / 1000);
                else
                    for (int c = 0; c < 3; c++) assert_int_equal(image(&f, 0)[3 * k + c], v[c]);
            }
            ddpm_folder_free(&f);
        }
}

/* ---- resize and crop ------------------------------------------------------------------- */

/* A 6 x 4 gray image to size 2: shorter side 4 -> 2, longer 6 -> 3. The box
 * filter at scale 1/2 averages each 2 x 2 block; values are multiples of 64,
 * so every mean is an exact integer. */
static double expect_px(const uint8_t *img, int w, int ox, int oy) {
    return (img[2 * oy * w + 2 * ox] + img[2 * oy * w + 2 * ox + 1] + img[(2 * oy + 1) * w + 2 * ox] +
            img[(2 * oy + 1) * w + 2 * ox + 1]) / 4.0;
}

static void test_resize_hand_computed(void **state) {
    (void)state;
    uint8_t img[24];
    for (int i = 0; i < 24; i++) img[i] = (uint8_t)(64 * ((i * 7 + i / 6) % 4));
    assert_true(stbi_write_png(at("g.png"), 6, 4, 1, img, 6));
    sink s = {0};
    ddpm_folder_options o = opts(2, 1, &s);
    ddpm_image_folder f;
    assert_int_equal(load(&f, &o, NULL), DDPM_OK);
    assert_int_equal(f.w[0], 3);
    assert_int_equal(f.h[0], 2);
    double want[6];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++) {
            want[y * 3 + x] = expect_px(img, 6, x, y);
            assert_int_equal(image(&f, 0)[y * 3 + x], (int)want[y * 3 + x]);
        }
    /* center crop: slack 1, offset 0 -> columns 0, 1 */
    float out[4];
    ddpm_folder_batch(out, &f, (int[]){0}, 1, DDPM_CROP_CENTER, false, NULL);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++) assert_float_equal(out[y * 2 + x], want[y * 3 + x] / 127.5 - 1, 1e-6);
    ddpm_folder_free(&f);
}

/* Sizes: odd, portrait, landscape, beyond 2:1, tiny (upsampled). */
static void test_sizes(void **state) {
    (void)state;
    png("a.png", 7, 5, 3, 1);   /* 5 -> 4: 7 * 4/5 = 5.6 -> 6 */
    png("b.png", 17, 33, 3, 2); /* 17 -> 4: 33 * 4/17 = 7.76 -> 8 */
    png("c.png", 50, 10, 3, 3); /* 5:1 -> cropped to 20 x 10 -> 8 x 4 */
    png("d.png", 2, 3, 3, 4);   /* upsampled: 2 -> 4, 3 -> 6 */
    png("e.png", 4, 4, 3, 5);   /* as is */
    sink s = {0};
    ddpm_folder_options o = opts(4, 3, &s);
    ddpm_image_folder f;
    assert_int_equal(load(&f, &o, NULL), DDPM_OK);
    int w[5] = {6, 4, 8, 4, 4}, h[5] = {4, 8, 4, 6, 4};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f.w[i], w[i]);
        assert_int_equal(f.h[i], h[i]);
    }
    uint8_t *p = pattern(4, 4, 3, 5);
    assert_memory_equal(image(&f, 4), p, 48);
    free(p);
    ddpm_folder_free(&f);
    /* enlarging (Catmull-Rom) keeps a constant image constant */
    uint8_t flat[2 * 3 * 3];
    for (int i = 0; i < 18; i++) flat[i] = (uint8_t)(i % 3 == 0 ? 200 : i % 3 == 1 ? 30 : 90);
    unlink(at("a.png")), unlink(at("b.png")), unlink(at("c.png")), unlink(at("e.png"));
    assert_true(stbi_write_png(at("d.png"), 2, 3, 3, flat, 6));
    assert_int_equal(load(&f, &o, NULL), DDPM_OK);
    for (int k = 0; k < 4 * 6; k++)
        for (int c = 0; c < 3; c++) assert_int_equal(image(&f, 0)[3 * k + c], flat[c]);
    ddpm_folder_free(&f);
}

/* Random crop and hflip: the draws of imagefolder.h, in order, from the generator. */
static void test_random_crop_and_flip(void **state) {
    (void)state;
    png("a.png", 7, 4, 3, 9); /* stored 7 x 4: slack 3 */
    png("b.png", 4, 6, 3, 8); /* stored 4 x 6: slack 2 along y */
    sink s = {0};
    ddpm_folder_options o = opts(4, 3, &s);
    ddpm_image_folder f;
    assert_int_equal(load(&f, &o, NULL), DDPM_OK);
    int idx[6] = {0, 1, 0, 1, 0, 1};
    float out[6 * 48];
    ddpm_rng rng, ref;
    ddpm_rng_seed(&rng, 42);
    ref = rng;
    ddpm_folder_batch(out, &f, idx, 6, DDPM_CROP_RANDOM, true, &rng);
    int flips = 0, offs[4] = {0};
    for (int b = 0; b < 6; b++) {
        int i = idx[b], W = f.w[i], H = f.h[i];
        int off = (int)ddpm_rng_below(&ref, (uint32_t)((W > H ? W : H) - 4) + 1);
        int flip = (int)ddpm_rng_below(&ref, 2);
        flips += flip, offs[off]++;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++) {
                    int sx = (flip ? 3 - x : x) + (W > H ? off : 0), sy = y + (W > H ? 0 : off);
                    float want = image(&f, i)[(sy * W + sx) * 3 + c] / 127.5f - 1.0f;
                    assert_float_equal(out[b * 48 + (c * 4 + y) * 4 + x], want, 0);
                }
    }
    assert_memory_equal(&rng, &ref, sizeof rng); /* exactly those draws */
    assert_true(flips > 0 && flips < 6);          /* seed 42 checks both paths */
    /* no generator needed without random crop or flip: center crop of image 1 is rows 1..4 */
    ddpm_folder_batch(out, &f, (int[]){1}, 1, DDPM_CROP_CENTER, false, NULL);
    assert_float_equal(out[0], image(&f, 1)[(1 * 4) * 3] / 127.5f - 1.0f, 0);
    /* the trainer's view: every image's center crop, planar, as the batch gives it */
    ddpm_dataset ds;
    assert_int_equal(ddpm_folder_to_dataset(&ds, &f), DDPM_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.c, 3);
    assert_int_equal(ds.h, 4);
    assert_null(ds.labels); /* no class folders */
    for (int i = 0; i < 2; i++) {
        ddpm_folder_batch(out, &f, &i, 1, DDPM_CROP_CENTER, false, NULL);
        for (int k = 0; k < 48; k++) assert_float_equal(out[k], ds.pixels[i * 48 + k] / 127.5f - 1.0f, 0);
    }
    ddpm_dataset_free(&ds);
    ddpm_folder_free(&f);
}

/* ---- bad files, labels ------------------------------------------------------------------- */

/* The tree of the next tests: classes Bird, cat, dog (bytewise order), a
 * root-level image, nested folders, and every kind of bad entry. */
static void bad_tree(void) {
    png("Bird/b1.png", 5, 5, 3, 1);
    png("cat/c1.png", 6, 5, 3, 2);
    png("cat/c2.png", 5, 9, 1, 3);
    png("dog/sub/deeper/d1.png", 8, 8, 4, 4);
    png("root.png", 5, 5, 3, 5);
    write_bytes("cat/notes.txt", "hello, not an image\n", 20);
    write_bytes("dog/empty.png", "", 0);
    size_t n;
    uint8_t *b = read_bytes(at("cat/c1.png"), &n);
    write_bytes("dog/truncated.png", b, n / 2);
    free(b);
    uint8_t *p = pattern(16, 16, 3, 7);
    assert_true(stbi_write_jpg(at("dog/full.jpg"), 16, 16, 3, p, 90));
    b = read_bytes(at("dog/full.jpg"), &n);
    write_bytes("dog/truncated.jpg", b, n - 40);
    unlink(at("dog/full.jpg"));
    free(b);
    free(p);
    png16("Bird/bomb.png", 4, 4, 20000, 20000); /* claims 400 Mpx: refused from the header */
    symlink("..", at("dog/sub/loop"));          /* dog/sub/loop -> dog: a loop */
    symlink("nowhere.png", at("cat/dangling.png"));
    mkfifo(at("cat/fifo"), 0644);
    write_bytes(".hidden/h.png", "x", 1); /* ignored */
    mkdir(at("empty_class"), 0755);
}

static void test_bad_files_and_labels(void **state) {
    (void)state;
    bad_tree();
    sink s = {0};
    ddpm_folder_options o = opts(4, 3, &s);
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load(&f, &o, &r), DDPM_OK);
    assert_int_equal(f.n, 5);
    assert_int_equal(r.skipped[DDPM_SKIP_NOT_IMAGE], 2);  /* notes.txt, empty.png */
    assert_int_equal(r.skipped[DDPM_SKIP_CORRUPT], 2);    /* truncated.png, truncated.jpg */
    assert_int_equal(r.skipped[DDPM_SKIP_TOO_LARGE], 1);  /* bomb.png */
    assert_int_equal(r.skipped[DDPM_SKIP_UNREADABLE], 2); /* dangling link, fifo */
    assert_int_equal(r.skipped[DDPM_SKIP_LOOP], 1);
    assert_int_equal(r.skipped_total, 8);
    assert_int_equal(s.warns, 8);
    assert_memory_equal(s.kinds, r.skipped, sizeof s.kinds);
    assert_non_null(strstr(s.msgs, "/cat/notes.txt': not an image"));
    assert_non_null(strstr(s.msgs, "/dog/truncated.png': corrupt"));
    assert_non_null(strstr(s.msgs, "/dog/truncated.jpg': corrupt"));
    assert_non_null(strstr(s.msgs, "/Bird/bomb.png': 20000 x 20000 pixels"));
    assert_non_null(strstr(s.msgs, "/dog/sub/loop': directory already visited"));
    assert_int_equal(cli_lines(s.msgs), 8);
    assert_int_equal(f.num_classes, 4);
    const char *cls[4] = {"Bird", "cat", "dog", "empty_class"};
    int count[4] = {1, 2, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(f.class_names[i], cls[i]);
        assert_int_equal(f.class_count[i], count[i]);
    }
    int labels[5] = {0, 1, 1, 2, -1}; /* b1, c1, c2, d1, root */
    for (int i = 0; i < 5; i++) assert_int_equal(f.labels[i], labels[i]);
    ddpm_folder_free(&f);

    o.strict = true; /* the first skip is the error */
    assert_int_equal(load(&f, &o, &r), DDPM_ERR_FORMAT);
    assert_non_null(strstr(ddpm_last_error(), "(strict: a skipped file is an error)"));
    assert_int_equal(f.n, 0);
}

static void test_pixel_cap(void **state) {
    (void)state;
    png("a.png", 40, 40, 3, 1);
    png("b.png", 30, 30, 3, 1);
    sink s = {0};
    ddpm_folder_options o = opts(8, 3, &s);
    o.max_pixels = 1000;
    ddpm_image_folder f;
    ddpm_folder_report r;
    assert_int_equal(load(&f, &o, &r), DDPM_OK);
    assert_int_equal(f.n, 1);
    assert_int_equal(r.skipped[DDPM_SKIP_TOO_LARGE], 1);
    assert_non_null(strstr(s.msgs, "a.png': 40 x 40 pixels is more than the cap of 1000"));
    ddpm_folder_free(&f);
    o.max_pixels = 100; /* nothing left */
    assert_int_equal(load(&f, &o, &r), DDPM_ERR_FORMAT);
    assert_non_null(strstr(ddpm_last_error(), "no usable image among 2 files"));
}

static void test_no_images(void **state) {
    (void)state;
    sink s = {0};
    ddpm_folder_options o = opts(8, 3, &s);
    ddpm_image_folder f;
    assert_int_equal(load(&f, &o, NULL), DDPM_ERR_FORMAT); /* empty */
    write_bytes("a/readme.md", "# hi\n", 5);
    assert_int_equal(load(&f, &o, NULL), DDPM_ERR_FORMAT);
    assert_non_null(strstr(ddpm_last_error(), "no usable image among 1 files"));
    assert_int_equal(ddpm_folder_load(&f, "/nonexistent/dir", &o, NULL), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), "'/nonexistent/dir'"));
    o.channels = 2;
    assert_int_equal(load(&f, &o, NULL), DDPM_ERR_ARG);
}

/* ---- the cache ------------------------------------------------------------------------------ */

static int tmp_files(const char *dir) { /* leftover temporaries of atomic writes */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '\\.tmp\\.' >/dev/null", dir);
    return system(cmd) == 0;
}

static void same(const ddpm_image_folder *a, const ddpm_image_folder *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->num_classes, b->num_classes);
    for (int i = 0; i < a->n; i++) {
        assert_int_equal(a->w[i], b->w[i]);
        assert_int_equal(a->h[i], b->h[i]);
        assert_int_equal(a->labels[i], b->labels[i]);
        assert_int_equal(a->offset[i], b->offset[i]);
    }
    size_t bytes = a->offset[a->n - 1] + (size_t)a->w[a->n - 1] * a->h[a->n - 1] * a->c;
    assert_memory_equal(a->pixels, b->pixels, bytes);
    for (int i = 0; i < a->num_classes; i++) assert_string_equal(a->class_names[i], b->class_names[i]);
}

static void test_cache(void **state) {
    (void)state;
    bad_tree();
    char cache[512];
    snprintf(cache, sizeof cache, "%s.cache", g_dir); /* outside the folder */
    sink s1 = {0}, s2 = {0};
    ddpm_folder_options o = opts(4, 3, &s1);
    o.cache_path = cache;
    ddpm_image_folder a, b;
    ddpm_folder_report r;
    assert_int_equal(load(&a, &o, &r), DDPM_OK);
    assert_false(r.from_cache);
    assert_string_equal(r.cache_error, "");
    assert_true(cli_exists(cache));
    o.ctx = &s2;
    assert_int_equal(load(&b, &o, &r), DDPM_OK); /* reused, skip messages replayed */
    assert_true(r.from_cache);
    assert_int_equal(s2.last_done, 0);           /* nothing decoded */
    assert_string_equal(s1.msgs, s2.msgs);
    assert_int_equal(r.skipped_total, 8);
    same(&a, &b);
    for (int i = 0; i < a.num_classes; i++) assert_int_equal(a.class_count[i], b.class_count[i]);
    ddpm_folder_free(&b);

    o.alpha = DDPM_ALPHA_BLACK; /* other settings: decoded again */
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_false(r.from_cache);
    ddpm_folder_free(&b);
    o.alpha = DDPM_ALPHA_WHITE;
    assert_int_equal(load(&b, &o, &r), DDPM_OK); /* the file now holds the black variant */
    assert_false(r.from_cache);
    ddpm_folder_free(&b);

    struct timespec ts[2] = {{1000000, 0}, {1000000, 0}}; /* changed mtime */
    assert_int_equal(utimensat(AT_FDCWD, at("cat/c1.png"), ts, 0), 0);
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_false(r.from_cache);
    same(&a, &b);
    ddpm_folder_free(&b);
    png("cat/c3.png", 5, 5, 3, 9); /* a new file */
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_false(r.from_cache);
    assert_int_equal(b.n, a.n + 1);
    ddpm_folder_free(&b);
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_true(r.from_cache);
    ddpm_folder_free(&b);

    /* a damaged cache is ignored and replaced */
    size_t n;
    uint8_t *bytes = read_bytes(cache, &n);
    FILE *fp = fopen(cache, "wb");
    fwrite(bytes, 1, n - 5, fp);
    fclose(fp);
    free(bytes);
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_false(r.from_cache);
    ddpm_folder_free(&b);
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_true(r.from_cache);
    ddpm_folder_free(&b);
    char parent[512];
    snprintf(parent, sizeof parent, "%s", cache);
    *strrchr(parent, '/') = '\0';
    assert_false(tmp_files(parent));
    unlink(cache);

    /* an unwritable cache path is a warning, not a failure */
    o.cache_path = "/nonexistent/dir/cache.u8";
    assert_int_equal(load(&b, &o, &r), DDPM_OK);
    assert_non_null(strstr(r.cache_error, "/nonexistent/dir/cache.u8"));
    ddpm_folder_free(&b);
    ddpm_folder_free(&a);
}

static void test_default_cache_path(void **state) {
    (void)state;
    char base[300], p1[1024], p2[1024];
    snprintf(base, sizeof base, "%s/cachebase/x", g_dir);
    setenv("DDPM_CACHE_DIR", base, 1);
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    mkdir(at("data"), 0755);
    assert_int_equal(ddpm_folder_default_cache_path(p1, sizeof p1, at("data"), &o), DDPM_OK);
    assert_true(strncmp(p1, base, strlen(base)) == 0);
    assert_non_null(strstr(p1, "-s32-c3-white.u8"));
    struct stat st;
    assert_int_equal(stat(base, &st), 0); /* created */
    char rel[1100];
    snprintf(rel, sizeof rel, "%s/./data", g_dir); /* same folder, other spelling */
    assert_int_equal(ddpm_folder_default_cache_path(p2, sizeof p2, rel, &o), DDPM_OK);
    assert_string_equal(p1, p2);
    unsetenv("DDPM_CACHE_DIR");
}

/* The --alpha and --crop names, both ways, and the message for a wrong one. */
static void test_mode_names(void **state) {
    (void)state;
    assert_int_equal(ddpm_alpha_parse("black"), DDPM_ALPHA_BLACK);
    assert_int_equal(ddpm_alpha_parse("white"), DDPM_ALPHA_WHITE);
    assert_string_equal(ddpm_alpha_name(DDPM_ALPHA_BLACK), "black");
    assert_int_equal(ddpm_crop_parse("random"), DDPM_CROP_RANDOM);
    assert_string_equal(ddpm_crop_name(DDPM_CROP_CENTER), "center");
    assert_string_equal(ddpm_crop_name((ddpm_crop_mode)2), "?");
    assert_int_equal(ddpm_alpha_parse("grey"), -1);
    assert_string_equal(ddpm_last_error(), "unknown background 'grey' (expected white or black)");
    assert_int_equal(ddpm_crop_parse("Center"), -1);
    assert_string_equal(ddpm_last_error(), "unknown crop 'Center' (expected center or random)");
}

static void test_classes_json(void **state) {
    (void)state;
    char *names[4] = {"cat", "a \"quoted\" name", "back\\slash", "tab\there"};
    char *json = ddpm_folder_classes_json(names, 4);
    assert_string_equal(json, "[\"cat\",\"a \\\"quoted\\\" name\",\"back\\\\slash\",\"tab\\u0009here\"]");
    char **back;
    int n;
    assert_int_equal(ddpm_folder_classes_parse(json, &back, &n), DDPM_OK);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) assert_string_equal(back[i], names[i]);
    ddpm_folder_classes_free(back, n);
    free(json);
    assert_int_equal(ddpm_folder_classes_parse("[]", &back, &n), DDPM_OK);
    assert_int_equal(n, 0);
    const char *bad[] = {"", "[", "[\"a\"", "[\"a\",]", "[\"a\"]x", "[a]", "[\"\\q\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(ddpm_folder_classes_parse(bad[i], &back, &n), DDPM_ERR_FORMAT);
        assert_null(back);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_formats, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_alpha_and_gray, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_resize_hand_computed, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_sizes, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_random_crop_and_flip, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_bad_files_and_labels, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_pixel_cap, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_no_images, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_cache, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_default_cache_path, make_dir, remove_dir),
        cmocka_unit_test(test_classes_json),
        cmocka_unit_test(test_mode_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
