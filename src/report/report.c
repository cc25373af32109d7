/* report.c: the run report and the comparison page (report.h). The body is
 * written to memory first, so the notes that embedding the images adds (a
 * missing or damaged grid) can stand at the top of the page. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "ddpm/imagefolder.h"
#include "ddpm/train.h" /* DDPM_META_*: the metadata keys */
#include "report/report_internal.h"

static const char *const CSS =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;"
    "color:#1d2530;background:#f4f6f9;margin:0}"
    "main{max-width:1240px;margin:0 auto;padding:20px 28px 40px}"
    "header{background:#1f2a3a;color:#fff;padding:18px 28px}"
    "header h1{margin:0;font-size:22px;font-weight:600}header .sub{color:#b8c4d6;font-size:13px;word-break:break-all}"
    ".badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:12px;margin-left:10px;"
    "vertical-align:3px;background:#4b5a70}.b-running{background:#1f8f4e}.b-stopped{background:#b36b00}"
    ".figs{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}"
    ".fig{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:8px 14px;min-width:110px}"
    ".fig b{display:block;font-size:19px;font-weight:600}.fig span{color:#5b6675;font-size:12px}"
    "h2{font-size:17px;margin:26px 0 10px;border-bottom:1px solid #d5dbe3;padding-bottom:4px}"
    ".notes{background:#fff7e0;border:1px solid #e8cf82;border-radius:6px;padding:8px 14px;margin:14px 0}"
    ".notes li{margin:2px 0}.live{background:#e3f5e9;border:1px solid #9bd3ae;border-radius:6px;padding:8px 14px;margin:14px 0}"
    ".box{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:10px 14px;margin-bottom:12px}"
    ".box h3{font-size:13px;margin:0 0 6px;color:#1d2530}"
    ".kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));column-gap:22px;font-size:13px}"
    ".kv div{display:flex;gap:10px;padding:3px 0;border-bottom:1px solid #edf0f4;min-width:0}.kv div.long{grid-column:1/-1}"
    ".kv .k{color:#5b6675;flex:0 0 118px;overflow:hidden;text-overflow:ellipsis}"
    ".kv .v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all;min-width:0}"
    "table{border-collapse:collapse;background:#fff;border:1px solid #dde3ea;width:100%;font-size:13px}"
    "th,td{text-align:left;padding:4px 10px;border-bottom:1px solid #edf0f4;vertical-align:top}"
    "th{background:#eef2f7;font-weight:600}td.k{color:#4a5563;white-space:nowrap;width:1%}"
    "td.v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}"
    "svg.plot{width:100%;height:auto;background:#fff;border:1px solid #dde3ea;border-radius:6px}"
    "svg .ax line{stroke:#e6eaf0;stroke-width:1}svg .ax text,svg .xl{font-size:11px;fill:#5b6675}"
    "svg .frame{fill:none;stroke:#9aa5b4}svg .tt{font-size:13px;font-weight:600;fill:#1d2530}"
    "svg .lg{font-size:11px;fill:#1d2530}svg .nd{font-size:13px;fill:#8a94a3}"
    "figure{margin:0;background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:8px;text-align:center}"
    "figcaption{font-size:12px;color:#4a5563;margin-top:4px;word-break:break-word}"
    "img{image-rendering:pixelated;max-width:100%;height:auto}"
    "img.wide{width:100%}img.small{width:100%}"
    ".grids{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}"
    ".side{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:14px}"
    ".sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}";

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                     "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"};
#define NCOLORS ((int)(sizeof COLORS / sizeof *COLORS))

/* Columns in the order they are plotted, with their titles; the rest of
 * the header follows under its own names. */
static const struct {
    const char *col, *title;
    bool metric; /* an evaluation: also plotted against wall time */
} KNOWN[] = {
    {"loss", "Training loss", false},    {"lr", "Learning rate", false},
    {"grad_norm", "Gradient norm", false}, {"fid", "FID (lower is better)", true},
    {"precision", "Precision", true},    {"recall", "Recall", true},
    {"label_accuracy", "Label accuracy", true}, {"confidence", "Classifier confidence", false},
    {"class_entropy", "Class entropy", false}, {"img_per_s", "Throughput (images/s)", false},
};
#define NKNOWN ((int)(sizeof KNOWN / sizeof *KNOWN))

/* Keys that change as a run goes on or say nothing about its recipe:
 * never "a difference" between compared runs. */
static const char *const VOLATILE[] = {"rng", "dropout_rng", "data_epoch", "data_pos", "step", "started",
                                       "wall_s", "img_per_s", "status", "command", "format",
                                       "format_version", "classes"};

void ddpm_report_opts_default(ddpm_report_opts *o) { *o = (ddpm_report_opts){NULL, 30}; }

static bool is_time_col(const char *c) { return !strcmp(c, "time_s") || !strcmp(c, "elapsed_s"); }

static const char *col_title(const char *c) {
    for (int i = 0; i < NKNOWN; i++)
        if (!strcmp(KNOWN[i].col, c)) return KNOWN[i].title;
    return c;
}

static bool col_metric(const char *c) {
    for (int i = 0; i < NKNOWN; i++)
        if (!strcmp(KNOWN[i].col, c)) return KNOWN[i].metric;
    return false;
}

/* The columns to plot over all runs, known ones first: names[] points into
 * the runs' headers. Returns the count. */
static int plot_columns(ddpm_rdir *const *runs, int nruns, const char **names, int cap) {
    int n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < (pass ? nruns : NKNOWN); k++)
            for (int r = 0; r < nruns; r++) {
                const ddpm_rdir *run = runs[r];
                for (int c = 0; c < run->ncols; c++) {
                    const char *name = run->cols[c];
                    if ((pass == 0 && strcmp(name, KNOWN[k].col)) || (pass == 1 && r != k)) continue;
                    if (c == ddpm_rdir_xcol(run) || is_time_col(name)) continue;
                    bool dup = false;
                    for (int i = 0; i < n; i++) dup |= !strcmp(names[i], name);
                    if (!dup && n < cap) names[n++] = name;
                }
            }
    return n;
}

static int finite_count(const ddpm_rdir *r, int c) {
    int n = 0;
    for (int i = 0; i < r->nrows; i++) n += isfinite(r->val[(size_t)i * r->ncols + c]) != 0;
    return n;
}

/* Log scale for positive quantities spanning more than a decade. */
static bool wants_log(ddpm_rdir *const *runs, int nruns, const char *col) {
    if (strcmp(col, "loss") && strcmp(col, "fid") && strcmp(col, "grad_norm")) return false;
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < nruns; k++) {
        int c = ddpm_rdir_col(runs[k], col);
        for (int i = 0; c >= 0 && i < runs[k]->nrows; i++) {
            double v = runs[k]->val[(size_t)i * runs[k]->ncols + c];
            if (!isfinite(v)) continue;
            if (v <= 0) return false;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    }
    return hi > 10 * lo;
}

static const char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *s = dir + n;
    while (s > dir && s[-1] != '/') s--;
    return s;
}

static bool has_data(ddpm_rdir *const *runs, int nruns, const char *col) {
    for (int k = 0; k < nruns; k++) {
        int c = ddpm_rdir_col(runs[k], col);
        if (c >= 0 && finite_count(runs[k], c) > 0) return true;
    }
    return false; /* label_accuracy of an unconditional model: an empty column */
}

/* The x range of a plot: every finite x of the runs' iteration (or wall
 * time) column, so sparse evaluations sit where they happened in the run. */
static void x_limits(ddpm_rdir *const *runs, int nruns, bool vs_time, double lim[2]) {
    lim[0] = INFINITY;
    lim[1] = -INFINITY;
    for (int k = 0; k < nruns; k++) {
        int xc = vs_time ? ddpm_rdir_tcol(runs[k]) : ddpm_rdir_xcol(runs[k]);
        for (int i = 0; xc >= 0 && i < runs[k]->nrows; i++) {
            double v = runs[k]->val[(size_t)i * runs[k]->ncols + xc];
            if (isfinite(v)) lim[0] = v < lim[0] ? v : lim[0], lim[1] = v > lim[1] ? v : lim[1];
        }
    }
}

/* The series of column c of run r into s: the loss raw (faint) and smoothed
 * (*smooth, malloc'ed), anything else as it is. Returns the count, -1 when
 * out of memory. */
static int column_series(ddpm_svg_series *s, const ddpm_rdir *r, int c, int xc, const char *color,
                         const char *label, bool single, double **smooth) {
    s[0] = (ddpm_svg_series){r->val + xc, r->val + c, r->nrows, r->ncols, r->ncols, color, 1.8, 1.0,
                             finite_count(r, c) <= 30, label};
    if (strcmp(r->cols[c], "loss") || r->nrows < 2) return 1;
    if (!(*smooth = malloc((size_t)r->nrows * sizeof(double)))) return -1;
    ddpm_smooth_ema(*smooth, r->val + c, r->nrows, r->ncols);
    s[1] = s[0];
    s[1].y = *smooth;
    s[1].ystride = 1;
    s[1].markers = false;
    s[0].color = single ? "#8fb3de" : color;
    s[0].width = 1;
    s[0].opacity = single ? 0.8 : 0.2;
    s[0].markers = false;
    s[0].label = single ? "raw" : NULL;
    if (single) s[1].label = "smoothed (EMA)";
    return 2;
}

#define MAX_GROUP 3

/* One plot of the columns cols[0..ncols) (at most MAX_GROUP) of every run
 * that has them, against the iteration column or (vs_time) wall time.
 * Colours: one per run in a comparison, one per column in a single run. */
static ddpm_status plot(FILE *f, ddpm_rdir *const *runs, int nruns, const char *const *cols, int ncols, bool vs_time,
                        const char *title) {
    static const char *const ONE[MAX_GROUP] = {"#1f4e89", "#d62728", "#2ca02c"};
    ddpm_svg_series s[2 * MAX_GROUP * DDPM_REPORT_MAX_RUNS];
    double *smooth[DDPM_REPORT_MAX_RUNS] = {0};
    bool single = nruns == 1;
    int ns = 0, got = 0;
    for (int k = 0; k < nruns && got >= 0; k++)
        for (int j = 0; j < ncols && got >= 0; j++) {
            const ddpm_rdir *r = runs[k];
            int c = ddpm_rdir_col(r, cols[j]), xc = vs_time ? ddpm_rdir_tcol(r) : ddpm_rdir_xcol(r);
            if (c < 0 || xc < 0 || !r->nrows) continue;
            const char *label = single ? (ncols > 1 ? col_title(cols[j]) : NULL) : base_name(r->dir);
            got = column_series(s + ns, r, c, xc, single ? ONE[j] : COLORS[k % NCOLORS], label, single, &smooth[k]);
            ns += got > 0 ? got : 0;
        }
    if (got >= 0) {
        char full[200];
        snprintf(full, sizeof full, "%s%s", title, vs_time ? " vs wall time" : "");
        const ddpm_rdir *r0 = runs[0];
        int x0 = ddpm_rdir_xcol(r0);
        const char *xl = vs_time ? "wall time (s)" : x0 < 0 ? "" : !strcmp(r0->cols[x0], "iter") ? "iteration" : r0->cols[x0];
        double lim[2];
        x_limits(runs, nruns, vs_time, lim);
        ddpm_svg_plot(f, full, xl, s, ns, ncols == 1 && wants_log(runs, nruns, cols[0]), lim);
    }
    for (int k = 0; k < nruns; k++) free(smooth[k]);
    return got < 0 ? ddpm_error(DDPM_ERR_NOMEM, "out of memory") : DDPM_OK;
}

/* Shares on [0, 1] that read best on one plot in a single run's report. */
static const char *const SHARES[MAX_GROUP] = {"precision", "recall", "label_accuracy"};

static bool is_share(const char *c) {
    for (int i = 0; i < MAX_GROUP; i++)
        if (!strcmp(c, SHARES[i])) return true;
    return false;
}

static ddpm_status write_plots(FILE *f, ddpm_rdir *const *runs, int nruns) {
    const char *cols[DDPM_REPORT_MAX_COLS * DDPM_REPORT_MAX_RUNS];
    int n = plot_columns(runs, nruns, cols, (int)(sizeof cols / sizeof *cols));
    bool any_time = false, shares_done = false;
    for (int k = 0; k < nruns; k++) any_time |= ddpm_rdir_tcol(runs[k]) >= 0;
    if (!n) return DDPM_OK;
    fputs("<h2>Training curves</h2><div class=\"plots\">\n", f);
    ddpm_status st = DDPM_OK;
    for (int i = 0; i < n && !st; i++) {
        if (!has_data(runs, nruns, cols[i])) continue;
        const char *group[MAX_GROUP] = {cols[i]};
        int ng = 1;
        char title[160];
        snprintf(title, sizeof title, "%s", col_title(cols[i]));
        if (nruns == 1 && is_share(cols[i])) {
            if (shares_done) continue;
            shares_done = true;
            ng = 0;
            for (int j = 0; j < MAX_GROUP; j++)
                if (has_data(runs, 1, SHARES[j])) group[ng++] = SHARES[j];
            if (ng > 1) snprintf(title, sizeof title, "Sample quality (higher is better)");
        }
        st = plot(f, runs, nruns, group, ng, false, title);
        if (!st && any_time && col_metric(cols[i])) st = plot(f, runs, nruns, group, ng, true, title);
    }
    fputs("</div>\n", f);
    return st;
}

/* ---- text ------------------------------------------------------------------------------ */

/* Key/value pairs in a grid of columns; long values (the command line, a
 * hex state) get a whole row. */
static void kv_box(FILE *f, const char *title, const ddpm_kv *kv, int n) {
    fputs("<div class=\"box\"><h3>", f);
    ddpm_html_text(f, title);
    fputs("</h3><div class=\"kv\">\n", f);
    for (int i = 0; i < n; i++) {
        fputs(strlen(kv[i].value) > 36 ? "<div class=\"long\"><span class=\"k\">" : "<div><span class=\"k\">", f);
        ddpm_html_text(f, kv[i].key);
        fputs("</span><span class=\"v\">", f);
        ddpm_html_text(f, kv[i].value);
        fputs("</span></div>\n", f);
    }
    if (!n) fputs("<div>(none)</div>", f);
    fputs("</div></div>\n", f);
}

static void write_notes(FILE *f, ddpm_rdir *const *runs, int nruns) {
    int total = 0;
    for (int k = 0; k < nruns; k++) total += runs[k]->nnotes;
    if (!total) return;
    fputs("<div class=\"notes\"><b>Missing or damaged</b><ul>\n", f);
    for (int k = 0; k < nruns; k++)
        for (int i = 0; i < runs[k]->nnotes; i++) {
            fputs("<li>", f);
            if (nruns > 1) {
                ddpm_html_text(f, runs[k]->dir);
                fputs(": ", f);
            }
            ddpm_html_text(f, runs[k]->notes[i]);
            fputs("</li>\n", f);
        }
    fputs("</ul></div>\n", f);
}

static void fmt_num(char *buf, size_t cap, double v, const char *fmt) {
    if (isfinite(v)) snprintf(buf, cap, fmt, v);
    else snprintf(buf, cap, "&mdash;");
}

/* A run.txt value as a number, else the last finite value of a log column. */
static double run_number(const ddpm_rdir *r, const char *info_key, int col) {
    const char *s = ddpm_rdir_info(r, info_key);
    char *end;
    double v = s ? strtod(s, &end) : NAN;
    return s && *s && !*end && isfinite(v) ? v : ddpm_rdir_last(r, col);
}

static double final_loss(const ddpm_rdir *r) { /* the smoothed loss at the end */
    int c = ddpm_rdir_col(r, "loss");
    if (c < 0 || !r->nrows) return NAN;
    double *s = malloc((size_t)r->nrows * sizeof *s);
    if (!s) return NAN;
    ddpm_smooth_ema(s, r->val + c, r->nrows, r->ncols);
    double v = s[r->nrows - 1];
    free(s);
    return v;
}

static void duration(char *buf, size_t cap, double s) {
    if (!isfinite(s)) snprintf(buf, cap, "&mdash;");
    else if (s < 120) snprintf(buf, cap, "%.1f s", s);
    else if (s < 7200) snprintf(buf, cap, "%.1f min", s / 60);
    else snprintf(buf, cap, "%.2f h", s / 3600);
}

static void figure(FILE *f, const char *value, const char *label) {
    fprintf(f, "<div class=\"fig\"><b>%s</b><span>%s</span></div>", value, label);
}

/* The headline numbers of one run (every value is formatted here, so none
 * is text from a file). */
static void write_figures(FILE *f, const ddpm_rdir *r) {
    char b[64], it[96];
    int xc = ddpm_rdir_xcol(r);
    const char *iters = ddpm_rdir_meta(r, DDPM_META_ITERS);
    double last = ddpm_rdir_last(r, xc), total = iters ? strtod(iters, NULL) : NAN;
    fputs("<div class=\"figs\">", f);
    fmt_num(b, sizeof b, last, "%.0f");
    if (isfinite(total) && total > 0) snprintf(it, sizeof it, "%s / %.0f", b, total);
    else snprintf(it, sizeof it, "%s", b);
    figure(f, it, xc >= 0 && !strcmp(r->cols[xc], "step") ? "steps" : "iterations");
    duration(b, sizeof b, run_number(r, "wall_s", ddpm_rdir_tcol(r)));
    figure(f, b, "wall time");
    fmt_num(b, sizeof b, run_number(r, "img_per_s", ddpm_rdir_col(r, "img_per_s")), "%.1f");
    figure(f, b, "images / s");
    fmt_num(b, sizeof b, final_loss(r), "%.4g");
    figure(f, b, "final loss (smoothed)");
    static const char *const metrics[] = {"fid", "precision", "recall", "label_accuracy"};
    for (int i = 0; i < 4; i++) {
        int c = ddpm_rdir_col(r, metrics[i]);
        if (c < 0 || !finite_count(r, c)) continue;
        fmt_num(b, sizeof b, ddpm_rdir_last(r, c), "%.4g");
        figure(f, b, metrics[i]);
    }
    fputs("</div>\n", f);
}

/* Embeds name when it exists; when it does not, a note (if `missing` is
 * not NULL) says why. */
static bool image(FILE *f, ddpm_rdir *r, const char *name, const char *cls, const char *caption,
                  const char *missing) {
    char path[4200];
    FILE *probe;
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    if (!(probe = fopen(path, "rb"))) {
        if (missing) ddpm_rdir_note(r, "%s: missing (%s)", name, missing);
        return false;
    }
    fclose(probe);
    fputs("<figure>", f);
    bool final = !strcmp(cls, "final"); /* shown large: up to 880 x 560 px */
    bool ok = ddpm_html_png(f, r, name, cls, caption, final ? 880 : 0, final ? 560 : 0);
    fputs("<figcaption>", f);
    ddpm_html_text(f, ok ? caption : "(not shown: see the notes above)");
    fputs("</figcaption></figure>\n", f);
    return ok;
}

/* "one class per column: 0 = cat, 1 = dog" for a class-conditional run. */
static void class_caption(FILE *f, const ddpm_rdir *r) {
    const char *k = ddpm_rdir_meta(r, "num_classes"), *json = ddpm_rdir_meta(r, "classes");
    if (!k || atoi(k) <= 0) return;
    fprintf(f, "<p>Class-conditional model (%d classes): the grids hold one class per column, labels cycling "
               "from 0.", atoi(k));
    char **names;
    int n;
    if (json && !ddpm_folder_classes_parse(json, &names, &n)) {
        fputs(" Classes: ", f);
        for (int i = 0; i < n; i++) {
            fprintf(f, "%s%d&nbsp;=&nbsp;", i ? ", " : "", i);
            ddpm_html_text(f, names[i]);
        }
        ddpm_folder_classes_free(names, n);
    }
    fputs("</p>\n", f);
}

static void write_train_images(FILE *f, ddpm_rdir *r) {
    const char *status = ddpm_rdir_info(r, "status");
    bool running = status && !strcmp(status, "running");
    fputs("<h2>Samples</h2>\n", f);
    class_caption(f, r);
    fputs("<div class=\"side\">", f);
    image(f, r, "samples.png", "final", "final grid (EMA weights)",
          running ? "written when training ends" : r->has_ckpt ? "the run did not finish" : NULL);
    image(f, r, "classes.png", "final", "class grid", NULL);
    fputs("</div>\n", f);
    if (!r->ngrids) return;
    fputs("<h2>Samples during training</h2>", f);
    if (r->ngrids < r->ngrids_total)
        fprintf(f, "<p>%d of the %d grids, evenly spaced from the first to the last.</p>", r->ngrids,
                r->ngrids_total);
    fputs("<div class=\"grids\">\n", f);
    for (int i = 0; i < r->ngrids; i++) {
        char cap[64];
        snprintf(cap, sizeof cap, "iteration %lld", r->grids[i].iter);
        image(f, r, r->grids[i].name, "small", cap, "removed while the page was written");
    }
    fputs("</div>\n", f);
}

static void write_toy_images(FILE *f, ddpm_rdir *r) {
    fputs("<h2>Diffusion of the 2-D points</h2>\n", f);
    image(f, r, "forward.png", "wide", "forward process q(x_t | x_0)", "written when training ends");
    image(f, r, "reverse.png", "wide", "reverse process (sampling)", "written when training ends");
    fputs("<h2>Samples</h2>\n", f);
    image(f, r, "samples.png", "wide", "training data and samples", "written when training ends");
}

/* ---- pages ----------------------------------------------------------------------------- */


static bool running(const ddpm_rdir *r) {
    const char *s = ddpm_rdir_info(r, "status");
    return s && !strcmp(s, "running");
}

static void write_head(FILE *f, ddpm_rdir *const *runs, int nruns, const ddpm_report_opts *o) {
    bool live = false;
    for (int k = 0; k < nruns; k++) live |= running(runs[k]);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n", f);
    if (live) fprintf(f, "<meta http-equiv=\"refresh\" content=\"%d\">\n", o->refresh_s);
    fputs("<title>", f);
    if (o->title) ddpm_html_text(f, o->title);
    else {
        fputs(nruns > 1 ? "ddpm: comparison of " : "ddpm run: ", f);
        for (int k = 0; k < nruns; k++) {
            if (k) fputs(", ", f);
            ddpm_html_text(f, base_name(runs[k]->dir));
        }
    }
    fprintf(f, "</title>\n<style>%s</style></head><body>\n<header><h1>", CSS);
    if (o->title) ddpm_html_text(f, o->title);
    else if (nruns > 1) fprintf(f, "Comparison of %d runs", nruns);
    else ddpm_html_text(f, base_name(runs[0]->dir));
    if (nruns == 1) {
        const char *st = ddpm_rdir_info(runs[0], "status");
        fputs(st ? " <span class=\"badge b-" : "", f);
        if (st) {
            ddpm_html_text(f, st);
            fputs("\">", f);
            ddpm_html_text(f, st);
            fputs("</span>", f);
        }
        fputs(runs[0]->toy ? " <span class=\"badge\">2-D toy</span>" : "", f);
    }
    fputs("</h1><div class=\"sub\">", f);
    for (int k = 0; k < nruns; k++) {
        if (k) fputs(" &middot; ", f);
        ddpm_html_text(f, runs[k]->dir);
    }
    fputs("</div></header><main>\n", f);
    if (live)
        fprintf(f, "<div class=\"live\">%s is training: this page reloads every %d s.</div>\n",
                nruns > 1 ? "A run" : "The run", o->refresh_s);
}

static ddpm_status single_body(FILE *f, ddpm_rdir *r) {
    write_figures(f, r);
    fputs("<h2>Recipe</h2>\n", f);
    if (r->ninfo || !r->nmeta) kv_box(f, "Run (run.txt)", r->info, r->ninfo);
    if (r->has_ckpt || !r->ninfo) kv_box(f, "Configuration (checkpoint metadata)", r->meta, r->nmeta);
    ddpm_status st = write_plots(f, &r, 1);
    if (st) return st;
    if (r->toy) write_toy_images(f, r);
    else write_train_images(f, r);
    return DDPM_OK;
}

static bool volatile_key(const char *key) {
    for (size_t i = 0; i < sizeof VOLATILE / sizeof *VOLATILE; i++)
        if (!strcmp(VOLATILE[i], key)) return true;
    return false;
}

static bool same(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

/* The value of key in a run's metadata (side 0) or run.txt (side 1); NULL
 * when absent. *known is false when the run has no such source at all (no
 * checkpoint yet): its value is unknown, not different. */
static const char *side_value(const ddpm_rdir *r, int side, const char *key, bool *known) {
    *known = side ? r->ninfo > 0 : r->nmeta > 0;
    return side ? ddpm_rdir_info(r, key) : ddpm_rdir_meta(r, key);
}

/* The recipe keys whose values are not the same in every run that has
 * their source; side[i] says where keys[i] comes from. */
static int differing_keys(ddpm_rdir *const *runs, int nruns, const char **keys, int *sides, int cap) {
    int n = 0;
    for (int k = 0; k < nruns; k++)
        for (int side = 0; side < 2; side++) {
            const ddpm_kv *kv = side ? runs[k]->info : runs[k]->meta;
            for (int i = 0; i < (side ? runs[k]->ninfo : runs[k]->nmeta); i++) {
                const char *key = kv[i].key, *first = NULL;
                bool differs = false, dup = false, have = false, known;
                for (int j = 0; j < nruns; j++) {
                    const char *v = side_value(runs[j], side, key, &known);
                    if (!known) continue;
                    differs |= have && !same(first, v);
                    if (!have) first = v, have = true;
                }
                for (int j = 0; j < n; j++) dup |= !strcmp(keys[j], key);
                if (differs && !dup && !volatile_key(key) && n < cap) keys[n] = key, sides[n++] = side;
            }
        }
    return n;
}

static void write_runs_table(FILE *f, ddpm_rdir *const *runs, int nruns) {
    const char *keys[128];
    int sides[128], nk = differing_keys(runs, nruns, keys, sides, 128);
    fputs("<h2>Runs</h2><table><tr><th>run</th><th>what differs</th></tr>\n", f);
    for (int k = 0; k < nruns; k++) {
        fprintf(f, "<tr><td><span class=\"sw\" style=\"background:%s\"></span>", COLORS[k % NCOLORS]);
        ddpm_html_text(f, runs[k]->dir);
        fputs("</td><td class=\"v\">", f);
        for (int i = 0; i < nk; i++) {
            bool known;
            const char *v = side_value(runs[k], sides[i], keys[i], &known);
            fputs(i ? ", " : "", f);
            ddpm_html_text(f, keys[i]);
            fputs("=", f);
            if (v) ddpm_html_text(f, v);
            else fputs(known ? "<i>unset</i>" : "<i>unknown</i>", f);
        }
        fputs(nk ? "" : "(same recipe)", f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void write_metrics_table(FILE *f, ddpm_rdir *const *runs, int nruns) {
    static const char *const metrics[] = {"fid", "precision", "recall", "label_accuracy"};
    fputs("<h2>Final metrics</h2><table><tr><th>run</th><th class=\"num\">iterations</th><th class=\"num\">wall time</th>"
          "<th class=\"num\">images/s</th><th class=\"num\">final loss (smoothed)</th>", f);
    bool show[4]; /* the metrics some run has evaluated */
    for (int i = 0; i < 4; i++)
        if ((show[i] = has_data(runs, nruns, metrics[i]))) fprintf(f, "<th class=\"num\">%s</th>", metrics[i]);
    fputs("</tr>\n", f);
    for (int k = 0; k < nruns; k++) {
        const ddpm_rdir *r = runs[k];
        char b[64];
        fprintf(f, "<tr><td><span class=\"sw\" style=\"background:%s\"></span>", COLORS[k % NCOLORS]);
        ddpm_html_text(f, base_name(r->dir));
        fmt_num(b, sizeof b, ddpm_rdir_last(r, ddpm_rdir_xcol(r)), "%.0f");
        fprintf(f, "</td><td class=\"num\">%s</td>", b);
        duration(b, sizeof b, run_number(r, "wall_s", ddpm_rdir_tcol(r)));
        fprintf(f, "<td class=\"num\">%s</td>", b);
        fmt_num(b, sizeof b, run_number(r, "img_per_s", ddpm_rdir_col(r, "img_per_s")), "%.1f");
        fprintf(f, "<td class=\"num\">%s</td>", b);
        fmt_num(b, sizeof b, final_loss(r), "%.4g");
        fprintf(f, "<td class=\"num\">%s</td>", b);
        for (int i = 0; i < 4; i++) {
            if (!show[i]) continue;
            fmt_num(b, sizeof b, ddpm_rdir_last(r, ddpm_rdir_col(r, metrics[i])), "%.4g");
            fprintf(f, "<td class=\"num\">%s</td>", b);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static ddpm_status compare_body(FILE *f, ddpm_rdir *const *runs, int nruns) {
    write_runs_table(f, runs, nruns);
    write_metrics_table(f, runs, nruns);
    ddpm_status st = write_plots(f, runs, nruns);
    if (st) return st;
    fputs("<h2>Final samples</h2><div class=\"side\">\n", f);
    for (int k = 0; k < nruns; k++) {
        char cap[300];
        snprintf(cap, sizeof cap, "%s", base_name(runs[k]->dir));
        image(f, runs[k], "samples.png", runs[k]->toy ? "wide" : "final", cap, "not written yet");
    }
    fputs("</div>\n", f);
    return DDPM_OK;
}

/* Runs compare when they are of one kind and one dataset and image shape. */
static ddpm_status check_comparable(ddpm_rdir *const *runs, int nruns) {
    static const char *const keys[] = {DDPM_META_DATA, "in_ch", "res"}; /* checkpoint.h's config keys */
    for (int k = 1; k < nruns; k++) {
        const ddpm_rdir *a = runs[0], *b = runs[k];
        if (a->toy != b->toy)
            return ddpm_error(DDPM_ERR_ARG, "cannot compare '%s' and '%s': a %s run and a %s run", a->dir, b->dir,
                              a->toy ? "toy" : "train", b->toy ? "toy" : "train");
        for (int i = 0; i < 3; i++) {
            const char *va = ddpm_rdir_meta(a, keys[i]), *vb = ddpm_rdir_meta(b, keys[i]);
            if (va && vb && strcmp(va, vb))
                return ddpm_error(DDPM_ERR_ARG, "cannot compare '%s' and '%s': %s differs (%s vs %s)", a->dir,
                                  b->dir, keys[i], ddpm_show(va).s, ddpm_show(vb).s);
        }
    }
    return DDPM_OK;
}

static ddpm_status write_page(FILE *f, ddpm_rdir *const *runs, int nruns, const ddpm_report_opts *o,
                              const char *body, size_t nbody) {
    write_head(f, runs, nruns, o);
    write_notes(f, runs, nruns);
    fwrite(body, 1, nbody, f);
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    fprintf(f, "<p class=\"sub\" style=\"color:#8a94a3;margin-top:30px\">Written by ddpm %s (ddpm report) at %s."
               "</p>\n</main></body></html>\n", DDPM_VERSION, when);
    return DDPM_OK;
}

/* The page body into memory (*body, malloc'ed): the images' notes are known after it. */
static ddpm_status render_body(ddpm_rdir *const *runs, int nruns, char **body, size_t *nbody) {
    FILE *m = open_memstream(body, nbody);
    if (!m) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_status st = nruns > 1 ? compare_body(m, runs, nruns) : single_body(m, runs[0]);
    bool bad = ferror(m) != 0;
    if (fclose(m) || bad) st = st ? st : ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (st) {
        free(*body);
        *body = NULL;
    }
    return st;
}

ddpm_status ddpm_report_write(const char *const *run_dirs, int nruns, const char *out_path,
                              const ddpm_report_opts *o) {
    ddpm_report_opts def;
    ddpm_report_opts_default(&def);
    if (!o) o = &def;
    if (!run_dirs || nruns < 1 || nruns > DDPM_REPORT_MAX_RUNS || !out_path || !*out_path)
        return ddpm_error(DDPM_ERR_ARG, "report: 1 to %d run directories and an output file", DDPM_REPORT_MAX_RUNS);
    if (o->refresh_s < 1 || o->refresh_s > 86400)
        return ddpm_error(DDPM_ERR_ARG, "report: refresh interval %d s outside 1 .. 86400", o->refresh_s);
    ddpm_rdir runs[DDPM_REPORT_MAX_RUNS];
    ddpm_rdir *ptr[DDPM_REPORT_MAX_RUNS];
    int loaded = 0;
    ddpm_status st = DDPM_OK;
    for (; loaded < nruns && !st; loaded++) {
        ptr[loaded] = &runs[loaded];
        if ((st = ddpm_rdir_load(&runs[loaded], run_dirs[loaded]))) break;
    }
    if (!st && nruns > 1) st = check_comparable(ptr, nruns);
    char *body = NULL;
    size_t nbody = 0;
    if (!st) st = render_body(ptr, nruns, &body, &nbody);
    ddpm_atomic_file a;
    if (!st && !(st = ddpm_atomic_open(&a, out_path))) {
        write_page(a.f, ptr, nruns, o, body, nbody);
        st = ferror(a.f) ? ddpm_atomic_fail(&a, strerror(errno ? errno : EIO)) : ddpm_atomic_commit(&a);
    }
    free(body);
    for (int k = 0; k < loaded; k++) ddpm_rdir_free(&runs[k]);
    return st;
}

bool ddpm_report_default_path(char *buf, size_t cap, const char *const *run_dirs, int nruns) {
    int n = nruns > 1 ? snprintf(buf, cap, "compare.html") : snprintf(buf, cap, "%s/report.html", run_dirs[0]);
    return n >= 0 && (size_t)n < cap;
}

ddpm_status ddpm_report_write_run(const char *run_dir) {
    char out[4200];
    if (!run_dir || !ddpm_report_default_path(out, sizeof out, &run_dir, 1))
        return ddpm_error(DDPM_ERR_ARG, "report: run directory name missing or too long");
    return ddpm_report_write(&run_dir, 1, out, NULL);
}
