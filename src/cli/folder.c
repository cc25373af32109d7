/* folder.c: the CLI side of image folders. See folder.h. */
#include "folder.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

int ddpm_cli_label(const char *cmd, const char *arg, const ddpm_checkpoint *ck, int *label) {
    *label = -1;
    if (!arg) return 0;
    if (all_digits(arg)) {
        errno = 0;
        long v = strtol(arg, NULL, 10);
        if (errno || v > 100000) {
            fprintf(stderr, "ddpm %s: --label %s out of range [0, 100000]\n", cmd, arg);
            return 2;
        }
        *label = (int)v;
        return 0;
    }
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    if (!json) {
        fprintf(stderr, "ddpm %s: --label '%s': the checkpoint '%s' has no class names (it was not "
                        "trained on an image folder); give the class index\n", cmd, arg, ck->path);
        return 2;
    }
    char **names;
    int n;
    if (ddpm_folder_classes_parse(json, &names, &n)) {
        fprintf(stderr, "ddpm %s: '%s': %s\n", cmd, ck->path, ddpm_last_error());
        return 1;
    }
    for (int i = 0; i < n && *label < 0; i++)
        if (!strcmp(names[i], arg)) *label = i;
    if (*label < 0) {
        fprintf(stderr, "ddpm %s: --label '%s': no such class in '%s' (classes:", cmd, arg, ck->path);
        for (int i = 0; i < n && i < 20; i++) fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "%s)\n", n > 20 ? " ..." : "");
    }
    ddpm_folder_classes_free(names, n);
    return *label < 0 ? 2 : 0;
}

void ddpm_cli_print_classes(const ddpm_checkpoint *ck) {
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    char **names;
    int n;
    if (!json || ddpm_folder_classes_parse(json, &names, &n)) return;
    printf("classes (folder name -> label):\n");
    for (int i = 0; i < n; i++) printf("  %5d  %s\n", i, names[i]);
    printf("\n");
    ddpm_folder_classes_free(names, n);
}

/* ---- the dataset of `ddpm train` ------------------------------------------------ */

void ddpm_folder_flags_init(ddpm_folder_flags *f) {
    *f = (ddpm_folder_flags){.alpha = "white", .crop = "center"};
}

void ddpm_folder_opts(ddpm_opt *o, ddpm_folder_flags *f) {
    o[0] = (ddpm_opt){"--alpha", NULL, OPT_STRING, &f->alpha, 0, 0, "BG", "image folders: composite transparency onto white or black (default white)"};
    o[1] = (ddpm_opt){"--crop", NULL, OPT_STRING, &f->crop, 0, 0, "KIND", "image folders: center or random crop of the longer side (default center)"};
    o[2] = (ddpm_opt){"--hflip", NULL, OPT_FLAG, &f->hflip, 0, 0, NULL, "random horizontal flips (default: on for image folders, off for IDX)"};
    o[3] = (ddpm_opt){"--no-hflip", NULL, OPT_FLAG, &f->no_hflip, 0, 0, NULL, "no random horizontal flips"};
    o[4] = (ddpm_opt){"--strict", NULL, OPT_FLAG, &f->strict, 0, 0, NULL, "image folders: a file that is not a usable image is an error"};
}

int ddpm_folder_flags_check(const char *cmd, const ddpm_folder_flags *f) {
    if (strcmp(f->alpha, "white") && strcmp(f->alpha, "black")) {
        fprintf(stderr, "ddpm %s: unknown --alpha '%s' (white, black)\n", cmd, ddpm_show(f->alpha).s);
        return 2;
    }
    if (strcmp(f->crop, "center") && strcmp(f->crop, "random")) {
        fprintf(stderr, "ddpm %s: unknown --crop '%s' (center, random)\n", cmd, ddpm_show(f->crop).s);
        return 2;
    }
    if (f->hflip && f->no_hflip) {
        fprintf(stderr, "ddpm %s: --hflip and --no-hflip contradict each other\n", cmd);
        return 2;
    }
    return 0;
}

typedef struct {
    const char *cmd;
    bool tty;
    double last;
    int warned;
} load_ui;

#define MAX_WARNINGS 20 /* skip messages printed; the rest are counted */

static void on_progress(void *ctx, int done, int total) {
    load_ui *u = ctx;
    double t = ddpm_now();
    if (!u->tty || (done < total && t - u->last < 0.2)) return;
    u->last = t;
    fprintf(stderr, "\r\033[Kddpm %s: decoding images %d/%d%s", u->cmd, done, total, done == total ? "\n" : "");
}

static void on_warn(void *ctx, ddpm_skip_kind k, const char *msg) {
    load_ui *u = ctx;
    if (u->warned++ < MAX_WARNINGS) fprintf(stderr, "ddpm %s: skipped %s\n", u->cmd, msg);
}

static void print_report(const char *cmd, const ddpm_cli_data *d, const ddpm_folder_report *r, const char *cache) {
    if (r->skipped_total) {
        fprintf(stderr, "ddpm %s: skipped %d of %d files:", cmd, r->skipped_total, r->files);
        for (int k = 0, first = 1; k < DDPM_SKIP_KINDS; k++)
            if (r->skipped[k]) fprintf(stderr, "%s %d %s", first ? "" : ",", r->skipped[k], ddpm_skip_kind_name(k)), first = 0;
        fprintf(stderr, "%s\n", r->skipped_total > MAX_WARNINGS ? " (first 20 shown); --strict makes this an error" : "; --strict makes this an error");
    }
    if (r->cache_error[0]) fprintf(stderr, "ddpm %s: warning: no cache: %s\n", cmd, r->cache_error);
    fprintf(stderr, "ddpm %s: %d images, %d classes%s%s\n", cmd, d->n, d->num_classes,
            r->from_cache ? ", from the cache " : "", r->from_cache ? cache : "");
}

static int load_folder(const char *cmd, ddpm_cli_data *d, const char *dir, const ddpm_folder_flags *ff,
                       int size, int channels) {
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = size > 0 ? size : 32;
    o.channels = channels > 0 ? channels : 3;
    o.alpha = !strcmp(ff->alpha, "black") ? DDPM_ALPHA_BLACK : DDPM_ALPHA_WHITE;
    o.strict = ff->strict;
    char cache[4096];
    if (ddpm_folder_default_cache_path(cache, sizeof cache, dir, &o) == DDPM_OK) o.cache_path = cache;
    else fprintf(stderr, "ddpm %s: warning: no cache: %s\n", cmd, ddpm_last_error());
    load_ui u = {cmd, ddpm_cli_tty(), 0, 0};
    o.progress = on_progress, o.warn = on_warn, o.ctx = &u;
    ddpm_folder_report r;
    if (ddpm_folder_load(&d->img, dir, &o, &r)) {
        if (u.tty && !r.from_cache) fputc('\n', stderr);
        ddpm_cli_error(cmd);
        return 1;
    }
    d->folder = true;
    d->n = d->img.n, d->c = d->img.c, d->h = d->w = d->img.size;
    d->num_classes = d->img.num_classes;
    print_report(cmd, d, &r, cache);
    if (d->num_classes > 0 && !(d->classes_json = ddpm_folder_classes_json(d->img.class_names, d->num_classes))) {
        ddpm_cli_error(cmd);
        return 1;
    }
    return 0;
}

int ddpm_cli_data_load(const char *cmd, ddpm_cli_data *d, const char *dir, const ddpm_folder_flags *ff,
                       int size, int channels, uint64_t seed) {
    memset(d, 0, sizeof *d);
    bool folder = !ddpm_folder_is_idx_dir(dir);
    d->crop = !strcmp(ff->crop, "random") ? DDPM_CROP_RANDOM : DDPM_CROP_CENTER;
    d->hflip = ff->no_hflip ? false : ff->hflip ? true : folder;
    d->aug_seed = seed ^ 0xa06f11bULL;
    d->alpha = !strcmp(ff->alpha, "black") ? "black" : "white";
    if (folder) {
        if (load_folder(cmd, d, dir, ff, size, channels)) return 1;
        if (ddpm_folder_to_dataset(&d->ds, &d->img)) {
            ddpm_cli_error(cmd);
            return 1;
        }
        return 0;
    }
    if (ddpm_dataset_load(&d->ds, dir, true)) {
        ddpm_cli_error(cmd);
        return 1;
    }
    d->n = d->ds.n, d->c = d->ds.c, d->h = d->ds.h, d->w = d->ds.w, d->num_classes = d->ds.num_classes;
    return 0;
}

bool ddpm_cli_data_augments(const ddpm_cli_data *d) { return d->hflip || (d->folder && d->crop == DDPM_CROP_RANDOM); }

/* Mirror each row of image x (c, h, w). */
static void mirror(float *x, int c, int h, int w) {
    for (size_t r = 0; r < (size_t)c * h; r++) {
        float *row = x + r * w;
        for (int i = 0; i < w / 2; i++) {
            float t = row[i];
            row[i] = row[w - 1 - i];
            row[w - 1 - i] = t;
        }
    }
}

void ddpm_cli_data_augment(const ddpm_cli_data *d, float *x0, const int *idx, int n, int64_t iter) {
    if (!ddpm_cli_data_augments(d)) return;
    size_t D = (size_t)d->c * d->h * d->w;
    uint64_t base = ddpm_splitmix64(d->aug_seed ^ (DDPM_GOLDEN_GAMMA * (uint64_t)iter));
    for (int b = 0; b < n; b++) {
        ddpm_rng rng;
        ddpm_rng_seed(&rng, base ^ (DDPM_GOLDEN_GAMMA * ((uint64_t)idx[b] + 1)));
        if (d->folder) ddpm_folder_batch(x0 + b * D, &d->img, idx + b, 1, d->crop, d->hflip, &rng);
        else if (ddpm_rng_below(&rng, 2) == 1) mirror(x0 + b * D, d->c, d->h, d->w);
    }
}

const ddpm_st_meta *ddpm_cli_data_meta(ddpm_cli_data *d, int *n) {
    *n = 0;
    /* IDX digits flip only when asked: without the key a resume keeps the
     * default (off), and a digit run's checkpoint is what it was before
     * folders existed, byte for byte. */
    if (d->folder || d->hflip) d->meta[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_HFLIP, d->hflip ? "1" : "0"};
    if (d->folder) {
        d->meta[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_ALPHA, d->alpha};
        d->meta[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_CROP, d->crop == DDPM_CROP_RANDOM ? "random" : "center"};
        if (d->classes_json) d->meta[(*n)++] = (ddpm_st_meta){DDPM_META_CLASSES, d->classes_json};
    }
    return d->meta;
}

void ddpm_folder_flags_from_ckpt(ddpm_folder_flags *f, const char *path) {
    static char alpha[16], crop[16];
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, path)) return; /* the trainer reports a bad checkpoint */
    const char *a = ddpm_checkpoint_meta(&ck, DDPM_META_DATA_ALPHA), *c = ddpm_checkpoint_meta(&ck, DDPM_META_DATA_CROP),
               *h = ddpm_checkpoint_meta(&ck, DDPM_META_DATA_HFLIP);
    if (a) snprintf(alpha, sizeof alpha, "%s", a), f->alpha = alpha;
    if (c) snprintf(crop, sizeof crop, "%s", c), f->crop = crop;
    if (h) f->hflip = !strcmp(h, "1"), f->no_hflip = !f->hflip;
    ddpm_checkpoint_close(&ck);
}

int ddpm_cli_data_check_labels(const char *cmd, const ddpm_cli_data *d, const char *dir) {
    if (!d->folder) return 0;
    int loose = 0;
    for (int i = 0; i < d->n; i++) loose += d->img.labels[i] < 0;
    if (d->num_classes == 0) {
        fprintf(stderr, "ddpm %s: --classes: '%s' has no subfolders to take the classes from\n", cmd, dir);
        return 1;
    }
    if (loose) {
        fprintf(stderr, "ddpm %s: --classes: %d images lie directly in '%s', outside any class subfolder\n", cmd, loose, dir);
        return 1;
    }
    return 0;
}

void ddpm_cli_data_free(ddpm_cli_data *d) {
    ddpm_folder_free(&d->img);
    ddpm_dataset_free(&d->ds);
    free(d->classes_json);
    memset(d, 0, sizeof *d);
}
