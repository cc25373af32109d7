/* bpd.c: the variational bound in bits/dim (docs/design.md §7), term by term as
 * improved-diffusion's _vb_terms_bpd, _prior_bpd and calc_bpd_loop. */
#include "ddpm/eval.h"
#include "ddpm/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PI_D 3.14159265358979323846

/* KL(N(m1, e^lv1) || N(m2, e^lv2)) per element, in nats. */
static double normal_kl(double m1, double lv1, double m2, double lv2) {
    double dm = m1 - m2;
    return 0.5 * (-1.0 + lv2 - lv1 + exp(lv1 - lv2) + dm * dm * exp(-lv2));
}

/* improved-diffusion's approx_standard_normal_cdf (the tanh approximation). */
static double approx_cdf(double x) {
    return 0.5 * (1.0 + tanh(sqrt(2.0 / PI_D) * (x + 0.044715 * x * x * x)));
}

/* log p(x) of the bin of width 2/255 around x under N(mean, e^(2 log_scale)),
 * the outer bins (x < -0.999, x > 0.999) open to -inf / +inf. */
static double discretized_loglik(double x, double mean, double log_scale) {
    double c = x - mean, inv = exp(-log_scale);
    double cdf_plus = approx_cdf(inv * (c + 1.0 / 255.0)), cdf_min = approx_cdf(inv * (c - 1.0 / 255.0));
    if (x < -0.999) return log(fmax(cdf_plus, 1e-12));
    if (x > 0.999) return log(fmax(1.0 - cdf_min, 1e-12));
    return log(fmax(cdf_plus - cdf_min, 1e-12));
}

void ddpm_vb_term_bpd(double *bits, const float *x0, const float *xt, const float *eps_hat, int t,
                      const ddpm_schedule *s, ddpm_var_kind var, int N, size_t D) {
    double sab = s->sqrt_alpha_bar[t], s1m = s->sqrt_one_minus_alpha_bar[t];
    double cx0 = s->coef_x0[t], cxt = s->coef_xt[t];
    double lv_true = s->posterior_log_var_clipped[t];
    double lv_model = var == DDPM_VAR_LARGE && t > 0 ? log(s->beta[t]) : lv_true;
    /* at t = 0 posterior_log_var_clipped is log(posterior_var_1) for both kinds */
    for (int n = 0; n < N; n++) {
        double sum = 0.0;
        for (size_t i = 0; i < D; i++) {
            size_t k = (size_t)n * D + i;
            double x = x0[k], y = xt[k];
            double x0h = (y - s1m * eps_hat[k]) / sab;
            x0h = x0h < -1.0 ? -1.0 : x0h > 1.0 ? 1.0 : x0h;
            double mean_model = cx0 * x0h + cxt * y;
            if (t == 0) {
                sum -= discretized_loglik(x, mean_model, 0.5 * lv_model);
            } else {
                double mean_true = cx0 * x + cxt * y;
                sum += normal_kl(mean_true, lv_true, mean_model, lv_model);
            }
        }
        bits[n] = sum / ((double)D * log(2.0));
    }
}

void ddpm_prior_bpd(double *bits, const float *x0, const ddpm_schedule *s, int N, size_t D) {
    int t = s->T - 1;
    double sab = s->sqrt_alpha_bar[t], lv = log(1.0 - s->alpha_bar[t]);
    for (int n = 0; n < N; n++) {
        double sum = 0.0;
        for (size_t i = 0; i < D; i++) sum += normal_kl(sab * x0[(size_t)n * D + i], lv, 0.0, 0.0);
        bits[n] = sum / ((double)D * log(2.0));
    }
}

size_t ddpm_bpd_workspace(int N, size_t D) { return 2 * (size_t)N * D; }

ddpm_status ddpm_bpd_loop(double *terms, const float *x0, int N, size_t D, const ddpm_schedule *s,
                          ddpm_var_kind var, ddpm_model_fn eps_fn, void *ctx, ddpm_rng *rngs, float *work,
                          int (*on_t)(void *ud, int done, int T), void *ud) {
    if (N < 1 || N > DDPM_BPD_MAX_BATCH)
        return ddpm_error(DDPM_ERR_ARG, "bits/dim: batch of %d images (1..%d)", N, DDPM_BPD_MAX_BATCH);
    int T = s->T, tv[DDPM_BPD_MAX_BATCH], ti[DDPM_BPD_MAX_BATCH];
    double col[DDPM_BPD_MAX_BATCH];
    float *xt = work, *eps = work + (size_t)N * D; /* (N, D) each */
    for (int t = T - 1; t >= 0; t--) {
        for (int n = 0; n < N; n++) {
            ddpm_rng_fill_normal(&rngs[n], xt + (size_t)n * D, D);
            ti[n] = t;
            tv[n] = s->timesteps[t];
        }
        ddpm_q_sample(xt, x0, xt, ti, s, N, D); /* the noise becomes x_t in place */
        ddpm_status st = eps_fn(ctx, eps, xt, tv, NULL, N);
        if (st) return st;
        for (size_t j = 0; j < (size_t)N * D; j++)
            if (!isfinite(eps[j]))
                return ddpm_error(DDPM_ERR_NUMERIC, "the model predicted a non-finite value at timestep %d", t);
        ddpm_vb_term_bpd(col, x0, xt, eps, t, s, var, N, D);
        for (int n = 0; n < N; n++) terms[(size_t)n * (T + 1) + t] = col[n];
        if (on_t && on_t(ud, T - t, T)) return ddpm_error(DDPM_ERR_INTERRUPTED, "interrupted");
    }
    ddpm_prior_bpd(col, x0, s, N, D);
    for (int n = 0; n < N; n++) terms[(size_t)n * (T + 1) + T] = col[n];
    return DDPM_OK;
}

void ddpm_bpd_result_free(ddpm_bpd_result *r) {
    free(r->terms);
    r->terms = NULL;
}

typedef struct {
    int (*on_t)(void *ud, int done, int total);
    void *ud;
    int base, total;
} batch_progress;

static int batch_on_t(void *ud, int done, int T) {
    (void)T;
    batch_progress *b = ud;
    return b->on_t ? b->on_t(b->ud, b->base + done, b->total) : 0;
}

/* Per-image sums of the rows of terms [n, T + 1] into r. */
static void bpd_stats(ddpm_bpd_result *r, const double *terms, int n, int T) {
    double tot = 0.0, tot2 = 0.0;
    for (int i = 0; i < n; i++) {
        double row = 0.0;
        for (int t = 0; t <= T; t++) {
            row += terms[(size_t)i * (T + 1) + t];
            r->terms[t] += terms[(size_t)i * (T + 1) + t] / n;
        }
        tot += row, tot2 += row * row;
    }
    double mu = tot / n, sd = n > 1 ? sqrt(fmax(0.0, (tot2 - n * mu * mu) / (n - 1))) : 0.0;
    r->bpd = mu;
    r->bpd_stderr = sd / sqrt((double)n);
    r->prior = r->terms[T];
    r->decoder = r->terms[0];
    r->kl = 0.0;
    for (int t = 1; t < T; t++) r->kl += r->terms[t];
}

ddpm_status ddpm_eval_bpd(ddpm_bpd_result *r, ddpm_pipeline *p, const ddpm_dataset *ds, int n, int batch,
                          uint64_t seed, ddpm_var_kind var, int (*on_t)(void *ud, int done, int total), void *ud) {
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    const ddpm_schedule *s = ddpm_pipeline_schedule(p);
    int T = s->T, B = batch < n ? batch : n;
    size_t D = in->D;
    memset(r, 0, sizeof *r);
    if (in->cfg.in_ch != ds->c || in->cfg.res != ds->h || in->cfg.res != ds->w)
        return ddpm_error(DDPM_ERR_ARG, "the model makes %d x %d x %d images; the test images are %d x %d x %d",
                          in->cfg.in_ch, in->cfg.res, in->cfg.res, ds->c, ds->h, ds->w);
    if (n < 1 || n > ds->n || B < 1 || B > DDPM_BPD_MAX_BATCH || B > ddpm_pipeline_max_batch(p))
        return ddpm_error(DDPM_ERR_ARG, "bits/dim of %d images of %d in batches of %d", n, ds->n, B);
    r->n = n, r->T = T;
    double *terms = malloc((size_t)n * (T + 1) * sizeof(double));
    r->terms = calloc((size_t)T + 1, sizeof(double));
    float *x0 = ddpm_malloc((size_t)B * D * sizeof(float)), *work = ddpm_malloc(ddpm_bpd_workspace(B, D) * sizeof(float));
    ddpm_rng *rngs = ddpm_malloc((size_t)B * sizeof(ddpm_rng));
    int *idx = ddpm_malloc((size_t)B * sizeof(int));
    ddpm_status st = !terms || !r->terms || !x0 || !work || !rngs || !idx ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for bits/dim")
                                                                         : DDPM_OK;
    batch_progress bp = {on_t, ud, 0, ((n + B - 1) / B) * T};
    for (int first = 0; first < n && !st; first += B, bp.base += T) {
        int N = n - first < B ? n - first : B;
        for (int i = 0; i < N; i++) {
            idx[i] = first + i;
            ddpm_rng_seed(&rngs[i], seed ^ (0xd1b54a32d192ed03ULL * ((uint64_t)(first + i) + 1)));
        }
        ddpm_dataset_to_float(x0, ds, idx, N);
        /* labels NULL: the unconditional bound (the "no label" row of a conditional model) */
        st = ddpm_bpd_loop(terms + (size_t)first * (T + 1), x0, N, D, s, var, ddpm_pipeline_eps, p, rngs, work,
                           batch_on_t, &bp);
    }
    if (!st) bpd_stats(r, terms, n, T);
    else ddpm_bpd_result_free(r);
    free(terms);
    ddpm_free(x0);
    ddpm_free(work);
    ddpm_free(rngs);
    ddpm_free(idx);
    return st;
}

ddpm_status ddpm_bpd_write_terms(const char *path, const ddpm_bpd_result *r) {
    ddpm_atomic_file a;
    ddpm_status st = ddpm_atomic_open(&a, path);
    if (st) return st;
    fprintf(a.f, "t,term,bits_per_dim\n");
    for (int t = 0; t <= r->T; t++)
        fprintf(a.f, "%d,%s,%.9g\n", t, t == r->T ? "prior" : t == 0 ? "decoder" : "kl", r->terms[t]);
    return ferror(a.f) ? ddpm_atomic_fail(&a, "write error") : ddpm_atomic_commit(&a);
}
