/* loop.h: the one-generator sampler loop, private to the library and its
 * tests. Programs sample through the driver (sampler.h) or the pipeline
 * (pipeline.h), which give every image its own random stream; this loop
 * draws a whole batch from one generator and checks the step arithmetic in
 * tests/test_diffusion.c against closed forms. */
#ifndef DDPM_DIFFUSION_LOOP_H
#define DDPM_DIFFUSION_LOOP_H

#include "ddpm/diffusion.h"

/* The noise predictor: eps_hat = eps_theta(x, t). eps_hat, x: [N, D];
 * t: [N] original timesteps. Return DDPM_OK, or an error (with ddpm_error)
 * to stop sampling; the loop returns that status. */
typedef ddpm_status (*ddpm_eps_fn)(void *ctx, float *eps_hat, const float *x, const int *t,
                                   int N);

/* Floats of scratch ddpm_sample_loop needs: 3 N D. */
size_t ddpm_sample_loop_workspace(int N, size_t D);

/* Runs the reverse process on x (in: x_T, usually N(0, I) noise; out: x_0).
 * s is a base schedule (timesteps identity) or a respaced one; the loop
 * visits K = o->steps (0: s->T) entries tau = ddpm_sampler_timesteps (for the
 * default spacing of ddpm and ddim: ddpm_schedule_respace(K, s->T)) from last
 * to first and calls eps_fn once per step with t = s->timesteps[tau_i] for
 * every image.
 *   DDPM: ancestral steps on the schedule respaced to tau (s itself when K = T).
 *   DDIM: ddpm_ddim_step from tau_i to tau_{i-1} (-1 after tau_0), eta = o->eta.
 *   DPM-Solver++(2M): ddpm_dpmpp_step from tau_i to tau_{i-1} (-1 after tau_0),
 *   first order on the first and the last step; never draws noise.
 * Whenever a step adds noise (DDPM: every step but the last; DDIM: eta > 0
 * and not the last step) z is one ddpm_rng_fill_normal(rng, z, N*D) call,
 * drawn right after the model call, so a seed fixes the result. DDIM with
 * eta = 0 draws nothing. After step k (1..K) on_step (may be NULL) is called
 * with (ud, k, K, x), x being the current [N, D] state; k = K is x_0.
 * Returns DDPM_ERR_NUMERIC if the model predicts a non-finite value.
 * x: [N, D]; work: ddpm_sample_loop_workspace(N, D) floats. Allocates only the
 * timestep lists and the respaced schedule, once, before the loop. */
ddpm_status ddpm_sample_loop(float *x, int N, size_t D, const ddpm_schedule *s,
                             const ddpm_sampler_opts *o, ddpm_eps_fn eps_fn, void *ctx,
                             ddpm_rng *rng, float *work,
                             void (*on_step)(void *ud, int step, int nsteps, const float *x),
                             void *ud);

#endif
