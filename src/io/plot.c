/* plot.c: line plots (loss curves) and scatter plots (2-D points) as PNGs,
 * drawn on a small RGB canvas with a built-in 5x7 font. Both share the axes:
 * a plot box, "nice" ticks, grid lines and labels. See image.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/image.h"
#include "io/png.h"

/* ---- a tiny canvas ------------------------------------------------------------------- */

typedef struct {
    uint8_t *px; /* (h, w, 3) */
    int w, h;
} canvas;

typedef struct {
    uint8_t r, g, b;
} rgb;

static void put(canvas *cv, int x, int y, rgb c) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    uint8_t *p = cv->px + ((size_t)y * cv->w + x) * 3;
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

static void fill_rect(canvas *cv, int x0, int y0, int x1, int y1, rgb c) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(cv, x, y, c);
}

/* Bresenham line, both ends included. */
static void line(canvas *cv, int x0, int y0, int x1, int y1, rgb c) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        put(cv, x0, y0, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

/* 5x7 font: 7 rows per glyph, bit 4 = leftmost column. Letters are drawn
 * upper case (lower case maps to them); unknown characters draw as '?'. */
static const struct {
    char ch;
    uint8_t rows[7];
} font[] = {
    // clang-format off
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}}, {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}}, {'*', {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    // clang-format on
};

#define GLYPH_ADV 6 /* 5 columns + 1 of spacing */

static const uint8_t *glyph(char ch) {
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof *font; i++)
        if (font[i].ch == ch) return font[i].rows;
    return glyph('?');
}

static int text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (n * GLYPH_ADV - 1) * scale : 0;
}

/* (x, y) is the top-left corner of the first glyph. */
static void text(canvas *cv, int x, int y, const char *s, rgb c, int scale) {
    for (; *s; s++, x += GLYPH_ADV * scale) {
        const uint8_t *g = glyph(*s);
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (g[r] & (0x10 >> col))
                    fill_rect(cv, x + col * scale, y + r * scale, x + col * scale + scale - 1,
                              y + r * scale + scale - 1, c);
    }
}

/* ---- ticks ------------------------------------------------------------------------- */

/* A "nice" step (1, 2 or 5 times a power of ten) giving about `want` ticks over span. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

static void fmt_tick(char *buf, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0.0; /* no "-0" */
    double a = fabs(v);
    if (v != 0.0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(buf, cap, "%.0e", v);
        return;
    }
    int dec = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec > 6 ? 6 : dec, v);
}

typedef struct {
    double pos[32]; /* in plot coordinates (log10 y when log_y) */
    char label[32][16];
    int n;
} ticks;

/* Ticks over [lo, hi] in value space; log_y: the plot coordinate is log10(value). */
static void make_ticks(ticks *t, double lo, double hi, bool log_y, int want, double min_step) {
    t->n = 0;
    if (log_y && hi - lo >= 1.0) { /* decades; also 2x and 5x when there are few */
        double step = fmax(1.0, ceil((hi - lo) / want));
        bool sub = hi - lo < 3.0;
        for (double k = floor(lo / step) * step; k <= hi + 1e-9; k += step) {
            for (int m = 1; m <= 5; m += sub ? (m == 1 ? 1 : 3) : 5) { /* m = 1, 2, 5 */
                double p = k + log10((double)m);
                if (p < lo - 1e-9 || p > hi + 1e-9 || t->n == 32) continue;
                if (k >= -3 && k <= 4)
                    snprintf(t->label[t->n], 16, "%g", m * pow(10.0, k));
                else
                    snprintf(t->label[t->n], 16, "%de%d", m, (int)k);
                t->pos[t->n++] = p;
            }
        }
        return;
    }
    double vlo = log_y ? pow(10.0, lo) : lo, vhi = log_y ? pow(10.0, hi) : hi;
    double step = fmax(nice_step(vhi - vlo, want), min_step);
    for (double v = ceil(vlo / step) * step; v <= vhi + step * 1e-9 && t->n < 32; v += step) {
        if (log_y && v <= 0.0) continue;
        fmt_tick(t->label[t->n], 16, v, step);
        t->pos[t->n++] = log_y ? log10(v) : v;
    }
}

/* ---- axes ---------------------------------------------------------------------------- */

/* A plot box [x0, x1] x [y0, y1] in pixels showing [xlo, xhi] x [ylo, yhi]. */
typedef struct {
    int x0, x1, y0, y1;
    double xlo, xhi, ylo, yhi;
} axes;

static int ax_x(const axes *a, double v) {
    return a->x0 + (int)lround((v - a->xlo) / (a->xhi - a->xlo) * (a->x1 - a->x0));
}

static int ax_y(const axes *a, double v) {
    return a->y1 - (int)lround((v - a->ylo) / (a->yhi - a->ylo) * (a->y1 - a->y0));
}

static int ticks_label_width(const ticks *t) {
    int w = 0;
    for (int i = 0; i < t->n; i++) w = w > text_width(t->label[i], 1) ? w : text_width(t->label[i], 1);
    return w;
}

/* Grid lines, tick marks and tick labels of both axes. */
static void draw_ticks(canvas *cv, const axes *a, const ticks *xt, const ticks *yt) {
    const rgb black = {0, 0, 0}, grid = {228, 228, 228}, text_c = {40, 40, 40};
    for (int i = 0; i < yt->n; i++) {
        int yy = ax_y(a, yt->pos[i]);
        if (yy < a->y0 || yy > a->y1) continue;
        line(cv, a->x0 + 1, yy, a->x1, yy, grid);
        line(cv, a->x0 - 4, yy, a->x0, yy, black);
        text(cv, a->x0 - 7 - text_width(yt->label[i], 1), yy - 3, yt->label[i], text_c, 1);
    }
    for (int i = 0; i < xt->n; i++) {
        int xx = ax_x(a, xt->pos[i]);
        if (xx < a->x0 || xx > a->x1) continue;
        line(cv, xx, a->y0, xx, a->y1 - 1, grid);
        line(cv, xx, a->y1, xx, a->y1 + 4, black);
        text(cv, xx - text_width(xt->label[i], 1) / 2, a->y1 + 8, xt->label[i], text_c, 1);
    }
}

/* The box around the plot (drawn last, so the data never covers it). */
static void draw_box(canvas *cv, const axes *a) {
    const rgb black = {0, 0, 0};
    line(cv, a->x0, a->y0, a->x0, a->y1, black);
    line(cv, a->x0, a->y1, a->x1, a->y1, black);
    line(cv, a->x0, a->y0, a->x1, a->y0, black);
    line(cv, a->x1, a->y0, a->x1, a->y1, black);
}

static ddpm_status canvas_new(canvas *cv, int w, int h, const char *path) {
    cv->w = w, cv->h = h;
    cv->px = malloc((size_t)w * h * 3);
    if (!cv->px) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    memset(cv->px, 255, (size_t)w * h * 3);
    return DDPM_OK;
}

/* Writes the canvas and frees it. */
static ddpm_status canvas_write(canvas *cv, const char *path) {
    ddpm_status st = ddpm_png_write(path, cv->px, cv->w, cv->h, 3);
    free(cv->px);
    cv->px = NULL;
    return st;
}

/* ---- line plot ------------------------------------------------------------------------- */

/* Plot coordinates py (NAN = skipped) and the debiased EMA pe of y[0..n);
 * returns the padded range of py in *lo, *hi. */
static void line_points(const float *y, int n, bool log_y, double *py, double *pe, double *lo,
                        double *hi) {
    double span = fmax(1.0, n / 40.0), beta = 1.0 - 1.0 / span; /* EMA decay */
    double ema = 0.0, wsum = 0.0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = y[i];
        bool ok = isfinite(v) && (!log_y || v > 0.0);
        py[i] = pe[i] = NAN;
        if (ok) {
            ema = beta * ema + (1.0 - beta) * v;
            wsum = beta * wsum + (1.0 - beta); /* debias: divide by the weight seen so far */
            py[i] = log_y ? log10(v) : v;
            *lo = fmin(*lo, py[i]);
            *hi = fmax(*hi, py[i]);
        }
        if (wsum > 0.0) pe[i] = log_y ? log10(ema / wsum) : ema / wsum;
    }
    if (!(*lo <= *hi)) *lo = 0.0, *hi = 1.0; /* no data */
    double d = *hi - *lo < 1e-12 * fmax(1.0, fabs(*hi)) ? (log_y ? 0.5 : fmax(fabs(*hi) * 0.1, 0.5))
                                                        : (*hi - *lo) * 0.05;
    *lo -= d, *hi += d;
}

/* The raw curve (light), then its EMA (dark, 2 px thick) on top. */
static void draw_curves(canvas *cv, const axes *a, const double *py, const double *pe, int n) {
    const rgb raw_c = {160, 190, 235}, ema_c = {20, 60, 170};
    for (int pass = 0; pass < 2; pass++) {
        const double *v = pass ? pe : py;
        rgb c = pass ? ema_c : raw_c;
        int prev = -1;
        for (int i = 0; i < n; i++) {
            if (isnan(v[i])) {
                prev = -1;
                continue;
            }
            int xa = ax_x(a, prev >= 0 ? prev : i), ya = ax_y(a, v[prev >= 0 ? prev : i]);
            int xb = ax_x(a, i), yb = ax_y(a, v[i]);
            line(cv, xa, ya, xb, yb, c);
            if (pass) line(cv, xa, ya + 1, xb, yb + 1, c);
            prev = i;
        }
    }
}

static void draw_legend(canvas *cv, const axes *a) {
    const rgb raw_c = {160, 190, 235}, ema_c = {20, 60, 170}, text_c = {40, 40, 40};
    int lx = a->x1 - text_width("raw", 1) - text_width("ema", 1) - 44, ly = a->y0 + 8;
    fill_rect(cv, lx, ly + 2, lx + 10, ly + 4, raw_c);
    text(cv, lx + 14, ly, "raw", text_c, 1);
    lx += 14 + text_width("raw", 1) + 10;
    fill_rect(cv, lx, ly + 2, lx + 10, ly + 4, ema_c);
    text(cv, lx + 14, ly, "ema", text_c, 1);
}

ddpm_status ddpm_plot_line_png(const char *path, const float *y, int n, int width, int height,
                               bool log_y, const char *title) {
    if (width < 160 || height < 100 || width > 8192 || height > 8192)
        return ddpm_error(DDPM_ERR_ARG,
                          "cannot write '%s': plot size %d x %d outside 160x100..8192x8192", path,
                          width, height);
    if (n < 0) return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': %d points", path, n);
    int m = n > 0 ? n : 1;
    double *py = malloc(2 * (size_t)m * sizeof(double)), *pe = py + m;
    if (!py) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    double lo, hi;
    line_points(y, n, log_y, py, pe, &lo, &hi);
    ticks yt, xt;
    make_ticks(&yt, lo, hi, log_y, height / 60 > 3 ? height / 60 : 3, 0.0);
    double xmax = n > 1 ? n - 1 : 1;
    make_ticks(&xt, 0.0, xmax, false, width / 100 > 3 ? width / 100 : 3, 1.0); /* indices */
    int tscale = width >= 480 ? 2 : 1;
    axes a = {ticks_label_width(&yt) + 12, width - 16, 12 + 7 * tscale + 8, height - 24,
              0.0, xmax, lo, hi};
    canvas cv;
    ddpm_status st = canvas_new(&cv, width, height, path);
    if (st == DDPM_OK) {
        draw_ticks(&cv, &a, &xt, &yt);
        draw_curves(&cv, &a, py, pe, n);
        draw_box(&cv, &a);
        if (title) text(&cv, (width - text_width(title, tscale)) / 2, 8, title, (rgb){0, 0, 0}, tscale);
        draw_legend(&cv, &a);
        st = canvas_write(&cv, path);
    }
    free(py);
    return st;
}

/* ---- scatter plot ---------------------------------------------------------------------- */

void ddpm_scatter_opts_default(ddpm_scatter_opts *o) {
    *o = (ddpm_scatter_opts){.cols = 0, .panel_w = 240, .panel_h = 240, .xlo = 0, .xhi = 0,
                             .ylo = 0, .yhi = 0, .alpha = 0.25f, .radius = 1,
                             .color = {20, 60, 170}, .title = NULL};
}

/* Blends colour c with opacity a into the disk of radius r around (x, y). */
static void blend_disk(canvas *cv, int x, int y, int r, rgb c, float a) {
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            int px = x + dx, py = y + dy;
            if (dx * dx + dy * dy > r * r + r || px < 0 || py < 0 || px >= cv->w || py >= cv->h)
                continue;
            uint8_t *p = cv->px + ((size_t)py * cv->w + px) * 3;
            const uint8_t col[3] = {c.r, c.g, c.b};
            for (int k = 0; k < 3; k++) p[k] = (uint8_t)lroundf(p[k] + a * (col[k] - p[k]));
        }
}

/* The shared limits: o's, or the finite points' bounding box made square
 * (one span for both axes, so shapes keep their aspect) with a 5 % margin. */
static void scatter_range(const ddpm_scatter_panel *p, int np, const ddpm_scatter_opts *o,
                          double r[4]) {
    if (o->xlo < o->xhi && o->ylo < o->yhi) {
        r[0] = o->xlo, r[1] = o->xhi, r[2] = o->ylo, r[3] = o->yhi;
        return;
    }
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int k = 0; k < np; k++)
        for (int i = 0; i < p[k].n; i++)
            for (int d = 0; d < 2; d++) {
                double v = p[k].xy[2 * (size_t)i + d];
                if (isfinite(v)) lo[d] = fmin(lo[d], v), hi[d] = fmax(hi[d], v);
            }
    double span = 0.0;
    for (int d = 0; d < 2; d++) {
        if (!(lo[d] <= hi[d])) lo[d] = -1.0, hi[d] = 1.0; /* no points */
        span = fmax(span, hi[d] - lo[d]);
    }
    span = span > 0.0 ? span * 1.1 : 1.0;
    for (int d = 0; d < 2; d++) {
        double mid = 0.5 * (lo[d] + hi[d]);
        r[2 * d] = mid - span / 2, r[2 * d + 1] = mid + span / 2;
    }
}

/* One panel with its top-left corner at (ox, oy). */
static void scatter_panel(canvas *cv, const ddpm_scatter_panel *p, const ddpm_scatter_opts *o,
                          const double r[4], int ox, int oy) {
    ticks xt, yt;
    make_ticks(&xt, r[0], r[1], false, o->panel_w / 70 > 2 ? o->panel_w / 70 : 2, 0.0);
    make_ticks(&yt, r[2], r[3], false, o->panel_h / 60 > 2 ? o->panel_h / 60 : 2, 0.0);
    axes a = {ox + ticks_label_width(&yt) + 12, ox + o->panel_w - 10, oy + 20, oy + o->panel_h - 22,
              r[0], r[1], r[2], r[3]};
    draw_ticks(cv, &a, &xt, &yt);
    rgb c = {o->color[0], o->color[1], o->color[2]};
    for (int i = 0; i < p->n; i++) {
        double x = p->xy[2 * (size_t)i], y = p->xy[2 * (size_t)i + 1];
        if (!(x >= r[0] && x <= r[1] && y >= r[2] && y <= r[3])) continue; /* also NaN */
        blend_disk(cv, ax_x(&a, x), ax_y(&a, y), o->radius, c, o->alpha);
    }
    draw_box(cv, &a);
    if (p->title)
        text(cv, (a.x0 + a.x1 - text_width(p->title, 1)) / 2, oy + 8, p->title, (rgb){0, 0, 0}, 1);
}

static ddpm_status scatter_check(const char *path, const ddpm_scatter_panel *p, int np,
                                 const ddpm_scatter_opts *o) {
    if (np < 1 || np > 256)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': %d panels (1 to 256)", path, np);
    if (o->panel_w < 120 || o->panel_h < 100 || o->panel_w > 4096 || o->panel_h > 4096)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': panel size %d x %d outside 120x100..4096x4096",
                          path, o->panel_w, o->panel_h);
    if (!(o->alpha > 0.0f && o->alpha <= 1.0f) || o->radius < 0 || o->radius > 16)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': point opacity must be in (0, 1] and radius in [0, 16]",
                          path);
    for (int k = 0; k < np; k++)
        if (p[k].n < 0 || (p[k].n > 0 && !p[k].xy))
            return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': panel %d has no points array", path, k);
    return DDPM_OK;
}

ddpm_status ddpm_plot_scatter_png(const char *path, const ddpm_scatter_panel *panels, int npanels,
                                  const ddpm_scatter_opts *o) {
    ddpm_status st = scatter_check(path, panels, npanels, o);
    if (st) return st;
    int cols = o->cols > 0 && o->cols < npanels ? o->cols : npanels;
    int rows = (npanels + cols - 1) / cols, top = o->title ? 28 : 0;
    int W = cols * o->panel_w, H = rows * o->panel_h + top;
    if ((long long)W * H > (1LL << 28))
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': figure too large", path);
    double r[4];
    scatter_range(panels, npanels, o, r);
    canvas cv;
    if ((st = canvas_new(&cv, W, H, path))) return st;
    for (int k = 0; k < npanels; k++)
        scatter_panel(&cv, &panels[k], o, r, (k % cols) * o->panel_w, top + (k / cols) * o->panel_h);
    if (o->title) text(&cv, (W - text_width(o->title, 2)) / 2, 8, o->title, (rgb){0, 0, 0}, 2);
    return canvas_write(&cv, path);
}
