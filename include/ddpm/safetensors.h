/* safetensors.h: read and write float32 tensors in the safetensors format.
 *
 * The format (https://github.com/huggingface/safetensors):
 *
 *     u64 N           header length, little-endian
 *     N bytes         UTF-8 JSON object: tensor name -> {"dtype": "F32",
 *                     "shape": [d0, d1, ...], "data_offsets": [begin, end]},
 *                     plus an optional "__metadata__" object of string -> string.
 *                     Offsets are relative to the first byte after the header.
 *                     Writers pad the header with spaces to a multiple of 8.
 *     data            the tensors' raw little-endian bytes, back to back.
 *
 * This module is generic: it knows nothing about models. Only dtype F32 is
 * supported. The checkpoint module decides which tensors and metadata to use.
 *
 * Loading treats the file as hostile. Everything is checked before it is
 * trusted (header length against the file size and a 100 MB cap, strict JSON
 * with a nesting limit, dtype, shapes and their overflow, offsets against the
 * data buffer, byte size against the shape, tensors tiling the data buffer
 * exactly with no overlap, gap or trailing bytes, unique names, string
 * metadata). A failure returns DDPM_ERR_IO or DDPM_ERR_FORMAT with a one-line
 * message naming the file and the problem, e.g.
 *
 *     'model.safetensors': header length 18446744073709551615 exceeds file size 1234
 *
 * Saving is atomic: the file is written to "<path>.tmp.XXXXXX" (mkstemp) in the same
 * directory, flushed and fsync'ed, renamed over `path`, and the directory is
 * fsync'ed. On failure the temporary file is removed and an existing `path`
 * is left untouched.
 */
#ifndef DDPM_SAFETENSORS_H
#define DDPM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"

#define DDPM_ST_MAX_DIMS 8
#define DDPM_ST_MAX_HEADER ((uint64_t)100 << 20) /* bytes of JSON header accepted */

/* A loaded tensor. name and data point into buffers owned by the file. */
typedef struct {
    const char *name;
    int ndim;                          /* 0 (scalar) ... DDPM_ST_MAX_DIMS */
    int64_t shape[DDPM_ST_MAX_DIMS];   /* shape[0..ndim), unused entries are 0 */
    size_t numel;                      /* product of the shape (1 for a scalar) */
    const float *data;                 /* [numel], host byte order, 4-byte aligned */
} ddpm_st_tensor;

/* One metadata entry: both strings are UTF-8 without NUL bytes. */
typedef struct {
    const char *key;
    const char *value;
} ddpm_st_meta;

typedef struct {
    ddpm_st_tensor *tensors; /* [ntensors], in header order */
    int ntensors;
    ddpm_st_meta *meta;      /* [nmeta], in header order */
    int nmeta;
    /* private */
    char *header_;                     /* decoded JSON text the strings point into */
    float *data_;                      /* the data buffer, 64-byte aligned */
    const ddpm_st_tensor **by_name_;   /* [ntensors] sorted by name */
    const ddpm_st_meta **meta_by_key_; /* [nmeta] sorted by key */
} ddpm_st_file;

/* Read and validate `path`. On failure *f is left empty (ddpm_st_free is then
 * harmless) and the error message names the file and the problem. */
ddpm_status ddpm_st_load(ddpm_st_file *f, const char *path);

/* The tensor called `name`, or NULL. O(log n). */
const ddpm_st_tensor *ddpm_st_find(const ddpm_st_file *f, const char *name);

/* The metadata value of `key`, or NULL. O(log n). */
const char *ddpm_st_meta_get(const ddpm_st_file *f, const char *key);

void ddpm_st_free(ddpm_st_file *f);

/* A copy of f's metadata in one malloc'ed block (entries, then the strings;
 * free() it), *n entries; NULL with *n = 0 when there is none, and NULL with
 * DDPM_ERR_NOMEM set when memory runs out (*n = -1). */
ddpm_st_meta *ddpm_st_meta_copy(const ddpm_st_file *f, int *n);
/* The value of key in meta[0..n), or NULL. */
const char *ddpm_st_meta_find(const ddpm_st_meta *meta, int n, const char *key);

/* Typed metadata values of f (read from `path`, named in messages). Each
 * fails with DDPM_ERR_FORMAT and a one-line message naming the file, the
 * key and the value: "'PATH': metadata lacks 'KEY'", or "'PATH': metadata
 * 'KEY' is not an integer: 'VALUE'" (likewise out of range, not a number,
 * an unknown value). Integers are decimal digits (a leading '-' only when
 * lo < 0), without overflow; numbers are finite. */
ddpm_status ddpm_meta_i64(const ddpm_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                          int64_t *out);
ddpm_status ddpm_meta_u64(const ddpm_st_file *f, const char *path, const char *key, uint64_t *out);
ddpm_status ddpm_meta_float(const ddpm_st_file *f, const char *path, const char *key, float lo, float hi,
                            float *out);
/* parse maps a name to an enum value, -1 when unknown (e.g. ddpm_schedule_parse);
 * expected (may be NULL) lists the names for the message, e.g. "eps, v or x0". */
ddpm_status ddpm_meta_enum(const ddpm_st_file *f, const char *path, const char *key, int (*parse)(const char *),
                           const char *expected, int *out);

/* A tensor to save: data is [product of shape] floats in host byte order. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[DDPM_ST_MAX_DIMS];
    const float *data;
} ddpm_st_entry;

/* Write the tensors (header and data in the order given, "__metadata__" first
 * when nmeta > 0) to `path` atomically. Names and metadata strings must be
 * valid UTF-8, names unique and not "__metadata__", metadata keys unique:
 * otherwise DDPM_ERR_ARG and nothing is written. I/O failures return
 * DDPM_ERR_IO with the errno text. */
ddpm_status ddpm_st_save(const char *path, const ddpm_st_entry *tensors, int ntensors,
                         const ddpm_st_meta *meta, int nmeta);

#endif
