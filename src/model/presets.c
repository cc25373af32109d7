/* presets.c: model presets for image folders at 32 and 64 px (see unet.h).
 *
 * Both follow the DDPM CIFAR-10 layout (Ho et al. 2020, appendix B): four
 * levels with widths ch x 1,2,2,2, two ResBlocks per level, self-attention
 * at 16 x 16 only, so the bottom level works at res / 8. The widths are cut
 * for a 2-core CPU:
 *   32 px  ch 32, groups 8   (DDPM's CIFAR model is ch 128: 16x the FLOPs)
 *   64 px  ch 64, groups 32  (the suggestion for the seeds' 64 px
 *                             configuration, ch 64 and ch_mult 1,2,2,2, not
 *                             checked against the seeds' code; 32 groups as
 *                             in DDPM)
 * At 32 px the levels are 32, 16, 8, 4; at 64 px 64, 32, 16, 8.
 */
#include <string.h>

#include "ddpm/unet.h"

typedef struct {
    int res, ch, groups;
} preset;

static const preset PRESETS[] = {{32, 32, 8}, {64, 64, 32}};

bool ddpm_unet_preset(ddpm_unet_config *cfg, int in_ch, int res) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++) {
        const preset *p = &PRESETS[i];
        if (p->res != res) continue;
        ddpm_unet_config_default(cfg);
        cfg->in_ch = in_ch;
        cfg->res = res;
        cfg->ch = p->ch;
        cfg->num_levels = 4;
        cfg->ch_mult[0] = 1, cfg->ch_mult[1] = 2, cfg->ch_mult[2] = 2, cfg->ch_mult[3] = 2;
        cfg->num_res_blocks = 2;
        cfg->num_attn = 1;
        cfg->attn_res[0] = 16;
        cfg->groups = p->groups;
        return true;
    }
    return false;
}
