/* karras.c: the sigma view of a schedule, the Karras grid and slerp
 * (sampler.h; docs/design.md §9). */
#include <math.h>

#include "ddpm/sampler.h"

#define KARRAS_RHO 7.0

static double log_sigma(const ddpm_schedule *s, int t) {
    return 0.5 * (log1p(-s->alpha_bar[t]) - log(s->alpha_bar[t]));
}

double ddpm_sigma_to_t(const ddpm_schedule *s, double sigma) {
    int T = s->T;
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    if (ls <= log_sigma(s, 0)) return 0.0; /* log sigma_t increases with t */
    if (ls >= log_sigma(s, T - 1)) return T - 1;
    int lo = 0, hi = T - 1; /* log_sigma(lo) < ls < log_sigma(hi) */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (log_sigma(s, mid) <= ls) lo = mid;
        else hi = mid;
    }
    double a = log_sigma(s, lo), b = log_sigma(s, hi);
    return lo + (ls - a) / (b - a);
}

ddpm_status ddpm_karras_sigmas(double *sig, int K, const ddpm_schedule *s, ddpm_sigmas g, ddpm_spacing sp) {
    if (!sig || !s || K < 1 || K > s->T)
        return ddpm_error(DDPM_ERR_ARG, "cannot make a grid of %d sigmas for T = %d", K, s ? s->T : 0);
    if (g == DDPM_SIGMAS_SCHEDULE) {
        int *tau = ddpm_malloc((size_t)K * sizeof(int)); /* [K] */
        if (!tau) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d timesteps", K);
        ddpm_status st = ddpm_sampler_timesteps(tau, K, s, sp, 0);
        for (int i = 0; !st && i < K; i++) sig[i] = exp(log_sigma(s, tau[K - 1 - i]));
        ddpm_free(tau);
        if (st) return st;
    } else if (g == DDPM_SIGMAS_KARRAS) {
        double hi = pow(exp(log_sigma(s, s->T - 1)), 1.0 / KARRAS_RHO);
        double lo = pow(exp(log_sigma(s, 0)), 1.0 / KARRAS_RHO);
        for (int i = 0; i < K; i++) sig[i] = pow(hi + (K > 1 ? (double)i / (K - 1) : 0.0) * (lo - hi), KARRAS_RHO);
    } else {
        return ddpm_error(DDPM_ERR_ARG, "invalid sigma grid %d", (int)g);
    }
    sig[K] = 0.0;
    return DDPM_OK;
}

void ddpm_slerp(float *out, const float *a, const float *b, size_t D, double l) {
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t d = 0; d < D; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    double c = aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 1.0;
    double th = acos(c < -1.0 ? -1.0 : c > 1.0 ? 1.0 : c), ca = 1.0 - l, cb = l;
    if (th > 1e-6) ca = sin((1.0 - l) * th) / sin(th), cb = sin(l * th) / sin(th);
    for (size_t d = 0; d < D; d++) out[d] = (float)(ca * a[d] + cb * b[d]);
}
