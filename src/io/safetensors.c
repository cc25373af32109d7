/* safetensors.c: a hardened safetensors reader and an atomic writer (F32 only).
 *
 * Loading reads the 8-byte length and the JSON header, checks the header in
 * two passes, and only then allocates and reads the data buffer:
 *   pass 1 (json_check_*): strict RFC 8259 syntax with a nesting limit, valid
 *           UTF-8, no trailing garbage. Nothing is allocated.
 *   pass 2 (parse_*):      the safetensors schema over the now well-formed
 *           text. Strings are decoded in place (a decoded string is never
 *           longer than its escaped form), so names and metadata point into
 *           the header buffer and need no allocation of their own.
 * Then every tensor's dtype, shape, offsets and size are checked, names must
 * be unique, and the tensors must tile the data buffer exactly.
 */
#define _POSIX_C_SOURCE 200809L

#include "ddpm/safetensors.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define JSON_MAX_DEPTH 64

/* ---- small helpers ----------------------------------------------------------- */

static bool host_is_little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap4(unsigned char *p, size_t nwords) {
    for (size_t i = 0; i < nwords; i++, p += 4) {
        unsigned char t0 = p[0], t1 = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = t1;
        p[3] = t0;
    }
}

static bool utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t n = ddpm_utf8_len(p, end);
        if (n == 0) return false;
        p += n;
    }
    return true;
}

/* "[2, 3, 4]" */
static void format_shape(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

/* ---- JSON, pass 1: syntax ------------------------------------------------------ */

typedef struct {
    char *p;          /* cursor */
    char *begin, *end; /* the header text */
    const char *err;  /* first syntax error (pass 1) */
} jparser;

static void skip_ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jfail(jparser *j, const char *msg) {
    j->err = msg;
    return false;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u" at p (bounds already checked). */
static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool json_check_string(jparser *j) {
    j->p++; /* opening quote */
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20) return jfail(j, "control character in string");
        if (c == '\\') {
            if (j->end - j->p < 2) break;
            char e = j->p[1];
            if (e == 'u') {
                int v = j->end - j->p >= 6 ? hex4(j->p + 2) : -1;
                if (v < 0) return jfail(j, "bad \\u escape");
                if (v == 0) return jfail(j, "\\u0000 is not supported in strings");
                if (v >= 0xDC00 && v <= 0xDFFF) return jfail(j, "unpaired surrogate in \\u escape");
                if (v >= 0xD800 && v <= 0xDBFF) {
                    int lo = (j->end - j->p >= 12 && j->p[6] == '\\' && j->p[7] == 'u') ? hex4(j->p + 8) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return jfail(j, "unpaired surrogate in \\u escape");
                    j->p += 6;
                }
                j->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
                j->p += 2;
            } else {
                return jfail(j, "bad escape in string");
            }
            continue;
        }
        size_t n = ddpm_utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
        if (n == 0) return jfail(j, "invalid UTF-8 in string");
        j->p += n;
    }
    return jfail(j, "unterminated string");
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool json_check_number(jparser *j) {
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end || !is_digit(*j->p)) return jfail(j, "bad number");
    if (*j->p == '0') {
        j->p++;
        if (j->p < j->end && is_digit(*j->p)) return jfail(j, "number with a leading zero");
    } else {
        while (j->p < j->end && is_digit(*j->p)) j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !is_digit(*j->p)) return jfail(j, "bad number");
        while (j->p < j->end && is_digit(*j->p)) j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || !is_digit(*j->p)) return jfail(j, "bad number");
        while (j->p < j->end && is_digit(*j->p)) j->p++;
    }
    return true;
}

static bool json_check_literal(jparser *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return jfail(j, "unexpected character");
    j->p += n;
    return true;
}

static bool json_check_value(jparser *j, int depth) {
    skip_ws(j);
    if (j->p >= j->end) return jfail(j, "unexpected end of header");
    char c = *j->p;
    if (c == '{' || c == '[') {
        if (depth >= JSON_MAX_DEPTH) return jfail(j, "nesting deeper than 64 levels");
        char close = c == '{' ? '}' : ']';
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(j);
                if (j->p >= j->end || *j->p != '"') return jfail(j, "expected a string key");
                if (!json_check_string(j)) return false;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') return jfail(j, "expected ':'");
                j->p++;
            }
            if (!json_check_value(j, depth + 1)) return false;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return true;
            }
            return jfail(j, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') return json_check_string(j);
    if (c == '-' || is_digit(c)) return json_check_number(j);
    if (c == 't') return json_check_literal(j, "true");
    if (c == 'f') return json_check_literal(j, "false");
    if (c == 'n') return json_check_literal(j, "null");
    return jfail(j, "unexpected character");
}

/* ---- JSON, pass 2: reading well-formed text ------------------------------------ */

/* Decodes the string at j->p (on its opening quote) in place and returns it,
 * NUL-terminated. Pass 1 guarantees the escapes and UTF-8 are valid. */
static char *read_string(jparser *j) {
    char *r = j->p + 1, *w = r, *start = r;
    while (*r != '"') {
        if (*r != '\\') {
            *w++ = *r++;
            continue;
        }
        char e = r[1];
        r += 2;
        switch (e) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(r);
            r += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)hex4(r + 2) - 0xDC00);
                r += 6;
            }
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xC0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xE0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *w++ = (char)(0xF0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *w++ = e; break; /* " \ / */
        }
    }
    j->p = r + 1;
    *w = '\0'; /* w <= r: never past the closing quote */
    return start;
}

/* Expects `c` after optional whitespace (guaranteed by pass 1 where used). */
static bool accept(jparser *j, char c) {
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static bool at(jparser *j, char c) {
    skip_ws(j);
    return j->p < j->end && *j->p == c;
}

enum { UINT_OK, UINT_NOT_INT, UINT_TOO_BIG };

/* A non-negative integer without fraction or exponent, at most `max`. */
static int read_uint(jparser *j, uint64_t max, uint64_t *out) {
    skip_ws(j);
    if (j->p >= j->end || !is_digit(*j->p)) return UINT_NOT_INT;
    uint64_t v = 0;
    for (; j->p < j->end && is_digit(*j->p); j->p++) {
        unsigned d = (unsigned)(*j->p - '0');
        if (v > (max - d) / 10) return UINT_TOO_BIG;
        v = v * 10 + d;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) return UINT_NOT_INT;
    *out = v;
    return UINT_OK;
}

/* ---- loading ---------------------------------------------------------------- */

typedef struct {
    uint64_t begin, end; /* byte range in the data buffer */
    int idx;             /* tensor index */
} span;

typedef struct {
    const char *path;
    int fd;
    ddpm_st_file *f;
    span *spans; /* [ntensors] */
    int cap_tensors, cap_spans, cap_meta;
} loader;

/* DDPM_ERR_FORMAT with "'<path>': <message>". */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static ddpm_status fmt_err(const loader *L, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ddpm_error(DDPM_ERR_FORMAT, "'%s': %s", L->path, msg);
}

static ddpm_status nomem(const loader *L) {
    return ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory", L->path);
}

static ddpm_status parse_tensor(loader *L, jparser *j, const char *name) {
    ddpm_st_file *f = L->f;
    ddpm_shown nm_ = ddpm_show(name);
    const char *nm = nm_.s;
    if (!accept(j, '{')) return fmt_err(L, "entry of tensor '%s' is not an object", nm);
    if (!ddpm_grow((void **)&f->tensors, &L->cap_tensors, f->ntensors + 1, sizeof *f->tensors)) return nomem(L);
    if (L->cap_spans < L->cap_tensors) { /* spans grow in step with tensors */
        span *s = realloc(L->spans, (size_t)L->cap_tensors * sizeof *s);
        if (!s) return nomem(L);
        L->spans = s;
        L->cap_spans = L->cap_tensors;
    }
    ddpm_st_tensor *t = &f->tensors[f->ntensors];
    span *sp = &L->spans[f->ntensors];
    memset(t, 0, sizeof *t);
    t->name = name;
    sp->idx = f->ntensors;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    if (!at(j, '}')) {
        do {
            skip_ws(j);
            const char *key = read_string(j);
            accept(j, ':');
            skip_ws(j);
            if (strcmp(key, "dtype") == 0) {
                if (has_dtype) return fmt_err(L, "tensor '%s' has two dtype fields", nm);
                has_dtype = true;
                if (!at(j, '"')) return fmt_err(L, "dtype of tensor '%s' is not a string", nm);
                const char *dtype = read_string(j);
                if (strcmp(dtype, "F32") != 0)
                    return fmt_err(L, "tensor '%s' has dtype %s; only F32 is supported", nm, ddpm_show(dtype).s);
            } else if (strcmp(key, "shape") == 0) {
                if (has_shape) return fmt_err(L, "tensor '%s' has two shape fields", nm);
                has_shape = true;
                if (!accept(j, '[')) return fmt_err(L, "shape of tensor '%s' is not an array", nm);
                if (!accept(j, ']')) {
                    do {
                        if (t->ndim == DDPM_ST_MAX_DIMS)
                            return fmt_err(L, "tensor '%s' has more than 8 dimensions", nm);
                        uint64_t v;
                        int r = read_uint(j, INT64_MAX, &v);
                        if (r == UINT_NOT_INT)
                            return fmt_err(L, "shape of tensor '%s' must hold non-negative integers", nm);
                        if (r == UINT_TOO_BIG)
                            return fmt_err(L, "shape of tensor '%s' has a dimension that does not fit in 64 bits", nm);
                        t->shape[t->ndim++] = (int64_t)v;
                    } while (accept(j, ','));
                    accept(j, ']');
                }
            } else if (strcmp(key, "data_offsets") == 0) {
                if (has_offsets) return fmt_err(L, "tensor '%s' has two data_offsets fields", nm);
                has_offsets = true;
                uint64_t v[2];
                int n = 0;
                if (!accept(j, '[') || at(j, ']'))
                    return fmt_err(L, "data_offsets of tensor '%s' must be [begin, end]", nm);
                do {
                    if (n == 2) return fmt_err(L, "data_offsets of tensor '%s' must be [begin, end]", nm);
                    int r = read_uint(j, UINT64_MAX, &v[n++]);
                    if (r == UINT_NOT_INT)
                        return fmt_err(L, "data_offsets of tensor '%s' must be non-negative integers", nm);
                    if (r == UINT_TOO_BIG)
                        return fmt_err(L, "data_offsets of tensor '%s' do not fit in 64 bits", nm);
                } while (accept(j, ','));
                accept(j, ']');
                if (n != 2) return fmt_err(L, "data_offsets of tensor '%s' must be [begin, end]", nm);
                sp->begin = v[0];
                sp->end = v[1];
            } else {
                return fmt_err(L, "tensor '%s' has unknown field '%s'", nm, ddpm_show(key).s);
            }
        } while (accept(j, ','));
    }
    accept(j, '}');
    if (!has_dtype) return fmt_err(L, "tensor '%s' has no dtype", nm);
    if (!has_shape) return fmt_err(L, "tensor '%s' has no shape", nm);
    if (!has_offsets) return fmt_err(L, "tensor '%s' has no data_offsets", nm);
    f->ntensors++;
    return DDPM_OK;
}

static ddpm_status parse_metadata(loader *L, jparser *j) {
    ddpm_st_file *f = L->f;
    if (!accept(j, '{')) return fmt_err(L, "__metadata__ is not an object");
    if (accept(j, '}')) return DDPM_OK;
    do {
        skip_ws(j);
        const char *key = read_string(j);
        accept(j, ':');
        if (!at(j, '"')) return fmt_err(L, "metadata value of '%s' is not a string", ddpm_show(key).s);
        const char *value = read_string(j);
        if (!ddpm_grow((void **)&f->meta, &L->cap_meta, f->nmeta + 1, sizeof *f->meta)) return nomem(L);
        f->meta[f->nmeta].key = key;
        f->meta[f->nmeta].value = value;
        f->nmeta++;
    } while (accept(j, ','));
    accept(j, '}');
    return DDPM_OK;
}

static ddpm_status parse_header(loader *L, char *text, size_t len) {
    jparser j = {text, text, text + len, NULL};
    /* pass 1 */
    bool ok = json_check_value(&j, 0);
    if (ok) {
        skip_ws(&j);
        if (j.p != j.end) ok = jfail(&j, "trailing characters after the JSON value");
    }
    if (!ok)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': malformed JSON header at byte %zu: %s", L->path,
                          (size_t)(j.p - j.begin), j.err);
    /* pass 2 */
    j.p = text;
    if (!accept(&j, '{')) return fmt_err(L, "header is not a JSON object");
    bool has_meta = false;
    if (accept(&j, '}')) return DDPM_OK;
    do {
        skip_ws(&j);
        const char *key = read_string(&j);
        accept(&j, ':');
        ddpm_status st;
        if (strcmp(key, "__metadata__") == 0) {
            if (has_meta) return fmt_err(L, "header has two __metadata__ entries");
            has_meta = true;
            st = parse_metadata(L, &j);
        } else {
            st = parse_tensor(L, &j, key);
        }
        if (st != DDPM_OK) return st;
    } while (accept(&j, ','));
    return DDPM_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const ddpm_st_tensor *const *)a)->name, (*(const ddpm_st_tensor *const *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp((*(const ddpm_st_meta *const *)a)->key, (*(const ddpm_st_meta *const *)b)->key);
}

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* Shapes, sizes, unique names, and the tiling of the data buffer of dsize bytes. */
static ddpm_status check_tensors(loader *L, uint64_t dsize) {
    ddpm_st_file *f = L->f;
    char shp[200];
    for (int i = 0; i < f->ntensors; i++) {
        ddpm_st_tensor *t = &f->tensors[i];
        const span *sp = &L->spans[i];
        ddpm_shown nm_ = ddpm_show(t->name);
        const char *nm = nm_.s;
        char offs[64];
        snprintf(offs, sizeof offs, "[%" PRIu64 ", %" PRIu64 "]", sp->begin, sp->end);
        if (sp->begin > sp->end)
            return fmt_err(L, "data_offsets %s of tensor '%s' have begin > end", offs, nm);
        if (sp->end > dsize) {
            return fmt_err(L, "data_offsets %s of tensor '%s' exceed the data buffer of %" PRIu64 " bytes", offs,
                           nm, dsize);
        }
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t dim = (uint64_t)t->shape[d];
            if (dim != 0 && numel > UINT64_MAX / 4 / dim) { /* bytes must fit too */
                format_shape(shp, sizeof shp, t->shape, t->ndim);
                return fmt_err(L, "shape %s of tensor '%s' overflows", shp, nm);
            }
            numel *= dim;
        }
        if (sp->end - sp->begin != numel * 4) {
            format_shape(shp, sizeof shp, t->shape, t->ndim);
            return fmt_err(L, "tensor '%s' has %" PRIu64 " bytes of data but F32 shape %s needs %" PRIu64, nm,
                           sp->end - sp->begin, shp, numel * 4);
        }
        t->numel = (size_t)numel; /* <= dsize / 4, which is in memory soon */
    }

    /* unique names and keys */
    if (f->ntensors > 0) {
        f->by_name_ = malloc((size_t)f->ntensors * sizeof *f->by_name_);
        if (!f->by_name_) return nomem(L);
        for (int i = 0; i < f->ntensors; i++) f->by_name_[i] = &f->tensors[i];
        qsort(f->by_name_, (size_t)f->ntensors, sizeof *f->by_name_, cmp_tensor_name);
        for (int i = 1; i < f->ntensors; i++)
            if (strcmp(f->by_name_[i - 1]->name, f->by_name_[i]->name) == 0)
                return fmt_err(L, "duplicate tensor name '%s'", ddpm_show(f->by_name_[i]->name).s);
    }
    if (f->nmeta > 0) {
        f->meta_by_key_ = malloc((size_t)f->nmeta * sizeof *f->meta_by_key_);
        if (!f->meta_by_key_) return nomem(L);
        for (int i = 0; i < f->nmeta; i++) f->meta_by_key_[i] = &f->meta[i];
        qsort(f->meta_by_key_, (size_t)f->nmeta, sizeof *f->meta_by_key_, cmp_meta_key);
        for (int i = 1; i < f->nmeta; i++)
            if (strcmp(f->meta_by_key_[i - 1]->key, f->meta_by_key_[i]->key) == 0)
                return fmt_err(L, "duplicate metadata key '%s'", ddpm_show(f->meta_by_key_[i]->key).s);
    }

    /* the tensors must tile [0, dsize) exactly */
    if (f->ntensors > 0) qsort(L->spans, (size_t)f->ntensors, sizeof *L->spans, cmp_span);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->ntensors; i++) {
        const span *sp = &L->spans[i];
        const char *nm = f->tensors[sp->idx].name;
        if (sp->begin < pos)
            return fmt_err(L, "tensors '%s' and '%s' overlap (data_offsets [%" PRIu64 ", %" PRIu64
                           "] start before %" PRIu64 ")", ddpm_show(prev).s, ddpm_show(nm).s, sp->begin, sp->end, pos);
        if (sp->begin > pos && prev)
            return fmt_err(L, "gap of %" PRIu64 " bytes between tensors '%s' and '%s'", sp->begin - pos, ddpm_show(prev).s,
                           ddpm_show(nm).s);
        if (sp->begin > pos)
            return fmt_err(L, "gap of %" PRIu64 " bytes before tensor '%s'", sp->begin, ddpm_show(nm).s);
        pos = sp->end;
        prev = nm;
    }
    if (pos != dsize) return fmt_err(L, "%" PRIu64 " trailing bytes after the last tensor", dsize - pos);
    return DDPM_OK;
}

/* Reads exactly n bytes; false on error or end of file (errno 0 then). */
static bool read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = 0;
            return false;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static ddpm_status read_err(const loader *L) {
    if (errno == 0)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': unexpected end of file (was it changed while reading?)", L->path);
    return ddpm_error(DDPM_ERR_IO, "cannot read '%s': %s", L->path, strerror(errno));
}

static ddpm_status load(loader *L) {
    ddpm_st_file *f = L->f;
    const char *path = L->path;
    L->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (L->fd < 0) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(L->fd, &st) != 0) return ddpm_error(DDPM_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ddpm_error(DDPM_ERR_IO, "'%s': not a regular file", path);
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize < 8)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': file is %" PRIu64 " bytes, too short for the 8-byte header length",
                          path, fsize);

    unsigned char lenbuf[8];
    if (!read_full(L->fd, lenbuf, 8)) return read_err(L);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenbuf[i];
    if (hlen > fsize - 8)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': header length %" PRIu64 " exceeds file size %" PRIu64, path, hlen,
                          fsize);
    if (hlen > DDPM_ST_MAX_HEADER)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes",
                          path, hlen, DDPM_ST_MAX_HEADER);

    f->header_ = malloc((size_t)hlen + 1);
    if (!f->header_) return nomem(L);
    if (!read_full(L->fd, f->header_, (size_t)hlen)) return read_err(L);
    f->header_[hlen] = '\0';
    ddpm_status s = parse_header(L, f->header_, (size_t)hlen);
    if (s != DDPM_OK) return s;

    uint64_t dsize = fsize - 8 - hlen;
    s = check_tensors(L, dsize);
    if (s != DDPM_OK) return s;

    /* Only now, with every size checked against the file, read the data. */
    f->data_ = ddpm_malloc((size_t)dsize);
    if (!f->data_) return nomem(L);
    if (!read_full(L->fd, f->data_, (size_t)dsize)) return read_err(L);
    if (!host_is_little_endian()) swap4((unsigned char *)f->data_, (size_t)dsize / 4);
    for (int i = 0; i < f->ntensors; i++) {
        const span *sp = &L->spans[i];
        f->tensors[sp->idx].data = f->data_ + sp->begin / 4; /* begin % 4 == 0: tiles of 4k bytes from 0 */
    }
    return DDPM_OK;
}

ddpm_status ddpm_st_load(ddpm_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (!path) return ddpm_error(DDPM_ERR_ARG, "ddpm_st_load: path is NULL");
    loader L = {path, -1, f, NULL, 0, 0, 0};
    ddpm_status s = load(&L);
    if (L.fd >= 0) close(L.fd);
    free(L.spans);
    if (s != DDPM_OK) ddpm_st_free(f);
    return s;
}

const ddpm_st_tensor *ddpm_st_find(const ddpm_st_file *f, const char *name) {
    int lo = 0, hi = f->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name_[mid]->name, name);
        if (c == 0) return f->by_name_[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *ddpm_st_meta_get(const ddpm_st_file *f, const char *key) {
    int lo = 0, hi = f->nmeta - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta_by_key_[mid]->key, key);
        if (c == 0) return f->meta_by_key_[mid]->value;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void ddpm_st_free(ddpm_st_file *f) {
    if (!f) return;
    free(f->tensors);
    free(f->meta);
    free(f->header_);
    ddpm_free(f->data_);
    free(f->by_name_);
    free(f->meta_by_key_);
    memset(f, 0, sizeof *f);
}

/* ---- saving ----------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n) ncap *= 2;
        char *p = realloc(b->s, ncap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    snprintf(t, sizeof t, "%" PRIu64, v);
    sb_puts(b, t);
}

/* A JSON string literal: quote, backslash and control bytes escaped, UTF-8 as is. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        if (c == '"') sb_puts(b, "\\\"");
        else if (c == '\\') sb_puts(b, "\\\\");
        else if (c == '\n') sb_puts(b, "\\n");
        else if (c == '\r') sb_puts(b, "\\r");
        else if (c == '\t') sb_puts(b, "\\t");
        else if (c == '\b') sb_puts(b, "\\b");
        else if (c == '\f') sb_puts(b, "\\f");
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_puts(b, esc);
        } else sb_put(b, p, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the arguments; fills bytes[i] with each tensor's byte size. */
static ddpm_status check_save_args(const char *path, const ddpm_st_entry *t, int nt, const ddpm_st_meta *meta,
                                   int nmeta, uint64_t *bytes) {
    for (int i = 0; i < nt; i++) {
        if (!t[i].name) return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor %d has no name", path, i);
        ddpm_shown nm_ = ddpm_show(t[i].name);
        const char *nm = nm_.s;
        if (!utf8_valid(t[i].name))
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor name '%s' is not valid UTF-8", path, nm);
        if (strcmp(t[i].name, "__metadata__") == 0)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': '__metadata__' is not a valid tensor name", path);
        if (t[i].ndim < 0 || t[i].ndim > DDPM_ST_MAX_DIMS)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor '%s' has %d dimensions (0..8 allowed)", path, nm,
                              t[i].ndim);
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            int64_t dim = t[i].shape[d];
            if (dim < 0)
                return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor '%s' has a negative dimension", path, nm);
            if (dim != 0 && numel > UINT64_MAX / 4 / (uint64_t)dim)
                return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': shape of tensor '%s' overflows", path, nm);
            numel *= (uint64_t)dim;
        }
        if (numel > SIZE_MAX / 4)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor '%s' is too large", path, nm);
        if (numel > 0 && !t[i].data)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': tensor '%s' has no data", path, nm);
        bytes[i] = numel * 4;
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': metadata entry %d has a NULL key or value", path, i);
        if (!utf8_valid(meta[i].key) || !utf8_valid(meta[i].value))
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': metadata '%s' is not valid UTF-8", path,
                              ddpm_show(meta[i].key).s);
    }
    /* unique names and keys */
    int nmax = nt > nmeta ? nt : nmeta;
    const char **names = malloc((size_t)(nmax > 0 ? nmax : 1) * sizeof *names);
    if (!names) return ddpm_error(DDPM_ERR_NOMEM, "cannot save '%s': out of memory", path);
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? nt : nmeta;
        for (int i = 0; i < n; i++) names[i] = pass == 0 ? t[i].name : meta[i].key;
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        for (int i = 1; i < n; i++) {
            if (strcmp(names[i - 1], names[i]) == 0) {
                ddpm_status s = ddpm_error(DDPM_ERR_ARG, "cannot save '%s': duplicate %s '%s'", path,
                                           pass == 0 ? "tensor name" : "metadata key", ddpm_show(names[i]).s);
                free(names);
                return s;
            }
        }
    }
    free(names);
    return DDPM_OK;
}

/* The padded JSON header. */
static ddpm_status build_header(sbuf *h, const char *path, const ddpm_st_entry *t, int nt, const ddpm_st_meta *meta,
                                int nmeta, const uint64_t *bytes) {
    sb_puts(h, "{");
    if (nmeta > 0) {
        sb_puts(h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_puts(h, ",");
            sb_json_string(h, meta[i].key);
            sb_puts(h, ":");
            sb_json_string(h, meta[i].value);
        }
        sb_puts(h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        if (i || nmeta > 0) sb_puts(h, ",");
        sb_json_string(h, t[i].name);
        sb_puts(h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            if (d) sb_puts(h, ",");
            sb_u64(h, (uint64_t)t[i].shape[d]);
        }
        sb_puts(h, "],\"data_offsets\":[");
        sb_u64(h, off);
        sb_puts(h, ",");
        if (bytes[i] > UINT64_MAX - off)
            return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': total size overflows", path);
        off += bytes[i];
        sb_u64(h, off);
        sb_puts(h, "]}");
    }
    sb_puts(h, "}");
    while (h->len % 8 != 0) sb_puts(h, " ");
    if (h->oom) return ddpm_error(DDPM_ERR_NOMEM, "cannot save '%s': out of memory building the header", path);
    if (h->len > DDPM_ST_MAX_HEADER)
        return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': header of %zu bytes exceeds the limit of %" PRIu64, path,
                          h->len, DDPM_ST_MAX_HEADER);
    return DDPM_OK;
}

/* Writes the whole file to fp; false with errno set on failure. */
static bool write_body(FILE *fp, const sbuf *h, const ddpm_st_entry *t, int nt, const uint64_t *bytes) {
    unsigned char lenbuf[8];
    uint64_t n = h->len;
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)(n >> (8 * i));
    if (fwrite(lenbuf, 1, 8, fp) != 8) return false;
    if (fwrite(h->s, 1, h->len, fp) != h->len) return false;
    bool le = host_is_little_endian();
    for (int i = 0; i < nt; i++) {
        size_t nb = (size_t)bytes[i];
        if (le) {
            if (nb && fwrite(t[i].data, 1, nb, fp) != nb) return false;
            continue;
        }
        unsigned char chunk[4096];
        const unsigned char *src = (const unsigned char *)t[i].data;
        for (size_t o = 0; o < nb; o += sizeof chunk) {
            size_t m = nb - o < sizeof chunk ? nb - o : sizeof chunk;
            memcpy(chunk, src + o, m);
            swap4(chunk, m / 4);
            if (fwrite(chunk, 1, m, fp) != m) return false;
        }
    }
    return true;
}

ddpm_status ddpm_st_save(const char *path, const ddpm_st_entry *tensors, int ntensors, const ddpm_st_meta *meta,
                         int nmeta) {
    if (!path) return ddpm_error(DDPM_ERR_ARG, "ddpm_st_save: path is NULL");
    if (ntensors < 0 || nmeta < 0 || (ntensors > 0 && !tensors) || (nmeta > 0 && !meta))
        return ddpm_error(DDPM_ERR_ARG, "cannot save '%s': bad tensor or metadata list", path);

    uint64_t *bytes = malloc((size_t)(ntensors > 0 ? ntensors : 1) * sizeof *bytes);
    sbuf h = {0};
    ddpm_status s = DDPM_OK;
    if (!bytes) {
        s = ddpm_error(DDPM_ERR_NOMEM, "cannot save '%s': out of memory", path);
        goto done;
    }
    s = check_save_args(path, tensors, ntensors, meta, nmeta, bytes);
    if (s == DDPM_OK) s = build_header(&h, path, tensors, ntensors, meta, nmeta, bytes);
    if (s != DDPM_OK) goto done;

    /* temporary file, write, flush, fsync, close, rename over path, fsync the directory */
    ddpm_atomic_file af;
    s = ddpm_atomic_open(&af, path);
    if (s != DDPM_OK) goto done;
    if (!write_body(af.f, &h, tensors, ntensors, bytes)) s = ddpm_atomic_fail(&af, strerror(errno));
    else s = ddpm_atomic_commit(&af);
done:
    free(bytes);
    free(h.s);
    return s;
}

/* ---- typed metadata values ------------------------------------------------------ */

static ddpm_status meta_need(const ddpm_st_file *f, const char *path, const char *key, const char **out) {
    *out = ddpm_st_meta_get(f, key);
    if (!*out) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata lacks '%s'", path, key);
    return DDPM_OK;
}

static ddpm_status meta_bad(const char *path, const char *key, const char *v, const char *why) {
    return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is %s: '%s'", path, key, why, ddpm_show(v).s);
}

ddpm_status ddpm_meta_i64(const ddpm_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                          int64_t *out) {
    const char *s;
    ddpm_status st = meta_need(f, path, key, &s);
    if (st) return st;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool digits = s[0] >= '0' && s[0] <= '9';
    if (errno || end == s || *end || !(digits || (s[0] == '-' && lo < 0))) return meta_bad(path, key, s, "not an integer");
    if (v < lo || v > hi) return meta_bad(path, key, s, "out of range");
    *out = v;
    return DDPM_OK;
}

ddpm_status ddpm_meta_u64(const ddpm_st_file *f, const char *path, const char *key, uint64_t *out) {
    const char *s;
    ddpm_status st = meta_need(f, path, key, &s);
    if (st) return st;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || !(s[0] >= '0' && s[0] <= '9')) return meta_bad(path, key, s, "not an unsigned integer");
    *out = v;
    return DDPM_OK;
}

ddpm_status ddpm_meta_float(const ddpm_st_file *f, const char *path, const char *key, float lo, float hi,
                            float *out) {
    const char *s;
    ddpm_status st = meta_need(f, path, key, &s);
    if (st) return st;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return meta_bad(path, key, s, "not a number");
    if (v < lo || v > hi) return meta_bad(path, key, s, "out of range");
    *out = (float)v;
    return DDPM_OK;
}

ddpm_status ddpm_meta_enum(const ddpm_st_file *f, const char *path, const char *key, int (*parse)(const char *),
                           const char *expected, int *out) {
    const char *s;
    ddpm_status st = meta_need(f, path, key, &s);
    if (st) return st;
    int v = parse(s);
    if (v < 0 && expected)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is an unknown value (expected %s): '%s'", path, key,
                          expected, ddpm_show(s).s);
    if (v < 0) return meta_bad(path, key, s, "an unknown value");
    *out = v;
    return DDPM_OK;
}

ddpm_st_meta *ddpm_st_meta_copy(const ddpm_st_file *f, int *n) {
    *n = 0;
    if (f->nmeta == 0) return NULL;
    size_t bytes = (size_t)f->nmeta * sizeof(ddpm_st_meta);
    for (int i = 0; i < f->nmeta; i++) bytes += strlen(f->meta[i].key) + strlen(f->meta[i].value) + 2;
    ddpm_st_meta *m = malloc(bytes);
    if (!m) {
        *n = -1;
        ddpm_error(DDPM_ERR_NOMEM, "out of memory for metadata");
        return NULL;
    }
    char *s = (char *)(m + f->nmeta);
    for (int i = 0; i < f->nmeta; i++) {
        size_t a = strlen(f->meta[i].key) + 1, b = strlen(f->meta[i].value) + 1;
        m[i].key = memcpy(s, f->meta[i].key, a);
        m[i].value = memcpy(s + a, f->meta[i].value, b);
        s += a + b;
    }
    *n = f->nmeta;
    return m;
}

const char *ddpm_st_meta_find(const ddpm_st_meta *meta, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(meta[i].key, key)) return meta[i].value;
    return NULL;
}
