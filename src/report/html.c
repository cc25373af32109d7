/* html.c: escaped text and embedded PNGs for the run report. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ddpm/report.h"
#include "report/report_internal.h"

void ddpm_html_text(FILE *f, const char *s) {
    if (!s) return;
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        switch (*p) {
        case '&': fputs("&amp;", f); p++; continue;
        case '<': fputs("&lt;", f); p++; continue;
        case '>': fputs("&gt;", f); p++; continue;
        case '"': fputs("&quot;", f); p++; continue;
        case '\'': fputs("&#39;", f); p++; continue;
        default: break;
        }
        size_t k = *p < 0x80 ? 1 : ddpm_utf8_len(p, end);
        if (k == 0 || (k == 1 && (*p < 0x20 || *p == 0x7f))) {
            fputc('?', f);
            p++;
            continue;
        }
        fwrite(p, 1, k, f);
        p += k;
    }
}

size_t ddpm_base64_len(size_t n) { return (n + 2) / 3 * 4; }

size_t ddpm_base64_encode(char *dst, const unsigned char *src, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = tab[v >> 18];
        dst[o++] = tab[(v >> 12) & 63];
        dst[o++] = tab[(v >> 6) & 63];
        dst[o++] = tab[v & 63];
    }
    if (i < n) { /* 1 or 2 bytes left: 2 or 3 characters and padding */
        uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < n ? (uint32_t)src[i + 1] << 8 : 0);
        dst[o++] = tab[v >> 18];
        dst[o++] = tab[(v >> 12) & 63];
        dst[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        dst[o++] = '=';
    }
    dst[o] = '\0';
    return o;
}

/* A PNG starts with its signature and an IHDR chunk of a non-zero size;
 * anything else (a truncated or foreign file) would show a broken image. */
static bool png_header(const unsigned char *b, size_t n, unsigned *w, unsigned *h) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 33 || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4)) return false;
    *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
    *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
    /* the IEND chunk closes a complete file: a cut one has lost it */
    return *w > 0 && *h > 0 && n >= 45 && !memcmp(b + n - 8, "IEND", 4);
}

bool ddpm_html_png(FILE *f, ddpm_rdir *r, const char *name, const char *cls, const char *alt, int box_w, int box_h) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    size_t n = 0;
    char *text;
    if (ddpm_report_slurp(path, DDPM_REPORT_MAX_IMAGE_BYTES, &text, &n)) {
        ddpm_rdir_note(r, "%s: %s, not shown", name, ddpm_last_error());
        return false;
    }
    unsigned char *buf = (unsigned char *)text;
    unsigned w, h;
    if (!png_header(buf, n, &w, &h)) {
        ddpm_rdir_note(r, "%s: not a complete PNG file (damaged or still being written), not shown", name);
        free(buf);
        return false;
    }
    char *b64 = malloc(ddpm_base64_len(n) + 1);
    if (!b64) {
        ddpm_rdir_note(r, "%s: out of memory", name);
        free(buf);
        return false;
    }
    ddpm_base64_encode(b64, buf, n);
    unsigned zoom = 1; /* whole pixels stay square and sharp */
    if (box_w > 0 && box_h > 0 && w <= (unsigned)box_w && h <= (unsigned)box_h)
        zoom = (unsigned)box_w / w < (unsigned)box_h / h ? (unsigned)box_w / w : (unsigned)box_h / h;
    fprintf(f, "<img class=\"%s\" width=\"%u\" height=\"%u\" alt=\"", cls, w * zoom, h * zoom);
    ddpm_html_text(f, alt);
    fprintf(f, "\" src=\"data:image/png;base64,%s\">", b64);
    free(b64);
    free(buf);
    return true;
}
