/* image.c: PNG grids and raw RGB via stb_image_write (plots: plot.c). See image.h.
 *
 * The stb_image_write implementation is compiled in src/io/stb_write_impl.c,
 * so this file only includes the header.
 */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/image.h"
#include "ddpm/data.h"
#include "io/png.h"

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
ddpm_status ddpm_png_write(const char *path, const uint8_t *pixels, int w, int h, int comp) {
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
    return st != DDPM_OK ? st : ddpm_png_write(path, rgb, w, h, 3);
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

ddpm_status ddpm_image_grid_check(const char *path, int n, int c, int h, int w, int nrow, int zoom) {
    int gw, gh;
    ddpm_image_grid_size(n, h * zoom, w * zoom, nrow, &gw, &gh);
    if ((int64_t)gw * gh * c > MAX_PNG_BYTES)
        return ddpm_error(DDPM_ERR_ARG, "'%s' would be a %d x %d grid, too large for a PNG", path, gw, gh);
    return DDPM_OK;
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
    st = ddpm_png_write(path, img, (int)GW, (int)GH, c);
    free(img);
    return st;
}


ddpm_status ddpm_image_write_idx(const char *path, const float *x, int n, int c, int h, int w) {
    size_t count = (size_t)n * c * h * w;
    uint8_t *u8 = malloc(count ? count : 1);
    if (!u8) return ddpm_error(DDPM_ERR_NOMEM, "cannot write '%s': out of memory for %d images", path, n);
    ddpm_image_to_u8(u8, x, count);
    ddpm_status st = ddpm_idx_write_images(path, u8, n, c, h, w);
    free(u8);
    return st;
}

void ddpm_image_to_u8(uint8_t *out, const float *x, size_t n) {
    for (size_t j = 0; j < n; j++) {
        float v = (x[j] + 1.0f) * 127.5f;
        v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f; /* NaN fails both tests: 0 */
        out[j] = (uint8_t)floorf(v + 0.5f);
    }
}
