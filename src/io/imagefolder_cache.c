/* imagefolder_cache.c: the decoded cache of an image folder (layout in
 * imagefolder.h). Every field read back is checked against the settings and
 * the file's size before it is used, so a damaged cache is ignored, never
 * trusted. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "io/imagefolder_internal.h"

static const char MAGIC[8] = {'D', 'D', 'P', 'M', 'F', 'C', '0', '1'};
#define FIXED_BYTES 56 /* magic, header bytes, version, key[2], six u32 */
#define MAX_HEADER_BYTES ((uint64_t)1 << 30)

/* ---- a growable little-endian byte buffer ------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bytes_out;

static void put(bytes_out *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(bytes_out *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(bytes_out *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(bytes_out *b, const char *s) {
    put_u32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}

/* ---- reading fields back -------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, at;
    bool bad;
} bytes_in;

static uint32_t get_u32(bytes_in *b) {
    if (b->bad || b->n - b->at < 4) {
        b->bad = true;
        return 0;
    }
    const uint8_t *x = b->p + b->at;
    b->at += 4;
    return (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
}

static uint64_t get_u64(bytes_in *b) {
    uint64_t lo = get_u32(b);
    return lo | (uint64_t)get_u32(b) << 32;
}

/* A malloc'ed copy of the next length-prefixed string, or NULL (b->bad set). */
static char *get_str(bytes_in *b) {
    uint32_t len = get_u32(b);
    if (b->bad || b->n - b->at < len) {
        b->bad = true;
        return NULL;
    }
    char *s = malloc((size_t)len + 1);
    if (!s) {
        b->bad = true;
        return NULL;
    }
    memcpy(s, b->p + b->at, len);
    s[len] = '\0';
    b->at += len;
    if (strlen(s) != len) { /* embedded NUL */
        free(s);
        b->bad = true;
        return NULL;
    }
    return s;
}

/* ---- writing ------------------------------------------------------------------------- */

static void put_header(bytes_out *b, const uint64_t key[2], const ddpm_folder_options *o,
                       const ddpm_image_folder *f, const folder_skips *k) {
    put(b, MAGIC, 8);
    put_u32(b, 0); /* header bytes, patched below */
    put_u32(b, DDPM_FOLDER_CACHE_VERSION);
    put_u64(b, key[0]);
    put_u64(b, key[1]);
    uint32_t v[6] = {(uint32_t)o->size, (uint32_t)o->channels, (uint32_t)o->alpha, (uint32_t)f->n,
                     (uint32_t)f->num_classes, (uint32_t)k->n};
    for (int i = 0; i < 6; i++) put_u32(b, v[i]);
    for (int i = 0; i < f->num_classes; i++) put_str(b, f->class_names[i]);
    for (int i = 0; i < k->n; i++) {
        put_u32(b, (uint32_t)k->v[i].kind);
        put_str(b, k->v[i].msg);
    }
    for (int i = 0; i < f->n; i++) {
        put_u32(b, (uint32_t)f->w[i]);
        put_u32(b, (uint32_t)f->h[i]);
        put_u32(b, (uint32_t)f->labels[i]);
    }
    if (!b->oom) {
        uint32_t hb = (uint32_t)b->n;
        uint8_t x[4] = {(uint8_t)hb, (uint8_t)(hb >> 8), (uint8_t)(hb >> 16), (uint8_t)(hb >> 24)};
        memcpy(b->p + 8, x, 4);
    }
}

ddpm_status folder_cache_write(const char *path, const uint64_t key[2], const ddpm_folder_options *o,
                               const ddpm_image_folder *f, const folder_skips *k) {
    bytes_out b = {0};
    put_header(&b, key, o, f, k);
    if (b.oom || b.n > MAX_HEADER_BYTES) {
        free(b.p);
        return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': header too large", path);
    }
    size_t px = f->n ? f->offset[f->n - 1] + (size_t)f->w[f->n - 1] * f->h[f->n - 1] * f->c : 0;
    ddpm_atomic_file a;
    ddpm_status st = ddpm_atomic_open(&a, path);
    if (st == DDPM_OK) {
        if (fwrite(b.p, 1, b.n, a.f) != b.n || fwrite(f->pixels, 1, px, a.f) != px)
            st = ddpm_atomic_fail(&a, strerror(errno));
        else
            st = ddpm_atomic_commit(&a);
    }
    free(b.p);
    return st;
}

/* ---- reading ------------------------------------------------------------------------- */

static ddpm_status stale(const char *path, const char *why) {
    return ddpm_error(DDPM_ERR_IO, "cache '%s': %s", path, why);
}

/* Names, skips and records from the header bytes after the fixed part. */
static ddpm_status parse_tables(bytes_in *in, int ncls, int nskip, const ddpm_folder_options *o,
                                ddpm_image_folder *f, folder_skips *k, size_t *px_bytes) {
    f->class_names = calloc((size_t)ncls + 1, sizeof *f->class_names);
    f->class_count = calloc((size_t)ncls + 1, sizeof *f->class_count);
    f->w = malloc(((size_t)f->n + 1) * sizeof *f->w);
    f->h = malloc(((size_t)f->n + 1) * sizeof *f->h);
    f->labels = malloc(((size_t)f->n + 1) * sizeof *f->labels);
    f->offset = malloc(((size_t)f->n + 1) * sizeof *f->offset);
    if (!f->class_names || !f->class_count || !f->w || !f->h || !f->labels || !f->offset)
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    f->num_classes = ncls;
    for (int i = 0; i < ncls && !in->bad; i++) f->class_names[i] = get_str(in);
    for (int i = 0; i < nskip && !in->bad; i++) {
        uint32_t kind = get_u32(in);
        char *msg = get_str(in);
        if (kind >= DDPM_SKIP_KINDS) in->bad = true;
        if (in->bad || folder_skips_add(k, (int)kind, msg) != DDPM_OK) {
            if (!in->bad) msg = NULL; /* folder_skips_add freed it */
            free(msg);
            in->bad = true;
        }
    }
    size_t off = 0, S = (size_t)o->size;
    for (int i = 0; i < f->n && !in->bad; i++) {
        uint32_t w = get_u32(in), h = get_u32(in), lab = get_u32(in);
        size_t lo = w < h ? w : h, hi = w < h ? h : w;
        if (lo != S || hi > 2 * S || ((int32_t)lab < -1 || (int32_t)lab >= ncls)) in->bad = true;
        f->w[i] = (int)w, f->h[i] = (int)h, f->labels[i] = (int32_t)lab, f->offset[i] = off;
        off += (size_t)w * h * o->channels;
    }
    *px_bytes = off;
    return DDPM_OK;
}

static ddpm_status read_tables(FILE *fp, const char *path, uint32_t hbytes, const uint32_t v[6],
                               const ddpm_folder_options *o, ddpm_image_folder *f, folder_skips *k) {
    /* Sizes before allocations (found by fuzz_folder_cache: a 381-byte file
     * made it allocate the 200 MB its header claimed): the header must fit
     * in the file, and the counts in the header (a class name takes >= 4
     * bytes, a skip >= 8, a record 12). */
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || (uint64_t)sb.st_size < hbytes)
        return stale(path, "truncated header");
    if (4 * (uint64_t)v[4] + 8 * (uint64_t)v[5] + 12 * (uint64_t)v[3] > hbytes - FIXED_BYTES)
        return stale(path, "malformed header (more entries than its bytes can hold)");
    uint8_t *buf = malloc(hbytes - FIXED_BYTES + 1);
    if (!buf) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_status st = DDPM_OK;
    bytes_in in = {buf, hbytes - FIXED_BYTES, 0, false};
    size_t px = 0;
    if (fread(buf, 1, in.n, fp) != in.n) st = stale(path, "truncated header");
    f->n = (int)v[3], f->c = o->channels, f->size = o->size;
    if (st == DDPM_OK) st = parse_tables(&in, (int)v[4], (int)v[5], o, f, k, &px);
    free(buf);
    if (st == DDPM_OK && (in.bad || in.at != in.n)) st = stale(path, "malformed header");
    if (st == DDPM_OK && (fstat(fileno(fp), &sb) != 0 || (uint64_t)sb.st_size != hbytes + (uint64_t)px))
        st = stale(path, "size does not match its header (truncated?)");
    if (st != DDPM_OK) return st;
    /* Map the file instead of reading it: no copy, pages come in as used. */
    size_t len = (size_t)sb.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fileno(fp), 0);
    if (m == MAP_FAILED) return stale(path, strerror(errno));
    f->map_ = m, f->map_len_ = len;
    f->pixels = (const uint8_t *)m + hbytes;
    return DDPM_OK;
}

ddpm_status folder_cache_read(const char *path, const uint64_t key[2], const ddpm_folder_options *o,
                              ddpm_image_folder *f, folder_skips *k) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t fixed[FIXED_BYTES];
    ddpm_status st = DDPM_OK;
    if (fread(fixed, 1, FIXED_BYTES, fp) != FIXED_BYTES || memcmp(fixed, MAGIC, 8) != 0) {
        st = stale(path, "not a ddpm folder cache");
    } else {
        bytes_in in = {fixed, FIXED_BYTES, 8, false};
        uint32_t hbytes = get_u32(&in), version = get_u32(&in);
        uint64_t k0 = get_u64(&in), k1 = get_u64(&in);
        uint32_t v[6];
        for (int i = 0; i < 6; i++) v[i] = get_u32(&in);
        if (version != DDPM_FOLDER_CACHE_VERSION || k0 != key[0] || k1 != key[1])
            st = stale(path, "stale (the folder or the settings changed)");
        else if (v[0] != (uint32_t)o->size || v[1] != (uint32_t)o->channels || v[2] != (uint32_t)o->alpha ||
                 v[3] > DDPM_FOLDER_MAX_FILES || v[4] > DDPM_FOLDER_MAX_FILES ||
                 v[5] > DDPM_FOLDER_MAX_FILES || hbytes < FIXED_BYTES || hbytes > MAX_HEADER_BYTES)
            st = stale(path, "malformed header");
        else if (v[3] == 0) /* never written: a folder without images has no cache */
            st = stale(path, "malformed header (no images)");
        else
            st = read_tables(fp, path, hbytes, v, o, f, k);
    }
    fclose(fp);
    if (st != DDPM_OK) {
        ddpm_folder_free(f);
        folder_skips_free(k);
    }
    return st;
}
