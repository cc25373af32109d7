/* cmd_bench.c: `ddpm bench`: flags, ddpm_bench_run (the workload and its
 * timing, include/ddpm/bench.h), and the report.
 *
 * Output: `key=value` lines on stdout and nothing else (progress on stderr),
 * the same keys as scripts/bench_torch.py, so scripts/bench.sh can put them
 * side by side; what each key measures is listed in docs/performance.md
 * ("The benchmark").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/prof.h"
#include "ddpm/bench.h"

static const char *CMD = "bench";

/* Progress on stderr: on a terminal a live line, else one line per part. */
typedef struct {
    bool tty;
    double shown;
} progress_state;

static void progress(void *ctx, const char *part, int iters, double elapsed) {
    progress_state *p = ctx;
    if (p->tty && iters == 0) fprintf(stderr, "\r\033[Kddpm bench: %s: timing", part);
    if (p->tty && iters > 0 && ddpm_now() - p->shown > 0.5) {
        p->shown = ddpm_now();
        fprintf(stderr, "\r\033[Kddpm bench: %s: %d iterations, %.1f s", part, iters, elapsed);
    }
}

static void part_done(const progress_state *p, const char *part, const ddpm_bench_stats *st) {
    fprintf(stderr, "%sddpm bench: %s: %d iterations in %.1f s, median %.3f ms (p10 %.3f, p90 %.3f)\n",
            p->tty ? "\r\033[K" : "", part, st->n, st->total, 1e3 * st->median, 1e3 * st->p10, 1e3 * st->p90);
}

/* --profile: `<part>_prof_<kind>_<pass>_ms` lines (mean milliseconds per timed
 * iteration) on stdout and a table on stderr. "other" is what no layer timer
 * covers (zeroing gradients, copies, the loop itself). */
static void print_profile(const char *part, const ddpm_bench_stats *st, bool backward) {
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
        fprintf(stderr, "  %-12s %9.2f %9.2f %9.2f %6.1f%%\n", ddpm_prof_name(k), f, b, f + b, 100 * (f + b) / mean);
    }
    printf("%s_prof_other_ms=%.6g\n", part, mean - covered);
    fprintf(stderr, "  %-12s %9s %9s %9.2f %6.1f%%\n", "other", "", "", mean - covered, 100 * (mean - covered) / mean);
    fprintf(stderr, "  %-12s %9s %9s %9.2f\n", "total", "", "", mean);
}

/* The report: the machine and the workload, then one block per part. */
static void print_report(const ddpm_bench_config *c, const ddpm_bench_result *r, const ddpm_cpu_info *ci,
                         const char *name, int threads) {
    const int B = c->batch;
    printf("cpu_vendor=%s\ncpu_family=%d\ncpu_model=%d\ncpu_name=%s\ncpu_features=%s\n", ci->vendor, ci->family,
           ci->model, ci->name, ci->features);
    printf("model=%s\nimage=%dx%dx%d\n", name, c->model.in_ch, c->model.res, c->model.res);
    printf("timesteps=%d\nbatch=%d\nthreads=%d\nparams=%zu\n", r->T, B, threads, r->params);
    printf("mflops_per_image=%.6g\nprecision=%s\n", r->flops / 1e6, ddpm_precision_name(c->precision));
    printf("blas_core=%s\ntile_kernel=%s\nbf16_kernel=%s\n", ddpm_blas_core(), ddpm_bench_tile_kernel(),
           ddpm_bench_bf16_kernel());
    double train_gflops = 0, sgemm_gflops = 0;
    if (c->train) {
        const ddpm_bench_stats *st = &r->train;
        train_gflops = 3.0 * r->flops * B / st->median / 1e9;
        printf("train_iters=%d\ntrain_ms_per_iter=%.6g\n", st->n, 1e3 * st->median);
        printf("train_ms_p10=%.6g\ntrain_ms_p90=%.6g\n", 1e3 * st->p10, 1e3 * st->p90);
        printf("train_img_per_s=%.6g\ntrain_gflops=%.6g\n", B / st->median, train_gflops);
        if (c->profile) print_profile("train", st, true);
    }
    if (c->sample) {
        const ddpm_bench_stats *st = &r->sample;
        printf("sample_iters=%d\nsample_ms_per_step=%.6g\n", st->n, 1e3 * st->median);
        printf("sample_ms_p10=%.6g\nsample_ms_p90=%.6g\n", 1e3 * st->p10, 1e3 * st->p90);
        printf("sample_img_steps_per_s=%.6g\n", B / st->median);
        if (c->profile) print_profile("sample", st, false);
    }
    if (c->sgemm) {
        const int n = c->sgemm_n;
        sgemm_gflops = 2.0 * (double)n * n * n / r->sgemm.median / 1e9;
        printf("sgemm_n=%d\nsgemm_iters=%d\nsgemm_ms=%.6g\nsgemm_gflops=%.6g\n", n, r->sgemm.n, 1e3 * r->sgemm.median,
               sgemm_gflops);
    }
    if (c->train && c->sgemm) printf("gflops_ratio=%.6g\n", train_gflops / sgemm_gflops);
    printf("base_rss_mb=%.6g\npeak_rss_mb=%.6g\n", r->base_rss_mb, r->peak_rss_mb);
}

static int run(ddpm_bench_config *c, int threads) {
    char name[256];
    ddpm_unet_config_name(name, sizeof name, &c->model);
    ddpm_cpu_info ci;
    ddpm_cpu_info_get(&ci);
    fprintf(stderr, "ddpm bench: %s (family %d model %d; %s); model %s; batch %d; %d threads; %s; %s, tile kernels %s, bf16 %s\n",
            ci.name, ci.family, ci.model, ci.features, name, c->batch, threads, ddpm_precision_name(c->precision),
            ddpm_blas_core(), ddpm_bench_tile_kernel(), ddpm_bench_bf16_kernel());
    progress_state ps = {ddpm_is_tty(stderr), 0};
    c->progress = progress;
    c->progress_ctx = &ps;
    ddpm_bench_result r;
    if (ddpm_bench_run(c, &r)) {
        if (ps.tty) fputc('\n', stderr);
        return ddpm_cli_error(CMD);
    }
    if (c->train) part_done(&ps, "train", &r.train);
    if (c->sample) part_done(&ps, "sample", &r.sample);
    if (c->sgemm) part_done(&ps, "sgemm", &r.sgemm);
    print_report(c, &r, &ci, name, threads);
    return 0;
}

static int cmd_bench(int argc, char **argv) {
    ddpm_bench_config c;
    ddpm_bench_config_default(&c);
    int threads = 0;
    float seconds = 10.0f;
    const char *only = "all", *precision = "fp32";
    ddpm_opt own[] = {
        {"--threads", NULL, OPT_INT, &threads, 0, 1024, "N", "threads, 0 = all cores (default 0)"},
        {"--seconds", NULL, OPT_FLOAT, &seconds, 0.0, 3600.0, "S", "seconds per part, after warm-up (default 10)"},
        {"--batch", NULL, OPT_INT, &c.batch, 1, 4096, "N", "images per training step / denoising call (default 64)"},
        {"--warmup", NULL, OPT_INT, &c.warmup, 0, 1000, "N", "untimed iterations before each part (default 3)"},
        {"--only", NULL, OPT_STRING, &only, 0, 0, "PART", "run one part: train, sample or sgemm (default all)"},
        {"--sgemm-size", NULL, OPT_INT, &c.sgemm_n, 16, 16384, "N", "sgemm of N x N matrices (default 2048)"},
        {"--seed", NULL, OPT_U64, &c.seed, 0, 0, "N", "random seed of the data and weights (default 0)"},
        {"--profile", NULL, OPT_FLAG, &c.profile, 0, 0, NULL, "also time each layer kind (table on stderr)"},
        {"--precision", NULL, OPT_STRING, &precision, 0, 0, "P", "the UNet's products: fp32 or bf16 (default fp32)"},
    };
    ddpm_opt opts[DDPM_COUNT(own) + DDPM_MODEL_OPTS];
    memcpy(opts, own, sizeof own);
    ddpm_model_opts(opts + DDPM_COUNT(own), &c.model);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, (int)DDPM_COUNT(opts),
                             "usage: ddpm bench [options] [model options]\n\n"
                             "Time the training step and the denoiser on random data (no dataset needed)\n"
                             "and a large sgemm; print key=value lines (medians over timed iterations).",
                             "Parts: train = ddpm_trainer_step, as `ddpm train` runs it; sample = one forward\n"
                             "of the inference model on --batch images at random t; sgemm = a square float32\n"
                             "product through OpenBLAS with the same threads. train_gflops = 3 x forward FLOPs\n"
                             "x batch / median step time; gflops_ratio = train / sgemm. --precision bf16 rounds\n"
                             "both operands of every product to bfloat16 and sums in float. The keys are in\n"
                             "docs/performance.md; scripts/bench.sh runs this next to PyTorch.");
    if (rc) return rc == 1 ? 0 : rc;
    static const char *const parts[] = {"all", "train", "sample", "sgemm"};
    const int part = ddpm_enum_lookup("part", parts, 0, 4, only), prec = part < 0 ? 0 : ddpm_precision_parse(precision);
    if (ddpm_cli_check_name(CMD, "--only", part) || ddpm_cli_check_name(CMD, "--precision", prec)) return 2;
    c.train = part == 0 || part == 1;
    c.sample = part == 0 || part == 2;
    c.sgemm = part == 0 || part == 3;
    c.precision = (ddpm_precision)prec;
    c.seconds = seconds;
    if (ddpm_model_flags_check(CMD, &c.model, opts + DDPM_COUNT(own), DDPM_MODEL_OPTS)) return 2;
    return run(&c, ddpm_set_threads(threads));
}

const ddpm_cli_command ddpm_cmd_bench = {"bench", cmd_bench, "time training, sampling and sgemm on a fixed workload"};
