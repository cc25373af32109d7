/* cmd_interp.c: `ddpm interp`: a strip of images between two seeds' x_T or
 * two images' DDIM latents, slerped and decoded by deterministic DDIM
 * (ddpm_pipeline_interp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ddpm/image.h"

#define CMD "interp"

static const char *SYNOPSIS =
    "usage: ddpm interp [-c CKPT] (--seeds A,B | --images a.png,b.png) [--steps N] [-o FILE]\n\n"
    "Interpolate between two seeds' noise or two images' DDIM latents (slerp), decoded by\n"
    "deterministic DDIM, and write the frames as one PNG strip.";

static const char *EPILOG =
    "--seeds A,B: the x_T of image 0 of seeds A and B (frame 0 is what 'ddpm sample --seed A\n"
    "-n 1 --sampler ddim' draws). --images a,b: each image (as --init reads it) is inverted by\n"
    "deterministic DDIM into its latent first. Class-conditional models use --label (default 0).\n\n"
    "examples:\n"
    "  ddpm interp --seeds 1,2 --steps 8 -o strip.png --scale 2\n"
    "  ddpm interp --images a.png,b.png --steps 10 --sample-steps 100 -o strip.png";

static int split2(const char *arg, char *a, char *b, size_t cap) {
    const char *comma = strchr(arg, ',');
    if (!comma || strchr(comma + 1, ',') || comma == arg || !comma[1] || (size_t)(comma - arg) >= cap || strlen(comma + 1) >= cap)
        return -1;
    snprintf(a, cap, "%.*s", (int)(comma - arg), arg);
    snprintf(b, cap, "%s", comma + 1);
    return 0;
}

static int cmd_interp(int argc, char **argv) {
    const char *ckpt = NULL, *out = "interp.png", *seeds = NULL, *images = NULL, *label = NULL;
    int frames = 8, steps = 0, K = 0, scale = 1, batch = 64, threads = 0;
    ddpm_opt opts[] = {
        {"--ckpt", "-c", OPT_STRING, &ckpt, 0, 0, "FILE", "checkpoint (default " DDPM_DEFAULT_RUN_DIR "/" DDPM_CKPT_FILE ")"},
        {"--seeds", NULL, OPT_STRING, &seeds, 0, 0, "A,B", "interpolate between these seeds' x_T"},
        {"--images", NULL, OPT_STRING, &images, 0, 0, "A,B", "interpolate between these images' DDIM latents"},
        {"--steps", NULL, OPT_INT, &frames, 2, 1000, "N", "frames, the two ends included (default 8)"},
        {"--sample-steps", NULL, OPT_INT, &steps, 1, DDPM_SCHEDULE_MAX_T, "K", "DDIM steps (default min(50, T))"},
        {"--label", NULL, OPT_STRING, &label, 0, 0, "K|NAME", "class of a class-conditional model (default 0)"},
        {"--out", "-o", OPT_STRING, &out, 0, 0, "FILE", "PNG strip to write (default interp.png)"},
        {"--scale", NULL, OPT_INT, &scale, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the tiles S times (default 1)"},
        {"--batch", NULL, OPT_INT, &batch, 1, 4096, "B", "images per model call (default 64)"},
        {"--threads", NULL, OPT_INT, &threads, 0, 4096, "N", "threads (default 0: all cores)"},
    };
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, DDPM_COUNT(opts), SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    char a[1024], b[1024];
    if (!seeds == !images || split2(seeds ? seeds : images, a, b, sizeof a))
        return ddpm_cli_fail(CMD, 2, "give exactly one of --seeds A,B and --images A,B (two items, one comma)");
    ddpm_interp_opts io = {.frames = frames};
    char *end_a, *end_b;
    if (seeds && ((io.seed_a = strtoull(a, &end_a, 10)), (io.seed_b = strtoull(b, &end_b, 10)), *end_a || *end_b || a[0] == '-' || b[0] == '-'))
        return ddpm_cli_fail(CMD, 2, "--seeds '%s': two non-negative integers expected", seeds);
    ddpm_pipeline *p = NULL;
    if ((rc = ddpm_cli_open_pipeline(CMD, &p, &ckpt, false, batch, NULL)) || (rc = ddpm_cli_check_writable(CMD, out))) goto done;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler.kind = DDPM_SAMPLER_DDIM, o.sampler.steps = steps, o.label = -1;
    uint8_t *ua = NULL, *ub = NULL;
    int na = 0, nb = 0;
    if (label && ddpm_pipeline_label(p, label, &o.label)) rc = ddpm_cli_error_flag(CMD, "--label", 2);
    else if ((rc = ddpm_cli_check_draw(CMD, p, &o, &K)) < 0) rc = 0;
    if (!rc && images && (ddpm_pipeline_load_images(p, a, &ua, &na) || ddpm_pipeline_load_images(p, b, &ub, &nb)))
        rc = ddpm_cli_error_flag(CMD, "--images", 1);
    io.a = ua, io.b = ub;
    float *x = rc ? NULL : malloc((size_t)frames * in->D * sizeof(float));
    ddpm_set_threads(threads);
    ddpm_status st = rc ? DDPM_OK : !x ? ddpm_error(DDPM_ERR_NOMEM, "out of memory") : ddpm_pipeline_interp(p, &o, &io, x);
    int c = in->cfg.in_ch, r = in->cfg.res;
    if (!rc && !st) st = ddpm_image_write_grid_scaled(out, x, frames, c, r, r, frames, -1.0f, 1.0f, scale);
    if (!rc && st) rc = ddpm_cli_error(CMD);
    if (!rc) fprintf(stderr, "ddpm %s: wrote %d frames between %s %s and %s (ddim, %d steps) to '%s'\n", CMD, frames,
                     seeds ? "seeds" : "images", a, b, K, out);
    free(x), free(ua), free(ub);
done:
    ddpm_pipeline_free(p);
    return rc;
}

const ddpm_cli_command ddpm_cmd_interp = {"interp", cmd_interp, "interpolate between two seeds or two images (DDIM, slerp)"};
