/* folder_floors.c: the image sets behind the floors of docs/quality.md's
 * "Image folders" section, written as IDX files for `ddpm eval`. Built and
 * run by scripts/folder_floors.sh against libddpm.a:
 *   folder_floors DIR SIZE OUT [white|black]
 * loads the folder DIR as `ddpm train --data DIR --size SIZE` reads it (RGB,
 * center crop, the alpha mode), then writes to OUT:
 *   held.idx     the held-out split of the evaluation network (ddpm_eval_held_out)
 *   real1000.idx 1000 images drawn without replacement (seed 1)
 *   blur.idx     the same 1000, box-blurred (radius SIZE/32, three passes)
 *   blobs.idx    the same 1000, every foreground pixel (one that differs from
 *                the background colour) replaced by the image's mean
 *                foreground colour
 *   noise.idx    1000 images of uniform noise (seed 2) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/data.h"
#include "ddpm/datasource.h"
#include "ddpm/eval.h"
#include "ddpm/rng.h"

#define N 1000

static void box_blur(uint8_t *img, int C, int S, int r) {
    uint8_t *tmp = malloc((size_t)S * S);
    for (int c = 0; c < C; c++) {
        uint8_t *p = img + (size_t)c * S * S;
        for (int dir = 0; dir < 2; dir++) { /* rows, then columns; edge clamped */
            memcpy(tmp, p, (size_t)S * S);
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int sum = 0;
                    for (int k = -r; k <= r; k++) {
                        int t = (dir ? y : x) + k;
                        t = t < 0 ? 0 : t >= S ? S - 1 : t;
                        sum += dir ? tmp[t * S + x] : tmp[y * S + t];
                    }
                    p[y * S + x] = (uint8_t)((sum + r) / (2 * r + 1));
                }
        }
    }
    free(tmp);
}

static void blob(uint8_t *img, int C, int S, int bg) {
    long sum[3] = {0}, n = 0;
    for (int i = 0; i < S * S; i++) {
        int fg = 0;
        for (int c = 0; c < C; c++) fg |= img[c * S * S + i] != bg;
        if (!fg) continue;
        n++;
        for (int c = 0; c < C; c++) sum[c] += img[c * S * S + i];
    }
    for (int i = 0; i < S * S && n; i++) {
        int fg = 0;
        for (int c = 0; c < C; c++) fg |= img[c * S * S + i] != bg;
        for (int c = 0; c < C && fg; c++) img[c * S * S + i] = (uint8_t)((sum[c] + n / 2) / n);
    }
}

static int write(const char *out, const char *name, const uint8_t *px, int n, int C, int S) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, name);
    if (ddpm_idx_write_images(path, px, n, C, S, S)) {
        fprintf(stderr, "folder_floors: %s\n", ddpm_last_error());
        return 1;
    }
    printf("%s %d\n", path, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: folder_floors DIR SIZE OUT [white|black]\n");
        return 2;
    }
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    o.data = argv[1], o.size = atoi(argv[2]), o.channels = 3, o.hflip = 0;
    o.alpha = argc > 4 && !strcmp(argv[4], "black") ? DDPM_ALPHA_BLACK : DDPM_ALPHA_WHITE;
    ddpm_data d;
    if (ddpm_data_open(&d, &o) || d.n < N || !d.ds.labels) {
        fprintf(stderr, "folder_floors: %s\n", d.n < N ? "fewer than 1000 labelled images" : ddpm_last_error());
        return 1;
    }
    int S = o.size, C = 3, bg = o.alpha == DDPM_ALPHA_BLACK ? 0 : 255, nh = 0;
    size_t D = (size_t)C * S * S;
    uint8_t *held = malloc((size_t)d.n * D), *real = malloc(N * D), *work = malloc(N * D);
    int *perm = malloc((size_t)d.n * sizeof(int));
    int f = 1; /* the split hashes the images at the network's size (eval.h) */
    while (S / f > DDPM_EVAL_MAX_NET_RES && (S / f) % 2 == 0) f *= 2;
    uint8_t *small = malloc(D / ((size_t)f * f));
    for (int i = 0; i < d.n; i++) {
        perm[i] = i;
        ddpm_eval_downsample(small, d.ds.pixels + (size_t)i * D, 1, C, S, S, f);
        if (ddpm_eval_held_out(small, D / ((size_t)f * f), d.ds.labels[i]))
            memcpy(held + (size_t)nh++ * D, d.ds.pixels + (size_t)i * D, D);
    }
    free(small);
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) {
        int j = i + (int)ddpm_rng_below(&rng, (uint32_t)(d.n - i)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        memcpy(real + (size_t)i * D, d.ds.pixels + (size_t)perm[i] * D, D);
    }
    int rc = write(argv[3], "held.idx", held, nh, C, S) || write(argv[3], "real1000.idx", real, N, C, S);
    memcpy(work, real, N * D);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 3; k++) box_blur(work + (size_t)i * D, C, S, S / 32 > 0 ? S / 32 : 1);
    rc = rc || write(argv[3], "blur.idx", work, N, C, S);
    memcpy(work, real, N * D);
    for (int i = 0; i < N; i++) blob(work + (size_t)i * D, C, S, bg);
    rc = rc || write(argv[3], "blobs.idx", work, N, C, S);
    ddpm_rng_seed(&rng, 2);
    for (size_t i = 0; i < N * D; i++) work[i] = (uint8_t)ddpm_rng_below(&rng, 256);
    rc = rc || write(argv[3], "noise.idx", work, N, C, S);
    free(held), free(real), free(work), free(perm);
    ddpm_data_close(&d);
    return rc;
}
