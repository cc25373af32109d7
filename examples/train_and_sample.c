/* train_and_sample.c: the library from outside the CLI. Trains a tiny UNet for
 * a few iterations on synthetic 8x8 images (bars), then draws a 2x2 grid from
 * its EMA weights through the pipeline (DDIM, 10 steps), which knows what the
 * network predicts (v, the default objective), and writes the PNG named on
 * the command line (and the checkpoint, when a second path is given).
 *     cc train_and_sample.c $(pkg-config --cflags --libs ddpm) -o train_and_sample */
#include <stdio.h>

#include "ddpm/image.h"
#include "ddpm/pipeline.h"
#include "ddpm/train.h"

int main(int argc, char **argv) {
    enum { N = 64, S = 8, GRID = 4 };
    static uint8_t pixels[N * S * S];
    static int labels[N];
    for (int i = 0; i < N * S * S; i++) pixels[i] = (uint8_t)(i % S == i / (S * S) % S ? 255 : 0);
    ddpm_dataset ds = {.n = N, .c = 1, .h = S, .w = S, .pixels = pixels, .labels = labels, .num_classes = 1};
    ddpm_train_config cfg;
    ddpm_train_config_default(&cfg);
    cfg.model = (ddpm_unet_config){.in_ch = 1, .res = S, .ch = 8, .ch_mult = {1, 2}, .num_levels = 2,
                                   .num_res_blocks = 1, .attn_res = {4}, .num_attn = 1, .groups = 4};
    cfg.T = 50, cfg.batch = 8, cfg.iters = 5, cfg.warmup = 1;
    const char *png = argc > 1 ? argv[1] : "grid.png";
    ddpm_trainer *tr = NULL;
    ddpm_pipeline *p = NULL;
    float x[GRID * S * S];
    ddpm_draw_opts o;
    ddpm_draw_opts_default(&o);
    o.sampler = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .steps = 10};
    o.seed = 1;
    ddpm_status s = ddpm_trainer_create(&tr, &cfg);
    if (!s) s = ddpm_trainer_set_data(tr, &ds, "bars");
    if (!s) s = ddpm_trainer_run(tr, cfg.iters, NULL, NULL); /* no progress callback */
    ddpm_pipeline_model m = {cfg.model, ddpm_trainer_ema(tr), cfg.schedule, cfg.T, cfg.objective, cfg.precision,
                             cfg.sampler, cfg.sample_steps};
    if (!s) s = ddpm_pipeline_create(&p, &m, NULL);
    if (!s) s = ddpm_pipeline_draw(p, &o, 0, GRID, x);
    if (!s) s = ddpm_image_write_grid(png, x, GRID, 1, S, S, 2, -1.0f, 1.0f);
    if (!s && argc > 2) s = ddpm_trainer_save(tr, argv[2]);
    if (s) fprintf(stderr, "train_and_sample: %s\n", ddpm_last_error());
    else printf("trained %lld iterations, wrote %s\n", (long long)ddpm_trainer_step_count(tr), png);
    ddpm_pipeline_free(p);
    ddpm_trainer_free(tr);
    return s ? 1 : 0;
}
