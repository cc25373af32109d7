/* cmd_eval.c: `ddpm eval`: sample quality against a dataset's test split in
 * the features of a small CNN trained with the library's own layers (FID,
 * k-NN precision/recall, classifier confidence, class entropy, label
 * accuracy), and, with --bpd, the variational bound in bits/dim.
 *
 * The protocol is fixed and printed with the numbers: the network file and
 * the first 16 hex digits of its SHA-256, the reference split and its size,
 * N. FID compares N images with the whole test split; precision and recall
 * (k = 3) compare them with the first min(N, test size) test images, so both
 * sets have the same size.
 *
 * The network for a dataset is trained on first use, on one thread (so the
 * cached file does not depend on --threads), and cached under data/eval as
 * <dataset>-<hash>.safetensors, the hash covering the recipe and the
 * training data.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "ddpm/checkpoint.h"
#include "ddpm/classifier.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/eval.h"
#include "ddpm/objective.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

#define CMD "eval"
#define EVAL_CACHE_DIR "data/eval" /* $DDPM_EVAL_CACHE overrides */
#define CLF_BATCH 256

typedef struct {
    const char *file, *ckpt, *data, *data_dir, *net, *sampler, *var, *labels_path, *terms, *spacing;
    int n, steps, threads, batch;
    float eta, guidance;
    uint64_t seed;
    bool json, bpd, no_ema;
    bool n_seen, var_seen, guided;
} eval_flags;

/* What gets printed, in order: key, value (already formatted). */
typedef struct {
    char key[32][32];
    char val[32][1100];
    bool str[32]; /* JSON: quote the value */
    int n;
} report;

static void put(report *r, const char *key, bool is_str, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(report *r, const char *key, bool is_str, const char *fmt, ...) {
    if (r->n >= 32) return;
    va_list ap;
    va_start(ap, fmt);
    snprintf(r->key[r->n], sizeof r->key[0], "%s", key);
    vsnprintf(r->val[r->n], sizeof r->val[0], fmt, ap);
    va_end(ap);
    r->str[r->n++] = is_str;
}

static void print_report(const report *r, bool json) {
    if (!json) {
        for (int i = 0; i < r->n; i++) printf("%s=%s\n", r->key[i], r->val[i]);
        return;
    }
    printf("{");
    for (int i = 0; i < r->n; i++) {
        printf("%s\"%s\": ", i ? ", " : "", r->key[i]);
        if (!r->str[i]) {
            printf("%s", r->val[i]);
            continue;
        }
        putchar('"');
        for (const unsigned char *p = (const unsigned char *)r->val[i]; *p; p++) {
            if (*p == '"' || *p == '\\') printf("\\%c", *p);
            else if (*p < 0x20) printf("\\u%04x", *p);
            else putchar(*p);
        }
        putchar('"');
    }
    printf("}\n");
}

static int fail(void) {
    ddpm_cli_error(CMD);
    return 1;
}

/* ---- the evaluation network ------------------------------------------------------------ */

/* A progress line on stderr, redrawn in place on a terminal (at most 5 times
 * a second), else a line every 10 s; always the last one. */
typedef struct {
    int done, total;
    double t0, last;
    bool tty;
} progress;

static progress progress_start(int total) { return (progress){0, total, ddpm_cli_now(), 0.0, ddpm_cli_tty()}; }

/* Counts one unit of work; `what` is e.g. "sampling 1000 images", `extra`
 * is appended after the counts. */
static void progress_step(progress *p, const char *what, const char *unit, const char *extra) {
    p->done++;
    double t = ddpm_cli_now();
    if (p->done != p->total && t - p->last < (p->tty ? 0.2 : 10.0)) return;
    p->last = t;
    char eta[32];
    double rate = p->done / (t - p->t0 + 1e-9);
    ddpm_cli_fmt_duration(eta, sizeof eta, (p->total - p->done) / (rate > 0 ? rate : 1));
    fprintf(stderr, "%s%s: %d/%d %s%s  eta %s%s", p->tty ? "\r" : "", what, p->done, p->total, unit, extra, eta,
            p->tty ? "\033[K" : "\n");
    if (p->done == p->total && p->tty) fputc('\n', stderr);
}

static const char *cache_dir(void) {
    const char *d = getenv("DDPM_EVAL_CACHE");
    return d && *d ? d : EVAL_CACHE_DIR;
}

typedef struct {
    progress p;
    const char *dir, *path;
} clf_progress;

static int clf_on_step(void *ud, int step, int steps, double loss) {
    clf_progress *c = ud;
    if (step == 1) {
        fprintf(stderr, "ddpm %s: no evaluation network for '%s' yet: training one on its training split "
                        "(one thread), to be cached as '%s'\n", CMD, c->dir, c->path);
        c->p = progress_start(steps);
    }
    char extra[32];
    snprintf(extra, sizeof extra, "  loss %.4f", loss);
    progress_step(&c->p, "training the evaluation network", "steps", extra);
    return 0;
}

/* Loads --net, or the cached network for the dataset (training it first when
 * missing, on one thread). Checks it takes the dataset's images. */
static int get_net(ddpm_classifier **m, char *path, size_t cap, char *acc, const char *dir,
                   const ddpm_dataset *test, const eval_flags *f) {
    if (f->net) {
        snprintf(path, cap, "%s", f->net);
    } else {
        bool trained;
        double a;
        clf_progress cp = {progress_start(1), dir, path};
        clock_t c0 = clock();
        double t0 = ddpm_cli_now();
        ddpm_cli_threads(1);
        ddpm_status s = ddpm_clf_obtain(path, cap, &trained, &a, cache_dir(), dir, test, clf_on_step, &cp);
        ddpm_cli_threads(f->threads);
        if (s) return fail();
        if (trained)
            fprintf(stderr, "ddpm %s: evaluation network: test accuracy %.2f%% (%d images); trained in %.0f s "
                            "(%.0f s of CPU)\n", CMD, 100 * a, test->n, ddpm_cli_now() - t0,
                    (double)(clock() - c0) / CLOCKS_PER_SEC);
    }
    if (ddpm_clf_load(m, path, CLF_BATCH, "test_accuracy", acc, 32)) return fail();
    const ddpm_clf_config *c = ddpm_clf_cfg(*m);
    if (c->in_ch != test->c || c->res != test->h || c->res != test->w || c->num_classes < test->num_classes) {
        fprintf(stderr, "ddpm %s: '%s' takes %d x %d x %d images of %d classes; the reference '%s' has %d x %d x %d "
                        "images of %d classes\n", CMD, path, c->in_ch, c->res, c->res, c->num_classes, dir, test->c,
                test->h, test->w, test->num_classes);
        return 1;
    }
    return 0;
}

/* ---- the diffusion model ------------------------------------------------------------------ */

typedef struct {
    ddpm_unet *m;
    ddpm_schedule s;
    ddpm_unet_config cfg;
    ddpm_var_kind var;
    const char *var_src; /* where var came from */
    ddpm_objective_model om; /* the UNet's output as eps_hat (the checkpoint's objective) */
    bool ema;
    const int *labels; /* of the current batch, or NULL */
} model;

static ddpm_status unet_eps(void *ctx, float *eps, const float *x, const int *t, int N) {
    model *md = ctx;
    return ddpm_objective_eps(&md->om, eps, x, t, md->labels, N);
}

static void model_free(model *md) {
    ddpm_unet_free(md->m);
    ddpm_schedule_free(&md->s);
}

/* The integer metadata value of key in [lo, hi]. */
static int meta_need(const ddpm_checkpoint *ck, const char *key, const char *why) {
    if (ddpm_checkpoint_meta(ck, key)) return 0;
    fprintf(stderr, "ddpm %s: '%s': metadata lacks '%s' (needed for %s); not a checkpoint written by 'ddpm train'?\n",
            CMD, ck->path, key, why);
    return 1;
}

/* Opens the checkpoint: model (EMA weights unless --no-ema) for batches of B,
 * the schedule from its metadata (required), the variance (metadata 'var',
 * else small, unless --var). */
static int model_load(model *md, const eval_flags *f, int B) {
    memset(md, 0, sizeof *md);
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, f->ckpt)) return fail();
    int rc = meta_need(&ck, DDPM_META_SCHEDULE, "the noise schedule") || meta_need(&ck, DDPM_META_TIMESTEPS, "the noise schedule");
    const char *sv = ddpm_checkpoint_meta(&ck, DDPM_META_SCHEDULE), *tv = ddpm_checkpoint_meta(&ck, DDPM_META_TIMESTEPS);
    const char *vv = f->var_seen ? f->var : ddpm_checkpoint_meta(&ck, "var");
    int kind = sv ? ddpm_schedule_parse(sv) : -1, var = ddpm_var_parse(vv ? vv : "small");
    char *end = NULL;
    long T = tv ? strtol(tv, &end, 10) : 0;
    if (!rc && (kind < 0 || !end || *end || T < 2 || T > DDPM_SCHEDULE_MAX_T || var < 0)) {
        fprintf(stderr, "ddpm %s: '%s': invalid %s in the metadata\n", CMD, f->ckpt,
                kind < 0 ? "noise schedule" : var < 0 ? "variance ('var')" : "number of timesteps");
        rc = 1;
    }
    md->cfg = ck.cfg;
    md->var = (ddpm_var_kind)var;
    md->ema = ck.has_ema && !f->no_ema;
    if (!rc && (ddpm_unet_create(&md->m, &md->cfg, B, false) ||
                ddpm_checkpoint_read(&ck, md->ema ? "ema." : "", ddpm_unet_params(md->m)) ||
                ddpm_schedule_init(&md->s, (ddpm_schedule_kind)kind, (int)T)))
        rc = fail();
    ddpm_objective obj = DDPM_OBJ_EPS;
    if (!rc && (ddpm_train_read_objective(&ck, &obj, NULL) ||
                ddpm_objective_model_init(&md->om, ddpm_unet_eps, md->m, obj, &md->s,
                                          (size_t)md->cfg.in_ch * md->cfg.res * md->cfg.res)))
        rc = fail();
    md->var_src = f->var_seen ? "--var" : vv ? "the checkpoint's" : "default; the checkpoint records none";
    ddpm_checkpoint_close(&ck);
    if (rc) model_free(md);
    return rc;
}

typedef struct {
    progress p;
    char what[64];
} named_progress;

static void sample_on_step(void *ud, int first, int N, int step, int nsteps, const float *x) {
    (void)x, (void)first, (void)N, (void)nsteps;
    named_progress *p = ud;
    if (step > 0) progress_step(&p->p, p->what, "model calls", ""); /* step 0 is x_T */
}

/* Samples f->n images through the library's sampler (image i from its own
 * stream, as `ddpm sample` draws it) and evaluates them. */
static ddpm_status sample_eval(ddpm_eval_metrics *m, model *md, const eval_flags *f, const ddpm_eval_ref *ref, int K) {
    int n = f->n, B = f->batch < n ? f->batch : n, C = md->cfg.num_classes;
    size_t D = (size_t)md->cfg.in_ch * md->cfg.res * md->cfg.res;
    ddpm_sampler_opts o = {(ddpm_sampler_kind)ddpm_sampler_parse(f->sampler), K, f->eta, md->var,
                           (ddpm_spacing)(f->spacing ? ddpm_spacing_parse(f->spacing) : 0)};
    ddpm_guidance g = {0};
    ddpm_status s = f->guided ? ddpm_guidance_init(&g, ddpm_objective_eps, &md->om, f->guidance, C, D, B) : DDPM_OK;
    named_progress p = {progress_start(((n + B - 1) / B) * K), ""};
    snprintf(p.what, sizeof p.what, "sampling %d images", n);
    if (!s) s = ddpm_eval_model(m, ref, f->guided ? ddpm_guidance_eps : ddpm_objective_eps, f->guided ? (void *)&g : (void *)&md->om,
                                &md->s, &o, C, n, B, f->seed, sample_on_step, &p);
    if (f->guided) ddpm_guidance_free(&g);
    return s;
}

/* Samples from the checkpoint and evaluates (labels cycle for a conditional model). */
static int sample_ckpt(ddpm_eval_metrics *m, report *r, const eval_flags *f, const ddpm_eval_ref *ref) {
    model md;
    int B = f->batch < f->n ? f->batch : f->n;
    if (model_load(&md, f, f->guided ? 2 * B : B)) return 1;
    const ddpm_dataset *test = ref->test;
    int kind = ddpm_sampler_parse(f->sampler), T = md.s.T, C = md.cfg.num_classes, rc = 0;
    int kmax = ddpm_sampler_max_steps((ddpm_sampler_kind)kind, T);
    int K = f->steps ? f->steps : ddpm_sampler_default_steps((ddpm_sampler_kind)kind, T);
    if (md.cfg.in_ch != test->c || md.cfg.res != test->h || md.cfg.res != test->w) {
        fprintf(stderr, "ddpm %s: '%s' makes %d x %d x %d images; the reference has %d x %d x %d\n", CMD, f->ckpt,
                md.cfg.in_ch, md.cfg.res, md.cfg.res, test->c, test->h, test->w);
        rc = 1;
    } else if (f->steps > kmax) {
        fprintf(stderr, "ddpm %s: --sample-steps %d: %s takes at most %d steps for the checkpoint's T = %d\n", CMD,
                f->steps, f->sampler, kmax, T);
        rc = 2;
    } else if (f->guided && C == 0) {
        fprintf(stderr, "ddpm %s: --guidance: the model in '%s' is unconditional\n", CMD, f->ckpt);
        rc = 2;
    }
    if (!rc) {
        fprintf(stderr, "ddpm %s: sampling %d images from '%s' (%s weights, %s-prediction): %s, %d steps, seed %llu\n",
                CMD, f->n, f->ckpt, md.ema ? "EMA" : "raw", ddpm_objective_name(md.om.obj), f->sampler, K,
                (unsigned long long)f->seed);
        if (sample_eval(m, &md, f, ref, K)) rc = fail();
    }
    if (!rc) {
        put(r, "sampler", true, "%s", f->sampler);
        put(r, "sample_steps", false, "%d", K);
        if (kind == DDPM_SAMPLER_DDIM) put(r, "eta", false, "%g", (double)f->eta);
        if (kind == DDPM_SAMPLER_DDPM) put(r, "variance", true, "%s", ddpm_var_name(md.var));
        if (f->guided) put(r, "guidance", false, "%g", (double)f->guidance);
        put(r, "seed", false, "%llu", (unsigned long long)f->seed);
    }
    model_free(&md);
    return rc;
}

/* ---- metrics ------------------------------------------------------------------------------ */

static void put_metrics(report *r, const ddpm_eval_metrics *m) {
    put(r, "pr_reference", true, "first %d test images, k=%d", m->n_pr, DDPM_EVAL_K);
    put(r, "fid", false, "%.4f", m->fid);
    put(r, "precision", false, "%.4f", m->precision);
    put(r, "recall", false, "%.4f", m->recall);
    put(r, "confidence", false, "%.4f", m->confidence);
    put(r, "class_entropy", false, "%.4f", m->class_entropy);
    if (m->label_accuracy >= 0) put(r, "label_accuracy", false, "%.4f", m->label_accuracy);
}

/* ---- bits/dim ---------------------------------------------------------------------------------- */

static int bpd_on_t(void *ud, int done, int T) {
    (void)done, (void)T;
    named_progress *p = ud;
    progress_step(&p->p, p->what, "model calls", "");
    return 0;
}

static ddpm_status write_terms(const char *path, const double *mean, int T) {
    ddpm_atomic_file a;
    ddpm_status s = ddpm_atomic_open(&a, path);
    if (s) return s;
    fprintf(a.f, "t,term,bits_per_dim\n");
    for (int t = 0; t <= T; t++)
        fprintf(a.f, "%d,%s,%.9g\n", t, t == T ? "prior" : t == 0 ? "decoder" : "kl", mean[t]);
    if (ferror(a.f)) return ddpm_atomic_fail(&a, "write error");
    return ddpm_atomic_commit(&a);
}

/* terms (n, T + 1) of the first n test images, in batches. */
static ddpm_status bpd_run(double *terms, model *md, const ddpm_dataset *test, const eval_flags *f) {
    int n = f->n, B = f->batch < n ? f->batch : n, T = md->s.T;
    size_t D = (size_t)test->c * test->h * test->w;
    float *x0 = ddpm_malloc((size_t)B * D * sizeof(float)), *work = ddpm_malloc(ddpm_bpd_workspace(B, D) * sizeof(float));
    ddpm_rng *rngs = ddpm_malloc((size_t)B * sizeof(ddpm_rng));
    int *idx = ddpm_malloc((size_t)B * sizeof(int));
    ddpm_status s = !x0 || !work || !rngs || !idx ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for bits/dim") : DDPM_OK;
    named_progress p = {progress_start(((n + B - 1) / B) * T), ""};
    snprintf(p.what, sizeof p.what, "bits/dim of %d test images", n);
    for (int first = 0; first < n && !s; first += B) {
        int N = n - first < B ? n - first : B;
        for (int i = 0; i < N; i++) {
            idx[i] = first + i;
            ddpm_rng_seed(&rngs[i], f->seed ^ (0xd1b54a32d192ed03ULL * ((uint64_t)(first + i) + 1)));
        }
        ddpm_dataset_to_float(x0, test, idx, N);
        md->labels = NULL; /* the unconditional bound ("no label" row for conditional models) */
        s = ddpm_bpd_loop(terms + (size_t)first * (T + 1), x0, N, D, &md->s, md->var, unet_eps, md, rngs, work,
                          bpd_on_t, &p);
    }
    ddpm_free(x0);
    ddpm_free(work);
    ddpm_free(rngs);
    ddpm_free(idx);
    return s;
}

static int run_bpd(report *r, const eval_flags *f, const ddpm_dataset *test) {
    model md;
    if (model_load(&md, f, f->batch < f->n ? f->batch : f->n)) return 1;
    int T = md.s.T, n = f->n;
    if (md.cfg.in_ch != test->c || md.cfg.res != test->h || md.cfg.res != test->w) {
        fprintf(stderr, "ddpm %s: '%s' models %d x %d x %d images; the test images are %d x %d x %d\n", CMD, f->ckpt,
                md.cfg.in_ch, md.cfg.res, md.cfg.res, test->c, test->h, test->w);
        model_free(&md);
        return 1;
    }
    double *terms = malloc((size_t)n * (T + 1) * sizeof(double)), *mean = calloc((size_t)T + 1, sizeof(double));
    ddpm_status s = !terms || !mean ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for bits/dim") : DDPM_OK;
    fprintf(stderr, "ddpm %s: bits/dim of %d test images, %d model calls each (T = %d), %s variance (%s), %s weights, "
                    "%s-prediction\n", CMD, n, T, T, ddpm_var_name(md.var), md.var_src, md.ema ? "EMA" : "raw",
            ddpm_objective_name(md.om.obj));
    if (!s) s = bpd_run(terms, &md, test, f);
    if (!s) {
        double tot = 0, tot2 = 0;
        for (int i = 0; i < n; i++) {
            double row = 0;
            for (int t = 0; t <= T; t++) row += terms[(size_t)i * (T + 1) + t], mean[t] += terms[(size_t)i * (T + 1) + t] / n;
            tot += row, tot2 += row * row;
        }
        double mu = tot / n, sd = n > 1 ? sqrt(fmax(0.0, (tot2 - n * mu * mu) / (n - 1))) : 0.0, kl = 0;
        for (int t = 1; t < T; t++) kl += mean[t];
        put(r, "variance", true, "%s", ddpm_var_name(md.var));
        put(r, "timesteps", false, "%d", T);
        put(r, "bpd", false, "%.6f", mu);
        put(r, "bpd_stderr", false, "%.6f", sd / sqrt((double)n));
        put(r, "bpd_prior", false, "%.6f", mean[T]);
        put(r, "bpd_decoder", false, "%.6f", mean[0]);
        put(r, "bpd_kl", false, "%.6f", kl);
        if (f->terms) s = write_terms(f->terms, mean, T);
        if (!s && f->terms) put(r, "terms", true, "%s", f->terms);
    }
    free(terms);
    free(mean);
    model_free(&md);
    return s ? fail() : 0;
}

/* ---- the images to evaluate -------------------------------------------------------------------- */

/* The first n (default: all) images of f->file; *labels from --labels. */
static int load_idx_images(uint8_t **u8, int **labels, int *n, const eval_flags *f, const ddpm_dataset *test) {
    ddpm_idx im = {0}, lb = {0};
    if (ddpm_idx_read(&im, f->file, DDPM_IDX_IMAGES)) return fail();
    int c = im.ndim == 4 ? im.dims[1] : 1, h = im.dims[im.ndim - 2], w = im.dims[im.ndim - 1], count = im.dims[0];
    int rc = 0;
    if (c != test->c || h != test->h || w != test->w) {
        fprintf(stderr, "ddpm %s: '%s' holds %d x %d x %d images; the evaluation network for the reference takes "
                        "%d x %d x %d\n", CMD, f->file, c, h, w, test->c, test->h, test->w);
        rc = 1;
    } else if (f->n_seen && f->n > count) {
        fprintf(stderr, "ddpm %s: -n %d exceeds the %d images in '%s'\n", CMD, f->n, count, f->file);
        rc = 2;
    } else if (count < DDPM_EVAL_K + 1) {
        fprintf(stderr, "ddpm %s: '%s' holds %d images; the metrics need at least %d\n", CMD, f->file, count, DDPM_EVAL_K + 1);
        rc = 1;
    }
    *n = f->n_seen ? f->n : count;
    if (!rc && f->labels_path) {
        if (ddpm_idx_read(&lb, f->labels_path, DDPM_IDX_LABELS)) rc = fail();
        else if (lb.dims[0] < *n) {
            fprintf(stderr, "ddpm %s: '%s' holds %d labels for %d images\n", CMD, f->labels_path, lb.dims[0], *n);
            rc = 1;
        } else if (!(*labels = malloc((size_t)*n * sizeof(int)))) {
            rc = 1;
            fprintf(stderr, "ddpm %s: out of memory\n", CMD);
        } else {
            for (int i = 0; i < *n; i++) (*labels)[i] = lb.data[i];
        }
    }
    if (!rc) {
        *u8 = im.data; /* keep the pixels, drop the rest */
        im.data = NULL;
    }
    ddpm_idx_free(&im);
    ddpm_idx_free(&lb);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------------- */

/* The reference directory: --data, else the checkpoint's 'data' metadata,
 * else mnist. */
static int resolve_data(char *dir, size_t cap, const eval_flags *f) {
    const char *data = f->data;
    ddpm_checkpoint ck;
    bool opened = false;
    if (!data && f->ckpt) {
        if (ddpm_checkpoint_open(&ck, f->ckpt)) return fail();
        opened = true;
        data = ddpm_checkpoint_meta(&ck, DDPM_META_DATA);
        if (!data && !f->data_dir) {
            fprintf(stderr, "ddpm %s: '%s': metadata lacks 'data' (the training set); name the reference with --data\n",
                    CMD, f->ckpt);
            ddpm_checkpoint_close(&ck);
            return 1;
        }
    }
    ddpm_status s = ddpm_cli_data_dir(dir, cap, data ? data : "mnist", f->data_dir);
    if (opened) ddpm_checkpoint_close(&ck);
    return s ? fail() : 0;
}

static int run(eval_flags *f) {
    char dir[1024], net_path[1100], acc[32] = "", hash[17];
    ddpm_dataset test = {0};
    ddpm_classifier *net = NULL;
    ddpm_eval_ref ref = {0};
    ddpm_eval_metrics m = {0};
    uint8_t *u8 = NULL;
    int *labels = NULL, n = f->n, rc;
    report r = {0};
    int threads = ddpm_cli_threads(f->threads);
    if ((rc = resolve_data(dir, sizeof dir, f))) return rc;
    if (ddpm_dataset_load(&test, dir, false)) return fail();
    if (f->bpd) {
        if (f->n > test.n) {
            fprintf(stderr, "ddpm %s: -n %d exceeds the %d test images of '%s'\n", CMD, f->n, test.n, dir);
            rc = 2;
        } else {
            put(&r, "checkpoint", true, "%s", f->ckpt);
            put(&r, "reference", true, "%s", dir);
            put(&r, "split", true, "test");
            put(&r, "n", false, "%d", f->n);
            rc = run_bpd(&r, f, &test);
        }
        goto done;
    }
    if ((rc = get_net(&net, net_path, sizeof net_path, acc, dir, &test, f))) goto done;
    if (ddpm_file_hash16(hash, net_path) || ddpm_eval_ref_init(&ref, net, &test)) {
        rc = fail();
        goto done;
    }
    put(&r, f->file ? "images" : "checkpoint", true, "%s", f->file ? f->file : f->ckpt);
    put(&r, "net", true, "%s", net_path);
    put(&r, "net_sha256", true, "%s", hash);
    if (acc[0]) put(&r, "net_test_accuracy", false, "%s", acc);
    put(&r, "reference", true, "%s", dir);
    put(&r, "split", true, "test");
    put(&r, "n_reference", false, "%d", test.n);
    if (f->file) {
        rc = load_idx_images(&u8, &labels, &n, f, &test);
        if (!rc && ddpm_eval_images(&m, &ref, u8, n, labels)) rc = fail();
    } else {
        rc = sample_ckpt(&m, &r, f, &ref);
    }
    if (rc) goto done;
    fprintf(stderr, "ddpm %s: %d images against the %d test images of '%s'\n", CMD, m.n, test.n, dir);
    put(&r, "n", false, "%d", m.n);
    put_metrics(&r, &m);
done:
    if (!rc) print_report(&r, f->json);
    (void)threads;
    ddpm_eval_ref_free(&ref);
    ddpm_dataset_free(&test);
    ddpm_clf_free(net);
    free(u8);
    free(labels);
    return rc;
}

static const char *SYNOPSIS =
    "usage: ddpm eval FILE.idx [options]\n"
    "       ddpm eval -c CKPT [-n N] [sampler options] [options]\n"
    "       ddpm eval --bpd -c CKPT [-n N] [--terms FILE.csv]\n\n"
    "Measure sample quality against a dataset's test split, or the variational bound.";

static const char *EPILOG =
    "Prints key=value lines (--json: one JSON object) on stdout: the protocol (network\n"
    "file and its SHA-256 prefix, reference directory and split, N) and the metrics:\n"
    "  fid            Frechet distance of the evaluation network's 128 penultimate\n"
    "                 features, N images vs the whole test split\n"
    "  precision      k-NN precision and recall (Kynkaanniemi et al. 2019, k = 3)\n"
    "  recall         vs the first min(N, test size) test images\n"
    "  confidence     mean top-class probability of the evaluation network\n"
    "  class_entropy  entropy in bits of the predicted-class histogram (log2 10 = 3.32\n"
    "                 for balanced digits)\n"
    "  label_accuracy fraction classified as the label they were sampled with\n"
    "                 (class-conditional models, labels cycling 0..K-1; --labels FILE\n"
    "                 for an IDX input)\n"
    "The evaluation network (conv-ReLU-maxpool x2, linear 128, linear K) is trained on\n"
    "the reference's training split on first use (one thread, a few minutes) and cached\n"
    "as " EVAL_CACHE_DIR "/<dataset>-<hash>.safetensors ($DDPM_EVAL_CACHE: another directory);\n"
    "--net FILE uses another network.\n"
    "The reference defaults to the checkpoint's training data (its 'data' metadata), else mnist.\n"
    "-c samples with the library's sampler, image i from its own stream (--seed, i), so\n"
    "the images are those of 'ddpm sample' with the same flags.\n\n"
    "--bpd: the variational bound L_T + sum L_{t-1} + L_0 (Ho et al. eq. 5) in bits/dim on\n"
    "the first N test images (default 100), T model calls per image; the variance is the\n"
    "checkpoint's ('var' metadata, else small) unless --var. --terms writes the mean\n"
    "per-timestep terms as CSV.\n\n"
    "examples:\n"
    "  ddpm sample -n 1000 --sampler ddim --idx s.idx -o s.png && ddpm eval s.idx\n"
    "  ddpm eval -c runs/mnist/ckpt.safetensors -n 1000 --sampler ddim --sample-steps 50\n"
    "  ddpm eval -c runs/cond/ckpt.safetensors -n 1000 --sampler dpm++2m --guidance 2\n"
    "  ddpm eval --bpd -c runs/mnist/ckpt.safetensors -n 100 --terms terms.csv";

static int cmd_eval(int argc, char **argv) {
    eval_flags f = {.n = 1000, .sampler = "ddpm", .var = "small", .batch = 64};
    char *args[512];
    int na = 0;
    if (argc > 512) argc = 512;
    args[na++] = argv[0];
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') f.file = argv[first++]; /* ddpm eval FILE.idx ... */
    for (int i = first; i < argc; i++) args[na++] = argv[i];
    ddpm_opt opts[] = {
        {"--ckpt", "-c", OPT_STRING, &f.ckpt, 0, 0, "FILE", "checkpoint to sample from (or to bound with --bpd)"},
        {"--num", "-n", OPT_INT, &f.n, 1, 1000000, "N", "images (default: 1000 samples; all of FILE; 100 for --bpd)"},
        {"--data", NULL, OPT_STRING, &f.data, 0, 0, "NAME", "reference: mnist, fashion, or a directory of IDX files"},
        {"--data-dir", NULL, OPT_STRING, &f.data_dir, 0, 0, "DIR", "where to look for --data mnist first"},
        {"--net", NULL, OPT_STRING, &f.net, 0, 0, "FILE", "evaluation network (default: cached, trained on first use)"},
        {"--labels", NULL, OPT_STRING, &f.labels_path, 0, 0, "FILE", "IDX labels of FILE.idx (for label_accuracy)"},
        {"--json", NULL, OPT_FLAG, &f.json, 0, 0, NULL, "print one JSON object instead of key=value lines"},
        {"--bpd", NULL, OPT_FLAG, &f.bpd, 0, 0, NULL, "the variational bound in bits/dim instead"},
        {"--terms", NULL, OPT_STRING, &f.terms, 0, 0, "FILE", "--bpd: write the per-timestep terms as CSV"},
        {"--sampler", NULL, OPT_STRING, &f.sampler, 0, 0, "NAME", "ddpm, ddim or dpm++2m (default ddpm)"},
        {"--sample-steps", NULL, OPT_INT, &f.steps, 1, DDPM_SCHEDULE_MAX_T, "K", "sampling steps (default: min(100, T) for ddpm, min(50, T) for ddim, min(20, T-1) for dpm++2m)"},
        {"--spacing", NULL, OPT_STRING, &f.spacing, 0, 0, "KIND", "ddim/dpm++2m timesteps: uniform, quadratic or logsnr"},
        {"--guidance", NULL, OPT_FLOAT, &f.guidance, 0.0, 100.0, "W", "classifier-free guidance weight (class-conditional models)"},
        {"--eta", NULL, OPT_FLOAT, &f.eta, 0.0, 1.0, "E", "ddim noise in [0, 1] (default 0)"},
        {"--var", NULL, OPT_STRING, &f.var, 0, 0, "KIND", "variance small or large (default: the checkpoint's, else small)"},
        {"--seed", NULL, OPT_U64, &f.seed, 0, 0, "S", "random seed (default 0)"},
        {"--no-ema", NULL, OPT_FLAG, &f.no_ema, 0, 0, NULL, "use the raw weights, not the EMA weights"},
        {"--batch", NULL, OPT_INT, &f.batch, 1, DDPM_BPD_MAX_BATCH, "B", "images per model call (default 64)"},
        {"--threads", NULL, OPT_INT, &f.threads, 0, 4096, "N", "threads (default 0: all cores)"},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = ddpm_opts_parse(CMD, na, args, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    f.n_seen = ddpm_opts_seen(opts, nopts, "--num");
    f.var_seen = ddpm_opts_seen(opts, nopts, "--var");
    f.guided = ddpm_opts_seen(opts, nopts, "--guidance");
    if (f.bpd && !f.n_seen) f.n = 100;
    const char *why = NULL;
    if (!f.file && !f.ckpt) why = "name an IDX file of images or a checkpoint (-c CKPT)";
    else if (f.file && f.ckpt) why = "give an IDX file or -c CKPT, not both";
    else if (f.bpd && !f.ckpt) why = "--bpd needs a checkpoint (-c CKPT)";
    else if (f.terms && !f.bpd) why = "--terms applies to --bpd only";
    else if (!f.bpd && f.n_seen && f.n < DDPM_EVAL_K + 1) why = "-n: the metrics need at least 4 images (k = 3)";
    else if (f.labels_path && !f.file) why = "--labels applies to an IDX file input";
    else if (ddpm_sampler_parse(f.sampler) < 0) why = "unknown --sampler (expected ddpm, ddim or dpm++2m)";
    else if (f.spacing && ddpm_spacing_parse(f.spacing) < 0) why = "unknown --spacing (expected uniform, quadratic or logsnr)";
    else if (ddpm_var_parse(f.var) < 0) why = "unknown --var (expected small or large)";
    else if (f.file && (ddpm_opts_seen(opts, nopts, "--sampler") || ddpm_opts_seen(opts, nopts, "--sample-steps") ||
                        ddpm_opts_seen(opts, nopts, "--eta") || f.guided || f.spacing))
        why = "sampler options apply to -c CKPT only";
    if (why) {
        fprintf(stderr, "ddpm %s: %s\n", CMD, why);
        return 2;
    }
    return run(&f);
}

const ddpm_cli_command ddpm_cmd_eval = {"eval", cmd_eval, "sample quality (FID, precision/recall) and bits/dim"};
