/* sampler.h: the sampler driver. Runs DDPM, DDIM or DPM-Solver++(2M)
 * (diffusion.h) over any noise predictor, in batches, with one random stream
 * per image, so that an image depends only on (model, sampler options, seed,
 * its index): never on how many images are drawn or on the thread count.
 * The batch size can move the last bits of the floats (the GEMM kernels
 * OpenBLAS picks depend on a product's row count), so a u8 pixel at a
 * rounding boundary can differ between --batch values; the same batch
 * size gives the same bits. Also: the timestep spacings, classifier-free guidance
 * (docs/design.md §7) as a model wrapper, and the label layout of class grids.
 *
 * Shape letters: n images in all, B images per model call (max_batch),
 * D = elements per image. Image buffers are [n, D] floats.
 *
 * Random streams: image i draws from a ddpm_rng seeded with
 * ddpm_sampler_image_seed(seed, i); its x_T is the first D normals of that
 * stream and the noise z of each later noisy step the next D.
 *
 * Usage:
 *   ddpm_sampler sm;
 *   ddpm_sampler_create(&sm, &schedule, &opts, D, B);
 *   ddpm_sampler_run(&sm, x, 0, n, seed, labels, ddpm_unet_eps, unet, NULL, NULL);
 *   ddpm_sampler_destroy(&sm);
 */
#ifndef DDPM_SAMPLER_H
#define DDPM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/diffusion.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h" /* ddpm_unet_eps, the usual model */

/* The noise predictor: eps_hat = eps_theta(x, t, labels). eps_hat, x: [N, D];
 * t: [N] original timesteps; labels: [N] class labels (num_classes = "no
 * label") or NULL (unconditional). Return DDPM_OK or an error (with
 * ddpm_error); sampling stops with that status. */
typedef ddpm_status (*ddpm_model_fn)(void *ctx, float *eps_hat, const float *x, const int *t,
                                     const int *labels, int N);

/* Called with images first..first+N-1 (x: [N, D]) after step `step` of
 * nsteps; step 0 is x_T, step nsteps is x_0. */
typedef void (*ddpm_step_fn)(void *ud, int first, int N, int step, int nsteps, const float *x);

/* The seed of image i's stream: mix64(seed) ^ (GOLDEN * (i + 1)). */
uint64_t ddpm_sampler_image_seed(uint64_t seed, int64_t i);

/* Default K: min(100, T) for ddpm (respaced), min(50, T) for ddim, min(20, T - 1) for dpm++2m. */
int ddpm_sampler_default_steps(ddpm_sampler_kind kind, int T);
/* Largest K a sampler supports: T (ddpm, ddim), T - 1 (dpm++2m, which never
 * calls the model at t = 0; see ddpm_sampler_timesteps). */
int ddpm_sampler_max_steps(ddpm_sampler_kind kind, int T);
/* The default spacing: uniform for ddpm and ddim, logsnr for dpm++2m. */
ddpm_spacing ddpm_sampler_default_spacing(ddpm_sampler_kind kind);

/* tau[0..K): the strictly increasing entries of s a sampler visits, from
 * a grid of P points in [0, T-1] that always holds 0 and T-1 (P = K; P = K+1
 * when skip_zero, and the grid's 0 is then dropped):
 *   uniform:   tau_i = round(i (T-1) / (P-1))  (ddpm_schedule_respace)
 *   quadratic: tau_i = round((i / (P-1))^2 (T-1))
 *   logsnr:    lambda_t = log(sqrt(ab_t / (1 - ab_t))) evenly spaced from
 *              lambda_{T-1} to lambda_0, each mapped to the t where the
 *              linear interpolation of lambda over t meets it, rounded
 * then made strictly increasing (duplicates pushed up, the top kept at T-1).
 * skip_zero is what dpm++2m uses: like diffusers' timestep_spacing="linspace"
 * (K + 1 points, t = 0 dropped), its last step goes to sigma = 0 from the
 * smallest kept t. Requires 1 <= P <= T. */
ddpm_status ddpm_sampler_timesteps(int *tau, int K, const ddpm_schedule *s, ddpm_spacing sp,
                                   int skip_zero);

/* The driver. Fields are private; read K and tau (the visited entries). */
typedef struct {
    ddpm_sampler_opts o; /* resolved: steps = K > 0, spacing not DEFAULT */
    const ddpm_schedule *s;
    ddpm_schedule rs;    /* DDPM with K < T: s respaced to tau */
    int K, *tau;         /* [K] entries of s, increasing */
    size_t D;
    int max_batch;
    float *work;         /* [3 B D] model output, noise, previous x0_hat */
    int *tt;             /* [B] model timesteps */
    ddpm_rng *rngs;      /* [B] per-image streams */
} ddpm_sampler;

/* Checks o (kind, var, eta in [0, 1] for ddim, 1 <= steps <= max_steps; steps 0
 * = the default) against the base schedule s (kept by pointer: it must
 * outlive the sampler) and allocates everything a run needs. */
ddpm_status ddpm_sampler_create(ddpm_sampler *sm, const ddpm_schedule *s, const ddpm_sampler_opts *o,
                              size_t D, int max_batch);
/* Safe on a zeroed or failed sampler. (create/destroy, not init/free: data.h
 * still names its epoch shuffler ddpm_sampler_init/free.) */
void ddpm_sampler_destroy(ddpm_sampler *sm);

/* Samples images first..first+n-1 into x [n, D] (x_T from the streams, then
 * the K steps), max_batch images per model call. labels: [n] (those images'
 * labels) or NULL. on_step (may be NULL) sees every batch's state at steps
 * 0..K. No allocation. Returns DDPM_ERR_NUMERIC if the model predicts a
 * non-finite value. */
ddpm_status ddpm_sampler_run(ddpm_sampler *sm, float *x, int first, int n, uint64_t seed,
                             const int *labels, ddpm_model_fn model, void *ctx,
                             ddpm_step_fn on_step, void *ud);

/* ---- classifier-free guidance (Ho & Salimans; docs/design.md §7) -------------- */

/* A ddpm_model_fn wrapper: for N images with labels c, one call of the inner
 * model on 2N images ([x; x], [c; K]) with K = num_classes the "no label"
 * row, then eps = (1 - w) eps_u + w eps_c per element in double (so w = 0
 * gives eps_u and w = 1 gives eps_c bit for bit). The inner model must take
 * batches of 2 max_batch. labels NULL: all "no label". */
typedef struct {
    ddpm_model_fn model;
    void *ctx;
    double w;
    int num_classes;
    size_t D;
    int max_batch;
    float *x2, *eps2; /* [2B, D] */
    int *t2, *lab2;   /* [2B] */
} ddpm_guidance;

/* w must be finite and >= 0, num_classes > 0. */
ddpm_status ddpm_guidance_init(ddpm_guidance *g, ddpm_model_fn model, void *ctx, float w,
                               int num_classes, size_t D, int max_batch);
void ddpm_guidance_free(ddpm_guidance *g);
ddpm_status ddpm_guidance_eps(void *g, float *eps_hat, const float *x, const int *t,
                              const int *labels, int N);

/* ---- class grids --------------------------------------------------------- */

#define DDPM_LABEL_COLS_MAX 32 /* cycled labels get one grid column per class up to this */

/* labels[0..n): all `label` when label >= 0, else cycling 0..num_classes-1
 * (image i gets i % num_classes). Returns the grid columns that put one class
 * per column (num_classes, when cycling and num_classes <= DDPM_LABEL_COLS_MAX),
 * else 0 (the grid's default). num_classes must be > 0. */
int ddpm_sampler_labels(int *labels, int n, int num_classes, int label);

#endif
