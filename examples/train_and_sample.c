/* train_and_sample.c: the library from outside the CLI. Trains a tiny UNet for
 * a few iterations on synthetic 8x8 images (bars), samples a 2x2 grid from the
 * EMA weights with DDIM and writes it to the PNG named on the command line.
 *     cc train_and_sample.c $(pkg-config --cflags --libs ddpm) -o train_and_sample */
#include <stdio.h>
#include <string.h>

#include "ddpm/diffusion.h"
#include "ddpm/image.h"
#include "ddpm/train.h"

static ddpm_status eps_fn(void *model, float *eps, const float *x, const int *t, int n) {
    return ddpm_unet_forward(model, eps, x, t, NULL, n);
}

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
    ddpm_unet *inf = NULL;
    float x[GRID * S * S], work[2 * GRID * S * S]; /* ddpm_sample_loop_workspace */
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    ddpm_rng_fill_normal(&rng, x, GRID * S * S);
    ddpm_sampler_opts o = {.kind = DDPM_SAMPLER_DDIM, .steps = 10};
    ddpm_status s = ddpm_trainer_create(&tr, &cfg);
    if (!s) s = ddpm_trainer_set_data(tr, &ds, "bars");
    if (!s) s = ddpm_trainer_run(tr, cfg.iters, NULL, NULL); /* no progress callback */
    if (!s) s = ddpm_unet_create(&inf, &cfg.model, GRID, false);
    if (!s) memcpy(ddpm_unet_params(inf), ddpm_trainer_ema(tr), ddpm_unet_num_params(inf) * sizeof(float));
    if (!s) s = ddpm_sample_loop(x, GRID, S * S, ddpm_trainer_schedule(tr), &o, eps_fn, inf, &rng, work, NULL, NULL);
    if (!s) s = ddpm_image_write_grid(png, x, GRID, 1, S, S, 2, -1.0f, 1.0f);
    if (s) fprintf(stderr, "train_and_sample: %s\n", ddpm_last_error());
    else printf("trained %lld iterations, wrote %s\n", (long long)ddpm_trainer_step_count(tr), png);
    ddpm_unet_free(inf);
    ddpm_trainer_free(tr);
    return s ? 1 : 0;
}
