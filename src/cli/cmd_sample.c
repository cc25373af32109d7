/* cmd_sample.c: `ddpm sample`: generate images from a checkpoint with the
 * DDPM (ancestral), DDIM or DPM-Solver++(2M) sampler (docs/design.md §5, §7),
 * optionally with classifier-free guidance, and write them as a PNG grid,
 * optionally also as an IDX file and as a trajectory grid.
 *
 * The sampling itself is the library's (sampler.h): one random stream per
 * image derived from (--seed, image index), so an image never depends on
 * --batch, -n or --threads. This file parses flags, checks them against the
 * checkpoint, reports progress, captures the trajectory and writes files.
 *
 * Every output path is probed before sampling starts, and files are written
 * (atomically, by the image and IDX writers) only after sampling succeeded.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "folder.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/image.h"
#include "ddpm/objective.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"
#include "core/util.h"

#define CMD "sample"
#define TRAJ_MAX_COLS 10
#define TRAJ_MAX_ROWS 100  /* --trajectory shows at most the first 100 images */
#define PNG_MAX_BYTES (1 << 30) /* image.c's limit, checked before sampling */
#define GUIDANCE_MAX 100.0

/* ---- small helpers ------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Checks before sampling that a grid of n (c, h, w) tiles, enlarged zoom
 * times, fits in a PNG. */
static int check_grid(const char *path, int n, int c, int h, int w, int nrow, int zoom) {
    int gw, gh;
    ddpm_image_grid_size(n, h * zoom, w * zoom, nrow, &gw, &gh);
    if ((int64_t)gw * gh * c > PNG_MAX_BYTES) {
        fprintf(stderr, "ddpm %s: '%s' would be a %d x %d grid, too large for a PNG: "
                        "use fewer images (-n) or a smaller --scale\n", CMD, path, gw, gh);
        return 1;
    }
    return 0;
}

/* ---- progress ------------------------------------------------------------------------ */

typedef struct {
    bool tty;
    int n, K, nchunks;
    long done, total; /* model calls over all chunks */
    int next_pct;     /* non-tty: next multiple of 10% to print */
    double t0, last_draw;
} progress;


/* After step k (1..K) of chunk `chunk` (0-based). "it/s" counts model calls
 * (steps of one batch) per second. */
static void progress_step(progress *p, int chunk, int k) {
    p->done++;
    double t = ddpm_cli_now(), el = t - p->t0, rate = el > 0 ? p->done / el : 0.0;
    char eta[32], batch[48] = "";
    const char *cr = p->tty ? "\r" : "", *clr = p->tty ? "\033[K" : "";
    if (p->done == p->total) {
        ddpm_cli_fmt_duration(eta, sizeof eta, el);
        if (p->nchunks > 1) snprintf(batch, sizeof batch, " x %d batches", p->nchunks);
        fprintf(stderr, "%ssampling %d images: %d steps%s in %s (%.1f it/s)%s\n", cr, p->n, p->K,
                batch, eta, rate, clr);
        return;
    }
    if (p->tty) {
        if (t - p->last_draw < 0.1) return;
        p->last_draw = t;
    } else {
        int pct = (int)(100 * p->done / p->total);
        if (pct < p->next_pct) return;
        p->next_pct = pct / 10 * 10 + 10;
    }
    ddpm_cli_fmt_duration(eta, sizeof eta, rate > 0 ? (p->total - p->done) / rate : 0.0);
    if (p->nchunks > 1) snprintf(batch, sizeof batch, " (batch %d/%d)", chunk + 1, p->nchunks);
    fprintf(stderr, "%ssampling %d images: step %d/%d%s  %.1f it/s  eta %s%s%s", cr, p->n, k, p->K,
            batch, rate, eta, clr, p->tty ? "" : "\n");
    fflush(stderr);
}

static void to_u8(uint8_t *out, const float *x, size_t n) {
    for (size_t j = 0; j < n; j++) {
        float v = (x[j] + 1.0f) * 127.5f;
        v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
        out[j] = (uint8_t)floorf(v + 0.5f);
    }
}

/* Reads T and the schedule from the checkpoint metadata (linear/1000 when
 * absent, with a note). Returns 0 or 1 (after printing the error). */
static int schedule_from_meta(const ddpm_checkpoint *ck, int *kind, int *T) {
    const char *sv = ddpm_checkpoint_meta(ck, DDPM_META_SCHEDULE);
    const char *tv = ddpm_checkpoint_meta(ck, DDPM_META_TIMESTEPS);
    *kind = DDPM_SCHED_LINEAR;
    *T = 1000;
    if (sv) {
        *kind = ddpm_schedule_parse(sv);
        if (*kind < 0) {
            fprintf(stderr, "ddpm %s: '%s': unknown noise schedule '%s' in the metadata\n", CMD,
                    ck->path, ddpm_show(sv).s);
            return 1;
        }
    }
    if (tv) {
        char *end;
        errno = 0;
        long v = strtol(tv, &end, 10);
        if (errno || end == tv || *end || v < 2 || v > DDPM_SCHEDULE_MAX_T) {
            fprintf(stderr, "ddpm %s: '%s': metadata '%s' is not a valid number of timesteps: '%s'\n",
                    CMD, ck->path, DDPM_META_TIMESTEPS, ddpm_show(tv).s);
            return 1;
        }
        *T = (int)v;
    }
    if (!sv || !tv)
        fprintf(stderr, "ddpm %s: note: '%s' does not record its %s; assuming %s (the training default)\n",
                CMD, ck->path, !sv && !tv ? "noise schedule" : !sv ? "schedule kind" : "timesteps",
                !sv && !tv ? "linear, T=1000" : !sv ? "linear" : "T=1000");
    return 0;
}

/* ---- flags --------------------------------------------------------------------------- */

typedef struct {
    const char *ckpt, *out, *sampler_name, *var_name, *spacing_name, *idx_path, *traj_path, *lab_path, *label_arg;
    int n, steps, nrow, threads, batch, label, scale;
    float eta, guidance;
    uint64_t seed;
    bool no_ema, guided, nrow_seen;
    int kind, var, spacing; /* parsed names */
    int objective;          /* the checkpoint's (ddpm_objective) */
} sample_flags;

static const char *SYNOPSIS =
    "usage: ddpm sample [-c CKPT] [-n N] [-o FILE] [options]\n\n"
    "Generate images with a trained model and write them as a PNG grid.";

static const char *EPILOG =
    "The checkpoint defaults to " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ", where 'ddpm train' writes it.\n"
    "Its metadata gives the noise schedule, T and what the network predicts (eps, v or x0:\n"
    "every sampler and guidance see it as eps); its EMA weights are used when present.\n\n"
    "Samplers (one model call per step):\n"
    "  ddpm     ancestral sampling (Ho et al.), default 100 steps: K < T respaces the\n"
    "           schedule (Nichol & Dhariwal; --sample-steps 1000 is the paper's chain),\n"
    "           --var picks the step variance: small = posterior variance (default),\n"
    "           large = beta_t.\n"
    "  ddim     Song et al., default 50 steps. --eta in [0, 1]: 0 = deterministic\n"
    "           (default), 1 = as noisy as DDPM.\n"
    "  dpm++2m  DPM-Solver++(2M) (Lu et al. 2022), deterministic, default 20 steps.\n"
    "--spacing (ddim, dpm++2m) picks the K timesteps: uniform in t (ddim's default),\n"
    "quadratic in t (dense near t = 0), or uniform in log-SNR (dpm++2m's default).\n\n"
    "Class-conditional models (trained with --classes K): labels cycle 0..K-1 with one\n"
    "class per grid column, or --label picks one. --guidance W mixes the conditional\n"
    "and unconditional predictions, eps = eps_u + W (eps_c - eps_u): W = 1 is plain\n"
    "conditional sampling (the default without --guidance), W = 0 unconditional,\n"
    "W > 1 stronger class adherence; it costs one double-size model call per step.\n\n"
    "Each image has its own random stream derived from (--seed, its index): the same\n"
    "seed gives the same images whatever --batch or --threads, and -n 4 gives the\n"
    "first four images of -n 16.\n"
    "Outputs are written only after sampling finished; their directories are checked\n"
    "before it starts.\n\n"
    "examples:\n"
    "  ddpm sample -n 64 -o grid.png --scale 2\n"
    "  ddpm sample --sampler dpm++2m --sample-steps 20 --trajectory steps.png\n"
    "  ddpm sample -c runs/cond/ckpt.safetensors --guidance 3 -n 40";

/* Parses argv into f. Returns -1 to go on, else the exit code. */
static int parse_flags(sample_flags *f, int argc, char **argv) {
    *f = (sample_flags){.out = "samples.png", .sampler_name = "ddpm", .var_name = "small",
                        .n = 16, .batch = 64, .label = -1, .scale = 1, .guidance = 1.0f};
    ddpm_opt opts[] = {
        {"--ckpt", "-c", OPT_STRING, &f->ckpt, 0, 0, "FILE", "checkpoint (default " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ")"},
        {"--num", "-n", OPT_INT, &f->n, 1, 100000, "N", "number of images (default 16)"},
        {"--out", "-o", OPT_STRING, &f->out, 0, 0, "FILE", "PNG grid to write (default samples.png)"},
        {"--sampler", NULL, OPT_STRING, &f->sampler_name, 0, 0, "NAME", "ddpm, ddim or dpm++2m (default ddpm)"},
        {"--sample-steps", NULL, OPT_INT, &f->steps, 1, DDPM_SCHEDULE_MAX_T, "K", "sampling steps (default: min(100, T) for ddpm, min(50, T) for ddim, min(20, T-1) for dpm++2m)"},
        {"--spacing", NULL, OPT_STRING, &f->spacing_name, 0, 0, "KIND", "ddim/dpm++2m timesteps: uniform, quadratic or logsnr"},
        {"--eta", NULL, OPT_FLOAT, &f->eta, 0.0, 1.0, "E", "ddim noise in [0, 1] (default 0: deterministic)"},
        {"--var", NULL, OPT_STRING, &f->var_name, 0, 0, "KIND", "ddpm step variance: small or large (default small)"},
        {"--guidance", NULL, OPT_FLOAT, &f->guidance, 0.0, GUIDANCE_MAX, "W", "classifier-free guidance weight >= 0 (class-conditional models)"},
        {"--label", NULL, OPT_STRING, &f->label_arg, 0, 0, "K|NAME", "class index, or its folder name for a model trained on an image folder (default: cycle 0..K-1)"},
        {"--seed", NULL, OPT_U64, &f->seed, 0, 0, "S", "random seed (default 0)"},
        {"--nrow", NULL, OPT_INT, &f->nrow, 1, 100000, "N", "grid columns (default ceil(sqrt(n)); K with cycled labels)"},
        {"--scale", NULL, OPT_INT, &f->scale, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the grid's tiles S times (nearest neighbour; default 1)"},
        {"--no-ema", NULL, OPT_FLAG, &f->no_ema, 0, 0, NULL, "use the raw weights, not the EMA weights"},
        {"--batch", NULL, OPT_INT, &f->batch, 1, 4096, "B", "images per model call (default 64; bounds memory)"},
        {"--threads", NULL, OPT_INT, &f->threads, 0, 4096, "N", "threads (default 0: all cores)"},
        {"--idx", NULL, OPT_STRING, &f->idx_path, 0, 0, "FILE", "also write the images as an IDX file (u8)"},
        {"--trajectory", NULL, OPT_STRING, &f->traj_path, 0, 0, "FILE", "PNG of x_T ... x_0 in 10 columns, a row per image (first 100)"},
        {"--label-idx", NULL, OPT_STRING, &f->lab_path, 0, 0, "FILE", "also write the images' class labels as an IDX file (u8)"},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    f->guided = ddpm_opts_seen(opts, nopts, "--guidance");
    f->nrow_seen = ddpm_opts_seen(opts, nopts, "--nrow");
    bool eta_seen = ddpm_opts_seen(opts, nopts, "--eta"), var_seen = ddpm_opts_seen(opts, nopts, "--var");
    f->kind = ddpm_sampler_parse(f->sampler_name);
    f->var = ddpm_var_parse(f->var_name);
    f->spacing = f->spacing_name ? ddpm_spacing_parse(f->spacing_name) : DDPM_SPACING_DEFAULT;
    const char *why = NULL;
    if (f->kind < 0) why = "unknown sampler '%s' (expected ddpm, ddim or dpm++2m)";
    else if (f->var < 0) why = "unknown variance '%s' (expected small or large)";
    else if (f->spacing < 0) why = "unknown spacing '%s' (expected uniform, quadratic or logsnr)";
    else if (f->kind != DDPM_SAMPLER_DDIM && eta_seen) why = "--eta applies to --sampler ddim only";
    else if (f->kind != DDPM_SAMPLER_DDPM && var_seen) why = "--var applies to --sampler ddpm only";
    else if (f->kind == DDPM_SAMPLER_DDPM && f->spacing_name) why = "--spacing applies to --sampler ddim and dpm++2m";
    if (why) {
        const char *arg = f->kind < 0 ? f->sampler_name : f->var < 0 ? f->var_name : f->spacing_name;
        fprintf(stderr, "ddpm %s: ", CMD);
        fprintf(stderr, why, arg);
        fputc('\n', stderr);
        return 2;
    }
    return -1;
}

/* Output names: distinct, and a note when one will not end in .png. */
static int check_out_names(const sample_flags *f) {
    const char *outs[4] = {f->out, f->idx_path, f->traj_path, f->lab_path};
    const char *out_flag[4] = {"-o", "--idx", "--trajectory", "--label-idx"};
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++)
            if (outs[a] && outs[b] && !strcmp(outs[a], outs[b])) {
                fprintf(stderr, "ddpm %s: %s and %s name the same file '%s'\n", CMD, out_flag[a],
                        out_flag[b], outs[a]);
                return 2;
            }
    for (int a = 0; a < 3; a++)
        if (outs[a] && (a == 0 || a == 2) && !ends_with(outs[a], ".png") && !ends_with(outs[a], ".PNG"))
            fprintf(stderr, "ddpm %s: note: '%s' will be a PNG file\n", CMD, outs[a]);
    return 0;
}

/* ---- the checkpoint ------------------------------------------------------------------ */

/* Opens the checkpoint (the default one when -c is not given) and reads its
 * schedule. Returns -1 to go on (ck open), else the exit code (ck closed). */
static int open_checkpoint(sample_flags *f, ddpm_checkpoint *ck, int *sched_kind, int *T) {
    static char default_ckpt[] = DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE;
    if (!f->ckpt) {
        struct stat st;
        f->ckpt = default_ckpt;
        if (stat(f->ckpt, &st) != 0 && errno == ENOENT) {
            fprintf(stderr, "ddpm %s: no checkpoint at '%s': run 'ddpm train' first, or name one with -c FILE\n",
                    CMD, f->ckpt);
            return 1;
        }
    }
    if (ddpm_checkpoint_open(ck, f->ckpt)) {
        ddpm_cli_error(CMD);
        return 1;
    }
    if (schedule_from_meta(ck, sched_kind, T)) {
        ddpm_checkpoint_close(ck);
        return 1;
    }
    ddpm_objective obj;
    if (ddpm_train_read_objective(ck, &obj, NULL)) {
        ddpm_cli_error(CMD);
        ddpm_checkpoint_close(ck);
        return 1;
    }
    f->objective = (int)obj;
    return -1;
}

/* Flags checked against the model and its T. Returns 0 or the exit code. */
static int check_against_model(const sample_flags *f, const ddpm_unet_config *cfg, int T) {
    int C = cfg->num_classes, kmax = ddpm_sampler_max_steps((ddpm_sampler_kind)f->kind, T);
    if (f->steps > kmax && f->kind == DDPM_SAMPLER_DPMPP_2M)
        fprintf(stderr, "ddpm %s: --sample-steps %d: dpm++2m takes at most T-1 = %d steps for the "
                        "checkpoint's T = %d (it never calls the model at t = 0)\n", CMD, f->steps, kmax, T);
    else if (f->steps > kmax)
        fprintf(stderr, "ddpm %s: --sample-steps %d exceeds the checkpoint's T = %d timesteps\n", CMD,
                f->steps, T);
    else if ((f->label >= 0 || f->guided) && C == 0)
        fprintf(stderr, "ddpm %s: %s: the model in '%s' is unconditional (trained without --classes)\n",
                CMD, f->label >= 0 ? "--label" : "--guidance", f->ckpt);
    else if (f->lab_path && (C == 0 || C > 256))
        fprintf(stderr, "ddpm %s: --label-idx: the model in '%s' %s\n", CMD, f->ckpt,
                C ? "has more than 256 classes (u8 labels)" : "is unconditional (trained without --classes)");
    else if (f->label >= C && C > 0)
        fprintf(stderr, "ddpm %s: --label %d out of range: the model has %d classes (0..%d)\n", CMD,
                f->label, C, C - 1);
    else if (cfg->in_ch != 1 && cfg->in_ch != 3) {
        fprintf(stderr, "ddpm %s: the model makes %d-channel images; PNG grids need 1 or 3\n", CMD,
                cfg->in_ch);
        return 1;
    } else
        return 0;
    return 2;
}

/* ---- sampling ------------------------------------------------------------------------ */

typedef struct {
    size_t D;
    int B;                       /* images per model call */
    int tcols, trows;
    int cap_step[TRAJ_MAX_COLS]; /* column j shows the state after step cap_step[j] (0 = x_T) */
    float *traj;                 /* [trows, tcols, D] or NULL */
    progress *prog;
} step_view;

static void on_step(void *ud, int first, int N, int step, int K, const float *x) {
    (void)K;
    step_view *v = ud;
    for (int j = 0; v->traj && j < v->tcols; j++) {
        if (v->cap_step[j] != step) continue;
        for (int n = 0; n < N && first + n < v->trows; n++)
            memcpy(v->traj + ((size_t)(first + n) * v->tcols + j) * v->D, x + (size_t)n * v->D,
                   v->D * sizeof(float));
    }
    if (step > 0) progress_step(v->prog, first / v->B, step);
}

typedef struct {
    ddpm_unet *m;
    ddpm_schedule s;
    ddpm_sampler sm;
    ddpm_objective_model om; /* the UNet's output as eps_hat */
    ddpm_guidance g;         /* over om: guidance mixes eps_hat (objective.h) */
    int *labels;  /* [n] or NULL */
    float *x;     /* [n, D] */
    float *traj;  /* [trows, tcols, D] or NULL */
    int nrow;     /* grid columns (0: default) */
} sample_run;

static void run_free(sample_run *r) {
    ddpm_unet_free(r->m);
    ddpm_schedule_free(&r->s);
    ddpm_sampler_destroy(&r->sm);
    ddpm_guidance_free(&r->g);
    ddpm_free(r->labels);
    ddpm_free(r->x);
    ddpm_free(r->traj);
}

/* Model, schedule, sampler, guidance and buffers. Closes ck. */
static ddpm_status run_setup(sample_run *r, const sample_flags *f, ddpm_checkpoint *ck,
                             int sched_kind, int T, const step_view *v) {
    ddpm_unet_config cfg = ck->cfg;
    size_t D = v->D;
    int C = cfg.num_classes, B = v->B;
    bool use_ema = ck->has_ema && !f->no_ema;
    ddpm_status st = ddpm_unet_create(&r->m, &cfg, f->guided ? 2 * B : B, false);
    if (!st) st = ddpm_checkpoint_read(ck, use_ema ? "ema." : "", ddpm_unet_params(r->m));
    ddpm_checkpoint_close(ck);
    if (!st) st = ddpm_schedule_init(&r->s, (ddpm_schedule_kind)sched_kind, T);
    ddpm_sampler_opts o = {(ddpm_sampler_kind)f->kind, f->steps, f->eta, (ddpm_var_kind)f->var,
                           (ddpm_spacing)f->spacing};
    if (!st) st = ddpm_sampler_create(&r->sm, &r->s, &o, D, B);
    if (!st) st = ddpm_objective_model_init(&r->om, ddpm_unet_eps, r->m, (ddpm_objective)f->objective, &r->s, D);
    if (!st && f->guided) st = ddpm_guidance_init(&r->g, ddpm_objective_eps, &r->om, f->guidance, C, D, B);
    if (st) return st;
    r->x = ddpm_malloc((size_t)f->n * D * sizeof(float)); /* [n, D] the samples */
    if (C > 0) r->labels = ddpm_malloc((size_t)f->n * sizeof(int)); /* [n] */
    if (f->traj_path) r->traj = ddpm_calloc((size_t)v->trows * v->tcols * D, sizeof(float));
    if (!r->x || (C > 0 && !r->labels) || (f->traj_path && !r->traj))
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", f->n);
    r->nrow = f->nrow;
    if (C > 0) {
        int cols = ddpm_sampler_labels(r->labels, f->n, C, f->label);
        if (!f->nrow_seen) r->nrow = cols;
    }
    return DDPM_OK;
}

static void print_header(const sample_flags *f, bool has_ema, int C, const sample_run *r,
                         int sched_kind, int T, int nthreads) {
    const ddpm_sampler_opts *o = &r->sm.o;
    bool use_ema = has_ema && !f->no_ema;
    char detail[96];
    if (o->kind == DDPM_SAMPLER_DDPM) snprintf(detail, sizeof detail, "var %s", f->var_name);
    else if (o->kind == DDPM_SAMPLER_DDIM) snprintf(detail, sizeof detail, "eta %g", (double)f->eta);
    else snprintf(detail, sizeof detail, "deterministic");
    if (o->kind != DDPM_SAMPLER_DDPM)
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), ", %s spacing",
                 ddpm_spacing_name(o->spacing));
    char objtxt[32] = "";
    if (f->objective != DDPM_OBJ_EPS) snprintf(objtxt, sizeof objtxt, ", %s-prediction", ddpm_objective_name((ddpm_objective)f->objective));
    fprintf(stderr, "ddpm %s: '%s' (%s weights%s%s), %s schedule T=%d; %s sampler, %d steps, %s; "
                    "seed %llu, %d thread%s\n",
            CMD, f->ckpt, use_ema ? "EMA" : "raw", has_ema || f->no_ema ? "" : "; the checkpoint has no EMA weights", objtxt,
            ddpm_schedule_name((ddpm_schedule_kind)sched_kind), T, f->sampler_name, r->sm.K, detail,
            (unsigned long long)f->seed, nthreads, nthreads == 1 ? "" : "s");
    if (C == 0) return;
    char gtxt[48] = "";
    if (f->guided) snprintf(gtxt, sizeof gtxt, ", guidance %g", (double)f->guidance);
    if (f->label >= 0)
        fprintf(stderr, "ddpm %s: class-conditional model with %d classes, label %d%s\n", CMD, C, f->label, gtxt);
    else
        fprintf(stderr, "ddpm %s: class-conditional model with %d classes, labels cycling 0..%d%s\n",
                CMD, C, C - 1, gtxt);
}

/* ---- outputs ------------------------------------------------------------------------- */

static ddpm_status write_outputs(const sample_flags *f, const sample_run *r, const step_view *v,
                                 int c, int h, int w) {
    int n = f->n, zoom = f->scale, K = r->sm.K;
    size_t D = v->D;
    if (ddpm_image_write_grid_scaled(f->out, r->x, n, c, h, w, r->nrow, -1.0f, 1.0f, zoom)) return 1;
    int gw, gh;
    ddpm_image_grid_size(n, h * zoom, w * zoom, r->nrow, &gw, &gh);
    fprintf(stderr, "ddpm %s: wrote %d image%s to '%s' (%d x %d px grid)\n", CMD, n, n == 1 ? "" : "s",
            f->out, gw, gh);
    if (f->idx_path) {
        uint8_t *u8 = malloc((size_t)n * D);
        if (!u8) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the IDX file");
        to_u8(u8, r->x, (size_t)n * D);
        ddpm_status st = ddpm_idx_write_images(f->idx_path, u8, n, c, h, w);
        free(u8);
        if (st) return st;
        fprintf(stderr, "ddpm %s: wrote %d x %d x %d x %d u8 images to '%s'\n", CMD, n, c, h, w, f->idx_path);
    }
    if (f->lab_path) {
        uint8_t *lab = malloc((size_t)n);
        if (!lab) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the label file");
        for (int i = 0; i < n; i++) lab[i] = (uint8_t)r->labels[i];
        ddpm_status st = ddpm_idx_write(f->lab_path, lab, 1, &n);
        free(lab);
        if (st) return st;
        fprintf(stderr, "ddpm %s: wrote %d u8 labels to '%s'\n", CMD, n, f->lab_path);
    }
    if (f->traj_path) {
        if (ddpm_image_write_grid_scaled(f->traj_path, r->traj, v->trows * v->tcols, c, h, w, v->tcols,
                                         -1.0f, 1.0f, zoom))
            return 1;
        fprintf(stderr, "ddpm %s: wrote the trajectory of %d image%s to '%s' (steps", CMD, v->trows,
                v->trows == 1 ? "" : "s", f->traj_path);
        for (int j = 0; j < v->tcols; j++) fprintf(stderr, "%s%d", j ? "," : " ", v->cap_step[j]);
        fprintf(stderr, " of %d)\n", K);
    }
    return DDPM_OK;
}

/* ---- the command -------------------------------------------------------------------- */

/* The trajectory columns and the output checks. Returns 0 or 1. */
static int plan_outputs(const sample_flags *f, const ddpm_unet_config *cfg, int K, int C,
                        step_view *v) {
    int H = cfg->res, W = cfg->res, Cin = cfg->in_ch;
    int nrow = f->nrow_seen || C == 0 || f->label >= 0 || C > DDPM_LABEL_COLS_MAX ? f->nrow : C;
    v->D = (size_t)Cin * H * W;
    v->B = f->batch < f->n ? f->batch : f->n;
    v->tcols = K + 1 < TRAJ_MAX_COLS ? K + 1 : TRAJ_MAX_COLS;
    v->trows = f->n < TRAJ_MAX_ROWS ? f->n : TRAJ_MAX_ROWS;
    for (int j = 0; j < v->tcols; j++)
        v->cap_step[j] = v->tcols > 1 ? (j * K + (v->tcols - 1) / 2) / (v->tcols - 1) : K;
    const char *outs[4] = {f->out, f->idx_path, f->traj_path, f->lab_path};
    for (int a = 0; a < 4; a++)
        if (outs[a] && ddpm_cli_check_writable(CMD, outs[a])) return 1;
    if (check_grid(f->out, f->n, Cin, H, W, nrow, f->scale)) return 1;
    if (f->traj_path && check_grid(f->traj_path, v->trows * v->tcols, Cin, H, W, v->tcols, f->scale))
        return 1;
    return 0;
}

static int cmd_sample(int argc, char **argv) {
    sample_flags f;
    int rc = parse_flags(&f, argc, argv);
    if (rc >= 0) return rc;
    if ((rc = check_out_names(&f))) return rc;
    ddpm_checkpoint ck;
    int sched_kind, T;
    if ((rc = open_checkpoint(&f, &ck, &sched_kind, &T)) >= 0) return rc;
    if ((rc = ddpm_cli_label(CMD, f.label_arg, &ck, &f.label))) {
        ddpm_checkpoint_close(&ck);
        return rc;
    }
    ddpm_unet_config cfg = ck.cfg;
    int K = f.steps ? f.steps : ddpm_sampler_default_steps((ddpm_sampler_kind)f.kind, T);
    step_view v = {0};
    if ((rc = check_against_model(&f, &cfg, T)) || (rc = plan_outputs(&f, &cfg, K, cfg.num_classes, &v))) {
        ddpm_checkpoint_close(&ck);
        return rc;
    }
    int nthreads = ddpm_cli_threads(f.threads);
    sample_run r = {0};
    bool has_ema = ck.has_ema;
    if (run_setup(&r, &f, &ck, sched_kind, T, &v)) goto error;
    print_header(&f, has_ema, cfg.num_classes, &r, sched_kind, T, nthreads);
    progress prog = {.tty = ddpm_cli_tty(), .n = f.n, .K = K, .nchunks = (f.n + v.B - 1) / v.B,
                     .next_pct = 10, .t0 = ddpm_cli_now()};
    prog.total = (long)prog.nchunks * K;
    v.traj = r.traj;
    v.prog = &prog;
    ddpm_model_fn model = f.guided ? ddpm_guidance_eps : ddpm_objective_eps;
    void *ctx = f.guided ? (void *)&r.g : (void *)&r.om;
    if (ddpm_sampler_run(&r.sm, r.x, 0, f.n, f.seed, r.labels, model, ctx, on_step, &v)) {
        if (prog.tty) fputc('\n', stderr);
        goto error;
    }
    if (write_outputs(&f, &r, &v, cfg.in_ch, cfg.res, cfg.res)) goto error;
    run_free(&r);
    return 0;
error:
    ddpm_cli_error(CMD);
    ddpm_checkpoint_close(&ck); /* safe twice */
    run_free(&r);
    return 1;
}

const ddpm_cli_command ddpm_cmd_sample = {"sample", cmd_sample, "generate images from a checkpoint (DDPM, DDIM or DPM-Solver++)"};
