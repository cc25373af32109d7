/* common.c: the per-thread error message (kept to one line), untrusted text
 * made printable for messages, aligned allocation, the finite scan, enum
 * name tables and atomic file replacement. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/common.h"

#include <stdint.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

static _Thread_local char g_error[512];

const char *ddpm_last_error(void) { return g_error; }

void ddpm_clear_error(void) { g_error[0] = '\0'; }

ddpm_status ddpm_error(ddpm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    ddpm_one_line(g_error); /* whatever a quoted name or path holds */
    return status;
}

void ddpm_one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

size_t ddpm_utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

ddpm_shown ddpm_show(const char *text) {
    ddpm_shown out;
    if (!text) text = "";
    const unsigned char *p = (const unsigned char *)text, *end = p + strlen(text);
    size_t i = 0;
    while (p < end && i < 60) {
        size_t n = ddpm_utf8_len(p, end);
        if (n == 0 || *p < 0x20 || *p == 0x7f) {
            out.s[i++] = '?';
            p++;
        } else {
            memcpy(out.s + i, p, n);
            i += n;
            p += n;
        }
    }
    strcpy(out.s + i, p < end ? "..." : "");
    return out;
}

void *ddpm_malloc(size_t bytes) {
    if (bytes == 0) bytes = DDPM_ALIGN;
    size_t rounded = (bytes + DDPM_ALIGN - 1) / DDPM_ALIGN * DDPM_ALIGN;
    if (rounded < bytes) {
        ddpm_error(DDPM_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    void *p = aligned_alloc(DDPM_ALIGN, rounded);
    if (!p) ddpm_error(DDPM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *ddpm_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) {
        ddpm_error(DDPM_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = ddpm_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void ddpm_free(void *p) { free(p); }

size_t ddpm_first_nonfinite(const float *x, size_t n) {
    size_t first = n; /* integer min-reduction: exact and order-independent */
#pragma omp parallel for schedule(static) reduction(min : first) if (n >= DDPM_PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        if ((u & 0x7f800000u) == 0x7f800000u && i < first) first = i; /* exponent all ones: Inf or NaN */
    }
    return first;
}

int ddpm_enum_parse(const char *const *names, int n, const char *s) {
    if (!s) return -1;
    for (int k = 0; k < n; k++)
        if (!strcmp(s, names[k])) return k;
    return -1;
}

int ddpm_enum_lookup(const char *what, const char *const *names, int first, int n, const char *s) {
    int v = ddpm_enum_parse(names + first, n - first, s);
    if (v >= 0) return first + v;
    char list[256] = "";
    size_t len = 0;
    for (int k = first; k < n && len < sizeof list; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k == first ? "" : k + 1 < n ? ", " : " or ",
                                names[k]);
    ddpm_error(DDPM_ERR_ARG, "unknown %s '%s' (expected %s)", what, ddpm_show(s).s, list);
    return -1;
}

const char *ddpm_enum_name(const char *const *names, int n, int v) { return v >= 0 && v < n ? names[v] : "?"; }

static const char *const PRECISION_NAMES[] = {"fp32", "bf16"};

int ddpm_precision_parse(const char *name) {
    return ddpm_enum_lookup("precision", PRECISION_NAMES, 0, (int)DDPM_COUNT(PRECISION_NAMES), name);
}

const char *ddpm_precision_name(ddpm_precision p) {
    return ddpm_enum_name(PRECISION_NAMES, (int)DDPM_COUNT(PRECISION_NAMES), (int)p);
}

/* ---- test hooks (util.h) ------------------------------------------------------- */

/* Whether this write of path is the n-th of "<prefix>:<n>" in $env. */
static bool test_hook(const char *env, const char *path, long *count) {
    const char *v = getenv(env), *colon = v ? strrchr(v, ':') : NULL;
    if (!colon) return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return !strncmp(base, v, (size_t)(colon - v)) && ++*count == strtol(colon + 1, NULL, 10);
}

void ddpm_test_kill_point(const char *path) {
    static long count;
    if (test_hook("DDPM_TEST_KILL_AT", path, &count)) raise(SIGKILL);
}

void ddpm_test_kill_iter(int rank, int64_t iter) {
    const char *v = getenv("DDPM_TEST_KILL_ITER"), *colon = v ? strchr(v, ':') : NULL;
    if (colon && strtol(v, NULL, 10) == rank && strtoll(colon + 1, NULL, 10) == iter) raise(SIGKILL);
}

bool ddpm_test_no_space(const char *path) {
    static long count;
    return test_hook("DDPM_TEST_ENOSPC_AT", path, &count);
}

/* ---- atomic file replacement ---------------------------------------------------- */

ddpm_status ddpm_atomic_open(ddpm_atomic_file *a, const char *path) {
    *a = (ddpm_atomic_file){path, NULL, -1, NULL};
    size_t cap = strlen(path) + 16;
    a->tmp = malloc(cap);
    if (!a->tmp) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    snprintf(a->tmp, cap, "%s.tmp.XXXXXX", path);
    a->fd = mkstemp(a->tmp);
    if (a->fd < 0) {
        ddpm_status s = ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        return s;
    }
    fchmod(a->fd, 0644);
    a->f = fdopen(a->fd, "wb");
    if (!a->f) return ddpm_atomic_fail(a, strerror(errno));
    return DDPM_OK;
}

void ddpm_atomic_abort(ddpm_atomic_file *a) {
    if (a->f) fclose(a->f);
    else if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    *a = (ddpm_atomic_file){NULL, NULL, -1, NULL};
}

ddpm_status ddpm_atomic_fail(ddpm_atomic_file *a, const char *why) {
    ddpm_status s = ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", a->path, why);
    ddpm_atomic_abort(a);
    return s;
}

/* fsync the directory holding `path`, so the rename itself is durable.
 * Returns 0 or an errno value. */
static int sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = strdup(".");
    else if (slash == path) dir = strdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return errno;
    int err = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno; /* some filesystems can't */
    close(fd);
    return err;
}

ddpm_status ddpm_atomic_commit(ddpm_atomic_file *a) {
    int err = 0;
    if (fflush(a->f) != 0 || fsync(a->fd) != 0) err = errno;
    else if (ddpm_test_no_space(a->path)) err = ENOSPC;
    if (fclose(a->f) != 0 && !err) err = errno;
    a->f = NULL, a->fd = -1;
    if (err) return ddpm_atomic_fail(a, strerror(err));
    ddpm_test_kill_point(a->path);
    if (rename(a->tmp, a->path) != 0) {
        err = errno;
        ddpm_status s = ddpm_error(DDPM_ERR_IO, "cannot rename '%s' to '%s': %s", a->tmp, a->path,
                                   strerror(err));
        ddpm_atomic_abort(a);
        return s;
    }
    ddpm_status s = DDPM_OK;
    err = sync_dir(a->path);
    if (err)
        s = ddpm_error(DDPM_ERR_IO, "wrote '%s' but cannot sync its directory: %s", a->path,
                       strerror(err));
    free(a->tmp);
    *a = (ddpm_atomic_file){NULL, NULL, -1, NULL};
    return s;
}

bool ddpm_grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > INT_MAX / 2) return false;
        ncap *= 2;
    }
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return false;
    *arr = p;
    *cap = ncap;
    return true;
}

int ddpm_mkdirs(const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        if (stat(buf, &st) != 0) return -1;
        if (!S_ISDIR(st.st_mode)) return errno = ENOTDIR, -1;
        if (!(*p = c)) break;
    }
    return 0;
}

ddpm_status ddpm_check_writable(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ddpm_error(DDPM_ERR_IO, "cannot write '%s': it is a directory", path);
    size_t cap = strlen(path) + 32;
    char *buf = malloc(cap); /* the probe's name, then the directory's */
    if (!buf) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    snprintf(buf, cap, "%.*s.ddpm-probe-XXXXXX", dlen, path);
    int fd = mkstemp(buf);
    if (fd >= 0) {
        close(fd);
        unlink(buf);
        free(buf);
        return DDPM_OK;
    }
    int e = errno;
    snprintf(buf, cap, "%.*s", dlen > 1 ? dlen - 1 : 0, path);
    ddpm_status s = dlen > 1 && (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
                        ? ddpm_error(DDPM_ERR_IO, "cannot write '%s': directory '%s' does not exist", path, buf)
                        : ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    free(buf);
    return s;
}
