/* fuzz_toy: the `ddpm toy` checkpoint (ddpm_toy_resume: safetensors load,
 * MLP tensors, Adam moments, the training points, the loss history and the
 * config, scaling, step and rng state from the metadata) on arbitrary bytes.
 * On success the step is within the run, the points are finite and the
 * history of every step so far is readable. */
#include "fuzz.h"

#include <math.h>

#include "ddpm/toy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    ddpm_toy *t;
    if (ddpm_toy_resume(&t, path, 0) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        return 0;
    }
    const ddpm_toy_config *c = ddpm_toy_get_config(t);
    FUZZ_CHECK(ddpm_toy_config_validate(c) == DDPM_OK);
    int64_t step = ddpm_toy_step_count(t);
    FUZZ_CHECK(step >= 0 && step <= c->iters);
    int n;
    const float *xy = ddpm_toy_data(t, &n);
    FUZZ_CHECK(n >= 1);
    for (int i = 0; i < 2 * n; i++) FUZZ_CHECK(isfinite(xy[i]));
    const float *loss = ddpm_toy_loss_log(t), *gn = ddpm_toy_grad_norm_log(t);
    volatile float sink = 0;
    for (int64_t i = 0; i < step; i++) sink += loss[i] + gn[i];
    (void)sink;
    FUZZ_CHECK(ddpm_toy_data_label(t) != NULL);
    ddpm_toy_free(t);
    return 0;
}
