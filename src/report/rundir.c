/* rundir.c: a run directory read for the report: checkpoint metadata, run.txt,
 * log.csv and the list of sample grids. Everything is optional; what is
 * missing or damaged becomes a note. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ddpm/report.h"
#include "ddpm/safetensors.h"
#include "report/report_internal.h"

#define RUN_TXT_MAX_BYTES (1 << 20)
#define RUN_TXT_MAX_KEYS 256
#define LOG_MAX_CELLS ((long long)1 << 25) /* rows x columns: 256 MB of doubles */

void ddpm_rdir_note(ddpm_rdir *r, const char *fmt, ...) {
    if (r->nnotes >= DDPM_RUN_MAX_NOTES) return;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = strdup(buf);
    if (s) r->notes[r->nnotes++] = s;
}

ddpm_status ddpm_report_slurp(const char *path, long long cap, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ddpm_error(DDPM_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return ddpm_error(DDPM_ERR_IO, "not a regular file");
    }
    if ((long long)sb.st_size > cap) {
        fclose(f);
        return ddpm_error(DDPM_ERR_FORMAT, "%lld bytes, more than the %lld read", (long long)sb.st_size, cap);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    size_t got = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
    bool bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ddpm_error(buf ? DDPM_ERR_IO : DDPM_ERR_NOMEM, buf ? "read error" : "out of memory");
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return DDPM_OK;
}

static bool exists(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static ddpm_status load_meta(ddpm_rdir *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->dir, r->ckpt);
    ddpm_st_file f;
    if (ddpm_st_load(&f, path)) {
        ddpm_rdir_note(r, "%s: damaged, no recipe from it: %s", r->ckpt, ddpm_last_error());
        return DDPM_OK;
    }
    r->meta = calloc((size_t)f.nmeta + 1, sizeof *r->meta);
    for (int i = 0; r->meta && i < f.nmeta; i++) {
        r->meta[i] = (ddpm_kv){strdup(f.meta[i].key), strdup(f.meta[i].value)};
        r->nmeta = i + 1;
        if (!r->meta[i].key || !r->meta[i].value) break;
    }
    bool ok = r->meta && (!f.nmeta || (r->meta[f.nmeta - 1].key && r->meta[f.nmeta - 1].value));
    ddpm_st_free(&f);
    return ok ? DDPM_OK : ddpm_error(DDPM_ERR_NOMEM, "out of memory");
}

static bool key_ok(const char *s, size_t n) {
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_')) return false;
    return true;
}

/* run.txt: key=value lines; a malformed line or a repeated key is a note. */
static ddpm_status load_info(ddpm_rdir *r) {
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/run.txt", r->dir);
    if (ddpm_report_slurp(path, RUN_TXT_MAX_BYTES, &text, &len)) {
        ddpm_rdir_note(r, "run.txt: %s", ddpm_last_error());
        return DDPM_OK;
    }
    r->info = calloc(RUN_TXT_MAX_KEYS, sizeof *r->info);
    if (!r->info) {
        free(text);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    }
    int line = 0;
    for (char *s = text, *next; s < text + len; s = next) {
        char *e = memchr(s, '\n', (size_t)(text + len - s));
        next = e ? e + 1 : text + len;
        if (!e) e = text + len;
        *e = '\0';
        line++;
        if (e > s && e[-1] == '\r') e[-1] = '\0';
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq || !key_ok(s, (size_t)(eq - s)) || ddpm_rdir_info(r, (*eq = '\0', s))) {
            ddpm_rdir_note(r, "run.txt line %d: not a new key=value line (key of a-z, 0-9, _), ignored", line);
            continue;
        }
        if (r->ninfo == RUN_TXT_MAX_KEYS) {
            ddpm_rdir_note(r, "run.txt: more than %d keys, the rest ignored", RUN_TXT_MAX_KEYS);
            break;
        }
        r->info[r->ninfo] = (ddpm_kv){strdup(s), strdup(eq + 1)};
        if (!r->info[r->ninfo].key || !r->info[r->ninfo].value) {
            free(r->info[r->ninfo].key);
            free(r->info[r->ninfo].value);
            free(text);
            return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        }
        r->ninfo++;
    }
    free(text);
    return DDPM_OK;
}

/* Splits the line s (NUL-terminated, modified) at commas into at most cap
 * trimmed fields; returns the number of fields (cap + 1 when there are more). */
static int split(char *s, char **fields, int cap) {
    int n = 0;
    for (char *p = s;; p++) {
        char *c = strchr(p, ',');
        if (c) *c = '\0';
        while (isspace((unsigned char)*p)) p++;
        char *e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
        if (n == cap) return cap + 1;
        fields[n++] = p;
        if (!c) return n;
        p = c;
    }
}

static bool number(const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && errno != ERANGE;
}

/* The header: column names that are not numbers (a file without a header
 * would otherwise take its first row for names). */
static bool parse_header(ddpm_rdir *r, char *line) {
    char *f[DDPM_REPORT_MAX_COLS];
    int n = split(line, f, DDPM_REPORT_MAX_COLS);
    if (n < 1 || n > DDPM_REPORT_MAX_COLS) {
        ddpm_rdir_note(r, "log.csv: more than %d columns, not read", DDPM_REPORT_MAX_COLS);
        return false;
    }
    double v;
    for (int i = 0; i < n; i++)
        if (!*f[i] || number(f[i], &v)) {
            ddpm_rdir_note(r, "log.csv: the first line is not a header of column names, not read");
            return false;
        }
    r->cols = calloc((size_t)n, sizeof *r->cols);
    for (int i = 0; r->cols && i < n; i++)
        if ((r->cols[r->ncols++] = strdup(f[i])) == NULL) break;
    if (!r->cols || !r->cols[r->ncols - 1]) {
        ddpm_rdir_note(r, "log.csv: out of memory, not read");
        r->ncols = 0;
        return false;
    }
    return true;
}

typedef struct {
    int bad_rows, first_bad_row, bad_cells, first_bad_cell;
} log_damage;

static void parse_row(ddpm_rdir *r, char *line, int lineno, bool cut, log_damage *d) {
    char *f[DDPM_REPORT_MAX_COLS + 1];
    int n = split(line, f, DDPM_REPORT_MAX_COLS);
    if (n != r->ncols) {
        const char *status = ddpm_rdir_info(r, "status");
        bool live = status && !strcmp(status, "running"); /* the writer is mid-line: not damage */
        if (cut && !live) ddpm_rdir_note(r, "log.csv: the last line is cut (%d of %d fields), left out", n, r->ncols);
        else if (d->bad_rows++ == 0) d->first_bad_row = lineno;
        return;
    }
    double *row = r->val + (size_t)r->nrows * r->ncols;
    for (int i = 0; i < n; i++) {
        double v = NAN;
        if (*f[i] && !number(f[i], &v)) {
            v = NAN;
            if (d->bad_cells++ == 0) d->first_bad_cell = lineno;
        }
        row[i] = isfinite(v) ? v : NAN; /* a logged nan or inf is a gap in the curve */
    }
    r->nrows++;
}

static ddpm_status parse_log(ddpm_rdir *r, char *text, size_t len) {
    long long lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    int lineno = 0;
    char *s = text, *next;
    for (; s < text + len; s = next) { /* the header: the first non-blank line */
        char *e = memchr(s, '\n', (size_t)(text + len - s));
        next = e ? e + 1 : text + len;
        if (e) *e = '\0';
        lineno++;
        if (e > s && e[-1] == '\r') e[-1] = '\0';
        if (*s) break;
    }
    if (s >= text + len) {
        ddpm_rdir_note(r, "log.csv: empty");
        return DDPM_OK;
    }
    if (!parse_header(r, s)) return DDPM_OK;
    if (lines > DDPM_REPORT_MAX_ROWS || lines * r->ncols > LOG_MAX_CELLS) {
        ddpm_rdir_note(r, "log.csv: %lld lines, more than the %d read", lines, DDPM_REPORT_MAX_ROWS);
        return DDPM_OK;
    }
    r->val = malloc((size_t)lines * r->ncols * sizeof *r->val);
    if (!r->val) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    log_damage d = {0};
    for (s = next; s < text + len; s = next) {
        char *e = memchr(s, '\n', (size_t)(text + len - s));
        next = e ? e + 1 : text + len;
        if (e) *e = '\0';
        else e = text + len;
        lineno++;
        if (e > s && e[-1] == '\r') e[-1] = '\0';
        if (*s) parse_row(r, s, lineno, next == text + len && text[len - 1] != '\n', &d);
    }
    if (d.bad_rows)
        ddpm_rdir_note(r, "log.csv: %d line%s with a number of fields other than the header's %d (first: line %d), left out",
                      d.bad_rows, d.bad_rows > 1 ? "s" : "", r->ncols, d.first_bad_row);
    if (d.bad_cells)
        ddpm_rdir_note(r, "log.csv: %d cell%s that are not numbers (first: line %d), left blank", d.bad_cells,
                      d.bad_cells > 1 ? "s" : "", d.first_bad_cell);
    return DDPM_OK;
}

static ddpm_status load_log(ddpm_rdir *r) {
    char path[4200], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/log.csv", r->dir);
    if (ddpm_report_slurp(path, DDPM_REPORT_MAX_LOG_BYTES, &text, &len)) {
        ddpm_rdir_note(r, "log.csv: %s", ddpm_last_error());
        return DDPM_OK;
    }
    ddpm_status s = parse_log(r, text, len);
    free(text);
    return s;
}

static int by_iter(const void *a, const void *b) {
    long long x = ((const ddpm_rdir_image *)a)->iter, y = ((const ddpm_rdir_image *)b)->iter;
    return (x > y) - (x < y);
}

/* samples_NNNNNN.png (6 or more digits) in iteration order; past
 * DDPM_REPORT_MAX_GRIDS, evenly spaced ones from the first to the last. */
static ddpm_status find_grids(ddpm_rdir *r) {
    DIR *d = opendir(r->dir);
    if (!d) return DDPM_OK;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name), digits = n > 12 ? n - 12 : 0;
        if (n < 18 || n > 40 || strncmp(e->d_name, "samples_", 8) || strcmp(e->d_name + n - 4, ".png")) continue;
        if (strspn(e->d_name + 8, "0123456789") != digits) continue;
        if (r->ngrids == cap) {
            cap = cap ? 2 * cap : 64;
            ddpm_rdir_image *g = cap <= 1 << 20 ? realloc(r->grids, (size_t)cap * sizeof *g) : NULL;
            if (!g) break;
            r->grids = g;
        }
        char *name = strdup(e->d_name);
        if (!name) break;
        r->grids[r->ngrids++] = (ddpm_rdir_image){name, strtoll(e->d_name + 8, NULL, 10)};
    }
    closedir(d);
    if (r->ngrids) qsort(r->grids, (size_t)r->ngrids, sizeof *r->grids, by_iter);
    r->ngrids_total = r->ngrids;
    if (r->ngrids > DDPM_REPORT_MAX_GRIDS) { /* keep grid j (n-1)/(k-1) for j < k: distinct as n > k */
        int n = r->ngrids, k = DDPM_REPORT_MAX_GRIDS, m = 0;
        for (int i = 0, j = 0; i < n; i++) {
            if (j < k && i == (int)((long long)j * (n - 1) / (k - 1))) {
                r->grids[m++] = r->grids[i];
                j++;
            } else free(r->grids[i].name);
        }
        r->ngrids = m;
    }
    return DDPM_OK;
}

ddpm_status ddpm_rdir_load(ddpm_rdir *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ddpm_error(DDPM_ERR_ARG, "'%s' is not a run directory: %s", dir,
                          stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
    r->ckpt = exists(dir, "ckpt.safetensors") || !exists(dir, "toy.safetensors") ? "ckpt.safetensors" : "toy.safetensors";
    r->has_ckpt = exists(dir, r->ckpt);
    r->has_log = exists(dir, "log.csv");
    r->has_info = exists(dir, "run.txt");
    if (!r->has_ckpt && !r->has_log && !r->has_info)
        return ddpm_error(DDPM_ERR_ARG, "'%s' is not a run directory (none of ckpt.safetensors, toy.safetensors, log.csv, run.txt)", dir);
    ddpm_status s = DDPM_OK;
    if (r->has_ckpt) s = load_meta(r);
    if (!s && r->has_info) s = load_info(r);
    if (!s && r->has_log) s = load_log(r);
    if (!s) s = find_grids(r);
    if (s) {
        ddpm_rdir_free(r);
        return s;
    }
    r->toy = exists(dir, "forward.png") || !strcmp(r->ckpt, "toy.safetensors") || (r->ncols && !strcmp(r->cols[0], "step"));
    if (!r->has_ckpt && !r->toy) ddpm_rdir_note(r, "ckpt.safetensors: not written yet (the recipe shows run.txt only)");
    if (!r->has_log) ddpm_rdir_note(r, "log.csv: missing");
    return DDPM_OK;
}

void ddpm_rdir_free(ddpm_rdir *r) {
    for (int i = 0; i < r->nmeta; i++) free(r->meta[i].key), free(r->meta[i].value);
    for (int i = 0; i < r->ninfo; i++) free(r->info[i].key), free(r->info[i].value);
    for (int i = 0; i < r->ncols; i++) free(r->cols[i]);
    for (int i = 0; i < r->ngrids; i++) free(r->grids[i].name);
    for (int i = 0; i < r->nnotes; i++) free(r->notes[i]);
    free(r->meta);
    free(r->info);
    free(r->cols);
    free(r->val);
    free(r->grids);
    memset(r, 0, sizeof *r);
}

static const char *kv_get(const ddpm_kv *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key)) return kv[i].value;
    return NULL;
}

const char *ddpm_rdir_meta(const ddpm_rdir *r, const char *key) { return kv_get(r->meta, r->nmeta, key); }
const char *ddpm_rdir_info(const ddpm_rdir *r, const char *key) { return kv_get(r->info, r->ninfo, key); }

int ddpm_rdir_col(const ddpm_rdir *r, const char *name) {
    for (int i = 0; i < r->ncols; i++)
        if (!strcmp(r->cols[i], name)) return i;
    return -1;
}

int ddpm_rdir_xcol(const ddpm_rdir *r) {
    int c = ddpm_rdir_col(r, "iter");
    if (c < 0) c = ddpm_rdir_col(r, "step");
    return c >= 0 ? c : r->ncols ? 0 : -1;
}

int ddpm_rdir_tcol(const ddpm_rdir *r) {
    int c = ddpm_rdir_col(r, "time_s");
    return c >= 0 ? c : ddpm_rdir_col(r, "elapsed_s");
}

double ddpm_rdir_last(const ddpm_rdir *r, int c) {
    if (c < 0) return NAN;
    for (int i = r->nrows - 1; i >= 0; i--)
        if (isfinite(r->val[(size_t)i * r->ncols + c])) return r->val[(size_t)i * r->ncols + c];
    return NAN;
}
