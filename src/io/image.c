/* image.c: PNG grids, raw RGB and loss plots via stb_image_write. See image.h.
 *
 * libstb (Debian libstb-dev) already contains the stb implementations, so
 * this file only includes the header (no STB_IMAGE_WRITE_IMPLEMENTATION).
 */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/image.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

/* ---- atomic PNG write ---------------------------------------------------------- */

typedef struct {
    FILE *f;
    int err; /* errno of the first failed fwrite, or 0 */
} png_sink;

static void png_sink_write(void *ctx, void *data, int size) {
    png_sink *s = ctx;
    if (s->err == 0 && fwrite(data, 1, (size_t)size, s->f) != (size_t)size)
        s->err = errno ? errno : EIO;
}

/* pixels (h, w, comp) u8, rows `w * comp` bytes apart. */
static ddpm_status write_png(const char *path, const uint8_t *pixels, int w, int h, int comp) {
    ddpm_atomic_file af;
    ddpm_status st = ddpm_atomic_open(&af, path);
    if (st != DDPM_OK) return st;
    png_sink sink = {af.f, 0};
    errno = 0;
    if (!stbi_write_png_to_func(png_sink_write, &sink, w, h, comp, pixels, w * comp))
        return ddpm_atomic_fail(&af, "PNG encoder failed (out of memory?)");
    if (sink.err) return ddpm_atomic_fail(&af, strerror(sink.err));
    return ddpm_atomic_commit(&af);
}

/* Images larger than this (in bytes) are refused: keeps w * comp and the
 * buffer size within int, as stb_image_write requires. */
#define MAX_PNG_BYTES (1 << 30)

static ddpm_status check_png_size(const char *path, int w, int h, int comp) {
    if (w <= 0 || h <= 0 || (int64_t)w * h * comp > MAX_PNG_BYTES)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': bad image size %d x %d", path, w, h);
    return DDPM_OK;
}

ddpm_status ddpm_image_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    ddpm_status st = check_png_size(path, w, h, 3);
    return st != DDPM_OK ? st : write_png(path, rgb, w, h, 3);
}

/* ---- grids ----------------------------------------------------------------------- */

static int grid_cols(int n, int nrow) {
    if (nrow <= 0) nrow = (int)ceil(sqrt((double)n));
    return nrow < n ? nrow : n;
}

void ddpm_image_grid_size(int n, int h, int w, int nrow, int *out_w, int *out_h) {
    int cols = n > 0 ? grid_cols(n, nrow) : 0;
    int rows = cols > 0 ? (n + cols - 1) / cols : 0;
    *out_w = cols * (w + DDPM_GRID_PAD) + DDPM_GRID_PAD;
    *out_h = rows * (h + DDPM_GRID_PAD) + DDPM_GRID_PAD;
}

ddpm_status ddpm_image_write_grid(const char *path, const float *x, int n, int c, int h, int w,
                                  int nrow, float lo, float hi) {
    return ddpm_image_write_grid_scaled(path, x, n, c, h, w, nrow, lo, hi, 1);
}

/* Tile k of the grid into img (GH, GW, c): each source pixel becomes a
 * zoom x zoom block. */
static void put_tile(uint8_t *img, int64_t GW, const float *tile, int c, int h, int w, int zoom,
                     int oy, int ox, float lo, float scale) {
    for (int ch = 0; ch < c; ch++) {
        const float *src = tile + (size_t)ch * h * w; /* (h, w) */
        for (int i = 0; i < h * zoom; i++) {
            uint8_t *dst = img + ((size_t)(oy + i) * GW + ox) * c + ch;
            const float *row = src + (size_t)(i / zoom) * w;
            for (int j = 0; j < w * zoom; j++) {
                float v = (row[j / zoom] - lo) * scale;
                v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f; /* NaN -> 0 */
                dst[(size_t)j * c] = (uint8_t)(v + 0.5f);
            }
        }
    }
}

ddpm_status ddpm_image_write_grid_scaled(const char *path, const float *x, int n, int c, int h,
                                         int w, int nrow, float lo, float hi, int zoom) {
    if (n <= 0 || h <= 0 || w <= 0)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': empty image batch (%d x %d x %d)", path,
                          n, h, w);
    if (c != 1 && c != 3)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': %d channels (need 1 or 3)", path, c);
    if (!(hi > lo))
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': empty value range [%g, %g]", path, lo,
                          hi);
    if (zoom < 1 || zoom > DDPM_GRID_MAX_SCALE)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': scale %d not in [1, %d]", path, zoom,
                          DDPM_GRID_MAX_SCALE);
    if (h > 65536 || w > 65536)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': images too large", path);
    int cols = grid_cols(n, nrow), rows = (n + cols - 1) / cols;
    int64_t th = (int64_t)h * zoom, tw = (int64_t)w * zoom;
    int64_t GW = (int64_t)cols * (tw + DDPM_GRID_PAD) + DDPM_GRID_PAD;
    int64_t GH = (int64_t)rows * (th + DDPM_GRID_PAD) + DDPM_GRID_PAD;
    if (GW * GH * c > MAX_PNG_BYTES)
        return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': grid too large", path);
    ddpm_status st = check_png_size(path, (int)GW, (int)GH, c);
    if (st != DDPM_OK) return st;

    uint8_t *img = malloc((size_t)(GW * GH * c)); /* (GH, GW, c) */
    if (!img) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    memset(img, DDPM_GRID_PAD_VALUE, (size_t)(GW * GH * c));
    float scale = 255.0f / (hi - lo);
    for (int k = 0; k < n; k++) {
        int oy = DDPM_GRID_PAD + (int)((k / cols) * (th + DDPM_GRID_PAD));
        int ox = DDPM_GRID_PAD + (int)((k % cols) * (tw + DDPM_GRID_PAD));
        put_tile(img, GW, x + (size_t)k * c * h * w, c, h, w, zoom, oy, ox, lo, scale);
    }
    st = write_png(path, img, (int)GW, (int)GH, c);
    free(img);
    return st;
}

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

/* ---- line plot ------------------------------------------------------------------------- */

ddpm_status ddpm_plot_line_png(const char *path, const float *y, int n, int width, int height,
                               bool log_y, const char *title) {
    if (width < 160 || height < 100 || width > 8192 || height > 8192)
        return ddpm_error(DDPM_ERR_ARG,
                          "cannot write '%s': plot size %d x %d outside 160x100..8192x8192", path,
                          width, height);
    if (n < 0) return ddpm_error(DDPM_ERR_ARG, "cannot write '%s': %d points", path, n);
    const rgb black = {0, 0, 0}, grid = {228, 228, 228}, raw_c = {160, 190, 235},
              ema_c = {20, 60, 170}, text_c = {40, 40, 40};

    /* Plot coordinates of the points (NAN = skipped) and their EMA. */
    double *py = malloc(2 * (size_t)(n > 0 ? n : 1) * sizeof(double)), *pe = py + (n > 0 ? n : 1);
    if (!py) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    double span = fmax(1.0, n / 40.0), beta = 1.0 - 1.0 / span; /* EMA decay */
    double ema = 0.0, wsum = 0.0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = y[i];
        bool ok = isfinite(v) && (!log_y || v > 0.0);
        py[i] = pe[i] = NAN;
        if (ok) {
            ema = beta * ema + (1.0 - beta) * v;
            wsum = beta * wsum + (1.0 - beta); /* debias: divide by the weight seen so far */
            py[i] = log_y ? log10(v) : v;
            lo = fmin(lo, py[i]);
            hi = fmax(hi, py[i]);
        }
        if (wsum > 0.0) pe[i] = log_y ? log10(ema / wsum) : ema / wsum;
    }
    if (!(lo <= hi)) lo = 0.0, hi = 1.0; /* no data */
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi))) {
        double d = log_y ? 0.5 : fmax(fabs(hi) * 0.1, 0.5);
        lo -= d, hi += d;
    } else {
        double d = (hi - lo) * 0.05;
        lo -= d, hi += d;
    }

    ticks yt, xt;
    make_ticks(&yt, lo, hi, log_y, height / 60 > 3 ? height / 60 : 3, 0.0);
    double xmax = n > 1 ? n - 1 : 1;
    make_ticks(&xt, 0.0, xmax, false, width / 100 > 3 ? width / 100 : 3, 1.0); /* indices */
    int label_w = 0;
    for (int i = 0; i < yt.n; i++)
        label_w = label_w > text_width(yt.label[i], 1) ? label_w : text_width(yt.label[i], 1);

    int tscale = width >= 480 ? 2 : 1;
    int x0 = label_w + 12, x1 = width - 16, y0 = 12 + 7 * tscale + 8, y1 = height - 24;

    canvas cv = {malloc((size_t)width * height * 3), width, height};
    if (!cv.px) {
        free(py);
        return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory", path);
    }
    memset(cv.px, 255, (size_t)width * height * 3);

#define MAPX(i) (x0 + (int)lround(((double)(i) / xmax) * (x1 - x0)))
#define MAPY(v) (y1 - (int)lround(((v) - lo) / (hi - lo) * (y1 - y0)))
    /* grid lines, tick marks and labels */
    for (int i = 0; i < yt.n; i++) {
        int yy = MAPY(yt.pos[i]);
        if (yy < y0 || yy > y1) continue;
        line(&cv, x0 + 1, yy, x1, yy, grid);
        line(&cv, x0 - 4, yy, x0, yy, black);
        text(&cv, x0 - 7 - text_width(yt.label[i], 1), yy - 3, yt.label[i], text_c, 1);
    }
    for (int i = 0; i < xt.n; i++) {
        int xx = MAPX(xt.pos[i]);
        if (xx < x0 || xx > x1) continue;
        line(&cv, xx, y0, xx, y1 - 1, grid);
        line(&cv, xx, y1, xx, y1 + 4, black);
        text(&cv, xx - text_width(xt.label[i], 1) / 2, y1 + 8, xt.label[i], text_c, 1);
    }
    /* curves: raw first, the EMA (2 px thick) on top */
    for (int pass = 0; pass < 2; pass++) {
        const double *v = pass ? pe : py;
        rgb c = pass ? ema_c : raw_c;
        int prev = -1;
        for (int i = 0; i < n; i++) {
            if (isnan(v[i])) {
                prev = -1;
                continue;
            }
            int xa = MAPX(prev >= 0 ? prev : i), ya = MAPY(v[prev >= 0 ? prev : i]);
            int xb = MAPX(i), yb = MAPY(v[i]);
            line(&cv, xa, ya, xb, yb, c);
            if (pass) line(&cv, xa, ya + 1, xb, yb + 1, c);
            prev = i;
        }
    }
#undef MAPX
#undef MAPY
    /* axes box (drawn last so curves never cover it), title, legend */
    line(&cv, x0, y0, x0, y1, black);
    line(&cv, x0, y1, x1, y1, black);
    line(&cv, x0, y0, x1, y0, black);
    line(&cv, x1, y0, x1, y1, black);
    if (title) text(&cv, (width - text_width(title, tscale)) / 2, 8, title, black, tscale);
    int lx = x1 - text_width("raw", 1) - text_width("ema", 1) - 44, ly = y0 + 8;
    fill_rect(&cv, lx, ly + 2, lx + 10, ly + 4, raw_c);
    text(&cv, lx + 14, ly, "raw", text_c, 1);
    lx += 14 + text_width("raw", 1) + 10;
    fill_rect(&cv, lx, ly + 2, lx + 10, ly + 4, ema_c);
    text(&cv, lx + 14, ly, "ema", text_c, 1);

    ddpm_status st = write_png(path, cv.px, width, height, 3);
    free(cv.px);
    free(py);
    return st;
}
