/* train_ckpt.c: the trainer's checkpoint schema: what ddpm_trainer_save
 * writes under the DDPM_META_* keys (train.h) and how ddpm_trainer_resume
 * reads it back, every value checked. See train.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/pipeline.h" /* ddpm_meta_sampler */
#include "ddpm/train.h"
#include "train/trainer.h"
#include "core/util.h"

/* ---- save ------------------------------------------------------------------------------- */

/* the keys of fill_meta (27 at most), the user's and a save's own (ddpm_trainer_save_with) */
enum { NMETA = 27 + DDPM_TRAIN_MAX_USER_META + DDPM_TRAIN_MAX_SAVE_META, VALUE_CAP = 80 };

/* The metadata entries, in file order; values formatted into v. Returns the count. */
static int fill_meta(const ddpm_trainer *tr, ddpm_st_meta *meta, char (*v)[VALUE_CAP]) {
    const ddpm_train_config *c = &tr->cfg;
    int k = 0;
#define PUT(key, ...) (snprintf(v[k], VALUE_CAP, __VA_ARGS__), meta[k] = (ddpm_st_meta){key, v[k]}, k++)
    PUT(DDPM_META_SCHEDULE, "%s", ddpm_schedule_name(c->schedule));
    PUT(DDPM_META_TIMESTEPS, "%d", c->T);
    PUT(DDPM_META_LOSS, "%s", ddpm_loss_name(c->loss));
    PUT(DDPM_META_OBJECTIVE, "%s", ddpm_objective_name(c->objective));
    PUT(DDPM_META_SNR_GAMMA, "%.9g", (double)c->snr_gamma);
    /* absent = fp32: fp32 checkpoints stay byte for byte what they were before bf16 */
    if (c->precision != DDPM_PREC_FP32) PUT(DDPM_META_PRECISION, "%s", ddpm_precision_name(c->precision));
    /* absent = ddpm at its default steps: such checkpoints stay byte for byte what they were */
    if (c->sampler != DDPM_SAMPLER_DDPM || c->sample_steps) {
        PUT(DDPM_META_SAMPLER, "%s", ddpm_sampler_name(c->sampler));
        PUT(DDPM_META_SAMPLE_STEPS, "%d", c->sample_steps);
    }
    PUT(DDPM_META_BATCH, "%d", c->batch);
    PUT(DDPM_META_ITERS, "%" PRId64, c->iters);
    PUT(DDPM_META_LR, "%.9g", (double)c->lr);
    PUT(DDPM_META_WARMUP, "%" PRId64, c->warmup);
    PUT(DDPM_META_LR_DECAY, "%s", ddpm_lr_decay_name(c->decay));
    PUT(DDPM_META_MIN_LR_RATIO, "%.9g", (double)c->min_lr_ratio);
    PUT(DDPM_META_WEIGHT_DECAY, "%.9g", (double)c->weight_decay);
    PUT(DDPM_META_CLIP, "%.9g", (double)c->clip);
    PUT(DDPM_META_EMA_DECAY, "%.9g", (double)c->ema_decay);
    /* absent = 0: checkpoints without a power profile stay byte for byte what they were */
    if (c->ema_gamma > 0.0f) PUT(DDPM_META_EMA_GAMMA, "%.9g", (double)c->ema_gamma);
    PUT(DDPM_META_COND_DROP, "%.9g", (double)c->cond_drop);
    PUT(DDPM_META_SEED, "%" PRIu64, c->seed);
    PUT(DDPM_META_STEP, "%" PRId64, tr->step);
    ddpm_rng_to_hex(v[k], VALUE_CAP, &tr->rng);
    meta[k] = (ddpm_st_meta){DDPM_META_RNG, v[k]}, k++;
    ddpm_rng_to_hex(v[k], VALUE_CAP, ddpm_unet_rng(tr->model));
    meta[k] = (ddpm_st_meta){DDPM_META_DROPOUT_RNG, v[k]}, k++;
    if (tr->ds) {
        PUT(DDPM_META_DATA_SEED, "%" PRIu64, tr->order.seed);
        PUT(DDPM_META_DATA_EPOCH, "%" PRIu32, tr->order.epoch);
        PUT(DDPM_META_DATA_POS, "%d", tr->order.pos);
        meta[k] = (ddpm_st_meta){DDPM_META_DATA, tr->data_name}, k++;
    }
#undef PUT
    for (int i = 0; i < tr->n_user_meta; i++) meta[k++] = tr->user_meta[i];
    return k;
}

ddpm_status ddpm_trainer_set_user_meta(ddpm_trainer *tr, const ddpm_st_meta *meta, int n) {
    if (n < 0 || n > DDPM_TRAIN_MAX_USER_META)
        return ddpm_error(DDPM_ERR_ARG, "%d metadata entries (at most %d)", n, DDPM_TRAIN_MAX_USER_META);
    tr->user_meta = meta, tr->n_user_meta = n;
    return DDPM_OK;
}

ddpm_status ddpm_trainer_save(const ddpm_trainer *tr, const char *path) {
    return ddpm_trainer_save_with(tr, path, NULL, 0);
}

ddpm_status ddpm_trainer_save_with(const ddpm_trainer *tr, const char *path, const ddpm_st_meta *extra, int nextra) {
    if (nextra < 0 || nextra > DDPM_TRAIN_MAX_SAVE_META)
        return ddpm_error(DDPM_ERR_ARG, "%d metadata entries (at most %d)", nextra, DDPM_TRAIN_MAX_SAVE_META);
    if (tr->rank != 0) return DDPM_OK;
    char v[NMETA][VALUE_CAP];
    ddpm_st_meta meta[NMETA];
    int k = fill_meta(tr, meta, v);
    for (int i = 0; i < nextra; i++) meta[k++] = extra[i];
    const ddpm_train_config *c = &tr->cfg;
    ddpm_checkpoint_extras x = {.ema = c->ema_decay > 0.0f ? tr->ema : NULL,
                                .adam_m = tr->m, .adam_v = tr->v, .extra = meta, .nextra = k};
    return ddpm_checkpoint_save(path, &c->model, ddpm_unet_params(tr->model), &x);
}

/* ---- resume: every value present, well formed and in range -------------------------------- */

static ddpm_status need(const ddpm_checkpoint *ck, const char *key, const char **out) {
    *out = ddpm_checkpoint_meta(ck, key);
    if (!*out)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: metadata lacks '%s' (not a training checkpoint?)",
                          ck->path, key);
    return DDPM_OK;
}

static ddpm_status bad(const ddpm_checkpoint *ck, const char *key, const char *s, const char *why) {
    return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is %s: '%s'", ck->path, key, why, ddpm_show(s).s);
}

/* The typed readers of safetensors.h, after the resume-specific message for a missing key. */
static ddpm_status need_i64(const ddpm_checkpoint *ck, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    return st ? st : ddpm_meta_i64(&ck->file, ck->path, key, lo, hi, out);
}

static ddpm_status need_u64(const ddpm_checkpoint *ck, const char *key, uint64_t *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    return st ? st : ddpm_meta_u64(&ck->file, ck->path, key, out);
}

static ddpm_status need_f(const ddpm_checkpoint *ck, const char *key, float lo, float hi, float *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    return st ? st : ddpm_meta_float(&ck->file, ck->path, key, lo, hi, out);
}

static ddpm_status need_enum(const ddpm_checkpoint *ck, const char *key, int (*parse)(const char *), int *out) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    return st ? st : ddpm_meta_enum(&ck->file, ck->path, key, parse, NULL, out);
}

/* 64 hex digits, the four state words; the all-zero state is invalid. */
static ddpm_status need_rng(const ddpm_checkpoint *ck, const char *key, ddpm_rng *r) {
    const char *s;
    ddpm_status st = need(ck, key, &s);
    if (st) return st;
    if (!ddpm_rng_from_hex(r, s))
        return bad(ck, key, s, strspn(s, "0") == 64 ? "the all-zero generator state"
                                                    : "not a generator state (64 hex digits)");
    return DDPM_OK;
}

ddpm_status ddpm_train_read_objective(const ddpm_checkpoint *ck, ddpm_objective *obj, bool *recorded) {
    const char *s = ddpm_checkpoint_meta(ck, DDPM_META_OBJECTIVE);
    int v = DDPM_OBJ_EPS;
    if (recorded) *recorded = s != NULL;
    ddpm_status st = s ? ddpm_meta_enum(&ck->file, ck->path, DDPM_META_OBJECTIVE, ddpm_objective_parse, "eps, v or x0", &v)
                       : DDPM_OK;
    *obj = (ddpm_objective)v;
    return st;
}

/* The objective, min-SNR gamma and precision, all absent in checkpoints from
 * before them (eps, 0, fp32: what those runs trained). */
static ddpm_status read_objective(const ddpm_checkpoint *ck, ddpm_train_config *c) {
    ddpm_status s = ddpm_train_read_objective(ck, &c->objective, NULL);
    c->snr_gamma = 0.0f;
    if (!s && ddpm_checkpoint_meta(ck, DDPM_META_SNR_GAMMA))
        s = need_f(ck, DDPM_META_SNR_GAMMA, 0.0f, INFINITY, &c->snr_gamma);
    c->precision = DDPM_PREC_FP32;
    const char *p = ddpm_checkpoint_meta(ck, DDPM_META_PRECISION);
    if (!s && p) {
        const int v = ddpm_precision_parse(p);
        if (v < 0) return bad(ck, DDPM_META_PRECISION, p, "an unknown value (expected fp32 or bf16)");
        c->precision = (ddpm_precision)v;
    }
    return s;
}

static ddpm_status read_enums(const ddpm_checkpoint *ck, ddpm_train_config *c) {
    int sched, loss, decay;
    ddpm_status s;
    if ((s = need_enum(ck, DDPM_META_SCHEDULE, ddpm_schedule_parse, &sched)) ||
        (s = need_enum(ck, DDPM_META_LOSS, ddpm_loss_parse, &loss)) ||
        (s = need_enum(ck, DDPM_META_LR_DECAY, ddpm_lr_decay_parse, &decay)) || (s = read_objective(ck, c)))
        return s;
    c->schedule = (ddpm_schedule_kind)sched;
    c->loss = (ddpm_loss_kind)loss;
    c->decay = (ddpm_lr_decay)decay;
    return DDPM_OK;
}

static ddpm_status read_config(const ddpm_checkpoint *ck, ddpm_train_config *c, int64_t *step) {
    ddpm_train_config_default(c);
    c->model = ck->cfg;
    int64_t T, batch;
    ddpm_status s;
    if ((s = read_enums(ck, c)) || (s = need_i64(ck, DDPM_META_TIMESTEPS, 2, DDPM_SCHEDULE_MAX_T, &T)) ||
        (s = need_i64(ck, DDPM_META_BATCH, 1, 65536, &batch)) ||
        (s = need_i64(ck, DDPM_META_ITERS, 1, INT64_MAX, &c->iters)) ||
        (s = need_f(ck, DDPM_META_LR, 0.0f, INFINITY, &c->lr)) ||
        (s = need_i64(ck, DDPM_META_WARMUP, 0, INT64_MAX, &c->warmup)) ||
        (s = need_f(ck, DDPM_META_MIN_LR_RATIO, 0.0f, 1.0f, &c->min_lr_ratio)) ||
        (s = need_f(ck, DDPM_META_WEIGHT_DECAY, 0.0f, INFINITY, &c->weight_decay)) ||
        (s = need_f(ck, DDPM_META_CLIP, -INFINITY, INFINITY, &c->clip)) ||
        (s = need_f(ck, DDPM_META_EMA_DECAY, 0.0f, 1.0f, &c->ema_decay)) ||
        (ddpm_checkpoint_meta(ck, DDPM_META_EMA_GAMMA) &&
         (s = need_f(ck, DDPM_META_EMA_GAMMA, 0.0f, 1000.0f, &c->ema_gamma))) ||
        (s = need_f(ck, DDPM_META_COND_DROP, 0.0f, 1.0f, &c->cond_drop)) ||
        (s = need_u64(ck, DDPM_META_SEED, &c->seed)) || (s = need_i64(ck, DDPM_META_STEP, 0, INT64_MAX, step)))
        return s;
    c->T = (int)T;
    c->batch = (int)batch;
    if ((s = ddpm_meta_sampler(&ck->file, ck->path, c->T, &c->sampler, &c->sample_steps))) return s;
    if (!ck->has_adam) return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: no Adam moments in the checkpoint", ck->path);
    if (c->ema_decay > 0.0f && !ck->has_ema)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: EMA is on but the checkpoint has no EMA weights", ck->path);
    return DDPM_OK;
}

/* The data order and the dataset's name, if the checkpoint has them (all of them). */
static ddpm_status read_data_state(const ddpm_checkpoint *ck, ddpm_trainer *tr) {
    if (!ddpm_checkpoint_meta(ck, DDPM_META_DATA_SEED)) return DDPM_OK; /* set_data reports it */
    int64_t epoch;
    ddpm_status s;
    if ((s = need_u64(ck, DDPM_META_DATA_SEED, &tr->order_seed)) ||
        (s = need_i64(ck, DDPM_META_DATA_EPOCH, 0, UINT32_MAX, &epoch)) ||
        (s = need_i64(ck, DDPM_META_DATA_POS, 0, INT32_MAX, &tr->order_pos)))
        return s;
    tr->order_epoch = (uint32_t)epoch;
    tr->have_order = true;
    const char *name = ddpm_checkpoint_meta(ck, DDPM_META_DATA);
    if (name && !(tr->data_name = strdup(name))) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    return DDPM_OK;
}

static ddpm_status read_state(const ddpm_checkpoint *ck, ddpm_trainer *tr) {
    ddpm_status s;
    if ((s = need_rng(ck, DDPM_META_RNG, &tr->rng)) ||
        (s = need_rng(ck, DDPM_META_DROPOUT_RNG, ddpm_unet_rng(tr->model))) || (s = read_data_state(ck, tr)) ||
        (s = ddpm_checkpoint_read(ck, "", ddpm_unet_params(tr->model))) ||
        (s = ddpm_checkpoint_read(ck, "adam_m.", tr->m)) || (s = ddpm_checkpoint_read(ck, "adam_v.", tr->v)) ||
        (s = ddpm_checkpoint_read(ck, ck->has_ema ? "ema." : "", tr->ema)))
        return s;
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
    snprintf(tr->ckpt_path, sizeof tr->ckpt_path, "%s", path);
    if ((s = read_config(&ck, &tr->cfg, &step))) goto fail;
    if (iters > 0) tr->cfg.iters = iters;
    if ((s = ddpm_trainer_validate(&tr->cfg)) || (s = ddpm_trainer_alloc(tr)) || (s = read_state(&ck, tr))) goto fail;
    ddpm_trainer_rank_dropout(tr);
    tr->step = step;
    tr->resumed_meta = ddpm_st_meta_copy(&ck.file, &tr->n_resumed_meta);
    if (tr->n_resumed_meta < 0) {
        s = DDPM_ERR_NOMEM;
        goto fail;
    }
    ddpm_checkpoint_close(&ck);
    *out = tr;
    return DDPM_OK;
fail:
    ddpm_checkpoint_close(&ck);
    ddpm_trainer_free(tr);
    return s;
}

const char *ddpm_trainer_resumed_meta(const ddpm_trainer *tr, const char *key) {
    return ddpm_st_meta_find(tr->resumed_meta, tr->n_resumed_meta, key);
}
