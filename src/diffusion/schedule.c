/* schedule.c: beta schedules and their derived arrays, in double. See schedule.h. */
#include "ddpm/schedule.h"

#include "core/util.h"

#include <math.h>
#include <string.h>

#define MAX_BETA 0.999
#define PI 3.14159265358979323846

static const char *const g_names[] = {"linear", "cosine", "quadratic", "sigmoid"};
#define NUM_KINDS ((int)(sizeof g_names / sizeof *g_names))

int ddpm_schedule_parse(const char *name) { return ddpm_enum_lookup("schedule", g_names, 0, NUM_KINDS, name); }
const char *ddpm_schedule_name(ddpm_schedule_kind kind) { return ddpm_enum_name(g_names, NUM_KINDS, kind); }

void ddpm_schedule_free(ddpm_schedule *s) {
    if (!s) return;
    ddpm_free(s->beta); /* one block holds every double array */
    ddpm_free(s->timesteps);
    memset(s, 0, sizeof *s);
}

/* Allocates the arrays of a T-entry schedule. */
static ddpm_status alloc_arrays(ddpm_schedule *s, int T) {
    memset(s, 0, sizeof *s);
    double *block = ddpm_malloc((size_t)10 * (size_t)T * sizeof(double));
    int *ts = ddpm_malloc((size_t)T * sizeof(int));
    if (!block || !ts) {
        ddpm_free(block);
        ddpm_free(ts);
        return DDPM_ERR_NOMEM; /* message set by ddpm_malloc */
    }
    s->T = T;
    double **arrays[] = {&s->beta, &s->alpha, &s->alpha_bar, &s->alpha_bar_prev,
                         &s->sqrt_alpha_bar, &s->sqrt_one_minus_alpha_bar,
                         &s->posterior_var, &s->posterior_log_var_clipped,
                         &s->coef_x0, &s->coef_xt};
    for (int a = 0; a < 10; a++) *arrays[a] = block + (size_t)a * (size_t)T;
    s->timesteps = ts;
    return DDPM_OK;
}

/* numpy.linspace(lo, hi, T)[i], with the last point exactly hi. */
static double linspace(double lo, double hi, int T, int i) {
    if (i == T - 1) return hi;
    return lo + (hi - lo) / (double)(T - 1) * (double)i;
}

/* The cosine schedule's continuous alpha_bar, u in [0, 1] (unnormalised). */
static double cosine_f(double u) {
    double c = cos((u + 0.008) / 1.008 * PI / 2.0);
    return c * c;
}

/* Fills every array from s->beta[] and s->alpha_bar[] (already set). */
static void fill_derived(ddpm_schedule *s) {
    int T = s->T;
    for (int t = 0; t < T; t++) {
        double b = s->beta[t], ab = s->alpha_bar[t];
        double abp = t > 0 ? s->alpha_bar[t - 1] : 1.0;
        s->alpha[t] = 1.0 - b;
        s->alpha_bar_prev[t] = abp;
        s->sqrt_alpha_bar[t] = sqrt(ab);
        s->sqrt_one_minus_alpha_bar[t] = sqrt(1.0 - ab);
        s->posterior_var[t] = b * (1.0 - abp) / (1.0 - ab);
        s->coef_x0[t] = sqrt(abp) * b / (1.0 - ab);
        s->coef_xt[t] = sqrt(1.0 - b) * (1.0 - abp) / (1.0 - ab);
    }
    for (int t = 1; t < T; t++) s->posterior_log_var_clipped[t] = log(s->posterior_var[t]);
    s->posterior_log_var_clipped[0] = T > 1 ? s->posterior_log_var_clipped[1] : log(s->beta[0]);
}

/* alpha_bar from beta (both [T]), then every derived array. */
static void fill_from_beta(ddpm_schedule *s) {
    double ab = 1.0;
    for (int t = 0; t < s->T; t++) {
        ab *= 1.0 - s->beta[t];
        s->alpha_bar[t] = ab;
    }
    fill_derived(s);
}

ddpm_status ddpm_schedule_init(ddpm_schedule *s, ddpm_schedule_kind kind, int T) {
    memset(s, 0, sizeof *s);
    if ((int)kind < 0 || (int)kind >= NUM_KINDS)
        return ddpm_error(DDPM_ERR_ARG, "invalid noise schedule kind %d", (int)kind);
    if (T < 2 || T > DDPM_SCHEDULE_MAX_T)
        return ddpm_error(DDPM_ERR_ARG, "number of diffusion steps must be in [2, %d], got %d",
                          DDPM_SCHEDULE_MAX_T, T);
    ddpm_status st = alloc_arrays(s, T);
    if (st != DDPM_OK) return st;
    s->kind = kind;

    double sc = 1000.0 / (double)T, lo = sc * 1e-4, hi = sc * 0.02;
    for (int t = 0; t < T; t++) {
        double b;
        switch (kind) {
        case DDPM_SCHED_LINEAR: b = linspace(lo, hi, T, t); break;
        case DDPM_SCHED_QUADRATIC: {
            double r = linspace(sqrt(lo), sqrt(hi), T, t);
            b = r * r;
            break;
        }
        case DDPM_SCHED_SIGMOID:
            b = 1.0 / (1.0 + exp(-linspace(-6.0, 6.0, T, t))) * (hi - lo) + lo;
            break;
        default: /* cosine */
            b = 1.0 - cosine_f((double)(t + 1) / T) / cosine_f((double)t / T);
            break;
        }
        s->beta[t] = b < MAX_BETA ? b : MAX_BETA;
        s->timesteps[t] = t;
    }
    fill_from_beta(s);
    return DDPM_OK;
}

ddpm_status ddpm_schedule_init_betas(ddpm_schedule *s, ddpm_schedule_kind kind, const double *beta,
                                     int T) {
    memset(s, 0, sizeof *s);
    if (T < 2 || T > DDPM_SCHEDULE_MAX_T)
        return ddpm_error(DDPM_ERR_ARG, "number of diffusion steps must be in [2, %d], got %d",
                          DDPM_SCHEDULE_MAX_T, T);
    for (int t = 0; t < T; t++)
        if (!(beta[t] > 0.0 && beta[t] <= MAX_BETA))
            return ddpm_error(DDPM_ERR_ARG, "beta_%d = %g is outside (0, %g]", t, beta[t], MAX_BETA);
    ddpm_status st = alloc_arrays(s, T);
    if (st != DDPM_OK) return st;
    s->kind = kind;
    for (int t = 0; t < T; t++) {
        s->beta[t] = beta[t];
        s->timesteps[t] = t;
    }
    fill_from_beta(s);
    return DDPM_OK;
}

ddpm_status ddpm_schedule_respace(int *tau, int K, int T) {
    if (T < 1 || K < 1 || K > T)
        return ddpm_error(DDPM_ERR_ARG, "cannot pick %d sampling steps out of %d timesteps", K, T);
    if (K == 1) {
        tau[0] = T - 1;
        return DDPM_OK;
    }
    /* round(i (T-1) / (K-1)) in integers; consecutive values differ by >= 1
     * because (T-1)/(K-1) >= 1. */
    int64_t num = T - 1, den = K - 1;
    for (int i = 0; i < K; i++) tau[i] = (int)((2 * (int64_t)i * num + den) / (2 * den));
    return DDPM_OK;
}

ddpm_status ddpm_schedule_init_respaced(ddpm_schedule *out, const ddpm_schedule *base,
                                        const int *tau, int K) {
    memset(out, 0, sizeof *out);
    if (!base || !base->beta || K < 1 || K > base->T)
        return ddpm_error(DDPM_ERR_ARG, "cannot respace a %d-step schedule to %d steps",
                          base ? base->T : 0, K);
    for (int i = 0; i < K; i++) {
        if (tau[i] < 0 || tau[i] >= base->T || (i > 0 && tau[i] <= tau[i - 1]))
            return ddpm_error(DDPM_ERR_ARG,
                              "respacing timesteps must increase strictly within [0, %d)",
                              base->T);
    }
    ddpm_status st = alloc_arrays(out, K);
    if (st != DDPM_OK) return st;
    out->kind = base->kind;
    for (int i = 0; i < K; i++) {
        int t = tau[i], tp = i > 0 ? tau[i - 1] : -1;
        double ab = base->alpha_bar[t], abp = tp >= 0 ? base->alpha_bar[tp] : 1.0;
        out->alpha_bar[i] = ab;
        out->beta[i] = tp == t - 1 ? base->beta[t] : 1.0 - ab / abp;
        out->timesteps[i] = base->timesteps[t];
    }
    fill_derived(out);
    return DDPM_OK;
}
