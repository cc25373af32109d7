/* optim.c: AdamW, gradient norm and clipping, LR schedule, EMA. See optim.h. */
#include "ddpm/optim.h"

#include "core/util.h"

#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

/* Elementwise loops below this size run on one thread (results are the same
 * either way; this only avoids waking the team for tiny vectors). */

/* ---- AdamW ------------------------------------------------------------------ */

void ddpm_adamw_default(ddpm_adamw_cfg *c) {
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = 0.0f;
}

void ddpm_adamw_step(float *params, const float *grads, float *m, float *v, size_t n,
                     const ddpm_adamw_cfg *c, float lr, int64_t step) {
    /* scalars exactly as torch computes them: Python doubles, rounded to float by the kernel */
    double bc1 = 1.0 - pow((double)c->beta1, (double)step);
    double bc2 = 1.0 - pow((double)c->beta2, (double)step);
    float decay = (float)(1.0 - (double)lr * (double)c->weight_decay);
    float b1 = c->beta1, one_b1 = (float)(1.0 - (double)c->beta1);
    float b2 = c->beta2, one_b2 = (float)(1.0 - (double)c->beta2);
    float neg_step_size = (float)(-((double)lr / bc1));
    float bc2_sqrt = (float)sqrt(bc2);
    float eps = c->eps;
#pragma omp parallel for schedule(static) if (n >= DDPM_PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = fmaf(g, one_b1, m[i] * b1);
        float vi = fmaf(one_b2 * g, g, v[i] * b2);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        params[i] = p + (neg_step_size * mi) / denom;
    }
}

/* ---- gradient norm and clipping ------------------------------------------------ */

/* Sum of squares of x[0..n) in double, in a fixed order (8 lanes, then the
 * lanes left to right, then the tail). */
static double sumsq(const float *x, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    double s = 0.0;
    for (int j = 0; j < 8; j++) s += acc[j];
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

double ddpm_grad_norm(const float *g, size_t n) {
    double partial[DDPM_NORM_MAX_CHUNKS]; /* one per chunk */
    size_t chunk = DDPM_NORM_CHUNK;
    size_t need = (n + DDPM_NORM_MAX_CHUNKS - 1) / DDPM_NORM_MAX_CHUNKS;
    if (need > chunk) chunk = need;
    size_t nchunks = (n + chunk - 1) / chunk; /* <= DDPM_NORM_MAX_CHUNKS */
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * chunk;
        size_t len = n - lo < chunk ? n - lo : chunk;
        partial[k] = sumsq(g + lo, len);
    }
    double s = 0.0;
    for (size_t k = 0; k < nchunks; k++) s += partial[k];
    return sqrt(s);
}

double ddpm_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = ddpm_grad_norm(g, n);
    if (!(max_norm > 0.0) || !isfinite(norm)) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float s = (float)coef;
#pragma omp parallel for schedule(static) if (n >= DDPM_PAR_MIN_ELEMS)
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

/* ---- learning-rate schedule ---------------------------------------------------- */

static const char *const g_decay_names[] = {"cosine", "constant"};
#define NUM_DECAYS ((int)(sizeof g_decay_names / sizeof *g_decay_names))

int ddpm_lr_decay_parse(const char *name) { return ddpm_enum_lookup("LR decay", g_decay_names, 0, NUM_DECAYS, name); }
const char *ddpm_lr_decay_name(ddpm_lr_decay decay) { return ddpm_enum_name(g_decay_names, NUM_DECAYS, decay); }

float ddpm_lr_at(int64_t step, int64_t total, int64_t warmup, float base_lr,
                 ddpm_lr_decay decay, float min_ratio) {
    if (step < 0) step = 0;
    double base = (double)base_lr;
    if (warmup > 0 && step < warmup) return (float)(base * (double)(step + 1) / (double)warmup);
    if (warmup < 0) warmup = 0;
    if (decay != DDPM_LR_COSINE) return base_lr;
    int64_t span = total - 1 - warmup; /* steps from base_lr down to the floor */
    if (span <= 0) return base_lr;
    double p = (double)(step - warmup) / (double)span;
    if (p > 1.0) p = 1.0;
    double lo = base * (double)min_ratio;
    return (float)(lo + (base - lo) * 0.5 * (1.0 + cos(PI * p)));
}

/* ---- EMA ---------------------------------------------------------------------------- */

float ddpm_ema_decay_at(int64_t step, float max_decay) {
    if (step < 0) step = 0;
    double d = (1.0 + (double)step) / (10.0 + (double)step);
    return d < (double)max_decay ? (float)d : max_decay;
}

float ddpm_ema_power_decay(int64_t step, float gamma) {
    if (step < 1) return 0.0f; /* the first update copies the weights */
    return (float)pow(1.0 - 1.0 / (double)(step + 1), (double)gamma + 1.0);
}

void ddpm_ema_update(float *ema, const float *params, size_t n, float decay) {
    float w = 1.0f - decay;
#pragma omp parallel for schedule(static) if (n >= DDPM_PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) ema[i] += w * (params[i] - ema[i]);
}

/* ---- checks -------------------------------------------------------------------------- */

bool ddpm_all_finite(const float *x, size_t n) { return ddpm_first_nonfinite(x, n) == n; }
