/* cmd_train.c: `ddpm train`: train a UNet noise predictor on an IDX dataset.
 *
 * Writes into --out DIR: ckpt.safetensors (model, EMA, Adam moments, all
 * state needed to --resume exactly), log.csv (one row per logged
 * iteration), loss.png (the loss curve), samples.png (a grid from the EMA
 * weights at the end) and samples_NNNNNN.png every --sample-every.
 */
#define _DEFAULT_SOURCE /* flock */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "folder.h"
#include "diffusion/loop.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/image.h"
#include "ddpm/sampler.h"
#include "ddpm/train.h"

static const char *CMD = "train";

/* ---- signals -------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) { g_stop = sig; }

static void install_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}



static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- sampling a grid from the EMA weights ------------------------------------------ */

typedef struct {
    ddpm_objective_model om; /* the UNet's output converted to eps_hat */
    const int *labels;
} eps_ctx;

static ddpm_status eps_fn(void *p, float *eps, const float *x, const int *t, int N) {
    eps_ctx *c = p;
    return ddpm_objective_eps(&c->om, eps, x, t, c->labels, N);
}

/* 16 samples with DDIM (50 steps, eta 0) from fixed noise: the same seed every
 * time, so successive grids show the model improving, not new noise. A
 * class-conditional model draws K columns, one class each (labels cycling
 * 0..K-1, as `ddpm sample` lays them out), in as many rows as make 16 or more. */
static int grid_images(int K) { return K > 0 ? K * ((16 + K - 1) / K) : 16; }

static ddpm_status write_sample_grid(ddpm_trainer *tr, ddpm_unet *inf, const char *path, int scale) {
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    const int K = c->model.num_classes, n = grid_images(K);
    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    memcpy(ddpm_unet_params(inf), ddpm_trainer_ema(tr), ddpm_unet_num_params(inf) * sizeof(float));
    float *x = ddpm_malloc(n * D * sizeof(float)), *work = ddpm_malloc(ddpm_sample_loop_workspace(n, D) * sizeof(float));
    int *labels = ddpm_malloc((size_t)n * sizeof(int)), cols = 4;
    ddpm_status s = DDPM_ERR_NOMEM;
    if (x && work && labels) {
        if (K > 0) cols = ddpm_sampler_labels(labels, n, K, -1);
        if (cols <= 0) /* more classes than columns: a square grid */
            for (cols = 1; cols * cols < n;) cols++;
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 1234);
        ddpm_rng_fill_normal(&rng, x, n * D);
        ddpm_sampler_opts o = {.kind = DDPM_SAMPLER_DDIM, .steps = c->T < 50 ? c->T : 50, .eta = 0.0f, .var = DDPM_VAR_SMALL};
        eps_ctx ctx = {.labels = K > 0 ? labels : NULL};
        s = ddpm_objective_model_init(&ctx.om, ddpm_unet_eps, inf, c->objective, ddpm_trainer_schedule(tr), D);
        if (!s) s = ddpm_sample_loop(x, n, D, ddpm_trainer_schedule(tr), &o, eps_fn, &ctx, &rng, work, NULL, NULL);
        if (!s)
            s = ddpm_image_write_grid_scaled(path, x, n, c->model.in_ch, c->model.res, c->model.res, cols, -1.0f,
                                             1.0f, scale);
    }
    ddpm_free(x);
    ddpm_free(work);
    ddpm_free(labels);
    return s;
}

/* ---- log -------------------------------------------------------------------------------- */

typedef struct {
    FILE *f;
    float *loss; /* loss of every iteration, for the plot */
    int64_t n, cap;
} train_log;

/* Opens OUT/log.csv. On resume keeps the rows up to `step` (rows after the
 * checkpoint belong to a run that did not save them) and reloads the loss
 * history from them. */
static ddpm_status log_open(train_log *L, const char *dir, int64_t step, int64_t iters, bool eval) {
    const char *hdr = eval ? "iter,loss,lr,grad_norm,img_per_s,elapsed_s,fid,precision,recall,confidence,"
                             "class_entropy,label_accuracy\n" : "iter,loss,lr,grad_norm,img_per_s,elapsed_s\n";
    char path[1100], tmp[1100];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    L->cap = iters > 0 ? iters : 1;
    L->loss = calloc((size_t)L->cap, sizeof *L->loss);
    L->n = 0;
    if (!L->loss) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    if (step > 0) {
        FILE *in = fopen(path, "r");
        snprintf(tmp, sizeof tmp, "%s/log.csv.tmp", dir);
        FILE *out = fopen(tmp, "w");
        if (!out) {
            if (in) fclose(in);
            return ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        }
        fputs(hdr, out);
        char line[512];
        while (in && fgets(line, sizeof line, in)) {
            long long it;
            float loss;
            if (sscanf(line, "%lld,%f", &it, &loss) != 2 || it < 1 || it > step) continue;
            fputs(line, out);
            if (it <= L->cap) {
                L->loss[it - 1] = loss;
                if (it > L->n) L->n = it;
            }
        }
        if (in) fclose(in);
        if (fclose(out) || rename(tmp, path))
            return ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        L->f = fopen(path, "a");
    } else {
        L->f = fopen(path, "w");
        if (L->f) fputs(hdr, L->f);
    }
    if (!L->f) return ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return DDPM_OK;
}

static void log_close(train_log *L) {
    if (L->f) fclose(L->f);
    free(L->loss);
}

static ddpm_status write_loss_plot(const train_log *L, const char *dir) {
    if (L->n < 2) return DDPM_OK;
    char path[1100];
    snprintf(path, sizeof path, "%s/loss.png", dir);
    return ddpm_plot_line_png(path, L->loss, (int)L->n, 800, 400, true, "TRAINING LOSS (LOG SCALE) VS ITERATION");
}

/* ---- the lock on --out ---------------------------------------------------------------- */

/* Whether `name` is a temporary file of one of train's outputs: an atomic
 * write's "<output>.tmp.XXXXXX" (mkstemp) or the log's "log.csv.tmp". */
static bool is_stray_tmp(const char *name) {
    if (!strcmp(name, "log.csv.tmp")) return true;
    const char *t = strstr(name, ".tmp.");
    if (!t || strlen(t + 5) != 6) return false;
    size_t n = (size_t)(t - name);
    const char *fixed[] = {DDPM_CKPT_FILE, "loss.png", "samples.png"};
    for (int i = 0; i < 3; i++)
        if (strlen(fixed[i]) == n && !strncmp(name, fixed[i], n)) return true;
    /* samples_NNNNNN.png (6 or more digits) */
    if (n < strlen("samples_000000.png") || strncmp(name, "samples_", 8) || strncmp(name + n - 4, ".png", 4)) return false;
    for (size_t i = 8; i < n - 4; i++)
        if (!isdigit((unsigned char)name[i])) return false;
    return true;
}

/* Removes what a killed run left of its writes. Called with the lock held,
 * so no other ddpm train is writing them. */
static void remove_stray_tmp(const char *out) {
    DIR *d = opendir(out);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)))
        if (is_stray_tmp(e->d_name)) {
            snprintf(path, sizeof path, "%s/%s", out, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* OUT/.lock, held with flock for the whole run: the kernel drops the lock
 * when the process dies, so a crashed run never blocks the next one; the
 * temporaries such a run left are removed once the lock is held. The
 * file is removed on a clean exit; a run that finds the file replaced
 * between open and flock (the holder just removed it) tries again. */
static int lock_out(const char *out, char *lock, size_t cap) {
    snprintf(lock, cap, "%s/.lock", out);
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "ddpm train: cannot create '%s': %s\n", lock, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                fprintf(stderr, "ddpm train: '%s' is in use by another ddpm train (lock '%s' held)\n", out, lock);
            else
                fprintf(stderr, "ddpm train: cannot lock '%s': %s\n", lock, strerror(e));
            return -1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lock, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            remove_stray_tmp(out);
            return fd;
        }
        close(fd);
    }
    fprintf(stderr, "ddpm train: cannot lock '%s': it keeps changing\n", lock);
    return -1;
}

static void unlock_out(int fd, const char *lock) {
    if (fd < 0) return;
    unlink(lock);
    close(fd);
}

/* ---- the command ------------------------------------------------------------------------ */

typedef struct {
    const char *data, *data_dir, *out, *schedule, *loss, *lr_decay, *objective;
    int T, batch, threads, ckpt_every, sample_every, log_every, iters, warmup, stop_after, check_sync;
    int eval_every, eval_n, scale;
    float lr, clip, ema, weight_decay, cond_drop, snr_gamma;
    uint64_t seed;
    bool resume, force;
    ddpm_folder_flags ff;
} train_flags;

/* What the progress callback needs. */
typedef struct {
    const train_flags *f;
    train_log L;
    ddpm_unet *inf;       /* inference copy of the model for sample grids */
    const char *ckpt;
    bool tty, lead;       /* lead: this process prints and writes (rank 0) */
    int log_every;
    int64_t stop_at, it_last, iters;
    int batch;
    double t0, t_last, smooth;
    double comm_s;        /* time spent summing across ranks */
    ddpm_train_eval ev;   /* --eval-every */
} progress;

static void print_progress(progress *p, const ddpm_train_stats *st, const ddpm_eval_metrics *m) {
    double t = ddpm_now();
    double ips = (double)(st->iter - p->it_last) * p->batch / (t - p->t_last), elapsed = t - p->t0;
    p->t_last = t;
    p->it_last = st->iter;
    char ev[200] = "";
    if (p->f->eval_every > 0) ddpm_train_eval_csv(ev, sizeof ev, m);
    fprintf(p->L.f, "%" PRId64 ",%.6f,%.6g,%.4f,%.1f,%.1f%s\n", st->iter, st->loss, (double)st->lr, st->grad_norm, ips,
            elapsed, ev);
    fflush(p->L.f);
    char eta[32], el[32];
    ddpm_fmt_duration(eta, sizeof eta, (double)(p->iters - st->iter) * p->batch / ips);
    ddpm_fmt_duration(el, sizeof el, elapsed);
    fprintf(stderr, "%siter %" PRId64 "/%" PRId64 "  loss %.4f  lr %.2e  grad %.3f  %.0f img/s  %s elapsed  ETA %s%s",
            p->tty ? "\r\033[K" : "", st->iter, p->iters, p->smooth, (double)st->lr, st->grad_norm, ips, el, eta,
            p->tty ? "" : "\n");
    fflush(stderr);
}

/* After every iteration: log, checkpoint, sample grid, stop on a signal. */
static ddpm_status on_iter(void *ctx, ddpm_trainer *tr, const ddpm_train_stats *st, bool *stop) {
    progress *p = ctx;
    const train_flags *f = p->f;
    int64_t it = st->iter;
    *stop = g_stop != 0;
    if (!p->lead) return DDPM_OK;
    p->comm_s += st->comm_s;
    if (it - 1 < p->L.cap) {
        p->L.loss[it - 1] = (float)st->loss;
        p->L.n = it;
    }
    p->smooth = isnan(p->smooth) ? st->loss : 0.98 * p->smooth + 0.02 * st->loss;
    bool last = it == p->stop_at;
    ddpm_status s;
    if (f->eval_every > 0 && (it % f->eval_every == 0 || last)) {
        ddpm_eval_metrics m;
        double t = ddpm_now();
        if ((s = ddpm_train_eval_run(&p->ev, &m, tr, p->inf, 16))) return s;
        p->t_last += ddpm_now() - t; /* keep img/s about training */
        fprintf(stderr, "%seval at iter %" PRId64 ": fid %.3f  precision %.3f  recall %.3f  confidence %.3f  "
                        "class_entropy %.3f (%d samples, %.0f s)\n", p->tty ? "\r\033[K" : "", it, m.fid, m.precision,
                m.recall, m.confidence, m.class_entropy, m.n, ddpm_now() - t);
        print_progress(p, st, &m);
        ddpm_train_eval_plot(&p->ev, f->out);
    } else if (it % p->log_every == 0 || last) {
        print_progress(p, st, NULL);
    }
    if (f->ckpt_every > 0 && it % f->ckpt_every == 0 && !last) {
        if ((s = ddpm_trainer_save(tr, p->ckpt))) return s;
        write_loss_plot(&p->L, f->out);
    }
    if (f->sample_every > 0 && it % f->sample_every == 0) {
        char path[1100];
        snprintf(path, sizeof path, "%s/samples_%06" PRId64 ".png", f->out, it);
        if ((s = write_sample_grid(tr, p->inf, path, f->scale))) return s;
    }
    return DDPM_OK;
}

/* The batch hook: image-folder augmentation, then the test hook that
 * poisons the batch of iteration DDPM_TEST_NAN_AT to exercise the
 * non-finite-loss path (like git's GIT_TEST_* variables). */
typedef struct {
    const ddpm_cli_data *data;
    int64_t nan_at;
} batch_hook_ctx;

static void batch_hook(void *ctx, float *x0, int *labels, const int *idx, int n, int64_t iter) {
    const batch_hook_ctx *h = ctx;
    ddpm_cli_data_augment(h->data, x0, idx, n, iter);
    if (iter == h->nan_at) x0[0] = NAN;
}

static ddpm_status make_trainer(ddpm_trainer **tr, const train_flags *f, ddpm_opt *opts, int nopts,
                                ddpm_model_flags *mf, const ddpm_cli_data *ds) {
    ddpm_train_config c;
    ddpm_train_config_default(&c);
    if (ds->folder) { /* the folder fixes the size: its preset, unless flags say otherwise */
        mf->in_ch = ds->c, mf->res = ds->h;
        ddpm_model_flags_preset(mf, opts + nopts - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS, true);
    }
    ddpm_model_flags_apply(mf, &c.model);
    if (!ddpm_opts_seen(opts, nopts, "--channels")) c.model.in_ch = ds->c;
    if (!ddpm_opts_seen(opts, nopts, "--size")) c.model.res = ds->h;
    c.schedule = (ddpm_schedule_kind)ddpm_schedule_parse(f->schedule);
    c.loss = (ddpm_loss_kind)ddpm_loss_parse(f->loss);
    c.objective = (ddpm_objective)ddpm_objective_parse(f->objective);
    c.snr_gamma = f->snr_gamma;
    c.decay = (ddpm_lr_decay)ddpm_lr_decay_parse(f->lr_decay);
    c.T = f->T;
    c.batch = f->batch;
    c.iters = f->iters;
    c.lr = f->lr;
    c.warmup = f->warmup;
    c.clip = f->clip;
    c.ema_decay = f->ema;
    c.weight_decay = f->weight_decay;
    c.cond_drop = f->cond_drop;
    c.seed = f->seed;
    return ddpm_trainer_create(tr, &c);
}

/* The overwrite guard: a checkpoint in --out needs --resume or --force. */
static int check_out(const train_flags *f, const char *ckpt) {
    if (!f->resume && !f->force && file_exists(ckpt)) {
        fprintf(stderr, "ddpm train: '%s' already exists; pass --resume to continue that run, "
                        "--force to start over, or --out DIR for a new one\n", ckpt);
        return 1;
    }
    if (f->resume && !file_exists(ckpt)) {
        fprintf(stderr, "ddpm train: cannot resume: '%s' does not exist\n", ckpt);
        return 1;
    }
    return 0;
}

/* The end of a run that was not stopped by an error. */
static int finish(progress *p, ddpm_trainer *tr, int64_t step0) {
    const train_flags *f = p->f;
    int64_t it = ddpm_trainer_step_count(tr);
    if (!p->lead) return g_stop ? 128 + g_stop : 0; /* rank 0 saves and reports */
    if (ddpm_trainer_save(tr, p->ckpt) || write_loss_plot(&p->L, f->out)) return -1;
    if (ddpm_dist_size() > 1 && it > step0)
        fprintf(stderr, "ddpm train: %d ranks; summing the gradients across ranks took %.1f ms per iteration\n",
                ddpm_dist_size(), 1e3 * p->comm_s / (double)(it - step0));
    if (g_stop) {
        fprintf(stderr, "ddpm train: %s at iteration %" PRId64 "; checkpoint saved to '%s' (continue with --resume)\n",
                g_stop == SIGINT ? "interrupted" : "terminated", it, p->ckpt);
        return 128 + g_stop;
    }
    if (it < p->iters) {
        printf("stopped after %" PRId64 " iterations (--stop-after) at iteration %" PRId64 " of %" PRId64
               "; checkpoint saved to '%s' (continue with --resume)\n", it - step0, it, p->iters, p->ckpt);
        return 0;
    }
    char path[1100], el[32];
    snprintf(path, sizeof path, "%s/samples.png", f->out);
    if (write_sample_grid(tr, p->inf, path, f->scale)) return -1;
    ddpm_fmt_duration(el, sizeof el, ddpm_now() - p->t0);
    printf("trained %" PRId64 " iterations in %s; final loss %.4f (smoothed)\n", it - step0, el, p->smooth);
    printf("wrote %s, %s/log.csv, %s/loss.png, %s\n", p->ckpt, f->out, f->out, path);
    return 0;
}

static void print_start(const ddpm_trainer *tr, const ddpm_dataset *ds, const char *dir, int threads) {
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    int64_t step0 = ddpm_trainer_step_count(tr);
    size_t np = ddpm_unet_num_params(ddpm_trainer_model((ddpm_trainer *)tr));
    char ranks[64] = "";
    if (ddpm_dist_size() > 1) snprintf(ranks, sizeof ranks, " per rank x %d ranks", ddpm_dist_size());
    fprintf(stderr,
            "ddpm train: %s: %d images %dx%dx%d; model %zu parameters; T=%d %s; batch %d; %" PRId64
            " iterations%s; %d threads%s\n",
            dir, ds->n, ds->c, ds->h, ds->w, np, c->T, ddpm_schedule_name(c->schedule), c->batch, c->iters,
            step0 ? " (resumed)" : "", threads, ranks);
    if (c->objective != DDPM_OBJ_EPS || c->snr_gamma > 0.0f)
        fprintf(stderr, "ddpm train: objective %s, min-SNR gamma %g%s\n", ddpm_objective_name(c->objective),
                (double)c->snr_gamma, c->snr_gamma > 0.0f ? "" : " (off)");
    if (step0 >= c->iters) fprintf(stderr, "ddpm train: the checkpoint is already at iteration %" PRId64 "\n", step0);
}

/* Trains from the loaded data to the end (or --stop-after, or a signal). */
static int train_loop(progress *p, ddpm_trainer *tr, const ddpm_train_config *c) {
    const train_flags *f = p->f;
    int64_t step0 = ddpm_trainer_step_count(tr);
    p->iters = c->iters;
    p->batch = c->batch;
    p->tty = ddpm_cli_tty();
    p->log_every = f->log_every > 0 ? f->log_every
                                    : (int)(c->iters / 50 > 0 ? (c->iters / 50 < 100 ? c->iters / 50 : 100) : 1);
    p->t0 = p->t_last = ddpm_now();
    p->smooth = NAN;
    p->it_last = step0;
    p->stop_at = f->stop_after > 0 && step0 + f->stop_after < c->iters ? step0 + f->stop_after : c->iters;
    install_handlers();
    ddpm_status s = ddpm_trainer_run(tr, p->stop_at, on_iter, p);
    if (p->tty) fputc('\n', stderr);
    if (s == DDPM_ERR_NUMERIC) { /* the same on every rank: rank 0 reports it */
        if (!p->lead) return 1;
        ddpm_cli_error(CMD);
        fprintf(stderr, "ddpm train: stopped; the last checkpoint '%s' is untouched (try a lower --lr)\n", p->ckpt);
        return 1;
    }
    if (s) return -1;
    return finish(p, tr, step0);
}

/* Everything a run holds, released by run_free. */
typedef struct {
    char dir[1024], ckpt[1100], lock[1100];
    int lock_fd, threads;
    ddpm_cli_data ds;
    ddpm_trainer *tr;
    batch_hook_ctx hook;
} run_state;

/* Rank 0's output side: the directory, its lock, the log. */
static int open_outputs(run_state *r, progress *p) {
    const train_flags *f = p->f;
    if (ddpm_mkdirs(f->out)) {
        fprintf(stderr, "ddpm train: cannot create '%s': %s\n", f->out, strerror(errno));
        return 1;
    }
    if (r->lock_fd < 0 && (r->lock_fd = lock_out(f->out, r->lock, sizeof r->lock)) < 0) return 1;
    const ddpm_train_config *c = ddpm_trainer_config(r->tr);
    if (log_open(&p->L, f->out, ddpm_trainer_step_count(r->tr), c->iters, f->eval_every > 0)) return -1;
    if (f->eval_every > 0 && ddpm_train_eval_open(&p->ev, r->dir, f->eval_every, f->eval_n, c->iters, r->threads)) return 1;
    return 0;
}

/* Trainer, data and outputs. Returns 0, 1 after printing a message, or -1
 * when the library's message is still to be printed. */
static int setup(run_state *r, progress *p, train_flags *f, ddpm_opt *opts, int nopts, ddpm_model_flags *mf) {
    r->threads = ddpm_set_threads(f->threads);
    snprintf(r->ckpt, sizeof r->ckpt, "%s/%s", f->out, DDPM_CKPT_FILE);
    if (p->lead && file_exists(f->out) && (r->lock_fd = lock_out(f->out, r->lock, sizeof r->lock)) < 0) return 1;
    if (p->lead && check_out(f, r->ckpt)) return 1;
    /* model and trainer; on --resume the data defaults to the run's own */
    bool data_given = ddpm_opts_seen(opts, nopts, "--data") || ddpm_opts_seen(opts, nopts, "--data-dir");
    if (f->resume) {
        if (ddpm_trainer_resume(&r->tr, r->ckpt, ddpm_opts_seen(opts, nopts, "--iters") ? f->iters : 0)) return -1;
        const char *d = ddpm_trainer_data_name(r->tr);
        if (!data_given && d) f->data = d;
    }
    if (ddpm_cli_data_dir(r->dir, sizeof r->dir, f->data, f->data_dir)) return -1;
    if (f->resume) ddpm_folder_flags_from_ckpt(&f->ff, r->ckpt);
    const ddpm_unet_config *rm = r->tr ? &ddpm_trainer_config(r->tr)->model : NULL;
    int size = rm ? rm->res : ddpm_opts_seen(opts, nopts, "--size") ? mf->res : 0;
    int ch = rm ? rm->in_ch : ddpm_opts_seen(opts, nopts, "--channels") ? mf->in_ch : 0;
    if (ddpm_cli_data_load(CMD, &r->ds, r->dir, &f->ff, size, ch, r->tr ? ddpm_trainer_config(r->tr)->seed : f->seed))
        return 1;
    if (!f->resume && make_trainer(&r->tr, f, opts, nopts, mf, &r->ds)) return -1;
    if (ddpm_trainer_config(r->tr)->model.num_classes > 0 && ddpm_cli_data_check_labels(CMD, &r->ds, r->dir)) return 1;
    if (ddpm_trainer_set_data(r->tr, &r->ds.ds, r->dir)) return -1;
    int nmeta;
    const ddpm_st_meta *meta = ddpm_cli_data_meta(&r->ds, &nmeta);
    if (ddpm_trainer_set_user_meta(r->tr, meta, nmeta)) return -1;
    ddpm_trainer_set_check_sync(r->tr, f->check_sync);
    const char *nan_env = getenv("DDPM_TEST_NAN_AT");
    r->hook = (batch_hook_ctx){&r->ds, nan_env ? strtoll(nan_env, NULL, 10) : -1};
    if (nan_env || ddpm_cli_data_augments(&r->ds)) ddpm_trainer_set_batch_hook(r->tr, batch_hook, &r->hook);
    if (!p->lead) return 0;
    const ddpm_unet_config *mc = &ddpm_trainer_config(r->tr)->model;
    if (ddpm_unet_create(&p->inf, mc, grid_images(mc->num_classes), false)) return -1;
    return open_outputs(r, p);
}

/* In a data-parallel run the ranks agree on whether setup failed; rank 0's
 * message is printed if it has one, else that of each rank that failed. */
static int agree(int rc, bool lead) {
    if (ddpm_dist_size() == 1) {
        if (rc < 0) ddpm_cli_error(CMD);
        return rc ? 1 : 0;
    }
    if (lead && rc < 0) ddpm_cli_error(CMD);
    bool lead_failed = ddpm_dist_any(lead && rc != 0);
    if (!lead && rc != 0 && !lead_failed) fprintf(stderr, "ddpm train: rank %d: %s\n", ddpm_dist_rank(), ddpm_last_error());
    return ddpm_dist_any(rc != 0) ? 1 : 0;
}

static int run(train_flags *f, ddpm_opt *opts, int nopts, ddpm_model_flags *mf) {
    run_state r = {.lock_fd = -1};
    progress p = {.f = f, .ckpt = r.ckpt, .lead = ddpm_dist_rank() == 0};
    int rc = agree(setup(&r, &p, f, opts, nopts, mf), p.lead);
    if (!rc) {
        if (p.lead) print_start(r.tr, &r.ds.ds, r.dir, r.threads);
        rc = train_loop(&p, r.tr, ddpm_trainer_config(r.tr));
        if (rc < 0) {
            ddpm_cli_error(CMD);
            ddpm_dist_abort(1); /* a failure on one rank (rank 0's disk) ends them all */
            rc = 1;
        }
    }
    log_close(&p.L);
    ddpm_train_eval_close(&p.ev);
    ddpm_unet_free(p.inf);
    ddpm_trainer_free(r.tr);
    ddpm_cli_data_free(&r.ds);
    unlock_out(r.lock_fd, r.lock);
    return rc;
}

/* The flags train takes, the image-folder flags, then the DDPM_MODEL_OPTS model flags. */
#define TRAIN_OPTS (29 + DDPM_FOLDER_OPTS)
#define NOPTS (TRAIN_OPTS + DDPM_MODEL_OPTS)

static void train_opts(ddpm_opt *opts, train_flags *f, ddpm_model_flags *mf) {
    const ddpm_opt own[] = {
        {"--data", NULL, OPT_STRING, &f->data, 0, 0, "NAME", "mnist, fashion, a directory of IDX files, or a folder of images (default mnist)"},
        {"--data-dir", NULL, OPT_STRING, &f->data_dir, 0, 0, "DIR", "where to look for --data mnist first"},
        {"--steps", NULL, OPT_INT, &f->T, 2, 100000, "T", "diffusion timesteps (default 1000)"},
        {"--schedule", NULL, OPT_STRING, &f->schedule, 0, 0, "NAME", "linear, cosine, quadratic or sigmoid (default linear)"},
        {"--iters", NULL, OPT_INT, &f->iters, 1, 100000000, "N", "optimizer steps (default 2200: about 13 minutes on 2 cores)"},
        {"--batch", NULL, OPT_INT, &f->batch, 1, 4096, "N", "images per step (default 64)"},
        {"--lr", NULL, OPT_FLOAT, &f->lr, 1e-8, 1.0, "LR", "peak learning rate (default 1e-3)"},
        {"--warmup", NULL, OPT_INT, &f->warmup, 0, 100000000, "N", "linear LR warmup steps (default 200)"},
        {"--lr-decay", NULL, OPT_STRING, &f->lr_decay, 0, 0, "KIND", "cosine or constant after warmup (default cosine)"},
        {"--clip", NULL, OPT_FLOAT, &f->clip, 0.0, 1e6, "NORM", "clip the global gradient norm, 0 = off (default 1)"},
        {"--ema", NULL, OPT_FLOAT, &f->ema, 0.0, 0.999999, "DECAY", "EMA decay of the weights, 0 = off (default 0.999)"},
        {"--weight-decay", NULL, OPT_FLOAT, &f->weight_decay, 0.0, 1.0, "WD", "AdamW weight decay (default 0)"},
        {"--loss", NULL, OPT_STRING, &f->loss, 0, 0, "KIND", "l2, l1 or huber (default l2)"},
        {"--objective", NULL, OPT_STRING, &f->objective, 0, 0, "KIND", "what the network predicts: eps, v or x0 (default v)"},
        {"--snr-gamma", NULL, OPT_FLOAT, &f->snr_gamma, 0.0, 1e6, "G", "min-SNR-gamma loss weighting (Hang et al. 2023), 0 = off (default 5)"},
        {"--cond-drop", NULL, OPT_FLOAT, &f->cond_drop, 0.0, 1.0, "P", "with --classes: train unconditionally with probability P (default 0.1)"},
        {"--seed", NULL, OPT_U64, &f->seed, 0, 0, "N", "random seed (default 0)"},
        {"--threads", NULL, OPT_INT, &f->threads, 0, 1024, "N", "threads, 0 = all cores (default 0)"},
        {"--out", "-o", OPT_STRING, &f->out, 0, 0, "DIR", "output directory (default " DDPM_DEFAULT_RUN_DIR ")"},
        {"--ckpt-every", NULL, OPT_INT, &f->ckpt_every, 0, 100000000, "N", "write the checkpoint every N iterations (default 500)"},
        {"--sample-every", NULL, OPT_INT, &f->sample_every, 0, 100000000, "N", "write a sample grid every N iterations (default 0: at the end only)"},
        {"--scale", NULL, OPT_INT, &f->scale, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the sample grids' tiles S times (nearest neighbour; default 1)"},
        {"--eval-every", NULL, OPT_INT, &f->eval_every, 0, 100000000, "N", "ddpm eval's metrics every N iterations, in log.csv and fid.png (default 0: never)"},
        {"--eval-n", NULL, OPT_INT, &f->eval_n, 4, 100000, "N", "samples per evaluation (default 1000; ddim 50 steps)"},
        {"--log-every", NULL, OPT_INT, &f->log_every, 0, 100000000, "N", "log every N iterations (default: about 50 lines per run)"},
        {"--resume", NULL, OPT_FLAG, &f->resume, 0, 0, NULL, "continue the run in --out exactly where its checkpoint left off"},
        {"--stop-after", NULL, OPT_INT, &f->stop_after, 1, 100000000, "N", "stop (and save) after N iterations of this run; --resume continues"},
        {"--force", NULL, OPT_FLAG, &f->force, 0, 0, NULL, "start over even if --out holds a checkpoint"},
        {"--check-sync", NULL, OPT_INT, &f->check_sync, 0, 100000000, "N", "under mpirun: compare parameter checksums across ranks every N iterations (debug)"},
    };
    _Static_assert(sizeof own / sizeof *own + DDPM_FOLDER_OPTS == TRAIN_OPTS, "TRAIN_OPTS counts the table");
    memcpy(opts, own, sizeof own);
    ddpm_folder_opts(opts + TRAIN_OPTS - DDPM_FOLDER_OPTS, &f->ff);
    ddpm_model_opts(opts + TRAIN_OPTS, mf);
}

/* On --resume the checkpoint fixes the model and the training recipe. */
static int check_resume_flags(const ddpm_opt *opts) {
    static const char *fixed[] = {"--steps", "--schedule", "--batch", "--lr", "--warmup", "--lr-decay", "--clip",
                                  "--ema", "--weight-decay", "--loss", "--objective", "--snr-gamma", "--cond-drop", "--seed",
                                  "--alpha", "--crop", "--hflip", "--no-hflip"};
    for (int i = 0; i < NOPTS; i++) {
        bool recipe = i >= TRAIN_OPTS; /* a model flag */
        for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++) recipe |= !strcmp(opts[i].name, fixed[k]);
        if (opts[i].seen && recipe) {
            fprintf(stderr, "ddpm train: %s cannot be changed on --resume (the checkpoint fixes it)\n", opts[i].name);
            return 2;
        }
    }
    return 0;
}

/* A fresh run: the model flags form a valid config, the warmup fits. */
static int check_new_run(train_flags *f, ddpm_opt *opts, ddpm_model_flags *mf) {
    ddpm_unet_config c;
    ddpm_unet_config_default(&c);
    ddpm_model_flags_preset(mf, opts + NOPTS - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS, false);
    ddpm_model_flags_apply(mf, &c);
    if (ddpm_unet_config_validate(&c)) { /* checked against the data again once it is loaded */
        ddpm_cli_error(CMD);
        return 2;
    }
    if (!ddpm_opts_seen(opts, NOPTS, "--warmup") && f->warmup >= f->iters) f->warmup = f->iters / 10;
    if (f->warmup >= f->iters && f->warmup > 0) {
        fprintf(stderr, "ddpm train: --warmup %d must be smaller than --iters %d\n", f->warmup, f->iters);
        return 2;
    }
    return 0;
}

static int check_names(const train_flags *f) {
    if (ddpm_schedule_parse(f->schedule) < 0) {
        fprintf(stderr, "ddpm train: unknown --schedule '%s' (linear, cosine, quadratic, sigmoid)\n", f->schedule);
        return 2;
    }
    if (ddpm_loss_parse(f->loss) < 0) {
        fprintf(stderr, "ddpm train: unknown --loss '%s' (l2, l1, huber)\n", f->loss);
        return 2;
    }
    if (ddpm_objective_parse(f->objective) < 0) {
        fprintf(stderr, "ddpm train: unknown --objective '%s' (eps, v, x0)\n", f->objective);
        return 2;
    }
    if (ddpm_lr_decay_parse(f->lr_decay) < 0) {
        fprintf(stderr, "ddpm train: unknown --lr-decay '%s' (cosine, constant)\n", f->lr_decay);
        return 2;
    }
    if (f->resume && f->force) {
        fprintf(stderr, "ddpm train: --resume and --force contradict each other\n");
        return 2;
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    ddpm_train_config d;
    ddpm_train_config_default(&d);
    ddpm_model_flags mf;
    ddpm_model_flags_init(&mf, &d.model);
    train_flags f = {.data = "mnist", .out = DDPM_DEFAULT_RUN_DIR, .schedule = "linear", .loss = "l2", .objective = ddpm_objective_name(d.objective),
                     .lr_decay = "cosine", .T = d.T, .batch = d.batch, .iters = (int)d.iters, .warmup = (int)d.warmup,
                     .lr = d.lr, .clip = d.clip, .ema = d.ema_decay, .weight_decay = d.weight_decay,
                     .cond_drop = d.cond_drop, .snr_gamma = d.snr_gamma, .seed = d.seed, .ckpt_every = 500, .sample_every = 0, .eval_n = 1000, .scale = 1};
    ddpm_folder_flags_init(&f.ff);
    ddpm_opt opts[NOPTS];
    train_opts(opts, &f, &mf);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, NOPTS,
                             "usage: ddpm train [options]\n\n"
                             "Train a UNet noise predictor (DDPM, L_simple) on an image dataset.",
                             "Writes OUT/ckpt.safetensors, OUT/log.csv, OUT/loss.png and OUT/samples.png.\n"
                             "--steps is the number of diffusion timesteps T; --iters the number of optimizer steps.\n"
                             "Ctrl-C or SIGTERM finishes the current iteration, writes the checkpoint and exits.\n"
                             "A second train on the same --out fails while this one runs (OUT/.lock).");
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = check_names(&f)) || (rc = ddpm_folder_flags_check(CMD, &f.ff))) return rc;
    if ((rc = f.resume ? check_resume_flags(opts) : check_new_run(&f, opts, &mf))) return rc;
    if (ddpm_dist_init(NULL, NULL)) {
        ddpm_cli_error(CMD);
        return 1;
    }
    rc = run(&f, opts, NOPTS, &mf);
    ddpm_dist_finalize();
    return rc;
}

const ddpm_cli_command ddpm_cmd_train = {"train", cmd_train, "train a diffusion model on MNIST or any IDX dataset"};
