/* make_seeds: writes the seed corpora of the fuzz targets into DIR
 * (tests/fuzz/corpus): small valid files made by the library itself.
 *     build-fuzz/fuzz/make_seeds tests/fuzz/corpus        (scripts/fuzz.sh --seeds)
 * Checkpoints use the smallest model there is (ch 2, one level, one
 * ResBlock, no attention) so a seed is a few kilobytes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/train.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

static char g_root[512];

static const char *at(const char *target, const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g_root, target, name);
    return path;
}

static void ok(ddpm_status s) {
    if (s != DDPM_OK) {
        fprintf(stderr, "make_seeds: %s\n", ddpm_last_error());
        exit(1);
    }
}

static void idx_seeds(void) {
    uint8_t px[2 * 3 * 4 * 5];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    int lab_dims[1] = {6};
    for (int gz = 0; gz < 2; gz++) {
        const char *t = gz ? "idx" : "idx_gz"; /* fuzz_idx_gz gzips its input itself: raw seeds */
        ok(ddpm_idx_write(at(t, "labels.idx"), px, 1, lab_dims));
        ok(ddpm_idx_write_images(at(t, "images.idx"), px, 2, 1, 4, 5));
        ok(ddpm_idx_write_images(at(t, "colour.idx"), px, 2, 3, 4, 5));
    }
    ok(ddpm_idx_write(at("idx", "labels.idx.gz"), px, 1, lab_dims));
    ok(ddpm_idx_write_images(at("idx", "images.idx.gz"), px, 2, 1, 4, 5));
    ok(ddpm_idx_write_images(at("idx", "colour.idx.gz"), px, 2, 3, 4, 5));
}

static void tiny_config(ddpm_unet_config *c) {
    ddpm_unet_config_default(c);
    c->res = 4;
    c->ch = 2;
    c->ch_mult[0] = 1;
    c->num_levels = 1;
    c->num_res_blocks = 1;
    c->num_attn = 0;
    c->groups = 1;
}

static void checkpoint_seeds(void) {
    ddpm_train_config tc;
    ddpm_train_config_default(&tc);
    tiny_config(&tc.model);
    tc.batch = 2;
    tc.T = 10;
    tc.iters = 4;
    tc.warmup = 1;
    tc.seed = 5;
    tc.ema_decay = 0.0f; /* no ema.* copy: a smaller seed */
    ddpm_trainer *tr;
    ok(ddpm_trainer_create(&tr, &tc));
    /* six 4x4 images, so the epoch order (data_seed/epoch/pos) is saved too */
    static uint8_t px[6 * 16];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 13);
    ddpm_dataset ds = {6, 1, 4, 4, px, NULL, 0};
    ok(ddpm_trainer_set_data(tr, &ds, "seed-data"));
    ok(ddpm_trainer_save(tr, at("checkpoint", "train.safetensors")));
    ddpm_train_stats st;
    ok(ddpm_trainer_next(tr, &st));
    ok(ddpm_trainer_save(tr, at("checkpoint", "train-step1.safetensors")));
    ok(ddpm_trainer_save(tr, at("safetensors", "train.safetensors")));
    /* the model alone, with attention and classes */
    ddpm_unet_config c;
    tiny_config(&c);
    c.attn_res[0] = 4;
    c.num_attn = 1;
    c.num_classes = 2;
    ddpm_param_info *table;
    int n;
    size_t total;
    ok(ddpm_unet_param_layout(&c, &table, &n, &total));
    float *w = calloc(total, sizeof *w);
    for (size_t i = 0; i < total; i++) w[i] = (float)i * 0.25f - 3.0f;
    ok(ddpm_checkpoint_save(at("checkpoint", "model.safetensors"), &c, w, NULL));
    free(w);
    free(table);
    ddpm_trainer_free(tr);

    /* generic safetensors: scalar, empty tensor, escapes and UTF-8 in names and metadata */
    float v[6] = {1, 2, 3, 4, 5, 6};
    ddpm_st_entry e[3] = {{"a\"b\\c\n\xc3\xa9", 2, {2, 3}, v}, {"scalar", 0, {0}, v}, {"empty", 2, {0, 4}, NULL}};
    ddpm_st_meta m[2] = {{"k", "v \xf0\x9f\x98\x80"}, {"\t", ""}};
    ok(ddpm_st_save(at("safetensors", "small.safetensors"), e, 3, m, 2));
    ok(ddpm_st_save(at("safetensors", "empty.safetensors"), NULL, 0, NULL, 0));
}

static void args_seeds(void) {
    static const struct {
        const char *name;
        const char *text;
        size_t len;
    } s[] = {
#define A(n, t) {n, t, sizeof t - 1}
        A("ints", "--iters\0" "100\0" "--shift=-5\0" "-s\0" "18446744073709551615"),
        A("floats", "--lr\0" "1e-3\0" "--guidance=-2.5\0" "--dropout\0" "0.1"),
        A("model", "--ch\0" "64\0" "--ch-mult=1,2,2,4\0" "--attn\0" "none\0" "--groups\0" "8\0" "--size\0" "32"),
        A("strings", "-o\0" "out.png\0" "--force\0" "--list\0" "1,2,3"),
        A("help", "--help"),
        A("list", "1,22,333,4444"),
#undef A
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) {
        FILE *f = fopen(at("args", s[i].name), "wb");
        if (!f || fwrite(s[i].text, 1, s[i].len, f) != s[i].len || fclose(f)) exit(1);
    }
}

static void write_text(const char *target, const char *name, const char *text, size_t len) {
    FILE *f = fopen(at(target, name), "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f)) exit(1);
}

/* fuzz_csv: the formats csv.h accepts, and fuzz_folder: small images in
 * every format stb_image_write has, plus a class-map JSON string. */
static void csv_folder_seeds(void) {
#define T(t, n, s) write_text(t, n, s, sizeof s - 1)
    T("csv", "points.csv", "x,y\n0.5,-1\n1e-3, 2.25 \n\n-0.0,3,extra\n");
    T("csv", "crlf.csv", "1,2\r\n3,4\r\n");
    T("csv", "noheader.csv", "0.1,0.2");
    T("folder", "classes.json", "[\"cat\",\"dog\\\"s\",\"\\u00e9\\n\"]");
#undef T
    enum { W = 12, H = 9 };
    unsigned char px[W * H * 4];
    for (int i = 0; i < W * H * 4; i++) px[i] = (unsigned char)(i * 29 + (i % 4 == 3 ? 200 : 0));
    if (!stbi_write_png(at("folder", "rgba.png"), W, H, 4, px, W * 4) ||
        !stbi_write_png(at("folder", "gray.png"), W, H, 1, px, W) ||
        !stbi_write_bmp(at("folder", "rgb.bmp"), W, H, 3, px) ||
        !stbi_write_tga(at("folder", "ga.tga"), W, H, 2, px) ||
        !stbi_write_jpg(at("folder", "rgb.jpg"), W, H, 3, px, 80))
        exit(1);
}

/* fuzz_edit: a first byte (bit 0: RGB model, bit 1: mask) before a file of
 * fuzz_folder's images or an IDX file (the model's 12 px, and 4x5). */
static void prefixed(const char *name, uint8_t mode, const char *src) {
    static char from[1024];
    snprintf(from, sizeof from, "%s", src);
    FILE *in = fopen(from, "rb");
    static uint8_t buf[1 << 16];
    size_t n = in ? fread(buf + 1, 1, sizeof buf - 1, in) : 0;
    if (!in || fclose(in) || n == 0) exit(1);
    buf[0] = mode;
    FILE *f = fopen(at("edit", name), "wb");
    if (!f || fwrite(buf, 1, n + 1, f) != n + 1 || fclose(f)) exit(1);
}

static void edit_seeds(void) {
    prefixed("gray_png", 0, at("folder", "gray.png"));
    prefixed("rgba_png", 1, at("folder", "rgba.png"));
    prefixed("mask_png", 2, at("folder", "gray.png"));
    prefixed("mask_jpg", 3, at("folder", "rgb.jpg"));
    prefixed("colour_idx", 1, at("idx", "colour.idx"));
    uint8_t px[2 * 3 * 12 * 12];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);
    ok(ddpm_idx_write_images(at("edit", "tmp.idx"), px, 2, 1, 12, 12));
    prefixed("gray12_idx", 0, at("edit", "tmp.idx"));
    ok(ddpm_idx_write_images(at("edit", "tmp.idx"), px, 2, 3, 12, 12));
    prefixed("rgb12_idx", 1, at("edit", "tmp.idx"));
    remove(at("edit", "tmp.idx"));
}

/* fuzz_folder_cache: a decoded cache of a two-class folder of the images
 * above, written by the folder loader itself (once image folders exist). */
#if __has_include("ddpm/imagefolder.h")
#include "ddpm/imagefolder.h"
static void folder_cache_seeds(void) {
    char dir[600], sub[700], cmd[1600];
    snprintf(dir, sizeof dir, "%s/.folder-tmp", g_root);
    const char *cls[2] = {"a", "b"}, *img[3] = {"rgba.png", "gray.png", "rgb.bmp"};
    mkdir(dir, 0755);
    for (int c = 0; c < 2; c++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, cls[c]);
        mkdir(sub, 0755);
        for (int i = c; i < 3; i++) {
            snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", at("folder", img[i]), sub);
            if (system(cmd)) exit(1);
        }
    }
    FILE *f = fopen(at("folder", "not-an-image.txt"), "wb"); /* one skip message in the cache */
    if (!f || fputs("hello", f) < 0 || fclose(f)) exit(1);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/a/'", at("folder", "not-an-image.txt"), dir);
    if (system(cmd)) exit(1);
    remove(at("folder", "not-an-image.txt"));
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = 8; /* the settings fuzz_folder_cache reads with */
    o.channels = 3;
    o.cache_path = at("folder_cache", "cache.u8");
    ddpm_image_folder fo;
    ok(ddpm_folder_load(&fo, dir, &o, NULL));
    ddpm_folder_free(&fo);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) exit(1);
}
#else
static void folder_cache_seeds(void) {}
#endif

/* fuzz_toy: a `ddpm toy` checkpoint of a 4-wide MLP on 8 points, before
 * and after two steps (once the toy trainer exists). */
#if __has_include("ddpm/toy.h")
#include "ddpm/toy.h"
static void toy_seeds(void) {
    ddpm_toy_config c;
    ddpm_toy_config_default(&c);
    c.hidden = 4;
    c.T = 10;
    c.batch = 4;
    c.iters = 4;
    float xy[16];
    for (int i = 0; i < 16; i++) xy[i] = (float)(i % 5) * 0.25f - 0.5f;
    ddpm_toy_scaling sc = ddpm_toy_scaling_none();
    ddpm_toy *t;
    ok(ddpm_toy_create(&t, &c, xy, 8, &sc, "seed"));
    ok(ddpm_toy_save(t, at("toy", "start.safetensors")));
    ddpm_toy_stats st;
    ok(ddpm_toy_step(t, &st));
    ok(ddpm_toy_step(t, &st));
    ok(ddpm_toy_save(t, at("toy", "step2.safetensors")));
    ddpm_toy_free(t);
}
#else
static void toy_seeds(void) {}
#endif

/* fuzz_report: a log.csv as `ddpm train --eval-every` writes it, NUL, a
 * run.txt; and a toy log alone. */
static void report_seeds(void) {
#define T(n, s) write_text("report", n, s, sizeof s - 1)
    T("train.txt", "iter,loss,lr,grad_norm,time_s,fid,precision,recall,label_accuracy\n"
                   "1,0.9,0.001,2.5,0.4,,,,\n2,0.5,0.001,1.5,0.8,80.5,0.1,0.2,\n3,0.3,0.0005,1,1.2,,,,\n"
                   "\0command=ddpm train --out a\nstatus=running\nthreads=2\n");
    T("toy.txt", "step,loss,grad_norm\n1,1.2,0.8\n2,0.9,0.7\n3,0.8");
#undef T
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    snprintf(g_root, sizeof g_root, "%s", argv[1]);
    mkdir(g_root, 0755);
    idx_seeds();
    checkpoint_seeds();
    args_seeds();
    csv_folder_seeds();
    edit_seeds();
    folder_cache_seeds();
    toy_seeds();
    report_seeds();
    return 0;
}
