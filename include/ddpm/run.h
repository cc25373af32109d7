/* run.h: a training run's directory, and the loop that fills it.
 *
 * `ddpm train` is this module plus flags: a program that embeds the trainer
 * gets the same directory in a few calls (the library owns the loop):
 *
 *     ddpm_run_opts o;
 *     ddpm_run_opts_default(&o);
 *     o.dir = "runs/mine";
 *     o.progress = stderr;                 // NULL: silent
 *     ddpm_run *run;
 *     ddpm_run_open(&run, tr, &o);         // directory, lock, log.csv, run.txt
 *     ddpm_run_result res;
 *     ddpm_run_train(run, &res);           // iterations, checkpoints, grids, evals
 *     ddpm_run_free(run);                  // releases the lock
 *
 * The directory:
 *   ckpt.safetensors   the trainer's whole resume state (train.h), every
 *                      ckpt_every iterations and at the end or on a stop
 *   best.safetensors   keep_best: the state (as ckpt.safetensors) of the
 *                      evaluation with the lowest FID so far, with metadata
 *                      best_fid and best_iter; a fresh run removes an old one
 *   log.csv            iter,loss,lr,grad_norm,time_s (+ the eval columns
 *                      fid,precision,recall,confidence,class_entropy,
 *                      label_accuracy when eval_every > 0): one row per logged
 *                      iteration; a resumed run first cuts the rows after its
 *                      checkpoint (an atomic rewrite), so every logged
 *                      iteration has exactly one row. time_s: wall seconds of
 *                      the run, continued across resumes (from run.txt).
 *   run.txt            key=value lines: command, cpu (/proc/cpuinfo's model
 *                      name), threads, started (UTC, ISO 8601, kept across
 *                      resumes), wall_s (the run's wall time at the
 *                      checkpoint, across resumes), img_per_s (training
 *                      images per second of this session, grids, evaluations
 *                      and saves left out), status (running | finished |
 *                      stopped), iter (the checkpoint's), iters; rewritten
 *                      atomically at the start and with every checkpoint, so
 *                      it describes the checkpoint beside it.
 *   loss.png, fid.png  the loss (log scale) and, with evals, the FID curves
 *   samples.png        16 images of the EMA weights at the end (DDIM 50
 *                      steps, eta 0, seed 1234, through the pipeline;
 *                      a class-conditional model: one class per column)
 *   samples_NNNNNN.png the same grid every sample_every iterations
 *   .lock              held (flock) while a run writes here
 *
 * In a data-parallel run every rank calls the same functions; only rank 0
 * touches the directory and prints.
 */
#ifndef DDPM_RUN_H
#define DDPM_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ddpm/imagefolder.h"
#include "ddpm/sampler.h"
#include "ddpm/toy.h"
#include "ddpm/train.h"

#define DDPM_RUN_CKPT "ckpt.safetensors"
#define DDPM_RUN_BEST "best.safetensors"
#define DDPM_RUN_GRID_SEED 1234 /* the grids' noise: the same every time, so grids differ by the model only */
#define DDPM_RUN_EVAL_SEED 4321

/* ---- the lock on a run directory ------------------------------------------------- */

/* dir/.lock, held with flock: the kernel drops it when the process dies, so
 * a crashed run never blocks the next one. Taking it removes what a killed
 * run left of its atomic writes (<output>.tmp.XXXXXX). */
typedef struct {
    int fd; /* -1: not held */
    char path[1100];
} ddpm_run_lock;

/* dir must exist. Fails (DDPM_ERR_IO) with "'DIR' is in use by another ddpm
 * train (lock 'DIR/.lock' held)" when another process holds it. */
ddpm_status ddpm_run_lock_take(ddpm_run_lock *l, const char *dir);
/* The guard of a new run in dir: takes the lock when dir exists, then a
 * checkpoint in dir needs resume or force ("'DIR/ckpt.safetensors' already
 * exists; pass --resume ..."), and resume needs one. */
ddpm_status ddpm_run_lock_guard(ddpm_run_lock *l, const char *dir, bool resume, bool force);
/* Removes the lock file and releases it; a lock not held is fine. */
void ddpm_run_lock_release(ddpm_run_lock *l);

/* ---- the run ------------------------------------------------------------------------ */

typedef struct {
    const char *dir;               /* the run directory (created with its parents) */
    int64_t stop_after;            /* stop and save after this many iterations of this call (0: run to iters) */
    int ckpt_every;                /* checkpoint every N iterations (0: only at the end or on a stop) */
    int sample_every;              /* samples_NNNNNN.png every N iterations (0: never) */
    int grid_scale;                /* grid tiles enlarged S times (1..DDPM_GRID_MAX_SCALE) */
    int log_every;                 /* a log.csv row and a progress line every N (0: ~50 per run, <= 100 apart) */
    int eval_every, eval_n;        /* the `ddpm eval` metrics on eval_n samples every N (0: never) */
    bool keep_best;                /* with eval_every: keep the lowest-FID state as best.safetensors */
    const char *eval_data;         /* with eval_every: the IDX directory whose test split is the reference,
                                    * or an image folder with classes, at the model's size and channels
                                    * (its network cached as eval.h's sessions cache it) */
    ddpm_alpha_mode eval_alpha;    /* an image folder's transparency (the data front's alpha) */
    FILE *progress;                /* progress lines and messages (NULL: silent) */
    volatile sig_atomic_t *stop;   /* set non-zero (a signal handler): stop after this iteration, save */
    const char *command;           /* for run.txt (NULL: "") */
    int threads;                   /* the thread count in use (ddpm_set_threads): for run.txt, and set again
                                    * after the evaluation network's first-use training (one thread) */
    ddpm_run_lock *lock;           /* a lock on dir the caller holds, or NULL: the run takes one */
} ddpm_run_opts;

/* No stop_after, a checkpoint every 500 iterations, no periodic grids, scale
 * 1, log_every 0, no evals (eval_n 1000), silent. */
void ddpm_run_opts_default(ddpm_run_opts *o);

typedef struct {
    int64_t step0;                 /* iterations in the checkpoint at the start */
    int64_t iter, iters;           /* at the end; the run's total */
    bool stopped;                  /* *stop was set */
    bool finished;                 /* iter == iters: samples.png written */
    double loss_smooth;            /* exponential average of the loss (0.98) */
    double wall_s;                 /* this call, wall clock */
    double comm_s;                 /* of which summing gradients across ranks */
    char dir[1024], ckpt[1100], grid[1100]; /* the directory, its ckpt.safetensors and samples.png */
} ddpm_run_result;

typedef struct ddpm_run ddpm_run;

/* Creates dir, takes the lock (unless o->lock), removes stray temporaries,
 * opens log.csv (cut to the trainer's step), writes run.txt and, with
 * eval_every, loads the test split and the evaluation network (trained and
 * cached on first use). tr is borrowed: it must outlive the run. */
ddpm_status ddpm_run_open(ddpm_run **out, ddpm_trainer *tr, const ddpm_run_opts *o);
/* Prints what is trained (data, model, recipe) to o->progress, then trains
 * to the trainer's iters (or stop_after, or *stop), with the
 * checkpoints, grids, evals and log rows on their cadence, then saves.
 * DDPM_ERR_NUMERIC (a non-finite loss): nothing saved, the last checkpoint
 * stays as it was. */
ddpm_status ddpm_run_train(ddpm_run *r, ddpm_run_result *res);
void ddpm_run_free(ddpm_run *r); /* NULL is fine */

/* ---- the toy (`ddpm toy`): its outputs and its evaluation ----------------------------- */

typedef struct {
    const char *dir;               /* output directory (created with its parents) */
    ddpm_sampler_opts sampler;     /* how to sample */
    int num;                       /* points to sample */
    uint64_t seed;                 /* the plots', samples' and reference sets' streams */
    FILE *progress;                /* about 10 training lines and the sampling line (NULL: silent) */
} ddpm_toy_run_opts;

typedef struct {
    int64_t steps;                 /* trained by this call */
    double train_s, sample_s;
    /* energy distance of m samples to m reference points (fresh draws of a
     * named dataset, else training points), next to its floor: two
     * reference sets (disjoint subsets of the training points). m = 0: too
     * few training points for a reference set. */
    int m;
    bool fresh;
    double energy, energy_floor;
    /* the fraction of the samples within near_r (DDPM_TOY_NEAR_FRAC of the
     * data's extent) of a training point */
    double near_frac, near_r;
} ddpm_toy_result;

#define DDPM_TOY_NEAR_FRAC 0.02
#define DDPM_TOY_CKPT "toy.safetensors"

/* A new toy trainer on `data`: a toydata.h name (`points` drawn from the
 * run's data stream of `seed`) or a CSV file of x,y points; scaled into
 * [-1, 1] (unit) or as they are. */
ddpm_status ddpm_toy_run_create(ddpm_toy **t, const ddpm_toy_config *c, const char *data, int points, bool unit,
                                uint64_t seed);
/* Trains t to its iters, then writes into dir: toy.safetensors, log.csv
 * (step,loss,grad_norm), loss.png, forward.png and reverse.png (10 scatter
 * panels each), samples.csv and samples.png (data coordinates), and
 * measures the samples (r). */
ddpm_status ddpm_toy_run(ddpm_toy *t, const ddpm_toy_run_opts *o, ddpm_toy_result *r);

#endif
