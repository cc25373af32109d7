/* imagefolder.h: a folder of image files as a dataset (`ddpm train --data DIR`).
 *
 * Scanning. DIR is walked recursively; directories are followed through
 * symbolic links, but each directory (device, inode) is entered once, so a
 * symlink loop cannot recurse. Names starting with '.' are ignored (hidden
 * files, .git, ...). Files are taken in bytewise order of their path relative
 * to DIR, so the order never depends on the filesystem.
 *
 * Labels (the ImageFolder convention of torchvision): every top-level
 * subdirectory of DIR is a class; the classes are numbered in bytewise order
 * of their names (0, 1, ...); an image anywhere below DIR/NAME/ has the label
 * of NAME. Images directly in DIR have no class (label -1).
 *
 * Decoding (stb_image: PNG incl. 16-bit, JPEG, BMP, GIF (first frame), TGA,
 * PSD, PNM, HDR). The header is read first (stbi_info): a file stb_image does
 * not recognise is "not an image"; one whose header claims more than
 * max_pixels pixels is refused before anything is decoded (decompression
 * bombs); a PNG without its IEND chunk, a JPEG without its EOI marker, a GIF
 * without its trailer, or any file stb_image fails to decode, is "corrupt".
 * Transparent pixels are composited onto white or black (alpha == 255 keeps
 * the colour, 0 gives the background), colour is converted to gray (ITU-R
 * BT.601 luma, rounded) for channels == 1, gray is replicated for channels
 * == 3. Then each image is resized (stb_image_resize: box filter = area
 * average when shrinking, Catmull-Rom when enlarging, edge clamp, linear in
 * the stored values) so that its SHORTER side is `size`; the longer side becomes
 * round(long * size / short), but at most 2 * size: a more elongated image is
 * first center-cropped to 2:1. An image whose shorter side already is `size`
 * is not resampled.
 *
 * Cropping happens when a batch is drawn (ddpm_folder_batch): center (offset
 * floor((L - size) / 2) along the longer side L) or random (offset uniform in
 * 0 .. L - size, from the caller's generator). This is torchvision's
 * Resize(size) + CenterCrop/RandomCrop(size): the shorter side is exactly
 * `size`, so the crop only moves along the longer side and a square image is
 * always used whole. Keeping the long side in memory lets one decoded copy
 * (and one cache file) serve both crop modes.
 *
 * Bad files are skipped and counted by kind; each skip gets a one-line
 * message naming the file ('a/b.png': not an image (...)), passed to the
 * `warn` callback in file order. strict turns the first skip into the error.
 * A folder with no usable image is an error.
 *
 * Cache. With cache_path set, the decoded images are stored in one uint8 file
 * keyed by a 128-bit hash of the file list (relative paths, sizes,
 * modification times in ns) and of the settings that change the decoded
 * bytes (size, channels, alpha, max_pixels, format version). A later load
 * with the same key maps the file (mmap, read-only) instead of decoding,
 * so it starts at once whatever the size (the skip messages are stored too
 * and replayed); any change to the folder or the settings
 * decodes again and replaces the file. The file is written atomically
 * (temporary file, fsync, rename): never partial. A cache that cannot be
 * read is ignored (decoded again); one that cannot be written is a warning
 * (cache_error in the report), not a failure. Note: a change of permissions
 * alone does not change the key (touch the file).
 *
 * Cache file layout (little-endian): "DDPMFC01", u32 header bytes, u32
 * version, u64 key[2], u32 size, channels, alpha, n, nclasses, nskips; then
 * nclasses names (u32 length + bytes), nskips messages (u32 kind, u32 length
 * + bytes), n records (u32 w, h, i32 label), then the pixels of every image in
 * order, each (h, w, channels) interleaved. The file size must match exactly.
 */
#ifndef DDPM_IMAGEFOLDER_H
#define DDPM_IMAGEFOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/data.h"
#include "ddpm/rng.h"

#define DDPM_FOLDER_MAX_PIXELS ((int64_t)1 << 25) /* default header cap: 33.5 Mpx */
#define DDPM_FOLDER_MAX_FILE_BYTES ((int64_t)1 << 30)
#define DDPM_FOLDER_MAX_DEPTH 64
#define DDPM_FOLDER_MAX_FILES 10000000

typedef enum { DDPM_ALPHA_WHITE = 0, DDPM_ALPHA_BLACK = 1 } ddpm_alpha_mode;
typedef enum { DDPM_CROP_CENTER = 0, DDPM_CROP_RANDOM = 1 } ddpm_crop_mode;
/* "white" / "black" and "center" / "random" <-> mode; parse returns -1 if
 * unknown (the last error lists the known ones), name "?" if invalid. */
int ddpm_alpha_parse(const char *name);
const char *ddpm_alpha_name(ddpm_alpha_mode m);
int ddpm_crop_parse(const char *name);
const char *ddpm_crop_name(ddpm_crop_mode m);

/* Why a file was skipped. */
typedef enum {
    DDPM_SKIP_NOT_IMAGE = 0, /* stb_image does not recognise the header */
    DDPM_SKIP_CORRUPT,       /* recognised, but truncated or undecodable */
    DDPM_SKIP_TOO_LARGE,     /* header claims more than max_pixels */
    DDPM_SKIP_UNREADABLE,    /* cannot open / read (permissions, I/O error, not a regular file) */
    DDPM_SKIP_LOOP,          /* a directory already visited (symlink loop or duplicate link) */
    DDPM_SKIP_KINDS
} ddpm_skip_kind;

typedef struct {
    int size;              /* side of the training images, >= 1 */
    int channels;          /* 1 or 3 */
    ddpm_alpha_mode alpha; /* background for transparent pixels */
    bool strict;           /* a skipped file is an error */
    int64_t max_pixels;    /* header cap (width * height); <= 0: DDPM_FOLDER_MAX_PIXELS */
    const char *cache_path; /* NULL: no cache */
    /* Called (on one thread at a time) as files are decoded: done of total. */
    void (*progress)(void *ctx, int done, int total);
    /* Called once per skipped file, in file order, with its one-line message. */
    void (*warn)(void *ctx, ddpm_skip_kind kind, const char *msg);
    void *ctx;
} ddpm_folder_options;

/* size 32, channels 3, alpha white, not strict, default cap, no cache. */
void ddpm_folder_options_default(ddpm_folder_options *o);

typedef struct {
    int files;                  /* regular files found (not hidden) */
    int skipped[DDPM_SKIP_KINDS];
    int skipped_total;
    bool from_cache;            /* the images came from cache_path */
    char cache_error[512];      /* why the cache could not be written ("" if fine) */
} ddpm_folder_report;

typedef struct {
    int n;            /* usable images */
    int c, size;      /* channels, the output side */
    int *w, *h;       /* (n) stored sizes: min(w, h) == size, max <= 2 * size */
    size_t *offset;   /* (n) byte offset of image i in pixels */
    const uint8_t *pixels; /* images (h[i], w[i], c) interleaved, one after another (read-only:
                            * from the cache it is the file itself, mapped) */
    int *labels;      /* (n) class index, or -1 for an image directly in DIR */
    int num_classes;  /* top-level subdirectories */
    char **class_names; /* (num_classes) in index order */
    int *class_count; /* (num_classes) usable images per class */
    void *map_;       /* private: the mapped cache file, or NULL */
    size_t map_len_;
} ddpm_image_folder;

/* Scan, decode (or read the cache), fill *f. report may be NULL. On failure
 * *f is empty; the message names the folder or the file. */
ddpm_status ddpm_folder_load(ddpm_image_folder *f, const char *dir, const ddpm_folder_options *o,
                             ddpm_folder_report *report);
void ddpm_folder_free(ddpm_image_folder *f);

/* True when dir holds IDX files of the MNIST layout (then it is not read as a
 * folder of images). */
bool ddpm_folder_is_idx_dir(const char *dir);

/* The default cache file for (dir, settings), written to out (cap bytes):
 * <base>/folder-<hash of the absolute path of dir>-s<size>-c<channels>-<alpha>.u8
 * with base = $DDPM_CACHE_DIR, else $XDG_CACHE_HOME/ddpm, else
 * $HOME/.cache/ddpm. The directory is created when missing. */
ddpm_status ddpm_folder_default_cache_path(char *out, size_t cap, const char *dir,
                                           const ddpm_folder_options *o);

/* out (B, c, size, size) = images idx[0..B) cropped, optionally flipped,
 * scaled to [-1, 1] (x / 127.5 - 1). For every image, in order: with
 * DDPM_CROP_RANDOM one ddpm_rng_below(rng, L - size + 1) for the offset
 * along the longer side L; with hflip one ddpm_rng_below(rng, 2) (1 =
 * mirror left-right). rng may be NULL when neither is drawn. The draws
 * depend only on rng's state, so a generator restored from a checkpoint
 * reproduces the same batches. */
void ddpm_folder_batch(float *out, const ddpm_image_folder *f, const int *idx, int B,
                       ddpm_crop_mode crop, bool hflip, ddpm_rng *rng);

/* One image file decoded as a folder's image is (size, channels, alpha and
 * max_pixels of o; strict does not apply: any problem is the error, with the
 * folder loader's message), center-cropped to size x size: *px (c, size,
 * size) planar, malloc'ed. */
ddpm_status ddpm_image_file_load(uint8_t **px, const char *path, const ddpm_folder_options *o);

/* An image file's width, height and channels in the file (1 gray, 2 gray +
 * alpha, 3 RGB, 4 RGBA), from its header. */
ddpm_status ddpm_image_file_info(const char *path, int *w, int *h, int *comp);

/* The non-hidden names in directory path, in bytewise order: *names and each
 * name malloc'ed, *n of them. A directory that cannot be opened is not an
 * error here: *err gets its errno (0 otherwise) and *n is 0. */
ddpm_status ddpm_dir_names(const char *path, char ***names, int *n, int *err);

/* A ddpm_dataset of the images center-cropped to (n, c, size, size), planar,
 * with the labels (NULL when there are no classes or some image has none).
 * Free with ddpm_dataset_free. */
ddpm_status ddpm_folder_to_dataset(ddpm_dataset *ds, const ddpm_image_folder *f);

/* The class map as one metadata string: a JSON array of the names in index
 * order, e.g. ["cat","dog"] (", \ and control characters escaped). Returns
 * a malloc'ed string, or NULL (message set) on failure. */
char *ddpm_folder_classes_json(char *const *names, int n);
/* Parse such a string back: *names (malloc'ed array of malloc'ed strings),
 * *n. Free with ddpm_folder_classes_free. */
ddpm_status ddpm_folder_classes_parse(const char *json, char ***names, int *n);
void ddpm_folder_classes_free(char **names, int n);

/* The name of a skip kind: "not an image", "corrupt", "too large",
 * "unreadable", "symlink loop". */
const char *ddpm_skip_kind_name(ddpm_skip_kind k);

#endif
