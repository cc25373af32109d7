/* cliutil.h: run the `ddpm` binary from a test and capture what it did.
 * The binary is $DDPM_BIN (CMake sets it for every test). */
#ifndef DDPM_TEST_CLIUTIL_H
#define DDPM_TEST_CLIUTIL_H

#include <stdbool.h>

typedef struct {
    int status;      /* exit code, or 128+signal if it was killed by a signal */
    char out[65536]; /* stdout (truncated) */
    char err[65536]; /* stderr (truncated) */
} cli_result;

/* Runs `$DDPM_BIN <args>` through /bin/sh (args is a shell fragment, printf
 * style) with stdin from /dev/null. Returns r->status. */
int cli_run(cli_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp) and its removal. */
void cli_tmpdir(char *out, unsigned long cap);
void cli_rmtree(const char *dir);
bool cli_exists(const char *path);
/* The whole file, NUL-terminated (not counted in *n); a cmocka failure if
 * it cannot be read. free() it. */
char *cli_slurp(const char *path, unsigned long *n);
/* Number of lines in s. */
int cli_lines(const char *s);

/* `ddpm <cmd> --help` exits 0, prints nothing on stderr and mentions every
 * one of words[n] on stdout (a cmocka failure names the first missing one). */
void cli_check_help(const char *cmd, const char *const *words, int n);

#endif
