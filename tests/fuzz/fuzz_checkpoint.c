/* fuzz_checkpoint: ddpm_checkpoint_open (safetensors load, config from the
 * metadata, tensor names/shapes/finiteness against the layout the config
 * implies), ddpm_checkpoint_read of every prefix present, then the trainer's
 * resume path (ddpm_trainer_resume: training config, step, seed and RNG state
 * from the metadata). Resume allocates a model for the checkpoint's batch and
 * image size, so it runs only for small ones (batch <= 8, res <= 32): the
 * parsing is the same, only the allocation is bounded. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "ddpm/checkpoint.h"
#include "ddpm/train.h"

static long meta_long(const ddpm_checkpoint *ck, const char *key) {
    const char *v = ddpm_checkpoint_meta(ck, key);
    if (!v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    return *end ? -1 : x;
}

static void read_all(const ddpm_checkpoint *ck) {
    float *buf = malloc((ck->total ? ck->total : 1) * sizeof(float));
    if (!buf) abort();
    const char *prefixes[4] = {"", "ema.", "adam_m.", "adam_v."};
    bool present[4] = {true, ck->has_ema, ck->has_adam, ck->has_adam};
    for (int p = 0; p < 4; p++) {
        if (!present[p]) continue;
        FUZZ_CHECK(ddpm_checkpoint_read(ck, prefixes[p], buf) == DDPM_OK);
        for (size_t i = 0; i < ck->total; i++) FUZZ_CHECK(isfinite(buf[i]));
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, path) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        return 0;
    }
    FUZZ_CHECK(ddpm_unet_config_validate(&ck.cfg) == DDPM_OK);
    read_all(&ck);
    long batch = meta_long(&ck, "batch");
    bool small = batch >= 1 && batch <= 8 && ck.cfg.res <= 32;
    ddpm_checkpoint_close(&ck);
    if (!small) return 0;
    ddpm_trainer *tr;
    if (ddpm_trainer_resume(&tr, path, 0) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        FUZZ_CHECK(tr == NULL);
        return 0;
    }
    FUZZ_CHECK(ddpm_trainer_step_count(tr) >= 0);
    FUZZ_CHECK(ddpm_trainer_config(tr)->batch == batch);
    ddpm_trainer_free(tr);
    return 0;
}
