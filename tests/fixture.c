/* fixture.c: reader for the reference fixtures (format in fixture.h). */
#include "fixture.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Reads the whole file into a malloc'd buffer. */
static int read_all(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(fp);
        return fail(err, errlen, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(fp);
                return fail(err, errlen, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return fail(err, errlen, "%s: read error", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

void fx_free(fx_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free(f->e[i].name);
        free(f->e[i].data);
    }
    free(f->e);
    f->e = NULL;
    f->n = 0;
    f->version = 0;
}

/* Parses buf[0, len) into f; on failure f holds the entries parsed so far. */
static int parse(fx_file *f, const unsigned char *buf, size_t len, const char *path, char *err,
                 size_t errlen) {
    if (len < 16) return fail(err, errlen, "%s: truncated header (%zu bytes)", path, len);
    if (memcmp(buf, FX_MAGIC, 8) != 0) return fail(err, errlen, "%s: bad magic", path);
    uint32_t version = rd32(buf + 8), count = rd32(buf + 12);
    if (version != FX_VERSION)
        return fail(err, errlen, "%s: unsupported version %u (expected %d)", path, version,
                    FX_VERSION);
    /* each entry takes at least 2 + 1 + 2 bytes, so a count past that is corrupt */
    if (count > (len - 16) / 5)
        return fail(err, errlen, "%s: entry count %u exceeds file size", path, count);
    f->version = (int)version;
    f->e = calloc(count ? count : 1, sizeof *f->e);
    if (!f->e) return fail(err, errlen, "%s: out of memory", path);

    size_t off = 16;
    for (uint32_t k = 0; k < count; k++) {
        if (len - off < 2) return fail(err, errlen, "%s: entry %u: truncated", path, k);
        size_t nl = rd16(buf + off);
        off += 2;
        if (nl == 0) return fail(err, errlen, "%s: entry %u: empty name", path, k);
        if (len - off < nl + 2) return fail(err, errlen, "%s: entry %u: truncated name", path, k);
        fx_entry *e = &f->e[f->n];
        e->name = malloc(nl + 1);
        if (!e->name) return fail(err, errlen, "%s: out of memory", path);
        memcpy(e->name, buf + off, nl);
        e->name[nl] = '\0';
        f->n++; /* owned from here on: fx_free releases it */
        off += nl;
        if (memchr(e->name, '\0', nl))
            return fail(err, errlen, "%s: entry %u: NUL in name", path, k);
        e->dtype = buf[off];
        e->ndim = buf[off + 1];
        off += 2;
        if (e->dtype != FX_F32 && e->dtype != FX_I32 && e->dtype != FX_TEXT)
            return fail(err, errlen, "%s: '%s': unknown dtype %d", path, e->name, e->dtype);
        if (e->ndim > FX_MAX_DIMS)
            return fail(err, errlen, "%s: '%s': ndim %d > %d", path, e->name, e->ndim,
                        FX_MAX_DIMS);
        if (len - off < (size_t)e->ndim * 4)
            return fail(err, errlen, "%s: '%s': truncated dims", path, e->name);
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            uint32_t v = rd32(buf + off + 4 * (size_t)d);
            if (v > INT32_MAX) return fail(err, errlen, "%s: '%s': dim too large", path, e->name);
            e->dims[d] = (int)v;
            if (v && numel > SIZE_MAX / v)
                return fail(err, errlen, "%s: '%s': size overflow", path, e->name);
            numel *= v;
        }
        off += (size_t)e->ndim * 4;
        e->numel = numel;
        size_t esize = e->dtype == FX_TEXT ? 1 : 4;
        if (numel > (len - off) / esize)
            return fail(err, errlen, "%s: '%s': data runs past the end of the file", path,
                        e->name);
        size_t bytes = numel * esize;
        if (e->dtype == FX_TEXT) {
            char *s = malloc(bytes + 1);
            if (!s) return fail(err, errlen, "%s: out of memory", path);
            memcpy(s, buf + off, bytes);
            s[bytes] = '\0';
            e->data = s;
        } else {
            /* aligned copy, decoded from little-endian */
            uint32_t *w = malloc(bytes ? bytes : 4);
            if (!w) return fail(err, errlen, "%s: out of memory", path);
            for (size_t i = 0; i < numel; i++) w[i] = rd32(buf + off + 4 * i);
            e->data = w;
        }
        off += bytes;
        for (int j = 0; j < f->n - 1; j++)
            if (strcmp(f->e[j].name, e->name) == 0)
                return fail(err, errlen, "%s: duplicate entry '%s'", path, e->name);
    }
    if (off != len)
        return fail(err, errlen, "%s: %zu trailing bytes after %u entries", path, len - off,
                    count);
    return 0;
}

int fx_load(fx_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    if (err && errlen) err[0] = '\0';
    unsigned char *buf = NULL;
    size_t len = 0;
    if (read_all(path, &buf, &len, err, errlen)) return -1;
    int rc = parse(f, buf, len, path, err, errlen);
    free(buf);
    if (rc) fx_free(f);
    return rc;
}

const fx_entry *fx_find(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
    return NULL;
}

const fx_entry *fx_get(const fx_file *f, const char *name, int dtype) {
    const fx_entry *e = fx_find(f, name);
    return e && e->dtype == dtype ? e : NULL;
}

const float *fx_f32(const fx_file *f, const char *name, size_t numel) {
    const fx_entry *e = fx_get(f, name, FX_F32);
    return e && e->numel == numel ? (const float *)e->data : NULL;
}

int fx_config_str(const fx_file *f, const char *key, char *val, size_t vallen) {
    const fx_entry *e = fx_get(f, "config", FX_TEXT);
    if (!e) return -1;
    size_t klen = strlen(key);
    const char *line = e->data;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        if ((size_t)(end - line) > klen && strncmp(line, key, klen) == 0 && line[klen] == '=') {
            size_t vl = (size_t)(end - line) - klen - 1;
            if (vl + 1 > vallen) return -1;
            memcpy(val, line + klen + 1, vl);
            val[vl] = '\0';
            return 0;
        }
        line = *end ? end + 1 : end;
    }
    return -1;
}

int fx_config_ints(const fx_file *f, const char *key, int *vals, int maxn) {
    char buf[256];
    if (fx_config_str(f, key, buf, sizeof buf)) return -1;
    if (buf[0] == '\0') return 0;
    int n = 0;
    const char *p = buf;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX || n >= maxn) return -1;
        vals[n++] = (int)v;
        if (*end == '\0') return n;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

int fx_config_int(const fx_file *f, const char *key, int *val) {
    int v[1];
    if (fx_config_ints(f, key, v, 1) != 1) return -1;
    *val = v[0];
    return 0;
}

int fx_config_double(const fx_file *f, const char *key, double *val) {
    char buf[64], *end;
    if (fx_config_str(f, key, buf, sizeof buf)) return -1;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0' || errno) return -1;
    *val = v;
    return 0;
}

int fx_data_path(char *out, size_t outlen, const char *name) {
    const char *dir = getenv("DDPM_TEST_DATA");
    int n;
    if (dir && *dir) {
        n = snprintf(out, outlen, "%s/%s", dir, name);
    } else {
        /* run by hand outside ctest: tests/data next to this source file */
        const char *src = __FILE__, *slash = strrchr(src, '/');
        if (!slash) return -1;
        n = snprintf(out, outlen, "%.*s/data/%s", (int)(slash - src), src, name);
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
