/* datasource.h: the training data of `ddpm train` (and of any program that
 * embeds the trainer), opened by one call: a directory of IDX files (MNIST,
 * Fashion-MNIST) or a folder of images (class subfolders optional), with the
 * augmentation (random horizontal flips; random crops of folder images) as
 * the trainer's batch hook and the loading options recorded in every
 * checkpoint (meta.h: data_hflip, data_alpha, data_crop, classes) so a
 * resumed run reads the same data the same way.
 *
 *     ddpm_data_opts o;
 *     ddpm_data_opts_default(&o);
 *     o.data = "runs/../my_images";            // or "mnist", "fashion"
 *     ddpm_data d;
 *     ddpm_data_open(&d, &o);                   // decodes (through the cache)
 *     ddpm_data_attach(&d, tr);                 // dataset, metadata, augmentation
 *     ...train...
 *     ddpm_data_close(&d);
 *
 * The library reads no environment: o.env_dir is where the caller's
 * $DDPM_DATA_DIR goes.
 */
#ifndef DDPM_DATASOURCE_H
#define DDPM_DATASOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ddpm/data.h"
#include "ddpm/imagefolder.h"
#include "ddpm/progress.h"
#include "ddpm/safetensors.h"
#include "ddpm/train.h"

typedef struct {
    const char *data;       /* "mnist" (NULL too), "fashion", or a directory: IDX files or images */
    const char *data_dir;   /* mnist / fashion: look here first (NULL: skip) */
    const char *env_dir;    /* mnist: then here (the CLI's $DDPM_DATA_DIR; NULL: skip), then data/mnist */
    int size, channels;     /* image folders: the training size and channels (0: 32, 3) */
    ddpm_alpha_mode alpha;  /* image folders: what transparency becomes */
    ddpm_crop_mode crop;    /* image folders: center, or random crops of the longer side */
    int hflip;              /* random horizontal flips: 1, 0, or -1 (on for folders, off for IDX) */
    bool strict;            /* image folders: a file that is not a usable image is an error */
    uint64_t seed;          /* the run's seed: the augmentation's streams */
    /* image folders, while decoding: a progress line (progress.h) and the
     * first DDPM_DATA_SHOWN_SKIPS skip messages, each line starting with
     * `prefix` (NULL: silent)... */
    FILE *log;
    const char *prefix;
    /* ...or callbacks (when set, instead): done of total files, and each
     * skipped file's one-line message (imagefolder.h) */
    void (*progress)(void *ctx, int done, int total);
    void (*warn)(void *ctx, ddpm_skip_kind kind, const char *msg);
    void *ctx;
} ddpm_data_opts;

/* mnist, no data_dir or env_dir, 32 px RGB folders composited on white,
 * center crops, flips by kind, seed 0. */
void ddpm_data_opts_default(ddpm_data_opts *o);
/* A resumed run: the loading options its checkpoint recorded (alpha, crop,
 * hflip), as the trainer read them; keys it lacks leave o as it is. */
void ddpm_data_opts_from_trainer(ddpm_data_opts *o, const ddpm_trainer *tr);

/* Where `data` lives: "mnist" is the first of data_dir, env_dir and
 * data/mnist that holds the files, "fashion" data_dir or Debian's
 * /usr/share/datasets/fashion-mnist, anything else a directory. The message
 * says how to get missing data. */
ddpm_status ddpm_data_find(char *out_dir, size_t cap, const ddpm_data_opts *o);

typedef struct {
    char dir[1024];         /* the directory read */
    bool folder;            /* an image folder (else IDX files) */
    ddpm_dataset ds;        /* what the trainer reads: the IDX set, or the folder center-cropped */
    ddpm_image_folder img;  /* folder */
    int n, c, h, w, num_classes;
    ddpm_crop_mode crop;
    ddpm_alpha_mode alpha;
    bool hflip;
    uint64_t aug_seed;      /* augmentation streams: per (aug_seed, iteration, image index) */
    char *classes_json;     /* the class names for the checkpoint, or NULL */
    /* image folders: what loading found, for the caller to report */
    ddpm_folder_report report;
    char cache[4096];       /* the cache file ("" when there is none) */
    char cache_warning[600]; /* why there is no cache ("" if there is) */
    ddpm_st_meta meta_[4];
    ddpm_progress decoding_;
    char decoding_what_[128];
    int shown_;
} ddpm_data;

/* What loading a folder found, for people (nothing for IDX data), each line
 * starting with `prefix`: the skip counts ("skipped 1 of 10 files: 1 not an
 * image; --strict makes this an error", saying when more than
 * DDPM_DATA_SHOWN_SKIPS were skipped that only those were shown by the
 * caller's warn callback), why there is no cache, and "N images, K
 * classes[, from the cache PATH]". */
#define DDPM_DATA_SHOWN_SKIPS 20
void ddpm_data_print_report(const ddpm_data *d, FILE *out, const char *prefix);

/* Finds (ddpm_data_find) and loads the data. A failure leaves nothing to close. */
ddpm_status ddpm_data_open(ddpm_data *d, const ddpm_data_opts *o);
void ddpm_data_close(ddpm_data *d);

/* Gives the trainer the dataset (named by its directory), the metadata that
 * reloads it the same way, and, when the data is augmented, the batch hook.
 * A class-conditional model needs every folder image in a class subfolder. */
ddpm_status ddpm_data_attach(ddpm_data *d, ddpm_trainer *tr);

/* The augmentation, a ddpm_batch_hook (ctx = the ddpm_data): rewrites x0
 * (n, c, h, w) for images idx[0..n) of iteration `iter` with random crops
 * and flips. Each image's draws come from a generator seeded from
 * (aug_seed, iter, its index), so resume and data-parallel ranks see the
 * same ones. */
void ddpm_data_augment(void *d, float *x0, int *labels, const int *idx, int n, int64_t iter);
bool ddpm_data_augments(const ddpm_data *d);

/* The metadata a checkpoint needs to reload the data the same way (*n
 * entries, at most 4, pointing into d): data_hflip, and for folders
 * data_alpha, data_crop and, with classes, the class names. */
const ddpm_st_meta *ddpm_data_meta(ddpm_data *d, int *n);

#endif
