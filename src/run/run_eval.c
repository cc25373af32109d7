/* run_eval.c: the `ddpm eval` protocol during training (FID,
 * precision/recall, confidence, class entropy; label accuracy for
 * conditional models) on eval_n samples of the EMA weights, DDIM 50 steps
 * (eta 0, a fixed seed, so successive rows differ by the model only),
 * against the test split of the training data, or an image folder as a
 * whole (an eval.h session). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "ddpm/image.h"
#include "run/run_internal.h"

ddpm_status run_eval_open(run_eval *e, const ddpm_run_opts *o, const ddpm_train_config *c) {
    int64_t iters = c->iters;
    memset(e, 0, sizeof *e);
    e->every = o->eval_every;
    e->n = o->eval_n;
    e->cap = (int)(iters / o->eval_every + 1);
    if (!o->eval_data) return ddpm_error(DDPM_ERR_ARG, "evaluation during training needs the data's directory");
    ddpm_eval_folder_opts fo = {.size = c->model.res, .channels = c->model.in_ch, .alpha = o->eval_alpha};
    ddpm_status s = ddpm_eval_session_open_ex(&e->session, o->eval_data, &fo, NULL, o->threads, NULL, NULL);
    if (s) return s;
    e->open = true;
    if (!(e->fid = calloc((size_t)e->cap, sizeof(float)))) s = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (!s && e->n > e->session.test.n * 10)
        s = ddpm_error(DDPM_ERR_ARG, "--eval-n %d is more than 10x the test split", e->n);
    if (s) {
        run_eval_close(e);
        return s;
    }
    if (e->session.trained && o->progress)
        fprintf(o->progress, "ddpm train: trained the evaluation network '%s': test accuracy %.2f%%\n",
                e->session.net_path, 100 * e->session.trained_acc);
    if (o->progress)
        fprintf(o->progress, "ddpm train: every %d iterations: %d samples (EMA weights, ddim 50 steps) against the %d%s "
                             "images of '%s', network '%s'\n", e->every, e->n, e->session.test.n,
                e->session.folder ? "" : " test", o->eval_data, e->session.net_path);
    return DDPM_OK;
}

ddpm_status run_eval_run(run_eval *e, ddpm_eval_metrics *m, ddpm_pipeline *p, int T) {
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .steps = T < 50 ? T : 50, .eta = 0.0f,
                                    .var = DDPM_VAR_SMALL};
    o.seed = DDPM_RUN_EVAL_SEED;
    ddpm_status s = ddpm_eval_pipeline(m, &e->session.ref, p, &o, e->n);
    if (!s && e->nfid < e->cap) e->fid[e->nfid++] = (float)m->fid;
    return s;
}

void run_eval_csv(char *buf, size_t cap, const ddpm_eval_metrics *m) {
    if (!m) {
        snprintf(buf, cap, ",,,,,,");
        return;
    }
    char la[32] = "";
    if (m->label_accuracy >= 0) snprintf(la, sizeof la, "%.4f", m->label_accuracy);
    snprintf(buf, cap, ",%.4f,%.4f,%.4f,%.4f,%.4f,%s", m->fid, m->precision, m->recall, m->confidence,
             m->class_entropy, la);
}

ddpm_status run_eval_plot(const run_eval *e, const char *dir) {
    if (e->nfid < 2) return DDPM_OK;
    char path[1100], title[96];
    snprintf(path, sizeof path, "%s/fid.png", dir);
    snprintf(title, sizeof title, "FID (LOG SCALE) EVERY %d ITERATIONS", e->every);
    return ddpm_plot_line_png(path, e->fid, e->nfid, 800, 400, true, title);
}

void run_eval_close(run_eval *e) {
    if (e->open) ddpm_eval_session_close(&e->session);
    free(e->fid);
    memset(e, 0, sizeof *e);
}
