/* run.c: the training loop of a run directory: log rows, checkpoints, grids
 * and evaluations on their cadence. See run.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <unistd.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ddpm/checkpoint.h"
#include "ddpm/meta.h"
#include "ddpm/image.h"
#include "ddpm/report.h"
#include "run/run_internal.h"

struct ddpm_run {
    ddpm_run_opts o;
    ddpm_trainer *tr;
    bool lead;                 /* rank 0: writes and prints */
    ddpm_run_lock own_lock;    /* when the caller holds none */
    run_log L;
    run_info info;             /* run.txt: describes the last checkpoint */
    bool eval;
    run_eval ev;
    ddpm_pipeline *pipe;       /* the EMA weights, for grids and evaluations */
    ddpm_train_progress prog;
    int log_every;
    int64_t step0, stop_at;
    double wall0;              /* wall seconds of the run before this session (run.txt) */
    double t0, pause_s;        /* this session's start; its time not spent training */
    double smooth, comm_s;
    double best_fid;           /* keep_best: the FID of best.safetensors (+inf: none yet) */
    char ckpt[1100], best[1100];
};

/* mkdir -p with the library's message. */
ddpm_status run_mkdirs(const char *path) {
    if (ddpm_mkdirs(path)) return ddpm_error(DDPM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    return DDPM_OK;
}

void ddpm_run_opts_default(ddpm_run_opts *o) {
    *o = (ddpm_run_opts){.dir = "runs/mnist", .ckpt_every = 500, .grid_scale = 1, .eval_n = 1000};
}

/* 16 images, or K columns of one class each (labels cycling 0..K-1, as
 * `ddpm sample` lays them out) in as many rows as make 16 or more. */
static int grid_images(int K) { return K > 0 ? K * ((16 + K - 1) / K) : 16; }

/* A grid of the EMA weights: DDIM 50 steps (T if fewer), eta 0, fixed seed. */
static ddpm_status write_grid(ddpm_run *r, const char *path) {
    double t = ddpm_now();
    const ddpm_train_config *c = ddpm_trainer_config(r->tr);
    const int K = c->model.num_classes, n = grid_images(K);
    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    float *x = ddpm_malloc((size_t)n * D * sizeof(float));
    int *labels = ddpm_malloc((size_t)n * sizeof(int)), cols = 4;
    if (!x || !labels) {
        ddpm_free(x), ddpm_free(labels);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    }
    if (K > 0) cols = ddpm_sampler_labels(labels, n, K, -1);
    if (cols <= 0) /* more classes than columns: a square grid */
        for (cols = 1; cols * cols < n;) cols++;
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .steps = c->T < 50 ? c->T : 50, .eta = 0.0f,
                                    .var = DDPM_VAR_SMALL};
    o.seed = DDPM_RUN_GRID_SEED;
    ddpm_pipeline_set_weights(r->pipe, ddpm_trainer_ema(r->tr));
    ddpm_status s = ddpm_pipeline_draw(r->pipe, &o, 0, n, x);
    if (!s)
        s = ddpm_image_write_grid_scaled(path, x, n, c->model.in_ch, c->model.res, c->model.res, cols, -1.0f, 1.0f,
                                         r->o.grid_scale > 0 ? r->o.grid_scale : 1);
    ddpm_free(x);
    ddpm_free(labels);
    r->pause_s += ddpm_now() - t;
    return s;
}

/* The page of the run (report.h), after everything it shows is on disk.
 * A page that cannot be written is a warning: the run itself is fine. */
static void write_report(ddpm_run *r) {
    if (r->L.f) fflush(r->L.f);
    if (ddpm_report_write_run(r->o.dir) && r->o.progress)
        fprintf(r->o.progress, "%sddpm train: warning: no report: %s\n", ddpm_train_progress_clear(&r->prog),
                ddpm_last_error());
}

/* The one place the run writes its checkpoint, with what describes it:
 * loss.png, run.txt (status: running, finished or stopped) and report.html. */
static ddpm_status save_checkpoint(ddpm_run *r, const char *status) {
    double t = ddpm_now();
    ddpm_status s = ddpm_trainer_save(r->tr, r->ckpt);
    if (!s) s = run_log_plot(&r->L, r->o.dir);
    if (!s) {
        int64_t it = ddpm_trainer_step_count(r->tr);
        double train_s = t - r->t0 - r->pause_s;
        r->info.iter = it;
        r->info.wall_s = r->wall0 + (t - r->t0);
        r->info.img_per_s = train_s > 0 ? (double)(it - r->step0) * ddpm_trainer_config(r->tr)->batch / train_s : 0.0;
        r->info.status = status;
        s = run_info_write(&r->info);
    }
    if (!s) write_report(r);
    r->pause_s += ddpm_now() - t;
    return s;
}

/* A fresh run removes a best.safetensors an earlier run left in the
 * directory; a resumed run with keep_best continues from its FID (an
 * evaluation repeated after a crash gives the same FID, so it keeps the file
 * as it is). */
static ddpm_status best_open(ddpm_run *r) {
    r->best_fid = INFINITY;
    if (snprintf(r->best, sizeof r->best, "%s/%s", r->o.dir, DDPM_RUN_BEST) >= (int)sizeof r->best)
        return ddpm_error(DDPM_ERR_ARG, "run directory path too long: '%s'", r->o.dir);
    if (access(r->best, F_OK) != 0 || (r->step0 > 0 && !r->o.keep_best)) return DDPM_OK;
    if (r->step0 == 0) {
        if (unlink(r->best) == 0) return DDPM_OK;
        return ddpm_error(DDPM_ERR_IO, "cannot remove the earlier run's '%s': %s", r->best, strerror(errno));
    }
    ddpm_checkpoint ck;
    ddpm_status s = ddpm_checkpoint_open(&ck, r->best);
    if (s) return s;
    float fid;
    s = ddpm_meta_float(&ck.file, r->best, DDPM_META_BEST_FID, 0.0f, INFINITY, &fid);
    ddpm_checkpoint_close(&ck);
    if (!s) r->best_fid = fid;
    return s;
}

/* keep_best: best.safetensors becomes this iteration's state if its FID is
 * the lowest so far (the whole trainer state, as a checkpoint). */
static ddpm_status best_update(ddpm_run *r, const ddpm_eval_metrics *m, int64_t it) {
    if (!(m->fid < r->best_fid)) return DDPM_OK;
    char fid[32], iter[32];
    snprintf(fid, sizeof fid, "%.9g", m->fid);
    snprintf(iter, sizeof iter, "%" PRId64, it);
    const ddpm_st_meta meta[2] = {{DDPM_META_BEST_FID, fid}, {DDPM_META_BEST_ITER, iter}};
    ddpm_status s = ddpm_trainer_save_with(r->tr, r->best, meta, 2);
    if (!s) r->best_fid = m->fid;
    if (!s && r->o.progress)
        fprintf(r->o.progress, "%sddpm train: best so far: '%s' (iter %" PRId64 ", fid %.3f)\n",
                ddpm_train_progress_clear(&r->prog), r->best, it, m->fid);
    return s;
}

/* What is trained on what, and how. */
static void print_start(const ddpm_run *r) {
    const ddpm_train_config *c = ddpm_trainer_config(r->tr);
    const ddpm_dataset *ds = ddpm_trainer_data(r->tr);
    const char *name = ddpm_trainer_data_name(r->tr);
    FILE *f = r->o.progress;
    char ranks[64] = "";
    if (ddpm_dist_size() > 1) snprintf(ranks, sizeof ranks, " per rank x %d ranks", ddpm_dist_size());
    fprintf(f, "ddpm train: %s: %d images %dx%dx%d; model %zu parameters; T=%d %s; batch %d; %" PRId64
               " iterations%s; %d threads%s%s\n", name ? name : "(data)", ds ? ds->n : 0, c->model.in_ch, c->model.res,
            c->model.res, ddpm_unet_num_params(ddpm_trainer_model(r->tr)), c->T, ddpm_schedule_name(c->schedule),
            c->batch, c->iters, r->step0 ? " (resumed)" : "", r->o.threads, ranks,
            c->precision == DDPM_PREC_BF16 ? "; bf16 products" : "");
    if (c->objective != DDPM_OBJ_EPS || c->snr_gamma > 0.0f)
        fprintf(f, "ddpm train: objective %s, min-SNR gamma %g%s\n", ddpm_objective_name(c->objective),
                (double)c->snr_gamma, c->snr_gamma > 0.0f ? "" : " (off)");
    if (r->step0 >= c->iters) fprintf(f, "ddpm train: the checkpoint is already at iteration %" PRId64 "\n", r->step0);
}

ddpm_status ddpm_run_open(ddpm_run **out, ddpm_trainer *tr, const ddpm_run_opts *o) {
    *out = NULL;
    ddpm_run *r = calloc(1, sizeof *r);
    if (!r) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    r->o = *o;
    r->tr = tr;
    r->own_lock.fd = -1;
    r->lead = ddpm_dist_rank() == 0;
    r->step0 = ddpm_trainer_step_count(tr);
    r->eval = o->eval_every > 0;
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    ddpm_status s = DDPM_OK;
    if (snprintf(r->ckpt, sizeof r->ckpt, "%s/%s", o->dir, DDPM_RUN_CKPT) >= (int)sizeof r->ckpt)
        s = ddpm_error(DDPM_ERR_ARG, "run directory path too long: '%s'", o->dir);
    if (!r->lead || s) goto done;
    if ((s = run_mkdirs(o->dir))) goto done;
    if (!o->lock || o->lock->fd < 0) {
        if ((s = ddpm_run_lock_take(&r->own_lock, o->dir))) goto done;
    }
    if ((s = run_log_open(&r->L, o->dir, r->step0, c->iters, r->eval))) goto done;
    if (r->eval && (s = run_eval_open(&r->ev, o, c))) goto done;
    if (o->keep_best && !r->eval) s = ddpm_error(DDPM_ERR_ARG, "keeping the best checkpoint needs evaluations (eval_every)");
    if (!s) s = best_open(r);
    if (s) goto done;
    ddpm_pipeline_model m = {.cfg = c->model, .params = ddpm_trainer_ema(tr), .schedule = c->schedule, .T = c->T,
                             .objective = c->objective, .precision = c->precision, .sampler = c->sampler,
                             .sample_steps = c->sample_steps}; /* grids and metrics as the run computes */
    ddpm_pipeline_opts po = {.max_batch = 16}; /* bounds memory beside the trainer's; no effect on the images */
    if ((s = ddpm_pipeline_create(&r->pipe, &m, &po))) goto done;
    run_info_init(&r->info, o->dir, o->command, o->threads, r->step0 > 0);
    r->wall0 = r->info.wall_s;
    r->info.iter = r->step0, r->info.iters = c->iters;
    r->info.precision = ddpm_precision_name(c->precision);
    s = run_info_write(&r->info);
done:
    if (s) ddpm_run_free(r);
    else *out = r;
    return s;
}

void ddpm_run_free(ddpm_run *r) {
    if (!r) return;
    run_log_close(&r->L);
    if (r->eval) run_eval_close(&r->ev);
    ddpm_pipeline_free(r->pipe);
    ddpm_run_lock_release(&r->own_lock);
    free(r);
}

/* A log.csv row and the progress line; m: the metrics of an evaluation.
 * A row that cannot be written (a full disk) stops the run: a resume cuts
 * the log at its checkpoint, so a half-written row is never kept. */
static ddpm_status log_row(ddpm_run *r, const ddpm_train_stats *st, const ddpm_eval_metrics *m) {
    char ev[200] = "", row[400];
    if (r->eval) run_eval_csv(ev, sizeof ev, m);
    int n = snprintf(row, sizeof row, "%" PRId64 ",%.6f,%.6g,%.4f,%.1f%s\n", st->iter, st->loss, (double)st->lr,
                     st->grad_norm, r->wall0 + (ddpm_now() - r->t0), ev);
    size_t half = (size_t)n / 2;
    bool ok = fwrite(row, 1, half, r->L.f) == half && fflush(r->L.f) == 0;
    if (ok) ddpm_test_kill_point(r->L.path);
    if (ok && ddpm_test_no_space(r->L.path)) ok = false, errno = ENOSPC;
    ok = ok && fwrite(row + half, 1, (size_t)n - half, r->L.f) == (size_t)n - half && fflush(r->L.f) == 0;
    if (!ok) return ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", r->L.path, strerror(errno ? errno : EIO));
    ddpm_train_progress_line(&r->prog, st->iter, r->smooth, st->lr, st->grad_norm);
    return DDPM_OK;
}

static ddpm_status evaluate(ddpm_run *r, const ddpm_train_stats *st) {
    ddpm_eval_metrics m;
    double t = ddpm_now();
    ddpm_pipeline_set_weights(r->pipe, ddpm_trainer_ema(r->tr));
    ddpm_status s = run_eval_run(&r->ev, &m, r->pipe, ddpm_trainer_config(r->tr)->T);
    if (s) return s;
    double dt = ddpm_now() - t;
    ddpm_train_progress_pause(&r->prog, dt); /* img/s stays about training */
    r->pause_s += dt;
    if (r->o.progress)
        fprintf(r->o.progress, "%seval at iter %" PRId64 ": fid %.3f  precision %.3f  recall %.3f  confidence %.3f  "
                               "class_entropy %.3f (%d samples, %.0f s)\n", ddpm_train_progress_clear(&r->prog),
                st->iter, m.fid, m.precision, m.recall, m.confidence, m.class_entropy, m.n, dt);
    if ((s = log_row(r, st, &m))) return s;
    if (r->o.keep_best && (s = best_update(r, &m, st->iter))) return s;
    return run_eval_plot(&r->ev, r->o.dir);
}

/* After every iteration: log, evaluate, grid, checkpoint, stop on request. */
static ddpm_status on_iter(void *ctx, ddpm_trainer *tr, const ddpm_train_stats *st, bool *stop) {
    ddpm_run *r = ctx;
    const ddpm_run_opts *o = &r->o;
    int64_t it = st->iter;
    *stop = o->stop && *o->stop != 0;
    if (!r->lead) return DDPM_OK;
    r->comm_s += st->comm_s;
    if (it - 1 < r->L.cap) {
        r->L.loss[it - 1] = (float)st->loss;
        r->L.n = it;
    }
    r->smooth = isnan(r->smooth) ? st->loss : 0.98 * r->smooth + 0.02 * st->loss;
    bool last = it == r->stop_at;
    ddpm_status s = DDPM_OK;
    if (r->eval && (it % o->eval_every == 0 || last)) s = evaluate(r, st);
    else if (it % r->log_every == 0 || last) s = log_row(r, st, NULL);
    /* The grid before the checkpoint, as the log row: a kill between the two
     * then resumes before this iteration and draws the grid again; the other
     * order would resume after it and never draw it. */
    if (!s && o->sample_every > 0 && it % o->sample_every == 0) {
        char path[1100];
        snprintf(path, sizeof path, "%s/samples_%06" PRId64 ".png", o->dir, it);
        s = write_grid(r, path);
    }
    if (!s && o->ckpt_every > 0 && it % o->ckpt_every == 0 && !last) s = save_checkpoint(r, "running");
    return s;
}

ddpm_status ddpm_run_train(ddpm_run *r, ddpm_run_result *res) {
    const ddpm_train_config *c = ddpm_trainer_config(r->tr);
    const ddpm_run_opts *o = &r->o;
    memset(res, 0, sizeof *res);
    res->step0 = r->step0, res->iters = c->iters;
    snprintf(res->dir, sizeof res->dir, "%s", o->dir);
    snprintf(res->ckpt, sizeof res->ckpt, "%s", r->ckpt);
    snprintf(res->grid, sizeof res->grid, "%s/samples.png", o->dir);
    int64_t auto_every = c->iters / 50 > 0 ? (c->iters / 50 < 100 ? c->iters / 50 : 100) : 1;
    r->log_every = o->log_every > 0 ? o->log_every : (int)auto_every;
    r->stop_at = o->stop_after > 0 && r->step0 + o->stop_after < c->iters ? r->step0 + o->stop_after : c->iters;
    r->smooth = NAN;
    r->t0 = ddpm_now();
    if (r->lead && o->progress) print_start(r);
    ddpm_train_progress_start(&r->prog, r->lead ? o->progress : NULL, r->step0, c->iters, c->batch);
    ddpm_status s = ddpm_trainer_run(r->tr, r->stop_at, on_iter, r);
    ddpm_train_progress_end(&r->prog);
    int64_t it = ddpm_trainer_step_count(r->tr);
    res->iter = it;
    res->stopped = o->stop && *o->stop != 0;
    res->loss_smooth = r->smooth;
    res->comm_s = r->comm_s;
    if (s && r->lead) { /* run.txt keeps describing the last checkpoint */
        r->info.status = "stopped";
        run_info_write(&r->info);
    }
    if (s || !r->lead) {
        res->wall_s = ddpm_now() - r->t0;
        return s;
    }
    res->finished = !res->stopped && it >= c->iters;
    if ((s = save_checkpoint(r, res->finished ? "finished" : "stopped"))) return s;
    if (res->finished && !(s = write_grid(r, res->grid))) write_report(r); /* with the final grid */
    res->wall_s = ddpm_now() - r->t0;
    return s;
}
