/* trainer.h: the trainer's state, shared by train.c (the iterations) and
 * train_ckpt.c (the checkpoint schema). Internal to src/train. */
#ifndef DDPM_TRAIN_TRAINER_H
#define DDPM_TRAIN_TRAINER_H

#include "ddpm/train.h"

struct ddpm_trainer {
    ddpm_train_config cfg;
    ddpm_unet *model;
    ddpm_schedule sched;
    size_t n;              /* parameters */
    size_t D;              /* elements per image */
    float *m, *v, *ema;    /* Adam moments and EMA, laid out as the parameters */
    int64_t step;          /* optimizer steps done */
    ddpm_rng rng;          /* timesteps, noise, label dropout */
    ddpm_adamw_cfg adam;
    /* this rank's share of each global batch: images [off, off + lb) */
    int rank, world, off, lb;
    /* batch buffers: t and eps (batch) and (batch, D) for the global batch,
     * the others for this rank's share */
    float *x0, *xt, *eps, *pred, *dpred;
    float *target;         /* (lb, D) the v / x0 target */
    double *w;             /* (lb) min-SNR-gamma weights */
    int *t, *idx, *labels, *lab_in;
    /* the data */
    const ddpm_dataset *ds;
    ddpm_epoch_order order;
    bool have_order;       /* a resumed data order waits in `order_*` for set_data */
    uint64_t order_seed;
    uint32_t order_epoch;
    int64_t order_pos;
    char *data_name;
    char ckpt_path[1024];  /* the checkpoint resumed from, for messages ("" if fresh) */
    ddpm_st_meta *resumed_meta; /* its metadata (ddpm_trainer_resumed_meta) */
    int n_resumed_meta;
    int64_t check_sync;    /* compare parameter checksums every this many iterations (0: never) */
    ddpm_batch_hook hook;
    void *hook_ctx;
    const ddpm_st_meta *user_meta; /* ddpm_trainer_set_user_meta */
    int n_user_meta;
};

/* train.c: validate the config, allocate the state; the fresh data-order seed. */
ddpm_status ddpm_trainer_validate(const ddpm_train_config *c);
ddpm_status ddpm_trainer_alloc(ddpm_trainer *tr);
uint64_t ddpm_trainer_order_seed(const ddpm_train_config *c);
void ddpm_trainer_rank_dropout(ddpm_trainer *tr);

#endif
