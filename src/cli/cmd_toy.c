/* cmd_toy.c: `ddpm toy`: diffusion on 2-D points (an S-curve by default)
 * with an MLP denoiser, and scatter plots of the forward and reverse
 * process. Parses flags and prints; the trainer is toy.h's, the run (its
 * outputs and their evaluation) run.h's. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ddpm/run.h"
#include "ddpm/toy.h"

#define CMD "toy"

typedef struct {
    const char *preset, *data, *schedule, *scale, *sampler, *spacing, *resume, *out;
    int points, T, batch, hidden, iters, num, sample_steps, threads;
    float lr, clip, eta;
    uint64_t seed;
} toy_flags;

static const char *SYNOPSIS =
    "usage: ddpm toy [--preset default|seed] [--data NAME|FILE.csv] [-o DIR] [options]\n\n"
    "Diffusion on 2-D points: trains a small MLP noise predictor on an S-curve (or\n"
    "another 2-D dataset), samples from it and plots the forward and the reverse\n"
    "process. The default run (50,000 steps) takes about 40 s of CPU time on one core.";

static const char *EPILOG =
    "datasets: scurve (the seed's), swissroll, moons, 8gaussians, checkerboard, or FILE.csv\n"
    "with one 'x,y' point per line. Presets (docs/usage.md#the-2-d-toy; flags given win):\n"
    "  default  T = 100 on the sigmoid schedule, which ends at noise; data scaled into [-1, 1]\n"
    "  seed     the seed's recipe exactly: --schedule seed-sigmoid (betas sum to 0.25, so\n"
    "           alpha_bar_T = 0.78: x_T keeps 88 % of the signal), data / 10 (--scale none)\n"
    "  Both: MLP 2-128-128-128-2, eps-prediction L2 loss, Adam lr 1e-3, batch 128, clip 1.\n"
    "writes in DIR: toy.safetensors (--resume continues it), forward.png, reverse.png,\n"
    "samples.csv, samples.png, loss.png, log.csv; prints the energy distance of the samples\n"
    "to fresh data next to its floor, and the share of samples near a training point.\n\n"
    "examples:\n"
    "  ddpm toy --preset seed -o runs/seed   # the seed's recipe, and its failure\n"
    "  ddpm toy --resume runs/toy/toy.safetensors --sampler ddim --sample-steps 20";

/* The preset's value for every flag the user did not give. */
static int apply_preset(toy_flags *f, const ddpm_opt *opts, int nopts) {
    static const char *const presets[] = {"default", "seed"};
    int seed = ddpm_enum_lookup("preset", presets, 0, 2, f->preset);
    if (ddpm_cli_check_name(CMD, "--preset", seed)) return 2;
    if (!ddpm_opts_seen(opts, nopts, "--schedule")) f->schedule = seed ? "seed-sigmoid" : "sigmoid";
    if (!ddpm_opts_seen(opts, nopts, "--scale")) f->scale = seed ? "none" : "unit";
    return 0;
}

/* Flags that fix the model or its data cannot change when resuming. */
static const char *const FIXED[] = {"--preset", "--data", "--points", "--steps", "--schedule", "--scale",
                                    "--batch", "--hidden", "--lr", "--clip", "--seed"};

/* A fresh trainer from the flags (usage errors: 2, runtime: 1 after the message). */
static int create_trainer(const toy_flags *f, ddpm_toy **tr) {
    ddpm_toy_config c;
    ddpm_toy_config_default(&c);
    c.hidden = f->hidden, c.T = f->T, c.batch = f->batch, c.iters = f->iters;
    c.lr = f->lr, c.clip = f->clip, c.seed = f->seed;
    c.seed_betas = !strcmp(f->schedule, "seed-sigmoid");
    int kind = c.seed_betas ? DDPM_SCHED_SIGMOID : ddpm_schedule_parse(f->schedule);
    if (kind < 0)
        return ddpm_cli_fail(CMD, 2, "unknown --schedule '%s' (expected sigmoid, linear, cosine, quadratic or seed-sigmoid)",
                             ddpm_show(f->schedule).s);
    c.schedule = (ddpm_schedule_kind)kind;
    if (ddpm_toy_data_check(f->data)) return ddpm_cli_error_flag(CMD, "--data", 2);
    static const char *const scales[] = {"unit", "none"};
    int scale = ddpm_enum_lookup("scale", scales, 0, 2, f->scale);
    if (ddpm_cli_check_name(CMD, "--scale", scale)) return 2;
    if (ddpm_toy_run_create(tr, &c, f->data, f->points, scale == 0, f->seed)) return ddpm_cli_error(CMD);
    return 0;
}

/* What the run measured. */
static void print_result(const ddpm_toy_result *r) {
    if (r->m < 1)
        printf("energy distance: not computed (too few training points for a reference set)\n");
    else
        printf("energy distance, %d samples vs %d %s points: %.5f (floor, two %s: %.5f; ratio %.2f)\n", r->m, r->m,
               r->fresh ? "fresh" : "training", r->energy, r->fresh ? "fresh samples" : "disjoint subsets",
               r->energy_floor, r->energy / r->energy_floor);
    printf("on the data: %.1f %% of the samples lie within %.3g (%.0f %% of the data's extent) of a training point\n",
           100.0 * r->near_frac, r->near_r, 100.0 * DDPM_TOY_NEAR_FRAC);
}

/* Everything after parsing: trainer, then the run. */
static int run(const toy_flags *f, const ddpm_sampler_opts *so) {
    ddpm_toy *tr = NULL;
    int rc = 0;
    if (f->resume && ddpm_toy_resume(&tr, f->resume, f->iters)) return ddpm_cli_error(CMD);
    if (!f->resume && (rc = create_trainer(f, &tr))) return rc;
    const ddpm_toy_config *c = ddpm_toy_get_config(tr);
    if (f->sample_steps > ddpm_sampler_max_steps(so->kind, c->T)) {
        rc = ddpm_cli_fail(CMD, 2, "--sample-steps %d exceeds %d, the most %s takes with T = %d", f->sample_steps,
                           ddpm_sampler_max_steps(so->kind, c->T), f->sampler, c->T);
        ddpm_toy_free(tr);
        return rc;
    }
    int nd;
    ddpm_toy_data(tr, &nd);
    fprintf(stderr, "ddpm %s: %s, %d points, T = %d (%s), MLP hidden %d, batch %d, %s step %" PRId64 " of %" PRId64 "\n",
            CMD, ddpm_toy_data_label(tr), nd, c->T, ddpm_toy_schedule_name(c), c->hidden, c->batch,
            f->resume ? "resuming at" : "from", ddpm_toy_step_count(tr), c->iters);
    ddpm_toy_run_opts o = {.dir = f->out, .sampler = *so, .num = f->num, .seed = f->seed, .progress = stderr};
    ddpm_toy_result r;
    if (ddpm_toy_run(tr, &o, &r))
        rc = ddpm_cli_error(CMD);
    else {
        print_result(&r);
        fprintf(stderr, "ddpm %s: wrote %s/{%s,forward.png,reverse.png,samples.csv,samples.png,loss.png,log.csv}\n", CMD,
                f->out, DDPM_TOY_CKPT);
    }
    ddpm_toy_free(tr);
    return rc;
}

static int cmd_toy(int argc, char **argv) {
    toy_flags f = {.preset = "default", .data = "scurve", .schedule = "sigmoid", .scale = "unit",
                   .sampler = "ddpm", .spacing = "uniform", .out = "runs/toy", .points = 10000, .T = 100, .batch = 128,
                   .hidden = 128, .iters = 50000, .num = 2000, .threads = 1, .lr = 1e-3f,
                   .clip = 1.0f, .eta = 0.0f, .seed = 0};
    ddpm_opt opts[] = {
        {"--preset", NULL, OPT_STRING, &f.preset, 0, 0, "NAME", "default or seed (the seed's recipe and its trap; see below)"},
        {"--data", NULL, OPT_STRING, &f.data, 0, 0, "NAME", "scurve, swissroll, moons, 8gaussians, checkerboard or FILE.csv (default scurve)"},
        {"--points", NULL, OPT_INT, &f.points, 1, 1 << 24, "N", "training points drawn from a named dataset (default 10000)"},
        {"--steps", NULL, OPT_INT, &f.T, 2, 10000, "T", "diffusion timesteps T (default 100)"},
        {"--schedule", NULL, OPT_STRING, &f.schedule, 0, 0, "NAME", "sigmoid, linear, cosine, quadratic or seed-sigmoid (default sigmoid)"},
        {"--scale", NULL, OPT_STRING, &f.scale, 0, 0, "HOW", "unit (centre, scale into [-1, 1]) or none (default unit)"},
        {"--iters", NULL, OPT_INT, &f.iters, 1, 100000000, "N", "optimizer steps in total (default 50000)"},
        {"--batch", NULL, OPT_INT, &f.batch, 1, 65536, "B", "batch size (default 128)"},
        {"--hidden", NULL, OPT_INT, &f.hidden, 1, DDPM_MLP_MAX_HIDDEN, "H", "MLP width (default 128)"},
        {"--lr", NULL, OPT_FLOAT, &f.lr, 1e-8, 1.0, "LR", "Adam learning rate (default 1e-3)"},
        {"--clip", NULL, OPT_FLOAT, &f.clip, 0.0, 1e6, "C", "gradient-norm clip, 0 = off (default 1)"},
        {"--seed", NULL, OPT_U64, &f.seed, 0, 0, "S", "seed of the data, weights and every draw (default 0)"},
        {"--sampler", NULL, OPT_STRING, &f.sampler, 0, 0, "NAME", "ddpm, ddim or dpm++2m (default ddpm)"},
        {"--sample-steps", NULL, OPT_INT, &f.sample_steps, 0, 10000, "K", "sampling steps, 0 = the sampler's default (ddpm T, ddim 50, dpm++2m 20)"},
        {"--spacing", NULL, OPT_STRING, &f.spacing, 0, 0, "NAME", "uniform, quadratic or logsnr timesteps (default: the sampler's)"},
        {"--eta", NULL, OPT_FLOAT, &f.eta, 0.0, 1.0, "ETA", "DDIM noise, 0 = deterministic (default 0)"},
        {"--num", "-n", OPT_INT, &f.num, 1, 1 << 20, "N", "points to sample (default 2000)"},
        {"--resume", NULL, OPT_STRING, &f.resume, 0, 0, "FILE", "continue FILE's training (or only sample, when it is done)"},
        {"--out", "-o", OPT_STRING, &f.out, 0, 0, "DIR", "output directory (default runs/toy)"},
        {"--threads", NULL, OPT_INT, &f.threads, 0, 1024, "N", "threads, 0 = all cores (default 1: the MLP's products are too small to split)"},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    const char *why = "cannot be combined with --resume (the checkpoint fixes it)";
    if ((rc = apply_preset(&f, opts, nopts)) ||
        (f.resume && (rc = ddpm_opts_refuse(CMD, opts, nopts, FIXED, DDPM_COUNT(FIXED), why))))
        return rc;
    if (f.resume && !ddpm_opts_seen(opts, nopts, "--iters")) f.iters = 0; /* the checkpoint's */
    int sampler = ddpm_sampler_parse(f.sampler), spacing = sampler < 0 ? 0 : ddpm_spacing_parse(f.spacing);
    if (ddpm_cli_check_name(CMD, "--sampler", sampler) || ddpm_cli_check_name(CMD, "--spacing", spacing)) return 2;
    ddpm_sampler_opts so = {(ddpm_sampler_kind)sampler, f.sample_steps, f.eta, DDPM_VAR_SMALL,
                            ddpm_opts_seen(opts, nopts, "--spacing") ? (ddpm_spacing)spacing : DDPM_SPACING_DEFAULT};
    ddpm_set_threads(f.threads);
    return run(&f, &so);
}

const ddpm_cli_command ddpm_cmd_toy = {"toy", cmd_toy, "diffusion on 2-D points (S-curve, moons, ...) with scatter plots"};
