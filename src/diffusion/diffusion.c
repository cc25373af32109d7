/* diffusion.c: q_sample and the DDPM, DDIM and DPM-Solver++(2M) reverse steps.
 * See diffusion.h. Coefficients come from the schedule in double; each
 * element is computed in double and rounded to float once. */
#include "ddpm/diffusion.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

static const char *const VAR_NAMES[] = {"small", "large"};
static const char *const SAMPLER_NAMES[] = {"ddpm", "ddim", "dpm++2m", "euler", "heun", "euler_a"};
static const char *const SIGMAS_NAMES[] = {"karras", "schedule"};
static const char *const SPACING_NAMES[] = {"default", "uniform", "quadratic", "logsnr"};

int ddpm_var_parse(const char *name) { return ddpm_enum_lookup("variance", VAR_NAMES, 0, DDPM_COUNT(VAR_NAMES), name); }
const char *ddpm_var_name(ddpm_var_kind kind) { return ddpm_enum_name(VAR_NAMES, DDPM_COUNT(VAR_NAMES), kind); }

int ddpm_sampler_parse(const char *name) {
    return ddpm_enum_lookup("sampler", SAMPLER_NAMES, 0, DDPM_COUNT(SAMPLER_NAMES), name);
}
const char *ddpm_sampler_name(ddpm_sampler_kind kind) {
    return ddpm_enum_name(SAMPLER_NAMES, DDPM_COUNT(SAMPLER_NAMES), kind);
}

/* "default" is not a name a user can give. */
int ddpm_spacing_parse(const char *name) {
    return ddpm_enum_lookup("spacing", SPACING_NAMES, DDPM_SPACING_UNIFORM, DDPM_COUNT(SPACING_NAMES), name);
}
const char *ddpm_spacing_name(ddpm_spacing sp) {
    return ddpm_enum_name(SPACING_NAMES, DDPM_COUNT(SPACING_NAMES), sp);
}

int ddpm_sigmas_parse(const char *name) { return ddpm_enum_lookup("sigma grid", SIGMAS_NAMES, 0, DDPM_COUNT(SIGMAS_NAMES), name); }
const char *ddpm_sigmas_name(ddpm_sigmas g) { return ddpm_enum_name(SIGMAS_NAMES, DDPM_COUNT(SIGMAS_NAMES), g); }

int ddpm_sampler_is_karras(ddpm_sampler_kind kind) {
    return kind == DDPM_SAMPLER_EULER || kind == DDPM_SAMPLER_HEUN || kind == DDPM_SAMPLER_EULER_A;
}

static inline double clip1(double v) { return v < -1.0 ? -1.0 : v > 1.0 ? 1.0 : v; }

/* ---- forward process ------------------------------------------------------ */

void ddpm_q_sample(float *xt, const float *x0, const float *eps, const int *t,
                   const ddpm_schedule *s, int N, size_t D) {
    /* xt, x0, eps: [N, D]; t: [N] */
    size_t total = (size_t)N * D;
#pragma omp parallel for schedule(static) if (total >= DDPM_PAR_MIN_ELEMS)
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
#pragma omp parallel for schedule(static) if (total >= DDPM_PAR_MIN_ELEMS)
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
#pragma omp parallel for schedule(static) if (total >= DDPM_PAR_MIN_ELEMS)
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

/* log(a_t / s_t) of entry t (t = -1: +inf, sigma = 0). */
static double lambda_of(const ddpm_schedule *s, int t) {
    return log(s->sqrt_alpha_bar[t]) - log(s->sqrt_one_minus_alpha_bar[t]);
}

void ddpm_dpmpp_step(float *x_next, float *x0_out, const float *xt, const float *eps_hat,
                     const float *x0_prev, int t_last, int t, int t_next, const ddpm_schedule *s,
                     int N, size_t D) {
    /* x_next, x0_out, xt, eps_hat, x0_prev: [N, D] */
    double a = s->sqrt_alpha_bar[t], sg = s->sqrt_one_minus_alpha_bar[t];
    double c_x = 0.0, c_d = 1.0, c0 = 1.0, c1 = 0.0; /* t_next = -1: x_next = x0_hat */
    if (t_next >= 0) {
        double lam = lambda_of(s, t), h = lambda_of(s, t_next) - lam;
        c_x = s->sqrt_one_minus_alpha_bar[t_next] / sg;
        c_d = -s->sqrt_alpha_bar[t_next] * expm1(-h);
        if (x0_prev) {
            double r = (lam - lambda_of(s, t_last)) / h;
            c0 = 1.0 + 1.0 / (2.0 * r);
            c1 = -1.0 / (2.0 * r);
        }
    }
    long long total = (long long)N * (long long)D;
#pragma omp parallel for schedule(static) if (total >= DDPM_PAR_MIN_ELEMS)
    for (long long j = 0; j < total; j++) {
        double x = xt[j];
        double x0 = clip1((x - sg * (double)eps_hat[j]) / a);
        double d = c1 != 0.0 ? c0 * x0 + c1 * (double)x0_prev[j] : x0;
        if (x0_out) x0_out[j] = (float)x0;
        x_next[j] = (float)(c_x * x + c_d * d);
    }
}

void ddpm_ddim_invert_step(float *x_next, const float *xt, const float *eps_hat, int t, int t_next,
                           const ddpm_schedule *s, int N, size_t D) {
    /* x_next, xt, eps_hat: [N, D] */
    double sa = t >= 0 ? s->sqrt_alpha_bar[t] : 1.0, sb = t >= 0 ? s->sqrt_one_minus_alpha_bar[t] : 0.0;
    double na = s->sqrt_alpha_bar[t_next], nb = s->sqrt_one_minus_alpha_bar[t_next];
    long long total = (long long)N * (long long)D;
#pragma omp parallel for schedule(static) if (total >= DDPM_PAR_MIN_ELEMS)
    for (long long j = 0; j < total; j++) {
        double e = eps_hat[j], x0 = ((double)xt[j] - sb * e) / sa;
        x_next[j] = (float)(na * x0 + nb * e);
    }
}
