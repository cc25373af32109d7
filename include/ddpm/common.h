/* common.h: status codes and the error message shared by every module.
 *
 * Library functions never print and never exit. A failing function returns a
 * ddpm_status other than DDPM_OK and leaves a one-line, human-readable message
 * (without a trailing newline) for ddpm_last_error(). The message is kept per
 * thread. Only src/cli prints it, prefixed by the command name:
 *
 *     ddpm train: cannot open 'x.idx': No such file or directory
 */
#ifndef DDPM_COMMON_H
#define DDPM_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DDPM_OK = 0,
    DDPM_ERR_ARG,     /* invalid argument or configuration */
    DDPM_ERR_IO,      /* cannot open, read or write a file */
    DDPM_ERR_FORMAT,  /* a file is malformed or inconsistent */
    DDPM_ERR_NOMEM,   /* allocation failed or an arena is full */
    DDPM_ERR_NUMERIC, /* a non-finite value where a finite one is required */
    DDPM_ERR_INTERRUPTED
} ddpm_status;

/* Arithmetic of the network's products (convs, linear layers, attention):
 * FP32 (the default, 0) or BF16, where both operands of every product are
 * rounded to bfloat16 (nearest even) and the products summed in float.
 * Everything else (normalisation statistics, softmax, losses, reductions,
 * master weights, Adam, EMA) stays float either way. */
typedef enum { DDPM_PREC_FP32 = 0, DDPM_PREC_BF16 } ddpm_precision;
/* "fp32" -> DDPM_PREC_FP32, "bf16" -> DDPM_PREC_BF16; -1 for anything else,
 * with "unknown precision 'X' (expected fp32 or bf16)" as the last error. */
int ddpm_precision_parse(const char *name);
/* "fp32", "bf16", or "?" outside the enum. */
const char *ddpm_precision_name(ddpm_precision p);

/* The message of the last failure on this thread ("" if none). */
const char *ddpm_last_error(void);

/* Record a printf-style message and return `status` (so callers can write
 * `return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));`).
 * Control characters in the result (a newline in a quoted file name or
 * tensor name) become '?', so the message stays one line. */
ddpm_status ddpm_error(ddpm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void ddpm_clear_error(void);

/* Aligned allocation (64 bytes) for float buffers; free with ddpm_free.
 * Returns NULL and sets the error message on failure or size overflow. */
void *ddpm_malloc(size_t bytes);
void *ddpm_calloc(size_t count, size_t size);
void ddpm_free(void *p);

#define DDPM_ALIGN 64

/* The index of the first Inf or NaN in x[0..n), or n when all are finite. */
size_t ddpm_first_nonfinite(const float *x, size_t n);

/* Atomic file replacement, shared by every writer (IDX, PNG, safetensors):
 *
 *     ddpm_atomic_file a;
 *     ddpm_status s = ddpm_atomic_open(&a, path);
 *     if (s != DDPM_OK) return s;
 *     if (fwrite(buf, 1, n, a.f) != n) return ddpm_atomic_fail(&a, strerror(errno));
 *     return ddpm_atomic_commit(&a);
 *
 * The data goes to a temporary file "<path>.tmp.XXXXXX" (mkstemp, mode 0644)
 * in the same directory; commit flushes it, fsyncs it, closes it, renames it
 * over `path` and fsyncs the directory. Until the rename an existing `path` is
 * untouched, and every failure removes the temporary file. Write through `f`,
 * or through `fd` when nothing is buffered in `f` (e.g. zlib on dup(fd)).
 * Messages name `path` and the reason:
 *     cannot write 'out/grid.png': No such file or directory */
typedef struct {
    const char *path; /* destination (the caller's string, kept until commit/abort) */
    char *tmp;        /* the temporary file's name (malloc'ed) */
    int fd;           /* its descriptor */
    FILE *f;          /* a stream over fd */
} ddpm_atomic_file;

/* Creates the temporary file. On failure nothing is left to clean up. */
ddpm_status ddpm_atomic_open(ddpm_atomic_file *a, const char *path);
/* Fails fast, before long work, when `path` could not be written later: a
 * directory, a missing directory, no permission (probes with a temporary
 * file it removes). The message names the path and the reason. */
ddpm_status ddpm_check_writable(const char *path);
/* Flush, fsync, close, rename over path, fsync the directory. On failure
 * before the rename the temporary file is removed. Releases `a` either way. */
ddpm_status ddpm_atomic_commit(ddpm_atomic_file *a);
/* Closes and removes the temporary file, releases `a`. */
void ddpm_atomic_abort(ddpm_atomic_file *a);
/* ddpm_atomic_abort, then returns DDPM_ERR_IO with "cannot write '<path>': <why>". */
ddpm_status ddpm_atomic_fail(ddpm_atomic_file *a, const char *why);

#endif
