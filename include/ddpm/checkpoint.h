/* checkpoint.h: models and training state in safetensors files (docs/design.md §6).
 *
 * Tensor names are the PyTorch state_dict keys of scripts/torch_reference.py,
 * so the model loads straight into PyTorch. Training state rides along under
 * prefixes: "ema." (EMA weights), "adam_m." and "adam_v." (Adam moments).
 * "__metadata__" holds strings: format=ddpm, format_version, the model config
 * (in_ch, res, ch, ch_mult, num_res_blocks, attn_res, groups, dropout,
 * num_classes) and whatever training state the caller adds (step, schedule,
 * rng state, ...).
 *
 * Opening validates the file completely before anything is used: on top of
 * the safetensors checks, the config must be valid, every tensor the config
 * implies must be present with exactly its shape (for each prefix present,
 * all of them), no other tensor may appear, and every value must be finite.
 * Saving is atomic (safetensors.h).
 */
#ifndef DDPM_CHECKPOINT_H
#define DDPM_CHECKPOINT_H

#include <stdbool.h>

#include "ddpm/safetensors.h"
#include "ddpm/unet.h"

#define DDPM_CKPT_MAX_EXTRA 64

typedef struct {
    ddpm_st_file file;
    ddpm_unet_config cfg;
    ddpm_param_info *table; /* layout the config implies */
    int ntable;
    size_t total;           /* parameters */
    bool has_ema, has_adam;
    char path[1024];
} ddpm_checkpoint;

/* What to save besides the model: any of the three may be NULL. extra holds
 * training-state metadata (at most DDPM_CKPT_MAX_EXTRA entries, keys must not
 * clash with the config keys). */
typedef struct {
    const float *ema, *adam_m, *adam_v;
    const ddpm_st_meta *extra;
    int nextra;
} ddpm_checkpoint_extras;

ddpm_status ddpm_checkpoint_save(const char *path, const ddpm_unet_config *cfg, const float *params,
                                 const ddpm_checkpoint_extras *extras);

ddpm_status ddpm_checkpoint_open(ddpm_checkpoint *ck, const char *path);
/* Copies the tensors under `prefix` ("" for the model, "ema.", "adam_m.",
 * "adam_v.") into dst, laid out as ddpm_unet_params (total floats). */
ddpm_status ddpm_checkpoint_read(const ddpm_checkpoint *ck, const char *prefix, float *dst);
const char *ddpm_checkpoint_meta(const ddpm_checkpoint *ck, const char *key);
void ddpm_checkpoint_close(ddpm_checkpoint *ck);

/* The config <-> metadata mapping, exposed for `ddpm info`. */
ddpm_status ddpm_config_from_meta(ddpm_unet_config *cfg, const ddpm_st_file *f, const char *path);

#endif
