/* toy.h: diffusion on 2-D points (ddpm toy): the MLP of mlp.h trained with
 * L_simple on a fixed set of points, its checkpoint, and sampling through
 * the sampler driver of sampler.h.
 *
 * A step: B points drawn uniformly (with replacement) from the data;
 * timesteps t ~ U{0..T-1}, antithetic when enabled (the second half of the
 * batch gets T-1-t of the first half, the seed's trick; an odd B's last
 * point gets its own draw); eps ~ N(0, I); x_t = q_sample(x_0, t, eps);
 * loss = mean (eps - MLP(x_t, t))^2 over B x 2 numbers; backward; clip the
 * gradient norm; Adam (AdamW with no weight decay) at a constant lr.
 * Draw order per step: B indices (ddpm_rng_below), the timesteps
 * (ddpm_sample_timesteps on ceil(B/2) or B values), then one
 * ddpm_rng_fill_normal of B*2.
 *
 * The checkpoint holds everything needed to continue exactly: parameters
 * (under the seed's PyTorch state_dict names, mlp.h), Adam moments
 * ("adam_m.", "adam_v."), the training points ("data", [n, 2], model
 * coordinates), the loss and gradient-norm history ("log.loss",
 * "log.grad_norm", [step]) and, in the metadata, the config, the scaling,
 * the step and the rng state. So N steps, and N/2 + save + resume + N/2,
 * give the same bytes.
 */
#ifndef DDPM_TOY_H
#define DDPM_TOY_H

#include <stdbool.h>
#include <stdint.h>

#include "ddpm/diffusion.h"
#include "ddpm/mlp.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/toydata.h"

typedef struct {
    int hidden;                 /* MLP width H */
    int T;                      /* diffusion timesteps */
    ddpm_schedule_kind schedule;
    bool seed_betas;            /* the seed's betas (below) instead of `schedule` */
    int batch;
    int64_t iters;              /* total optimizer steps */
    float lr;                   /* Adam, constant */
    float clip;                 /* gradient-norm clip, <= 0 disables */
    bool antithetic;            /* t and T-1-t in each batch */
    uint64_t seed;              /* parameter init and the training draws */
} ddpm_toy_config;

/* The seed's schedule: beta_t = sigmoid(linspace(-6, 6, T)) (0.5e-2 - 1e-5) + 1e-5.
 * At T = 100 the betas sum to 0.25 and alpha_bar_{T-1} = 0.78: x_T keeps
 * 88 % of the signal (the seed's trap). */
#define DDPM_TOY_SEED_BETA_LO 1e-5
#define DDPM_TOY_SEED_BETA_HI 0.5e-2

/* The default run: hidden 128, T 100, sigmoid (the library's, which reaches
 * noise), batch 128, 50,000 steps, lr 1e-3, clip 1, antithetic, seed 0.
 * The seed's recipe is the same with seed_betas (and its data at 1/10). */
void ddpm_toy_config_default(ddpm_toy_config *c);
ddpm_status ddpm_toy_config_validate(const ddpm_toy_config *c);

/* "seed-sigmoid" for the seed's betas, else the schedule's name. */
const char *ddpm_toy_schedule_name(const ddpm_toy_config *c);
/* The schedule of c (T entries). */
ddpm_status ddpm_toy_schedule_init(ddpm_schedule *s, const ddpm_toy_config *c);

typedef struct ddpm_toy ddpm_toy;

/* A trainer on the points data [n, 2] (model coordinates, copied), which came
 * from data coordinates through `scaling` (kept for the caller, not applied). */
ddpm_status ddpm_toy_create(ddpm_toy **out, const ddpm_toy_config *c, const float *data, int n,
                            const ddpm_toy_scaling *scaling, const char *data_name);
/* Continues the checkpoint at path; iters > 0 replaces the total step count. */
ddpm_status ddpm_toy_resume(ddpm_toy **out, const char *path, int64_t iters);
void ddpm_toy_free(ddpm_toy *t);

typedef struct {
    double loss, grad_norm;
} ddpm_toy_stats;

/* One optimizer step. Returns DDPM_ERR_ARG when step == iters already, and
 * DDPM_ERR_NUMERIC (parameters untouched) on a non-finite loss or gradient. */
ddpm_status ddpm_toy_step(ddpm_toy *t, ddpm_toy_stats *st);

/* Atomic safetensors checkpoint (see above). */
ddpm_status ddpm_toy_save(const ddpm_toy *t, const char *path);

/* Samples n points into x [n, 2] (model coordinates) with the library's
 * sampler driver (sampler.h: ddpm, ddim, dpm++2m; point i's x_T and noise
 * come from its own stream of `seed`), the MLP as the noise predictor.
 * on_step (may be NULL) sees each batch at steps 0 (x_T) .. K (x_0). */
ddpm_status ddpm_toy_sample(ddpm_toy *t, float *x, int n, const ddpm_sampler_opts *o,
                            uint64_t seed, ddpm_step_fn on_step, void *ud);

const ddpm_toy_config *ddpm_toy_get_config(const ddpm_toy *t);
const ddpm_schedule *ddpm_toy_schedule(const ddpm_toy *t);
int64_t ddpm_toy_step_count(const ddpm_toy *t);
const float *ddpm_toy_data(const ddpm_toy *t, int *n); /* model coordinates */
const char *ddpm_toy_data_label(const ddpm_toy *t);    /* "scurve", a file name, ... */
ddpm_toy_scaling ddpm_toy_get_scaling(const ddpm_toy *t);
/* Per-step history, [step] each. */
const float *ddpm_toy_loss_log(const ddpm_toy *t);
const float *ddpm_toy_grad_norm_log(const ddpm_toy *t);
ddpm_mlp *ddpm_toy_model(ddpm_toy *t);

#endif
