/* svg.c: line plots as inline SVG for the run report: vector graphics stay
 * crisp at any zoom and cost a few kilobytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_internal.h"

enum { W = 520, H = 290, ML = 60, MR = 14, MT = 42, MB = 40, MAX_POINTS = 1200 }; /* legend on a line below the title */

typedef struct {
    double lo, hi;
} range;

static double tr_y(double y, bool log_y) { return log_y ? (y > 0 ? log10(y) : NAN) : y; }

static void extend(range *r, double v) {
    if (!isfinite(v)) return;
    if (v < r->lo) r->lo = v;
    if (v > r->hi) r->hi = v;
}

static void ranges(const ddpm_svg_series *s, int ns, bool log_y, const double *xlim, range *x, range *y) {
    *x = *y = (range){INFINITY, -INFINITY};
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double xv = s[k].x[(size_t)i * s[k].xstride], yv = tr_y(s[k].y[(size_t)i * s[k].ystride], log_y);
            if (!isfinite(xv) || !isfinite(yv)) continue;
            extend(x, xv);
            extend(y, yv);
        }
    if (isfinite(y->lo) && xlim) { /* the run's whole x range, when there are points to show */
        extend(x, xlim[0]);
        extend(x, xlim[1]);
    }
    if (x->lo > 0 && x->lo <= 0.1 * x->hi) x->lo = 0; /* iterations and seconds count from 0 */
    range *both[2] = {x, y};
    for (int i = 0; i < 2; i++) { /* a single value gets a span around it */
        range *r = both[i];
        if (r->lo == r->hi) {
            double d = fabs(r->lo) > 0 ? fabs(r->lo) * 0.1 : 1;
            r->lo -= d;
            r->hi += d;
        }
    }
    double pad = (y->hi - y->lo) * 0.05;
    y->lo -= pad;
    y->hi += pad;
    if (!isfinite(x->hi - x->lo) || !isfinite(y->hi - y->lo)) /* spans past DBL_MAX: not drawable */
        x->lo = y->lo = INFINITY;
}

/* A round tick step: 1, 2 or 5 times a power of ten, about 5 ticks. */
static double tick_step(range r) {
    double raw = (r.hi - r.lo) / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void y_tick(FILE *f, range yr, double v, double shown) {
    double py = H - MB - (v - yr.lo) / (yr.hi - yr.lo) * (H - MT - MB);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>", ML, py, W - MR, py);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>", ML - 5, py + 4, shown);
}

/* Log axis ticks at 1, 2, 5 times powers of ten (only the powers over more
 * than four decades). */
/* Ticks from v0 in steps of `step` up to hi: a counted loop, so a step
 * below the values' precision cannot spin. */
#define MAX_TICKS 40

static void log_ticks(FILE *f, range yr) {
    double span = yr.hi - yr.lo, every = span <= 8 ? 1 : ceil(span / 8); /* decades per tick */
    for (int i = 0; i < MAX_TICKS; i++) {
        double d = floor(yr.lo) + i * every;
        if (d > ceil(yr.hi)) break;
        for (int m = 1; m <= (span <= 4 ? 5 : 1); m += m == 1 ? 1 : 3) { /* 1, 2, 5 times 10^d */
            double v = d + log10(m);
            if (v >= yr.lo && v <= yr.hi) y_tick(f, yr, v, m * pow(10, d));
        }
    }
}

static void axis_ticks(FILE *f, range xr, range yr, bool log_y) {
    double sx = tick_step(xr), sy = tick_step(yr), x0 = ceil(xr.lo / sx) * sx, y0 = ceil(yr.lo / sy) * sy;
    fputs("<g class=\"ax\">", f);
    for (int i = 0; i < MAX_TICKS && isfinite(x0); i++) {
        double v = x0 + i * sx, px = ML + (v - xr.lo) / (xr.hi - xr.lo) * (W - ML - MR);
        if (v > xr.hi + sx * 1e-9) break;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>", px, MT, px, H - MB);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.6g</text>", px, H - MB + 15,
                fabs(v) < sx * 1e-6 ? 0.0 : v);
    }
    if (log_y) log_ticks(f, yr);
    for (int i = 0; !log_y && i < MAX_TICKS && isfinite(y0); i++) {
        double v = y0 + i * sy;
        if (v > yr.hi + sy * 1e-9) break;
        y_tick(f, yr, v, fabs(v) < sy * 1e-6 ? 0.0 : v);
    }
    fprintf(f, "</g><rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", ML, MT, W - ML - MR,
            H - MT - MB);
}

static void series_path(FILE *f, const ddpm_svg_series *s, range xr, range yr, bool log_y) {
    int every = s->n > MAX_POINTS ? (s->n + MAX_POINTS - 1) / MAX_POINTS : 1;
    bool pen = false;
    fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" stroke-opacity=\"%.2f\" "
               "stroke-linejoin=\"round\" d=\"", s->color, s->width, s->opacity);
    for (int i = 0; i < s->n; i += every) {
        double x = s->x[(size_t)i * s->xstride], y = tr_y(s->y[(size_t)i * s->ystride], log_y);
        if (!isfinite(x) || !isfinite(y)) continue; /* a gap in the data is bridged */
        double px = ML + (x - xr.lo) / (xr.hi - xr.lo) * (W - ML - MR);
        double py = H - MB - (y - yr.lo) / (yr.hi - yr.lo) * (H - MT - MB);
        fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', px, py);
        pen = true;
    }
    fputs("\"/>", f);
    if (!s->markers) return;
    for (int i = 0; i < s->n; i++) {
        double x = s->x[(size_t)i * s->xstride], y = tr_y(s->y[(size_t)i * s->ystride], log_y);
        if (!isfinite(x) || !isfinite(y)) continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" fill=\"%s\"/>",
                ML + (x - xr.lo) / (xr.hi - xr.lo) * (W - ML - MR),
                H - MB - (y - yr.lo) / (yr.hi - yr.lo) * (H - MT - MB), s->color);
    }
}

/* Labels right-aligned along the top, the last series rightmost, each cut
 * to 24 bytes; those that would not fit are left out (the page's run
 * table names every colour). */
static bool has_points(const ddpm_svg_series *s, bool log_y) {
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->x[(size_t)i * s->xstride]) && isfinite(tr_y(s->y[(size_t)i * s->ystride], log_y))) return true;
    return false;
}

static void legend(FILE *f, const ddpm_svg_series *s, int ns, bool log_y) {
    double x = W - MR - 8;
    for (int k = ns - 1; k >= 0; k--) {
        if (!s[k].label || !has_points(&s[k], log_y)) continue; /* nothing drawn: nothing to name */
        char text[32];
        snprintf(text, sizeof text, "%.24s", s[k].label);
        double w = 6.4 * (double)strlen(text); /* ~ the width of 11 px text */
        if (x - w - 14 < ML) break;
        fprintf(f, "<text class=\"lg\" x=\"%.1f\" y=\"%d\" text-anchor=\"end\">", x, MT - 8);
        ddpm_html_text(f, text);
        fputs("</text>", f);
        x -= w + 6;
        fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"14\" height=\"3\" fill=\"%s\"/>", x - 14, MT - 12, s[k].color);
        x -= 24;
    }
}

void ddpm_svg_plot(FILE *f, const char *title, const char *xlabel, const ddpm_svg_series *s, int ns,
                   bool log_y, const double *xlim) {
    range xr, yr;
    ranges(s, ns, log_y, xlim, &xr, &yr);
    fprintf(f, "<svg class=\"plot\" viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\">", W, H);
    fputs("<text class=\"tt\" x=\"8\" y=\"18\">", f);
    ddpm_html_text(f, title);
    if (log_y) fputs(" (log scale)", f);
    fputs("</text>", f);
    if (!isfinite(xr.lo) || !isfinite(yr.lo)) {
        fprintf(f, "<text class=\"nd\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">no data</text></svg>", W / 2, H / 2);
        return;
    }
    axis_ticks(f, xr, yr, log_y);
    for (int k = 0; k < ns; k++) series_path(f, &s[k], xr, yr, log_y);
    legend(f, s, ns, log_y);
    fprintf(f, "<text class=\"xl\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 6);
    ddpm_html_text(f, xlabel);
    fputs("</text></svg>\n", f);
}

void ddpm_smooth_ema(double *out, const double *y, int n, int stride) {
    /* span n/40 as the PNG plots, but at least 8 points (short logs), at most n/4 */
    double span = n / 40.0 > 8 ? n / 40.0 : n / 4.0 < 8 ? (n / 4.0 > 1 ? n / 4.0 : 1) : 8;
    double a = 2 / (span + 1), m = 0, wsum = 0;
    for (int i = 0; i < n; i++) {
        double v = y[(size_t)i * stride];
        if (isfinite(v)) {
            m = (1 - a) * m + a * v;
            wsum = (1 - a) * wsum + a;
        }
        out[i] = wsum > 0 ? m / wsum : NAN; /* debiased: the first values are not pulled to 0 */
    }
}
