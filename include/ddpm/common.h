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

typedef enum {
    DDPM_OK = 0,
    DDPM_ERR_ARG,     /* invalid argument or configuration */
    DDPM_ERR_IO,      /* cannot open, read or write a file */
    DDPM_ERR_FORMAT,  /* a file is malformed or inconsistent */
    DDPM_ERR_NOMEM,   /* allocation failed or an arena is full */
    DDPM_ERR_NUMERIC, /* a non-finite value where a finite one is required */
    DDPM_ERR_INTERRUPTED
} ddpm_status;

/* The message of the last failure on this thread ("" if none). */
const char *ddpm_last_error(void);

/* Record a printf-style message and return `status` (so callers can write
 * `return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));`). */
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

#endif
