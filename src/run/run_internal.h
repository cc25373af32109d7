/* run_internal.h: the pieces of the run module (run.h) shared by its files. */
#ifndef DDPM_RUN_INTERNAL_H
#define DDPM_RUN_INTERNAL_H

#include <stdio.h>

#include "ddpm/eval.h"
#include "ddpm/pipeline.h"
#include "ddpm/progress.h"
#include "ddpm/run.h"

/* mkdir -p (core/util.h's ddpm_mkdirs) with "cannot create 'P': why". */
ddpm_status run_mkdirs(const char *path);

/* ---- run_log.c: log.csv and run.txt ----------------------------------------- */

typedef struct {
    FILE *f;
    char path[1100];
    float *loss;   /* [cap] loss of every iteration, for loss.png */
    int64_t n, cap;
} run_log;

/* Opens dir/log.csv for appending after rewriting it (atomically) with the
 * header of this run and the rows of iterations 1..step of the old file,
 * each once, their fields moved under this header's columns by name. */
ddpm_status run_log_open(run_log *L, const char *dir, int64_t step, int64_t iters, bool eval);
void run_log_close(run_log *L);
ddpm_status run_log_plot(const run_log *L, const char *dir);

/* run.txt's fields. */
typedef struct {
    char path[1100];
    char command[2048], cpu[256], started[32];
    int threads;
    double wall_s, img_per_s;
    const char *status, *precision;
    int64_t iter, iters;
} run_info;

/* The start of a run: a resumed one (step > 0) keeps the started and
 * wall_s of dir/run.txt when it has them. */
void run_info_init(run_info *ri, const char *dir, const char *command, int threads, bool resumed);
ddpm_status run_info_write(const run_info *ri);

/* ---- run_eval.c: the `ddpm eval` metrics during training ---------------------------------- */

typedef struct {
    ddpm_eval_session session;
    bool open;
    int every, n, nfid, cap;
    float *fid; /* [cap] FID of each evaluation, for fid.png */
} run_eval;

ddpm_status run_eval_open(run_eval *e, const ddpm_run_opts *o, const ddpm_train_config *c);
ddpm_status run_eval_run(run_eval *e, ddpm_eval_metrics *m, ddpm_pipeline *p, int T);
/* ",fid,precision,recall,confidence,class_entropy,label_accuracy" of m (NULL: empty fields). */
void run_eval_csv(char *buf, size_t cap, const ddpm_eval_metrics *m);
ddpm_status run_eval_plot(const run_eval *e, const char *dir);
void run_eval_close(run_eval *e);

#endif
