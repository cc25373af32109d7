/* train.c: the training step and its state. See train.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/diffusion.h"
#include "core/prof.h"

struct ddpm_trainer {
    ddpm_train_config cfg;
    ddpm_unet *model;
    ddpm_schedule sched;
    size_t n;              /* parameters */
    float *m, *v, *ema;    /* Adam moments and EMA, laid out as the parameters */
    int64_t step;          /* optimizer steps done */
    ddpm_rng rng;          /* timesteps, noise, label dropout */
    ddpm_adamw_cfg adam;
    /* batch buffers (batch, C, H, W) */
    float *xt, *eps, *pred, *dpred;
    int *t, *labels;
    /* metadata of the checkpoint this run resumed from */
    char **meta_kv;
    int nmeta;
};

void ddpm_train_config_default(ddpm_train_config *c) {
    memset(c, 0, sizeof *c);
    ddpm_unet_config_default(&c->model);
    c->schedule = DDPM_SCHED_LINEAR;
    c->T = 1000;
    c->loss = DDPM_LOSS_L2;
    c->batch = 64;
    c->iters = 1400;
    c->lr = 1e-3f;
    c->warmup = 200;
    c->decay = DDPM_LR_COSINE;
    c->min_lr_ratio = 0.05f;
    c->weight_decay = 0.0f;
    c->clip = 1.0f;
    c->ema_decay = 0.999f;
    c->cond_drop = 0.1f;
    c->seed = 0;
}

static ddpm_status validate(const ddpm_train_config *c) {
    ddpm_status s = ddpm_unet_config_validate(&c->model);
    if (s) return s;
    if (c->T < 2 || c->T > DDPM_SCHEDULE_MAX_T)
        return ddpm_error(DDPM_ERR_ARG, "--steps (T) must be in [2, %d], got %d", DDPM_SCHEDULE_MAX_T, c->T);
    if (c->batch < 1 || c->batch > 65536) return ddpm_error(DDPM_ERR_ARG, "--batch must be in [1, 65536], got %d", c->batch);
    if (c->iters < 1) return ddpm_error(DDPM_ERR_ARG, "--iters must be >= 1");
    if (!(c->lr > 0.0f) || !isfinite(c->lr)) return ddpm_error(DDPM_ERR_ARG, "--lr must be > 0");
    if (c->warmup < 0) return ddpm_error(DDPM_ERR_ARG, "--warmup must be >= 0");
    if (!(c->ema_decay >= 0.0f && c->ema_decay < 1.0f)) return ddpm_error(DDPM_ERR_ARG, "--ema must be in [0, 1)");
    if (!(c->cond_drop >= 0.0f && c->cond_drop <= 1.0f)) return ddpm_error(DDPM_ERR_ARG, "--cond-drop must be in [0, 1]");
    return DDPM_OK;
}

static ddpm_status alloc_state(ddpm_trainer *tr) {
    const ddpm_train_config *c = &tr->cfg;
    ddpm_status s;
    if ((s = ddpm_unet_create(&tr->model, &c->model, c->batch, true))) return s;
    if ((s = ddpm_schedule_init(&tr->sched, c->schedule, c->T))) return s;
    tr->n = ddpm_unet_num_params(tr->model);
    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res, B = (size_t)c->batch;
    tr->m = ddpm_calloc(tr->n, sizeof(float));
    tr->v = ddpm_calloc(tr->n, sizeof(float));
    tr->ema = ddpm_calloc(tr->n, sizeof(float));
    tr->xt = ddpm_malloc(B * D * sizeof(float));
    tr->eps = ddpm_malloc(B * D * sizeof(float));
    tr->pred = ddpm_malloc(B * D * sizeof(float));
    tr->dpred = ddpm_malloc(B * D * sizeof(float));
    tr->t = ddpm_malloc(B * sizeof(int));
    tr->labels = ddpm_malloc(B * sizeof(int));
    if (!tr->m || !tr->v || !tr->ema || !tr->xt || !tr->eps || !tr->pred || !tr->dpred || !tr->t || !tr->labels)
        return DDPM_ERR_NOMEM;
    ddpm_adamw_default(&tr->adam);
    tr->adam.weight_decay = c->weight_decay;
    return DDPM_OK;
}

ddpm_status ddpm_trainer_create(ddpm_trainer **out, const ddpm_train_config *cfg) {
    *out = NULL;
    ddpm_status s = validate(cfg);
    if (s) return s;
    ddpm_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    tr->cfg = *cfg;
    if ((s = alloc_state(tr))) {
        ddpm_trainer_free(tr);
        return s;
    }
    /* Independent streams from one seed: parameters, the step's draws, dropout. */
    ddpm_rng root;
    ddpm_rng_seed(&root, cfg->seed);
    ddpm_rng init = ddpm_rng_split(&root);
    tr->rng = ddpm_rng_split(&root);
    *ddpm_unet_rng(tr->model) = ddpm_rng_split(&root);
    ddpm_unet_init_params(tr->model, ddpm_rng_u64(&init));
    memcpy(tr->ema, ddpm_unet_params(tr->model), tr->n * sizeof(float));
    *out = tr;
    return DDPM_OK;
}

void ddpm_trainer_free(ddpm_trainer *tr) {
    if (!tr) return;
    ddpm_unet_free(tr->model);
    ddpm_schedule_free(&tr->sched);
    ddpm_free(tr->m);
    ddpm_free(tr->v);
    ddpm_free(tr->ema);
    ddpm_free(tr->xt);
    ddpm_free(tr->eps);
    ddpm_free(tr->pred);
    ddpm_free(tr->dpred);
    ddpm_free(tr->t);
    ddpm_free(tr->labels);
    for (int i = 0; i < 2 * tr->nmeta; i++) free(tr->meta_kv[i]);
    free(tr->meta_kv);
    free(tr);
}

ddpm_status ddpm_trainer_step(ddpm_trainer *tr, const float *x0, const int *labels, ddpm_train_stats *st) {
    const ddpm_train_config *c = &tr->cfg;
    int B = c->batch;
    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res, n = (size_t)B * D;

    /* x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps */
    double t0 = ddpm_prof_tic();
    ddpm_sample_timesteps(tr->t, B, c->T, &tr->rng);
    ddpm_rng_fill_normal(&tr->rng, tr->eps, n);
    ddpm_q_sample(tr->xt, x0, tr->eps, tr->t, &tr->sched, B, D);
    const int *lab = NULL;
    if (c->model.num_classes > 0 && labels) {
        /* drop labels with probability cond_drop, so the model also learns
         * the unconditional score (classifier-free guidance) */
        for (int i = 0; i < B; i++)
            tr->labels[i] = ddpm_rng_uniform(&tr->rng) < c->cond_drop ? c->model.num_classes : labels[i];
        lab = tr->labels;
    }
    ddpm_prof_toc(DDPM_PROF_LOSS, DDPM_PROF_FWD, t0);

    ddpm_status s = ddpm_unet_forward(tr->model, tr->pred, tr->xt, tr->t, lab, B);
    if (s) return s;
    t0 = ddpm_prof_tic();
    double loss = ddpm_loss(tr->dpred, tr->pred, tr->eps, n, c->loss);
    ddpm_prof_toc(DDPM_PROF_LOSS, DDPM_PROF_FWD, t0);
    if (!isfinite(loss))
        return ddpm_error(DDPM_ERR_NUMERIC, "loss is %g at iteration %" PRId64, loss, tr->step + 1);
    ddpm_unet_zero_grad(tr->model);
    if ((s = ddpm_unet_backward(tr->model, tr->dpred))) return s;

    float *params = ddpm_unet_params(tr->model), *grads = ddpm_unet_grads(tr->model);
    t0 = ddpm_prof_tic();
    double gnorm = ddpm_clip_grad_norm(grads, tr->n, c->clip);
    if (!isfinite(gnorm))
        return ddpm_error(DDPM_ERR_NUMERIC, "gradient norm is %g at iteration %" PRId64, gnorm, tr->step + 1);
    float lr = ddpm_lr_at(tr->step, c->iters, c->warmup, c->lr, c->decay, c->min_lr_ratio);
    ddpm_adamw_step(params, grads, tr->m, tr->v, tr->n, &tr->adam, lr, tr->step + 1);
    if (c->ema_decay > 0.0f) ddpm_ema_update(tr->ema, params, tr->n, ddpm_ema_decay_at(tr->step, c->ema_decay));
    ddpm_prof_toc(DDPM_PROF_OPTIM, DDPM_PROF_BWD, t0);
    tr->step++;
    if (st) {
        st->loss = loss;
        st->grad_norm = gnorm;
        st->lr = lr;
    }
    return DDPM_OK;
}

/* ---- checkpoint state -------------------------------------------------------------- */

#define NTRAIN_META 17

ddpm_status ddpm_trainer_save(const ddpm_trainer *tr, const char *path, const ddpm_st_meta *extra, int nextra) {
    const ddpm_train_config *c = &tr->cfg;
    if (nextra < 0 || nextra > 16) return ddpm_error(DDPM_ERR_ARG, "too many metadata entries");
    char v[NTRAIN_META][80];
    ddpm_st_meta meta[NTRAIN_META + 16];
    const char *keys[NTRAIN_META] = {"schedule", "timesteps", "loss", "batch", "iters", "lr", "warmup", "lr_decay",
                                     "min_lr_ratio", "weight_decay", "clip", "ema_decay", "cond_drop", "seed",
                                     "step", "rng", "dropout_rng"};
    snprintf(v[0], 80, "%s", ddpm_schedule_name(c->schedule));
    snprintf(v[1], 80, "%d", c->T);
    snprintf(v[2], 80, "%s", ddpm_loss_name(c->loss));
    snprintf(v[3], 80, "%d", c->batch);
    snprintf(v[4], 80, "%" PRId64, c->iters);
    snprintf(v[5], 80, "%.9g", (double)c->lr);
    snprintf(v[6], 80, "%" PRId64, c->warmup);
    snprintf(v[7], 80, "%s", ddpm_lr_decay_name(c->decay));
    snprintf(v[8], 80, "%.9g", (double)c->min_lr_ratio);
    snprintf(v[9], 80, "%.9g", (double)c->weight_decay);
    snprintf(v[10], 80, "%.9g", (double)c->clip);
    snprintf(v[11], 80, "%.9g", (double)c->ema_decay);
    snprintf(v[12], 80, "%.9g", (double)c->cond_drop);
    snprintf(v[13], 80, "%" PRIu64, c->seed);
    snprintf(v[14], 80, "%" PRId64, tr->step);
    ddpm_rng_to_hex(v[15], 80, &tr->rng);
    ddpm_rng_to_hex(v[16], 80, ddpm_unet_rng(tr->model));
    for (int i = 0; i < NTRAIN_META; i++) meta[i] = (ddpm_st_meta){keys[i], v[i]};
    for (int i = 0; i < nextra; i++) meta[NTRAIN_META + i] = extra[i];
    ddpm_checkpoint_extras x = {.ema = c->ema_decay > 0.0f ? tr->ema : NULL,
                                .adam_m = tr->m, .adam_v = tr->v,
                                .extra = meta, .nextra = NTRAIN_META + nextra};
    return ddpm_checkpoint_save(path, &c->model, ddpm_unet_params(tr->model), &x);
}

/* Parse helpers for resume: every value must be present and well formed. */
static ddpm_status need(const ddpm_checkpoint *ck, const char *key, const char **out) {
    *out = ddpm_checkpoint_meta(ck, key);
    if (!*out) return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: metadata lacks '%s' (not a training checkpoint?)", ck->path, key);
    return DDPM_OK;
}

static ddpm_status need_i64(const ddpm_checkpoint *ck, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    if (st) return st;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is not a valid value: '%.40s'", ck->path, key, s);
    *out = v;
    return DDPM_OK;
}

static ddpm_status need_f(const ddpm_checkpoint *ck, const char *key, float *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    if (st) return st;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is not a number: '%.40s'", ck->path, key, s);
    *out = (float)v;
    return DDPM_OK;
}

static ddpm_status need_enum(const ddpm_checkpoint *ck, const char *key, int (*parse)(const char *), int *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    if (st) return st;
    *out = parse(s);
    if (*out < 0) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' has an unknown value '%.40s'", ck->path, key, s);
    return DDPM_OK;
}

static ddpm_status read_train_config(const ddpm_checkpoint *ck, ddpm_train_config *c, int64_t *step) {
    ddpm_train_config_default(c);
    c->model = ck->cfg;
    int64_t T, batch;
    int sched, loss, decay;
    ddpm_status s;
    if ((s = need_enum(ck, "schedule", ddpm_schedule_parse, &sched)) ||
        (s = need_i64(ck, "timesteps", 2, DDPM_SCHEDULE_MAX_T, &T)) ||
        (s = need_enum(ck, "loss", ddpm_loss_parse, &loss)) || (s = need_i64(ck, "batch", 1, 65536, &batch)) ||
        (s = need_i64(ck, "iters", 1, INT64_MAX, &c->iters)) || (s = need_f(ck, "lr", &c->lr)) ||
        (s = need_i64(ck, "warmup", 0, INT64_MAX, &c->warmup)) ||
        (s = need_enum(ck, "lr_decay", ddpm_lr_decay_parse, &decay)) ||
        (s = need_f(ck, "min_lr_ratio", &c->min_lr_ratio)) || (s = need_f(ck, "weight_decay", &c->weight_decay)) ||
        (s = need_f(ck, "clip", &c->clip)) || (s = need_f(ck, "ema_decay", &c->ema_decay)) ||
        (s = need_f(ck, "cond_drop", &c->cond_drop)) || (s = need_i64(ck, "step", 0, INT64_MAX, step)))
        return s;
    const char *seed;
    if ((s = need(ck, "seed", &seed))) return s;
    char *end;
    errno = 0;
    c->seed = strtoull(seed, &end, 10);
    if (errno || end == seed || *end || seed[0] == '-')
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata 'seed' is not a valid value: '%.40s'", ck->path, seed);
    c->schedule = (ddpm_schedule_kind)sched;
    c->T = (int)T;
    c->loss = (ddpm_loss_kind)loss;
    c->batch = (int)batch;
    c->decay = (ddpm_lr_decay)decay;
    if (!ck->has_adam) return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: no Adam moments in the checkpoint", ck->path);
    if (c->ema_decay > 0.0f && !ck->has_ema)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: EMA is on but the checkpoint has no EMA weights", ck->path);
    return DDPM_OK;
}

ddpm_status ddpm_trainer_resume(ddpm_trainer **out, const char *path, int64_t iters) {
    *out = NULL;
    ddpm_checkpoint ck;
    ddpm_status s = ddpm_checkpoint_open(&ck, path);
    if (s) return s;
    ddpm_trainer *tr = calloc(1, sizeof *tr);
    int64_t step = 0;
    if (!tr) {
        s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((s = read_train_config(&ck, &tr->cfg, &step))) goto fail;
    if (iters > 0) tr->cfg.iters = iters;
    if ((s = validate(&tr->cfg)) || (s = alloc_state(tr))) goto fail;
    if (!ddpm_rng_from_hex(&tr->rng, ddpm_checkpoint_meta(&ck, "rng")) ||
        !ddpm_rng_from_hex(ddpm_unet_rng(tr->model), ddpm_checkpoint_meta(&ck, "dropout_rng"))) {
        s = ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: malformed random generator state", path);
        goto fail;
    }
    if ((s = ddpm_checkpoint_read(&ck, "", ddpm_unet_params(tr->model))) ||
        (s = ddpm_checkpoint_read(&ck, "adam_m.", tr->m)) || (s = ddpm_checkpoint_read(&ck, "adam_v.", tr->v)) ||
        (s = ddpm_checkpoint_read(&ck, ck.has_ema ? "ema." : "", tr->ema)))
        goto fail;
    tr->step = step;
    tr->meta_kv = calloc(2 * (size_t)ck.file.nmeta, sizeof *tr->meta_kv);
    if (!tr->meta_kv) {
        s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    tr->nmeta = ck.file.nmeta;
    for (int i = 0; i < ck.file.nmeta; i++) {
        tr->meta_kv[2 * i] = strdup(ck.file.meta[i].key);
        tr->meta_kv[2 * i + 1] = strdup(ck.file.meta[i].value);
        if (!tr->meta_kv[2 * i] || !tr->meta_kv[2 * i + 1]) {
            s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    ddpm_checkpoint_close(&ck);
    *out = tr;
    return DDPM_OK;
fail:
    ddpm_checkpoint_close(&ck);
    ddpm_trainer_free(tr);
    return s;
}

const ddpm_train_config *ddpm_trainer_config(const ddpm_trainer *tr) { return &tr->cfg; }
int64_t ddpm_trainer_step_count(const ddpm_trainer *tr) { return tr->step; }
ddpm_unet *ddpm_trainer_model(ddpm_trainer *tr) { return tr->model; }
const float *ddpm_trainer_ema(const ddpm_trainer *tr) {
    return tr->cfg.ema_decay > 0.0f ? tr->ema : ddpm_unet_params(tr->model);
}
const ddpm_schedule *ddpm_trainer_schedule(const ddpm_trainer *tr) { return &tr->sched; }
const char *ddpm_trainer_resume_meta(const ddpm_trainer *tr, const char *key) {
    for (int i = 0; i < tr->nmeta; i++)
        if (!strcmp(tr->meta_kv[2 * i], key)) return tr->meta_kv[2 * i + 1];
    return NULL;
}
