/* cmd_bench.c: `ddpm bench`: time the fixed training and sampling workload.
 *
 * The workload (no dataset needed, everything is random):
 *   train   one ddpm_trainer_step per iteration on a fixed random batch in
 *           [-1, 1]: t ~ U{0..T-1}, eps ~ N(0, I), q_sample, forward, L2 loss,
 *           backward, global-norm clip (1.0), AdamW, EMA update: exactly what
 *           `ddpm train` runs per iteration (minus reading the dataset).
 *   sample  one ddpm_unet_forward of an INFERENCE model (no saved
 *           activations, as the sampler uses it) on `batch` random images at
 *           random timesteps; one call = one denoising step of `batch` images.
 *   sgemm   C = A B with square float32 matrices of --sgemm-size through
 *           ddpm_gemm (OpenBLAS) with the same threads: the machine's
 *           practical peak, the yardstick for train_gflops.
 *
 * Each part runs --warmup untimed iterations, then timed iterations until
 * --seconds have passed (at least MIN_ITERS); every iteration is timed on its
 * own and the report gives the median (p10/p90 for the spread), which is
 * robust to the noise of a shared machine.
 *
 * Output: `key=value` lines on stdout and nothing else (progress on stderr),
 * the same keys as scripts/bench_torch.py, so scripts/bench.sh can put them
 * side by side:
 *   train_gflops = 3 x ddpm_unet_flops x batch / median seconds per iteration
 *     (forward FLOPs per image as `ddpm info` counts them: 2 per multiply-add
 *     of convolutions, linears and attention; backward ~ 2x forward, so one
 *     training step ~ 3x forward, the same convention as `ddpm info`. Norms,
 *     activations and the optimizer are not counted.)
 *   sgemm_gflops = 2 n^3 / median seconds per product
 *   peak_rss_mb  = getrusage ru_maxrss right after the training part (or
 *     after the one part run with --only): the process's high-water resident
 *     memory, including the parameters, gradients, Adam moments, EMA and the
 *     activation arena, the binary and OpenBLAS's buffers.
 *   blas_core    = OpenBLAS's kernel family (OPENBLAS_CORETYPE), which the
 *     products outside the tile kernels (dweight of 1x1 / im2col convs,
 *     attention, linears, sgemm) use
 *   tile_kernel  = the path of the tile GEMMs (src/nn/gemm_tile.h: avx512,
 *     avx2 or generic; DDPM_KERNEL forces one): the Winograd products and
 *     the conv/shortcut products of out and din
 *   base_rss_mb  = the same before any model exists (the program's own
 *     footprint; bench_torch.py's includes Python and the torch libraries).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "ddpm/diffusion.h"
#include "core/prof.h"
#include "ddpm/rng.h"
#include "ddpm/tensor.h"
#include "ddpm/train.h"
#include "ddpm/unet.h"
#include "nn/gemm_tile.h"

static const char *CMD = "bench";

#define MIN_ITERS 3 /* timed iterations per part, whatever the budget */


/* ---- timing ------------------------------------------------------------------------ */

typedef struct {
    int n;                     /* timed iterations */
    double total;              /* seconds, sum over timed iterations */
    double median, p10, p90;   /* seconds per iteration */
    double prof[DDPM_PROF_KINDS][DDPM_PROF_PASSES]; /* --profile: seconds over the timed iterations */
} bench_stats;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[n], interpolating between order statistics
 * (numpy's default "linear" method, also used by bench_torch.py). */
static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

/* One part: prep (untimed, may be NULL) then fn, --warmup times untimed,
 * then timed until `seconds` have passed and at least MIN_ITERS ran. */
typedef ddpm_status (*bench_fn)(void *ctx);

static ddpm_status measure(const char *what, bench_fn prep, bench_fn fn, void *ctx, int warmup,
                           double seconds, bool profile, bench_stats *st) {
    ddpm_status s;
    bool tty = ddpm_cli_tty();
    if (tty) fprintf(stderr, "ddpm bench: %s: warming up", what);
    int cap = 256, n = 0;
    double *t = NULL;
    for (int i = 0; i < warmup; i++) {
        if (prep && (s = prep(ctx))) goto fail;
        if ((s = fn(ctx))) goto fail;
    }
    if (!(t = malloc((size_t)cap * sizeof *t))) {
        s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    ddpm_prof_reset();
    ddpm_prof_enable(profile);
    double start = ddpm_now(), total = 0, shown = start;
    while (n < MIN_ITERS || ddpm_now() - start < seconds) {
        if (prep && (s = prep(ctx))) goto fail;
        double t0 = ddpm_now();
        if ((s = fn(ctx))) goto fail;
        double dt = ddpm_now() - t0;
        if (tty && ddpm_now() - shown > 0.5) { /* slow parts: show they are alive */
            shown = ddpm_now();
            fprintf(stderr, "\r\033[Kddpm bench: %s: %d iterations, %.1f s", what, n + 1, shown - start);
        }
        if (n == cap) {
            double *g = realloc(t, (size_t)(cap *= 2) * sizeof *t);
            if (!g) {
                s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
                goto fail;
            }
            t = g;
        }
        t[n++] = dt;
        total += dt;
    }
    ddpm_prof_enable(false);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *st = (bench_stats){.n = n, .total = total, .median = quantile(t, n, 0.5), .p10 = quantile(t, n, 0.1),
                        .p90 = quantile(t, n, 0.9)};
    for (int k = 0; k < DDPM_PROF_KINDS; k++)
        for (int p = 0; p < DDPM_PROF_PASSES; p++) st->prof[k][p] = ddpm_prof_seconds(k, p);
    free(t);
    fprintf(stderr, "%sddpm bench: %s: %d iterations in %.1f s, median %.3f ms (p10 %.3f, p90 %.3f)\n",
            tty ? "\r\033[K" : "", what, n, total, 1e3 * st->median, 1e3 * st->p10, 1e3 * st->p90);
    return DDPM_OK;
fail:
    ddpm_prof_enable(false);
    if (tty) fputc('\n', stderr);
    free(t);
    return s;
}

/* --profile: `<part>_prof_<kind>_<pass>_ms` lines (mean milliseconds per timed
 * iteration) on stdout and a table on stderr. "other" is what no layer timer
 * covers (the rest of the step: zeroing gradients, copies, the loop itself). */
static void print_profile(const char *part, const bench_stats *st, bool backward) {
    static const char *const pass_name[DDPM_PROF_PASSES] = {"fwd", "bwd"};
    double per = 1e3 / st->n, mean = 1e3 * st->total / st->n, covered = 0;
    fprintf(stderr, "ddpm bench: %s profile, ms per iteration (mean of %d):\n", part, st->n);
    fprintf(stderr, "  %-12s %9s %9s %9s %7s\n", "kind", "forward", "backward", "total", "share");
    for (int k = 0; k < DDPM_PROF_KINDS; k++) {
        double f = per * st->prof[k][DDPM_PROF_FWD], b = per * st->prof[k][DDPM_PROF_BWD];
        if (f + b == 0) continue;
        covered += f + b;
        for (int p = 0; p < (backward ? DDPM_PROF_PASSES : 1); p++)
            printf("%s_prof_%s_%s_ms=%.6g\n", part, ddpm_prof_name(k), pass_name[p], p ? b : f);
        fprintf(stderr, "  %-12s %9.2f %9.2f %9.2f %6.1f%%\n", ddpm_prof_name(k), f, b, f + b,
                100 * (f + b) / mean);
    }
    printf("%s_prof_other_ms=%.6g\n", part, mean - covered);
    fprintf(stderr, "  %-12s %9s %9s %9.2f %6.1f%%\n", "other", "", "", mean - covered,
            100 * (mean - covered) / mean);
    fprintf(stderr, "  %-12s %9s %9s %9.2f\n", "total", "", "", mean);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* ---- the three workloads ----------------------------------------------------------- */

typedef struct {
    ddpm_trainer *tr;
    const float *x0;   /* (B, C, H, W) in [-1, 1] */
    const int *labels; /* (B) or NULL */
} train_ctx;

static ddpm_status train_step(void *p) {
    train_ctx *c = p;
    return ddpm_trainer_step(c->tr, c->x0, c->labels, NULL);
}

typedef struct {
    ddpm_unet *model;  /* inference model */
    float *out;        /* (B, C, H, W) */
    const float *x;    /* (B, C, H, W) */
    int *t;            /* (B) */
    const int *labels; /* (B) or NULL */
    int B, T;
    ddpm_rng *rng;
} sample_ctx;

static ddpm_status sample_prep(void *p) {
    sample_ctx *c = p;
    ddpm_sample_timesteps(c->t, c->B, c->T, c->rng);
    return DDPM_OK;
}

static ddpm_status sample_step(void *p) {
    sample_ctx *c = p;
    return ddpm_unet_forward(c->model, c->out, c->x, c->t, c->labels, c->B);
}

typedef struct {
    const float *A, *B; /* (n, n) */
    float *C;           /* (n, n) */
    int n;
} sgemm_ctx;

static ddpm_status sgemm_step(void *p) {
    sgemm_ctx *c = p;
    ddpm_gemm(false, false, c->n, c->n, c->n, 1.0f, c->A, c->n, c->B, c->n, 0.0f, c->C, c->n);
    return DDPM_OK;
}

/* ---- the command ---------------------------------------------------------------------- */

typedef struct {
    int threads, batch, warmup, sgemm_n;
    float seconds;
    bool profile;
    const char *only;
    uint64_t seed;
} bench_flags;

/* "ch32-mult1,2,2-rb2-attn7-g8" (+ "-cls10", "-drop0.1" when set) */
static void model_name(char *buf, size_t cap, const ddpm_unet_config *c) {
    char mult[64], attn[64];
    ddpm_format_int_list(mult, sizeof mult, c->ch_mult, c->num_levels);
    if (c->num_attn) ddpm_format_int_list(attn, sizeof attn, c->attn_res, c->num_attn);
    else snprintf(attn, sizeof attn, "none");
    int n = snprintf(buf, cap, "ch%d-mult%s-rb%d-attn%s-g%d", c->ch, mult, c->num_res_blocks, attn, c->groups);
    if (c->num_classes > 0 && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "-cls%d", c->num_classes);
    if (c->dropout > 0 && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "-drop%g", (double)c->dropout);
}

/* One run: the workload the parts share, which parts run, and their results. */
typedef struct {
    const bench_flags *f;
    const ddpm_unet_config *mc;
    ddpm_train_config tc;
    bool do_train, do_sample, do_sgemm;
    int B;
    size_t D;          /* floats per image */
    float *x0, *out;   /* (B, D) */
    int *t, *labels;   /* (B) */
    const int *lab;    /* labels, or NULL for an unconditional model */
    ddpm_rng rng;
    bench_stats train, sample, sgemm;
    double rss;        /* peak_rss_mb after the first part */
} bench_run;

/* The random batch: x0 ~ U(-1, 1), labels uniform (or 0). */
static ddpm_status make_data(bench_run *r) {
    size_t n = (size_t)r->B * r->D;
    r->x0 = ddpm_malloc(n * sizeof(float));
    r->out = ddpm_malloc(n * sizeof(float));
    r->t = malloc((size_t)r->B * sizeof *r->t);
    r->labels = malloc((size_t)r->B * sizeof *r->labels);
    if (!r->x0 || !r->out || !r->t || !r->labels) return DDPM_ERR_NOMEM;
    ddpm_rng_seed(&r->rng, r->f->seed ^ 0xbe9c4ULL);
    ddpm_rng_fill_uniform(&r->rng, r->x0, n, -1.0f, 1.0f);
    int K = r->mc->num_classes;
    for (int i = 0; i < r->B; i++) r->labels[i] = K > 0 ? (int)ddpm_rng_below(&r->rng, (uint32_t)K) : 0;
    r->lab = K > 0 ? r->labels : NULL;
    return DDPM_OK;
}

static ddpm_status part_train(bench_run *r) {
    ddpm_trainer *tr = NULL;
    ddpm_status s = ddpm_trainer_create(&tr, &r->tc);
    if (s) return s;
    train_ctx c = {tr, r->x0, r->lab};
    s = measure("train", NULL, train_step, &c, r->f->warmup, r->f->seconds, r->f->profile, &r->train);
    r->rss = peak_rss_mb();
    ddpm_trainer_free(tr);
    return s;
}

static ddpm_status part_sample(bench_run *r) {
    ddpm_unet *inf = NULL;
    ddpm_status s = ddpm_unet_create(&inf, r->mc, r->B, false);
    if (s) return s;
    ddpm_unet_init_params(inf, r->f->seed);
    ddpm_rng_fill_normal(&r->rng, r->x0, (size_t)r->B * r->D); /* x_t ~ N(0, I), as at the start of sampling */
    sample_ctx c = {inf, r->out, r->x0, r->t, r->lab, r->B, r->tc.T, &r->rng};
    s = measure("sample", sample_prep, sample_step, &c, r->f->warmup, r->f->seconds, r->f->profile, &r->sample);
    if (!r->do_train) r->rss = peak_rss_mb();
    ddpm_unet_free(inf);
    return s;
}

static ddpm_status part_sgemm(bench_run *r) {
    int n = r->f->sgemm_n;
    size_t nn = (size_t)n * n;
    float *A = ddpm_malloc(nn * sizeof(float)), *Bm = ddpm_malloc(nn * sizeof(float));
    float *C = ddpm_malloc(nn * sizeof(float));
    ddpm_status s = DDPM_ERR_NOMEM;
    if (A && Bm && C) {
        ddpm_rng_fill_uniform(&r->rng, A, nn, -1.0f, 1.0f);
        ddpm_rng_fill_uniform(&r->rng, Bm, nn, -1.0f, 1.0f);
        memset(C, 0, nn * sizeof(float));
        sgemm_ctx c = {A, Bm, C, n};
        s = measure("sgemm", NULL, sgemm_step, &c, r->f->warmup, r->f->seconds, false, &r->sgemm);
        if (!r->do_train && !r->do_sample) r->rss = peak_rss_mb();
    }
    ddpm_free(A);
    ddpm_free(Bm);
    ddpm_free(C);
    return s;
}

/* The report: the workload first, then one block per part. */
static void print_report(const bench_run *r, const char *name, size_t nparams, double flops, int threads,
                         double base_rss) {
    const ddpm_unet_config *mc = r->mc;
    int B = r->B;
    printf("model=%s\n", name);
    printf("image=%dx%dx%d\n", mc->in_ch, mc->res, mc->res);
    printf("timesteps=%d\n", r->tc.T);
    printf("batch=%d\n", B);
    printf("threads=%d\n", threads);
    printf("params=%zu\n", nparams);
    printf("mflops_per_image=%.6g\n", flops / 1e6);
    printf("blas_core=%s\n", ddpm_blas_core());
    printf("tile_kernel=%s\n", ddpm_isa_name(ddpm_isa_selected()));
    double train_gflops = 0, sgemm_gflops = 0;
    if (r->do_train) {
        const bench_stats *st = &r->train;
        train_gflops = 3.0 * flops * B / st->median / 1e9;
        printf("train_iters=%d\n", st->n);
        printf("train_ms_per_iter=%.6g\n", 1e3 * st->median);
        printf("train_ms_p10=%.6g\n", 1e3 * st->p10);
        printf("train_ms_p90=%.6g\n", 1e3 * st->p90);
        printf("train_img_per_s=%.6g\n", B / st->median);
        printf("train_gflops=%.6g\n", train_gflops);
        if (r->f->profile) print_profile("train", st, true);
    }
    if (r->do_sample) {
        const bench_stats *st = &r->sample;
        printf("sample_iters=%d\n", st->n);
        printf("sample_ms_per_step=%.6g\n", 1e3 * st->median);
        printf("sample_ms_p10=%.6g\n", 1e3 * st->p10);
        printf("sample_ms_p90=%.6g\n", 1e3 * st->p90);
        printf("sample_img_steps_per_s=%.6g\n", B / st->median);
        if (r->f->profile) print_profile("sample", st, false);
    }
    if (r->do_sgemm) {
        int n = r->f->sgemm_n;
        sgemm_gflops = 2.0 * (double)n * n * n / r->sgemm.median / 1e9;
        printf("sgemm_n=%d\n", n);
        printf("sgemm_iters=%d\n", r->sgemm.n);
        printf("sgemm_ms=%.6g\n", 1e3 * r->sgemm.median);
        printf("sgemm_gflops=%.6g\n", sgemm_gflops);
    }
    if (r->do_train && r->do_sgemm) printf("gflops_ratio=%.6g\n", train_gflops / sgemm_gflops);
    printf("base_rss_mb=%.6g\n", base_rss);
    printf("peak_rss_mb=%.6g\n", r->rss);
}

static int run(const bench_flags *f, const ddpm_unet_config *mc) {
    bench_run r = {.f = f, .mc = mc, .B = f->batch, .D = (size_t)mc->in_ch * mc->res * mc->res};
    r.do_train = !strcmp(f->only, "all") || !strcmp(f->only, "train");
    r.do_sample = !strcmp(f->only, "all") || !strcmp(f->only, "sample");
    r.do_sgemm = !strcmp(f->only, "all") || !strcmp(f->only, "sgemm");
    int rc = 1, threads = ddpm_set_threads(f->threads);
    double base_rss = peak_rss_mb();
    ddpm_train_config_default(&r.tc);
    r.tc.model = *mc;
    r.tc.batch = r.B;
    r.tc.iters = 1000000000; /* the LR schedule's length: irrelevant to speed */
    r.tc.seed = f->seed;
    r.tc.objective = DDPM_OBJ_EPS; /* the reference's workload (bench_torch.py: eps, plain L2) */
    r.tc.snr_gamma = 0.0f;
    if (make_data(&r)) {
        fprintf(stderr, "ddpm bench: out of memory\n");
        goto done;
    }
    size_t nparams;
    double flops;
    char name[256];
    if (ddpm_unet_describe(mc, &nparams, &flops)) goto fail;
    model_name(name, sizeof name, mc);
    fprintf(stderr, "ddpm bench: model %s, %zu parameters, %.1f MFLOPs/image forward; batch %d; %d threads; %s, tile kernels %s\n",
            name, nparams, flops / 1e6, r.B, threads, ddpm_blas_core(), ddpm_isa_name(ddpm_isa_selected()));
    if ((r.do_train && part_train(&r)) || (r.do_sample && part_sample(&r)) || (r.do_sgemm && part_sgemm(&r)))
        goto fail;
    print_report(&r, name, nparams, flops, threads, base_rss);
    rc = 0;
    goto done;
fail:
    ddpm_cli_error(CMD);
done:
    ddpm_free(r.x0);
    ddpm_free(r.out);
    free(r.t);
    free(r.labels);
    return rc;
}

static int cmd_bench(int argc, char **argv) {
    ddpm_unet_config def;
    ddpm_unet_config_default(&def);
    ddpm_model_flags mf;
    ddpm_model_flags_init(&mf, &def);
    bench_flags f = {.threads = 0, .batch = 64, .warmup = 3, .sgemm_n = 2048, .seconds = 10.0f, .only = "all",
                     .seed = 0};
    ddpm_opt own[] = {
        {"--threads", NULL, OPT_INT, &f.threads, 0, 1024, "N", "threads, 0 = all cores (default 0)"},
        {"--seconds", NULL, OPT_FLOAT, &f.seconds, 0.0, 3600.0, "S", "seconds per part, after warm-up (default 10)"},
        {"--batch", NULL, OPT_INT, &f.batch, 1, 4096, "N", "images per training step / denoising call (default 64)"},
        {"--warmup", NULL, OPT_INT, &f.warmup, 0, 1000, "N", "untimed iterations before each part (default 3)"},
        {"--only", NULL, OPT_STRING, &f.only, 0, 0, "PART", "run one part: train, sample or sgemm (default all)"},
        {"--sgemm-size", NULL, OPT_INT, &f.sgemm_n, 16, 16384, "N", "sgemm of N x N matrices (default 2048)"},
        {"--seed", NULL, OPT_U64, &f.seed, 0, 0, "N", "random seed of the data and weights (default 0)"},
        {"--profile", NULL, OPT_FLAG, &f.profile, 0, 0, NULL, "also time each layer kind (table on stderr)"},
    };
    ddpm_opt opts[DDPM_COUNT(own) + DDPM_MODEL_OPTS];
    memcpy(opts, own, sizeof own);
    ddpm_model_opts(opts + DDPM_COUNT(own), &mf);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, (int)DDPM_COUNT(opts),
                             "usage: ddpm bench [options] [model options]\n\n"
                             "Time the training step and the denoiser on random data (no dataset needed)\n"
                             "and a large sgemm; print key=value lines (medians over timed iterations).",
                             "Parts: train = ddpm_trainer_step (q_sample, forward, L2 loss, backward, clip,\n"
                             "AdamW, EMA), as `ddpm train` runs it; sample = one forward of the inference\n"
                             "model on --batch images at random t (one denoising step); sgemm = a square\n"
                             "float32 matrix product through OpenBLAS with the same threads.\n"
                             "train_gflops = 3 x forward FLOPs x batch / median step time (forward +\n"
                             "backward ~ 3x forward, as in `ddpm info`); gflops_ratio = train / sgemm.\n"
                             "peak_rss_mb is the process's peak resident memory after the training part.\n"
                             "scripts/bench.sh runs this next to scripts/bench_torch.py (PyTorch).");
    if (rc) return rc == 1 ? 0 : rc;
    if (strcmp(f.only, "all") && strcmp(f.only, "train") && strcmp(f.only, "sample") && strcmp(f.only, "sgemm")) {
        fprintf(stderr, "ddpm bench: unknown --only '%s' (train, sample, sgemm)\n", f.only);
        return 2;
    }
    ddpm_unet_config c = def;
    ddpm_model_flags_preset(&mf, opts + 8, DDPM_MODEL_OPTS, false);
    ddpm_model_flags_apply(&mf, &c);
    if (ddpm_unet_config_validate(&c)) {
        ddpm_cli_error(CMD);
        return 2;
    }
    return run(&f, &c);
}

const ddpm_cli_command ddpm_cmd_bench = {"bench", cmd_bench, "time training, sampling and sgemm on a fixed workload"};
