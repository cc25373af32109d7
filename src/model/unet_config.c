/* unet_config.c: the UNet config: the default MNIST model (docs/design.md §4),
 * validation, and the "1,2,2" int lists of ch_mult and attn_res. See unet.h. */
#include "model/unet_internal.h"

#include <stdio.h>
#include <string.h>

void ddpm_unet_config_default(ddpm_unet_config *c) {
    memset(c, 0, sizeof *c);
    c->in_ch = 1;
    c->res = 28;
    c->ch = 32;
    c->ch_mult[0] = 1;
    c->ch_mult[1] = 2;
    c->ch_mult[2] = 2;
    c->num_levels = 3;
    c->num_res_blocks = 2;
    c->attn_res[0] = 7;
    c->num_attn = 1;
    c->groups = 8;
    c->dropout = 0.0f;
    c->num_classes = 0;
}

ddpm_status ddpm_unet_config_validate(const ddpm_unet_config *c) {
    if (c->in_ch < 1 || c->in_ch > 64) return ddpm_error(DDPM_ERR_ARG, "channels must be in [1, 64], got %d", c->in_ch);
    if (c->res < 1 || c->res > 1024) return ddpm_error(DDPM_ERR_ARG, "image size must be in [1, 1024], got %d", c->res);
    if (c->ch < 2 || c->ch > 4096 || c->ch % 2)
        return ddpm_error(DDPM_ERR_ARG, "base width must be even and in [2, 4096], got %d", c->ch);
    if (c->num_levels < 1 || c->num_levels > DDPM_MAX_LEVELS)
        return ddpm_error(DDPM_ERR_ARG, "the channel multipliers need 1 to %d levels, got %d", DDPM_MAX_LEVELS, c->num_levels);
    if (c->num_res_blocks < 1 || c->num_res_blocks > UNET_MAX_RES_BLOCKS)
        return ddpm_error(DDPM_ERR_ARG, "ResBlocks per level must be in [1, %d], got %d", UNET_MAX_RES_BLOCKS,
                          c->num_res_blocks);
    if (c->groups < 1) return ddpm_error(DDPM_ERR_ARG, "groups must be >= 1, got %d", c->groups);
    if (c->ch % c->groups)
        return ddpm_error(DDPM_ERR_ARG, "width %d is not divisible by %d groups", c->ch, c->groups);
    for (int i = 0; i < c->num_levels; i++) {
        if (c->ch_mult[i] < 1 || c->ch_mult[i] > 64)
            return ddpm_error(DDPM_ERR_ARG, "channel multiplier %d out of range [1, 64]", c->ch_mult[i]);
        if ((c->ch * c->ch_mult[i]) % c->groups)
            return ddpm_error(DDPM_ERR_ARG, "width %d is not divisible by %d groups", c->ch * c->ch_mult[i], c->groups);
    }
    int f = 1 << (c->num_levels - 1);
    if (c->res % f)
        return ddpm_error(DDPM_ERR_ARG, "image size %d is not divisible by %d (%d levels halve it %d times)",
                          c->res, f, c->num_levels, c->num_levels - 1);
    if (c->num_attn < 0 || c->num_attn > DDPM_MAX_LEVELS)
        return ddpm_error(DDPM_ERR_ARG, "at most %d attention resolutions", DDPM_MAX_LEVELS);
    for (int i = 0; i < c->num_attn; i++)
        if (c->attn_res[i] < 1) return ddpm_error(DDPM_ERR_ARG, "attention resolution must be >= 1, got %d", c->attn_res[i]);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return ddpm_error(DDPM_ERR_ARG, "dropout must be in [0, 1), got %g", (double)c->dropout);
    if (c->num_classes < 0 || c->num_classes > 100000)
        return ddpm_error(DDPM_ERR_ARG, "classes must be in [0, 100000], got %d", c->num_classes);
    return DDPM_OK;
}

int ddpm_parse_int_list(const char *s, int *out, int cap) {
    int n = 0;
    const char *p = s;
    if (!*p) return -1;
    for (;;) {
        if (*p < '0' || *p > '9') return -1;
        long v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            if (v > 1000000) return -1;
        }
        if (n == cap) return -1;
        out[n++] = (int)v;
        if (*p == '\0') return n;
        if (*p++ != ',') return -1;
    }
}

void ddpm_format_int_list(char *buf, size_t cap, const int *v, int n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ",%d" : "%d", v[i]);
}

/* ch_mult as "1,2,2", attn_res as "7" or "none". */
static void format_lists(char *mult, char *attn, size_t cap, const ddpm_unet_config *c) {
    ddpm_format_int_list(mult, cap, c->ch_mult, c->num_levels);
    if (c->num_attn) ddpm_format_int_list(attn, cap, c->attn_res, c->num_attn);
    else snprintf(attn, cap, "none");
}

void ddpm_unet_config_describe(char *buf, size_t cap, const ddpm_unet_config *c) {
    char mult[64], attn[64];
    format_lists(mult, attn, sizeof mult, c);
    snprintf(buf, cap, "in_ch=%d res=%d ch=%d ch_mult=%s num_res_blocks=%d attn_res=%s groups=%d dropout=%g num_classes=%d",
             c->in_ch, c->res, c->ch, mult, c->num_res_blocks, attn, c->groups, (double)c->dropout, c->num_classes);
}

void ddpm_unet_config_name(char *buf, size_t cap, const ddpm_unet_config *c) {
    char mult[64], attn[64];
    format_lists(mult, attn, sizeof mult, c);
    int n = snprintf(buf, cap, "ch%d-mult%s-rb%d-attn%s-g%d", c->ch, mult, c->num_res_blocks, attn, c->groups);
    if (c->num_classes > 0 && n > 0 && (size_t)n < cap) n += snprintf(buf + n, cap - (size_t)n, "-cls%d", c->num_classes);
    if (c->dropout > 0 && n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "-drop%g", (double)c->dropout);
}
