/* meta.h: every checkpoint metadata key, named once.
 *
 * A checkpoint (checkpoint.h) is a safetensors file whose "__metadata__"
 * holds string key/values: the format, the model config, the training
 * config and state, and the dataset's loading options. Readers that meet a
 * checkpoint without a key apply the pipeline's policy for old files
 * (pipeline.h): no schedule = linear, no T = 1000, no objective = eps.
 */
#ifndef DDPM_META_H
#define DDPM_META_H

/* ---- the file --------------------------------------------------------------- */
#define DDPM_META_FORMAT "format"             /* "ddpm" */
#define DDPM_META_FORMAT_VERSION "format_version"

/* ---- the model config (checkpoint.h) ------------------------------------------- */
#define DDPM_META_IN_CH "in_ch"
#define DDPM_META_RES "res"
#define DDPM_META_CH "ch"
#define DDPM_META_CH_MULT "ch_mult"           /* comma-separated list */
#define DDPM_META_NUM_RES_BLOCKS "num_res_blocks"
#define DDPM_META_ATTN_RES "attn_res"         /* comma-separated list, or "none" */
#define DDPM_META_GROUPS "groups"
#define DDPM_META_DROPOUT "dropout"
#define DDPM_META_NUM_CLASSES "num_classes"

/* ---- the training run (train.h) ------------------------------------------------ */
#define DDPM_META_SCHEDULE "schedule"         /* linear | cosine | quadratic | sigmoid */
#define DDPM_META_TIMESTEPS "timesteps"       /* T */
#define DDPM_META_LOSS "loss"                 /* l2 | l1 | huber */
#define DDPM_META_OBJECTIVE "objective"       /* eps | v | x0 (absent: eps, the only one before) */
#define DDPM_META_SNR_GAMMA "snr_gamma"       /* min-SNR-gamma, 0 = off (absent: 0) */
#define DDPM_META_PRECISION "precision"       /* fp32 | bf16 products (absent: fp32) */
#define DDPM_META_SAMPLER "sampler"           /* the model's default sampler (absent: ddpm) */
#define DDPM_META_SAMPLE_STEPS "sample_steps" /* its steps, 0 = the sampler's default (absent: 0) */
#define DDPM_META_BATCH "batch"               /* global batch */
#define DDPM_META_ITERS "iters"               /* total iterations of the LR schedule */
#define DDPM_META_LR "lr"
#define DDPM_META_WARMUP "warmup"
#define DDPM_META_LR_DECAY "lr_decay"         /* cosine | constant */
#define DDPM_META_MIN_LR_RATIO "min_lr_ratio"
#define DDPM_META_WEIGHT_DECAY "weight_decay"
#define DDPM_META_CLIP "clip"
#define DDPM_META_EMA_DECAY "ema_decay"
#define DDPM_META_BEST_FID "best_fid"   /* best.safetensors (run.h): its FID and iteration */
#define DDPM_META_BEST_ITER "best_iter"
#define DDPM_META_EMA_GAMMA "ema_gamma" /* absent = 0: ema_decay's profile */
#define DDPM_META_COND_DROP "cond_drop"
#define DDPM_META_SEED "seed"
#define DDPM_META_STEP "step"                 /* iterations done */
#define DDPM_META_RNG "rng"                   /* xoshiro256** state, 64 hex digits */
#define DDPM_META_DROPOUT_RNG "dropout_rng"
#define DDPM_META_DATA_SEED "data_seed"       /* the epoch order (data.h) */
#define DDPM_META_DATA_EPOCH "data_epoch"
#define DDPM_META_DATA_POS "data_pos"
#define DDPM_META_DATA "data"                 /* the dataset's name (its directory) */

/* ---- the dataset's loading options (the data front) ---------------------------- */
#define DDPM_META_DATA_HFLIP "data_hflip"     /* 1 | 0: random horizontal flips */
#define DDPM_META_DATA_ALPHA "data_alpha"     /* white | black: what transparency becomes */
#define DDPM_META_DATA_CROP "data_crop"       /* center | random */
#define DDPM_META_CLASSES "classes"           /* class names, a JSON array in label order */

#endif
