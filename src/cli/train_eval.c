/* train_eval.c: `ddpm train --eval-every N`: the `ddpm eval` protocol during
 * training (FID, precision/recall, confidence, class entropy; label accuracy
 * for conditional models) on --eval-n samples of the EMA weights, DDIM 50
 * steps (eta 0, fixed seed, so successive rows differ by the model only),
 * against the test split of the training data. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ddpm/image.h"
#include "ddpm/unet.h"

#define EVAL_SEED 4321

int ddpm_train_eval_open(ddpm_train_eval *e, const char *dir, int every, int n, int64_t iters, int threads) {
    memset(e, 0, sizeof *e);
    e->every = every;
    e->n = n;
    e->cap = (int)(iters / every + 1);
    const char *cache = getenv("DDPM_EVAL_CACHE");
    bool trained;
    double acc;
    ddpm_status s = ddpm_dataset_load(&e->test, dir, false);
    e->fid = s ? NULL : calloc((size_t)e->cap, sizeof(float));
    if (!s && !e->fid) s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (!s && n > e->test.n * 10) s = ddpm_error(DDPM_ERR_ARG, "--eval-n %d is more than 10x the test split", n);
    ddpm_set_threads(1); /* the cached network does not depend on --threads */
    if (!s) s = ddpm_clf_obtain(e->net_path, sizeof e->net_path, &trained, &acc, cache && *cache ? cache : "data/eval",
                                dir, &e->test, NULL, NULL);
    ddpm_set_threads(threads);
    if (!s && trained)
        fprintf(stderr, "ddpm train: trained the evaluation network '%s': test accuracy %.2f%%\n", e->net_path, 100 * acc);
    if (!s) s = ddpm_clf_load(&e->net, e->net_path, 256, NULL, NULL, 0);
    if (!s) s = ddpm_eval_ref_init(&e->ref, e->net, &e->test);
    if (s) {
        ddpm_cli_error("train");
        ddpm_train_eval_close(e);
        return 1;
    }
    fprintf(stderr, "ddpm train: every %d iterations: %d samples (EMA weights, ddim 50 steps) against the %d test "
                    "images of '%s', network '%s'\n", every, n, e->test.n, dir, e->net_path);
    return 0;
}

ddpm_status ddpm_train_eval_run(ddpm_train_eval *e, ddpm_eval_metrics *m, ddpm_trainer *tr, ddpm_unet *inf,
                                int batch) {
    (void)inf;
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    ddpm_pipeline_model pm = {c->model, ddpm_trainer_ema(tr), c->schedule, c->T, c->objective};
    ddpm_pipeline_opts po = {.max_batch = batch};
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .steps = c->T < 50 ? c->T : 50};
    o.seed = EVAL_SEED;
    ddpm_pipeline *p;
    ddpm_status s = ddpm_pipeline_create(&p, &pm, &po);
    if (!s) s = ddpm_eval_pipeline(m, &e->ref, p, &o, e->n);
    ddpm_pipeline_free(p);
    if (!s && e->nfid < e->cap) e->fid[e->nfid++] = (float)m->fid;
    return s;
}

/* ",fid,precision,recall,confidence,class_entropy,label_accuracy" of m (or
 * empty fields). */
void ddpm_train_eval_csv(char *buf, size_t cap, const ddpm_eval_metrics *m) {
    if (!m) {
        snprintf(buf, cap, ",,,,,,");
        return;
    }
    char la[32] = "";
    if (m->label_accuracy >= 0) snprintf(la, sizeof la, "%.4f", m->label_accuracy);
    snprintf(buf, cap, ",%.4f,%.4f,%.4f,%.4f,%.4f,%s", m->fid, m->precision, m->recall, m->confidence,
             m->class_entropy, la);
}

ddpm_status ddpm_train_eval_plot(const ddpm_train_eval *e, const char *out_dir) {
    if (e->nfid < 2) return DDPM_OK;
    char path[1100], title[96];
    snprintf(path, sizeof path, "%s/fid.png", out_dir);
    snprintf(title, sizeof title, "FID (LOG SCALE) EVERY %d ITERATIONS", e->every);
    return ddpm_plot_line_png(path, e->fid, e->nfid, 800, 400, true, title);
}

void ddpm_train_eval_close(ddpm_train_eval *e) {
    ddpm_eval_ref_free(&e->ref);
    ddpm_clf_free(e->net);
    ddpm_dataset_free(&e->test);
    free(e->fid);
    memset(e, 0, sizeof *e);
}
