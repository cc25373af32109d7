/* pipeline.h: a trained model, ready to draw images.
 *
 * One object holds everything sampling needs: the UNet with the weights to
 * use (EMA unless told otherwise), the noise schedule, what the network
 * predicts (eps, v or x0: every sampler, guidance and bits/dim see it as
 * eps through objective.h), the class names of a folder-trained model, the
 * sampler the model is best drawn with (its recipe's), and the buffers of
 * the sampler. `ddpm sample`, `ddpm eval`, the grids and the
 * metrics written during training all draw through it, so an image depends
 * only on (weights, draw options, seed, its index), never on which command
 * drew it or on the thread count; the batch size (max_batch) can move only
 * the last bits of the floats (see sampler.h).
 *
 *     ddpm_pipeline *p;
 *     ddpm_pipeline_open(&p, "runs/mnist/ckpt.safetensors", NULL);
 *     ddpm_draw_opts o;
 *     ddpm_pipeline_draw_opts_default(p, &o); // the model's sampler, seed 0
 *     ddpm_pipeline_draw_u8(p, &o, 0, 16, u8); // images 0..15, [16, D] bytes
 *     ddpm_pipeline_free(p);
 *
 * The policy for checkpoints of earlier versions and for safetensors files
 * converted from the PyTorch module (model config only): a missing
 * schedule is linear, a missing T is 1000, a missing objective is eps, a
 * missing sampler is ddpm at its default steps, and missing EMA tensors
 * mean the raw weights; ddpm_pipeline_info says which
 * of these were assumed, so a command can tell the user.
 *
 * Shape letters: n images, D = in_ch * res * res elements per image.
 * Float images are in [-1, 1] (the model's space), u8 images in [0, 255]
 * (ddpm_image_to_u8's rounding).
 */
#ifndef DDPM_PIPELINE_H
#define DDPM_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/diffusion.h"
#include "ddpm/objective.h"
#include "ddpm/progress.h"
#include "ddpm/safetensors.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

typedef struct ddpm_pipeline ddpm_pipeline;

/* How to open a model. Zeroed (or NULL) = the defaults. */
typedef struct {
    bool raw_weights; /* the raw weights even when the checkpoint has EMA ones */
    int max_batch;    /* images per model call; 0 = 64 (bounds memory) */
} ddpm_pipeline_opts;

/* A model in memory (e.g. a trainer's EMA weights): ddpm_pipeline_create. */
typedef struct {
    ddpm_unet_config cfg;
    const float *params;          /* ddpm_unet_num_params floats, copied */
    ddpm_schedule_kind schedule;
    int T;
    ddpm_objective objective;
    ddpm_precision precision; /* of the UNet's products; 0 = FP32 (a trainer's: its config's) */
    ddpm_sampler_kind sampler; /* the model's default sampler and steps (0: the sampler's */
    int sample_steps;          /* default); zeroed: ddpm (a trainer's: its config's) */
} ddpm_pipeline_model;

/* What the pipeline holds, read-only. */
typedef struct {
    ddpm_unet_config cfg;
    size_t D;                     /* in_ch * res * res */
    ddpm_schedule_kind schedule;
    int T;
    ddpm_objective objective;
    bool schedule_assumed;        /* the checkpoint recorded no schedule kind: linear */
    bool T_assumed;               /* ... no T: 1000 */
    bool objective_assumed;       /* ... no objective: eps */
    bool has_ema, ema;            /* the file has EMA weights; they are the ones in use */
    int num_class_names;          /* the class names of a folder-trained model (0: none) */
    ddpm_precision precision;     /* of the UNet's products: the checkpoint's (absent: fp32), or set */
    ddpm_sampler_kind sampler;    /* the sampler the model was trained to be drawn with (its recipe's; */
    int sample_steps;             /* absent: ddpm), and its steps (0: that sampler's default) */
    const char *path;             /* the checkpoint ("" when created in memory) */
} ddpm_pipeline_info;

/* Opens a checkpoint (checkpoint.h validates it whole) under the policy above.
 * o may be NULL. */
ddpm_status ddpm_pipeline_open(ddpm_pipeline **out, const char *path, const ddpm_pipeline_opts *o);
/* A pipeline over weights in memory. o may be NULL. */
ddpm_status ddpm_pipeline_create(ddpm_pipeline **out, const ddpm_pipeline_model *m,
                                 const ddpm_pipeline_opts *o);
/* Replaces the weights (ddpm_unet_num_params floats, copied): a trainer's
 * EMA weights before each grid or evaluation. */
void ddpm_pipeline_set_weights(ddpm_pipeline *p, const float *params);
void ddpm_pipeline_free(ddpm_pipeline *p); /* NULL is fine */
/* The precision of the UNet's products (opening takes the checkpoint's;
 * bf16 rounds the operands of every product, accumulating in fp32: unet.h). */
void ddpm_pipeline_set_precision(ddpm_pipeline *p, ddpm_precision prec);

const ddpm_pipeline_info *ddpm_pipeline_info_get(const ddpm_pipeline *p);
const ddpm_schedule *ddpm_pipeline_schedule(const ddpm_pipeline *p);
/* The checkpoint's metadata value for key (meta.h), NULL when absent or
 * when created in memory. */
const char *ddpm_pipeline_meta(const ddpm_pipeline *p, const char *key);
/* Class k's folder name, or NULL. */
const char *ddpm_pipeline_class_name(const ddpm_pipeline *p, int k);
/* "--label K|NAME": digits are an index, other text a class name. Fails
 * (DDPM_ERR_ARG, a one-line message) on an unknown name, a name without
 * class names, or an index outside 0..num_classes-1, or for an
 * unconditional model. */
ddpm_status ddpm_pipeline_label(const ddpm_pipeline *p, const char *arg, int *label);

/* ---- drawing ------------------------------------------------------------------ */

/* Editing (docs/design.md §9; the sampler side is ddpm_sampler_edit). The
 * draw makes n_init * per_image images: image i edits input i / per_image
 * (variation i % per_image) and draws from stream i as any image does. */
typedef struct {
    const uint8_t *init; /* [n_init, D] u8 images to edit (ddpm_pipeline_load_images) */
    int n_init;
    int per_image;       /* >= 1 */
    float strength;      /* SDEdit: (0, 1]; 1 = from noise, the plain draw */
    const uint8_t *mask; /* [res * res] 1 = regenerate, 0 = keep (RePaint), or NULL;
                          * the kept pixels come out equal to init's, u8 for u8 */
    int resample;        /* RePaint jumps per step (needs mask; not dpm++2m) */
} ddpm_edit_opts;

typedef struct {
    ddpm_sampler_opts sampler; /* kind, steps (0: the sampler's default), eta, var, spacing */
    uint64_t seed;             /* image i draws from stream ddpm_sampler_image_seed(seed, i) */
    int label;                 /* conditional models: every image this class; -1: cycle 0..K-1
                                * (edits: K, "no label", the unconditional model) */
    const int *labels;         /* [n] per-image labels (overrides label), or NULL */
    bool guided;               /* classifier-free guidance (conditional models) */
    float guidance;            /* its weight w >= 0: eps_u + w (eps_c - eps_u) */
    ddpm_step_fn on_step;      /* sees every batch at steps 0..K (may be NULL) */
    void *ud;
    const ddpm_edit_opts *edit; /* NULL: plain sampling */
} ddpm_draw_opts;

/* The ddpm sampler with its default steps, seed 0, labels cycling, no guidance. */
void ddpm_draw_opts_default(ddpm_draw_opts *o);
/* The same with the model's own sampler and steps (ddpm_pipeline_info):
 * what a program should start from to draw what `ddpm sample` draws. */
void ddpm_pipeline_draw_opts_default(const ddpm_pipeline *p, ddpm_draw_opts *o);
/* The default sampler recorded in a checkpoint's metadata (meta.h:
 * DDPM_META_SAMPLER, DDPM_META_SAMPLE_STEPS; absent: ddpm, 0), checked
 * against the model's T; a bad value fails with a one-line message naming
 * the file and the key. */
ddpm_status ddpm_meta_sampler(const ddpm_st_file *f, const char *path, int T, ddpm_sampler_kind *kind, int *steps);
/* Checks o against the model (sampler options against T, labels and
 * guidance against the classes, the edit) without drawing; returns the
 * number of sampler steps K it resolves to in *K (may be NULL; an SDEdit
 * runs fewer: the steps at or below its start). */
ddpm_status ddpm_pipeline_check(const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K);
/* Images first..first+n-1 into x [n, D] floats in [-1, 1] (unclipped
 * model space, as the sampler leaves them). */
ddpm_status ddpm_pipeline_draw(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, float *x);
/* The same as u8 pixels [n, D] (ddpm_image_to_u8). */
ddpm_status ddpm_pipeline_draw_u8(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, uint8_t *u8);
/* The progress line of a draw of n images in batches of `batch` with K steps
 * per batch, counted in sampler steps ("sampling 64 images, batch 2/4"), to
 * `out` (NULL: silent): ddpm_draw_progress_step is the draw's on_step, with
 * the struct as its ud; ddpm_progress_done(&v->p) ends it. */
typedef struct {
    ddpm_progress p;
    int n, B, nchunks;
} ddpm_draw_progress;
void ddpm_draw_progress_start(ddpm_draw_progress *v, FILE *out, int n, int batch, int K);
void ddpm_draw_progress_step(void *ud, int first, int N, int step, int K, const float *x);
/* A draw's trajectory, as `ddpm sample --trajectory` shows it: the images
 * at `cols` evenly spaced steps of 0..K (cols = min(K + 1, 10); step 0 is
 * x_T, step K is x_0) for the first rows = min(n, 100) images, in x as a
 * [rows, cols, D] grid. ddpm_trajectory_step is the draw's on_step, with
 * the struct as its ud; it passes every call on to next (may be NULL). */
#define DDPM_TRAJ_COLS 10
#define DDPM_TRAJ_ROWS 100
typedef struct {
    int K, cols, rows, step[DDPM_TRAJ_COLS]; /* the step of each column */
    size_t D;
    float *x;
    ddpm_step_fn next;
    void *next_ud;
} ddpm_trajectory;
ddpm_status ddpm_trajectory_init(ddpm_trajectory *t, int n, int K, size_t D);
void ddpm_trajectory_step(void *ud, int first, int N, int step, int K, const float *x);
void ddpm_trajectory_free(ddpm_trajectory *t);
/* The labels a draw of images first..first+n-1 uses (into labels [n]);
 * all -1 for an unconditional model. */
void ddpm_pipeline_labels(const ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, int *labels);

/* The number of images a draw with o makes when it edits (n_init *
 * per_image), or 0 for plain sampling. */
int ddpm_pipeline_edit_count(const ddpm_draw_opts *o);

/* Images to edit from path, in the model's shape: a PNG/JPEG/... file
 * (decoded, converted to the model's channels and resized as training
 * images are: imagefolder.h), a folder of such files (every file must be
 * one, in the folder's order), or an IDX file of images of exactly the
 * model's channels and size. *u8 [*n, D] malloc'ed. Errors name the file. */
ddpm_status ddpm_pipeline_load_images(const ddpm_pipeline *p, const char *path, uint8_t **u8, int *n);
/* A mask image (any format the loader reads), gray, resized to the model's
 * size: *mask [res * res] malloc'ed, 1 where the gray value is >= 128
 * (white: regenerate), 0 where below (black: keep). */
ddpm_status ddpm_pipeline_load_mask(const ddpm_pipeline *p, const char *path, uint8_t **mask);

/* DDIM inversion (ddpm_sampler_invert) of x0 [n, D] (model space) into xT
 * [n, D] with o's sampler, which must be ddim (eta is not used), labels
 * and guidance as a draw of images first..first+n-1 has them. */
ddpm_status ddpm_pipeline_invert(ddpm_pipeline *p, const ddpm_draw_opts *o, int first, int n, const float *x0,
                                 float *xT);

/* Interpolation: frames images x [frames, D] decoded by deterministic DDIM
 * (o's sampler, which must be ddim; eta 0) from slerp(a_T, b_T; k / (frames - 1)),
 * where a_T, b_T are either the latents of images a and b (u8 [D] each,
 * inverted) or, when a or b is NULL, the x_T of image 0 of seeds seed_a,
 * seed_b (the draw's own x_T: frame 0 of seeds A, B is what `ddpm sample
 * --seed A -n 1 --sampler ddim --eta 0` draws). frames >= 2. */
typedef struct {
    const uint8_t *a, *b;
    uint64_t seed_a, seed_b;
    int frames;
} ddpm_interp_opts;
ddpm_status ddpm_pipeline_interp(ddpm_pipeline *p, const ddpm_draw_opts *o, const ddpm_interp_opts *io, float *x);

/* The model as a noise predictor (ddpm_model_fn, ctx = the pipeline): the
 * network's output converted to eps_hat, no guidance; batches of at most
 * max_batch images. For bits/dim and anything that calls the model itself. */
ddpm_status ddpm_pipeline_eps(void *p, float *eps_hat, const float *x, const int *t, const int *labels,
                              int N);
int ddpm_pipeline_max_batch(const ddpm_pipeline *p);

#endif
