/* schedule.h: the noise schedule beta_t and every quantity derived from it.
 *
 * t is 0-based: 0 ... T-1. All arrays have length T and are computed in
 * double (docs/design.md §5). With s = 1000/T (so every T ends near pure noise):
 *
 *   linear:    beta = linspace(s*1e-4, s*0.02, T)
 *   quadratic: beta = linspace(sqrt(s*1e-4), sqrt(s*0.02), T)^2
 *   sigmoid:   beta = sigmoid(linspace(-6, 6, T)) * (s*0.02 - s*1e-4) + s*1e-4
 *   cosine:    f(u) = cos^2((u + 0.008)/1.008 * pi/2) for continuous time u in [0, 1],
 *              beta_t = min(1 - f((t+1)/T) / f(t/T), 0.999)
 *
 * Cosine indexing (as Nichol & Dhariwal's betas_for_alpha_bar): the 0-based
 * step t goes from continuous time t/T to (t+1)/T, so alpha_bar_t (the
 * cumulative product up to and including t) equals f((t+1)/T) / f(0)
 * wherever no beta up to t was clipped. f(1) = 0, so the last beta is
 * always clipped to 0.999.
 *
 * Every schedule clips beta to at most 0.999, so alpha_bar never reaches 0.
 * For linear/quadratic this only matters for T < 21 (s*0.02 > 0.999).
 *
 * Derived arrays (alpha_bar_{-1} = 1):
 *   alpha_t                     = 1 - beta_t
 *   alpha_bar_t                 = prod_{s<=t} alpha_s
 *   alpha_bar_prev_t            = alpha_bar_{t-1}                    (alpha_bar_prev_0 = 1)
 *   posterior_var_t             = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)   (0 at t = 0)
 *   posterior_log_var_clipped_t = log(posterior_var_t), with t = 0 using posterior_var_1
 *                                 (Ho et al.'s convention; log(beta_0) when T == 1)
 *   coef_x0_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)
 *   coef_xt_t = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
 * so the posterior mean of q(x_{t-1} | x_t, x_0) is coef_x0_t x_0 + coef_xt_t x_t.
 *
 * A respaced schedule (ddpm_schedule_init_respaced) has one entry per kept
 * timestep; timesteps[i] is the ORIGINAL timestep the model must be called
 * with. For a schedule from ddpm_schedule_init, timesteps[t] = t.
 */
#ifndef DDPM_SCHEDULE_H
#define DDPM_SCHEDULE_H

#include "ddpm/common.h"

typedef enum {
    DDPM_SCHED_LINEAR = 0,
    DDPM_SCHED_COSINE,
    DDPM_SCHED_QUADRATIC,
    DDPM_SCHED_SIGMOID
} ddpm_schedule_kind;

#define DDPM_SCHEDULE_MAX_T 100000

typedef struct {
    int T; /* number of entries (K for a respaced schedule) */
    ddpm_schedule_kind kind;
    /* all [T] */
    double *beta, *alpha, *alpha_bar, *alpha_bar_prev;
    double *sqrt_alpha_bar, *sqrt_one_minus_alpha_bar;
    double *posterior_var, *posterior_log_var_clipped;
    double *coef_x0, *coef_xt;
    int *timesteps; /* [T] original timestep of each entry */
} ddpm_schedule;

/* "linear" / "cosine" / "quadratic" / "sigmoid" <-> kind. Parse returns -1
 * for an unknown name (the last error lists the known ones); name returns "?"
 * for an invalid kind. */
int ddpm_schedule_parse(const char *name);
const char *ddpm_schedule_name(ddpm_schedule_kind kind);

/* Allocates and fills *s for 2 <= T <= DDPM_SCHEDULE_MAX_T. On failure *s is
 * zeroed (so ddpm_schedule_free is still safe) and an error is returned. */
ddpm_status ddpm_schedule_init(ddpm_schedule *s, ddpm_schedule_kind kind, int T);
/* The same from explicit betas beta[0..T) (each in (0, 0.999]), e.g. a
 * schedule none of the kinds makes; `kind` is only recorded in s->kind. */
ddpm_status ddpm_schedule_init_betas(ddpm_schedule *s, ddpm_schedule_kind kind, const double *beta,
                                     int T);
/* Frees the arrays and zeroes *s. Safe on a zeroed schedule. */
void ddpm_schedule_free(ddpm_schedule *s);

/* tau[0..K): K evenly spaced timesteps in [0, T-1], tau_i = round(i (T-1)/(K-1)),
 * strictly increasing, always including T-1 (and 0 when K >= 2); K = 1 gives
 * {T-1}, K = T gives 0, 1, ..., T-1. Requires 1 <= K <= T. */
ddpm_status ddpm_schedule_respace(int *tau, int K, int T);

/* The schedule of the DDPM sampler run on the subsequence tau[0..K) of base's
 * entries (Nichol & Dhariwal's respacing):
 *   alpha_bar'_i = base->alpha_bar[tau_i],  alpha_bar'_{-1} = 1,
 *   beta'_i = 1 - alpha_bar'_i / alpha_bar'_{i-1}
 * (beta'_i = base->beta[tau_i] exactly when tau_i follows tau_{i-1} directly),
 * every other array derived from these as for a base schedule, and
 * timesteps'[i] = base->timesteps[tau_i]. tau must be strictly increasing in
 * [0, base->T). The output has T = K and base's kind. */
ddpm_status ddpm_schedule_init_respaced(ddpm_schedule *out, const ddpm_schedule *base,
                                        const int *tau, int K);

#endif
