/* train.h: the DDPM trainer (L_simple, docs/design.md §5): it runs the training
 * iterations and owns everything needed to continue a run exactly.
 *
 * An iteration: take the next batch of the attached dataset in the epoch
 * order; draw t ~ U{0..T-1} and eps ~ N(0, I); x_t = q_sample(x_0, t, eps);
 * loss = mean l(target, model(x_t, t, labels)), the target eps, v or x0
 * (cfg.objective) and each image's term weighted by min-SNR-gamma when
 * cfg.snr_gamma > 0 (objective.h); backward; clip the global
 * gradient norm; AdamW with warmup and cosine (or constant) LR; EMA update.
 *
 * The resume state is the trainer's alone: parameters, Adam moments, EMA, the
 * step, both random generators and the data order (seed, epoch, position)
 * are written by ddpm_trainer_save and read back, every value checked, by
 * ddpm_trainer_resume. So N iterations in one run and N/2 + resume + N/2
 * give bit-identical checkpoints.
 *
 *     ddpm_trainer *tr;
 *     ddpm_trainer_create(&tr, &cfg);          // or ddpm_trainer_resume(&tr, path, 0)
 *     ddpm_trainer_set_data(tr, &ds, "data/mnist");
 *     ddpm_trainer_run(tr, cfg.iters, on_iter, ctx);   // on_iter prints, saves, stops
 *     ddpm_trainer_save(tr, "ckpt.safetensors");
 *
 * Data-parallel runs (MPI, see ddpm_dist_init) use the same calls on every
 * rank: each rank trains on its slice of every global batch, gradients are
 * summed across ranks, and only rank 0 writes.
 */
#ifndef DDPM_TRAIN_H
#define DDPM_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/loss.h"
#include "ddpm/meta.h"
#include "ddpm/objective.h"
#include "ddpm/optim.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

/* The checkpoint metadata keys (DDPM_META_*) are in meta.h. */

typedef struct {
    ddpm_unet_config model;
    ddpm_schedule_kind schedule;
    int T;                 /* diffusion timesteps */
    ddpm_loss_kind loss;
    ddpm_objective objective; /* what the network predicts (objective.h) */
    float snr_gamma;       /* min-SNR-gamma loss weighting, 0 = off */
    int batch;             /* global batch (split across ranks in a data-parallel run) */
    int64_t iters;         /* total optimizer steps (the LR schedule spans them) */
    float lr;              /* peak learning rate */
    int64_t warmup;        /* linear warmup steps */
    ddpm_lr_decay decay;
    float min_lr_ratio;    /* cosine decays to lr * min_lr_ratio */
    float weight_decay;    /* AdamW */
    float clip;            /* global gradient-norm clip, <= 0 disables */
    float ema_decay;       /* EMA of the weights, 0 disables */
    float ema_gamma;       /* > 0: power-function EMA profile (ddpm_ema_power_decay) instead of ema_decay's */
    float cond_drop;       /* class-conditional: probability of training with "no label" */
    uint64_t seed;
    ddpm_precision precision; /* of the UNet's products (common.h); 0 = FP32 */
    /* The model's default sampler, recorded in the checkpoint for `ddpm
     * sample`, `ddpm eval` and ddpm_pipeline_draw_opts_default; steps 0 =
     * that sampler's default. A recipe's: what its models score best with. */
    ddpm_sampler_kind sampler;
    int sample_steps;
} ddpm_train_config;

/* The quick start's recipe: MNIST-sized digits (1 x 28 x 28), the training
 * recipe and model chosen by FID at equal training time (docs/quality.md).
 * Its model is narrower than ddpm_unet_config_default, the reference model
 * that `ddpm bench` times. */
void ddpm_train_config_default(ddpm_train_config *c);
/* The recipe for images of in_ch x res x res: the default above, or for the
 * sizes with a UNet preset (ddpm_unet_preset: 32, 64 px) that preset with
 * the preset sizes' own batch, iterations, warmup and sampler. */
void ddpm_train_recipe(ddpm_train_config *c, int in_ch, int res);
/* The settings a caller fixed itself (a command line's flags), which
 * ddpm_train_take_recipe leaves alone. */
typedef struct {
    bool T, schedule, objective, snr_gamma, batch, iters, lr, ema_decay, ema_gamma, sampler, sample_steps, warmup;
} ddpm_train_fixed;
/* Every setting of c not in fixed takes the recipe of in_ch x res x res
 * images (ddpm_train_recipe); the model is left to the caller
 * (ddpm_unet_preset); the warmup, unless fixed, is the default share of
 * the iterations taken (ddpm_train_default_warmup). The recipe's sampler
 * comes only with its objective (an eps network's first x0 estimates under
 * the linear schedule carry its error times 1 / sqrt(alpha_bar_T) ~ 160,
 * which dpm++2m's 20 steps do not recover from: docs/quality.md), and its
 * steps only where c's T allows
 * them (else that sampler's default); a sampler fixed alone keeps its
 * default steps. */
void ddpm_train_take_recipe(ddpm_train_config *c, int in_ch, int res, const ddpm_train_fixed *fixed);
/* The precision ddpm_train_config_default picks: DDPM_PREC_BF16 where the
 * CPU has AVX512_BF16 (vdpbf16ps: twice the multiply-adds of a float FMA;
 * bf16 trains the quick start to the FID of fp32, docs/performance.md),
 * DDPM_PREC_FP32 elsewhere (bf16 would run its slower portable path) and
 * when DDPM_BF16=portable is set. */
ddpm_precision ddpm_train_default_precision(void);
/* The warmup of a run of `iters` iterations when none is asked for: 9 % of
 * them, rounded (the recipes' share). */
int64_t ddpm_train_default_warmup(int64_t iters);

typedef struct {
    int64_t iter;          /* iterations done, this one included */
    double loss, grad_norm; /* of the whole (global) batch */
    float lr;
    double comm_s;         /* seconds spent summing across ranks (0 in a world of one) */
} ddpm_train_stats;

typedef struct ddpm_trainer ddpm_trainer;

/* A trainer with freshly initialised parameters (EMA = parameters). */
ddpm_status ddpm_trainer_create(ddpm_trainer **out, const ddpm_train_config *cfg);
/* A trainer continuing the checkpoint at `path` (written by
 * ddpm_trainer_save). The checkpoint's training config is used; `iters`, if
 * > 0, replaces the total step count (to train longer). A missing or
 * malformed value fails with a message naming the file and the key. */
ddpm_status ddpm_trainer_resume(ddpm_trainer **out, const char *path, int64_t iters);
void ddpm_trainer_free(ddpm_trainer *tr);

/* Attach the training set (borrowed: it must outlive the trainer). `name`
 * (e.g. its directory) is stored in checkpoints and used in messages. The
 * images must match the model (C, H = W = res) and the labels its classes.
 * A fresh trainer starts the epoch order from its seed; a resumed one
 * continues the checkpoint's order, which must fit the dataset's size. */
ddpm_status ddpm_trainer_set_data(ddpm_trainer *tr, const ddpm_dataset *ds, const char *name);
/* The dataset name of set_data, else of the checkpoint resumed from, else NULL. */
const char *ddpm_trainer_data_name(const ddpm_trainer *tr);
/* The dataset of set_data, or NULL. */
const ddpm_dataset *ddpm_trainer_data(const ddpm_trainer *tr);

/* Called with each batch after it is drawn and before the step (x0 is
 * (n, C, H, W) in [-1, 1], labels (n) or NULL, idx (n) the dataset indices
 * of the images; n is this rank's share): for augmentation (which may
 * rewrite x0 from idx), or for tests that poison a batch. `iter` counts from 1. */
typedef void (*ddpm_batch_hook)(void *ctx, float *x0, int *labels, const int *idx, int n, int64_t iter);
void ddpm_trainer_set_batch_hook(ddpm_trainer *tr, ddpm_batch_hook fn, void *ctx);

/* One iteration on the next batch of the attached data. On a non-finite loss
 * or gradient, returns DDPM_ERR_NUMERIC and leaves the parameters, moments
 * and EMA untouched (the same on every rank). */
ddpm_status ddpm_trainer_next(ddpm_trainer *tr, ddpm_train_stats *st);

/* The progress callback of ddpm_trainer_run, called on every rank after each
 * iteration: print, save (ddpm_trainer_save), sample. Set *stop to end the run
 * after this iteration (in a data-parallel run, when any rank sets it all
 * stop at the same iteration). A status other than DDPM_OK ends the run with it. */
typedef ddpm_status (*ddpm_train_progress_fn)(void *ctx, ddpm_trainer *tr, const ddpm_train_stats *st,
                                              bool *stop);
/* Iterate (ddpm_trainer_next) until `until` iterations are done or fn stops. */
ddpm_status ddpm_trainer_run(ddpm_trainer *tr, int64_t until, ddpm_train_progress_fn fn, void *ctx);

/* One optimizer step on the caller's batch x0 (batch, C, H, W) in [-1, 1],
 * labels (batch) or NULL, without the attached data (used by `ddpm bench`).
 * Single-process only. */
ddpm_status ddpm_trainer_step(ddpm_trainer *tr, const float *x0, const int *labels,
                              ddpm_train_stats *st);

/* Caller metadata written by every later ddpm_trainer_save besides the keys
 * above (borrowed: it must outlive the saves; at most
 * DDPM_TRAIN_MAX_USER_META entries, keys distinct from the DDPM_META_* ones),
 * e.g. an image folder's class names. */
#define DDPM_TRAIN_MAX_USER_META 8
ddpm_status ddpm_trainer_set_user_meta(ddpm_trainer *tr, const ddpm_st_meta *meta, int n);

/* Writes model, EMA, Adam moments and the metadata above, atomically. In a
 * data-parallel run only rank 0 writes (the others return DDPM_OK). */
ddpm_status ddpm_trainer_save(const ddpm_trainer *tr, const char *path);
/* The same with up to DDPM_TRAIN_MAX_SAVE_META more entries for this file
 * only (e.g. the FID of a kept best checkpoint). */
#define DDPM_TRAIN_MAX_SAVE_META 4
ddpm_status ddpm_trainer_save_with(const ddpm_trainer *tr, const char *path, const ddpm_st_meta *extra, int nextra);

/* Debug check of a data-parallel run: every `every` iterations (0 = never)
 * compare a checksum of the parameters across ranks; a mismatch fails the
 * iteration with DDPM_ERR_NUMERIC on every rank. */
void ddpm_trainer_set_check_sync(ddpm_trainer *tr, int64_t every);

const ddpm_train_config *ddpm_trainer_config(const ddpm_trainer *tr);
/* A metadata value of the checkpoint the trainer was resumed from (e.g. the
 * data front's loading options), NULL when absent or for a fresh trainer:
 * resuming reads the file once. */
const char *ddpm_trainer_resumed_meta(const ddpm_trainer *tr, const char *key);
int64_t ddpm_trainer_step_count(const ddpm_trainer *tr);
ddpm_unet *ddpm_trainer_model(ddpm_trainer *tr);
const float *ddpm_trainer_ema(const ddpm_trainer *tr); /* parameters if EMA is off */
const ddpm_schedule *ddpm_trainer_schedule(const ddpm_trainer *tr);

/* The objective a checkpoint's model predicts (metadata DDPM_META_OBJECTIVE):
 * eps when the key is absent (checkpoints from before the option), with
 * *recorded = false (recorded may be NULL). An unknown value fails with a
 * message naming the checkpoint and the key. */
ddpm_status ddpm_train_read_objective(const ddpm_checkpoint *ck, ddpm_objective *obj, bool *recorded);

/* ---- data-parallel runs (MPI) ----------------------------------------------
 * Under `mpirun -np R`, call ddpm_dist_init before creating the trainer (it
 * joins the job; in a process not started by mpirun, or a build without MPI,
 * the world is one rank and nothing changes). Then every rank creates or
 * resumes the same trainer, loads the same data and runs: each rank draws the
 * whole global batch's indices, timesteps and noise from the run's one
 * generator and trains on its batch/R slice; gradients and losses are summed
 * with MPI_Allreduce, so every rank applies the same AdamW and EMA update and
 * the run equals the 1-rank run up to the order of float additions (with
 * dropout > 0 the masks differ: each rank has its own dropout stream). */
ddpm_status ddpm_dist_init(int *argc, char ***argv);
void ddpm_dist_finalize(void);
/* Ends every rank of the job at once (MPI_Abort); a no-op in a world of one. */
void ddpm_dist_abort(int code);
bool ddpm_dist_available(void); /* the build has MPI */
int ddpm_dist_rank(void);
int ddpm_dist_size(void);
/* True on every rank when `b` is true on any (a collective: all ranks call it). */
bool ddpm_dist_any(bool b);

#endif
