/* folder_ref.c: an image folder with class subfolders as the reference of
 * `ddpm eval` (see eval.h): the whole folder at the model's size, a
 * content-hashed held-out split for the evaluation network, generated
 * images as a directory of PNGs. */
#define _POSIX_C_SOURCE 200809L
#include "eval/clf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/util.h"
#include "ddpm/datasource.h"
#include "ddpm/meta.h"
#include "eval/sha256.h"

/* A folder's network trains for about this many steps (at least 3 epochs,
 * at most 100): the IDX recipe's 3 epochs are 2,800 steps on MNIST, a few
 * hundred on a folder of some thousand images. */
#define FOLDER_STEPS 2400

bool ddpm_eval_held_out(const uint8_t *px, size_t D, int label) {
    ddpm_sha256 c;
    uint8_t dg[32], lb[4] = {(uint8_t)label, (uint8_t)(label >> 8), (uint8_t)(label >> 16), (uint8_t)(label >> 24)};
    ddpm_sha256_init(&c);
    ddpm_sha256_update(&c, px, D);
    ddpm_sha256_update(&c, lb, 4);
    ddpm_sha256_final(&c, dg);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | dg[i];
    return v % DDPM_EVAL_HELD_MOD == 0;
}

/* out (c, S, S) = px rotated by k quarter turns counterclockwise. */
static void rotate(uint8_t *out, const uint8_t *px, int c, int S, int k) {
    for (int p = 0; p < c; p++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sy = y, sx = x;
                for (int t = 0; t < k; t++) { /* where (y, x) of the turned image comes from */
                    int ny = sx, nx = S - 1 - sy;
                    sy = ny, sx = nx;
                }
                out[((size_t)p * S + y) * S + x] = px[((size_t)p * S + sy) * S + sx];
            }
}

/* train and held: the two sides of all's split; without labels (rotation
 * prediction) each image four times, turned by 0, 1, 2, 3 quarter turns,
 * labelled by the turns, its side chosen as for label -1. */
static ddpm_status split(ddpm_dataset *train, ddpm_dataset *held, const ddpm_dataset *all) {
    size_t D = (size_t)all->c * all->h * all->w;
    int copies = all->labels ? 1 : DDPM_EVAL_ROTATIONS;
    ddpm_dataset *side[2] = {train, held};
    for (int k = 0; k < 2; k++) {
        *side[k] = (ddpm_dataset){.c = all->c, .h = all->h, .w = all->w,
                                  .num_classes = all->labels ? all->num_classes : DDPM_EVAL_ROTATIONS};
        side[k]->pixels = malloc((size_t)all->n * copies * D + 1);
        side[k]->labels = malloc(((size_t)all->n * copies + 1) * sizeof(int));
        if (!side[k]->pixels || !side[k]->labels) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the split");
    }
    for (int i = 0; i < all->n; i++) {
        const uint8_t *px = all->pixels + (size_t)i * D;
        ddpm_dataset *d = side[ddpm_eval_held_out(px, D, all->labels ? all->labels[i] : -1)];
        for (int r = 0; r < copies; r++) {
            rotate(d->pixels + (size_t)d->n * D, px, all->c, all->h, r);
            d->labels[d->n++] = all->labels ? all->labels[i] : r;
        }
    }
    return DDPM_OK;
}

/* The folder at the model's size into s->test, reduced for the network by
 * s->ref.down = 2^k so that it is at most DDPM_EVAL_MAX_NET_RES px. */
static ddpm_status load_reference(ddpm_eval_session *s, const char *dir, const ddpm_eval_folder_opts *fo) {
    int f = 1;
    while (s->size / f > DDPM_EVAL_MAX_NET_RES && (s->size / f) % 2 == 0) f *= 2;
    if (s->size / f % 4 || s->size / f < 4) /* before decoding the folder at that size */
        return ddpm_error(DDPM_ERR_ARG, "'%s' at %d px: the evaluation network takes a multiple of 4 up to %d px "
                          "(larger even sizes halved until they fit)", dir, s->size, DDPM_EVAL_MAX_NET_RES);
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    o.data = dir, o.size = s->size, o.channels = s->channels, o.alpha = fo->alpha, o.hflip = 0;
    ddpm_data d;
    ddpm_status st = ddpm_data_open(&d, &o);
    if (st) return st;
    s->rotation = d.num_classes < 2 || !d.ds.labels;
    s->test = (ddpm_dataset){.n = d.n, .c = d.c, .h = s->size / f, .w = s->size / f,
                             .num_classes = s->rotation ? 0 : d.num_classes};
    if (!st && f == 1) {
        s->test.pixels = d.ds.pixels, s->test.labels = d.ds.labels;
        d.ds.pixels = NULL, d.ds.labels = NULL;
    } else if (!st) {
        s->test.pixels = malloc((size_t)d.n * d.c * s->test.h * s->test.w + 1);
        s->test.labels = malloc(((size_t)d.n + 1) * sizeof(int));
        if (!s->test.pixels || !s->test.labels) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for '%s'", dir);
        else ddpm_eval_downsample(s->test.pixels, d.ds.pixels, d.n, d.c, s->size, s->size, f);
        if (!st && !s->rotation) memcpy(s->test.labels, d.ds.labels, (size_t)d.n * sizeof(int));
    }
    if (s->rotation) free(s->test.labels), s->test.labels = NULL;
    s->ref.down = f; /* ddpm_eval_session_open_ex restores it after ddpm_eval_ref_init */
    ddpm_data_close(&d);
    return st;
}

static ddpm_status folder_net(ddpm_eval_session *s, const char *dir, const char *net, int threads,
                              ddpm_clf_progress_fn on_train, void *ud) {
    snprintf(s->net_path, sizeof s->net_path, "%s", net ? net : "");
    ddpm_dataset train = {0}, held = {0};
    ddpm_status st = split(&train, &held, &s->test);
    s->n_train = train.n, s->n_held = held.n;
    if (!st && !net) {
        ddpm_clf_train_opts o;
        ddpm_clf_train_default(&o);
        int e = train.n > 0 ? (FOLDER_STEPS * o.batch + train.n - 1) / train.n : 3;
        o.epochs = e < 3 ? 3 : e > 100 ? 100 : e;
        if (train.n < 2 * o.batch || held.n < 1)
            st = ddpm_error(DDPM_ERR_ARG, "'%s': %d images to train the evaluation network on and %d held out (it needs "
                            "at least %d and 1)", dir, train.n, held.n, 2 * o.batch);
        const char *env = getenv("DDPM_EVAL_CACHE");
        ddpm_set_threads(1); /* conv weight gradients are summed per thread */
        if (!st) st = clf_obtain_sets(s->net_path, sizeof s->net_path, &s->trained, &s->trained_acc,
                                      env && *env ? env : DDPM_EVAL_CACHE_DIR, dir, &train, &held, &o, on_train, ud);
        ddpm_set_threads(threads);
    }
    ddpm_dataset_free(&train);
    ddpm_dataset_free(&held);
    return st ? st : eval_session_load_net(s, dir);
}

ddpm_eval_folder_opts ddpm_eval_folder_opts_for(const ddpm_pipeline *p, const char *images, const char *alpha) {
    if (!alpha && p) alpha = ddpm_pipeline_meta(p, DDPM_META_DATA_ALPHA);
    ddpm_eval_folder_opts fo = {.alpha = alpha && !strcmp(alpha, "black") ? DDPM_ALPHA_BLACK : DDPM_ALPHA_WHITE,
                                .images = images};
    if (p) fo.size = ddpm_pipeline_info_get(p)->cfg.res, fo.channels = ddpm_pipeline_info_get(p)->cfg.in_ch;
    return fo;
}

ddpm_status ddpm_eval_session_open_ex(ddpm_eval_session *s, const char *dir, const ddpm_eval_folder_opts *fo,
                                      const char *net, int threads, ddpm_clf_progress_fn on_train, void *ud) {
    if (ddpm_folder_is_idx_dir(dir)) return ddpm_eval_session_open(s, dir, net, threads, on_train, ud);
    ddpm_eval_folder_opts def = {0};
    if (!fo) fo = &def;
    memset(s, 0, sizeof *s);
    s->folder = true;
    s->size = fo->size, s->channels = fo->channels;
    ddpm_status st = DDPM_OK;
    if (!s->size && fo->images) st = ddpm_eval_input_shape(&s->size, &s->channels, fo->images);
    if (!s->size) s->size = 32;
    if (!s->channels) s->channels = 3;
    if (!st) st = load_reference(s, dir, fo);
    int down = s->ref.down;
    if (!st) st = folder_net(s, dir, net, threads, on_train, ud);
    if (!st) st = ddpm_eval_ref_init(&s->ref, s->net, &s->test);
    s->ref.down = down;
    snprintf(s->folder_desc, sizeof s->folder_desc, "%d px, %d channels, alpha %s, center crop; the network sees %d px, "
             "trained on %d, held out %d%s", s->size, s->channels, ddpm_alpha_name(fo->alpha), s->test.h, s->n_train,
             s->n_held, s->rotation ? " (no classes: it predicts rotations, 4 per image)" : "");
    if (st) ddpm_eval_session_close(s);
    return st;
}

/* ---- generated images ------------------------------------------------------------------ */

static bool is_png(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcasecmp(name + n - 4, ".png"); /* ddpm_dir_names drops hidden names */
}

/* The PNG names of dir in bytewise order: *names (malloc'ed strings), *n. */
static ddpm_status list_pngs(char ***names, int *n, const char *dir) {
    int all, err;
    ddpm_status st = ddpm_dir_names(dir, names, &all, &err);
    if (!st && err) st = ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", dir, strerror(err));
    *n = 0;
    for (int i = 0; i < all; i++) { /* keep the PNGs, in order */
        if (is_png((*names)[i])) (*names)[(*n)++] = (*names)[i];
        else free((*names)[i]);
    }
    if (!st && *n == 0) st = ddpm_error(DDPM_ERR_FORMAT, "'%s': no PNG images", dir);
    return st;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

ddpm_status ddpm_eval_input_shape(int *size, int *channels, const char *path) {
    if (is_dir(path)) {
        char **names, file[4096];
        int n, w = 0, h = 0, comp = 0;
        ddpm_status st = list_pngs(&names, &n, path);
        if (!st) snprintf(file, sizeof file, "%s/%s", path, names[0]);
        if (!st) st = ddpm_image_file_info(file, &w, &h, &comp);
        free_names(names, n);
        if (!st && w != h) st = ddpm_error(DDPM_ERR_FORMAT, "'%s' is %d x %d; generated images are square", file, w, h);
        if (!st) *size = w, *channels = comp <= 2 ? 1 : 3;
        return st;
    }
    ddpm_idx im = {0};
    ddpm_status st = ddpm_idx_read(&im, path, DDPM_IDX_IMAGES);
    if (st) return st;
    int c = im.ndim == 4 ? im.dims[1] : 1, h = im.dims[im.ndim - 2], w = im.dims[im.ndim - 1];
    ddpm_idx_free(&im);
    if (h != w) return ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d x %d images; generated images are square", path, h, w);
    if (c != 1 && c != 3) return ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d-channel images (1 or 3 for a folder)", path, c);
    *size = w, *channels = c;
    return DDPM_OK;
}

static ddpm_status load_png_dir(uint8_t **u8, int *n, const ddpm_eval_session *s, const char *dir,
                                const ddpm_eval_folder_opts *fo) {
    char **names;
    int count;
    ddpm_status st = list_pngs(&names, &count, dir);
    if (!st && *n > count) st = ddpm_error(DDPM_ERR_ARG, "-n %d exceeds the %d PNG images in '%s'", *n, count, dir);
    else if (!st && (*n > 0 ? *n : count) < DDPM_EVAL_K + 1)
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d PNG images; the metrics need at least %d", dir, count, DDPM_EVAL_K + 1);
    if (!st && *n <= 0) *n = count;
    size_t D = (size_t)s->channels * s->size * s->size;
    if (!st && !(*u8 = malloc((size_t)*n * D))) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", *n);
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = s->size, o.channels = s->channels, o.alpha = fo ? fo->alpha : DDPM_ALPHA_WHITE;
    for (int i = 0; !st && i < *n; i++) {
        char file[4096];
        int w, h, comp;
        uint8_t *px = NULL;
        snprintf(file, sizeof file, "%s/%s", dir, names[i]);
        if (!(st = ddpm_image_file_info(file, &w, &h, &comp)) && (w != s->size || h != s->size))
            st = ddpm_error(DDPM_ERR_FORMAT, "'%s' is %d x %d; the reference is %d x %d", file, w, h, s->size, s->size);
        if (!st && !(st = ddpm_image_file_load(&px, file, &o))) memcpy(*u8 + (size_t)i * D, px, D);
        free(px);
    }
    free_names(names, count);
    return st;
}

ddpm_status ddpm_eval_session_load(uint8_t **u8, int **labels, int *n, const ddpm_eval_session *s, const char *path,
                                   const char *labels_path, const ddpm_eval_folder_opts *fo) {
    if (!is_dir(path)) {
        if (labels_path && s->rotation)
            return ddpm_error(DDPM_ERR_ARG, "--labels '%s': the reference folder has no classes", labels_path);
        ddpm_dataset like = {.c = s->channels, .h = s->size, .w = s->size, .num_classes = s->test.num_classes};
        return ddpm_eval_load_images(u8, labels, n, path, labels_path, &like);
    }
    *u8 = NULL, *labels = NULL;
    if (labels_path && s->rotation)
        return ddpm_error(DDPM_ERR_ARG, "--labels '%s': the reference folder has no classes", labels_path);
    ddpm_status st = load_png_dir(u8, n, s, path, fo);
    if (!st && labels_path) st = eval_load_labels(labels, labels_path, *n, s->test.num_classes);
    if (st) {
        free(*u8), free(*labels);
        *u8 = NULL, *labels = NULL;
    }
    return st;
}
