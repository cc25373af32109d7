/* train.h: one DDPM training step and the state it carries (L_simple,
 * DESIGN.md §5), shared by `ddpm train` and `ddpm bench`.
 *
 * A step: draw t ~ U{0..T-1} and eps ~ N(0, I); x_t = q_sample(x_0, t, eps);
 * loss = mean l(eps, model(x_t, t, labels)); backward; clip the global
 * gradient norm; AdamW with warmup and cosine (or constant) LR; EMA update.
 * All the state needed to continue exactly (parameters, Adam moments, EMA,
 * step, both random generators) goes into the checkpoint, so N steps in one
 * run and N/2 + resume + N/2 give bit-identical weights.
 */
#ifndef DDPM_TRAIN_H
#define DDPM_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "ddpm/checkpoint.h"
#include "ddpm/loss.h"
#include "ddpm/optim.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

typedef struct {
    ddpm_unet_config model;
    ddpm_schedule_kind schedule;
    int T;                 /* diffusion timesteps */
    ddpm_loss_kind loss;
    int batch;
    int64_t iters;         /* total optimizer steps (the LR schedule spans them) */
    float lr;              /* peak learning rate */
    int64_t warmup;        /* linear warmup steps */
    ddpm_lr_decay decay;
    float min_lr_ratio;    /* cosine decays to lr * min_lr_ratio */
    float weight_decay;    /* AdamW */
    float clip;            /* global gradient-norm clip, <= 0 disables */
    float ema_decay;       /* EMA of the weights, 0 disables */
    float cond_drop;       /* class-conditional: probability of training with "no label" */
    uint64_t seed;
} ddpm_train_config;

void ddpm_train_config_default(ddpm_train_config *c);

typedef struct {
    double loss, grad_norm;
    float lr;
} ddpm_train_stats;

typedef struct ddpm_trainer ddpm_trainer;

/* A trainer with freshly initialised parameters (EMA = parameters). */
ddpm_status ddpm_trainer_create(ddpm_trainer **out, const ddpm_train_config *cfg);
/* A trainer continuing the checkpoint at `path` (written by
 * ddpm_trainer_save). The checkpoint's training config is used; `iters`, if
 * > 0, replaces the total step count (to train longer). */
ddpm_status ddpm_trainer_resume(ddpm_trainer **out, const char *path, int64_t iters);
void ddpm_trainer_free(ddpm_trainer *tr);

/* One optimizer step on the batch x0 (batch, C, H, W) in [-1, 1], labels
 * (batch) or NULL. On a non-finite loss or gradient, returns DDPM_ERR_NUMERIC
 * and leaves the parameters, moments and EMA untouched. */
ddpm_status ddpm_trainer_step(ddpm_trainer *tr, const float *x0, const int *labels,
                              ddpm_train_stats *st);

/* Writes model, EMA, Adam moments, the training config and state, plus the
 * caller's extra metadata (at most 16 entries), atomically. */
ddpm_status ddpm_trainer_save(const ddpm_trainer *tr, const char *path, const ddpm_st_meta *extra,
                              int nextra);

const ddpm_train_config *ddpm_trainer_config(const ddpm_trainer *tr);
int64_t ddpm_trainer_step_count(const ddpm_trainer *tr);
ddpm_unet *ddpm_trainer_model(ddpm_trainer *tr);
const float *ddpm_trainer_ema(const ddpm_trainer *tr); /* parameters if EMA is off */
const ddpm_schedule *ddpm_trainer_schedule(const ddpm_trainer *tr);
/* The checkpoint metadata of the last resume (for the caller's own keys), or NULL. */
const char *ddpm_trainer_resume_meta(const ddpm_trainer *tr, const char *key);

#endif
