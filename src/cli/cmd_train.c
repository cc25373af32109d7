/* cmd_train.c: `ddpm train`: train a UNet noise predictor on an IDX dataset.
 *
 * Writes into --out DIR: ckpt.safetensors (model, EMA, Adam moments, all
 * state needed to --resume exactly), log.csv (one row per logged
 * iteration), loss.png (the loss curve), samples.png (a grid from the EMA
 * weights at the end) and samples_NNNNNN.png every --sample-every.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "folder.h"
#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "ddpm/image.h"
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



/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return -1;
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- sampling a grid from the EMA weights ------------------------------------------ */

typedef struct {
    ddpm_unet *model;
    const int *labels;
} eps_ctx;

static ddpm_status eps_fn(void *p, float *eps, const float *x, const int *t, int N) {
    eps_ctx *c = p;
    return ddpm_unet_forward(c->model, eps, x, t, c->labels, N);
}

/* 16 samples with DDIM (50 steps, eta 0) from fixed noise: the same seed every
 * time, so successive grids show the model improving, not new noise. */
static ddpm_status write_sample_grid(ddpm_trainer *tr, ddpm_unet *inf, const char *path) {
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    const int n = 16;
    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    memcpy(ddpm_unet_params(inf), ddpm_trainer_ema(tr), ddpm_unet_num_params(inf) * sizeof(float));
    float *x = ddpm_malloc(n * D * sizeof(float)), *work = ddpm_malloc(ddpm_sample_loop_workspace(n, D) * sizeof(float));
    int labels[16];
    for (int i = 0; i < n; i++) labels[i] = c->model.num_classes > 0 ? i % c->model.num_classes : 0;
    ddpm_status s = DDPM_ERR_NOMEM;
    if (x && work) {
        ddpm_rng rng;
        ddpm_rng_seed(&rng, 1234);
        ddpm_rng_fill_normal(&rng, x, n * D);
        ddpm_sampler_opts o = {.kind = DDPM_SAMPLER_DDIM, .steps = c->T < 50 ? c->T : 50, .eta = 0.0f, .var = DDPM_VAR_SMALL};
        eps_ctx ctx = {inf, c->model.num_classes > 0 ? labels : NULL};
        s = ddpm_sample_loop(x, n, D, ddpm_trainer_schedule(tr), &o, eps_fn, &ctx, &rng, work, NULL, NULL);
        if (!s) s = ddpm_image_write_grid(path, x, n, c->model.in_ch, c->model.res, c->model.res, 4, -1.0f, 1.0f);
    }
    ddpm_free(x);
    ddpm_free(work);
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
static ddpm_status log_open(train_log *L, const char *dir, int64_t step, int64_t iters) {
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
        fprintf(out, "iter,loss,lr,grad_norm,img_per_s,elapsed_s\n");
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
        if (L->f) fprintf(L->f, "iter,loss,lr,grad_norm,img_per_s,elapsed_s\n");
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

/* ---- the command ------------------------------------------------------------------------ */

typedef struct {
    const char *data, *data_dir, *out, *schedule, *loss, *lr_decay;
    int T, batch, threads, ckpt_every, sample_every, log_every, iters, warmup, stop_after;
    float lr, clip, ema, weight_decay, cond_drop;
    uint64_t seed;
    bool resume, force;
    ddpm_folder_flags ff;
} train_flags;

static const char *resume_meta(void *tr, const char *key) { return ddpm_trainer_resume_meta(tr, key); }

/* Besides the trainer's state: where the data is and where in it we are. */
static ddpm_status save_checkpoint(ddpm_trainer *tr, const ddpm_sampler_order *order, const char *data_dir,
                                   const ddpm_cli_data *ds, const char *path) {
    char v[3][32];
    snprintf(v[0], sizeof v[0], "%" PRIu64, order->seed);
    snprintf(v[1], sizeof v[1], "%" PRIu32, order->epoch);
    snprintf(v[2], sizeof v[2], "%d", order->pos);
    ddpm_st_meta extra[8] = {{"data_seed", v[0]}, {"data_epoch", v[1]}, {"data_pos", v[2]}, {"data", data_dir}};
    int nd;
    ddpm_cli_data_meta(ds, extra + 4, &nd);
    return ddpm_trainer_save(tr, path, extra, 4 + nd);
}

static int run(train_flags *f, ddpm_opt *opts, int nopts, ddpm_model_flags *mf) {
    char dir[1024], ckpt[1100], path[1100];
    int rc = 1;
    ddpm_cli_data ds = {0};
    ddpm_sampler_order order = {0};
    ddpm_trainer *tr = NULL;
    ddpm_unet *inf = NULL;
    train_log L = {0};
    float *x0 = NULL;
    int *idx = NULL, *labels = NULL;

    int threads = ddpm_cli_threads(f->threads);
    snprintf(ckpt, sizeof ckpt, "%s/%s", f->out, DDPM_CKPT_FILE);
    if (!f->resume && !f->force && file_exists(ckpt)) {
        fprintf(stderr, "ddpm train: '%s' already exists; pass --resume to continue that run, "
                        "--force to start over, or --out DIR for a new one\n", ckpt);
        return 1;
    }
    if (f->resume && !file_exists(ckpt)) {
        fprintf(stderr, "ddpm train: cannot resume: '%s' does not exist\n", ckpt);
        return 1;
    }

    /* model and trainer; on --resume the data defaults to the run's own */
    bool data_given = ddpm_opts_seen(opts, nopts, "--data") || ddpm_opts_seen(opts, nopts, "--data-dir");
    if (f->resume) {
        if (ddpm_trainer_resume(&tr, ckpt, ddpm_opts_seen(opts, nopts, "--iters") ? f->iters : 0)) goto fail;
        const char *d = ddpm_trainer_resume_meta(tr, "data");
        if (!data_given && d) f->data = d;
    }
    if (ddpm_data_resolve(dir, sizeof dir, f->data, f->data_dir)) goto fail;
    if (f->resume) ddpm_folder_flags_from_meta(&f->ff, resume_meta, tr);
    const ddpm_unet_config *rm = tr ? &ddpm_trainer_config(tr)->model : NULL;
    int want_size = rm ? rm->res : ddpm_opts_seen(opts, nopts, "--size") ? mf->res : 0;
    int want_ch = rm ? rm->in_ch : ddpm_opts_seen(opts, nopts, "--channels") ? mf->in_ch : 0;
    if ((rc = ddpm_cli_data_load(CMD, &ds, dir, &f->ff, want_size, want_ch, rm ? ddpm_trainer_config(tr)->seed : f->seed))) goto done;
    rc = 1;
    if (!f->resume) {
        ddpm_train_config c;
        ddpm_train_config_default(&c);
        if (ds.folder) { /* the folder fixes the size: its preset, unless flags say otherwise */
            mf->in_ch = ds.c, mf->res = ds.h;
            ddpm_model_flags_preset(mf, opts + nopts - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS, true);
        }
        ddpm_model_flags_apply(mf, &c.model);
        if (!ddpm_opts_seen(opts, nopts, "--channels")) c.model.in_ch = ds.c;
        if (!ddpm_opts_seen(opts, nopts, "--size")) c.model.res = ds.h;
        c.schedule = (ddpm_schedule_kind)ddpm_schedule_parse(f->schedule);
        c.loss = (ddpm_loss_kind)ddpm_loss_parse(f->loss);
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
        if (ddpm_trainer_create(&tr, &c)) goto fail;
    }
    const ddpm_train_config *c = ddpm_trainer_config(tr);
    if (c->model.in_ch != ds.c || c->model.res != ds.h || ds.h != ds.w) {
        fprintf(stderr, "ddpm train: the model takes %dx%dx%d images, the data in '%s' is %dx%dx%d\n", c->model.in_ch,
                c->model.res, c->model.res, dir, ds.c, ds.h, ds.w);
        goto done;
    }
    if (c->model.num_classes > 0 && c->model.num_classes < ds.num_classes) {
        fprintf(stderr, "ddpm train: --classes %d, but the labels in '%s' go up to %d\n", c->model.num_classes, dir,
                ds.num_classes - 1);
        goto done;
    }
    if (c->model.num_classes > 0 && ddpm_cli_data_check_labels(CMD, &ds, dir)) goto done;
    if (ddpm_unet_create(&inf, &c->model, 16, false)) goto fail;

    /* data order: a fixed function of the seed, continued on resume */
    int64_t step0 = ddpm_trainer_step_count(tr);
    if (f->resume) {
        const char *s1 = ddpm_trainer_resume_meta(tr, "data_seed"), *s2 = ddpm_trainer_resume_meta(tr, "data_epoch"),
                   *s3 = ddpm_trainer_resume_meta(tr, "data_pos");
        if (!s1 || !s2 || !s3) {
            fprintf(stderr, "ddpm train: '%s' lacks the data-order state (data_seed, data_epoch, data_pos)\n", ckpt);
            goto done;
        }
        long long pos = strtoll(s3, NULL, 10);
        if (pos < 0 || pos > ds.n ||
            ddpm_sampler_resume(&order, ds.n, strtoull(s1, NULL, 10), (uint32_t)strtoul(s2, NULL, 10), (int)pos))
            goto fail;
    } else {
        ddpm_rng r;
        ddpm_rng_seed(&r, c->seed ^ 0x5eed0da7aULL);
        if (ddpm_sampler_init(&order, ds.n, ddpm_rng_u64(&r))) goto fail;
    }

    if (make_dirs(f->out)) {
        fprintf(stderr, "ddpm train: cannot create '%s': %s\n", f->out, strerror(errno));
        goto done;
    }
    if (log_open(&L, f->out, step0, c->iters)) goto fail;

    size_t D = (size_t)c->model.in_ch * c->model.res * c->model.res;
    x0 = ddpm_malloc((size_t)c->batch * D * sizeof(float));
    idx = malloc((size_t)c->batch * sizeof *idx);
    labels = malloc((size_t)c->batch * sizeof *labels);
    if (!x0 || !idx || !labels) {
        fprintf(stderr, "ddpm train: out of memory\n");
        goto done;
    }

    size_t np = ddpm_unet_num_params(ddpm_trainer_model(tr));
    fprintf(stderr,
            "ddpm train: %s: %d images %dx%dx%d; model %zu parameters; T=%d %s; batch %d; %" PRId64
            " iterations%s; %d threads\n",
            dir, ds.n, ds.c, ds.h, ds.w, np, c->T, ddpm_schedule_name(c->schedule), c->batch, c->iters,
            step0 ? " (resumed)" : "", threads);
    if (step0 >= c->iters) fprintf(stderr, "ddpm train: the checkpoint is already at iteration %" PRId64 "\n", step0);

    install_handlers();
    bool tty = ddpm_cli_tty();
    int log_every = f->log_every > 0 ? f->log_every : (int)(c->iters / 50 > 0 ? (c->iters / 50 < 100 ? c->iters / 50 : 100) : 1);
    double t0 = ddpm_cli_now(), t_last = t0, smooth = NAN, ips = 0;
    int64_t it_last = step0;
    bool want_labels = c->model.num_classes > 0;
    int64_t stop_at = f->stop_after > 0 && step0 + f->stop_after < c->iters ? step0 + f->stop_after : c->iters;
    /* test hook: poison the batch of this iteration to exercise the
     * non-finite-loss path (like git's GIT_TEST_* variables) */
    const char *nan_env = getenv("DDPM_TEST_NAN_AT");
    int64_t nan_at = nan_env ? strtoll(nan_env, NULL, 10) : -1;

    while (ddpm_trainer_step_count(tr) < stop_at && !g_stop) {
        ddpm_sampler_next_batch(&order, idx, c->batch);
        ddpm_cli_data_batch(&ds, x0, want_labels ? labels : NULL, idx, c->batch, ddpm_trainer_step_count(tr));
        if (ddpm_trainer_step_count(tr) + 1 == nan_at) x0[0] = NAN;
        ddpm_train_stats st;
        if (ddpm_trainer_step(tr, x0, want_labels ? labels : NULL, &st)) {
            if (tty) fputc('\n', stderr);
            ddpm_cli_error(CMD);
            fprintf(stderr, "ddpm train: stopped; the last checkpoint '%s' is untouched (try a lower --lr)\n", ckpt);
            goto done;
        }
        int64_t it = ddpm_trainer_step_count(tr);
        if (it - 1 < L.cap) {
            L.loss[it - 1] = (float)st.loss;
            L.n = it;
        }
        smooth = isnan(smooth) ? st.loss : 0.98 * smooth + 0.02 * st.loss;
        bool last = it == stop_at;
        if (it % log_every == 0 || last) {
            double t = ddpm_cli_now();
            ips = (double)(it - it_last) * c->batch / (t - t_last);
            t_last = t;
            it_last = it;
            double elapsed = t - t0;
            fprintf(L.f, "%" PRId64 ",%.6f,%.6g,%.4f,%.1f,%.1f\n", it, st.loss, (double)st.lr, st.grad_norm, ips, elapsed);
            fflush(L.f);
            char eta[32], el[32];
            ddpm_cli_fmt_duration(eta, sizeof eta, (double)(c->iters - it) * c->batch / ips);
            ddpm_cli_fmt_duration(el, sizeof el, elapsed);
            fprintf(stderr, "%siter %" PRId64 "/%" PRId64 "  loss %.4f  lr %.2e  grad %.3f  %.0f img/s  %s elapsed  ETA %s%s",
                    tty ? "\r\033[K" : "", it, c->iters, smooth, (double)st.lr, st.grad_norm, ips, el, eta,
                    tty ? "" : "\n");
            fflush(stderr);
        }
        if (f->ckpt_every > 0 && it % f->ckpt_every == 0 && !last) {
            if (save_checkpoint(tr, &order, dir, &ds, ckpt)) goto fail_nl;
            write_loss_plot(&L, f->out);
        }
        if (f->sample_every > 0 && it % f->sample_every == 0) {
            snprintf(path, sizeof path, "%s/samples_%06" PRId64 ".png", f->out, it);
            if (write_sample_grid(tr, inf, path)) goto fail_nl;
        }
    }
    if (tty) fputc('\n', stderr);

    int64_t it = ddpm_trainer_step_count(tr);
    if (save_checkpoint(tr, &order, dir, &ds, ckpt)) goto fail;
    if (write_loss_plot(&L, f->out)) goto fail;
    if (g_stop) {
        fprintf(stderr, "ddpm train: %s at iteration %" PRId64 "; checkpoint saved to '%s' (continue with --resume)\n",
                g_stop == SIGINT ? "interrupted" : "terminated", it, ckpt);
        rc = 128 + g_stop;
        goto done;
    }
    if (it < c->iters) {
        printf("stopped after %" PRId64 " iterations (--stop-after) at iteration %" PRId64 " of %" PRId64
               "; checkpoint saved to '%s' (continue with --resume)\n", it - step0, it, c->iters, ckpt);
        rc = 0;
        goto done;
    }
    snprintf(path, sizeof path, "%s/samples.png", f->out);
    if (write_sample_grid(tr, inf, path)) goto fail;
    char el[32];
    ddpm_cli_fmt_duration(el, sizeof el, ddpm_cli_now() - t0);
    printf("trained %" PRId64 " iterations in %s; final loss %.4f (smoothed)\n", it - step0, el, smooth);
    printf("wrote %s, %s/log.csv, %s/loss.png, %s\n", ckpt, f->out, f->out, path);
    rc = 0;
    goto done;
fail_nl:
    if (tty) fputc('\n', stderr);
fail:
    ddpm_cli_error(CMD);
done:
    log_close(&L);
    ddpm_free(x0);
    free(idx);
    free(labels);
    ddpm_unet_free(inf);
    ddpm_trainer_free(tr);
    ddpm_sampler_free(&order);
    ddpm_cli_data_free(&ds);
    return rc;
}

static int cmd_train(int argc, char **argv) {
    ddpm_train_config d;
    ddpm_train_config_default(&d);
    ddpm_model_flags mf;
    ddpm_model_flags_init(&mf, &d.model);
    train_flags f = {.data = "mnist", .out = DDPM_DEFAULT_RUN_DIR, .schedule = "linear", .loss = "l2",
                     .lr_decay = "cosine", .T = d.T, .batch = d.batch, .iters = (int)d.iters, .warmup = (int)d.warmup,
                     .lr = d.lr, .clip = d.clip, .ema = d.ema_decay, .weight_decay = d.weight_decay,
                     .cond_drop = d.cond_drop, .seed = d.seed, .ckpt_every = 500, .sample_every = 0};
    ddpm_folder_flags_init(&f.ff);
    ddpm_opt opts[40] = {
        {"--data", NULL, OPT_STRING, &f.data, 0, 0, "NAME", "mnist, fashion, a directory of IDX files, or a folder of images (default mnist)"},
        {"--data-dir", NULL, OPT_STRING, &f.data_dir, 0, 0, "DIR", "where to look for --data mnist first"},
        {"--steps", NULL, OPT_INT, &f.T, 2, 100000, "T", "diffusion timesteps (default 1000)"},
        {"--schedule", NULL, OPT_STRING, &f.schedule, 0, 0, "NAME", "linear, cosine, quadratic or sigmoid (default linear)"},
        {"--iters", NULL, OPT_INT, &f.iters, 1, 100000000, "N", "optimizer steps (default 1400: about 20 minutes on 2 cores)"},
        {"--batch", NULL, OPT_INT, &f.batch, 1, 4096, "N", "images per step (default 64)"},
        {"--lr", NULL, OPT_FLOAT, &f.lr, 1e-8, 1.0, "LR", "peak learning rate (default 1e-3)"},
        {"--warmup", NULL, OPT_INT, &f.warmup, 0, 100000000, "N", "linear LR warmup steps (default 200)"},
        {"--lr-decay", NULL, OPT_STRING, &f.lr_decay, 0, 0, "KIND", "cosine or constant after warmup (default cosine)"},
        {"--clip", NULL, OPT_FLOAT, &f.clip, 0.0, 1e6, "NORM", "clip the global gradient norm, 0 = off (default 1)"},
        {"--ema", NULL, OPT_FLOAT, &f.ema, 0.0, 0.999999, "DECAY", "EMA decay of the weights, 0 = off (default 0.999)"},
        {"--weight-decay", NULL, OPT_FLOAT, &f.weight_decay, 0.0, 1.0, "WD", "AdamW weight decay (default 0)"},
        {"--loss", NULL, OPT_STRING, &f.loss, 0, 0, "KIND", "l2, l1 or huber (default l2)"},
        {"--cond-drop", NULL, OPT_FLOAT, &f.cond_drop, 0.0, 1.0, "P", "with --classes: train unconditionally with probability P (default 0.1)"},
        {"--seed", NULL, OPT_U64, &f.seed, 0, 0, "N", "random seed (default 0)"},
        {"--threads", NULL, OPT_INT, &f.threads, 0, 1024, "N", "threads, 0 = all cores (default 0)"},
        {"--out", "-o", OPT_STRING, &f.out, 0, 0, "DIR", "output directory (default " DDPM_DEFAULT_RUN_DIR ")"},
        {"--ckpt-every", NULL, OPT_INT, &f.ckpt_every, 0, 100000000, "N", "write the checkpoint every N iterations (default 500)"},
        {"--sample-every", NULL, OPT_INT, &f.sample_every, 0, 100000000, "N", "write a sample grid every N iterations (default 0: at the end only)"},
        {"--log-every", NULL, OPT_INT, &f.log_every, 0, 100000000, "N", "log every N iterations (default: about 50 lines per run)"},
        {"--resume", NULL, OPT_FLAG, &f.resume, 0, 0, NULL, "continue the run in --out exactly where its checkpoint left off"},
        {"--stop-after", NULL, OPT_INT, &f.stop_after, 1, 100000000, "N", "stop (and save) after N iterations of this run; --resume continues"},
        {"--force", NULL, OPT_FLAG, &f.force, 0, 0, NULL, "start over even if --out holds a checkpoint"},
    };
    int n = 23;
    ddpm_folder_opts(opts + n, &f.ff);
    n += DDPM_FOLDER_OPTS;
    ddpm_model_opts(opts + n, &mf);
    n += DDPM_MODEL_OPTS;
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, n,
                             "usage: ddpm train [options]\n\n"
                             "Train a UNet noise predictor (DDPM, L_simple) on an image dataset.",
                             "Writes OUT/ckpt.safetensors, OUT/log.csv, OUT/loss.png and OUT/samples.png.\n"
                             "--steps is the number of diffusion timesteps T; --iters the number of optimizer steps.\n"
                             "Ctrl-C finishes the current iteration, writes the checkpoint and exits.");
    if (rc) return rc == 1 ? 0 : rc;
    if (ddpm_schedule_parse(f.schedule) < 0) {
        fprintf(stderr, "ddpm train: unknown --schedule '%s' (linear, cosine, quadratic, sigmoid)\n", f.schedule);
        return 2;
    }
    if (ddpm_loss_parse(f.loss) < 0) {
        fprintf(stderr, "ddpm train: unknown --loss '%s' (l2, l1, huber)\n", f.loss);
        return 2;
    }
    if (ddpm_lr_decay_parse(f.lr_decay) < 0) {
        fprintf(stderr, "ddpm train: unknown --lr-decay '%s' (cosine, constant)\n", f.lr_decay);
        return 2;
    }
    if ((rc = ddpm_folder_flags_check(CMD, &f.ff))) return rc;
    if (f.resume && f.force) {
        fprintf(stderr, "ddpm train: --resume and --force contradict each other\n");
        return 2;
    }
    if (f.resume) {
        /* the checkpoint fixes the model and the training recipe */
        static const char *fixed[] = {"--steps", "--schedule", "--batch", "--lr", "--warmup", "--lr-decay", "--clip",
                                      "--ema", "--weight-decay", "--loss", "--cond-drop", "--seed",
                                      "--alpha", "--crop", "--hflip", "--no-hflip"};
        for (int i = 0; i < n; i++) {
            bool model_flag = i >= n - DDPM_MODEL_OPTS;
            bool recipe = false;
            for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++) recipe |= !strcmp(opts[i].name, fixed[k]);
            if (opts[i].seen && (model_flag || recipe)) {
                fprintf(stderr, "ddpm train: %s cannot be changed on --resume (the checkpoint fixes it)\n", opts[i].name);
                return 2;
            }
        }
    } else {
        ddpm_unet_config c;
        ddpm_unet_config_default(&c);
        ddpm_model_flags_preset(&mf, opts + n - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS, false);
        ddpm_model_flags_apply(&mf, &c);
        if (ddpm_unet_config_validate(&c)) { /* checked against the data again once it is loaded */
            ddpm_cli_error(CMD);
            return 2;
        }
        if (!ddpm_opts_seen(opts, n, "--warmup") && f.warmup >= f.iters) f.warmup = f.iters / 10;
        if (f.warmup >= f.iters && f.warmup > 0) {
            fprintf(stderr, "ddpm train: --warmup %d must be smaller than --iters %d\n", f.warmup, f.iters);
            return 2;
        }
    }
    return run(&f, opts, n, &mf);
}

const ddpm_cli_command ddpm_cmd_train = {"train", cmd_train, "train a diffusion model on MNIST or any IDX dataset"};
