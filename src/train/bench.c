/* bench.c: the `ddpm bench` workload and its timing (bench.h). */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ddpm/diffusion.h"
#include "ddpm/rng.h"
#include "ddpm/tensor.h"
#include "ddpm/train.h"
#include "core/prof.h"
#include "ddpm/progress.h" /* ddpm_now */
#include "nn/gemm_tile.h"
#include "nn/simd.h" /* DDPM_X86, <cpuid.h> */

_Static_assert(DDPM_PROF_KINDS <= DDPM_BENCH_PROF_KINDS, "bench.h: room for every profiler kind");

void ddpm_bench_config_default(ddpm_bench_config *c) {
    memset(c, 0, sizeof *c);
    ddpm_unet_config_default(&c->model);
    c->batch = 64;
    c->warmup = 3;
    c->sgemm_n = 2048;
    c->seconds = 10.0;
    c->train = c->sample = c->sgemm = true;
}


static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[n], interpolating between order statistics. */
static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

/* One part: prep (untimed, may be NULL) then fn, c->warmup times untimed,
 * then timed until c->seconds have passed and at least MIN_ITERS ran. */
typedef ddpm_status (*bench_fn)(void *ctx);

static ddpm_status measure(const ddpm_bench_config *c, const char *part, bench_fn prep, bench_fn fn,
                           void *ctx, bool profile, ddpm_bench_stats *st) {
    ddpm_status s = DDPM_OK;
    int cap = 256, n = 0;
    double *t = malloc((size_t)cap * sizeof *t), total = 0;
    if (!t) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->warmup && !s; i++)
        if (!(prep && (s = prep(ctx)))) s = fn(ctx);
    if (c->progress && !s) c->progress(c->progress_ctx, part, 0, 0.0);
    ddpm_prof_reset();
    ddpm_prof_enable(profile);
    const double start = ddpm_now();
    while (!s && (n < DDPM_BENCH_MIN_ITERS || ddpm_now() - start < c->seconds)) {
        if (prep && (s = prep(ctx))) break;
        const double t0 = ddpm_now();
        if ((s = fn(ctx))) break;
        const double dt = ddpm_now() - t0;
        if (n == cap) {
            double *g = realloc(t, (size_t)(cap *= 2) * sizeof *t);
            if (!g) {
                s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
                break;
            }
            t = g;
        }
        t[n++] = dt;
        total += dt;
        if (c->progress) c->progress(c->progress_ctx, part, n, ddpm_now() - start);
    }
    ddpm_prof_enable(false);
    if (!s) {
        qsort(t, (size_t)n, sizeof *t, cmp_double);
        *st = (ddpm_bench_stats){.n = n, .total = total, .median = quantile(t, n, 0.5),
                                 .p10 = quantile(t, n, 0.1), .p90 = quantile(t, n, 0.9)};
        for (int k = 0; k < DDPM_PROF_KINDS; k++)
            for (int p = 0; p < DDPM_PROF_PASSES; p++) st->prof[k][p] = ddpm_prof_seconds(k, p);
    }
    free(t);
    return s;
}

/* ---- the three workloads ------------------------------------------------------------- */

typedef struct {
    const ddpm_bench_config *c;
    ddpm_train_config tc;
    size_t D;        /* floats per image */
    float *x0, *out; /* (B, D) */
    int *t, *labels; /* (B) */
    const int *lab;  /* labels, or NULL for an unconditional model */
    ddpm_rng rng;
    ddpm_trainer *tr;
    ddpm_unet *inf;
    const float *A, *Bm; /* sgemm (n, n) operands */
    float *C;
} bench_run;

static ddpm_status train_step(void *p) {
    bench_run *r = p;
    return ddpm_trainer_step(r->tr, r->x0, r->lab, NULL);
}

static ddpm_status sample_prep(void *p) {
    bench_run *r = p;
    ddpm_sample_timesteps(r->t, r->c->batch, r->tc.T, &r->rng);
    return DDPM_OK;
}

static ddpm_status sample_step(void *p) {
    bench_run *r = p;
    return ddpm_unet_forward(r->inf, r->out, r->x0, r->t, r->lab, r->c->batch);
}

static ddpm_status sgemm_step(void *p) {
    bench_run *r = p;
    const int n = r->c->sgemm_n;
    ddpm_gemm(false, false, n, n, n, 1.0f, r->A, n, r->Bm, n, 0.0f, r->C, n);
    return DDPM_OK;
}

static ddpm_status part_train(bench_run *r, ddpm_bench_result *res) {
    ddpm_status s = ddpm_trainer_create(&r->tr, &r->tc);
    if (!s) s = measure(r->c, "train", NULL, train_step, r, r->c->profile, &res->train);
    res->peak_rss_mb = peak_rss_mb();
    ddpm_trainer_free(r->tr);
    return s;
}

static ddpm_status part_sample(bench_run *r, ddpm_bench_result *res) {
    const ddpm_bench_config *c = r->c;
    ddpm_status s = ddpm_unet_create(&r->inf, &c->model, c->batch, false);
    if (s) return s;
    ddpm_unet_set_precision(r->inf, c->precision);
    ddpm_unet_init_params(r->inf, c->seed);
    ddpm_rng_fill_normal(&r->rng, r->x0, (size_t)c->batch * r->D); /* x_t ~ N(0, I) */
    s = measure(c, "sample", sample_prep, sample_step, r, c->profile, &res->sample);
    if (!c->train) res->peak_rss_mb = peak_rss_mb();
    ddpm_unet_free(r->inf);
    return s;
}

static ddpm_status part_sgemm(bench_run *r, ddpm_bench_result *res) {
    const size_t nn = (size_t)r->c->sgemm_n * r->c->sgemm_n;
    float *A = ddpm_malloc(nn * sizeof(float)), *Bm = ddpm_malloc(nn * sizeof(float));
    float *C = ddpm_calloc(nn, sizeof(float));
    ddpm_status s = DDPM_ERR_NOMEM;
    if (A && Bm && C) {
        ddpm_rng_fill_uniform(&r->rng, A, nn, -1.0f, 1.0f);
        ddpm_rng_fill_uniform(&r->rng, Bm, nn, -1.0f, 1.0f);
        r->A = A, r->Bm = Bm, r->C = C;
        s = measure(r->c, "sgemm", NULL, sgemm_step, r, false, &res->sgemm);
        if (!r->c->train && !r->c->sample) res->peak_rss_mb = peak_rss_mb();
    }
    ddpm_free(A);
    ddpm_free(Bm);
    ddpm_free(C);
    return s;
}

ddpm_status ddpm_bench_run(const ddpm_bench_config *c, ddpm_bench_result *res) {
    memset(res, 0, sizeof *res);
    res->base_rss_mb = peak_rss_mb();
    if (c->batch < 1 || c->sgemm_n < 1 || c->warmup < 0 || !(c->seconds >= 0))
        return ddpm_error(DDPM_ERR_ARG, "bench: batch, sgemm size and seconds must be positive");
    ddpm_status s = ddpm_unet_describe(&c->model, &res->params, &res->flops);
    if (s) return s;
    bench_run r = {.c = c, .D = (size_t)c->model.in_ch * c->model.res * c->model.res};
    ddpm_train_config_default(&r.tc);
    r.tc.model = c->model;
    r.tc.batch = c->batch;
    r.tc.iters = 1000000000; /* the LR schedule's length: irrelevant to speed */
    r.tc.seed = c->seed;
    r.tc.T = 1000;
    r.tc.schedule = DDPM_SCHED_LINEAR;
    r.tc.objective = DDPM_OBJ_EPS; /* the reference's workload (bench_torch.py: eps, plain L2, linear, T = 1000) */
    r.tc.snr_gamma = 0.0f;
    r.tc.precision = c->precision;
    res->T = r.tc.T;
    const size_t n = (size_t)c->batch * r.D;
    r.x0 = ddpm_malloc(n * sizeof(float));
    r.out = ddpm_malloc(n * sizeof(float));
    r.t = malloc((size_t)c->batch * sizeof *r.t);
    r.labels = malloc((size_t)c->batch * sizeof *r.labels);
    if (!r.x0 || !r.out || !r.t || !r.labels) {
        s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    } else {
        ddpm_rng_seed(&r.rng, c->seed ^ 0xbe9c4ULL); /* x0 ~ U(-1, 1), labels uniform */
        ddpm_rng_fill_uniform(&r.rng, r.x0, n, -1.0f, 1.0f);
        const int K = c->model.num_classes;
        for (int i = 0; i < c->batch; i++)
            r.labels[i] = K > 0 ? (int)ddpm_rng_below(&r.rng, (uint32_t)K) : 0;
        r.lab = K > 0 ? r.labels : NULL;
        if (c->train) s = part_train(&r, res);
        if (!s && c->sample) s = part_sample(&r, res);
        if (!s && c->sgemm) s = part_sgemm(&r, res);
    }
    ddpm_free(r.x0);
    ddpm_free(r.out);
    free(r.t);
    free(r.labels);
    return s;
}

/* ---- the machine ------------------------------------------------------------------- */

void ddpm_cpu_info_get(ddpm_cpu_info *ci) {
    memset(ci, 0, sizeof *ci);
    snprintf(ci->vendor, sizeof ci->vendor, "unknown");
#ifdef DDPM_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    memcpy(ci->vendor, &b, 4), memcpy(ci->vendor + 4, &d, 4), memcpy(ci->vendor + 8, &c, 4);
    ci->vendor[12] = '\0';
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const int fam = (int)(a >> 8 & 0xF), mod = (int)(a >> 4 & 0xF);
        ci->family = fam == 0xF ? fam + (int)(a >> 20 & 0xFF) : fam;
        ci->model = fam == 0xF || fam == 6 ? mod + (int)((a >> 16 & 0xF) << 4) : mod;
    }
    unsigned brand[12] = {0};
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u)
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
    memcpy(ci->name, brand, sizeof brand < sizeof ci->name - 1 ? sizeof brand : sizeof ci->name - 1);
    for (int i = (int)strlen(ci->name) - 1; i >= 0 && ci->name[i] == ' '; i--) ci->name[i] = '\0';
    __builtin_cpu_init();
    const struct {
        const char *name;
        int has;
    } f[] = {{"avx2", __builtin_cpu_supports("avx2")},
             {"fma", __builtin_cpu_supports("fma")},
             {"avx512f", __builtin_cpu_supports("avx512f")},
             {"avx512bw", __builtin_cpu_supports("avx512bw")},
             {"avx512vl", __builtin_cpu_supports("avx512vl")},
             {"avx512_bf16", ddpm_bf16_isa_supported(DDPM_BF16_AVX512)}};
    size_t k = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].has) k += (size_t)snprintf(ci->features + k, sizeof ci->features - k, "%s%s", k ? " " : "", f[i].name);
#endif
}

const char *ddpm_bench_tile_kernel(void) { return ddpm_isa_name(ddpm_isa_selected()); }
const char *ddpm_bench_bf16_kernel(void) { return ddpm_bf16_isa_name(ddpm_bf16_isa_selected()); }
