/* data.c: IDX files, dataset directories, batches, the epoch order. See data.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/data.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- reading: one byte source over a raw or gzip file ------------------------ */

#define IN_CHUNK (1 << 16)          /* compressed bytes read from disk at a time */
#define OUT_FIRST ((size_t)1 << 16) /* first payload buffer for gzip, doubled as data arrives */

typedef struct {
    const char *path;
    FILE *f;
    uint64_t file_size;
    bool gz;   /* gzip-compressed (starts with 1f 8b) */
    bool zend; /* the current gzip member has ended */
    z_stream zs;
    unsigned char in[IN_CHUNK];
} src;

static ddpm_status src_open(src *s, const char *path) {
    memset(s, 0, offsetof(src, in)); /* not the 64 KiB buffer: fread fills what is used */
    s->path = path;
    s->f = fopen(path, "rb");
    if (!s->f) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(s->f);
        s->f = NULL;
        return ddpm_error(DDPM_ERR_IO, "'%s': not a regular file", path);
    }
    s->file_size = (uint64_t)st.st_size;
    unsigned char m[2];
    size_t got = fread(m, 1, 2, s->f);
    s->gz = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    rewind(s->f);
    if (s->gz && inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) { /* 16+: gzip wrapper only */
        fclose(s->f);
        s->f = NULL;
        return ddpm_error(DDPM_ERR_NOMEM, "'%s': cannot initialise zlib", path);
    }
    return DDPM_OK;
}

static void src_close(src *s) {
    if (s->gz) inflateEnd(&s->zs);
    if (s->f) fclose(s->f);
    s->f = NULL;
}

/* Read up to n bytes into buf; *got < n only at the end of the data. */
static ddpm_status src_read(src *s, uint8_t *buf, size_t n, size_t *got) {
    *got = 0;
    if (!s->gz) {
        *got = fread(buf, 1, n, s->f);
        if (*got < n && ferror(s->f))
            return ddpm_error(DDPM_ERR_IO, "read error on '%s': %s", s->path, strerror(errno));
        return DDPM_OK;
    }
    z_stream *zs = &s->zs;
    while (*got < n) {
        size_t want = n - *got;
        zs->next_out = buf + *got;
        zs->avail_out = want > UINT_MAX ? UINT_MAX : (unsigned)want;
        if (zs->avail_in == 0) {
            size_t r = fread(s->in, 1, IN_CHUNK, s->f);
            if (r == 0 && ferror(s->f))
                return ddpm_error(DDPM_ERR_IO, "read error on '%s': %s", s->path, strerror(errno));
            zs->next_in = s->in;
            zs->avail_in = (unsigned)r;
            if (r == 0) {
                if (s->zend) return DDPM_OK; /* clean end of the last member */
                return ddpm_error(
                    DDPM_ERR_FORMAT,
                    "'%s': truncated gzip stream (file ends after %lu decompressed bytes)", s->path,
                    (unsigned long)zs->total_out);
            }
        }
        if (s->zend) { /* more input after a member: another member (or garbage) follows */
            inflateReset(zs);
            s->zend = false;
        }
        unsigned before = zs->avail_out;
        int ret = inflate(zs, Z_NO_FLUSH);
        *got += before - zs->avail_out;
        if (ret == Z_STREAM_END)
            s->zend = true;
        else if (ret != Z_OK)
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': corrupt gzip data (zlib: %s)", s->path,
                              zs->msg ? zs->msg : zError(ret));
    }
    return DDPM_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check the header (magic already read) and return the payload size. */
static ddpm_status check_header(const src *s, const ddpm_idx *idx, uint32_t kind, uint64_t *bytes) {
    const char *path = s->path;
    uint64_t total = 1;
    for (int d = 0; d < idx->ndim; d++) {
        if (idx->dims[d] <= 0)
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': dimension %d of the IDX header is %s", path,
                              d, idx->dims[d] == 0 ? "0" : "larger than 2^31-1");
        total *= (uint64_t)idx->dims[d]; /* < 2^31 per factor, capped below: no overflow */
        if (total > DDPM_IDX_MAX_BYTES)
            return ddpm_error(
                DDPM_ERR_FORMAT,
                "'%s': IDX header declares more than %llu bytes of data (dims overflow)", path,
                (unsigned long long)DDPM_IDX_MAX_BYTES);
    }
    if (kind == DDPM_IDX_IMAGES) {
        int h = idx->dims[idx->ndim - 2], w = idx->dims[idx->ndim - 1];
        if (h > DDPM_IDX_MAX_SIDE || w > DDPM_IDX_MAX_SIDE)
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': image size %d x %d exceeds %d x %d", path, h,
                              w, DDPM_IDX_MAX_SIDE, DDPM_IDX_MAX_SIDE);
        if (idx->ndim == 4 && idx->dims[1] > DDPM_IDX_MAX_CHANNELS)
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': %d channels (at most %d supported)", path,
                              idx->dims[1], DDPM_IDX_MAX_CHANNELS);
    }
    if (total > SIZE_MAX)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': data too large for this platform", path);
    *bytes = total;
    return DDPM_OK;
}

static ddpm_status read_payload_raw(src *s, ddpm_idx *idx, uint64_t bytes) {
    uint64_t hdr = 4 + 4 * (uint64_t)idx->ndim, have = s->file_size - hdr;
    if (have < bytes)
        return ddpm_error(
            DDPM_ERR_FORMAT,
            "'%s': truncated: the header declares %llu bytes of data, the file holds %llu", s->path,
            (unsigned long long)bytes, (unsigned long long)have);
    if (have > bytes)
        return ddpm_error(
            DDPM_ERR_FORMAT,
            "'%s': %llu trailing bytes after the %llu bytes of data the header declares", s->path,
            (unsigned long long)(have - bytes), (unsigned long long)bytes);
    idx->data = malloc(bytes ? (size_t)bytes : 1);
    if (!idx->data)
        return ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory for %llu bytes", s->path,
                          (unsigned long long)bytes);
    size_t got;
    ddpm_status st = src_read(s, idx->data, (size_t)bytes, &got);
    if (st != DDPM_OK) return st;
    if (got != bytes) /* the file shrank under us */
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': truncated while reading", s->path);
    return DDPM_OK;
}

/* Inflate exactly `bytes`, growing the buffer as data arrives (so a lying
 * header costs no memory), then insist the stream ends there. */
static ddpm_status read_payload_gz(src *s, ddpm_idx *idx, uint64_t bytes) {
    size_t cap = bytes < OUT_FIRST ? (size_t)bytes : OUT_FIRST, filled = 0;
    idx->data = malloc(cap ? cap : 1);
    if (!idx->data) return ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory", s->path);
    for (;;) {
        size_t got;
        ddpm_status st = src_read(s, idx->data + filled, cap - filled, &got);
        if (st != DDPM_OK) return st;
        filled += got;
        if (filled < cap)
            return ddpm_error(DDPM_ERR_FORMAT,
                              "'%s': truncated: the header declares %llu bytes of data, the gzip "
                              "stream holds %zu",
                              s->path, (unsigned long long)bytes, filled);
        if (filled == bytes) break;
        size_t next = cap * 2 < bytes ? cap * 2 : (size_t)bytes;
        uint8_t *p = realloc(idx->data, next);
        if (!p)
            return ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory for %zu bytes", s->path, next);
        idx->data = p;
        cap = next;
    }
    uint8_t extra;
    size_t got;
    ddpm_status st = src_read(s, &extra, 1, &got);
    if (st != DDPM_OK) return st;
    if (got)
        return ddpm_error(DDPM_ERR_FORMAT,
                          "'%s': trailing bytes after the %llu bytes of data the header declares",
                          s->path, (unsigned long long)bytes);
    return DDPM_OK;
}

ddpm_status ddpm_idx_read(ddpm_idx *out, const char *path, uint32_t kind) {
    memset(out, 0, sizeof *out);
    if (kind != DDPM_IDX_LABELS && kind != DDPM_IDX_IMAGES)
        return ddpm_error(DDPM_ERR_ARG, "ddpm_idx_read: unknown kind 0x%08x", kind);
    src *s = malloc(sizeof *s);
    if (!s) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_status st = src_open(s, path);
    if (st != DDPM_OK) {
        free(s);
        return st;
    }
    ddpm_idx idx = {0};
    uint8_t hdr[16];
    size_t got;
    uint64_t bytes = 0;
    st = src_read(s, hdr, 4, &got);
    if (st != DDPM_OK) goto done;
    if (got < 4) {
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s': truncated IDX header (%zu bytes)", path, got);
        goto done;
    }
    idx.magic = be32(hdr);
    bool ok = kind == DDPM_IDX_LABELS
                  ? idx.magic == DDPM_IDX_LABELS
                  : idx.magic == DDPM_IDX_IMAGES || idx.magic == DDPM_IDX_IMAGES_C;
    if (!ok) {
        st = ddpm_error(
            DDPM_ERR_FORMAT, "'%s': bad magic number 0x%08x (expected %s)", path, idx.magic,
            kind == DDPM_IDX_LABELS ? "0x00000801 for labels"
                                    : "0x00000803 for images, or 0x00000804 for colour images");
        goto done;
    }
    idx.ndim = (int)(idx.magic & 0xff);
    st = src_read(s, hdr, 4 * (size_t)idx.ndim, &got);
    if (st != DDPM_OK) goto done;
    if (got < 4 * (size_t)idx.ndim) {
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s': truncated IDX header (%zu bytes)", path, 4 + got);
        goto done;
    }
    for (int d = 0; d < idx.ndim; d++) {
        uint32_t v = be32(hdr + 4 * d);
        idx.dims[d] = v > INT_MAX ? -1 : (int)v;
    }
    st = check_header(s, &idx, kind, &bytes);
    if (st != DDPM_OK) goto done;
    st = s->gz ? read_payload_gz(s, &idx, bytes) : read_payload_raw(s, &idx, bytes);
done:
    src_close(s);
    free(s);
    if (st != DDPM_OK) {
        ddpm_idx_free(&idx);
        return st;
    }
    *out = idx;
    return DDPM_OK;
}

void ddpm_idx_free(ddpm_idx *idx) {
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* ---- writing ------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

ddpm_status ddpm_idx_write(const char *path, const uint8_t *data, int ndim, const int *dims) {
    if (ndim < 1 || ndim > 4)
        return ddpm_error(DDPM_ERR_ARG, "'%s': IDX files hold 1 to 4 dimensions, not %d", path,
                          ndim);
    uint8_t hdr[20];
    uint32_t magic = 0x0800u | (uint32_t)ndim;
    uint64_t total = 1;
    for (int d = -1; d < ndim; d++) {
        uint32_t v = d < 0 ? magic : (uint32_t)dims[d];
        if (d >= 0) {
            if (dims[d] <= 0)
                return ddpm_error(DDPM_ERR_ARG, "'%s': dimension %d is %d", path, d, dims[d]);
            total *= (uint64_t)dims[d];
            if (total > DDPM_IDX_MAX_BYTES)
                return ddpm_error(DDPM_ERR_ARG, "'%s': too much data", path);
        }
        uint8_t *p = hdr + 4 * (d + 1);
        p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
        p[3] = (uint8_t)v;
    }
    size_t hlen = 4 + 4 * (size_t)ndim;

    ddpm_atomic_file af;
    ddpm_status st = ddpm_atomic_open(&af, path);
    if (st != DDPM_OK) return st;
    if (!ends_with(path, ".gz")) {
        if (fwrite(hdr, 1, hlen, af.f) != hlen || fwrite(data, 1, (size_t)total, af.f) != total)
            return ddpm_atomic_fail(&af, strerror(errno));
        return ddpm_atomic_commit(&af);
    }
    /* gzclose closes its descriptor: give zlib a duplicate so af.fd can be fsync'ed. */
    const char *why = NULL; /* error reason */
    char why_buf[160];
    int fd2 = dup(af.fd);
    gzFile gz = fd2 >= 0 ? gzdopen(fd2, "wb6") : NULL;
    bool ok = gz && gzwrite(gz, hdr, (unsigned)hlen) == (int)hlen;
    for (uint64_t off = 0; ok && off < total;) {
        unsigned n = total - off > (1u << 30) ? (1u << 30) : (unsigned)(total - off);
        ok = gzwrite(gz, data + off, n) == (int)n;
        off += n;
    }
    if (!ok) {
        int zerr = Z_ERRNO;
        const char *zmsg = gz ? gzerror(gz, &zerr) : "cannot start gzip stream";
        snprintf(why_buf, sizeof why_buf, "%s", zerr == Z_ERRNO ? strerror(errno) : zmsg);
        why = why_buf;
    }
    if (gz) {
        if (gzclose(gz) != Z_OK && !why) why = "error closing gzip stream";
    } else if (fd2 >= 0) {
        close(fd2);
    }
    return why ? ddpm_atomic_fail(&af, why) : ddpm_atomic_commit(&af);
}

ddpm_status ddpm_idx_write_images(const char *path, const uint8_t *pixels, int n, int c, int h,
                                  int w) {
    if (c == 1) return ddpm_idx_write(path, pixels, 3, (int[]){n, h, w});
    return ddpm_idx_write(path, pixels, 4, (int[]){n, c, h, w});
}

ddpm_status ddpm_idx_write_labels(const char *path, const int *labels, int n) {
    uint8_t *u8 = malloc(n > 0 ? (size_t)n : 1);
    if (!u8) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory for %d labels", path, n);
    for (int i = 0; i < n; i++) u8[i] = (uint8_t)labels[i];
    int bad = 0;
    while (bad < n && labels[bad] >= 0 && labels[bad] <= 255) bad++;
    ddpm_status st = bad < n ? ddpm_error(DDPM_ERR_ARG, "cannot write '%s': label %d does not fit in a byte", path, labels[bad])
                             : ddpm_idx_write(path, u8, 1, &n);
    free(u8);
    return st;
}

/* ---- dataset directories -------------------------------------------------------- */

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Find dir/base or dir/base.gz; out gets the path that exists. */
static ddpm_status find_idx(char *out, size_t cap, const char *dir, const char *base) {
    for (int gz = 0; gz < 2; gz++) {
        int len = snprintf(out, cap, "%s/%s%s", dir, base, gz ? ".gz" : "");
        if (len < 0 || (size_t)len >= cap)
            return ddpm_error(DDPM_ERR_ARG, "path too long: '%s/%s'", dir, base);
        if (is_file(out)) return DDPM_OK;
    }
    return ddpm_error(DDPM_ERR_IO, "cannot find '%s' or '%s.gz' in '%s'", base, base, dir);
}

ddpm_status ddpm_dataset_load(ddpm_dataset *ds, const char *dir, bool train) {
    memset(ds, 0, sizeof *ds);
    const char *img_name = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab_name = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    char img_path[4096], lab_path[4096];
    ddpm_status st = find_idx(img_path, sizeof img_path, dir, img_name);
    if (st == DDPM_OK) st = find_idx(lab_path, sizeof lab_path, dir, lab_name);
    if (st != DDPM_OK) return st;

    ddpm_idx im, lab;
    if ((st = ddpm_idx_read(&im, img_path, DDPM_IDX_IMAGES)) != DDPM_OK) return st;
    if ((st = ddpm_idx_read(&lab, lab_path, DDPM_IDX_LABELS)) != DDPM_OK) {
        ddpm_idx_free(&im);
        return st;
    }
    if (im.dims[0] != lab.dims[0]) {
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s' holds %d images but '%s' holds %d labels", img_path,
                        im.dims[0], lab_path, lab.dims[0]);
        goto fail;
    }
    ds->n = im.dims[0];
    ds->c = im.ndim == 4 ? im.dims[1] : 1;
    ds->h = im.dims[im.ndim - 2];
    ds->w = im.dims[im.ndim - 1];
    ds->labels = malloc((size_t)ds->n * sizeof(int));
    if (!ds->labels) {
        st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d labels", ds->n);
        goto fail;
    }
    int maxl = 0;
    for (int i = 0; i < ds->n; i++) {
        ds->labels[i] = lab.data[i]; /* u8, so always < 256 */
        if (ds->labels[i] > maxl) maxl = ds->labels[i];
    }
    ds->num_classes = maxl + 1;
    ds->pixels = im.data; /* take ownership */
    im.data = NULL;
    ddpm_idx_free(&lab);
    return DDPM_OK;
fail:
    ddpm_idx_free(&im);
    ddpm_idx_free(&lab);
    ddpm_dataset_free(ds);
    return st;
}

void ddpm_dataset_free(ddpm_dataset *ds) {
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static bool has_train_images(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    if (is_file(p)) return true;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    return is_file(p);
}

ddpm_status ddpm_dataset_find(char *out_dir, size_t cap, const char *const *dirs, int n) {
    char looked[1024] = "";
    for (int i = 0; i < n; i++) {
        if (!dirs[i]) continue;
        if (has_train_images(dirs[i])) {
            if (strlen(dirs[i]) >= cap)
                return ddpm_error(DDPM_ERR_ARG, "data directory path too long: '%s'", dirs[i]);
            memcpy(out_dir, dirs[i], strlen(dirs[i]) + 1);
            return DDPM_OK;
        }
        size_t len = strlen(looked);
        snprintf(looked + len, sizeof looked - len, "%s'%s'", len ? ", " : "", dirs[i]);
    }
    return ddpm_error(DDPM_ERR_IO, "no train-images-idx3-ubyte[.gz] in %s", looked[0] ? looked : "no directory");
}

/* ---- batches ---------------------------------------------------------------------- */

void ddpm_dataset_to_float(float *out, const ddpm_dataset *ds, const int *idx, int B) {
    size_t D = (size_t)ds->c * ds->h * ds->w; /* elements per image */
    for (int b = 0; b < B; b++) {
        const uint8_t *src_px = ds->pixels + (size_t)idx[b] * D;
        float *dst = out + (size_t)b * D;
        for (size_t i = 0; i < D; i++) dst[i] = (float)src_px[i] / 127.5f - 1.0f;
    }
}

void ddpm_dataset_get_labels(int *out, const ddpm_dataset *ds, const int *idx, int B) {
    for (int b = 0; b < B; b++) out[b] = ds->labels[idx[b]];
}

/* ---- epoch order ---------------------------------------------------------------- */

/* The seed of epoch e's generator: splitmix64 of (seed, e). */
static uint64_t epoch_seed(uint64_t seed, uint32_t epoch) {
    return ddpm_splitmix64(seed ^ (DDPM_GOLDEN_GAMMA * ((uint64_t)epoch + 1)));
}

static void shuffle_epoch(ddpm_epoch_order *s) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, epoch_seed(s->seed, s->epoch));
    for (int i = 0; i < s->n; i++) s->perm[i] = i;
    for (int i = s->n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)ddpm_rng_below(&rng, (uint32_t)i + 1);
        int t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
}

ddpm_status ddpm_epoch_order_resume(ddpm_epoch_order *s, int n, uint64_t seed, uint32_t epoch,
                                int pos) {
    memset(s, 0, sizeof *s);
    if (n <= 0) return ddpm_error(DDPM_ERR_ARG, "epoch order: dataset is empty");
    if (pos < 0 || pos > n)
        return ddpm_error(DDPM_ERR_ARG, "epoch order: position %d outside [0, %d]", pos, n);
    s->perm = malloc((size_t)n * sizeof(int));
    if (!s->perm) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for a permutation of %d", n);
    s->n = n;
    s->pos = pos;
    s->epoch = epoch;
    s->seed = seed;
    shuffle_epoch(s);
    return DDPM_OK;
}

ddpm_status ddpm_epoch_order_init(ddpm_epoch_order *s, int n, uint64_t seed) {
    return ddpm_epoch_order_resume(s, n, seed, 0, 0);
}

void ddpm_epoch_order_next(ddpm_epoch_order *s, int *idx, int B) {
    for (int b = 0; b < B; b++) {
        if (s->pos == s->n) {
            s->epoch++;
            s->pos = 0;
            shuffle_epoch(s);
        }
        idx[b] = s->perm[s->pos++];
    }
}

void ddpm_epoch_order_free(ddpm_epoch_order *s) {
    free(s->perm);
    memset(s, 0, sizeof *s);
}
