/* train.c: the trainer's iterations: create, attach data, step, run. The
 * checkpoint schema (save, resume) is in train_ckpt.c. See train.h. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/prof.h"
#include "core/util.h"
#include "ddpm/diffusion.h"
#include "ddpm/progress.h" /* ddpm_now */
#include "nn/gemm_tile.h"   /* the bf16 path of this CPU */
#include "train/dist.h"
#include "train/trainer.h"

void ddpm_train_config_default(ddpm_train_config *c) {
    memset(c, 0, sizeof *c);
    ddpm_unet_config_default(&c->model);
    /* The quick start: at equal training time a narrower model at a smaller
     * batch takes more steps and wins (docs/quality.md, "How the defaults
     * were chosen"); v with min-SNR-5 from the earlier search. */
    c->model.ch = 16;
    c->schedule = DDPM_SCHED_LINEAR;
    c->T = 1000;
    c->loss = DDPM_LOSS_L2;
    c->objective = DDPM_OBJ_V;
    c->snr_gamma = 5.0f;
    c->batch = 32;
    c->iters = 9370; /* the previous quick start's training time (docs/quality.md) */
    c->lr = 1e-3f;
    c->warmup = ddpm_train_default_warmup(c->iters);
    c->decay = DDPM_LR_COSINE;
    c->min_lr_ratio = 0.05f;
    c->weight_decay = 0.0f;
    c->clip = 1.0f;
    c->ema_decay = 0.999f;
    c->cond_drop = 0.1f;
    c->seed = 0;
    c->precision = ddpm_train_default_precision();
    c->sampler = DDPM_SAMPLER_DDPM; /* ancestral, 100 steps: the quick start's best (docs/quality.md) */
    c->sample_steps = 0;
}

ddpm_precision ddpm_train_default_precision(void) {
    return ddpm_bf16_isa_selected() == DDPM_BF16_AVX512 ? DDPM_PREC_BF16 : DDPM_PREC_FP32;
}

int64_t ddpm_train_default_warmup(int64_t iters) { return (iters * 9 + 50) / 100; }

void ddpm_train_recipe(ddpm_train_config *c, int in_ch, int res) {
    ddpm_train_config_default(c);
    if (ddpm_unet_preset(&c->model, in_ch, res)) {
        /* At 32 px batch 32 leads a search at equal time (more steps for the
         * same images); 9000 of them fill an hour on two Zen 4 cores with a
         * margin (docs/quality.md). 64 px keeps the older recipe. */
        if (res == 32) c->batch = 32, c->iters = 9000;
        else c->batch = 64, c->iters = 2200;
        c->warmup = ddpm_train_default_warmup(c->iters);
        /* On the emoji the ancestral sampler's 100 steps score KID 265 where
         * DPM-Solver++(2M)'s 20 score 127, from one checkpoint (docs/quality.md) */
        c->sampler = DDPM_SAMPLER_DPMPP_2M, c->sample_steps = 20;
        return;
    }
    c->model.in_ch = in_ch, c->model.res = res;
}

void ddpm_train_take_recipe(ddpm_train_config *c, int in_ch, int res, const ddpm_train_fixed *k) {
    ddpm_train_config r;
    ddpm_train_recipe(&r, in_ch, res);
    if (!k->T) c->T = r.T;
    if (!k->schedule) c->schedule = r.schedule;
    if (!k->objective) c->objective = r.objective;
    if (!k->snr_gamma) c->snr_gamma = r.snr_gamma;
    if (!k->batch) c->batch = r.batch;
    if (!k->iters) c->iters = r.iters;
    if (!k->warmup) c->warmup = ddpm_train_default_warmup(c->iters);
    if (!k->lr) c->lr = r.lr;
    if (!k->ema_decay) c->ema_decay = r.ema_decay;
    if (!k->ema_gamma) c->ema_gamma = r.ema_gamma;
    if (!k->sampler && c->objective == r.objective) {
        c->sampler = r.sampler;
        if (!k->sample_steps)
            c->sample_steps = r.sample_steps <= ddpm_sampler_max_steps(r.sampler, c->T) ? r.sample_steps : 0;
    }
}

ddpm_status ddpm_trainer_validate(const ddpm_train_config *c) {
    ddpm_status s = ddpm_unet_config_validate(&c->model);
    if (s) return s;
    if (c->T < 2 || c->T > DDPM_SCHEDULE_MAX_T)
        return ddpm_error(DDPM_ERR_ARG, "T (diffusion timesteps) must be in [2, %d], got %d", DDPM_SCHEDULE_MAX_T, c->T);
    if (c->objective != DDPM_OBJ_EPS && c->objective != DDPM_OBJ_V && c->objective != DDPM_OBJ_X0)
        return ddpm_error(DDPM_ERR_ARG, "invalid objective %d", (int)c->objective);
    if (!(c->snr_gamma >= 0.0f) || !isfinite(c->snr_gamma))
        return ddpm_error(DDPM_ERR_ARG, "min-SNR gamma must be a finite number >= 0, got %g", (double)c->snr_gamma);
    if (c->batch < 1 || c->batch > 65536) return ddpm_error(DDPM_ERR_ARG, "batch must be in [1, 65536], got %d", c->batch);
    if (c->iters < 1) return ddpm_error(DDPM_ERR_ARG, "iterations must be >= 1");
    if (!(c->lr > 0.0f) || !isfinite(c->lr)) return ddpm_error(DDPM_ERR_ARG, "learning rate must be > 0");
    if (c->warmup < 0) return ddpm_error(DDPM_ERR_ARG, "warmup must be >= 0");
    if (!(c->ema_decay >= 0.0f && c->ema_decay < 1.0f)) return ddpm_error(DDPM_ERR_ARG, "EMA decay must be in [0, 1)");
    if (!(c->ema_gamma >= 0.0f && c->ema_gamma <= 1000.0f))
        return ddpm_error(DDPM_ERR_ARG, "EMA gamma must be in [0, 1000], got %g", (double)c->ema_gamma);
    if (!(c->cond_drop >= 0.0f && c->cond_drop <= 1.0f))
        return ddpm_error(DDPM_ERR_ARG, "label-drop probability must be in [0, 1]");
    if (c->precision != DDPM_PREC_FP32 && c->precision != DDPM_PREC_BF16)
        return ddpm_error(DDPM_ERR_ARG, "invalid precision %d", (int)c->precision);
    if (!strcmp(ddpm_sampler_name(c->sampler), "?")) return ddpm_error(DDPM_ERR_ARG, "invalid sampler %d", (int)c->sampler);
    if (c->sample_steps < 0 || c->sample_steps > ddpm_sampler_max_steps(c->sampler, c->T))
        return ddpm_error(DDPM_ERR_ARG, "%s takes at most %d steps with T = %d, got %d", ddpm_sampler_name(c->sampler),
                          ddpm_sampler_max_steps(c->sampler, c->T), c->T, c->sample_steps);
    return DDPM_OK;
}

ddpm_status ddpm_trainer_alloc(ddpm_trainer *tr) {
    const ddpm_train_config *c = &tr->cfg;
    ddpm_status s;
    tr->rank = ddpm_dist_rank();
    tr->world = ddpm_dist_size();
    if (c->batch % tr->world)
        return ddpm_error(DDPM_ERR_ARG, "the batch of %d images does not split evenly across %d ranks", c->batch,
                          tr->world);
    tr->lb = c->batch / tr->world;
    tr->off = tr->rank * tr->lb;
    if ((s = ddpm_unet_create(&tr->model, &c->model, tr->lb, true))) return s;
    ddpm_unet_set_precision(tr->model, c->precision);
    if ((s = ddpm_schedule_init(&tr->sched, c->schedule, c->T))) return s;
    tr->n = ddpm_unet_num_params(tr->model);
    tr->D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    size_t D = tr->D, B = (size_t)c->batch, L = (size_t)tr->lb;
    tr->m = ddpm_calloc(tr->n, sizeof(float));
    tr->v = ddpm_calloc(tr->n, sizeof(float));
    tr->ema = ddpm_calloc(tr->n, sizeof(float));
    tr->x0 = ddpm_malloc(L * D * sizeof(float));
    tr->xt = ddpm_malloc(L * D * sizeof(float));
    tr->eps = ddpm_malloc(B * D * sizeof(float));
    tr->pred = ddpm_malloc(L * D * sizeof(float));
    tr->dpred = ddpm_malloc(L * D * sizeof(float));
    tr->target = ddpm_malloc(L * D * sizeof(float));
    tr->w = ddpm_malloc(L * sizeof(double));
    tr->t = ddpm_malloc(B * sizeof(int));
    tr->idx = ddpm_malloc(B * sizeof(int));
    tr->labels = ddpm_malloc(B * sizeof(int));
    tr->lab_in = ddpm_malloc(L * sizeof(int));
    if (!tr->m || !tr->v || !tr->ema || !tr->x0 || !tr->xt || !tr->eps || !tr->pred || !tr->dpred || !tr->target || !tr->w || !tr->t ||
        !tr->idx || !tr->labels || !tr->lab_in)
        return DDPM_ERR_NOMEM;
    ddpm_adamw_default(&tr->adam);
    tr->adam.weight_decay = c->weight_decay;
    return DDPM_OK;
}

/* In a data-parallel run, rank r > 0 draws its dropout masks from its own
 * stream, derived from rank 0's (which is the one checkpoints keep). */
void ddpm_trainer_rank_dropout(ddpm_trainer *tr) {
    if (tr->rank == 0) return;
    ddpm_rng *r = ddpm_unet_rng(tr->model);
    ddpm_rng_seed(r, ddpm_splitmix64(r->s[0] ^ r->s[3] ^ DDPM_GOLDEN_GAMMA * (uint64_t)tr->rank));
}

/* The data order's seed: a fixed function of the run's seed. */
uint64_t ddpm_trainer_order_seed(const ddpm_train_config *c) {
    ddpm_rng r;
    ddpm_rng_seed(&r, c->seed ^ 0x5eed0da7aULL);
    return ddpm_rng_u64(&r);
}

ddpm_status ddpm_trainer_create(ddpm_trainer **out, const ddpm_train_config *cfg) {
    *out = NULL;
    ddpm_status s = ddpm_trainer_validate(cfg);
    if (s) return s;
    ddpm_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    tr->cfg = *cfg;
    if ((s = ddpm_trainer_alloc(tr))) {
        ddpm_trainer_free(tr);
        return s;
    }
    /* Independent streams from one seed: parameters, the step's draws, dropout. */
    ddpm_rng root;
    ddpm_rng_seed(&root, cfg->seed);
    ddpm_rng init = ddpm_rng_split(&root);
    tr->rng = ddpm_rng_split(&root);
    *ddpm_unet_rng(tr->model) = ddpm_rng_split(&root);
    ddpm_trainer_rank_dropout(tr);
    ddpm_unet_init_params(tr->model, ddpm_rng_u64(&init));
    memcpy(tr->ema, ddpm_unet_params(tr->model), tr->n * sizeof(float));
    tr->order_seed = ddpm_trainer_order_seed(cfg);
    *out = tr;
    return DDPM_OK;
}

void ddpm_trainer_free(ddpm_trainer *tr) {
    if (!tr) return;
    ddpm_unet_free(tr->model);
    ddpm_schedule_free(&tr->sched);
    float *fbuf[] = {tr->m, tr->v, tr->ema, tr->x0, tr->xt, tr->eps, tr->pred, tr->dpred, tr->target};
    for (size_t i = 0; i < sizeof fbuf / sizeof *fbuf; i++) ddpm_free(fbuf[i]);
    int *ibuf[] = {tr->t, tr->idx, tr->labels, tr->lab_in};
    for (size_t i = 0; i < sizeof ibuf / sizeof *ibuf; i++) ddpm_free(ibuf[i]);
    ddpm_free(tr->w);
    ddpm_epoch_order_free(&tr->order);
    free(tr->data_name);
    free(tr->resumed_meta);
    free(tr);
}

/* ---- data ----------------------------------------------------------------------------- */

static ddpm_status check_data(const ddpm_trainer *tr, const ddpm_dataset *ds, const char *name) {
    const ddpm_unet_config *m = &tr->cfg.model;
    if (m->in_ch != ds->c || m->res != ds->h || ds->h != ds->w)
        return ddpm_error(DDPM_ERR_ARG, "the model takes %dx%dx%d images, the data in '%s' is %dx%dx%d", m->in_ch,
                          m->res, m->res, name, ds->c, ds->h, ds->w);
    if (m->num_classes > 0 && !ds->labels)
        return ddpm_error(DDPM_ERR_ARG, "the model is class-conditional, but '%s' has no labels", name);
    if (m->num_classes > 0 && m->num_classes < ds->num_classes)
        return ddpm_error(DDPM_ERR_ARG, "the model has %d classes, but the labels in '%s' go up to %d", m->num_classes,
                          name, ds->num_classes - 1);
    if (tr->have_order && tr->order_pos > ds->n)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is %" PRId64 ", beyond the %d images in '%s'",
                          tr->ckpt_path, DDPM_META_DATA_POS, tr->order_pos, ds->n, name);
    return DDPM_OK;
}

ddpm_status ddpm_trainer_set_data(ddpm_trainer *tr, const ddpm_dataset *ds, const char *name) {
    if (tr->ckpt_path[0] && !tr->have_order)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': cannot resume: metadata lacks '%s' (the data order)", tr->ckpt_path,
                          DDPM_META_DATA_SEED);
    ddpm_status s = check_data(tr, ds, name);
    if (s) return s;
    char *copy = strdup(name);
    if (!copy) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_epoch_order_free(&tr->order);
    s = tr->have_order ? ddpm_epoch_order_resume(&tr->order, ds->n, tr->order_seed, tr->order_epoch, (int)tr->order_pos)
                       : ddpm_epoch_order_init(&tr->order, ds->n, tr->order_seed);
    if (s) {
        free(copy);
        return s;
    }
    free(tr->data_name);
    tr->data_name = copy;
    tr->ds = ds;
    return DDPM_OK;
}

const char *ddpm_trainer_data_name(const ddpm_trainer *tr) { return tr->data_name; }
const ddpm_dataset *ddpm_trainer_data(const ddpm_trainer *tr) { return tr->ds; }

void ddpm_trainer_set_check_sync(ddpm_trainer *tr, int64_t every) { tr->check_sync = every; }

void ddpm_trainer_set_batch_hook(ddpm_trainer *tr, ddpm_batch_hook fn, void *ctx) {
    tr->hook = fn;
    tr->hook_ctx = ctx;
}

/* ---- the step ------------------------------------------------------------------------- */

/* Draw the global batch's t, eps and label dropout (so the stream is the same
 * for every world size), and form this rank's x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps. */
static const int *draw_noise(ddpm_trainer *tr, const float *x0, const int *labels) {
    const ddpm_train_config *c = &tr->cfg;
    int B = c->batch;
    ddpm_sample_timesteps(tr->t, B, c->T, &tr->rng);
    ddpm_rng_fill_normal(&tr->rng, tr->eps, (size_t)B * tr->D);
    ddpm_q_sample(tr->xt, x0, tr->eps + (size_t)tr->off * tr->D, tr->t + tr->off, &tr->sched, tr->lb, tr->D);
    if (c->model.num_classes <= 0 || !labels) return NULL;
    /* drop labels with probability cond_drop, so the model also learns the
     * unconditional score (classifier-free guidance) */
    for (int i = 0; i < B; i++) {
        bool drop = ddpm_rng_uniform(&tr->rng) < c->cond_drop;
        if (i >= tr->off && i < tr->off + tr->lb) tr->lab_in[i - tr->off] = drop ? c->model.num_classes : labels[i - tr->off];
    }
    return tr->lab_in;
}

/* Across ranks: the global loss (mean of the ranks' means) and the global
 * gradient, sum / R. Skipped entirely in a world of one. */
static ddpm_status reduce_loss(ddpm_trainer *tr, double *loss, double *comm) {
    if (tr->world == 1) return DDPM_OK;
    double t0 = ddpm_now();
    ddpm_status s = ddpm_dist_sum_f64(loss, 1);
    *loss /= tr->world;
    *comm += ddpm_now() - t0;
    return s;
}

static ddpm_status reduce_grads(ddpm_trainer *tr, float *grads, double *comm) {
    if (tr->world == 1) return DDPM_OK;
    double t0 = ddpm_now();
    ddpm_status s = ddpm_dist_sum_f32(grads, tr->n);
    float inv = 1.0f / (float)tr->world;
    for (size_t i = 0; i < tr->n; i++) grads[i] *= inv;
    *comm += ddpm_now() - t0;
    return s;
}

/* FNV-1a over the parameters' bytes, compared across ranks. */
static ddpm_status check_sync(ddpm_trainer *tr) {
    const unsigned char *p = (const unsigned char *)ddpm_unet_params(tr->model);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < tr->n * sizeof(float); i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    if (!ddpm_dist_same_u64(h))
        return ddpm_error(DDPM_ERR_NUMERIC, "the parameters differ across the %d ranks after iteration %" PRId64,
                          tr->world, tr->step);
    return DDPM_OK;
}

/* The loss of this rank's prediction and its gradient into dpred: against
 * eps, or the v / x0 target, each image weighted by min-SNR-gamma when on.
 * eps unweighted is the plain L_simple call (bit for bit as before the options). */
static double objective_loss(ddpm_trainer *tr, const float *x0) {
    const ddpm_train_config *c = &tr->cfg;
    const float *target = tr->eps + (size_t)tr->off * tr->D;
    const int *t = tr->t + tr->off;
    if (c->objective != DDPM_OBJ_EPS) {
        ddpm_objective_target(tr->target, x0, target, t, &tr->sched, c->objective, tr->lb, tr->D);
        target = tr->target;
    }
    if (c->snr_gamma <= 0.0f) return ddpm_loss(tr->dpred, tr->pred, target, (size_t)tr->lb * tr->D, c->loss);
    ddpm_min_snr_weights(tr->w, t, &tr->sched, c->objective, (double)c->snr_gamma, tr->lb);
    return ddpm_loss_weighted(tr->dpred, tr->pred, target, tr->w, tr->lb, tr->D, c->loss);
}

/* One step on this rank's share x0 (lb, C, H, W). */
static ddpm_status step(ddpm_trainer *tr, const float *x0, const int *labels, ddpm_train_stats *st) {
    const ddpm_train_config *c = &tr->cfg;
    double comm = 0.0, t0 = ddpm_prof_tic();
    const int *lab = draw_noise(tr, x0, labels);
    ddpm_prof_toc(DDPM_PROF_LOSS, DDPM_PROF_FWD, t0);

    ddpm_status s = ddpm_unet_forward(tr->model, tr->pred, tr->xt, tr->t + tr->off, lab, tr->lb);
    if (s) return s;
    t0 = ddpm_prof_tic();
    double loss = objective_loss(tr, x0);
    ddpm_prof_toc(DDPM_PROF_LOSS, DDPM_PROF_FWD, t0);
    if ((s = reduce_loss(tr, &loss, &comm))) return s;
    if (!isfinite(loss))
        return ddpm_error(DDPM_ERR_NUMERIC, "loss is %g at iteration %" PRId64, loss, tr->step + 1);
    ddpm_unet_zero_grad(tr->model);
    if ((s = ddpm_unet_backward(tr->model, tr->dpred))) return s;

    float *params = ddpm_unet_params(tr->model), *grads = ddpm_unet_grads(tr->model);
    if ((s = reduce_grads(tr, grads, &comm))) return s;
    t0 = ddpm_prof_tic();
    double gnorm = ddpm_clip_grad_norm(grads, tr->n, c->clip);
    if (!isfinite(gnorm))
        return ddpm_error(DDPM_ERR_NUMERIC, "gradient norm is %g at iteration %" PRId64, gnorm, tr->step + 1);
    float lr = ddpm_lr_at(tr->step, c->iters, c->warmup, c->lr, c->decay, c->min_lr_ratio);
    ddpm_adamw_step(params, grads, tr->m, tr->v, tr->n, &tr->adam, lr, tr->step + 1);
    if (c->ema_decay > 0.0f)
        ddpm_ema_update(tr->ema, params, tr->n,
                        c->ema_gamma > 0.0f ? ddpm_ema_power_decay(tr->step, c->ema_gamma)
                                            : ddpm_ema_decay_at(tr->step, c->ema_decay));
    ddpm_prof_toc(DDPM_PROF_OPTIM, DDPM_PROF_BWD, t0);
    tr->step++;
    if (tr->check_sync > 0 && tr->step % tr->check_sync == 0 && (s = check_sync(tr))) return s;
    if (st) *st = (ddpm_train_stats){.iter = tr->step, .loss = loss, .grad_norm = gnorm, .lr = lr, .comm_s = comm};
    return DDPM_OK;
}

ddpm_status ddpm_trainer_step(ddpm_trainer *tr, const float *x0, const int *labels, ddpm_train_stats *st) {
    if (tr->world > 1) return ddpm_error(DDPM_ERR_ARG, "ddpm_trainer_step is single-process; use ddpm_trainer_next");
    return step(tr, x0, labels, st);
}

ddpm_status ddpm_trainer_next(ddpm_trainer *tr, ddpm_train_stats *st) {
    if (!tr->ds) return ddpm_error(DDPM_ERR_ARG, "the trainer has no data (ddpm_trainer_set_data)");
    const ddpm_dataset *ds = tr->ds;
    /* every rank walks the whole global batch's order and takes its share */
    ddpm_epoch_order_next(&tr->order, tr->idx, tr->cfg.batch);
    const int *mine = tr->idx + tr->off;
    ddpm_dataset_to_float(tr->x0, ds, mine, tr->lb);
    bool want = tr->cfg.model.num_classes > 0;
    if (want) ddpm_dataset_get_labels(tr->labels, ds, mine, tr->lb);
    if (tr->hook) tr->hook(tr->hook_ctx, tr->x0, want ? tr->labels : NULL, mine, tr->lb, tr->step + 1);
    return step(tr, tr->x0, want ? tr->labels : NULL, st);
}

ddpm_status ddpm_trainer_run(ddpm_trainer *tr, int64_t until, ddpm_train_progress_fn fn, void *ctx) {
    bool stop = false;
    while (tr->step < until && !stop) {
        ddpm_train_stats st;
        ddpm_status s = ddpm_trainer_next(tr, &st);
        if (s) return s;
        ddpm_test_kill_iter(tr->rank, tr->step);
        if (fn && (s = fn(ctx, tr, &st, &stop))) return s;
        stop = ddpm_dist_any(stop); /* a signal on any rank stops all at this iteration */
    }
    return DDPM_OK;
}

const ddpm_train_config *ddpm_trainer_config(const ddpm_trainer *tr) { return &tr->cfg; }
int64_t ddpm_trainer_step_count(const ddpm_trainer *tr) { return tr->step; }
ddpm_unet *ddpm_trainer_model(ddpm_trainer *tr) { return tr->model; }
const float *ddpm_trainer_ema(const ddpm_trainer *tr) {
    return tr->cfg.ema_decay > 0.0f ? tr->ema : ddpm_unet_params(tr->model);
}
const ddpm_schedule *ddpm_trainer_schedule(const ddpm_trainer *tr) { return &tr->sched; }
