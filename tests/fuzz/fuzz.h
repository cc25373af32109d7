/* fuzz.h: helpers shared by the libFuzzer targets in tests/fuzz.
 *
 * The readers under test take a path, so each input is written to an
 * in-memory file (memfd) and handed over as /proc/self/fd/N: no disk I/O and
 * no temporary files left behind. FUZZ_CHECK aborts (a libFuzzer crash) when
 * an invariant of a successful parse does not hold. */
#ifndef DDPM_FUZZ_H
#define DDPM_FUZZ_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* The path of an in-memory file holding exactly data[0..size). */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("ddpm-fuzz", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    return path;
}

/* Library error messages are one line, NUL-terminated and bounded. */
static inline void fuzz_check_message(const char *msg) {
    size_t n = strlen(msg);
    if (n == 0 || n >= 511 || strchr(msg, '\n')) {
        fprintf(stderr, "bad error message (%zu bytes): \"%s\"\n", n, msg);
        abort();
    }
}

#endif
