/* data.h: datasets. IDX files (MNIST, Fashion-MNIST), raw or gzip; finding
 * them on disk; turning them into float batches; the epoch order.
 *
 * IDX format (LeCun): a big-endian u32 magic 0x000008DD, where 0x08 is the
 * element type (unsigned byte, the only one supported) and DD the number of
 * dimensions, then DD big-endian u32 sizes, then the elements in row-major
 * order. Magics used here:
 *     0x00000801  labels        (N)
 *     0x00000803  images        (N, H, W)      grayscale
 *     0x00000804  colour images (N, C, H, W)   written by `ddpm sample --idx`
 * A file is gzip-compressed when it starts with the gzip magic 1f 8b; the
 * name does not matter. Every size is checked before anything is allocated:
 * a raw file must be exactly header + N*H*W bytes long; a gzip stream is
 * inflated in bounded chunks and must produce exactly that many bytes, so a
 * truncated file, trailing bytes or a gzip bomb fail with a message.
 */
#ifndef DDPM_DATA_H
#define DDPM_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/rng.h"

#define DDPM_IDX_LABELS 0x00000801u
#define DDPM_IDX_IMAGES 0x00000803u
#define DDPM_IDX_IMAGES_C 0x00000804u

/* Sanity caps on IDX headers: H, W <= 4096, C <= 4, N <= INT_MAX and at most
 * 16 GiB of payload. */
#define DDPM_IDX_MAX_SIDE 4096
#define DDPM_IDX_MAX_CHANNELS 4
#define DDPM_IDX_MAX_BYTES ((uint64_t)1 << 34)

/* ---- IDX files -------------------------------------------------------------- */

typedef struct {
    uint32_t magic;
    int ndim;      /* 1, 3 or 4 */
    int dims[4];   /* dims[0..ndim) */
    uint8_t *data; /* prod(dims) bytes, row-major; free with ddpm_idx_free */
} ddpm_idx;

/* Read an IDX file of unsigned bytes. `kind` is DDPM_IDX_LABELS or
 * DDPM_IDX_IMAGES; the latter also accepts DDPM_IDX_IMAGES_C (N, C, H, W).
 * On failure *out is empty and the message names the file, e.g.
 *   'train-images-idx3-ubyte.gz': bad magic number 0x00000801 (expected 0x00000803 for images) */
ddpm_status ddpm_idx_read(ddpm_idx *out, const char *path, uint32_t kind);
void ddpm_idx_free(ddpm_idx *idx);

/* Write an IDX file of unsigned bytes with magic 0x0800 | ndim (ndim 1..4).
 * gzip-compressed when path ends in ".gz". Atomic: a temporary file in the
 * same directory is written, fsync'ed and renamed over `path`; on error no
 * file is left behind. */
ddpm_status ddpm_idx_write(const char *path, const uint8_t *data, int ndim, const int *dims);
/* Images (n, c, h, w): magic 0x803 (N, H, W) when c == 1, else 0x804. */
ddpm_status ddpm_idx_write_images(const char *path, const uint8_t *pixels, int n, int c, int h,
                                  int w);
/* Labels [n] in 0..255 as a u8 IDX file (magic 0x801); DDPM_ERR_ARG, and no
 * file, for one outside. */
ddpm_status ddpm_idx_write_labels(const char *path, const int *labels, int n);

/* ---- datasets --------------------------------------------------------------- */

typedef struct {
    int n, c, h, w;
    uint8_t *pixels; /* (n, c, h, w) */
    int *labels;     /* (n), or NULL when the dataset has no labels */
    int num_classes; /* max label + 1, or 0 without labels */
} ddpm_dataset;

/* Load the train or test split from a directory holding the standard names:
 *   train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]    (train)
 *   t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]     (test)
 * The raw name is tried first, then .gz. Both files are required and must
 * hold the same number of items. */
ddpm_status ddpm_dataset_load(ddpm_dataset *ds, const char *dir, bool train);
void ddpm_dataset_free(ddpm_dataset *ds);

/* The first of dirs[0..n) (NULL entries are skipped) that holds the train
 * images (train-images-idx3-ubyte[.gz]), copied to out_dir (cap bytes).
 * Callers list the places they look (a command-line flag, an environment
 * variable, a default); the library reads no environment. DDPM_ERR_IO when
 * none does, naming every directory looked in:
 *   no train-images-idx3-ubyte[.gz] in 'data/mnist', '/srv/mnist' */
ddpm_status ddpm_dataset_find(char *out_dir, size_t cap, const char *const *dirs, int n);

/* ---- batches ---------------------------------------------------------------- */

/* out (B, C, H, W) = pixels of images idx[0..B) scaled to [-1, 1]: x/127.5 - 1. */
void ddpm_dataset_to_float(float *out, const ddpm_dataset *ds, const int *idx, int B);
/* out (B) = labels of images idx[0..B) (ds->labels must not be NULL). */
void ddpm_dataset_get_labels(int *out, const ddpm_dataset *ds, const int *idx, int B);

/* ---- epoch order -------------------------------------------------------------
 * The order in which training visits the dataset (not the diffusion sampler).
 * Visits 0..n-1 in a fresh random order every epoch. The order of epoch e is
 * a Fisher-Yates shuffle (ddpm_rng_below) driven by a generator seeded from
 * (seed, e) alone, so (seed, epoch, pos) is the whole state: save those three
 * numbers and ddpm_epoch_order_resume reproduces the rest of the sequence
 * exactly. A batch that runs past the end of an epoch continues with the
 * next epoch's order, so every batch is full and every index appears exactly
 * once per epoch. Derive `seed` from the run's generator at the start of
 * training (e.g. ddpm_rng_u64(&rng)) and store it in the checkpoint.
 */
typedef struct {
    int n, pos;     /* dataset size; next position in perm (pos == n: epoch done) */
    uint32_t epoch; /* the epoch perm belongs to, counting from 0 */
    uint64_t seed;  /* base seed */
    int *perm;      /* (n) the order of the current epoch */
} ddpm_epoch_order;

ddpm_status ddpm_epoch_order_init(ddpm_epoch_order *s, int n, uint64_t seed);
/* Continue a saved (seed, epoch, pos); 0 <= pos <= n. */
ddpm_status ddpm_epoch_order_resume(ddpm_epoch_order *s, int n, uint64_t seed, uint32_t epoch,
                                int pos);
/* idx (B) = the next B indices. */
void ddpm_epoch_order_next(ddpm_epoch_order *s, int *idx, int B);
void ddpm_epoch_order_free(ddpm_epoch_order *s);

#endif
