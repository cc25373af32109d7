/* folder.h: the CLI side of image-folder datasets (src/cli/folder.c): the
 * --data DIR options of `ddpm train`, the class names in checkpoints, and
 * --label NAME of `ddpm sample`. */
#ifndef DDPM_CLI_FOLDER_H
#define DDPM_CLI_FOLDER_H

#include <stdbool.h>

#include "ddpm/checkpoint.h"
#include "ddpm/imagefolder.h"

#include "ddpm/meta.h"

/* --label K|NAME -> *label: -1 when arg is NULL; digits are an index; any
 * other text is looked up in the checkpoint's class names. Returns 0, or 2
 * after printing a usage error (unknown name, no names in the checkpoint). */
int ddpm_cli_label(const char *cmd, const char *arg, const ddpm_checkpoint *ck, int *label);

/* When the checkpoint holds class names: "classes (folder name -> label):"
 * and one "  index  name" line each. */
void ddpm_cli_print_classes(const ddpm_checkpoint *ck);

/* ---- the dataset of `ddpm train`: IDX files or an image folder ---------------- */

#include "args.h"
#include "ddpm/data.h"

/* The image-folder flags of `ddpm train`. */
typedef struct {
    const char *alpha, *crop; /* "white" | "black", "center" | "random" */
    bool hflip, no_hflip, strict;
} ddpm_folder_flags;

#define DDPM_FOLDER_OPTS 5
void ddpm_folder_flags_init(ddpm_folder_flags *f);
/* Writes DDPM_FOLDER_OPTS entries: --alpha, --crop, --hflip, --no-hflip, --strict. */
void ddpm_folder_opts(ddpm_opt *opts, ddpm_folder_flags *f);
/* Checks the names of --alpha and --crop; 0 or 2 after a usage error. */
int ddpm_folder_flags_check(const char *cmd, const ddpm_folder_flags *f);

typedef struct {
    bool folder;            /* an image folder (else IDX files) */
    ddpm_dataset ds;        /* what the trainer reads: the IDX set, or the folder center-cropped */
    ddpm_image_folder img;  /* folder */
    int n, c, h, w, num_classes;
    ddpm_crop_mode crop;
    bool hflip;
    uint64_t aug_seed;      /* offsets and flips: per (aug_seed, iteration, image index) */
    char *classes_json;     /* the class names for the checkpoint, or NULL */
    const char *alpha;      /* "white" or "black" */
    ddpm_st_meta meta[4];   /* ddpm_cli_data_meta's entries */
} ddpm_cli_data;

/* Loads the directory `dir`: IDX files when it holds
 * train-images-idx3-ubyte[.gz], else a folder of images at `size` x `size`
 * with `channels` (0 = the defaults: 32 px, 3 channels), decoded through the
 * cache (ddpm_folder_default_cache_path), progress and skip counts on
 * stderr. `seed` is the run's seed. Returns 0 or 1 after printing the error. */
int ddpm_cli_data_load(const char *cmd, ddpm_cli_data *d, const char *dir, const ddpm_folder_flags *ff,
                       int size, int channels, uint64_t seed);
/* The trainer's batch hook part: rewrite x0 (n, c, h, w) for images idx[0..n)
 * of iteration `iter` with random crops and flips (nothing to do without
 * them). Each image's draws come from a generator seeded from (aug_seed,
 * iter, its index), so resume and data-parallel ranks see the same ones. */
void ddpm_cli_data_augment(const ddpm_cli_data *d, float *x0, const int *idx, int n, int64_t iter);
bool ddpm_cli_data_augments(const ddpm_cli_data *d);
/* The metadata a checkpoint needs to reload the data the same way (*n
 * entries, at most 4, in d->meta): data_hflip, and for folders data_alpha,
 * data_crop and, with classes, the class names. */
const ddpm_st_meta *ddpm_cli_data_meta(ddpm_cli_data *d, int *n);
/* On --resume: the folder flags saved in the checkpoint at `path` (copied
 * into static storage). */
void ddpm_folder_flags_from_ckpt(ddpm_folder_flags *f, const char *path);
/* With --classes: every image of a folder must lie in a class subfolder.
 * Returns 0, or 1 after printing the error. */
int ddpm_cli_data_check_labels(const char *cmd, const ddpm_cli_data *d, const char *dir);
void ddpm_cli_data_free(ddpm_cli_data *d);

#endif
