/* toy.c: diffusion on 2-D points: training, checkpoint, sampling. See toy.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/toy.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/loss.h"
#include "ddpm/optim.h"
#include "ddpm/safetensors.h"
#include "core/util.h"

#define SAMPLE_CHUNK 4096 /* the MLP's batch capacity is at least this */
#define MAX_POINTS (1 << 26)

struct ddpm_toy {
    ddpm_toy_config cfg;
    ddpm_mlp mlp;
    ddpm_schedule sched;
    float *m, *v;            /* Adam moments [nparams] */
    int64_t step;
    ddpm_rng rng;            /* batch indices, timesteps, noise */
    float *data;             /* [ndata, 2] model coordinates */
    int ndata;
    ddpm_toy_scaling scaling;
    char label[256];
    float *loss_log, *gnorm_log; /* [cap_log] */
    int64_t cap_log;
    /* per-step buffers, [batch] or [batch, 2] */
    int *idx, *t;
    float *x0, *eps, *xt, *pred, *dpred;
};

void ddpm_toy_config_default(ddpm_toy_config *c) {
    *c = (ddpm_toy_config){.hidden = 128, .T = 100, .schedule = DDPM_SCHED_SIGMOID,
                           .seed_betas = false, .batch = 128, .iters = 50000, .lr = 1e-3f,
                           .clip = 1.0f, .antithetic = true, .seed = 0};
}

ddpm_status ddpm_toy_config_validate(const ddpm_toy_config *c) {
    ddpm_mlp_config mc = {2, c->hidden, c->T};
    ddpm_status st = ddpm_mlp_config_validate(&mc);
    if (st) return st;
    if (c->T < 2 || c->T > DDPM_SCHEDULE_MAX_T)
        return ddpm_error(DDPM_ERR_ARG, "timesteps %d outside [2, %d]", c->T, DDPM_SCHEDULE_MAX_T);
    if (c->batch < 1 || c->batch > 65536)
        return ddpm_error(DDPM_ERR_ARG, "batch %d outside [1, 65536]", c->batch);
    if (c->iters < 1 || c->iters > 100000000)
        return ddpm_error(DDPM_ERR_ARG, "iterations %" PRId64 " outside [1, 1e8]", c->iters);
    if (!(c->lr > 0.0f && c->lr <= 1.0f))
        return ddpm_error(DDPM_ERR_ARG, "learning rate %g outside (0, 1]", (double)c->lr);
    if (!isfinite(c->clip)) return ddpm_error(DDPM_ERR_ARG, "gradient clip is not finite");
    if (!c->seed_betas && !strcmp(ddpm_schedule_name(c->schedule), "?"))
        return ddpm_error(DDPM_ERR_ARG, "invalid schedule %d", (int)c->schedule);
    return DDPM_OK;
}

const char *ddpm_toy_schedule_name(const ddpm_toy_config *c) {
    return c->seed_betas ? "seed-sigmoid" : ddpm_schedule_name(c->schedule);
}

ddpm_status ddpm_toy_schedule_init(ddpm_schedule *s, const ddpm_toy_config *c) {
    if (!c->seed_betas) return ddpm_schedule_init(s, c->schedule, c->T);
    memset(s, 0, sizeof *s);
    double *beta = malloc((size_t)c->T * sizeof *beta);
    if (!beta) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    for (int t = 0; t < c->T; t++) {
        double u = -6.0 + 12.0 * t / (double)(c->T - 1); /* linspace(-6, 6, T) */
        if (t == c->T - 1) u = 6.0;
        beta[t] = 1.0 / (1.0 + exp(-u)) * (DDPM_TOY_SEED_BETA_HI - DDPM_TOY_SEED_BETA_LO) +
                  DDPM_TOY_SEED_BETA_LO;
    }
    ddpm_status st = ddpm_schedule_init_betas(s, DDPM_SCHED_SIGMOID, beta, c->T);
    free(beta);
    return st;
}

/* ---- create / free ------------------------------------------------------------------ */

/* Everything but the parameters, moments and rng: model, schedule, buffers, data. */
static ddpm_status toy_alloc(ddpm_toy **out, const ddpm_toy_config *c, int n) {
    *out = NULL;
    ddpm_status st = ddpm_toy_config_validate(c);
    if (st) return st;
    if (n < 1 || n > MAX_POINTS)
        return ddpm_error(DDPM_ERR_ARG, "%d training points, need 1 to %d", n, MAX_POINTS);
    ddpm_toy *t = calloc(1, sizeof *t);
    if (!t) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    t->cfg = *c;
    ddpm_mlp_config mc = {2, c->hidden, c->T};
    int cap = c->batch > SAMPLE_CHUNK ? c->batch : SAMPLE_CHUNK;
    size_t B = (size_t)c->batch;
    if ((st = ddpm_mlp_create(&t->mlp, &mc, cap)) || (st = ddpm_toy_schedule_init(&t->sched, c))) {
        ddpm_toy_free(t);
        return st;
    }
    t->m = ddpm_calloc(2 * t->mlp.nparams, sizeof(float));
    t->v = t->m ? t->m + t->mlp.nparams : NULL;
    t->idx = ddpm_calloc(2 * B, sizeof(int));
    t->t = t->idx ? t->idx + B : NULL;
    t->x0 = ddpm_calloc(10 * B, sizeof(float));
    t->data = ddpm_calloc(2 * (size_t)n, sizeof(float));
    t->cap_log = c->iters;
    t->loss_log = ddpm_calloc(2 * (size_t)c->iters, sizeof(float));
    if (!t->m || !t->idx || !t->x0 || !t->data || !t->loss_log) {
        ddpm_toy_free(t);
        return DDPM_ERR_NOMEM; /* message set by ddpm_calloc */
    }
    t->gnorm_log = t->loss_log + c->iters;
    t->eps = t->x0 + 2 * B, t->xt = t->x0 + 4 * B, t->pred = t->x0 + 6 * B, t->dpred = t->x0 + 8 * B;
    t->ndata = n;
    *out = t;
    return DDPM_OK;
}

ddpm_status ddpm_toy_create(ddpm_toy **out, const ddpm_toy_config *c, const float *data, int n,
                            const ddpm_toy_scaling *scaling, const char *data_name) {
    ddpm_status st = toy_alloc(out, c, n);
    if (st) return st;
    ddpm_toy *t = *out;
    if (!ddpm_all_finite(data, 2 * (size_t)n)) {
        ddpm_toy_free(t);
        *out = NULL;
        return ddpm_error(DDPM_ERR_NUMERIC, "training points hold a non-finite value");
    }
    memcpy(t->data, data, 2 * (size_t)n * sizeof(float));
    t->scaling = scaling ? *scaling : ddpm_toy_scaling_none();
    snprintf(t->label, sizeof t->label, "%s", data_name ? data_name : "points");
    ddpm_rng root, init;
    ddpm_rng_seed(&root, c->seed);
    init = ddpm_rng_split(&root);
    t->rng = ddpm_rng_split(&root);
    ddpm_mlp_init_params(&t->mlp, &init);
    return DDPM_OK;
}

void ddpm_toy_free(ddpm_toy *t) {
    if (!t) return;
    ddpm_mlp_free(&t->mlp);
    ddpm_schedule_free(&t->sched);
    ddpm_free(t->m);
    ddpm_free(t->idx);
    ddpm_free(t->x0);
    ddpm_free(t->data);
    ddpm_free(t->loss_log);
    free(t);
}

/* ---- training step ------------------------------------------------------------------- */

/* The batch: points, timesteps (antithetic pairs), noise and x_t. */
static void draw_batch(ddpm_toy *t) {
    const ddpm_toy_config *c = &t->cfg;
    int B = c->batch, half = c->antithetic ? B / 2 : 0;
    for (int i = 0; i < B; i++) t->idx[i] = (int)ddpm_rng_below(&t->rng, (uint32_t)t->ndata);
    if (half > 0) {
        ddpm_sample_timesteps(t->t, B - half, c->T, &t->rng); /* B - half = ceil(B/2) */
        if (B % 2) t->t[B - 1] = t->t[half];                   /* the odd one keeps its own */
        for (int i = 0; i < half; i++) t->t[half + i] = c->T - 1 - t->t[i];
    } else {
        ddpm_sample_timesteps(t->t, B, c->T, &t->rng);
    }
    ddpm_rng_fill_normal(&t->rng, t->eps, 2 * (size_t)B);
    for (int i = 0; i < B; i++) {
        t->x0[2 * i] = t->data[2 * (size_t)t->idx[i]];
        t->x0[2 * i + 1] = t->data[2 * (size_t)t->idx[i] + 1];
    }
    ddpm_q_sample(t->xt, t->x0, t->eps, t->t, &t->sched, B, 2);
}

ddpm_status ddpm_toy_step(ddpm_toy *t, ddpm_toy_stats *st) {
    const ddpm_toy_config *c = &t->cfg;
    if (t->step >= c->iters)
        return ddpm_error(DDPM_ERR_ARG, "training is complete (%" PRId64 " steps)", t->step);
    int B = c->batch;
    draw_batch(t);
    ddpm_mlp_forward(&t->mlp, t->pred, t->xt, t->t, B);
    double loss = ddpm_loss(t->dpred, t->pred, t->eps, 2 * (size_t)B, DDPM_LOSS_L2);
    size_t P = t->mlp.nparams;
    memset(t->mlp.grads, 0, P * sizeof(float));
    ddpm_mlp_backward(&t->mlp, NULL, t->dpred);
    double gnorm = ddpm_clip_grad_norm(t->mlp.grads, P, c->clip);
    if (!isfinite(loss) || !isfinite(gnorm))
        return ddpm_error(DDPM_ERR_NUMERIC, "non-finite %s at step %" PRId64,
                          isfinite(loss) ? "gradient" : "loss", t->step + 1);
    ddpm_adamw_cfg ac;
    ddpm_adamw_default(&ac);
    ddpm_adamw_step(t->mlp.params, t->mlp.grads, t->m, t->v, P, &ac, c->lr, t->step + 1);
    t->loss_log[t->step] = (float)loss;
    t->gnorm_log[t->step] = (float)gnorm;
    t->step++;
    if (st) st->loss = loss, st->grad_norm = gnorm;
    return DDPM_OK;
}

/* ---- checkpoint ---------------------------------------------------------------------- */

#define NMETA 19
static const char *const PREFIX[3] = {"", "adam_m.", "adam_v."};

/* Metadata strings of t into v (NMETA rows) and meta. */
static void fill_meta(const ddpm_toy *t, char v[NMETA][80], ddpm_st_meta *meta) {
    static const char *const keys[NMETA] = {
        "format", "format_version", "dim", "hidden", "timesteps", "schedule", "batch",
        "iters", "lr", "clip", "antithetic", "seed", "step", "rng", "data", "shift_x",
        "shift_y", "scale", "points"};
    const ddpm_toy_config *c = &t->cfg;
    snprintf(v[0], 80, "ddpm-toy");
    snprintf(v[1], 80, "1");
    snprintf(v[2], 80, "2");
    snprintf(v[3], 80, "%d", c->hidden);
    snprintf(v[4], 80, "%d", c->T);
    snprintf(v[5], 80, "%s", ddpm_toy_schedule_name(c));
    snprintf(v[6], 80, "%d", c->batch);
    snprintf(v[7], 80, "%" PRId64, c->iters);
    snprintf(v[8], 80, "%.9g", (double)c->lr);
    snprintf(v[9], 80, "%.9g", (double)c->clip);
    snprintf(v[10], 80, "%d", c->antithetic ? 1 : 0);
    snprintf(v[11], 80, "%" PRIu64, c->seed);
    snprintf(v[12], 80, "%" PRId64, t->step);
    ddpm_rng_to_hex(v[13], 80, &t->rng);
    snprintf(v[14], 80, "%.79s", t->label);
    snprintf(v[15], 80, "%.17g", t->scaling.shift[0]);
    snprintf(v[16], 80, "%.17g", t->scaling.shift[1]);
    snprintf(v[17], 80, "%.17g", t->scaling.scale);
    snprintf(v[18], 80, "%d", t->ndata);
    for (int i = 0; i < NMETA; i++) meta[i] = (ddpm_st_meta){keys[i], v[i]};
}

ddpm_status ddpm_toy_save(const ddpm_toy *t, const char *path) {
    ddpm_st_entry e[3 * DDPM_MLP_NPARAM + 3];
    char names[3 * DDPM_MLP_NPARAM][64];
    const float *src[3] = {t->mlp.params, t->m, t->v};
    int ne = 0;
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < DDPM_MLP_NPARAM; k++, ne++) {
            const ddpm_mlp_param *q = &t->mlp.table[k];
            snprintf(names[ne], sizeof names[ne], "%s%s", PREFIX[p], q->name);
            e[ne] = (ddpm_st_entry){names[ne], q->ndim, {q->shape[0], q->shape[1]}, src[p] + q->offset};
        }
    e[ne++] = (ddpm_st_entry){"data", 2, {t->ndata, 2}, t->data};
    if (t->step > 0) {
        e[ne++] = (ddpm_st_entry){"log.loss", 1, {t->step}, t->loss_log};
        e[ne++] = (ddpm_st_entry){"log.grad_norm", 1, {t->step}, t->gnorm_log};
    }
    char v[NMETA][80];
    ddpm_st_meta meta[NMETA];
    fill_meta(t, v, meta);
    return ddpm_st_save(path, e, ne, meta, NMETA);
}

/* Metadata value `key` as an integer in [lo, hi] or a finite double. */
static ddpm_status meta_i64(const ddpm_st_file *f, const char *path, const char *key, int64_t lo,
                            int64_t hi, int64_t *out) {
    const char *s = ddpm_st_meta_get(f, key);
    if (!s) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata lacks '%s'", path, key);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is not a valid value: '%s'", path,
                          key, ddpm_show(s).s);
    *out = x;
    return DDPM_OK;
}

static ddpm_status meta_f64(const ddpm_st_file *f, const char *path, const char *key, double *out) {
    const char *s = ddpm_st_meta_get(f, key);
    if (!s) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata lacks '%s'", path, key);
    char *end;
    *out = strtod(s, &end);
    if (end == s || *end || !isfinite(*out))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is not a number: '%s'", path, key,
                          ddpm_show(s).s);
    return DDPM_OK;
}

/* The config and step from the metadata. */
static ddpm_status read_config(const ddpm_st_file *f, const char *path, ddpm_toy_config *c,
                               int64_t *step, int64_t *npoints) {
    const char *fmt = ddpm_st_meta_get(f, "format"), *sch = ddpm_st_meta_get(f, "schedule");
    if (!fmt || strcmp(fmt, "ddpm-toy"))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': not a ddpm toy checkpoint (metadata 'format' is %s)",
                          path, fmt ? ddpm_show(fmt).s : "missing");
    ddpm_toy_config_default(c);
    int64_t h = 0, T = 0, B = 0, anti = 0;
    double lr = 0.0, clip = 0.0;
    ddpm_status st;
    if ((st = meta_i64(f, path, "hidden", 1, DDPM_MLP_MAX_HIDDEN, &h)) ||
        (st = meta_i64(f, path, "timesteps", 2, DDPM_SCHEDULE_MAX_T, &T)) ||
        (st = meta_i64(f, path, "batch", 1, 65536, &B)) ||
        (st = meta_i64(f, path, "iters", 1, 100000000, &c->iters)) ||
        (st = meta_i64(f, path, "antithetic", 0, 1, &anti)) ||
        (st = meta_i64(f, path, "step", 0, c->iters, step)) ||
        (st = meta_i64(f, path, "points", 1, MAX_POINTS, npoints)) ||
        (st = meta_f64(f, path, "lr", &lr)) || (st = meta_f64(f, path, "clip", &clip)))
        return st;
    c->hidden = (int)h, c->T = (int)T, c->batch = (int)B, c->antithetic = anti != 0;
    const char *seed = ddpm_st_meta_get(f, "seed");
    char *end;
    errno = 0;
    c->seed = seed ? strtoull(seed, &end, 10) : 0;
    if (!seed || errno || end == seed || *end || seed[0] == '-')
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata 'seed' is missing or invalid", path);
    c->lr = (float)lr, c->clip = (float)clip;
    c->seed_betas = sch && !strcmp(sch, "seed-sigmoid");
    int kind = c->seed_betas ? DDPM_SCHED_SIGMOID : ddpm_schedule_parse(sch);
    if (kind < 0)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata 'schedule' is %s%s", path,
                          sch ? "unknown: " : "missing", sch ? ddpm_show(sch).s : "");
    c->schedule = (ddpm_schedule_kind)kind;
    return DDPM_OK;
}

/* Copies tensor `name` (exactly `numel` finite floats of the given shape) into dst. */
static ddpm_status read_tensor(const ddpm_st_file *f, const char *path, const char *name, int ndim,
                               const int64_t *shape, float *dst) {
    const ddpm_st_tensor *x = ddpm_st_find(f, name);
    if (!x) return ddpm_error(DDPM_ERR_FORMAT, "'%s': missing tensor '%s'", path, name);
    bool same = x->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = x->shape[d] == shape[d];
    if (!same)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': tensor '%s' has the wrong shape for this config",
                          path, name);
    if (!ddpm_all_finite(x->data, x->numel))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': tensor '%s' holds a non-finite value", path, name);
    memcpy(dst, x->data, x->numel * sizeof(float));
    return DDPM_OK;
}

/* Every tensor of the checkpoint into t (the file must hold no others). */
static ddpm_status read_tensors(ddpm_toy *t, const ddpm_st_file *f, const char *path) {
    float *dst[3] = {t->mlp.params, t->m, t->v};
    ddpm_status st;
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < DDPM_MLP_NPARAM; k++) {
            const ddpm_mlp_param *q = &t->mlp.table[k];
            char name[64];
            int64_t shape[2] = {q->shape[0], q->shape[1]};
            snprintf(name, sizeof name, "%s%s", PREFIX[p], q->name);
            if ((st = read_tensor(f, path, name, q->ndim, shape, dst[p] + q->offset))) return st;
        }
    int64_t dshape[2] = {t->ndata, 2}, lshape[1] = {t->step};
    if ((st = read_tensor(f, path, "data", 2, dshape, t->data))) return st;
    int nlog = t->step > 0 ? 2 : 0;
    if (nlog && ((st = read_tensor(f, path, "log.loss", 1, lshape, t->loss_log)) ||
                 (st = read_tensor(f, path, "log.grad_norm", 1, lshape, t->gnorm_log))))
        return st;
    if (f->ntensors != 3 * DDPM_MLP_NPARAM + 1 + nlog)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': %d tensors, a toy checkpoint of this config has %d",
                          path, f->ntensors, 3 * DDPM_MLP_NPARAM + 1 + nlog);
    return DDPM_OK;
}

/* Scaling, label and rng state from the metadata. */
static ddpm_status read_state(ddpm_toy *t, const ddpm_st_file *f, const char *path) {
    ddpm_status st;
    if ((st = meta_f64(f, path, "shift_x", &t->scaling.shift[0])) ||
        (st = meta_f64(f, path, "shift_y", &t->scaling.shift[1])) ||
        (st = meta_f64(f, path, "scale", &t->scaling.scale)))
        return st;
    if (!(t->scaling.scale > 0.0))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata 'scale' must be positive", path);
    const char *label = ddpm_st_meta_get(f, "data");
    snprintf(t->label, sizeof t->label, "%s", label ? label : "points");
    if (!ddpm_rng_from_hex(&t->rng, ddpm_st_meta_get(f, "rng")))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata 'rng' is missing or invalid", path);
    return DDPM_OK;
}

ddpm_status ddpm_toy_resume(ddpm_toy **out, const char *path, int64_t iters) {
    *out = NULL;
    ddpm_st_file f;
    ddpm_status st = ddpm_st_load(&f, path);
    if (st) return st;
    ddpm_toy_config c;
    int64_t step, npoints;
    if ((st = read_config(&f, path, &c, &step, &npoints))) goto done;
    if (iters > 0 && iters < step) {
        st = ddpm_error(DDPM_ERR_ARG, "'%s' has trained %" PRId64 " steps, more than the %" PRId64 " requested",
                        path, step, iters);
        goto done;
    }
    if (iters > 0) c.iters = iters;
    if ((st = toy_alloc(out, &c, (int)npoints))) goto done;
    (*out)->step = step;
    if ((st = read_tensors(*out, &f, path)) || (st = read_state(*out, &f, path))) {
        ddpm_toy_free(*out);
        *out = NULL;
    }
done:
    ddpm_st_free(&f);
    return st;
}

/* ---- sampling -------------------------------------------------------------------------- */

/* The MLP as the sampler's noise predictor (unconditional: labels unused). */
static ddpm_status toy_eps(void *ctx, float *eps_hat, const float *x, const int *t,
                           const int *labels, int N) {
    (void)labels;
    ddpm_mlp *m = ctx;
    for (int i = 0; i < N; i += m->max_batch) {
        int n = N - i < m->max_batch ? N - i : m->max_batch;
        ddpm_mlp_forward(m, eps_hat + 2 * (size_t)i, x + 2 * (size_t)i, t + i, n);
    }
    return DDPM_OK;
}

ddpm_status ddpm_toy_sample(ddpm_toy *t, float *x, int n, const ddpm_sampler_opts *o,
                            uint64_t seed, ddpm_step_fn on_step, void *ud) {
    if (n < 1 || n > MAX_POINTS)
        return ddpm_error(DDPM_ERR_ARG, "cannot sample %d points (1 to %d)", n, MAX_POINTS);
    ddpm_sampler sm;
    ddpm_status st = ddpm_sampler_create(&sm, &t->sched, o, 2, t->mlp.max_batch);
    if (st == DDPM_OK) st = ddpm_sampler_run(&sm, x, 0, n, seed, NULL, toy_eps, &t->mlp, on_step, ud);
    ddpm_sampler_destroy(&sm);
    return st;
}

/* ---- accessors ------------------------------------------------------------------------- */

const ddpm_toy_config *ddpm_toy_get_config(const ddpm_toy *t) { return &t->cfg; }
const ddpm_schedule *ddpm_toy_schedule(const ddpm_toy *t) { return &t->sched; }
int64_t ddpm_toy_step_count(const ddpm_toy *t) { return t->step; }
const char *ddpm_toy_data_label(const ddpm_toy *t) { return t->label; }
ddpm_toy_scaling ddpm_toy_get_scaling(const ddpm_toy *t) { return t->scaling; }
const float *ddpm_toy_loss_log(const ddpm_toy *t) { return t->loss_log; }
const float *ddpm_toy_grad_norm_log(const ddpm_toy *t) { return t->gnorm_log; }
ddpm_mlp *ddpm_toy_model(ddpm_toy *t) { return &t->mlp; }

const float *ddpm_toy_data(const ddpm_toy *t, int *n) {
    *n = t->ndata;
    return t->data;
}
