/* sample_checkpoint.c: open a trained checkpoint, draw N images, write a PNG grid.
 *     sample_checkpoint CKPT N SEED OUT.png
 * draws what `ddpm sample -c CKPT -n N --seed SEED -o OUT.png` draws. */
#include <stdio.h>
#include <stdlib.h>

#include "ddpm/image.h"
#include "ddpm/pipeline.h"

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: sample_checkpoint CKPT N SEED OUT.png\n"), 2;
    int n = atoi(argv[2]);
    ddpm_pipeline *p;
    if (ddpm_pipeline_open(&p, argv[1], NULL)) return fprintf(stderr, "%s\n", ddpm_last_error()), 1;
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    ddpm_draw_opts o;
    ddpm_pipeline_draw_opts_default(p, &o); /* the model's sampler; labels cycle for a conditional model */
    o.seed = strtoull(argv[3], NULL, 10);
    float *x = malloc((size_t)n * in->D * sizeof(float));
    ddpm_status s = x ? ddpm_pipeline_draw(p, &o, 0, n, x) : DDPM_ERR_NOMEM;
    if (!s) s = ddpm_image_write_grid(argv[4], x, n, in->cfg.in_ch, in->cfg.res, in->cfg.res, 0, -1.0f, 1.0f);
    if (s) fprintf(stderr, "%s\n", ddpm_last_error());
    free(x);
    ddpm_pipeline_free(p);
    return s ? 1 : 0;
}
