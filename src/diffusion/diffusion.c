/* diffusion.c: q_sample, the DDPM and DDIM reverse steps and the sampler loop.
 * See diffusion.h. Coefficients come from the schedule in double; each
 * element is computed in double and rounded to float once. */
#include "ddpm/diffusion.h"

#include <math.h>
#include <string.h>

/* Element loops below this size stay on one thread. */
#define PAR_MIN 32768

int ddpm_var_parse(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "small")) return DDPM_VAR_SMALL;
    if (!strcmp(name, "large")) return DDPM_VAR_LARGE;
    return -1;
}

const char *ddpm_var_name(ddpm_var_kind kind) {
    return kind == DDPM_VAR_SMALL ? "small" : kind == DDPM_VAR_LARGE ? "large" : "?";
}

int ddpm_sampler_parse(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "ddpm")) return DDPM_SAMPLER_DDPM;
    if (!strcmp(name, "ddim")) return DDPM_SAMPLER_DDIM;
    return -1;
}

const char *ddpm_sampler_name(ddpm_sampler_kind kind) {
    return kind == DDPM_SAMPLER_DDPM ? "ddpm" : kind == DDPM_SAMPLER_DDIM ? "ddim" : "?";
}

static inline double clip1(double v) { return v < -1.0 ? -1.0 : v > 1.0 ? 1.0 : v; }

/* ---- forward process ------------------------------------------------------ */

void ddpm_q_sample(float *xt, const float *x0, const float *eps, const int *t,
                   const ddpm_schedule *s, int N, size_t D) {
    /* xt, x0, eps: [N, D]; t: [N] */
    size_t total = (size_t)N * D;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        double a = s->sqrt_alpha_bar[t[n]], b = s->sqrt_one_minus_alpha_bar[t[n]];
        size_t off = (size_t)n * D;
        for (size_t d = 0; d < D; d++)
            xt[off + d] = (float)(a * (double)x0[off + d] + b * (double)eps[off + d]);
    }
}

void ddpm_sample_timesteps(int *t, int N, int T, ddpm_rng *rng) {
    for (int n = 0; n < N; n++) t[n] = (int)ddpm_rng_below(rng, (uint32_t)T);
}

/* ---- reverse steps -------------------------------------------------------- */

void ddpm_p_step(float *x_prev, const float *xt, const float *eps_hat, const float *z, int i,
                 const ddpm_schedule *s, ddpm_var_kind var, int N, size_t D) {
    /* x_prev, xt, eps_hat, z: [N, D] */
    double ra = 1.0 / s->sqrt_alpha_bar[i], rb = s->sqrt_one_minus_alpha_bar[i];
    double cx0 = s->coef_x0[i], cxt = s->coef_xt[i];
    double sigma = 0.0;
    if (i > 0) sigma = sqrt(var == DDPM_VAR_LARGE ? s->beta[i] : s->posterior_var[i]);
    if (!z) sigma = 0.0;
    long long total = (long long)N * (long long)D;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (long long j = 0; j < total; j++) {
        double x = xt[j];
        double x0 = clip1((x - rb * (double)eps_hat[j]) * ra);
        double v = cx0 * x0 + cxt * x;
        if (sigma > 0.0) v += sigma * (double)z[j];
        x_prev[j] = (float)v;
    }
}

void ddpm_ddim_step(float *x_prev, float *x0_out, const float *xt, const float *eps_hat,
                    const float *z, int t, int t_prev, float eta, const ddpm_schedule *s, int N,
                    size_t D) {
    /* x_prev, x0_out, xt, eps_hat, z: [N, D] */
    double ab = s->alpha_bar[t], abp = t_prev >= 0 ? s->alpha_bar[t_prev] : 1.0;
    double sa = s->sqrt_alpha_bar[t], sb = s->sqrt_one_minus_alpha_bar[t];
    double sigma = (double)eta * sqrt((1.0 - abp) / (1.0 - ab)) * sqrt(1.0 - ab / abp);
    double dir = 1.0 - abp - sigma * sigma;
    double c_x0 = sqrt(abp), c_eps = sqrt(dir > 0.0 ? dir : 0.0);
    double c_z = z && sigma > 0.0 ? sigma : 0.0; /* z = NULL: no noise term */
    long long total = (long long)N * (long long)D;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (long long j = 0; j < total; j++) {
        double x = xt[j];
        double x0 = clip1((x - sb * (double)eps_hat[j]) / sa);
        double e = (x - sa * x0) / sb;
        double v = c_x0 * x0 + c_eps * e;
        if (c_z > 0.0) v += c_z * (double)z[j];
        if (x0_out) x0_out[j] = (float)x0;
        x_prev[j] = (float)v;
    }
}

/* ---- sampler loop --------------------------------------------------------- */

size_t ddpm_sample_loop_workspace(int N, size_t D) { return 2 * (size_t)N * D; }

static int all_finite(const float *x, size_t n) {
    for (size_t j = 0; j < n; j++)
        if (!isfinite(x[j])) return 0;
    return 1;
}

ddpm_status ddpm_sample_loop(float *x, int N, size_t D, const ddpm_schedule *s,
                             const ddpm_sampler_opts *o, ddpm_eps_fn eps_fn, void *ctx,
                             ddpm_rng *rng, float *work,
                             void (*on_step)(void *ud, int step, int nsteps, const float *x),
                             void *ud) {
    if (!x || !s || !s->beta || !o || !eps_fn || !rng || !work || N < 1 || D < 1)
        return ddpm_error(DDPM_ERR_ARG, "sample loop: missing buffer or empty batch");
    if (o->kind != DDPM_SAMPLER_DDPM && o->kind != DDPM_SAMPLER_DDIM)
        return ddpm_error(DDPM_ERR_ARG, "invalid sampler kind %d", (int)o->kind);
    if (o->var != DDPM_VAR_SMALL && o->var != DDPM_VAR_LARGE)
        return ddpm_error(DDPM_ERR_ARG, "invalid variance kind %d", (int)o->var);
    if (o->steps < 0 || o->steps > s->T)
        return ddpm_error(DDPM_ERR_ARG, "sampling steps must be in [1, %d], got %d", s->T,
                          o->steps);
    if (!(o->eta >= 0.0f) || !isfinite(o->eta))
        return ddpm_error(DDPM_ERR_ARG, "eta must be a finite number >= 0, got %g",
                          (double)o->eta);

    int K = o->steps ? o->steps : s->T;
    size_t total = (size_t)N * D;
    float *eps = work;        /* [N, D] model output */
    float *z = work + total;  /* [N, D] noise */
    ddpm_schedule rs = {0};   /* the respaced DDPM schedule, when K < T */
    const ddpm_schedule *ps = s;
    int *tau = ddpm_malloc((size_t)K * sizeof(int)); /* [K] entries of s */
    int *tt = ddpm_malloc((size_t)N * sizeof(int));  /* [N] model timesteps */
    ddpm_status st = tau && tt ? DDPM_OK : DDPM_ERR_NOMEM;
    if (st == DDPM_OK) st = ddpm_schedule_respace(tau, K, s->T);
    if (st == DDPM_OK && o->kind == DDPM_SAMPLER_DDPM && K < s->T) {
        st = ddpm_schedule_init_respaced(&rs, s, tau, K);
        ps = &rs;
    }

    for (int i = K - 1; i >= 0 && st == DDPM_OK; i--) {
        int t = tau[i], t_prev = i > 0 ? tau[i - 1] : -1;
        for (int n = 0; n < N; n++) tt[n] = s->timesteps[t];
        st = eps_fn(ctx, eps, x, tt, N);
        if (st != DDPM_OK) break;
        if (!all_finite(eps, total)) {
            st = ddpm_error(DDPM_ERR_NUMERIC,
                            "the model predicted a non-finite value at timestep %d",
                            s->timesteps[t]);
            break;
        }
        if (o->kind == DDPM_SAMPLER_DDPM) {
            if (i > 0) ddpm_rng_fill_normal(rng, z, total);
            ddpm_p_step(x, x, eps, i > 0 ? z : NULL, i, ps, o->var, N, D);
        } else {
            int noisy = o->eta > 0.0f && i > 0;
            if (noisy) ddpm_rng_fill_normal(rng, z, total);
            ddpm_ddim_step(x, NULL, x, eps, noisy ? z : NULL, t, t_prev, o->eta, s, N, D);
        }
        if (on_step) on_step(ud, K - i, K, x);
    }

    ddpm_schedule_free(&rs);
    ddpm_free(tau);
    ddpm_free(tt);
    return st;
}
