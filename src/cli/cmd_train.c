/* cmd_train.c: `ddpm train`: flags, the data front (datasource.h), the
 * trainer (train.h) and the run directory (run.h), then what happened. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ddpm/datasource.h"
#include "ddpm/image.h"
#include "ddpm/run.h"

static const char *CMD = "train";
static volatile sig_atomic_t g_stop; /* the signal that asked to stop */
static void on_signal(int sig) { g_stop = sig; }

/* The flags: most land in the library's option structs directly. */
typedef struct {
    ddpm_train_config c;
    ddpm_data_opts d;
    ddpm_run_opts r;
    const char *schedule, *loss, *lr_decay, *objective, *alpha, *crop, *precision, *sampler;
    int iters, warmup, threads, stop_after, check_sync;
    bool resume, force, hflip, no_hflip;
} train_flags;

/* What a run holds, released at the end. */
typedef struct {
    ddpm_run_lock lock;
    ddpm_data d;
    ddpm_trainer *tr;
    ddpm_run *run;
    int threads;
    int64_t nan_at;       /* DDPM_TEST_NAN_AT: poison this iteration's batch (tests) */
    char cmdline[2048];
} train_state;

/* The data front's batch hook, then the test hook that poisons the batch of
 * iteration DDPM_TEST_NAN_AT (the non-finite-loss path, like git's GIT_TEST_*). */
static void poison_hook(void *ctx, float *x0, int *labels, const int *idx, int n, int64_t iter) {
    train_state *s = ctx;
    ddpm_data_augment(&s->d, x0, labels, idx, n, iter);
    if (iter == s->nan_at) x0[0] = NAN;
}

static ddpm_status make_trainer(ddpm_trainer **tr, train_flags *f, ddpm_opt *opts, int nopts, const ddpm_data *d) {
    ddpm_train_config c = f->c;
    c.schedule = (ddpm_schedule_kind)ddpm_schedule_parse(f->schedule);
    c.loss = (ddpm_loss_kind)ddpm_loss_parse(f->loss);
    c.objective = (ddpm_objective)ddpm_objective_parse(f->objective);
    c.decay = (ddpm_lr_decay)ddpm_lr_decay_parse(f->lr_decay);
    c.precision = (ddpm_precision)ddpm_precision_parse(f->precision);
    c.sampler = (ddpm_sampler_kind)ddpm_sampler_parse(f->sampler);
    c.iters = f->iters;
    c.warmup = f->warmup < 0 ? ddpm_train_default_warmup(c.iters) : f->warmup;
#define SET(flag) ddpm_opts_seen(opts, nopts, flag)
    if (d->folder) { /* the folder fixes the size, the size its recipe and preset: for what flags left alone */
        ddpm_train_fixed k = {SET("--steps"), SET("--schedule"), SET("--objective"), SET("--snr-gamma"), SET("--batch"),
                              SET("--iters"), SET("--lr"), SET("--ema"), SET("--ema-gamma"), SET("--sampler"),
                              SET("--sample-steps"), SET("--warmup")};
        ddpm_train_take_recipe(&c, d->c, d->h, &k);
        c.model.in_ch = d->c, c.model.res = d->h;
        ddpm_model_flags_preset(&c.model, opts + nopts - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS, true);
    }
    if (!SET("--channels")) c.model.in_ch = d->c;
    if (!SET("--size")) c.model.res = d->h;
#undef SET
    return ddpm_trainer_create(tr, &c);
}

/* Lock and overwrite guard, trainer, data, run directory. Returns 0, or -1
 * when the library's message is to be printed. */
static int setup(train_state *s, train_flags *f, ddpm_opt *opts, int nopts) {
    ddpm_data_opts *o = &f->d;
    s->threads = ddpm_set_threads(f->threads);
    if (ddpm_dist_rank() == 0 && ddpm_run_lock_guard(&s->lock, f->r.dir, f->resume, f->force)) return -1;
    o->env_dir = getenv("DDPM_DATA_DIR");
    o->alpha = (ddpm_alpha_mode)ddpm_alpha_parse(f->alpha);
    o->crop = (ddpm_crop_mode)ddpm_crop_parse(f->crop);
    o->hflip = f->no_hflip ? 0 : f->hflip ? 1 : -1;
    o->log = stderr, o->prefix = "ddpm train: ";
    if (f->resume) { /* the checkpoint fixes the model and how the data is read; the data defaults to the run's */
        char ckpt[1100];
        snprintf(ckpt, sizeof ckpt, "%s/%s", f->r.dir, DDPM_RUN_CKPT);
        if (ddpm_trainer_resume(&s->tr, ckpt, ddpm_opts_seen(opts, nopts, "--iters") ? f->iters : 0)) return -1;
        const char *name = ddpm_trainer_data_name(s->tr);
        if (!ddpm_opts_seen(opts, nopts, "--data") && !ddpm_opts_seen(opts, nopts, "--data-dir") && name) o->data = name;
        ddpm_data_opts_from_trainer(o, s->tr);
    }
    const ddpm_unet_config *rm = s->tr ? &ddpm_trainer_config(s->tr)->model : NULL;
    o->size = rm ? rm->res : ddpm_opts_seen(opts, nopts, "--size") ? f->c.model.res : 0;
    o->channels = rm ? rm->in_ch : ddpm_opts_seen(opts, nopts, "--channels") ? f->c.model.in_ch : 0;
    o->seed = s->tr ? ddpm_trainer_config(s->tr)->seed : f->c.seed;
    if (ddpm_data_open(&s->d, o)) return -1;
    if (ddpm_dist_rank() == 0) ddpm_data_print_report(&s->d, stderr, "ddpm train: ");
    if (!f->resume && make_trainer(&s->tr, f, opts, nopts, &s->d)) return -1;
    if (ddpm_data_attach(&s->d, s->tr)) return -1;
    ddpm_trainer_set_check_sync(s->tr, f->check_sync);
    const char *nan_env = getenv("DDPM_TEST_NAN_AT");
    if ((s->nan_at = nan_env ? strtoll(nan_env, NULL, 10) : -1) >= 0) ddpm_trainer_set_batch_hook(s->tr, poison_hook, s);
    ddpm_run_opts *ro = &f->r;
    ro->stop_after = f->stop_after, ro->eval_data = s->d.dir, ro->progress = stderr, ro->stop = &g_stop,
    ro->command = s->cmdline, ro->threads = s->threads, ro->lock = &s->lock, ro->eval_alpha = s->d.alpha;
    return ddpm_run_open(&s->run, s->tr, ro) ? -1 : 0;
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

/* What the run did, in words; the exit code. */
static int report(ddpm_status s, const ddpm_run_result *r, bool lead) {
    if (s == DDPM_ERR_NUMERIC) { /* the same on every rank: rank 0 reports it */
        if (!lead) return 1;
        ddpm_cli_error(CMD);
        fprintf(stderr, "ddpm train: stopped; the last checkpoint '%s' is untouched (try a lower --lr)\n", r->ckpt);
        return 1;
    }
    if (s) { /* a failure on one rank (rank 0's disk) ends them all */
        ddpm_cli_error(CMD);
        return ddpm_dist_abort(1), 1;
    }
    if (!lead) return g_stop ? 128 + g_stop : 0;
    if (ddpm_dist_size() > 1 && r->iter > r->step0)
        fprintf(stderr, "ddpm train: %d ranks; summing the gradients across ranks took %.1f ms per iteration\n",
                ddpm_dist_size(), 1e3 * r->comm_s / (double)(r->iter - r->step0));
    if (g_stop) {
        fprintf(stderr, "ddpm train: %s at iteration %" PRId64 "; checkpoint saved to '%s' (continue with --resume)\n",
                g_stop == SIGINT ? "interrupted" : "terminated", r->iter, r->ckpt);
        return 128 + g_stop;
    }
    if (!r->finished) {
        printf("stopped after %" PRId64 " iterations (--stop-after) at iteration %" PRId64 " of %" PRId64
               "; checkpoint saved to '%s' (continue with --resume)\n", r->iter - r->step0, r->iter, r->iters, r->ckpt);
        return 0;
    }
    char el[32];
    ddpm_fmt_duration(el, sizeof el, r->wall_s);
    printf("trained %" PRId64 " iterations in %s; final loss %.4f (smoothed)\n", r->iter - r->step0, el, r->loss_smooth);
    printf("wrote %s, %s/{log.csv,loss.png,run.txt}, %s\n", r->ckpt, r->dir, r->grid);
    return 0;
}

static int run(train_flags *f, ddpm_opt *opts, int nopts, int argc, char **argv) {
    train_state s = {.lock = {.fd = -1}};
    bool lead = ddpm_dist_rank() == 0;
    ddpm_cli_command_line(s.cmdline, sizeof s.cmdline, argc, argv);
    int rc = agree(setup(&s, f, opts, nopts), lead);
    if (!rc) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        ddpm_run_result r;
        rc = report(ddpm_run_train(s.run, &r), &r, lead);
    }
    ddpm_run_free(s.run);
    ddpm_trainer_free(s.tr);
    ddpm_data_close(&s.d);
    ddpm_run_lock_release(&s.lock);
    return rc;
}

/* The flags train takes, then the DDPM_MODEL_OPTS model flags. */
#define TRAIN_OPTS 39
#define NOPTS (TRAIN_OPTS + DDPM_MODEL_OPTS)

static void train_opts(ddpm_opt *opts, train_flags *f) {
    const ddpm_opt own[] = {
        {"--data", NULL, OPT_STRING, &f->d.data, 0, 0, "NAME", "mnist, fashion, a directory of IDX files, or a folder of images (default mnist)"},
        {"--data-dir", NULL, OPT_STRING, &f->d.data_dir, 0, 0, "DIR", "where to look for --data mnist first"},
        {"--steps", NULL, OPT_INT, &f->c.T, 2, 100000, "T", "diffusion timesteps (default 1000)"},
        {"--schedule", NULL, OPT_STRING, &f->schedule, 0, 0, "NAME", "linear, cosine, quadratic or sigmoid (default linear)"},
        {"--iters", NULL, OPT_INT, &f->iters, 1, 100000000, "N", "optimizer steps (default 9370; 9000 at 32 px, 2200 at 64 px)"},
        {"--batch", NULL, OPT_INT, &f->c.batch, 1, 4096, "N", "images per step (default 32; 64 at 64 px)"},
        {"--lr", NULL, OPT_FLOAT, &f->c.lr, 1e-8, 1.0, "LR", "peak learning rate (default 1e-3)"},
        {"--warmup", NULL, OPT_INT, &f->warmup, 0, 100000000, "N", "linear LR warmup steps (default 9 % of --iters)"},
        {"--lr-decay", NULL, OPT_STRING, &f->lr_decay, 0, 0, "KIND", "cosine or constant after warmup (default cosine)"},
        {"--precision", NULL, OPT_STRING, &f->precision, 0, 0, "P", "the UNet's products: fp32, or bf16 with fp32 accumulation (default bf16 where the CPU has AVX512_BF16, else fp32)"},
        {"--clip", NULL, OPT_FLOAT, &f->c.clip, 0.0, 1e6, "NORM", "clip the global gradient norm, 0 = off (default 1)"},
        {"--ema", NULL, OPT_FLOAT, &f->c.ema_decay, 0.0, 0.999999, "DECAY", "EMA decay of the weights, 0 = off (default 0.999)"},
        {"--ema-gamma", NULL, OPT_FLOAT, &f->c.ema_gamma, 0.0, 1000.0, "G", "power-function EMA, decay (1-1/k)^(G+1) at step k, instead of --ema's (default 0: off)"},
        {"--weight-decay", NULL, OPT_FLOAT, &f->c.weight_decay, 0.0, 1.0, "WD", "AdamW weight decay (default 0)"},
        {"--loss", NULL, OPT_STRING, &f->loss, 0, 0, "KIND", "l2, l1 or huber (default l2)"},
        {"--objective", NULL, OPT_STRING, &f->objective, 0, 0, "KIND", "what the network predicts: eps, v or x0 (default v)"},
        {"--snr-gamma", NULL, OPT_FLOAT, &f->c.snr_gamma, 0.0, 1e6, "G", "min-SNR-gamma loss weighting (Hang et al. 2023), 0 = off (default 5)"},
        {"--cond-drop", NULL, OPT_FLOAT, &f->c.cond_drop, 0.0, 1.0, "P", "with --classes: train unconditionally with probability P (default 0.1)"},
        {"--seed", NULL, OPT_U64, &f->c.seed, 0, 0, "N", "random seed (default 0)"},
        {"--sampler", NULL, OPT_STRING, &f->sampler, 0, 0, "NAME", "the model's default sampler for ddpm sample and eval, recorded in the checkpoint (default ddpm; dpm++2m for the 32 and 64 px presets' v-prediction)"},
        {"--sample-steps", NULL, OPT_INT, &f->c.sample_steps, 1, DDPM_SCHEDULE_MAX_T, "K", "its steps (default: the sampler's; 20 for the presets' dpm++2m)"},
        {"--threads", NULL, OPT_INT, &f->threads, 0, 1024, "N", "threads, 0 = all cores (default 0)"},
        {"--out", "-o", OPT_STRING, &f->r.dir, 0, 0, "DIR", "output directory (default " DDPM_DEFAULT_RUN_DIR ")"},
        {"--ckpt-every", NULL, OPT_INT, &f->r.ckpt_every, 0, 100000000, "N", "write the checkpoint every N iterations (default 500)"},
        {"--sample-every", NULL, OPT_INT, &f->r.sample_every, 0, 100000000, "N", "write a sample grid every N iterations (default 0: at the end only)"},
        {"--scale", NULL, OPT_INT, &f->r.grid_scale, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the sample grids' tiles S times (nearest neighbour; default 1)"},
        {"--eval-every", NULL, OPT_INT, &f->r.eval_every, 0, 100000000, "N", "ddpm eval's metrics every N iterations, in log.csv and fid.png (default 0: never)"},
        {"--eval-n", NULL, OPT_INT, &f->r.eval_n, 4, 100000, "N", "samples per evaluation (default 1000; ddim 50 steps)"},
        {"--keep-best", NULL, OPT_FLAG, &f->r.keep_best, 0, 0, NULL, "with --eval-every: keep the lowest-FID state as OUT/best.safetensors"},
        {"--log-every", NULL, OPT_INT, &f->r.log_every, 0, 100000000, "N", "log every N iterations (default: about 50 lines per run)"},
        {"--resume", NULL, OPT_FLAG, &f->resume, 0, 0, NULL, "continue the run in --out exactly where its checkpoint left off"},
        {"--stop-after", NULL, OPT_INT, &f->stop_after, 1, 100000000, "N", "stop (and save) after N iterations of this run; --resume continues"},
        {"--force", NULL, OPT_FLAG, &f->force, 0, 0, NULL, "start over even if --out holds a checkpoint"},
        {"--check-sync", NULL, OPT_INT, &f->check_sync, 0, 100000000, "N", "under mpirun: compare parameter checksums across ranks every N iterations (debug)"},
        {"--alpha", NULL, OPT_STRING, &f->alpha, 0, 0, "BG", "image folders: composite transparency onto white or black (default white)"},
        {"--crop", NULL, OPT_STRING, &f->crop, 0, 0, "KIND", "image folders: center or random crop of the longer side (default center)"},
        {"--hflip", NULL, OPT_FLAG, &f->hflip, 0, 0, NULL, "random horizontal flips (default: on for image folders, off for IDX)"},
        {"--no-hflip", NULL, OPT_FLAG, &f->no_hflip, 0, 0, NULL, "no random horizontal flips"},
        {"--strict", NULL, OPT_FLAG, &f->d.strict, 0, 0, NULL, "image folders: a file that is not a usable image is an error"},
    };
    _Static_assert(DDPM_COUNT(own) == TRAIN_OPTS, "TRAIN_OPTS counts the table");
    memcpy(opts, own, sizeof own);
    ddpm_model_opts(opts + TRAIN_OPTS, &f->c.model);
}

/* On --resume the checkpoint fixes the model and the training recipe. */
static int check_resume_flags(const ddpm_opt *opts) {
    static const char *fixed[] = {"--steps", "--schedule", "--batch", "--lr", "--warmup", "--lr-decay", "--precision",
                                  "--clip", "--ema", "--ema-gamma", "--weight-decay", "--loss", "--objective", "--snr-gamma",
                                  "--cond-drop", "--seed", "--sampler", "--sample-steps", "--alpha", "--crop", "--hflip", "--no-hflip"};
    const char *why = "cannot be changed on --resume (the checkpoint fixes it)";
    return ddpm_opts_refuse(CMD, opts, TRAIN_OPTS, fixed, DDPM_COUNT(fixed), why) ||
           ddpm_opts_refuse(CMD, opts + TRAIN_OPTS, DDPM_MODEL_OPTS, NULL, 0, why) ? 2 : 0; /* and the model flags */
}

/* A fresh run: valid model flags (checked again once the data is loaded), a warmup that fits. */
static int check_new_run(train_flags *f, ddpm_opt *opts) {
    if (ddpm_model_flags_check(CMD, &f->c.model, opts + NOPTS - DDPM_MODEL_OPTS, DDPM_MODEL_OPTS)) return 2;
    if (f->warmup >= f->iters && f->warmup > 0) /* the default (-1) is a share of --iters */
        return ddpm_cli_fail(CMD, 2, "--warmup %d must be smaller than --iters %d", f->warmup, f->iters);
    return 0;
}

static int check_names(const train_flags *f) {
    if (ddpm_cli_check_name(CMD, "--schedule", ddpm_schedule_parse(f->schedule)) ||
        ddpm_cli_check_name(CMD, "--loss", ddpm_loss_parse(f->loss)) ||
        ddpm_cli_check_name(CMD, "--objective", ddpm_objective_parse(f->objective)) ||
        ddpm_cli_check_name(CMD, "--lr-decay", ddpm_lr_decay_parse(f->lr_decay)) ||
        ddpm_cli_check_name(CMD, "--precision", ddpm_precision_parse(f->precision)) ||
        ddpm_cli_check_name(CMD, "--sampler", ddpm_sampler_parse(f->sampler)) ||
        ddpm_cli_check_name(CMD, "--alpha", ddpm_alpha_parse(f->alpha)) ||
        ddpm_cli_check_name(CMD, "--crop", ddpm_crop_parse(f->crop)))
        return 2;
    const char *clash = f->resume && f->force ? "--resume and --force" : f->hflip && f->no_hflip ? "--hflip and --no-hflip" : NULL;
    if (clash) return ddpm_cli_fail(CMD, 2, "%s contradict each other", clash);
    if (f->r.keep_best && f->r.eval_every <= 0)
        return ddpm_cli_fail(CMD, 2, "--keep-best needs --eval-every N (the FID it keeps the best of)");
    return 0;
}

static int cmd_train(int argc, char **argv) {
    ddpm_train_config d;
    ddpm_train_config_default(&d);
    train_flags f = {.c = d, .schedule = ddpm_schedule_name(d.schedule), .loss = "l2",
                     .objective = ddpm_objective_name(d.objective), .lr_decay = "cosine", .precision = ddpm_precision_name(d.precision),
                     .sampler = ddpm_sampler_name(d.sampler),
                     .alpha = "white", .crop = "center", .iters = (int)d.iters, .warmup = -1};
    ddpm_data_opts_default(&f.d);
    ddpm_run_opts_default(&f.r);
    f.r.dir = DDPM_DEFAULT_RUN_DIR;
    ddpm_opt opts[NOPTS];
    train_opts(opts, &f);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, NOPTS,
                             "usage: ddpm train [options]\n\n"
                             "Train a UNet noise predictor (DDPM, L_simple) on an image dataset.",
                             "Writes OUT/ckpt.safetensors, log.csv, run.txt, loss.png, samples.png and report.html.\n"
                             "--steps is the number of diffusion timesteps T; --iters the number of optimizer steps.\n"
                             "Ctrl-C or SIGTERM finishes the current iteration, writes the checkpoint and exits.\n"
                             "A second train on the same --out fails while this one runs (OUT/.lock).");
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = check_names(&f)) || (rc = f.resume ? check_resume_flags(opts) : check_new_run(&f, opts))) return rc;
    if (ddpm_dist_init(NULL, NULL)) return ddpm_cli_error(CMD), 1;
    rc = run(&f, opts, NOPTS, argc, argv);
    ddpm_dist_finalize();
    return rc;
}

const ddpm_cli_command ddpm_cmd_train = {"train", cmd_train, "train a diffusion model on MNIST or any IDX dataset"};
