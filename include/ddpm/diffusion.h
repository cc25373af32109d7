/* diffusion.h: the forward process q(x_t | x_0) and the reverse steps of the
 * DDPM, DDIM and DPM-Solver++(2M) samplers (docs/design.md §5, §7). The model is
 * not called here: the sampler loop takes a callback that predicts the noise.
 * The sampler driver with per-image random streams, timestep spacings and
 * guidance is in sampler.h.
 *
 * Shape letters: N images, D = elements per image (C*H*W). Image buffers are
 * [N, D] floats; per-element arithmetic is done in double and rounded once.
 * Timesteps are 0-based.
 */
#ifndef DDPM_DIFFUSION_H
#define DDPM_DIFFUSION_H

#include <stddef.h>

#include "ddpm/common.h"
#include "ddpm/data.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"

typedef enum { DDPM_VAR_SMALL = 0, DDPM_VAR_LARGE } ddpm_var_kind;
/* EULER, HEUN and EULER_A work in the sigma view on a Karras grid
 * (docs/design.md §9; sampler.h). */
typedef enum {
    DDPM_SAMPLER_DDPM = 0,
    DDPM_SAMPLER_DDIM,
    DDPM_SAMPLER_DPMPP_2M,
    DDPM_SAMPLER_EULER,
    DDPM_SAMPLER_HEUN,
    DDPM_SAMPLER_EULER_A
} ddpm_sampler_kind;
/* The sigma grid of the Karras samplers: Karras et al.'s rho = 7 grid
 * between the schedule's sigma at t = T-1 and t = 0 (the default), or the
 * schedule's own sigmas at the timesteps of the spacing. */
typedef enum { DDPM_SIGMAS_KARRAS = 0, DDPM_SIGMAS_SCHEDULE } ddpm_sigmas;
/* The timestep subsequence a sampler visits (see ddpm_sampler_timesteps in
 * sampler.h). DEFAULT = the sampler's default: uniform for ddpm and ddim,
 * logsnr for dpm++2m. */
typedef enum {
    DDPM_SPACING_DEFAULT = 0,
    DDPM_SPACING_UNIFORM,
    DDPM_SPACING_QUADRATIC,
    DDPM_SPACING_LOGSNR
} ddpm_spacing;

/* "small" / "large", "ddpm" / "ddim" / "dpm++2m" / "euler" / "heun" / "euler_a",
 * "karras" / "schedule" and "uniform" / "quadratic" /
 * "logsnr" <-> kind; parse returns -1 if unknown (the last error names the
 * known ones: "unknown sampler 'X' (expected ddpm, ...)"), name "?" if invalid. */
int ddpm_var_parse(const char *name);
const char *ddpm_var_name(ddpm_var_kind kind);
int ddpm_sampler_parse(const char *name);
const char *ddpm_sampler_name(ddpm_sampler_kind kind);
int ddpm_spacing_parse(const char *name);
const char *ddpm_spacing_name(ddpm_spacing sp);
int ddpm_sigmas_parse(const char *name);
const char *ddpm_sigmas_name(ddpm_sigmas g);
/* True for the sigma-view samplers (euler, heun, euler_a). */
int ddpm_sampler_is_karras(ddpm_sampler_kind kind);

/* ---- forward process ------------------------------------------------------ */

/* x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, with image n at
 * timestep t[n] (an index into s's arrays).
 * xt, x0, eps: [N, D]; t: [N]. xt may alias x0 or eps. */
void ddpm_q_sample(float *xt, const float *x0, const float *eps, const int *t,
                   const ddpm_schedule *s, int N, size_t D);

/* Forward trajectories of the first n images of ds: grid [n, 1 + L, D] gets
 * per image x_0, then x_t for t[0..L) (indices into s), with ONE eps per
 * image for all its columns, drawn in image order by ddpm_rng_fill_normal
 * from a generator seeded with seed. */
void ddpm_q_trajectories(float *grid, const ddpm_dataset *ds, int n, const int *t, int L, const ddpm_schedule *s,
                         uint64_t seed);
/* The timesteps of those columns: list "0,100,999" (at most max, each in
 * [0, T-1]) into t, or for list NULL min(T, 10) evenly spaced from 0 to
 * T-1 (ddpm_schedule_respace). The count, or -1 with the error ("timestep
 * 1000 out of range [0, 999] (T = 1000)", "at most 64 timesteps", ...). */
int ddpm_timesteps_parse(const char *list, int T, int *t, int max);

/* t[0..N) uniform in [0, T), drawn in order with ddpm_rng_below. */
void ddpm_sample_timesteps(int *t, int N, int T, ddpm_rng *rng);

/* ---- reverse steps -------------------------------------------------------- */

/* One ancestral DDPM step at entry i of s (s may be respaced), the same i for
 * the whole batch:
 *   x0_hat = clip((x_t - sqrt(1 - ab_i) eps_hat) / sqrt(ab_i), -1, 1)
 *   x_prev = coef_x0_i x0_hat + coef_xt_i x_t + sigma_i z
 * sigma_i = sqrt(posterior_var_i) (small) or sqrt(beta_i) (large), and
 * sigma_0 = 0 for both (no noise at the last step, as in Ho et al.).
 * x_prev, xt, eps_hat, z: [N, D]. z may be NULL (no noise); it is not read
 * when i == 0. x_prev may alias xt. */
void ddpm_p_step(float *x_prev, const float *xt, const float *eps_hat, const float *z, int i,
                 const ddpm_schedule *s, ddpm_var_kind var, int N, size_t D);

/* One DDIM step (Song et al.) from entry t to entry t_prev < t of s
 * (t_prev = -1: alpha_bar_prev = 1, the final step to x_0):
 *   x0_hat = clip((x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t), -1, 1)
 *   eps'   = (x_t - sqrt(ab_t) x0_hat) / sqrt(1 - ab_t)
 *   sigma  = eta sqrt((1 - ab_prev)/(1 - ab_t)) sqrt(1 - ab_t/ab_prev)
 *   x_prev = sqrt(ab_prev) x0_hat + sqrt(max(0, 1 - ab_prev - sigma^2)) eps' + sigma z
 * x_prev, x0_out, xt, eps_hat, z: [N, D]. x0_out (gets x0_hat) may be NULL;
 * z may be NULL (z = 0: sigma still shrinks the eps' term) and is not read
 * when sigma == 0. x_prev may alias xt. */
void ddpm_ddim_step(float *x_prev, float *x0_out, const float *xt, const float *eps_hat,
                    const float *z, int t, int t_prev, float eta, const ddpm_schedule *s, int N,
                    size_t D);

/* One DPM-Solver++(2M) step (Lu et al. 2022, data prediction, multistep;
 * docs/design.md §7) from entry t to entry t_next < t of s (t_next = -1: sigma = 0,
 * the end). With a_t = sqrt(ab_t), s_t = sqrt(1 - ab_t), lambda_t = log(a_t/s_t):
 *   x0_hat = clip((x_t - s_t eps_hat) / a_t, -1, 1)
 *   h = lambda_next - lambda_t
 *   D = x0_hat                                  first order: x0_prev == NULL
 *   D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev,   r = (lambda_t - lambda_{t_last}) / h
 *   x_next = (s_next / s_t) x_t - a_next (exp(-h) - 1) D
 * x0_prev is x0_hat of the previous step, which started at entry t_last > t.
 * t_next = -1 gives x_next = x0_hat (first order, as the last step must be).
 * x_next, x0_out, xt, eps_hat, x0_prev: [N, D]. x0_out (gets x0_hat) may be
 * NULL or alias x0_prev; x_next may alias xt. */
void ddpm_dpmpp_step(float *x_next, float *x0_out, const float *xt, const float *eps_hat,
                     const float *x0_prev, int t_last, int t, int t_next, const ddpm_schedule *s,
                     int N, size_t D);

/* One deterministic DDIM step up the chain, for inversion (docs/design.md §9):
 * from entry t (t = -1: alpha_bar = 1, x is x_0) to entry t_next > t of s,
 * with eps_hat evaluated at x_t:
 *   x0_hat = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t)      (not clipped)
 *   x_next = sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps_hat
 * x_next, xt, eps_hat: [N, D]; x_next may alias xt. */
void ddpm_ddim_invert_step(float *x_next, const float *xt, const float *eps_hat, int t, int t_next,
                           const ddpm_schedule *s, int N, size_t D);

/* ---- sampler options (the driver is in sampler.h) ------------------------- */

typedef struct {
    ddpm_sampler_kind kind;
    int steps;           /* K steps; 0: all (T; T-1 for dpm++2m) here, the default in sampler.h */
    float eta;           /* DDIM only: 0 = deterministic, 1 = DDPM-like noise */
    ddpm_var_kind var;   /* DDPM only */
    ddpm_spacing spacing; /* which K timesteps; 0 = the sampler's default */
    float churn;          /* euler, heun: Karras et al.'s S_churn >= 0 (0: deterministic) */
    ddpm_sigmas sigmas;   /* euler, heun, euler_a: the sigma grid */
} ddpm_sampler_opts;

#endif
