/* cliutil.h: run the `ddpm` binary from a test and capture what it did.
 * The binary is $DDPM_BIN (CMake sets it for every test). */
#ifndef DDPM_TEST_CLIUTIL_H
#define DDPM_TEST_CLIUTIL_H

#include <stdbool.h>
#include <stddef.h>

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
/* The whole file, NUL-terminated (malloc'ed; *n = its size without the NUL).
 * A cmocka failure if it cannot be read. */
char *cli_slurp(const char *path, size_t *n);
/* A small labelled IDX dataset in dir (created): n s x s images with a
 * diagonal-ish pattern, labels i % 4. Returns 0, -1 on failure. */
int cli_write_dataset(const char *dir, int n, int s);

/* r ended with exit `status` and, unless in_err is NULL, its stderr contains
 * in_err; and no sanitizer reported anything. A cmocka failure otherwise,
 * showing stdout and stderr. */
void cli_expect(const cli_result *r, int status, const char *in_err);
/* Writes text to path (a cmocka failure if it cannot). */
void cli_write_text(const char *path, const char *text);

/* Both files exist and hold the same bytes. */
bool cli_same_file(const char *a, const char *b);
/* Number of lines in s. */
int cli_lines(const char *s);

/* `ddpm <cmd> --help` exits 0, prints nothing on stderr and mentions every
 * one of words[n] on stdout (a cmocka failure names the first missing one). */
void cli_check_help(const char *cmd, const char *const *words, int n);

/* Starts $DDPM_BIN argv[0..] (NULL-terminated) in the background, stdin and
 * stdout to /dev/null, stderr to err_path, with the environment variables
 * env[0..] ("NAME=value", NULL-terminated; env itself may be NULL) added.
 * cli_wait: its exit code, or 128 + the signal that ended it. */
int cli_spawn(char *const argv[], const char *err_path, char *const env[]);
int cli_wait(int pid);
/* The smallest spread (max - min pixel value) over the tiles of a grid image
 * (w x h, one byte per pixel, tiles tw x th with `pad` pixels of padding
 * around and between them, as ddpm's PNG grids), measured inside each tile
 * only, so the padding's grey cannot pass a flat tile. Fails the test if the
 * image size is not a whole grid. */
int cli_grid_min_spread(const unsigned char *px, int w, int h, int tw, int th, int pad);
/* The evaluation rows of a training run's log.csv (iter,loss,lr,grad_norm,
 * time_s,fid,...): fails the test unless the header has the metric columns
 * and every row with a FID is at a multiple of `every` with fid > 0; returns
 * how many such rows there are. */
int cli_log_evals(const char *log_csv, int every);

#endif
