/* sampler.c: the sampler driver (sampler.h) and the one-generator loop
 * ddpm_sample_loop (diffusion.h), both on one step loop (run_steps). */
#include "diffusion/loop.h"
#include "ddpm/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

uint64_t ddpm_sampler_image_seed(uint64_t seed, int64_t i) {
    return ddpm_splitmix64(seed) ^ (DDPM_GOLDEN_GAMMA * ((uint64_t)i + 1));
}

int ddpm_sampler_default_steps(ddpm_sampler_kind kind, int T) {
    if (kind == DDPM_SAMPLER_HEUN) return T < 10 ? T : 10;
    if (kind == DDPM_SAMPLER_DDIM || kind == DDPM_SAMPLER_EULER || kind == DDPM_SAMPLER_EULER_A) return T < 50 ? T : 50;
    if (kind == DDPM_SAMPLER_DPMPP_2M) return T - 1 < 20 ? T - 1 : 20;
    return T < 100 ? T : 100; /* respaced: as good as T = 1000 steps by FID (docs/quality.md) */
}

int ddpm_sampler_max_steps(ddpm_sampler_kind kind, int T) {
    return kind == DDPM_SAMPLER_DPMPP_2M ? T - 1 : T;
}

ddpm_spacing ddpm_sampler_default_spacing(ddpm_sampler_kind kind) {
    return kind == DDPM_SAMPLER_DPMPP_2M ? DDPM_SPACING_LOGSNR : DDPM_SPACING_UNIFORM;
}

void ddpm_sampler_describe(char *buf, size_t cap, const ddpm_sampler_opts *o) {
    if (o->kind == DDPM_SAMPLER_DDPM) snprintf(buf, cap, "var %s", ddpm_var_name(o->var));
    else if (o->kind == DDPM_SAMPLER_DDIM) snprintf(buf, cap, "eta %g", (double)o->eta);
    else if (ddpm_sampler_is_karras(o->kind)) {
        snprintf(buf, cap, "%s, %s sigmas", o->kind == DDPM_SAMPLER_EULER_A ? "ancestral" : o->churn > 0.0f ? "churn" : "deterministic",
                 ddpm_sigmas_name(o->sigmas));
        if (o->churn > 0.0f) snprintf(buf + strlen(buf), cap - strlen(buf), ", S_churn %g", (double)o->churn);
        return;
    } else snprintf(buf, cap, "deterministic");
    ddpm_spacing sp = o->spacing ? o->spacing : ddpm_sampler_default_spacing(o->kind);
    size_t n = strlen(buf);
    if (o->kind != DDPM_SAMPLER_DDPM && n < cap) snprintf(buf + n, cap - n, ", %s spacing", ddpm_spacing_name(sp));
}

/* ---- timestep spacings ------------------------------------------------------ */

/* The fractional t in [0, T-1] where lambda (decreasing in t) meets target. */
static double t_of_lambda(const double *lam, int T, double target) {
    int lo = 0, hi = T - 1; /* lam[lo] >= target >= lam[hi] */
    if (target >= lam[0]) return 0.0;
    if (target <= lam[T - 1]) return T - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (lam[mid] >= target) lo = mid;
        else hi = mid;
    }
    return lo + (lam[lo] - target) / (lam[lo] - lam[hi]);
}

/* Grid point i of P in [0, T-1] (before rounding). lam: [T] or NULL. */
static double grid_point(int i, int P, int T, ddpm_spacing sp, const double *lam) {
    double u = P > 1 ? (double)i / (P - 1) : 1.0;
    if (sp == DDPM_SPACING_QUADRATIC) return u * u * (T - 1);
    if (sp == DDPM_SPACING_LOGSNR) return t_of_lambda(lam, T, lam[T - 1] + (1.0 - u) * (lam[0] - lam[T - 1]));
    return u * (T - 1);
}

ddpm_status ddpm_sampler_timesteps(int *tau, int K, const ddpm_schedule *s, ddpm_spacing sp,
                                   int skip_zero) {
    int T = s ? s->T : 0, P = K + (skip_zero ? 1 : 0);
    if (!tau || !s || K < 1 || P > T)
        return ddpm_error(DDPM_ERR_ARG, "cannot pick %d timesteps%s out of T = %d", K,
                          skip_zero ? " (t = 0 excluded)" : "", T);
    if (sp == DDPM_SPACING_DEFAULT || sp == DDPM_SPACING_UNIFORM) {
        if (!skip_zero) return ddpm_schedule_respace(tau, K, T);
        sp = DDPM_SPACING_UNIFORM;
    } else if (sp != DDPM_SPACING_QUADRATIC && sp != DDPM_SPACING_LOGSNR) {
        return ddpm_error(DDPM_ERR_ARG, "invalid timestep spacing %d", (int)sp);
    }
    double *lam = NULL;
    if (sp == DDPM_SPACING_LOGSNR) {
        lam = ddpm_malloc((size_t)T * sizeof(double)); /* [T] */
        if (!lam) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d timesteps", T);
        for (int t = 0; t < T; t++) lam[t] = log(s->sqrt_alpha_bar[t] / s->sqrt_one_minus_alpha_bar[t]);
    }
    int prev = -1, off = P - K;
    for (int i = 0; i < P; i++) { /* strictly increasing from the bottom */
        int v = i == P - 1 ? T - 1 : (int)floor(grid_point(i, P, T, sp, lam) + 0.5);
        if (v <= prev) v = prev + 1;
        prev = v;
        if (i >= off) tau[i - off] = v;
    }
    for (int i = K - 1, top = T; i >= 0; i--) { /* room for the points above */
        if (tau[i] >= top) tau[i] = top - 1;
        top = tau[i];
    }
    ddpm_free(lam);
    return DDPM_OK;
}

/* ---- the step loop --------------------------------------------------------- */

/* What one step loop needs. Noise: nrng == 1 shares rngs[0] over the batch
 * (one fill of N*D), otherwise rngs[n] is image n's stream. */
typedef struct {
    const ddpm_sampler_opts *o; /* resolved */
    const ddpm_schedule *s, *ps; /* base; the DDPM steps' (s or respaced) */
    const int *tau;
    const double *sig;    /* Karras: [K + 1] */
    int K, start;         /* VP: the first entry i (K-1 without SDEdit); Karras: the first sig index */
    size_t D;
    float *eps, *z, *x0p, *xin, *eps2; /* [N, D] each */
    int *tt;              /* [N] */
    ddpm_rng *rngs;
    int nrng;
    const int *labels;
    ddpm_model_fn model;
    void *ctx;
    const float *x_init;  /* RePaint: [N, D] this batch's, or NULL */
    const uint8_t *keep;  /* [D] or NULL */
    int resample;
} loop_args;

static void draw_noise(const loop_args *a, int N) {
    if (a->nrng == 1) {
        ddpm_rng_fill_normal(&a->rngs[0], a->z, (size_t)N * a->D);
        return;
    }
    for (int n = 0; n < N; n++) ddpm_rng_fill_normal(&a->rngs[n], a->z + (size_t)n * a->D, a->D);
}

/* eps [N, D] = the model at (x, t), checked finite. */
static ddpm_status call_model(const loop_args *a, float *eps, const float *x, int N, int t) {
    for (int n = 0; n < N; n++) a->tt[n] = t;
    ddpm_status st = a->model(a->ctx, eps, x, a->tt, a->labels, N);
    if (st != DDPM_OK) return st;
    if (ddpm_first_nonfinite(eps, (size_t)N * a->D) != (size_t)N * a->D)
        return ddpm_error(DDPM_ERR_NUMERIC, "the model predicted a non-finite value at timestep %d", t);
    return DDPM_OK;
}

/* Step i (K-1 .. 0) of the sampler on x [N, D], after the model call. */
static void take_step(const loop_args *a, float *x, int N, int i) {
    const ddpm_sampler_opts *o = a->o;
    int t = a->tau[i], t_prev = i > 0 ? a->tau[i - 1] : -1;
    if (o->kind == DDPM_SAMPLER_DDPM) {
        if (i > 0) draw_noise(a, N);
        ddpm_p_step(x, x, a->eps, i > 0 ? a->z : NULL, i, a->ps, o->var, N, a->D);
    } else if (o->kind == DDPM_SAMPLER_DDIM) {
        int noisy = o->eta > 0.0f && i > 0;
        if (noisy) draw_noise(a, N);
        ddpm_ddim_step(x, NULL, x, a->eps, noisy ? a->z : NULL, t, t_prev, o->eta, a->s, N, a->D);
    } else {
        int first = i == a->start, t_last = first ? -1 : a->tau[i + 1];
        ddpm_dpmpp_step(x, a->x0p, x, a->eps, first ? NULL : a->x0p, t_last, t, t_prev, a->s, N,
                        a->D);
    }
}

/* RePaint's kept region after a step: x = ca x_init + cb eps (fresh eps
 * when cb > 0; cb = 0, ca = 1: x_init exactly). */
static void replace_kept(const loop_args *a, float *x, int N, double ca, double cb) {
    if (cb > 0.0) draw_noise(a, N);
    for (int n = 0; n < N; n++)
        for (size_t d = 0, o = (size_t)n * a->D; d < a->D; d++)
            if (a->keep[d])
                x[o + d] = cb > 0.0 ? (float)(ca * a->x_init[o + d] + cb * a->z[o + d]) : a->x_init[o + d];
}

/* A RePaint jump back up the chain: x = ca x + cb z. */
static void push_back(const loop_args *a, float *x, int N, double ca, double cb) {
    draw_noise(a, N);
    size_t ND = (size_t)N * a->D;
    for (size_t j = 0; j < ND; j++) x[j] = (float)(ca * x[j] + cb * a->z[j]);
}

/* DDPM, DDIM, DPM-Solver++(2M): entries start .. 0; on_step(k) after step k. */
static ddpm_status run_vp(const loop_args *a, float *x, int N,
                          void (*on_step)(void *ud, int step, const float *x), void *ud) {
    const double *ab = a->s->alpha_bar;
    for (int i = a->start; i >= 0; i--) {
        int t = a->tau[i], tp = i > 0 ? a->tau[i - 1] : -1, R = a->keep && i > 0 ? a->resample : 0;
        for (int r = 0; r <= R; r++) {
            if (r > 0) push_back(a, x, N, sqrt(ab[t] / ab[tp]), sqrt(1.0 - ab[t] / ab[tp]));
            ddpm_status st = call_model(a, a->eps, x, N, a->s->timesteps[t]);
            if (st) return st;
            take_step(a, x, N, i);
            if (a->keep) replace_kept(a, x, N, tp >= 0 ? sqrt(ab[tp]) : 1.0, tp >= 0 ? sqrt(1.0 - ab[tp]) : 0.0);
        }
        if (on_step) on_step(ud, a->start + 1 - i, x);
    }
    return DDPM_OK;
}

static int sigma_t(const ddpm_schedule *s, double sigma) { return (int)floor(ddpm_sigma_to_t(s, sigma) + 0.5); }

/* out = x / sqrt(sigma^2 + 1): the model's input x_t. */
static void to_vp(float *out, const float *x, size_t n, double sigma) {
    double c = 1.0 / sqrt(sigma * sigma + 1.0);
    for (size_t j = 0; j < n; j++) out[j] = (float)(c * x[j]);
}

/* One Euler, Heun or Euler-ancestral step of x~ [N, D] from sig[j] to
 * sig[j + 1], with Karras et al.'s churn gamma (Algorithm 2). */
static ddpm_status karras_step(const loop_args *a, float *x, int N, int j, double gamma) {
    size_t ND = (size_t)N * a->D;
    double s = a->sig[j], sn = a->sig[j + 1], sh = s * (1.0 + gamma);
    if (gamma > 0.0) {
        double c = sqrt(sh * sh - s * s);
        draw_noise(a, N);
        for (size_t k = 0; k < ND; k++) x[k] = (float)(x[k] + c * (double)a->z[k]);
    }
    to_vp(a->xin, x, ND, sh);
    ddpm_status st = call_model(a, a->eps, a->xin, N, sigma_t(a->s, sh));
    if (st) return st;
    ddpm_sampler_kind kind = a->o->kind;
    if (kind == DDPM_SAMPLER_EULER_A) {
        double su = sn > 0.0 ? sqrt(sn * sn * (s * s - sn * sn) / (s * s)) : 0.0;
        double sd = sqrt(fmax(0.0, sn * sn - su * su));
        if (su > 0.0) draw_noise(a, N);
        for (size_t k = 0; k < ND; k++)
            x[k] = (float)(x[k] + (sd - s) * (double)a->eps[k] + (su > 0.0 ? su * (double)a->z[k] : 0.0));
        return DDPM_OK;
    }
    double dt = sn - sh;
    if (kind == DDPM_SAMPLER_EULER || sn == 0.0) {
        for (size_t k = 0; k < ND; k++) x[k] = (float)(x[k] + dt * (double)a->eps[k]);
        return DDPM_OK;
    }
    double c = 1.0 / sqrt(sn * sn + 1.0); /* Heun: the Euler predictor's x_t at sn */
    for (size_t k = 0; k < ND; k++) a->xin[k] = (float)(c * (x[k] + dt * (double)a->eps[k]));
    if ((st = call_model(a, a->eps2, a->xin, N, sigma_t(a->s, sn)))) return st;
    for (size_t k = 0; k < ND; k++) x[k] = (float)(x[k] + 0.5 * dt * ((double)a->eps[k] + a->eps2[k]));
    return DDPM_OK;
}

/* Euler, Heun, Euler ancestral on x (x_t at sig[start] in, x_0 out). */
static ddpm_status run_karras(const loop_args *a, float *x, int N,
                              void (*on_step)(void *ud, int step, const float *x), void *ud) {
    size_t ND = (size_t)N * a->D;
    double gamma = a->o->churn > 0.0f ? fmin((double)a->o->churn / a->K, sqrt(2.0) - 1.0) : 0.0;
    double c0 = sqrt(a->sig[a->start] * a->sig[a->start] + 1.0);
    for (size_t k = 0; k < ND; k++) x[k] = (float)(c0 * x[k]); /* x~ = x_t / sqrt(ab) */
    for (int j = a->start; j < a->K; j++) {
        double s = a->sig[j], sn = a->sig[j + 1];
        int R = a->keep && sn > 0.0 ? a->resample : 0;
        for (int r = 0; r <= R; r++) {
            if (r > 0) push_back(a, x, N, 1.0, sqrt(s * s - sn * sn));
            ddpm_status st = karras_step(a, x, N, j, gamma);
            if (st) return st;
            if (a->keep) replace_kept(a, x, N, 1.0, sn);
        }
        if (on_step) {
            if (sn > 0.0) to_vp(a->xin, x, ND, sn);
            on_step(ud, j + 1 - a->start, sn > 0.0 ? a->xin : x);
        }
    }
    return DDPM_OK;
}

static ddpm_status run_steps(const loop_args *a, float *x, int N,
                             void (*on_step)(void *ud, int step, const float *x), void *ud) {
    return ddpm_sampler_is_karras(a->o->kind) ? run_karras(a, x, N, on_step, ud) : run_vp(a, x, N, on_step, ud);
}

/* ---- the driver ------------------------------------------------------------ */

static ddpm_status check_opts(const ddpm_sampler_opts *o, int T) {
    if ((unsigned)o->kind > DDPM_SAMPLER_EULER_A)
        return ddpm_error(DDPM_ERR_ARG, "invalid sampler kind %d", (int)o->kind);
    if (o->var != DDPM_VAR_SMALL && o->var != DDPM_VAR_LARGE)
        return ddpm_error(DDPM_ERR_ARG, "invalid variance kind %d", (int)o->var);
    if (o->spacing < DDPM_SPACING_DEFAULT || o->spacing > DDPM_SPACING_LOGSNR)
        return ddpm_error(DDPM_ERR_ARG, "invalid timestep spacing %d", (int)o->spacing);
    if (o->sigmas != DDPM_SIGMAS_KARRAS && o->sigmas != DDPM_SIGMAS_SCHEDULE)
        return ddpm_error(DDPM_ERR_ARG, "invalid sigma grid %d", (int)o->sigmas);
    int kmax = ddpm_sampler_max_steps(o->kind, T);
    if (o->steps < 0 || o->steps > kmax)
        return ddpm_error(DDPM_ERR_ARG, "%s sampling steps must be in [1, %d], got %d",
                          ddpm_sampler_name(o->kind), kmax, o->steps);
    if (!(o->eta >= 0.0f) || !isfinite(o->eta))
        return ddpm_error(DDPM_ERR_ARG, "eta must be a finite number >= 0, got %g",
                          (double)o->eta);
    if (!(o->churn >= 0.0f) || !isfinite(o->churn))
        return ddpm_error(DDPM_ERR_ARG, "churn must be a finite number >= 0, got %g", (double)o->churn);
    if (o->churn > 0.0f && o->kind != DDPM_SAMPLER_EULER && o->kind != DDPM_SAMPLER_HEUN)
        return ddpm_error(DDPM_ERR_ARG, "churn applies to the euler and heun samplers only");
    return DDPM_OK;
}

/* Resolves o into sm->o, picks tau and respaces for DDPM. sm->tau allocated. */
static ddpm_status plan(ddpm_sampler *sm, const ddpm_schedule *s, const ddpm_sampler_opts *o) {
    ddpm_status st = check_opts(o, s->T);
    if (st) return st;
    sm->o = *o;
    if (!sm->o.steps) sm->o.steps = ddpm_sampler_default_steps(o->kind, s->T);
    if (!sm->o.spacing) sm->o.spacing = ddpm_sampler_default_spacing(o->kind);
    if (sm->o.steps < 1) return ddpm_error(DDPM_ERR_ARG, "T = %d is too short for %s", s->T,
                                           ddpm_sampler_name(o->kind));
    sm->s = s;
    sm->K = sm->o.steps;
    sm->tau = ddpm_malloc((size_t)sm->K * sizeof(int)); /* [K] */
    if (!sm->tau) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d timesteps", sm->K);
    if (ddpm_sampler_is_karras(o->kind)) {
        if (!(sm->sig = ddpm_malloc(((size_t)sm->K + 1) * sizeof(double)))) /* [K + 1] */
            return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d sigmas", sm->K);
        st = ddpm_karras_sigmas(sm->sig, sm->K, s, sm->o.sigmas, sm->o.spacing);
        for (int i = 0; !st && i < sm->K; i++) sm->tau[i] = sigma_t(s, sm->sig[sm->K - 1 - i]);
        return st;
    }
    st = ddpm_sampler_timesteps(sm->tau, sm->K, s, sm->o.spacing,
                                sm->o.kind == DDPM_SAMPLER_DPMPP_2M);
    if (!st && sm->o.kind == DDPM_SAMPLER_DDPM && sm->K < s->T)
        st = ddpm_schedule_init_respaced(&sm->rs, s, sm->tau, sm->K);
    return st;
}

ddpm_status ddpm_sampler_create(ddpm_sampler *sm, const ddpm_schedule *s, const ddpm_sampler_opts *o,
                              size_t D, int max_batch) {
    if (!sm) return ddpm_error(DDPM_ERR_ARG, "sampler: NULL");
    memset(sm, 0, sizeof *sm);
    if (!s || !s->beta || !o || D < 1 || max_batch < 1)
        return ddpm_error(DDPM_ERR_ARG, "sampler: missing schedule or options, or empty batch");
    ddpm_status st = plan(sm, s, o);
    sm->D = D;
    sm->max_batch = max_batch;
    if (!st) {
        sm->work = ddpm_malloc(6 * (size_t)max_batch * D * sizeof(float));
        sm->tt = ddpm_malloc((size_t)max_batch * sizeof(int));
        sm->rngs = ddpm_malloc((size_t)max_batch * sizeof(ddpm_rng));
        if (!sm->work || !sm->tt || !sm->rngs)
            st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for a sampler batch of %d", max_batch);
    }
    if (st) ddpm_sampler_destroy(sm);
    return st;
}

void ddpm_sampler_destroy(ddpm_sampler *sm) {
    if (!sm) return;
    ddpm_schedule_free(&sm->rs);
    ddpm_free(sm->tau);
    ddpm_free(sm->sig);
    ddpm_free(sm->work);
    ddpm_free(sm->tt);
    ddpm_free(sm->rngs);
    memset(sm, 0, sizeof *sm);
}

typedef struct {
    ddpm_step_fn fn;
    void *ud;
    int first, N, K;
} step_relay;

static void relay(void *p, int step, const float *x) {
    step_relay *r = p;
    r->fn(r->ud, r->first, r->N, step, r->K, x);
}

/* The first visited entry (VP: i counted down from K-1; Karras: j counted
 * up from 0) of an edit, in *start; its alpha_bar in *ab. */
static ddpm_status edit_start(const ddpm_sampler *sm, const ddpm_sampler_edit *e, int *start, double *ab) {
    bool karras = ddpm_sampler_is_karras(sm->o.kind);
    *start = karras ? 0 : sm->K - 1;
    *ab = 0.0;
    if (!e) return DDPM_OK;
    if (e->keep && !e->x_init) return ddpm_error(DDPM_ERR_ARG, "inpainting needs the images to keep pixels of");
    if (e->resample < 0) return ddpm_error(DDPM_ERR_ARG, "%d resampling jumps", e->resample);
    if (e->resample > 0 && !e->keep) return ddpm_error(DDPM_ERR_ARG, "resampling applies to inpainting only");
    if (e->resample > 0 && sm->o.kind == DDPM_SAMPLER_DPMPP_2M)
        return ddpm_error(DDPM_ERR_ARG, "resampling does not apply to dpm++2m (a multistep method): use ddpm, ddim "
                                        "or a Karras sampler");
    if (e->x_init && !(e->strength > 0.0f && e->strength <= 1.0f))
        return ddpm_error(DDPM_ERR_ARG, "strength %g is outside (0, 1]", (double)e->strength);
    if (!e->x_init || e->strength >= 1.0f) return DDPM_OK;
    int T = sm->s->T, ts = (int)ceil((double)e->strength * T) - 1;
    if (ts < 0) ts = 0;
    if (karras) {
        double sg = sqrt((1.0 - sm->s->alpha_bar[ts]) / sm->s->alpha_bar[ts]) * (1.0 + 1e-12);
        while (*start < sm->K - 1 && sm->sig[*start] > sg) (*start)++;
        *ab = 1.0 / (sm->sig[*start] * sm->sig[*start] + 1.0);
        return DDPM_OK;
    }
    while (*start >= 0 && sm->tau[*start] > ts) (*start)--;
    if (*start < 0)
        return ddpm_error(DDPM_ERR_ARG, "strength %g starts at t = %d, below the sampler's lowest timestep %d",
                          (double)e->strength, ts, sm->tau[0]);
    *ab = sm->s->alpha_bar[sm->tau[*start]];
    return DDPM_OK;
}

ddpm_status ddpm_sampler_edit_steps(const ddpm_sampler *sm, const ddpm_sampler_edit *e, int *steps) {
    int start;
    double ab;
    ddpm_status st = edit_start(sm, e, &start, &ab);
    if (!st) *steps = ddpm_sampler_is_karras(sm->o.kind) ? sm->K - start : start + 1;
    return st;
}

ddpm_status ddpm_sampler_run(ddpm_sampler *sm, float *x, int first, int n, uint64_t seed,
                             const int *labels, ddpm_model_fn model, void *ctx,
                             ddpm_step_fn on_step, void *ud) {
    return ddpm_sampler_run_edit(sm, x, first, n, seed, labels, model, ctx, on_step, ud, NULL);
}

ddpm_status ddpm_sampler_run_edit(ddpm_sampler *sm, float *x, int first, int n, uint64_t seed,
                                  const int *labels, ddpm_model_fn model, void *ctx,
                                  ddpm_step_fn on_step, void *ud, const ddpm_sampler_edit *e) {
    if (!sm || !sm->tau || !x || !model || n < 1 || first < 0)
        return ddpm_error(DDPM_ERR_ARG, "sampler run: missing sampler, buffer or model");
    int start, steps = 0;
    double ab;
    ddpm_status st = edit_start(sm, e, &start, &ab);
    if (st) return st;
    ddpm_sampler_edit_steps(sm, e, &steps);
    size_t D = sm->D, BD = (size_t)sm->max_batch * D;
    loop_args a = {.o = &sm->o, .s = sm->s, .ps = sm->rs.T ? &sm->rs : sm->s, .tau = sm->tau,
                   .sig = sm->sig, .K = sm->K, .start = start, .D = D, .eps = sm->work, .z = sm->work + BD,
                   .x0p = sm->work + 2 * BD, .xin = sm->work + 3 * BD, .eps2 = sm->work + 4 * BD,
                   .tt = sm->tt, .rngs = sm->rngs, .model = model, .ctx = ctx,
                   .keep = e ? e->keep : NULL, .resample = e ? e->resample : 0};
    for (int off = 0; off < n; off += sm->max_batch) {
        int N = n - off < sm->max_batch ? n - off : sm->max_batch;
        float *xb = x + (size_t)off * D;
        const float *init = e && e->x_init ? e->x_init + (size_t)off * D : NULL;
        a.nrng = N; /* N = 1: the shared stream is the image's own */
        a.labels = labels ? labels + off : NULL;
        a.x_init = init;
        for (int k = 0; k < N; k++) {
            ddpm_rng_seed(&sm->rngs[k], ddpm_sampler_image_seed(seed, (int64_t)first + off + k));
            if (e && e->x_T) memcpy(xb + (size_t)k * D, e->x_T + (size_t)(off + k) * D, D * sizeof(float));
            else ddpm_rng_fill_normal(&sm->rngs[k], xb + (size_t)k * D, D); /* x_T */
        }
        if (init && ab > 0.0) /* SDEdit below strength 1 */
            for (size_t j = 0; j < (size_t)N * D; j++) xb[j] = (float)(sqrt(ab) * init[j] + sqrt(1.0 - ab) * xb[j]);
        step_relay r = {on_step, ud, first + off, N, steps};
        if (on_step) on_step(ud, r.first, N, 0, steps, xb);
        st = run_steps(&a, xb, N, on_step ? relay : NULL, &r);
        if (st) return st;
    }
    return DDPM_OK;
}

ddpm_status ddpm_sampler_invert(ddpm_sampler *sm, float *x, int n, const int *labels, ddpm_model_fn model,
                                void *ctx) {
    if (!sm || !sm->tau || !x || !model || n < 1)
        return ddpm_error(DDPM_ERR_ARG, "sampler invert: missing sampler, buffer or model");
    if (sm->o.kind != DDPM_SAMPLER_DDIM) return ddpm_error(DDPM_ERR_ARG, "inversion runs the ddim sampler");
    size_t D = sm->D;
    loop_args a = {.o = &sm->o, .s = sm->s, .D = D, .tt = sm->tt, .model = model, .ctx = ctx};
    for (int off = 0; off < n; off += sm->max_batch) {
        int N = n - off < sm->max_batch ? n - off : sm->max_batch;
        float *xb = x + (size_t)off * D;
        a.labels = labels ? labels + off : NULL;
        for (int i = 0; i < sm->K; i++) {
            int t = sm->tau[i];
            ddpm_status st = call_model(&a, sm->work, xb, N, sm->s->timesteps[t]);
            if (st) return st;
            if (i == 0) ddpm_ddim_invert_step(xb, xb, sm->work, -1, t, sm->s, N, D);
            if (i + 1 < sm->K) ddpm_ddim_invert_step(xb, xb, sm->work, t, sm->tau[i + 1], sm->s, N, D);
        }
    }
    return DDPM_OK;
}

/* ---- one generator for the whole batch (diffusion.h) ------------------------- */

size_t ddpm_sample_loop_workspace(int N, size_t D) { return 3 * (size_t)N * D; }

typedef struct {
    ddpm_eps_fn fn;
    void *ctx;
    void (*on_step)(void *ud, int step, int nsteps, const float *x);
    void *ud;
    int K;
} legacy;

static ddpm_status legacy_model(void *p, float *eps, const float *x, const int *t,
                                const int *labels, int N) {
    (void)labels;
    legacy *l = p;
    return l->fn(l->ctx, eps, x, t, N);
}

static void legacy_step(void *p, int step, const float *x) {
    legacy *l = p;
    l->on_step(l->ud, step, l->K, x);
}

ddpm_status ddpm_sample_loop(float *x, int N, size_t D, const ddpm_schedule *s,
                             const ddpm_sampler_opts *o, ddpm_eps_fn eps_fn, void *ctx,
                             ddpm_rng *rng, float *work,
                             void (*on_step)(void *ud, int step, int nsteps, const float *x),
                             void *ud) {
    if (!x || !s || !s->beta || !o || !eps_fn || !rng || !work || N < 1 || D < 1)
        return ddpm_error(DDPM_ERR_ARG, "sample loop: missing buffer or empty batch");
    ddpm_sampler_opts oo = *o;
    if (ddpm_sampler_is_karras(oo.kind))
        return ddpm_error(DDPM_ERR_ARG, "the one-generator loop runs ddpm, ddim and dpm++2m only");
    if (!oo.steps) oo.steps = ddpm_sampler_max_steps(oo.kind, s->T); /* 0 = all here */
    ddpm_sampler sm = {0};
    ddpm_status st = plan(&sm, s, &oo);
    int *tt = st ? NULL : ddpm_malloc((size_t)N * sizeof(int)); /* [N] */
    if (!st && !tt) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    legacy l = {eps_fn, ctx, on_step, ud, sm.K};
    size_t ND = (size_t)N * D;
    loop_args a = {.o = &sm.o, .s = s, .ps = sm.rs.T ? &sm.rs : s, .tau = sm.tau, .K = sm.K,
                   .start = sm.K - 1, .D = D, .eps = work, .z = work + ND, .x0p = work + 2 * ND, .tt = tt,
                   .rngs = rng, .nrng = 1, .model = legacy_model, .ctx = &l};
    if (!st) st = run_steps(&a, x, N, on_step ? legacy_step : NULL, &l);
    ddpm_free(tt);
    ddpm_sampler_destroy(&sm);
    return st;
}

/* ---- class grids ---------------------------------------------------------- */

int ddpm_sampler_labels(int *labels, int n, int num_classes, int label) {
    for (int i = 0; i < n; i++) labels[i] = label >= 0 ? label : i % num_classes;
    return label < 0 && num_classes <= DDPM_LABEL_COLS_MAX ? num_classes : 0;
}
