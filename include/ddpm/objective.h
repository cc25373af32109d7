/* objective.h: what the network predicts, and the min-SNR-gamma loss weights.
 *
 * With a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) (a^2 + b^2 = 1) and
 * x_t = a x0 + b eps, the network is trained to predict one of
 *   eps   the noise (Ho et al.; docs/design.md §5)
 *   v     a eps - b x0 (Salimans & Ho 2022, "v-prediction"; lucidrains' default)
 *   x0    the clean image
 * and every consumer (the samplers, guidance, bits/dim) sees the model only
 * through eps_hat: ddpm_objective_eps wraps a ddpm_model_fn whose output is
 * in the objective's space and converts it, per element in double, with the
 * closed forms
 *   eps:  eps_hat = pred                 x0_hat = (x_t - b pred) / a
 *   v:    eps_hat = a pred + b x_t        x0_hat = a x_t - b pred
 *   x0:   eps_hat = (x_t - a pred) / b    x0_hat = pred
 * (unclipped: the samplers clip the x0_hat they derive from eps_hat).
 *
 * Each conversion is affine in pred with coefficients that depend on t only
 * and the same x_t term for every prediction at (x_t, t). So classifier-free
 * guidance, (1 - w) pred_u + w pred_c, gives the same eps_hat whether it
 * mixes the outputs and converts once or converts both and mixes (the x_t
 * terms carry (1 - w) + w = 1): the library mixes in eps space (guidance
 * wraps this wrapper), which keeps docs/design.md §7's definition as it is;
 * test_objective checks the two orders agree to float rounding.
 *
 * min-SNR-gamma (Hang et al. 2023), SNR_t = alpha_bar_t / (1 - alpha_bar_t):
 * the per-image weight of the loss, as diffusers' train_text_to_image.py
 * (--snr_gamma) and lucidrains' denoising-diffusion-pytorch
 * (min_snr_loss_weight) define it,
 *   eps:  min(SNR, gamma) / SNR
 *   v:    min(SNR, gamma) / (SNR + 1)
 *   x0:   min(SNR, gamma)
 * gamma = 0 turns the weighting off (every weight 1: the plain mean of the
 * objective's loss, as diffusers does without --snr_gamma; lucidrains
 * instead always weights, so its v and x0 without min-SNR equal eps-MSE).
 *
 * Shape letters: N images, D elements per image. Timesteps index a base
 * (not respaced) schedule s: the original timesteps a model is called with.
 */
#ifndef DDPM_OBJECTIVE_H
#define DDPM_OBJECTIVE_H

#include <stddef.h>

#include "ddpm/common.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"

typedef enum { DDPM_OBJ_EPS = 0, DDPM_OBJ_V, DDPM_OBJ_X0 } ddpm_objective;

/* "eps" / "v" / "x0" <-> objective; parse returns -1 if unknown (the last error
 * lists the known ones), name "?" if invalid. */
int ddpm_objective_parse(const char *name);
const char *ddpm_objective_name(ddpm_objective obj);

/* The training target of image n at timestep t[n]: eps, a eps - b x0 or x0.
 * target, x0, eps: [N, D]; t: [N]. target may alias x0 or eps. */
void ddpm_objective_target(float *target, const float *x0, const float *eps, const int *t,
                           const ddpm_schedule *s, ddpm_objective obj, int N, size_t D);

/* From the network's output pred at (x_t, t[n]) to eps_hat and x0_hat by the
 * closed forms above. eps_hat, x0_hat (either may be NULL), pred, xt: [N, D];
 * t: [N]. eps_hat and x0_hat may alias pred or xt. */
void ddpm_objective_convert(float *eps_hat, float *x0_hat, const float *pred, const float *xt,
                            const int *t, const ddpm_schedule *s, ddpm_objective obj, int N,
                            size_t D);

/* w[n] = the min-SNR-gamma weight of timestep t[n] (above); gamma = 0 gives 1.
 * w, t: [N]. gamma must be finite and >= 0. */
void ddpm_min_snr_weights(double *w, const int *t, const ddpm_schedule *s, ddpm_objective obj,
                          double gamma, int N);

/* ---- the model wrapper ---------------------------------------------------------- */

/* A ddpm_model_fn over a model whose output is in obj's space: calls it, then
 * ddpm_objective_convert in place. obj = eps passes the model's output on
 * untouched (bit for bit). s (borrowed) must be a base schedule. */
typedef struct {
    ddpm_model_fn model;
    void *ctx;
    ddpm_objective obj;
    const ddpm_schedule *s;
    size_t D;
} ddpm_objective_model;

ddpm_status ddpm_objective_model_init(ddpm_objective_model *om, ddpm_model_fn model, void *ctx,
                                      ddpm_objective obj, const ddpm_schedule *s, size_t D);
/* ctx: a ddpm_objective_model. Fails (DDPM_ERR_ARG) on a timestep outside s. */
ddpm_status ddpm_objective_eps(void *om, float *eps_hat, const float *x, const int *t,
                               const int *labels, int N);

#endif
