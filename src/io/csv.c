/* csv.c: 2-D points from "x,y" text files. See csv.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The whole file as a NUL-terminated string (malloc'ed), size-checked first. */
static ddpm_status slurp(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return ddpm_error(DDPM_ERR_IO, "cannot read '%s': not a regular file", path);
    }
    if ((long long)sb.st_size > DDPM_CSV_MAX_BYTES) {
        fclose(f);
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': %lld bytes, more than the %lld accepted", path,
                          (long long)sb.st_size, DDPM_CSV_MAX_BYTES);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        fclose(f);
        return ddpm_error(DDPM_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)sb.st_size, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return ddpm_error(DDPM_ERR_IO, "cannot read '%s': read error", path);
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return DDPM_OK;
}

/* Field k of the line [s, e) (fields split at ','), trimmed, into buf.
 * Returns false if the line has fewer than k + 1 fields. */
static bool get_field(char *buf, size_t cap, const char *s, const char *e, int k) {
    for (int i = 0; i < k; i++) {
        const char *c = memchr(s, ',', (size_t)(e - s));
        if (!c) return false;
        s = c + 1;
    }
    const char *c = memchr(s, ',', (size_t)(e - s));
    const char *fe = c ? c : e;
    while (s < fe && isspace((unsigned char)*s)) s++;
    while (fe > s && isspace((unsigned char)fe[-1])) fe--;
    size_t n = (size_t)(fe - s) < cap - 1 ? (size_t)(fe - s) : cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return true;
}

/* A whole field as a number: 0 ok, 1 not a number, 2 not finite (as a float). */
static int parse_number(const char *txt, float *v) {
    char *end;
    double d = strtod(txt, &end);
    if (!*txt || *end) return 1;
    *v = (float)d;
    return isfinite(*v) ? 0 : 2;
}

static bool is_blank(const char *s, const char *e) {
    for (; s < e; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

static int count_fields(const char *s, const char *e) {
    int n = 1;
    for (; s < e; s++) n += *s == ',';
    return n;
}

/* Parses the line [s, e) (line number `line`) into xy. Returns 1 for a
 * point, 0 for a skipped line (blank, or the header when header_ok), -1
 * after setting the error. */
static int parse_line(const char *path, int line, const char *s, const char *e, bool header_ok,
                      float *xy) {
    if (is_blank(s, e)) return 0;
    char txt[2][128];
    get_field(txt[0], sizeof txt[0], s, e, 0);
    int nf = count_fields(s, e), r[2] = {parse_number(txt[0], &xy[0]), 1};
    if (r[0] == 1 && header_ok) return 0;
    if (nf < 2) {
        ddpm_error(DDPM_ERR_FORMAT, "'%s' line %d: 1 column, need at least 2 (x,y)", path, line);
        return -1;
    }
    get_field(txt[1], sizeof txt[1], s, e, 1);
    r[1] = parse_number(txt[1], &xy[1]);
    for (int k = 0; k < 2; k++) {
        if (r[k] == 1 && !txt[k][0])
            ddpm_error(DDPM_ERR_FORMAT, "'%s' line %d: column %d is empty", path, line, k + 1);
        else if (r[k] == 1)
            ddpm_error(DDPM_ERR_FORMAT, "'%s' line %d: '%s' is not a number", path, line, txt[k]);
        else if (r[k] == 2)
            ddpm_error(DDPM_ERR_FORMAT, "'%s' line %d: non-finite value '%s'", path, line, txt[k]);
        if (r[k]) return -1;
    }
    return 1;
}

/* Upper bound of the points in text: its number of lines. */
static size_t count_lines(const char *text, size_t len) {
    size_t n = 1;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    return n;
}

ddpm_status ddpm_csv_read_points(const char *path, float **xy, int *n) {
    *xy = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    ddpm_status st = slurp(path, &text, &len);
    if (st) return st;
    size_t cap = count_lines(text, len);
    if (cap > DDPM_CSV_MAX_LINES) {
        free(text);
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': more than %d lines", path, DDPM_CSV_MAX_LINES);
    }
    float *out = ddpm_malloc(cap * 2 * sizeof(float));
    if (!out) {
        free(text);
        return DDPM_ERR_NOMEM;
    }
    size_t np = 0;
    bool header_ok = true;
    int line = 1;
    for (const char *s = text; s <= text + len && st == DDPM_OK; line++) {
        const char *e = memchr(s, '\n', (size_t)(text + len - s));
        if (!e) e = text + len;
        int r = parse_line(path, line, s, e, header_ok, out + 2 * np);
        if (r < 0) st = DDPM_ERR_FORMAT;
        if (r > 0) np++;
        if (r > 0 || !is_blank(s, e)) header_ok = false; /* only the first line can be a header */
        s = e + 1;
    }
    free(text);
    if (st == DDPM_OK && np == 0)
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s': %s", path,
                        len == 0 ? "empty file (no points)" : "no points (only a header or blank lines)");
    if (st) {
        ddpm_free(out);
        return st;
    }
    *xy = out;
    *n = (int)np;
    return DDPM_OK;
}
