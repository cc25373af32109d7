/* image.h: PNG output (stb_image_write): image grids, raw RGB, line plots
 * (loss curves) and scatter plots (2-D points); the plots live in plot.c.
 *
 * Every writer is atomic: the PNG is written to a temporary file in the same
 * directory, fsync'ed and renamed over the target, so a failed or
 * interrupted write never leaves a partial file. Errors name the path and the
 * reason, e.g. "cannot write 'out/grid.png': No such file or directory".
 */
#ifndef DDPM_IMAGE_H
#define DDPM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"

#define DDPM_GRID_PAD 2         /* pixels between and around the tiles */
#define DDPM_GRID_PAD_VALUE 128 /* mid-grey: visible against black MNIST backgrounds */

/* Size of the grid ddpm_image_write_grid makes: cols = min(nrow, n) tiles per
 * row (nrow <= 0: ceil(sqrt(n))), rows = ceil(n / cols),
 *   width  = cols * (w + PAD) + PAD,   height = rows * (h + PAD) + PAD. */
void ddpm_image_grid_size(int n, int h, int w, int nrow, int *out_w, int *out_h);
/* Whether that grid of n c-channel tiles, zoom times enlarged, fits in a PNG
 * (what ddpm_image_write_grid_scaled accepts), so a caller can refuse before
 * computing the images: DDPM_OK, or DDPM_ERR_ARG with "'PATH' would be a
 * W x H grid, too large for a PNG". */
ddpm_status ddpm_image_grid_check(const char *path, int n, int c, int h, int w, int nrow, int zoom);

/* Write images x (n, c, h, w), values in [lo, hi], as one PNG grid with nrow
 * tiles per row, DDPM_GRID_PAD pixels of mid-grey padding around and between
 * the tiles (unused cells of the last row are grey too). Values map linearly
 * to 0..255 (lo -> 0, hi -> 255), clamped and rounded to nearest; NaN -> 0.
 * c = 1 writes grayscale, c = 3 RGB. */
ddpm_status ddpm_image_write_grid(const char *path, const float *x, int n, int c, int h, int w,
                                  int nrow, float lo, float hi);

/* ddpm_image_write_grid with every tile enlarged zoom times by nearest
 * neighbour (each pixel a zoom x zoom block; the padding stays DDPM_GRID_PAD),
 * so 28-pixel digits are readable on screen. zoom = 1 is write_grid; the
 * grid's size is ddpm_image_grid_size(n, h * zoom, w * zoom, nrow). */
#define DDPM_GRID_MAX_SCALE 16
ddpm_status ddpm_image_write_grid_scaled(const char *path, const float *x, int n, int c, int h,
                                         int w, int nrow, float lo, float hi, int zoom);

/* Model-space values x[0..n) in [-1, 1] to pixels: round((x + 1) 127.5),
 * clamped to 0..255 (NaN -> 0). The one conversion every u8 output uses
 * (IDX files, evaluation), so they agree with each other byte for byte. */
void ddpm_image_to_u8(uint8_t *out, const float *x, size_t n);
/* Model-space images x (n, c, h, w) through ddpm_image_to_u8 into an IDX file
 * (ddpm_idx_write_images). */
ddpm_status ddpm_image_write_idx(const char *path, const float *x, int n, int c, int h, int w);

/* Write an 8-bit RGB image rgb (h, w, 3), row-major, interleaved. */
ddpm_status ddpm_image_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

/* Plot y[0..n) against its index as a width x height PNG: axes with numbered
 * ticks, the raw curve (light), its exponential moving average (dark, debiased,
 * span ~ n/40 points) and a title. log_y plots log10(y) (non-positive values
 * are skipped). Non-finite values are skipped. width >= 160, height >= 100. */
ddpm_status ddpm_plot_line_png(const char *path, const float *y, int n, int width, int height,
                               bool log_y, const char *title);

/* Scatter plots of 2-D points: one or more panels side by side (e.g. the
 * steps of a diffusion), each with axes, numbered ticks, grid lines and an
 * optional title, all panels over the same limits so they compare directly.
 * Points are disks blended over the background with opacity alpha, so dense
 * regions show darker; points outside the limits and non-finite ones are
 * skipped. */
typedef struct {
    const float *xy; /* [n, 2]: x, y */
    int n;
    const char *title; /* above the panel, or NULL */
} ddpm_scatter_panel;

typedef struct {
    int cols;                  /* panels per row; <= 0: all in one row */
    int panel_w, panel_h;      /* pixels per panel, 120x100 .. 4096x4096 */
    double xlo, xhi, ylo, yhi; /* limits; unless xlo < xhi and ylo < yhi, the points' bounding
                                  box, squared (one span for both axes) plus 5 % */
    float alpha;               /* opacity of one point, (0, 1] */
    int radius;                /* point radius in pixels, 0 .. 16 (0: one pixel) */
    uint8_t color[3];          /* RGB */
    const char *title;         /* figure title above the panels, or NULL */
} ddpm_scatter_opts;

/* cols 0, 240 x 240 px panels, automatic limits, alpha 0.25, radius 1, dark blue. */
void ddpm_scatter_opts_default(ddpm_scatter_opts *o);

ddpm_status ddpm_plot_scatter_png(const char *path, const ddpm_scatter_panel *panels, int npanels,
                                  const ddpm_scatter_opts *o);

#endif
