/* cmd_sample.c: `ddpm sample`: draw images from a checkpoint through the
 * pipeline (pipeline.h) and write them as a PNG grid, optionally also as IDX
 * files and a trajectory grid. Every output path is checked before sampling;
 * files are written (atomically) only after it succeeded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ddpm/data.h"
#include "ddpm/image.h"

#define CMD "sample"

typedef struct {
    ddpm_sampler_flags s;
    const char *precision, *ckpt, *out, *idx, *traj, *lab, *label, *init, *mask, *sigmas;
    int n, nrow, threads, batch, scale, per_image, resample;
    float strength, churn;
    bool no_ema, nrow_seen;
} sample_flags;

static const char *SYNOPSIS =
    "usage: ddpm sample [-c CKPT] [-n N] [-o FILE] [options]\n\n"
    "Generate images with a trained model and write them as a PNG grid.";

static const char *EPILOG =
    "The checkpoint's metadata gives the schedule, T and what the network predicts; its EMA\n"
    "weights are used when present. Samplers (docs/usage.md#sampling), one model call per step:\n"
    "  ddpm     ancestral (Ho et al.); K < T respaces the schedule; --var small = posterior\n"
    "           variance (default), large = beta_t\n"
    "  ddim     Song et al.; --eta 0 = deterministic (default) to 1 = as noisy as ddpm\n"
    "  dpm++2m  DPM-Solver++(2M) (Lu et al. 2022), deterministic\n"
    "  euler, heun, euler_a  Karras et al. 2022 on the Karras sigma grid (--sigmas schedule:\n"
    "           the schedule's own); heun makes 2K-1 model calls; --churn S adds stochastic\n"
    "           churn (euler, heun); euler_a is ancestral\n"
    "--spacing (ddim, dpm++2m): uniform in t, quadratic in t, or uniform in log-SNR.\n"
    "Class-conditional models: labels cycle 0..K-1, one class per grid column, or --label.\n"
    "--guidance W: eps_u + W (eps_c - eps_u); 1 = conditional, 0 = unconditional.\n"
    "Editing (--init): --per-image outputs per input image (-n is ignored); --strength S\n"
    "(SDEdit) starts at t = ceil(S T) - 1; --mask (RePaint) keeps the black pixels exactly.\n"
    "Image i draws from its own stream (--seed, i): the same images whatever --batch or\n"
    "--threads, and -n 4 gives the first four of -n 16. Outputs are written after sampling.\n\n"
    "examples:\n"
    "  ddpm sample -c runs/cond/ckpt.safetensors --guidance 3 -n 40\n"
    "  ddpm sample --init digits.idx --mask lower.png --resample 4 -o inpainted.png";

/* Parses argv into f and o's sampler. Returns -1 to go on, else the exit code. */
static int parse_flags(sample_flags *f, ddpm_draw_opts *o, int argc, char **argv) {
    *f = (sample_flags){.out = "samples.png", .n = 16, .batch = 64, .scale = 1, .per_image = 1, .strength = 1.0f};
    ddpm_opt own[] = {
        {"--ckpt", "-c", OPT_STRING, &f->ckpt, 0, 0, "FILE", "checkpoint (default " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ")"},
        {"--num", "-n", OPT_INT, &f->n, 1, 100000, "N", "number of images (default 16)"},
        {"--out", "-o", OPT_STRING, &f->out, 0, 0, "FILE", "PNG grid to write (default samples.png)"},
        {"--sigmas", NULL, OPT_STRING, &f->sigmas, 0, 0, "GRID", "euler/heun/euler_a sigmas: karras (default) or schedule"},
        {"--churn", NULL, OPT_FLOAT, &f->churn, 0.0, 1000.0, "S", "euler/heun stochastic churn S_churn (default 0)"},
        {"--init", NULL, OPT_STRING, &f->init, 0, 0, "FILE", "edit these images (image, folder or IDX)"},
        {"--strength", NULL, OPT_FLOAT, &f->strength, 0.0, 1.0, "S", "--init: SDEdit strength in (0, 1] (default 1: from noise)"},
        {"--mask", NULL, OPT_STRING, &f->mask, 0, 0, "FILE", "--init: inpaint; white = regenerate, black = keep"},
        {"--resample", NULL, OPT_INT, &f->resample, 0, 1000, "R", "--mask: RePaint jumps per step (default 0)"},
        {"--per-image", NULL, OPT_INT, &f->per_image, 1, 100000, "K", "--init: outputs per input image (default 1)"},
        {"--label", NULL, OPT_STRING, &f->label, 0, 0, "K|NAME", "class index, or its folder name for a model trained on an image folder (default: cycle 0..K-1)"},
        {"--nrow", NULL, OPT_INT, &f->nrow, 1, 100000, "N", "grid columns (default ceil(sqrt(n)); K with cycled labels)"},
        {"--scale", NULL, OPT_INT, &f->scale, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the grid's tiles S times (nearest neighbour; default 1)"},
        {"--no-ema", NULL, OPT_FLAG, &f->no_ema, 0, 0, NULL, "use the raw weights, not the EMA weights"},
        {"--batch", NULL, OPT_INT, &f->batch, 1, 4096, "B", "images per model call (default 64; bounds memory)"},
        {"--threads", NULL, OPT_INT, &f->threads, 0, 4096, "N", "threads (default 0: all cores)"},
        {"--precision", NULL, OPT_STRING, &f->precision, 0, 0, "P", "the UNet's products: fp32 or bf16 (default: the checkpoint's)"},
        {"--idx", NULL, OPT_STRING, &f->idx, 0, 0, "FILE", "also write the images as an IDX file (u8)"},
        {"--trajectory", NULL, OPT_STRING, &f->traj, 0, 0, "FILE", "PNG of x_T ... x_0 in 10 columns, a row per image (first 100)"},
        {"--label-idx", NULL, OPT_STRING, &f->lab, 0, 0, "FILE", "also write the images' class labels as an IDX file (u8)"},
    };
    ddpm_opt opts[DDPM_COUNT(own) + DDPM_SAMPLER_OPTS];
    memcpy(opts, own, sizeof own);
    ddpm_sampler_flags_opts(opts + DDPM_COUNT(own), &f->s);
    int nopts = DDPM_COUNT(opts), rc = ddpm_opts_parse(CMD, argc, argv, opts, nopts, SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    f->nrow_seen = ddpm_opts_seen(opts, nopts, "--nrow");
    const char *why = f->mask && !f->init ? "--mask needs --init" : f->resample && !f->mask ? "--resample needs --mask"
                      : !(f->strength > 0.0f) ? "--strength must be in (0, 1]"
                      : !f->init && (ddpm_opts_seen(opts, nopts, "--strength") || ddpm_opts_seen(opts, nopts, "--per-image"))
                          ? "--strength and --per-image need --init" : NULL;
    rc = why ? ddpm_cli_fail(CMD, 2, "%s", why) : ddpm_cli_draw_opts(CMD, o, &f->s, opts, nopts);
    int g = rc < 0 && f->sigmas ? ddpm_sigmas_parse(f->sigmas) : 0;
    bool karras = ddpm_sampler_is_karras(o->sampler.kind), churner = karras && o->sampler.kind != DDPM_SAMPLER_EULER_A;
    why = f->sigmas && !karras ? "--sigmas applies to euler, heun and euler_a"
          : f->churn > 0.0f && !churner ? "--churn applies to euler and heun" : NULL;
    if (rc < 0 && g < 0) rc = ddpm_cli_check_name(CMD, "--sigmas", g);
    else if (rc < 0 && why) rc = ddpm_cli_fail(CMD, 2, "%s", why);
    o->sampler.churn = f->churn, o->sampler.sigmas = (ddpm_sigmas)(g > 0 ? g : 0);
    return rc;
}

/* The images (and mask) to edit: 0, or 1 after the error. */
static int load_edit(sample_flags *f, ddpm_pipeline *p, ddpm_edit_opts *e, uint8_t **init, uint8_t **mask) {
    *e = (ddpm_edit_opts){.per_image = f->per_image, .strength = f->strength, .resample = f->resample};
    if (ddpm_pipeline_load_images(p, f->init, init, &e->n_init) || (f->mask && ddpm_pipeline_load_mask(p, f->mask, mask)))
        return ddpm_cli_error_flag(CMD, *init ? "--mask" : "--init", 1);
    e->init = *init, e->mask = *mask;
    f->n = e->n_init * e->per_image;
    return 0;
}

static bool ends_with_png(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && (!strcmp(path + n - 4, ".png") || !strcmp(path + n - 4, ".PNG"));
}

/* Distinct output names, each writable, each grid small enough for a PNG. */
static int check_outputs(const sample_flags *f, const ddpm_pipeline_info *in, const ddpm_trajectory *t, int nrow) {
    const char *outs[4] = {f->out, f->idx, f->traj, f->lab}, *flag[4] = {"-o", "--idx", "--trajectory", "--label-idx"};
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++)
            if (outs[a] && outs[b] && !strcmp(outs[a], outs[b]))
                return ddpm_cli_fail(CMD, 2, "%s and %s name the same file '%s'", flag[a], flag[b], outs[a]);
    for (int a = 0; a < 4; a++)
        if (outs[a] && ddpm_cli_check_writable(CMD, outs[a])) return 1;
    int c = in->cfg.in_ch, r = in->cfg.res;
    if (ddpm_image_grid_check(f->out, f->n, c, r, r, nrow, f->scale) ||
        (f->traj && ddpm_image_grid_check(f->traj, t->rows * t->cols, c, r, r, t->cols, f->scale)))
        return ddpm_cli_fail(CMD, 1, "%s: use fewer images (-n) or a smaller --scale", ddpm_last_error());
    for (int a = 0; a < 3; a += 2)
        if (outs[a] && !ends_with_png(outs[a])) fprintf(stderr, "ddpm %s: note: '%s' will be a PNG file\n", CMD, outs[a]);
    return 0;
}

static void print_header(const sample_flags *f, const ddpm_pipeline *p, const ddpm_draw_opts *o, int K, int threads) {
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    char detail[96], obj[32] = "";
    ddpm_sampler_describe(detail, sizeof detail, &o->sampler);
    if (in->objective != DDPM_OBJ_EPS) snprintf(obj, sizeof obj, ", %s-prediction", ddpm_objective_name(in->objective));
    if (in->precision != DDPM_PREC_FP32) snprintf(obj + strlen(obj), sizeof obj - strlen(obj), ", bf16 products");
    if (in->schedule_assumed || in->T_assumed)
        fprintf(stderr, "ddpm %s: note: '%s' does not record its noise schedule; assuming %s %s, T=%d (the training "
                        "default)\n", CMD, f->ckpt, in->schedule_assumed ? "linear" : "the recorded",
                ddpm_schedule_name(in->schedule), in->T);
    fprintf(stderr, "ddpm %s: '%s' (%s weights%s%s), %s schedule T=%d; %s sampler, %d steps, %s; seed %llu, %d thread%s\n",
            CMD, f->ckpt, in->ema ? "EMA" : "raw", in->has_ema || f->no_ema ? "" : "; the checkpoint has no EMA weights", obj,
            ddpm_schedule_name(in->schedule), in->T, ddpm_sampler_name(o->sampler.kind), K, detail, (unsigned long long)o->seed, threads,
            threads == 1 ? "" : "s");
    const ddpm_edit_opts *e = o->edit;
    if (e)
        fprintf(stderr, "ddpm %s: editing %d image%s from '%s' (%d each; strength %g%s%s%s)\n", CMD, e->n_init,
                e->n_init == 1 ? "" : "s", f->init, e->per_image, (double)f->strength,
                f->mask ? ", inpainting the white of '" : "", f->mask ? f->mask : "", f->mask ? "'" : "");
    int C = in->cfg.num_classes;
    if (C == 0) return;
    char g[48] = "", l[48];
    if (o->guided) snprintf(g, sizeof g, ", guidance %g", (double)o->guidance);
    if (o->label >= 0) snprintf(l, sizeof l, "label %d", o->label);
    else snprintf(l, sizeof l, o->edit ? "no label (unconditional edits)" : "labels cycling 0..%d", C - 1);
    fprintf(stderr, "ddpm %s: class-conditional model with %d classes, %s%s\n", CMD, C, l, g);
}

static ddpm_status write_outputs(const sample_flags *f, ddpm_pipeline *p, const ddpm_draw_opts *o, const float *x,
                                 const ddpm_trajectory *t, int nrow) {
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    int n = f->n, c = in->cfg.in_ch, r = in->cfg.res, z = f->scale, gw, gh;
    ddpm_status st = ddpm_image_write_grid_scaled(f->out, x, n, c, r, r, nrow, -1.0f, 1.0f, z);
    if (st) return st;
    ddpm_image_grid_size(n, r * z, r * z, nrow, &gw, &gh);
    fprintf(stderr, "ddpm %s: wrote %d image%s to '%s' (%d x %d px grid)\n", CMD, n, n == 1 ? "" : "s", f->out, gw, gh);
    if (f->idx && !(st = ddpm_image_write_idx(f->idx, x, n, c, r, r)))
        fprintf(stderr, "ddpm %s: wrote %d x %d x %d x %d u8 images to '%s'\n", CMD, n, c, r, r, f->idx);
    int *lab = f->lab ? malloc((size_t)n * sizeof(int)) : NULL;
    if (!st && f->lab && !lab) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d labels", n);
    if (!st && f->lab) ddpm_pipeline_labels(p, o, 0, n, lab);
    if (!st && f->lab && !(st = ddpm_idx_write_labels(f->lab, lab, n)))
        fprintf(stderr, "ddpm %s: wrote %d u8 labels to '%s'\n", CMD, n, f->lab);
    free(lab);
    if (!st && f->traj && !(st = ddpm_image_write_grid_scaled(f->traj, t->x, t->rows * t->cols, c, r, r, t->cols,
                                                              -1.0f, 1.0f, z))) {
        fprintf(stderr, "ddpm %s: wrote the trajectory of %d image%s to '%s' (steps", CMD, t->rows,
                t->rows == 1 ? "" : "s", f->traj);
        for (int j = 0; j < t->cols; j++) fprintf(stderr, "%s%d", j ? "," : " ", t->step[j]);
        fprintf(stderr, " of %d)\n", t->K);
    }
    return st;
}

static int cmd_sample(int argc, char **argv) {
    sample_flags f;
    ddpm_draw_opts o;
    int rc = parse_flags(&f, &o, argc, argv), K, nrow;
    if (rc >= 0) return rc;
    ddpm_pipeline *p = NULL;
    ddpm_edit_opts e;
    ddpm_trajectory t = {0};
    uint8_t *init = NULL, *mask = NULL;
    if ((rc = ddpm_cli_open_pipeline(CMD, &p, &f.ckpt, f.no_ema, f.batch, f.precision))) return rc;
    ddpm_cli_model_sampler(p, &o, &f.s);
    if (f.init && (rc = load_edit(&f, p, &e, &init, &mask))) goto done;
    o.edit = f.init ? &e : NULL;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    int C = in->cfg.num_classes;
    if (f.label && ddpm_pipeline_label(p, f.label, &o.label))
        rc = ddpm_cli_error_flag(CMD, "--label", 2);
    else if ((o.edit = NULL, rc = ddpm_cli_check_draw(CMD, p, &o, &K)) < 0) {
        o.edit = f.init ? &e : NULL, rc = 0;
        if (o.edit && ddpm_pipeline_check(p, &o, &K)) rc = ddpm_cli_error_flag(CMD, f.mask ? "--mask" : "--strength", 2);
        else if (f.lab && (C == 0 || C > 256))
            rc = ddpm_cli_fail(CMD, 2, "--label-idx: the model in '%s' %s", f.ckpt,
                               C ? "has more than 256 classes (u8 labels)" : "is unconditional (trained without --classes)");
        else if (in->cfg.in_ch != 1 && in->cfg.in_ch != 3)
            rc = ddpm_cli_fail(CMD, 1, "the model makes %d-channel images; PNG grids need 1 or 3", in->cfg.in_ch);
    }
    nrow = f.nrow_seen || C == 0 || o.label >= 0 || f.init || C > DDPM_LABEL_COLS_MAX ? f.nrow : C;
    if (!rc && f.traj && ddpm_trajectory_init(&t, f.n, K, in->D)) rc = 1, ddpm_cli_error(CMD);
    if (rc || (rc = check_outputs(&f, in, &t, nrow))) goto done;
    float *x = malloc((size_t)f.n * in->D * sizeof(float));
    print_header(&f, p, &o, K, ddpm_set_threads(f.threads));
    ddpm_draw_progress dv;
    ddpm_draw_progress_start(&dv, stderr, f.n, f.batch, K);
    t.next = ddpm_draw_progress_step, t.next_ud = &dv;
    o.on_step = f.traj ? ddpm_trajectory_step : ddpm_draw_progress_step, o.ud = f.traj ? (void *)&t : &dv;
    ddpm_status st = !x ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", f.n) : ddpm_pipeline_draw(p, &o, 0, f.n, x);
    if (!st) ddpm_progress_done(&dv.p);
    else if (dv.p.tty) fputc('\n', stderr);
    if (!st) st = write_outputs(&f, p, &o, x, &t, nrow);
    if (st) ddpm_cli_error(CMD);
    free(x);
    rc = st ? 1 : 0;
done:
    ddpm_trajectory_free(&t);
    free(init);
    free(mask);
    ddpm_pipeline_free(p);
    return rc;
}

const ddpm_cli_command ddpm_cmd_sample = {"sample", cmd_sample, "generate or edit images with a checkpoint (DDPM, DDIM, DPM-Solver++, Euler, Heun)"};
