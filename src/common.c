/* common.c: the per-thread error message and aligned allocation. */
#include "ddpm/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_error[512];

const char *ddpm_last_error(void) { return g_error; }

void ddpm_clear_error(void) { g_error[0] = '\0'; }

ddpm_status ddpm_error(ddpm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return status;
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
