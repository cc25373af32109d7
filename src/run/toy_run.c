/* toy_run.c: `ddpm toy`'s run: training with progress lines, the
 * checkpoint, the log, the scatter plots of the forward and reverse
 * process, the samples and their distance to the data. See run.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/csv.h"
#include "ddpm/energy.h"
#include "ddpm/image.h"
#include "ddpm/progress.h"
#include "ddpm/report.h"
#include "run/run_internal.h"

#define PANELS 10
#define PLOT_POINTS 2000     /* points per forward panel */
#define DIST_MAX 4000        /* points per set in the distance */
#define RNG_SALT 0x746f79ULL /* "toy": the run's streams differ from the trainer's */

/* The run's streams, split in this order from one root: the data's
 * points, the forward plot's noise, the samples' seed, the reference sets. */
typedef struct {
    ddpm_rng data, plot, ref;
    uint64_t sample_seed;
} toy_streams;

static toy_streams streams(uint64_t seed) {
    ddpm_rng root;
    ddpm_rng_seed(&root, seed ^ RNG_SALT);
    toy_streams s;
    s.data = ddpm_rng_split(&root);
    s.plot = ddpm_rng_split(&root);
    s.sample_seed = ddpm_rng_u64(&root);
    s.ref = ddpm_rng_split(&root);
    return s;
}

ddpm_status ddpm_toy_run_create(ddpm_toy **t, const ddpm_toy_config *c, const char *data, int points, bool unit,
                                uint64_t seed) {
    toy_streams st = streams(seed);
    int kind = ddpm_toy_data_parse(data), n = points;
    float *xy = NULL;
    if (kind >= 0) {
        if (!(xy = ddpm_malloc(2 * (size_t)n * sizeof(float)))) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        ddpm_toy_data_draw(xy, n, (ddpm_toy_data_kind)kind, &st.data);
    } else {
        ddpm_status s = ddpm_csv_read_points(data, &xy, &n);
        if (s) return s;
    }
    ddpm_toy_scaling sc = unit ? ddpm_toy_scaling_unit(xy, n) : ddpm_toy_scaling_none();
    ddpm_toy_to_model(xy, n, &sc);
    ddpm_status s = ddpm_toy_create(t, c, xy, n, &sc, data);
    ddpm_free(xy);
    return s;
}

/* Trains to the configured step count, about 10 progress lines. */
static ddpm_status train(ddpm_toy *t, FILE *out, ddpm_toy_result *r) {
    const ddpm_toy_config *c = ddpm_toy_get_config(t);
    int64_t start = ddpm_toy_step_count(t), every = c->iters / 10 > 0 ? c->iters / 10 : 1;
    if (start >= c->iters) return DDPM_OK;
    double t0 = ddpm_now(), ema = NAN;
    for (int64_t s = start; s < c->iters; s++) {
        ddpm_toy_stats st;
        ddpm_status e = ddpm_toy_step(t, &st);
        if (e) return e;
        ema = isnan(ema) ? st.loss : 0.99 * ema + 0.01 * st.loss;
        if (out && ((s + 1) % every == 0 || s + 1 == c->iters))
            fprintf(out, "ddpm toy: step %" PRId64 "/%" PRId64 "  loss %.4f (avg %.4f)  |grad| %.3f  %.1f s\n", s + 1,
                    c->iters, st.loss, ema, st.grad_norm, ddpm_now() - t0);
    }
    r->steps = c->iters - start;
    r->train_s = ddpm_now() - t0;
    if (out) {
        char buf[32];
        ddpm_fmt_duration(buf, sizeof buf, r->train_s);
        fprintf(out, "ddpm toy: trained %" PRId64 " steps in %s (%.2f ms/step)\n", r->steps, buf,
                1e3 * r->train_s / (double)r->steps);
    }
    return DDPM_OK;
}

static const char *join(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

static ddpm_status write_panels(const char *path, const float *pts, int n, char titles[][24], const char *title) {
    ddpm_scatter_panel p[PANELS];
    for (int j = 0; j < PANELS; j++) p[j] = (ddpm_scatter_panel){pts + (size_t)j * 2 * n, n, titles[j]};
    ddpm_scatter_opts o;
    ddpm_scatter_opts_default(&o);
    o.cols = 5, o.panel_w = o.panel_h = 220, o.alpha = 0.3f, o.title = title;
    return ddpm_plot_scatter_png(path, p, PANELS, &o);
}

/* forward.png: x_t of the first training points at t = j T / 10, one noise draw per point. */
static ddpm_status write_forward(ddpm_toy *t, const char *dir, ddpm_rng *rng) {
    int nd, T = ddpm_toy_get_config(t)->T;
    const float *data = ddpm_toy_data(t, &nd);
    int n = nd < PLOT_POINTS ? nd : PLOT_POINTS;
    float *pts = ddpm_malloc((size_t)(PANELS + 1) * 2 * n * sizeof(float)), *eps = pts + (size_t)PANELS * 2 * n;
    int *tt = ddpm_malloc((size_t)n * sizeof(int));
    if (!pts || !tt) {
        ddpm_free(pts), ddpm_free(tt);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    }
    char titles[PANELS][24], path[4200];
    ddpm_rng_fill_normal(rng, eps, 2 * (size_t)n);
    for (int j = 0; j < PANELS; j++) {
        int tj = j * T / PANELS;
        for (int i = 0; i < n; i++) tt[i] = tj;
        ddpm_q_sample(pts + (size_t)j * 2 * n, data, eps, tt, ddpm_toy_schedule(t), n, 2);
        snprintf(titles[j], sizeof titles[j], "t = %d", tj);
    }
    ddpm_status s = write_panels(join(path, sizeof path, dir, "forward.png"), pts, n, titles,
                                 "FORWARD PROCESS Q(X_T | X_0)");
    ddpm_free(pts), ddpm_free(tt);
    return s;
}

typedef struct {
    float *snap; /* [PANELS, n, 2] */
    int n;
    char titles[PANELS][24];
} reverse_rec;

/* Keeps the state after step k when k is one of the panels' round(j K / 9). */
static void on_step(void *ud, int first, int N, int k, int K, const float *x) {
    reverse_rec *r = ud;
    for (int j = 0; j < PANELS; j++)
        if (k == (int)lround((double)j * K / (PANELS - 1))) {
            memcpy(r->snap + ((size_t)j * r->n + first) * 2, x, 2 * (size_t)N * sizeof(float));
            snprintf(r->titles[j], sizeof r->titles[j], k == 0 ? "x_T" : k == K ? "x_0" : "step %d/%d", k, K);
        }
}

/* The training points in data coordinates (m of them, malloc'ed). */
static float *data_points(ddpm_toy *t, int *m) {
    const float *d = ddpm_toy_data(t, m);
    float *ref = ddpm_malloc(2 * (size_t)*m * sizeof(float));
    if (!ref) return NULL;
    memcpy(ref, d, 2 * (size_t)*m * sizeof(float));
    ddpm_toy_scaling sc = ddpm_toy_get_scaling(t);
    ddpm_toy_to_data(ref, *m, &sc);
    return ref;
}

/* samples.png: the training points and the samples side by side, data coordinates. */
static ddpm_status write_samples_png(ddpm_toy *t, const char *dir, const float *x, int n) {
    int nd;
    float *ref = data_points(t, &nd);
    if (!ref) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_scatter_panel p[2] = {{ref, nd < n ? nd : n, "TRAINING DATA"}, {x, n, "SAMPLES"}};
    ddpm_scatter_opts o;
    ddpm_scatter_opts_default(&o);
    o.panel_w = o.panel_h = 300, o.alpha = 0.3f;
    char path[4200];
    ddpm_status s = ddpm_plot_scatter_png(join(path, sizeof path, dir, "samples.png"), p, 2, &o);
    ddpm_free(ref);
    return s;
}

/* samples.csv: "x,y" then one point per line, data coordinates, written atomically. */
static ddpm_status write_csv(const char *path, const float *xy, int n) {
    ddpm_atomic_file a;
    ddpm_status s = ddpm_atomic_open(&a, path);
    if (s) return s;
    fprintf(a.f, "x,y\n");
    for (int i = 0; i < n; i++) fprintf(a.f, "%.9g,%.9g\n", xy[2 * i], xy[2 * i + 1]);
    if (ferror(a.f)) return ddpm_atomic_fail(&a, strerror(errno ? errno : EIO));
    return ddpm_atomic_commit(&a);
}

/* Samples o->num points into x (data coordinates); writes reverse.png, samples.csv, samples.png. */
static ddpm_status sample(ddpm_toy *t, const ddpm_toy_run_opts *o, uint64_t seed, float *x, ddpm_toy_result *r) {
    int n = o->num;
    reverse_rec rec = {ddpm_malloc((size_t)PANELS * 2 * n * sizeof(float)), n, {{0}}};
    if (!rec.snap) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    double t0 = ddpm_now();
    char path[4200];
    ddpm_status s = ddpm_toy_sample(t, x, n, &o->sampler, seed, on_step, &rec);
    r->sample_s = ddpm_now() - t0;
    if (!s && o->progress)
        fprintf(o->progress, "ddpm toy: sampled %d points with %s in %.1f s\n", n, ddpm_sampler_name(o->sampler.kind),
                r->sample_s);
    if (!s) s = write_panels(join(path, sizeof path, o->dir, "reverse.png"), rec.snap, n, rec.titles,
                             "REVERSE PROCESS FROM N(0, I)");
    ddpm_toy_scaling sc = ddpm_toy_get_scaling(t);
    ddpm_toy_to_data(x, n, &sc);
    if (!s) s = write_csv(join(path, sizeof path, o->dir, "samples.csv"), x, n);
    if (!s) s = write_samples_png(t, o->dir, x, n);
    ddpm_free(rec.snap);
    return s;
}

/* Two reference sets a, b [m, 2] in data coordinates: fresh draws of a named
 * dataset, else two disjoint random subsets of the training points. */
static ddpm_status reference_sets(ddpm_toy *t, ddpm_rng *rng, float *a, float *b, int m) {
    int kind = ddpm_toy_data_parse(ddpm_toy_data_label(t));
    if (kind >= 0) {
        ddpm_toy_data_draw(a, m, (ddpm_toy_data_kind)kind, rng);
        ddpm_toy_data_draw(b, m, (ddpm_toy_data_kind)kind, rng);
        return DDPM_OK;
    }
    int nd;
    const float *d = ddpm_toy_data(t, &nd);
    int *perm = ddpm_malloc((size_t)nd * sizeof(int));
    if (!perm) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nd; i++) perm[i] = i;
    for (int i = nd - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)ddpm_rng_below(rng, (uint32_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    for (int i = 0; i < 2 * m; i++) memcpy(i < m ? a + 2 * i : b + 2 * (i - m), d + 2 * (size_t)perm[i], 8);
    ddpm_free(perm);
    ddpm_toy_scaling sc = ddpm_toy_get_scaling(t);
    ddpm_toy_to_data(a, m, &sc);
    ddpm_toy_to_data(b, m, &sc);
    return DDPM_OK;
}

/* The energy distance of the samples to reference points next to its floor. */
static ddpm_status distance(ddpm_toy *t, const float *x, int n, ddpm_rng *rng, ddpm_toy_result *r) {
    int nd;
    ddpm_toy_data(t, &nd);
    r->fresh = ddpm_toy_data_parse(ddpm_toy_data_label(t)) >= 0;
    int m = n < DIST_MAX ? n : DIST_MAX;
    if (!r->fresh && m > nd / 2) m = nd / 2;
    if (m < 1) return DDPM_OK;
    float *a = ddpm_malloc(4 * (size_t)m * sizeof(float)), *b = a ? a + 2 * (size_t)m : NULL;
    if (!a) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_status s = reference_sets(t, rng, a, b, m);
    if (!s) {
        r->m = m;
        r->energy = ddpm_energy_distance(x, m, a, m, 2);
        r->energy_floor = ddpm_energy_distance(b, m, a, m, 2);
    }
    ddpm_free(a);
    return s;
}

/* The fraction of the samples within DDPM_TOY_NEAR_FRAC of the data's
 * extent (the longer side of its bounding box) of a training point. */
static ddpm_status near(ddpm_toy *t, const float *x, int n, ddpm_toy_result *r) {
    int nd;
    float *ref = data_points(t, &nd);
    if (!ref) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int i = 0; i < 2 * nd; i++) lo[i % 2] = fminf(lo[i % 2], ref[i]), hi[i % 2] = fmaxf(hi[i % 2], ref[i]);
    r->near_r = DDPM_TOY_NEAR_FRAC * fmax(hi[0] - lo[0], hi[1] - lo[1]);
    r->near_frac = ddpm_near_fraction(x, n, ref, nd, 2, r->near_r);
    ddpm_free(ref);
    return DDPM_OK;
}

/* log.csv (step, loss, grad_norm) and loss.png from the trainer's history. */
static ddpm_status write_log(ddpm_toy *t, const char *dir) {
    int64_t n = ddpm_toy_step_count(t);
    const float *loss = ddpm_toy_loss_log(t), *g = ddpm_toy_grad_norm_log(t);
    char path[4200];
    ddpm_atomic_file a;
    ddpm_status s = ddpm_atomic_open(&a, join(path, sizeof path, dir, "log.csv"));
    if (s) return s;
    fprintf(a.f, "step,loss,grad_norm\n");
    for (int64_t i = 0; i < n; i++) fprintf(a.f, "%" PRId64 ",%.7g,%.7g\n", i + 1, loss[i], g[i]);
    if (ferror(a.f)) return ddpm_atomic_fail(&a, strerror(errno ? errno : EIO));
    if ((s = ddpm_atomic_commit(&a))) return s;
    return ddpm_plot_line_png(join(path, sizeof path, dir, "loss.png"), loss, (int)n, 800, 400, true,
                              "TRAINING LOSS (LOG SCALE) VS STEP");
}

ddpm_status ddpm_toy_run(ddpm_toy *t, const ddpm_toy_run_opts *o, ddpm_toy_result *r) {
    memset(r, 0, sizeof *r);
    toy_streams st = streams(o->seed);
    char path[4200];
    ddpm_status s = run_mkdirs(o->dir);
    if (!s) s = train(t, o->progress, r);
    if (!s) s = ddpm_toy_save(t, join(path, sizeof path, o->dir, DDPM_TOY_CKPT));
    if (!s) s = write_log(t, o->dir);
    if (!s) s = write_forward(t, o->dir, &st.plot);
    float *x = s ? NULL : ddpm_malloc(2 * (size_t)o->num * sizeof(float));
    if (!s && !x) s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (!s) s = sample(t, o, st.sample_seed, x, r);
    if (!s) s = distance(t, x, o->num, &st.ref, r);
    if (!s) s = near(t, x, o->num, r);
    ddpm_free(x);
    if (!s && ddpm_report_write_run(o->dir) && o->progress) /* the page is a bonus: a warning, not a failure */
        fprintf(o->progress, "ddpm toy: warning: no report: %s\n", ddpm_last_error());
    return s;
}
