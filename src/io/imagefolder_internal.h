/* imagefolder_internal.h: what imagefolder.c (scan, decode) and
 * imagefolder_cache.c (the decoded cache) share. Not public API. */
#ifndef DDPM_IO_IMAGEFOLDER_INTERNAL_H
#define DDPM_IO_IMAGEFOLDER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "ddpm/imagefolder.h"

#define DDPM_FOLDER_CACHE_VERSION 1u

/* One skipped file: its kind and one-line message (malloc'ed). */
typedef struct {
    int kind;
    char *msg;
} folder_skip;

typedef struct {
    folder_skip *v;
    int n, cap;
} folder_skips;

ddpm_status folder_skips_add(folder_skips *s, int kind, char *msg); /* takes msg */
void folder_skips_free(folder_skips *s);

/* Reads the cache at path into *f and *skips when its key matches. Returns
 * DDPM_OK when loaded; DDPM_ERR_IO when absent, stale or unreadable (the
 * caller decodes instead; the message says why). */
ddpm_status folder_cache_read(const char *path, const uint64_t key[2], const ddpm_folder_options *o,
                              ddpm_image_folder *f, folder_skips *skips);
/* Writes *f and skips atomically. */
ddpm_status folder_cache_write(const char *path, const uint64_t key[2], const ddpm_folder_options *o,
                               const ddpm_image_folder *f, const folder_skips *skips);

/* True when stb_image would decode the n bytes at b as a TGA (stb_impl.c):
 * every other format's test fails and the TGA test passes. */
bool ddpm_stb_is_tga(const unsigned char *b, size_t n);

#endif
