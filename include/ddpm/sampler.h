/* sampler.h: the sampler driver. Runs DDPM, DDIM, DPM-Solver++(2M)
 * (diffusion.h) or the Karras samplers Euler, Heun and Euler ancestral
 * (below; docs/design.md §9) over any noise predictor, in batches, with one random stream
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
 * stream and the noise z of each later noisy step the next D. Within a
 * step the draws come in this order: the churn noise (euler, heun with
 * churn), the step's own noise (ddpm, ddim with eta > 0, euler_a), then,
 * when inpainting, the noise of the kept region and of each resampling
 * jump (ddpm_sampler_edit). An edit's start noise is the x_T draw.
 *
 * The Karras samplers (euler, heun, euler_a) work in the sigma view:
 * sigma_t = sqrt((1 - ab_t) / ab_t) and x~ = x_t / sqrt(ab_t) = x0 + sigma eps,
 * on the grid sig[0..K] (decreasing, sig[K] = 0; ddpm_karras_sigmas). The
 * model gets x~ / sqrt(sigma^2 + 1) (= x_t) at the integer timestep nearest
 * to ddpm_sigma_to_t(sigma): diffusers' Euler and Heun schedulers pass the
 * fractional t, our UNet's time embedding takes integers. K counts sigma
 * steps: euler and euler_a call the model K times, heun 2K - 1 times (no
 * correction on the last step, to sigma = 0). on_step sees x_t (x~ scaled
 * back), so trajectories look alike for every sampler.
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

/* Default K: min(100, T) for ddpm (respaced), min(50, T) for ddim, euler and
 * euler_a, min(20, T - 1) for dpm++2m, min(10, T) for heun (19 model calls). */
int ddpm_sampler_default_steps(ddpm_sampler_kind kind, int T);
/* Largest K a sampler supports: T (ddpm, ddim, the Karras samplers), T - 1
 * (dpm++2m, which never calls the model at t = 0; see ddpm_sampler_timesteps). */
int ddpm_sampler_max_steps(ddpm_sampler_kind kind, int T);
/* The default spacing: uniform for ddpm and ddim, logsnr for dpm++2m. */
ddpm_spacing ddpm_sampler_default_spacing(ddpm_sampler_kind kind);
/* The options beyond kind and steps in words, for a header line: "var small",
 * "eta 0" or "deterministic", then ", uniform spacing" (ddim, dpm++2m: the
 * default spacing when o->spacing is 0); the Karras samplers: "deterministic",
 * "churn" or "ancestral", ", karras sigmas" (", S_churn 2" with churn). */
void ddpm_sampler_describe(char *buf, size_t cap, const ddpm_sampler_opts *o);

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

/* ---- the sigma grid of the Karras samplers ------------------------------------ */

/* The fractional t in [0, T-1] of a sigma: log sigma interpolated linearly
 * between the schedule's neighbouring log sigma_t, clamped to the ends (as
 * diffusers' _sigma_to_t). */
double ddpm_sigma_to_t(const ddpm_schedule *s, double sigma);
/* sig[0..K] (K >= 1), decreasing, sig[K] = 0. DDPM_SIGMAS_KARRAS: with
 * smax = sigma_{T-1}, smin = sigma_0 and rho = 7,
 *   sig[i] = (smax^(1/rho) + i/(K-1) (smin^(1/rho) - smax^(1/rho)))^rho
 * (K = 1: smax). DDPM_SIGMAS_SCHEDULE: sigma_t at the K timesteps of the
 * spacing sp (ddpm_sampler_timesteps), top first. */
ddpm_status ddpm_karras_sigmas(double *sig, int K, const ddpm_schedule *s, ddpm_sigmas g, ddpm_spacing sp);

/* The driver. Fields are private; read K and tau (the visited entries). */
typedef struct {
    ddpm_sampler_opts o; /* resolved: steps = K > 0, spacing not DEFAULT */
    const ddpm_schedule *s;
    ddpm_schedule rs;    /* DDPM with K < T: s respaced to tau */
    int K, *tau;         /* [K] entries of s, increasing (Karras: the model's t of sig[K-1-i]) */
    double *sig;         /* Karras samplers: [K + 1] the sigma grid, else NULL */
    size_t D;
    int max_batch;
    float *work;         /* [6 B D] model outputs, noise, previous x0_hat, model input */
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

/* ---- editing: SDEdit, RePaint, given latents, DDIM inversion (docs/design.md §9) ---- */

typedef struct {
    /* SDEdit: x_init [n, D] (the run's images, model space) noised to the
     * start; NULL: none. The start is the visited timestep (Karras: grid
     * sigma) at or below t_s = ceil(strength T) - 1, and
     *   x = sqrt(ab) x_init + sqrt(1 - ab) eps   (eps: the x_T draw)
     * with ab its alpha_bar (Karras: 1 / (sigma^2 + 1)). strength 1 starts
     * from x_T = eps itself: the plain run, bit for bit. */
    const float *x_init;
    float strength;      /* (0, 1] */
    /* RePaint: keep [D] (1 = keep x_init's value, 0 = regenerate) needs
     * x_init. After every step to t' the kept elements become
     * sqrt(ab_t') x_init + sqrt(1 - ab_t') eps (fresh eps; Karras: x_init +
     * sigma' eps), after the last step x_init itself (bit for bit). With
     * resample R, each step but the last is redone R more times, each after
     * pushing x back from t' to t by q(x_t | x_t'). Not with dpm++2m. */
    const uint8_t *keep;
    int resample;
    /* Start from these latents x_T [n, D] instead of the streams' draw (no
     * SDEdit then); NULL: draw. */
    const float *x_T;
} ddpm_sampler_edit;

/* The visited steps an edit runs (K, or fewer for SDEdit), or an error
 * (DDPM_ERR_ARG) when the options do not fit the sampler. e may be NULL. */
ddpm_status ddpm_sampler_edit_steps(const ddpm_sampler *sm, const ddpm_sampler_edit *e, int *steps);
/* ddpm_sampler_run with an edit (e may be NULL: the plain run). on_step
 * counts the steps the edit runs. */
ddpm_status ddpm_sampler_run_edit(ddpm_sampler *sm, float *x, int first, int n, uint64_t seed,
                                  const int *labels, ddpm_model_fn model, void *ctx,
                                  ddpm_step_fn on_step, void *ud, const ddpm_sampler_edit *e);
/* DDIM inversion of x [n, D] in place, x_0 in, x_T out: the sampler must be
 * ddim (its K timesteps tau); ddpm_ddim_invert_step from t = -1 to tau[0]
 * with eps_hat at (x_0, tau[0]), then tau[i] -> tau[i + 1] with eps_hat at
 * x_{tau[i]}: K model calls. Deterministic; then a ddim run (eta 0) from
 * x_T retraces the path. */
ddpm_status ddpm_sampler_invert(ddpm_sampler *sm, float *x, int n, const int *labels, ddpm_model_fn model,
                                void *ctx);

/* Spherical interpolation of a and b [D] (docs/design.md §9):
 * out = sin((1-l) th)/sin th a + sin(l th)/sin th b, cos th = a.b/(|a||b|);
 * linear when th is below 1e-6. out may alias neither. */
void ddpm_slerp(float *out, const float *a, const float *b, size_t D, double l);

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
