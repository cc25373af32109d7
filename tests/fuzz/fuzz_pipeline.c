/* fuzz_pipeline: ddpm_pipeline_open (checkpoint validation, the policy for
 * missing schedule / T / objective keys, class names from JSON metadata),
 * then, for small models, the label parser on a name taken from the input
 * and a one-step draw of one image: every value it returns is finite and
 * every error is one line. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "ddpm/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    ddpm_pipeline_opts po = {.raw_weights = size % 2 == 1, .max_batch = 2};
    ddpm_pipeline *p;
    if (ddpm_pipeline_open(&p, path, &po) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        FUZZ_CHECK(p == NULL);
        return 0;
    }
    const ddpm_pipeline_info *in = ddpm_pipeline_info_get(p);
    FUZZ_CHECK(in->T >= 2 && in->D > 0);
    FUZZ_CHECK(in->ema == (in->has_ema && !po.raw_weights));
    for (int k = 0; k < in->num_class_names; k++) FUZZ_CHECK(ddpm_pipeline_class_name(p, k) != NULL);
    int label;
    char name[16] = "";
    memcpy(name, data, size < sizeof name - 1 ? size : sizeof name - 1);
    if (ddpm_pipeline_label(p, name, &label) == DDPM_OK) FUZZ_CHECK(label >= 0 && label < in->cfg.num_classes);
    else fuzz_check_message(ddpm_last_error());
    if (in->cfg.res <= 16 && in->cfg.ch <= 16) {
        ddpm_draw_opts o;
        ddpm_draw_opts_default(&o);
        o.sampler = (ddpm_sampler_opts){.kind = DDPM_SAMPLER_DDIM, .steps = 1};
        float *x = malloc(in->D * sizeof(float));
        if (!x) abort();
        ddpm_status st = ddpm_pipeline_draw(p, &o, 0, 1, x);
        if (st == DDPM_OK)
            for (size_t i = 0; i < in->D; i++) FUZZ_CHECK(!isnan(x[i]));
        else
            fuzz_check_message(ddpm_last_error());
        free(x);
    }
    ddpm_pipeline_free(p);
    return 0;
}
