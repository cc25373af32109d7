/* datasource.c: the training data, IDX files or a folder of images. See
 * datasource.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/datasource.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "ddpm/checkpoint.h"

/* Debian's dataset-fashion-mnist package installs here. */
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* The augmentation's streams differ from the trainer's own (same seed). */
#define AUG_SALT 0xa06f11bULL
#define DDPM_XSTR(x) #x
#define DDPM_STR(x) DDPM_XSTR(x)

void ddpm_data_opts_default(ddpm_data_opts *o) {
    *o = (ddpm_data_opts){.data = "mnist", .alpha = DDPM_ALPHA_WHITE, .crop = DDPM_CROP_CENTER, .hflip = -1};
}

void ddpm_data_opts_from_trainer(ddpm_data_opts *o, const ddpm_trainer *tr) {
    const char *a = ddpm_trainer_resumed_meta(tr, DDPM_META_DATA_ALPHA), *c = ddpm_trainer_resumed_meta(tr, DDPM_META_DATA_CROP),
               *h = ddpm_trainer_resumed_meta(tr, DDPM_META_DATA_HFLIP);
    if (a) o->alpha = !strcmp(a, "black") ? DDPM_ALPHA_BLACK : DDPM_ALPHA_WHITE;
    if (c) o->crop = !strcmp(c, "random") ? DDPM_CROP_RANDOM : DDPM_CROP_CENTER;
    if (h) o->hflip = !strcmp(h, "1");
}

ddpm_status ddpm_data_find(char *out_dir, size_t cap, const ddpm_data_opts *o) {
    char why[1200]; /* the message of ddpm_dataset_find, quoted in ours */
    const char *data = o->data && *o->data ? o->data : "mnist";
    if (!strcmp(data, "mnist")) {
        const char *cand[3] = {o->data_dir, o->env_dir && *o->env_dir ? o->env_dir : NULL, "data/mnist"};
        ddpm_status s = ddpm_dataset_find(out_dir, cap, cand, 3);
        if (s != DDPM_ERR_IO) return s;
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        return ddpm_error(DDPM_ERR_IO, "MNIST not found (%s): run scripts/fetch_mnist.sh or pass --data-dir DIR", why);
    }
    if (!strcmp(data, "fashion") || !strcmp(data, "fashion-mnist")) {
        const char *dir = o->data_dir ? o->data_dir : FASHION_MNIST_DIR;
        ddpm_status s = ddpm_dataset_find(out_dir, cap, &dir, 1);
        if (s != DDPM_ERR_IO) return s;
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        if (o->data_dir) return ddpm_error(DDPM_ERR_IO, "Fashion-MNIST not found (%s)", why);
        return ddpm_error(DDPM_ERR_IO, "Fashion-MNIST not found in '%s': apt-get install dataset-fashion-mnist "
                                       "(or pass --data-dir DIR)", dir);
    }
    struct stat st;
    if (stat(data, &st) != 0 || !S_ISDIR(st.st_mode))
        return ddpm_error(DDPM_ERR_ARG, "--data '%s': not a dataset name (mnist, fashion) nor a directory", data);
    if (strlen(data) >= cap) return ddpm_error(DDPM_ERR_ARG, "data directory path too long: '%s'", data);
    memcpy(out_dir, data, strlen(data) + 1);
    return DDPM_OK;
}

typedef struct {
    ddpm_data *d;
    const ddpm_data_opts *o;
} log_ctx;

static void log_progress(void *ctx, int done, int total) {
    log_ctx *c = ctx;
    ddpm_progress *p = &c->d->decoding_;
    if (!p->what[0]) ddpm_progress_start(p, c->o->log, c->d->decoding_what_, total, "files");
    ddpm_progress_tick(p, done);
    if (done == total) ddpm_progress_done(p);
}

static void log_skip(void *ctx, ddpm_skip_kind k, const char *msg) {
    log_ctx *c = ctx;
    if (c->d->shown_++ < DDPM_DATA_SHOWN_SKIPS) fprintf(c->o->log, "%sskipped %s\n", c->o->prefix ? c->o->prefix : "", msg);
}

static ddpm_status load_folder(ddpm_data *d, const ddpm_data_opts *o) {
    ddpm_folder_options fo;
    ddpm_folder_options_default(&fo);
    fo.size = o->size > 0 ? o->size : 32;
    fo.channels = o->channels > 0 ? o->channels : 3;
    fo.alpha = o->alpha;
    fo.strict = o->strict;
    log_ctx lc = {d, o};
    snprintf(d->decoding_what_, sizeof d->decoding_what_, "%sdecoding images", o->prefix ? o->prefix : "");
    if (o->progress || o->warn) fo.progress = o->progress, fo.warn = o->warn, fo.ctx = o->ctx;
    else if (o->log) fo.progress = log_progress, fo.warn = log_skip, fo.ctx = &lc;
    if (ddpm_folder_default_cache_path(d->cache, sizeof d->cache, d->dir, &fo) == DDPM_OK) fo.cache_path = d->cache;
    else snprintf(d->cache_warning, sizeof d->cache_warning, "%s", ddpm_last_error()), d->cache[0] = '\0';
    ddpm_status s = ddpm_folder_load(&d->img, d->dir, &fo, &d->report);
    if (s) return s;
    if (d->report.cache_error[0]) snprintf(d->cache_warning, sizeof d->cache_warning, "%s", d->report.cache_error);
    d->n = d->img.n, d->c = d->img.c, d->h = d->w = d->img.size;
    d->num_classes = d->img.num_classes;
    if (d->num_classes > 0 && !(d->classes_json = ddpm_folder_classes_json(d->img.class_names, d->num_classes)))
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    return ddpm_folder_to_dataset(&d->ds, &d->img);
}

ddpm_status ddpm_data_open(ddpm_data *d, const ddpm_data_opts *o) {
    memset(d, 0, sizeof *d);
    ddpm_status s = ddpm_data_find(d->dir, sizeof d->dir, o);
    if (s) return s;
    d->folder = !ddpm_folder_is_idx_dir(d->dir);
    d->crop = o->crop;
    d->alpha = o->alpha;
    d->hflip = o->hflip < 0 ? d->folder : o->hflip != 0;
    d->aug_seed = o->seed ^ AUG_SALT;
    if (d->folder) s = load_folder(d, o);
    else if (!(s = ddpm_dataset_load(&d->ds, d->dir, true)))
        d->n = d->ds.n, d->c = d->ds.c, d->h = d->ds.h, d->w = d->ds.w, d->num_classes = d->ds.num_classes;
    if (s) ddpm_data_close(d);
    return s;
}

void ddpm_data_close(ddpm_data *d) {
    ddpm_folder_free(&d->img);
    ddpm_dataset_free(&d->ds);
    free(d->classes_json);
    memset(d, 0, sizeof *d);
}

/* A class-conditional model learns from labels: every folder image needs one. */
static ddpm_status check_labels(const ddpm_data *d) {
    if (!d->folder) return DDPM_OK;
    if (d->num_classes == 0)
        return ddpm_error(DDPM_ERR_ARG, "--classes: '%s' has no subfolders to take the classes from", d->dir);
    int loose = 0;
    for (int i = 0; i < d->n; i++) loose += d->img.labels[i] < 0;
    if (loose)
        return ddpm_error(DDPM_ERR_ARG, "--classes: %d images lie directly in '%s', outside any class subfolder", loose,
                          d->dir);
    return DDPM_OK;
}

ddpm_status ddpm_data_attach(ddpm_data *d, ddpm_trainer *tr) {
    ddpm_status s = DDPM_OK;
    if (ddpm_trainer_config(tr)->model.num_classes > 0) s = check_labels(d);
    if (!s) s = ddpm_trainer_set_data(tr, &d->ds, d->dir);
    int n;
    const ddpm_st_meta *meta = ddpm_data_meta(d, &n);
    if (!s) s = ddpm_trainer_set_user_meta(tr, meta, n);
    if (!s && ddpm_data_augments(d)) ddpm_trainer_set_batch_hook(tr, ddpm_data_augment, d);
    return s;
}

bool ddpm_data_augments(const ddpm_data *d) { return d->hflip || (d->folder && d->crop == DDPM_CROP_RANDOM); }

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

void ddpm_data_augment(void *ctx, float *x0, int *labels, const int *idx, int n, int64_t iter) {
    const ddpm_data *d = ctx;
    if (!ddpm_data_augments(d)) return;
    size_t D = (size_t)d->c * d->h * d->w;
    uint64_t base = ddpm_splitmix64(d->aug_seed ^ (DDPM_GOLDEN_GAMMA * (uint64_t)iter));
    for (int b = 0; b < n; b++) {
        ddpm_rng rng;
        ddpm_rng_seed(&rng, base ^ (DDPM_GOLDEN_GAMMA * ((uint64_t)idx[b] + 1)));
        if (d->folder) ddpm_folder_batch(x0 + b * D, &d->img, idx + b, 1, d->crop, d->hflip, &rng);
        else if (ddpm_rng_below(&rng, 2) == 1) mirror(x0 + b * D, d->c, d->h, d->w);
    }
}

const ddpm_st_meta *ddpm_data_meta(ddpm_data *d, int *n) {
    *n = 0;
    /* IDX digits flip only when asked: without the key a resume keeps the
     * default (off), and a digit run's checkpoint is what it was before
     * folders existed, byte for byte. */
    if (d->folder || d->hflip) d->meta_[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_HFLIP, d->hflip ? "1" : "0"};
    if (d->folder) {
        d->meta_[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_ALPHA, d->alpha == DDPM_ALPHA_BLACK ? "black" : "white"};
        d->meta_[(*n)++] = (ddpm_st_meta){DDPM_META_DATA_CROP, d->crop == DDPM_CROP_RANDOM ? "random" : "center"};
        if (d->classes_json) d->meta_[(*n)++] = (ddpm_st_meta){DDPM_META_CLASSES, d->classes_json};
    }
    return d->meta_;
}

void ddpm_data_print_report(const ddpm_data *d, FILE *out, const char *prefix) {
    const ddpm_folder_report *r = &d->report;
    if (!d->folder || !out) return;
    if (r->skipped_total) {
        fprintf(out, "%sskipped %d of %d files:", prefix, r->skipped_total, r->files);
        for (int k = 0, first = 1; k < DDPM_SKIP_KINDS; k++)
            if (r->skipped[k]) fprintf(out, "%s %d %s", first ? "" : ",", r->skipped[k], ddpm_skip_kind_name(k)), first = 0;
        fprintf(out, "%s; --strict makes this an error\n",
                r->skipped_total > DDPM_DATA_SHOWN_SKIPS ? " (first " DDPM_STR(DDPM_DATA_SHOWN_SKIPS) " shown)" : "");
    }
    if (d->cache_warning[0]) fprintf(out, "%swarning: no cache: %s\n", prefix, d->cache_warning);
    fprintf(out, "%s%d images, %d classes%s%s\n", prefix, d->n, d->num_classes, r->from_cache ? ", from the cache " : "",
            r->from_cache ? d->cache : "");
}
