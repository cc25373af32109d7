/* fuzz_edit: the editing inputs of `ddpm sample --init/--mask`:
 * ddpm_pipeline_load_images (an image file of any format the decoder reads,
 * converted and resized to the model's shape, or an IDX file of exactly the
 * model's shape, told apart by its magic) and ddpm_pipeline_load_mask (an
 * image made gray, resized and thresholded). The model is a small one in
 * memory, gray or RGB by the input's first byte. A load that succeeds gives
 * at least one image of the model's size (the allocation is touched whole
 * under ASan) and a 0/1 mask; a failed one leaves nothing allocated and
 * a one-line message. */
#include "fuzz.h"

#include "ddpm/pipeline.h"

static ddpm_pipeline *model(int in_ch) {
    static ddpm_pipeline *p[2];
    int k = in_ch == 3;
    if (p[k]) return p[k];
    ddpm_pipeline_model m = {.schedule = DDPM_SCHED_LINEAR, .T = 10, .objective = DDPM_OBJ_V};
    ddpm_unet_config_default(&m.cfg);
    m.cfg.in_ch = in_ch, m.cfg.res = 12, m.cfg.ch = 4, m.cfg.num_levels = 1, m.cfg.ch_mult[0] = 1;
    m.cfg.num_res_blocks = 1, m.cfg.num_attn = 0, m.cfg.groups = 2;
    size_t np = 0;
    float *w = ddpm_unet_describe(&m.cfg, &np, NULL) == DDPM_OK ? calloc(np, sizeof *w) : NULL;
    ddpm_pipeline_opts o = {.max_batch = 1};
    m.params = w;
    if (!w || ddpm_pipeline_create(&p[k], &m, &o) != DDPM_OK) {
        fprintf(stderr, "fuzz_edit: %s\n", ddpm_last_error());
        abort();
    }
    free(w);
    return p[k];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ddpm_pipeline *p = model(data[0] & 1 ? 3 : 1);
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    const char *path = fuzz_file(data + 1, size - 1);
    uint8_t *px = NULL;
    if (data[0] & 2) {
        if (ddpm_pipeline_load_mask(p, path, &px) != DDPM_OK) {
            fuzz_check_message(ddpm_last_error());
            FUZZ_CHECK(px == NULL);
            return 0;
        }
        for (int i = 0; i < in->cfg.res * in->cfg.res; i++) FUZZ_CHECK(px[i] <= 1);
    } else {
        int n = -1;
        if (ddpm_pipeline_load_images(p, path, &px, &n) != DDPM_OK) {
            fuzz_check_message(ddpm_last_error());
            FUZZ_CHECK(px == NULL);
            return 0;
        }
        FUZZ_CHECK(n >= 1 && px != NULL);
        unsigned sum = 0; /* reads every byte: ASan catches a short buffer */
        for (size_t i = 0; i < (size_t)n * in->D; i++) sum += px[i];
        (void)sum;
    }
    free(px);
    return 0;
}
