/* report.h: a training run as one self-contained HTML page, and several runs
 * compared on one page (`ddpm report`).
 *
 * A run directory is what `ddpm train -o DIR` or `ddpm toy -o DIR` writes:
 * ckpt.safetensors (its metadata is the recipe), log.csv (one row per logged
 * iteration; every column is optional, the header says which are there),
 * run.txt (optional `key=value` lines: command, cpu, threads, precision,
 * started, wall_s, img_per_s, status, ...) and PNG grids (samples.png,
 * samples_NNNNNN.png, classes.png; a toy run's forward.png, reverse.png).
 * A toy run's checkpoint is toy.safetensors. A directory holding none of
 * ckpt.safetensors, toy.safetensors, log.csv and run.txt is not a run (an
 * error). Anything else missing or damaged (no checkpoint yet, a cut
 * last line, a non-numeric cell, a file that is not a PNG) is reported on
 * the page as a note and the rest is shown.
 *
 * The page needs nothing else: images are embedded as base64 data URLs,
 * plots are inline SVG, there are no scripts, external styles or fonts.
 * Every string taken from a file (paths, metadata, run.txt, CSV headers,
 * class names) is HTML-escaped. While run.txt says status=running the page
 * says so and reloads itself every refresh_s seconds. The file is written
 * atomically (a reader never sees half a page), so a training loop can call
 * ddpm_report_write at every checkpoint while a browser has the page open.
 *
 * Limits, checked before anything is allocated: log.csv at most
 * DDPM_REPORT_MAX_LOG_BYTES, DDPM_REPORT_MAX_ROWS rows, DDPM_REPORT_MAX_COLS
 * columns; each embedded image at most DDPM_REPORT_MAX_IMAGE_BYTES; a
 * comparison at most DDPM_REPORT_MAX_RUNS runs. Larger inputs become notes.
 */
#ifndef DDPM_REPORT_H
#define DDPM_REPORT_H

#include <stdbool.h>

#include "ddpm/common.h"

#define DDPM_REPORT_MAX_RUNS 16
#define DDPM_REPORT_MAX_LOG_BYTES ((long long)256 << 20)
#define DDPM_REPORT_MAX_ROWS (1 << 22)
#define DDPM_REPORT_MAX_COLS 64
#define DDPM_REPORT_MAX_IMAGE_BYTES ((long long)64 << 20)
#define DDPM_REPORT_MAX_GRIDS 48 /* intermediate grids shown, evenly spaced over the run */

typedef struct {
    const char *title; /* the page's heading, or NULL for the run directory's name */
    int refresh_s;     /* reload interval while status=running, 1 .. 86400 */
} ddpm_report_opts;

/* title NULL, refresh_s 30. */
void ddpm_report_opts_default(ddpm_report_opts *o);

/* One run (nruns = 1): the run's report. Several (2 .. DDPM_REPORT_MAX_RUNS):
 * a comparison, refused (DDPM_ERR_ARG) when two runs differ in dataset or
 * image shape (metadata data, in_ch, res) or in kind (train against toy):
 *     cannot compare 'runs/a' and 'runs/b': res differs (28 vs 32)
 * o may be NULL (the defaults). Errors: a directory that is not a run,
 * the output cannot be written. */
ddpm_status ddpm_report_write(const char *const *run_dirs, int nruns, const char *out_path,
                              const ddpm_report_opts *o);

/* Where the page goes by default: RUN_DIR/report.html for one run,
 * compare.html (in the current directory) for several. False when it does
 * not fit in cap. */
bool ddpm_report_default_path(char *buf, size_t cap, const char *const *run_dirs, int nruns);

/* RUN_DIR/report.html with the default options: what a training loop calls
 * after each checkpoint (flush log.csv first, so its last row is whole). */
ddpm_status ddpm_report_write_run(const char *run_dir);

#endif
