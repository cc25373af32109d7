/* cmd_sample.c: `ddpm sample`: generate images from a checkpoint with the
 * DDPM (ancestral) or DDIM sampler (DESIGN.md §5) and write them as a PNG
 * grid, optionally also as an IDX file and as a trajectory grid.
 *
 * Reproducibility: every image has its own generator, seeded from
 * (--seed, image index) by sample_seed() below. Image i's x_T is the first
 * D normals of its generator and the noise z of each later step the next D,
 * so an image depends only on (checkpoint, sampler flags, seed, i), never on
 * --batch (how many images share a model call) nor on -n. The loop is the
 * one of ddpm_sample_loop (same steps, same respacing, same order), run with
 * per-image noise; for a single image it is exactly ddpm_sample_loop with
 * that image's generator.
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
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/image.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

#define CMD "sample"
#define TRAJ_MAX_COLS 10
#define TRAJ_MAX_ROWS 100  /* --trajectory shows at most the first 100 images */
#define LABEL_COLS_MAX 32  /* cycled labels: one grid column per class up to this K */
#define PNG_MAX_BYTES (1 << 30) /* image.c's limit, checked before sampling */

/* ---- small helpers ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The seed of image i's generator. */
static uint64_t sample_seed(uint64_t seed, int i) {
    return mix64(seed) ^ (0x9e3779b97f4a7c15ULL * ((uint64_t)i + 1));
}


static int fail(void) {
    ddpm_cli_error(CMD);
    return 1;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Checks before sampling that a grid of n (c, h, w) tiles fits in a PNG. */
static int check_grid(const char *path, int n, int c, int h, int w, int nrow) {
    int gw, gh;
    ddpm_image_grid_size(n, h, w, nrow, &gw, &gh);
    if ((int64_t)gw * gh * c > PNG_MAX_BYTES) {
        fprintf(stderr, "ddpm %s: '%s' would be a %d x %d grid, too large for a PNG: "
                        "use fewer images (-n)\n", CMD, path, gw, gh);
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

/* ---- the sampler ----------------------------------------------------------------- */

typedef struct {
    ddpm_unet *m;
    const ddpm_schedule *s;  /* base schedule (T entries) */
    const ddpm_schedule *ps; /* DDPM: the schedule the steps run on (s or respaced) */
    ddpm_sampler_opts o;
    int K;                   /* sampling steps */
    const int *tau;          /* [K] entries of s visited, increasing */
    size_t D;                /* elements per image */
    float *eps, *z;          /* [B, D] model output, step noise */
    int *tt;                 /* [B] model timesteps */
    /* trajectory */
    int tcols;
    int cap_step[TRAJ_MAX_COLS]; /* column j shows the state after step cap_step[j] (0 = x_T) */
    float *traj;                 /* [traj_rows, tcols, D] */
    int traj_rows;
    progress *prog;
} sampler;

static void capture(sampler *sm, const float *x, int first, int N, int k) {
    for (int j = 0; j < sm->tcols; j++) {
        if (sm->cap_step[j] != k) continue;
        for (int n = 0; n < N && first + n < sm->traj_rows; n++)
            memcpy(sm->traj + ((size_t)(first + n) * sm->tcols + j) * sm->D, x + (size_t)n * sm->D,
                   sm->D * sizeof(float));
    }
}

/* Runs the reverse process on images first..first+N-1: x [N, D] gets x_0.
 * rngs [N] are those images' generators; labels [N] or NULL. */
static ddpm_status sample_chunk(sampler *sm, float *x, int first, int N, ddpm_rng *rngs,
                                const int *labels, int chunk) {
    size_t D = sm->D;
    for (int n = 0; n < N; n++) ddpm_rng_fill_normal(&rngs[n], x + (size_t)n * D, D); /* x_T */
    if (sm->traj) capture(sm, x, first, N, 0);
    int K = sm->K;
    for (int i = K - 1; i >= 0; i--) {
        int t = sm->tau[i], t_prev = i > 0 ? sm->tau[i - 1] : -1;
        for (int n = 0; n < N; n++) sm->tt[n] = sm->s->timesteps[t];
        ddpm_status st = ddpm_unet_forward(sm->m, sm->eps, x, sm->tt, labels, N);
        if (st) return st;
        for (size_t j = 0; j < (size_t)N * D; j++)
            if (!isfinite(sm->eps[j]))
                return ddpm_error(DDPM_ERR_NUMERIC,
                                  "the model predicted a non-finite value at timestep %d",
                                  sm->s->timesteps[t]);
        bool noisy = sm->o.kind == DDPM_SAMPLER_DDPM ? i > 0 : sm->o.eta > 0.0f && i > 0;
        if (noisy)
            for (int n = 0; n < N; n++) ddpm_rng_fill_normal(&rngs[n], sm->z + (size_t)n * D, D);
        if (sm->o.kind == DDPM_SAMPLER_DDPM)
            ddpm_p_step(x, x, sm->eps, noisy ? sm->z : NULL, i, sm->ps, sm->o.var, N, D);
        else
            ddpm_ddim_step(x, NULL, x, sm->eps, noisy ? sm->z : NULL, t, t_prev, sm->o.eta, sm->s,
                           N, D);
        if (sm->traj) capture(sm, x, first, N, K - i);
        progress_step(sm->prog, chunk, K - i);
    }
    return DDPM_OK;
}

/* ---- the command -------------------------------------------------------------------- */

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
            fprintf(stderr, "ddpm %s: '%s': unknown noise schedule '%.40s' in the metadata\n", CMD,
                    ck->path, sv);
            return 1;
        }
    }
    if (tv) {
        char *end;
        errno = 0;
        long v = strtol(tv, &end, 10);
        if (errno || end == tv || *end || v < 2 || v > DDPM_SCHEDULE_MAX_T) {
            fprintf(stderr, "ddpm %s: '%s': metadata '%s' is not a valid number of timesteps: '%.40s'\n",
                    CMD, ck->path, DDPM_META_TIMESTEPS, tv);
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

static const char *SYNOPSIS =
    "usage: ddpm sample [-c CKPT] [-n N] [-o FILE] [options]\n\n"
    "Generate images with a trained model and write them as a PNG grid.";

static const char *EPILOG =
    "The checkpoint defaults to " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ", where 'ddpm train' writes it.\n"
    "Its metadata gives the noise schedule and T; its EMA weights are used when present.\n\n"
    "Samplers:\n"
    "  ddpm  ancestral sampling (Ho et al.); --sample-steps K < T respaces the schedule\n"
    "        (Nichol & Dhariwal), --var picks the step variance: small = posterior\n"
    "        variance (default), large = beta_t.\n"
    "  ddim  Song et al. on K evenly spaced timesteps (default 50). --eta in [0, 1]:\n"
    "        0 = deterministic (default), 1 = as noisy as DDPM.\n\n"
    "Each image has its own random stream derived from (--seed, its index): the same\n"
    "seed gives the same images whatever --batch or --threads, and -n 4 gives the\n"
    "first four images of -n 16.\n"
    "Outputs are written only after sampling finished; their directories are checked\n"
    "before it starts.\n\n"
    "examples:\n"
    "  ddpm sample -n 64 -o grid.png\n"
    "  ddpm sample --sampler ddim --sample-steps 50 --trajectory steps.png\n"
    "  ddpm sample -c runs/cond/ckpt.safetensors --label 3 -n 16";

static int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *out = "samples.png", *sampler_name = "ddpm", *var_name = "small";
    const char *idx_path = NULL, *traj_path = NULL;
    int n = 16, steps = 0, nrow = 0, threads = 0, batch = 64, label = -1;
    float eta = 0.0f;
    uint64_t seed = 0;
    bool no_ema = false;
    ddpm_opt opts[] = {
        {"--ckpt", "-c", OPT_STRING, &ckpt, 0, 0, "FILE", "checkpoint (default " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ")"},
        {"--num", "-n", OPT_INT, &n, 1, 100000, "N", "number of images (default 16)"},
        {"--out", "-o", OPT_STRING, &out, 0, 0, "FILE", "PNG grid to write (default samples.png)"},
        {"--sampler", NULL, OPT_STRING, &sampler_name, 0, 0, "NAME", "ddpm or ddim (default ddpm)"},
        {"--sample-steps", NULL, OPT_INT, &steps, 1, DDPM_SCHEDULE_MAX_T, "K", "sampling steps, 1..T (default: T for ddpm, min(50, T) for ddim)"},
        {"--eta", NULL, OPT_FLOAT, &eta, 0.0, 1.0, "E", "ddim noise in [0, 1] (default 0: deterministic)"},
        {"--var", NULL, OPT_STRING, &var_name, 0, 0, "KIND", "ddpm step variance: small or large (default small)"},
        {"--seed", NULL, OPT_U64, &seed, 0, 0, "S", "random seed (default 0)"},
        {"--nrow", NULL, OPT_INT, &nrow, 1, 100000, "N", "grid columns (default ceil(sqrt(n)); K with cycled labels)"},
        {"--no-ema", NULL, OPT_FLAG, &no_ema, 0, 0, NULL, "use the raw weights, not the EMA weights"},
        {"--label", NULL, OPT_INT, &label, 0, 100000, "K", "class for a class-conditional model (default: cycle 0..K-1)"},
        {"--batch", NULL, OPT_INT, &batch, 1, 4096, "B", "images per model call (default 64; bounds memory)"},
        {"--threads", NULL, OPT_INT, &threads, 0, 4096, "N", "threads (default 0: all cores)"},
        {"--idx", NULL, OPT_STRING, &idx_path, 0, 0, "FILE", "also write the images as an IDX file (u8)"},
        {"--trajectory", NULL, OPT_STRING, &traj_path, 0, 0, "FILE", "PNG of x_T ... x_0 in 10 columns, a row per image (first 100)"},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;

    /* ---- flags that need no checkpoint */
    int kind = ddpm_sampler_parse(sampler_name);
    if (kind < 0) {
        fprintf(stderr, "ddpm %s: unknown sampler '%s' (expected ddpm or ddim)\n", CMD, sampler_name);
        return 2;
    }
    int var = ddpm_var_parse(var_name);
    if (var < 0) {
        fprintf(stderr, "ddpm %s: unknown variance '%s' (expected small or large)\n", CMD, var_name);
        return 2;
    }
    if (kind == DDPM_SAMPLER_DDPM && ddpm_opts_seen(opts, nopts, "--eta")) {
        fprintf(stderr, "ddpm %s: --eta applies to --sampler ddim only\n", CMD);
        return 2;
    }
    if (kind == DDPM_SAMPLER_DDIM && ddpm_opts_seen(opts, nopts, "--var")) {
        fprintf(stderr, "ddpm %s: --var applies to --sampler ddpm only (ddim uses --eta)\n", CMD);
        return 2;
    }
    const char *outs[3] = {out, idx_path, traj_path};
    const char *out_flag[3] = {"-o", "--idx", "--trajectory"};
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++)
            if (outs[a] && outs[b] && !strcmp(outs[a], outs[b])) {
                fprintf(stderr, "ddpm %s: %s and %s name the same file '%s'\n", CMD, out_flag[a],
                        out_flag[b], outs[a]);
                return 2;
            }
    for (int a = 0; a < 3; a++)
        if (outs[a] && a != 1 && !ends_with(outs[a], ".png") && !ends_with(outs[a], ".PNG"))
            fprintf(stderr, "ddpm %s: note: '%s' will be a PNG file\n", CMD, outs[a]);

    /* ---- the checkpoint */
    char default_ckpt[] = DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE;
    if (!ckpt) {
        struct stat st;
        ckpt = default_ckpt;
        if (stat(ckpt, &st) != 0 && errno == ENOENT) {
            fprintf(stderr, "ddpm %s: no checkpoint at '%s': run 'ddpm train' first, or name one with -c FILE\n",
                    CMD, ckpt);
            return 1;
        }
    }
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, ckpt)) return fail();
    ddpm_unet_config cfg = ck.cfg;
    int sched_kind, T;
    if (schedule_from_meta(&ck, &sched_kind, &T)) {
        ddpm_checkpoint_close(&ck);
        return 1;
    }

    /* ---- flags checked against the checkpoint (usage errors) */
    rc = 0;
    int K = steps ? steps : kind == DDPM_SAMPLER_DDIM ? (T < 50 ? T : 50) : T;
    int C = cfg.num_classes;
    if (steps > T) {
        fprintf(stderr, "ddpm %s: --sample-steps %d exceeds the checkpoint's T = %d timesteps\n", CMD,
                steps, T);
        rc = 2;
    } else if (label >= 0 && C == 0) {
        fprintf(stderr, "ddpm %s: --label: the model in '%s' is unconditional (trained without --classes)\n",
                CMD, ckpt);
        rc = 2;
    } else if (label >= C && C > 0) {
        fprintf(stderr, "ddpm %s: --label %d out of range: the model has %d classes (0..%d)\n", CMD,
                label, C, C - 1);
        rc = 2;
    } else if (cfg.in_ch != 1 && cfg.in_ch != 3) {
        fprintf(stderr, "ddpm %s: the model makes %d-channel images; PNG grids need 1 or 3\n", CMD,
                cfg.in_ch);
        rc = 1;
    }
    if (rc) {
        ddpm_checkpoint_close(&ck);
        return rc;
    }
    if (!ddpm_opts_seen(opts, nopts, "--nrow") && C > 0 && label < 0 && C <= LABEL_COLS_MAX) nrow = C;

    /* ---- outputs: fail now rather than after minutes of sampling */
    int H = cfg.res, W = cfg.res, Cin = cfg.in_ch;
    size_t D = (size_t)Cin * H * W;
    int tcols = K + 1 < TRAJ_MAX_COLS ? K + 1 : TRAJ_MAX_COLS, trows = n < TRAJ_MAX_ROWS ? n : TRAJ_MAX_ROWS;
    for (int a = 0; a < 3; a++)
        if (outs[a] && ddpm_cli_check_writable(CMD, outs[a])) {
            ddpm_checkpoint_close(&ck);
            return 1;
        }
    if (check_grid(out, n, Cin, H, W, nrow) || (traj_path && check_grid(traj_path, trows * tcols, Cin, H, W, tcols))) {
        ddpm_checkpoint_close(&ck);
        return 1;
    }

    /* ---- model, schedule, buffers */
    int nthreads = ddpm_cli_threads(threads);
    int B = batch < n ? batch : n;
    ddpm_unet *m = NULL;
    ddpm_schedule s = {0}, rs = {0};
    float *x = NULL, *eps = NULL, *z = NULL, *traj = NULL;
    int *tt = NULL, *tau = NULL, *labels = NULL;
    ddpm_rng *rngs = NULL;
    uint8_t *u8 = NULL;
    bool has_ema = ck.has_ema, use_ema = has_ema && !no_ema;
    int status = 1;
    if (ddpm_unet_create(&m, &cfg, B, false) ||
        ddpm_checkpoint_read(&ck, use_ema ? "ema." : "", ddpm_unet_params(m)))
        goto error;
    ddpm_checkpoint_close(&ck);
    x = ddpm_malloc((size_t)n * D * sizeof(float));   /* [n, D] the samples */
    eps = ddpm_malloc((size_t)B * D * sizeof(float)); /* [B, D] */
    z = ddpm_malloc((size_t)B * D * sizeof(float));   /* [B, D] */
    tt = ddpm_malloc((size_t)B * sizeof(int));        /* [B] */
    tau = ddpm_malloc((size_t)K * sizeof(int));       /* [K] */
    rngs = ddpm_malloc((size_t)B * sizeof(ddpm_rng)); /* [B] */
    if (C > 0) labels = ddpm_malloc((size_t)n * sizeof(int)); /* [n] */
    if (traj_path) traj = ddpm_calloc((size_t)trows * tcols * D, sizeof(float)); /* [trows, tcols, D] */
    if (!x || !eps || !z || !tt || !tau || !rngs || (C > 0 && !labels) || (traj_path && !traj))
        goto error;
    if (ddpm_schedule_init(&s, (ddpm_schedule_kind)sched_kind, T) || ddpm_schedule_respace(tau, K, T))
        goto error;
    if (kind == DDPM_SAMPLER_DDPM && K < T && ddpm_schedule_init_respaced(&rs, &s, tau, K)) goto error;
    for (int i = 0; i < n && labels; i++) labels[i] = label >= 0 ? label : i % C;

    progress prog = {.tty = ddpm_cli_tty(), .n = n, .K = K, .nchunks = (n + B - 1) / B,
                     .next_pct = 10, .t0 = ddpm_cli_now()};
    prog.total = (long)prog.nchunks * K;
    sampler sm = {.m = m, .s = &s, .ps = rs.T ? &rs : &s,
                  .o = {(ddpm_sampler_kind)kind, K, eta, (ddpm_var_kind)var},
                  .K = K, .tau = tau, .D = D, .eps = eps, .z = z, .tt = tt,
                  .tcols = tcols, .traj = traj, .traj_rows = trows, .prog = &prog};
    for (int j = 0; j < tcols; j++) sm.cap_step[j] = tcols > 1 ? (j * K + (tcols - 1) / 2) / (tcols - 1) : K;

    char detail[96];
    if (kind == DDPM_SAMPLER_DDPM) snprintf(detail, sizeof detail, "var %s", var_name);
    else snprintf(detail, sizeof detail, "eta %g", (double)eta);
    char labtxt[64] = "";
    if (C > 0 && label >= 0) snprintf(labtxt, sizeof labtxt, ", label %d", label);
    else if (C > 0) snprintf(labtxt, sizeof labtxt, ", labels cycling 0..%d", C - 1);
    fprintf(stderr, "ddpm %s: '%s' (%s weights%s), %s schedule T=%d; %s sampler, %d steps, %s; "
                    "seed %llu, %d thread%s\n",
            CMD, ckpt, use_ema ? "EMA" : "raw", has_ema || no_ema ? "" : "; the checkpoint has no EMA weights",
            ddpm_schedule_name((ddpm_schedule_kind)sched_kind), T, sampler_name, K, detail,
            (unsigned long long)seed, nthreads, nthreads == 1 ? "" : "s");
    if (labtxt[0]) fprintf(stderr, "ddpm %s: class-conditional model with %d classes%s\n", CMD, C, labtxt);

    for (int first = 0, chunk = 0; first < n; first += B, chunk++) {
        int N = n - first < B ? n - first : B;
        for (int i = 0; i < N; i++) ddpm_rng_seed(&rngs[i], sample_seed(seed, first + i));
        if (sample_chunk(&sm, x + (size_t)first * D, first, N, rngs, labels ? labels + first : NULL, chunk)) {
            if (prog.tty) fputc('\n', stderr);
            goto error;
        }
    }

    /* ---- outputs */
    if (ddpm_image_write_grid(out, x, n, Cin, H, W, nrow, -1.0f, 1.0f)) goto error;
    int gw, gh;
    ddpm_image_grid_size(n, H, W, nrow, &gw, &gh);
    fprintf(stderr, "ddpm %s: wrote %d image%s to '%s' (%d x %d px grid)\n", CMD, n, n == 1 ? "" : "s",
            out, gw, gh);
    if (idx_path) {
        u8 = malloc((size_t)n * D);
        if (!u8) {
            ddpm_error(DDPM_ERR_NOMEM, "out of memory for the IDX file");
            goto error;
        }
        to_u8(u8, x, (size_t)n * D);
        if (ddpm_idx_write_images(idx_path, u8, n, Cin, H, W)) goto error;
        fprintf(stderr, "ddpm %s: wrote %d x %d x %d x %d u8 images to '%s'\n", CMD, n, Cin, H, W, idx_path);
    }
    if (traj_path) {
        if (ddpm_image_write_grid(traj_path, traj, trows * tcols, Cin, H, W, tcols, -1.0f, 1.0f)) goto error;
        fprintf(stderr, "ddpm %s: wrote the trajectory of %d image%s to '%s' (steps", CMD, trows,
                trows == 1 ? "" : "s", traj_path);
        for (int j = 0; j < tcols; j++) fprintf(stderr, "%s%d", j ? "," : " ", sm.cap_step[j]);
        fprintf(stderr, " of %d)\n", K);
    }
    status = 0;
    goto done;
error:
    ddpm_cli_error(CMD);
    status = 1;
done:
    ddpm_checkpoint_close(&ck); /* safe twice */
    ddpm_unet_free(m);
    ddpm_schedule_free(&s);
    ddpm_schedule_free(&rs);
    ddpm_free(x);
    ddpm_free(eps);
    ddpm_free(z);
    ddpm_free(tt);
    ddpm_free(tau);
    ddpm_free(rngs);
    ddpm_free(labels);
    ddpm_free(traj);
    free(u8);
    return status;
}

const ddpm_cli_command ddpm_cmd_sample = {"sample", cmd_sample, "generate images from a checkpoint (DDPM or DDIM)"};
