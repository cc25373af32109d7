/* bench.h: the fixed training and sampling workload of `ddpm bench`, timed.
 *
 * The workload (no dataset needed, everything is random):
 *   train   one ddpm_trainer_step per iteration on a fixed random batch in
 *           [-1, 1]: t ~ U{0..T-1}, eps ~ N(0, I), q_sample, forward, L2 loss
 *           (the eps objective, as the PyTorch reference bench_torch.py),
 *           backward, global-norm clip, AdamW, EMA update: what `ddpm train`
 *           runs per iteration, minus reading the dataset.
 *   sample  one ddpm_unet_forward of an INFERENCE model (no saved
 *           activations, as the sampler uses it) on `batch` random images at
 *           random timesteps: one denoising step of `batch` images.
 *   sgemm   C = A B with square float matrices through ddpm_gemm (OpenBLAS)
 *           with the same threads: the machine's practical peak.
 * Each part runs `warmup` untimed iterations, then timed ones until `seconds`
 * have passed (at least DDPM_BENCH_MIN_ITERS); every iteration is timed on
 * its own and the statistics are the median and the 10th / 90th percentiles
 * (numpy's "linear" quantiles), robust to the noise of a shared machine.
 */
#ifndef DDPM_BENCH_H
#define DDPM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/unet.h"

#define DDPM_BENCH_MIN_ITERS 3
#define DDPM_BENCH_PROF_KINDS 16 /* room for the profiler's layer kinds */

typedef struct {
    int n;                   /* timed iterations */
    double total;            /* seconds, sum over the timed iterations */
    double median, p10, p90; /* seconds per iteration */
    /* with profile: seconds per layer kind (core/prof.h's ddpm_prof_kind) and
     * pass (0 forward, 1 backward), summed over the timed iterations */
    double prof[DDPM_BENCH_PROF_KINDS][2];
} ddpm_bench_stats;

/* Progress of a part ("train", "sample", "sgemm"): called after the warm-up
 * (iters = 0) and after each timed iteration (elapsed: seconds since the
 * timed iterations began). */
typedef void (*ddpm_bench_progress_fn)(void *ctx, const char *part, int iters, double elapsed);

typedef struct {
    ddpm_unet_config model;
    int batch;              /* images per training step / denoising call */
    int warmup;             /* untimed iterations before each part */
    int sgemm_n;            /* sgemm of n x n */
    double seconds;         /* per part, after the warm-up */
    bool train, sample, sgemm; /* the parts to run, in this order */
    bool profile;           /* time each layer kind too */
    uint64_t seed;          /* of the data and the weights */
    ddpm_precision precision; /* of the UNet's products in train and sample */
    ddpm_bench_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} ddpm_bench_config;

/* batch 64, warmup 3, sgemm 2048, 10 s, every part, FP32, the reference model
 * (ddpm_unet_config_default; `ddpm train` defaults to a narrower one). */
void ddpm_bench_config_default(ddpm_bench_config *c);

typedef struct {
    ddpm_bench_stats train, sample, sgemm; /* the parts that ran */
    int T;                /* diffusion timesteps of the training workload */
    size_t params;        /* the model's parameters */
    double flops;         /* forward FLOPs per image (ddpm_unet_describe) */
    double base_rss_mb;   /* peak resident memory before any model existed */
    double peak_rss_mb;   /* ... right after the first part that ran */
} ddpm_bench_result;

ddpm_status ddpm_bench_run(const ddpm_bench_config *c, ddpm_bench_result *r);

/* The processor (x86 cpuid; elsewhere vendor "unknown" and family/model 0):
 * vendor id, family and model as /proc/cpuinfo counts them (extended fields
 * added), the brand string, and the SIMD features ddpm's kernels use that it
 * has, space-separated: avx2 fma avx512f avx512bw avx512vl avx512_bf16. */
typedef struct {
    char vendor[16];
    int family, model;
    char name[64];
    char features[96];
} ddpm_cpu_info;
void ddpm_cpu_info_get(ddpm_cpu_info *ci);

/* The kernel paths in use: the float tile GEMMs ("avx512", "avx2",
 * "generic", "blas"; DDPM_KERNEL forces one) and the bf16 products
 * ("avx512bf16", "portable"; DDPM_BF16=portable forces the latter). */
const char *ddpm_bench_tile_kernel(void);
const char *ddpm_bench_bf16_kernel(void);

#endif
