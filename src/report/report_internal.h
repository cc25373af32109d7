/* report_internal.h: the pieces of the run report (report.h): a run
 * directory read into memory (rundir.c), HTML text and data URLs (html.c),
 * SVG line plots (svg.c). Private to src/report and the tests. */
#ifndef DDPM_REPORT_INTERNAL_H
#define DDPM_REPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ddpm/common.h"

/* ---- html.c ---- */

/* Writes s with & < > " ' as entities; control bytes and invalid UTF-8
 * become '?', so text from any file is inert in both element text and
 * attribute values. NULL writes nothing. */
void ddpm_html_text(FILE *f, const char *s);
/* Base64 (RFC 4648, with '=' padding) of src[0..n) into dst, which holds
 * ddpm_base64_len(n) + 1 bytes; returns the length written (NUL-terminated). */
size_t ddpm_base64_len(size_t n);
size_t ddpm_base64_encode(char *dst, const unsigned char *src, size_t n);

/* ---- rundir.c ---- */

/* The whole regular file path (malloc'ed, NUL-terminated) when it holds at
 * most cap bytes; else an error message without the path (the caller names
 * the file). */
ddpm_status ddpm_report_slurp(const char *path, long long cap, char **text, size_t *len);

#define DDPM_RUN_MAX_NOTES 32

typedef struct {
    char *key, *value;
} ddpm_kv;

typedef struct {
    char *name; /* file name inside the run directory */
    long long iter; /* samples_NNNNNN.png's iteration, -1 for the others */
} ddpm_rdir_image;

typedef struct {
    const char *dir;
    const char *ckpt;        /* "ckpt.safetensors", or a toy run's "toy.safetensors" */
    bool toy;                /* a `ddpm toy` run (log.csv's first column is "step", or forward.png) */
    bool has_ckpt, has_log, has_info;
    ddpm_kv *meta; int nmeta; /* checkpoint metadata, in file order */
    ddpm_kv *info; int ninfo; /* run.txt */
    char **cols; int ncols;   /* log.csv header */
    double *val; int nrows;   /* [nrows, ncols], NAN for an empty or bad cell */
    ddpm_rdir_image *grids; int ngrids, ngrids_total; /* samples_NNNNNN.png, by iteration */
    char *notes[DDPM_RUN_MAX_NOTES]; int nnotes;     /* what is missing or damaged (raw text) */
} ddpm_rdir;

/* Reads everything there is; DDPM_ERR_ARG when dir is not a run (none of
 * ckpt.safetensors, toy.safetensors, log.csv, run.txt), DDPM_ERR_NOMEM. */
ddpm_status ddpm_rdir_load(ddpm_rdir *r, const char *dir);
void ddpm_rdir_free(ddpm_rdir *r);
/* printf-style note shown on the page (dropped past DDPM_RUN_MAX_NOTES). */
void ddpm_rdir_note(ddpm_rdir *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *ddpm_rdir_meta(const ddpm_rdir *r, const char *key);
const char *ddpm_rdir_info(const ddpm_rdir *r, const char *key);
/* The column's index, or -1. */
int ddpm_rdir_col(const ddpm_rdir *r, const char *name);
/* The x column: "iter", else "step", else column 0 (-1 without a log). */
int ddpm_rdir_xcol(const ddpm_rdir *r);
/* The wall-clock column: "time_s", else "elapsed_s", or -1. */
int ddpm_rdir_tcol(const ddpm_rdir *r);
/* The last finite value of column c, NAN if none. */
double ddpm_rdir_last(const ddpm_rdir *r, int c);

/* Embeds dir/name as <img src="data:image/png;base64,..."> with the given
 * class and alt text, its size the PNG's times the largest whole zoom that
 * fits box_w x box_h (0: no zoom); a missing, oversized or non-PNG file
 * becomes a note on r and writes nothing. Returns true when the image was
 * written. */
bool ddpm_html_png(FILE *f, ddpm_rdir *r, const char *name, const char *cls, const char *alt, int box_w, int box_h);

/* ---- svg.c ---- */

typedef struct {
    const double *x, *y; /* points x[i * xstride], y[i * ystride] for i < n; non-finite ones are skipped */
    int n, xstride, ystride;
    const char *color;   /* CSS colour */
    double width, opacity;
    bool markers;        /* a dot on every point (sparse series: evaluations) */
    const char *label;   /* for the legend, or NULL */
} ddpm_svg_series;

/* A line plot as inline <svg> (viewBox 520 x 290, scales with the page):
 * title, axes with round ticks, grid, the series, a legend of the labelled
 * series. log_y plots log10 (non-positive values skipped). The x axis
 * spans the points and xlim[0..1] (NULL: the points only). Series with no
 * finite point are skipped; none at all writes a "no data" panel. */
void ddpm_svg_plot(FILE *f, const char *title, const char *xlabel, const ddpm_svg_series *s, int ns,
                   bool log_y, const double *xlim);

/* Debiased exponential moving average of y[i*stride] over i < n into out[n],
 * span n/40 points (as the PNG plots), at least 8 but at most n/4; NaNs are skipped (carry the last). */
void ddpm_smooth_ema(double *out, const double *y, int n, int stride);

#endif
