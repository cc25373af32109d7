/* checkpoint.c: see checkpoint.h. */
#include "ddpm/checkpoint.h"
#include "ddpm/meta.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPREFIX 4
static const char *const PREFIXES[NPREFIX] = {"", "ema.", "adam_m.", "adam_v."};

/* ---- config <-> metadata -------------------------------------------------------- */

static const char *const CONFIG_KEYS[] = {DDPM_META_IN_CH, DDPM_META_RES, DDPM_META_CH, DDPM_META_CH_MULT,
                                          DDPM_META_NUM_RES_BLOCKS, DDPM_META_ATTN_RES, DDPM_META_GROUPS,
                                          DDPM_META_DROPOUT, DDPM_META_NUM_CLASSES};
#define NCONFIG ((int)(sizeof CONFIG_KEYS / sizeof *CONFIG_KEYS))

static bool is_config_key(const char *k) {
    for (int i = 0; i < NCONFIG; i++)
        if (!strcmp(k, CONFIG_KEYS[i])) return true;
    return !strcmp(k, DDPM_META_FORMAT) || !strcmp(k, DDPM_META_FORMAT_VERSION);
}

static ddpm_status meta_int(const ddpm_st_file *f, const char *path, const char *key, int *out) {
    int64_t v = 0;
    ddpm_status s = ddpm_meta_i64(f, path, key, 0, 1000000, &v);
    *out = (int)v;
    return s;
}

static ddpm_status meta_list(const ddpm_st_file *f, const char *path, const char *key, int *out, int *n,
                             bool allow_empty) {
    const char *v = ddpm_st_meta_get(f, key);
    if (!v) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata lacks '%s'", path, key);
    if (allow_empty && (!*v || !strcmp(v, "none"))) {
        *n = 0;
        return DDPM_OK;
    }
    *n = ddpm_parse_int_list(v, out, DDPM_MAX_LEVELS);
    if (*n < 0) return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is not an integer list: '%s'", path, key,
                                    ddpm_show(v).s);
    return DDPM_OK;
}

ddpm_status ddpm_config_from_meta(ddpm_unet_config *c, const ddpm_st_file *f, const char *path) {
    memset(c, 0, sizeof *c);
    const char *fmt = ddpm_st_meta_get(f, DDPM_META_FORMAT);
    if (!fmt || strcmp(fmt, "ddpm"))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': not a ddpm checkpoint (metadata 'format' is %s%s%s)", path,
                          fmt ? "'" : "", fmt ? ddpm_show(fmt).s : "missing", fmt ? "'" : "");
    ddpm_status s;
    if ((s = meta_int(f, path, DDPM_META_IN_CH, &c->in_ch)) || (s = meta_int(f, path, DDPM_META_RES, &c->res)) ||
        (s = meta_int(f, path, DDPM_META_CH, &c->ch)) ||
        (s = meta_list(f, path, DDPM_META_CH_MULT, c->ch_mult, &c->num_levels, false)) ||
        (s = meta_int(f, path, DDPM_META_NUM_RES_BLOCKS, &c->num_res_blocks)) ||
        (s = meta_list(f, path, DDPM_META_ATTN_RES, c->attn_res, &c->num_attn, true)) ||
        (s = meta_int(f, path, DDPM_META_GROUPS, &c->groups)) ||
        (s = meta_int(f, path, DDPM_META_NUM_CLASSES, &c->num_classes)))
        return s;
    if ((s = ddpm_meta_float(f, path, DDPM_META_DROPOUT, -INFINITY, INFINITY, &c->dropout))) return s;
    if ((s = ddpm_unet_config_validate(c))) {
        char why[256]; /* the message is about to be overwritten */
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        return ddpm_error(s, "'%s': invalid model config: %s", path, why);
    }
    return DDPM_OK;
}

/* ---- save ------------------------------------------------------------------------- */

ddpm_status ddpm_checkpoint_save(const char *path, const ddpm_unet_config *cfg, const float *params,
                                 const ddpm_checkpoint_extras *x) {
    ddpm_checkpoint_extras none = {0};
    if (!x) x = &none;
    if (x->nextra < 0 || x->nextra > DDPM_CKPT_MAX_EXTRA)
        return ddpm_error(DDPM_ERR_ARG, "too many metadata entries (%d)", x->nextra);
    for (int i = 0; i < x->nextra; i++)
        if (is_config_key(x->extra[i].key))
            return ddpm_error(DDPM_ERR_ARG, "metadata key '%s' is reserved", x->extra[i].key);

    ddpm_param_info *table;
    int n;
    size_t total;
    ddpm_status s = ddpm_unet_param_layout(cfg, &table, &n, &total);
    if (s) return s;
    const float *src[NPREFIX] = {params, x->ema, x->adam_m, x->adam_v};
    ddpm_st_entry *e = calloc((size_t)n * NPREFIX, sizeof *e);
    char (*names)[80] = calloc((size_t)n * NPREFIX, sizeof *names);
    int ne = 0;
    if (!e || !names) {
        s = ddpm_error(DDPM_ERR_NOMEM, "out of memory saving '%s'", path);
        goto done;
    }
    for (int p = 0; p < NPREFIX; p++) {
        if (!src[p]) continue;
        for (int i = 0; i < n; i++, ne++) {
            snprintf(names[ne], sizeof names[ne], "%s%s", PREFIXES[p], table[i].name);
            e[ne].name = names[ne];
            e[ne].ndim = table[i].ndim;
            for (int d = 0; d < table[i].ndim; d++) e[ne].shape[d] = table[i].shape[d];
            e[ne].data = src[p] + table[i].offset;
        }
    }

    char vals[NCONFIG][64];
    snprintf(vals[0], 64, "%d", cfg->in_ch);
    snprintf(vals[1], 64, "%d", cfg->res);
    snprintf(vals[2], 64, "%d", cfg->ch);
    ddpm_format_int_list(vals[3], 64, cfg->ch_mult, cfg->num_levels);
    snprintf(vals[4], 64, "%d", cfg->num_res_blocks);
    if (cfg->num_attn) ddpm_format_int_list(vals[5], 64, cfg->attn_res, cfg->num_attn);
    else snprintf(vals[5], 64, "none");
    snprintf(vals[6], 64, "%d", cfg->groups);
    snprintf(vals[7], 64, "%.9g", (double)cfg->dropout);
    snprintf(vals[8], 64, "%d", cfg->num_classes);
    ddpm_st_meta meta[2 + NCONFIG + DDPM_CKPT_MAX_EXTRA];
    int nm = 0;
    meta[nm++] = (ddpm_st_meta){DDPM_META_FORMAT, "ddpm"};
    meta[nm++] = (ddpm_st_meta){DDPM_META_FORMAT_VERSION, "1"};
    for (int i = 0; i < NCONFIG; i++) meta[nm++] = (ddpm_st_meta){CONFIG_KEYS[i], vals[i]};
    for (int i = 0; i < x->nextra; i++) meta[nm++] = x->extra[i];
    s = ddpm_st_save(path, e, ne, meta, nm);
done:
    free(e);
    free(names);
    free(table);
    return s;
}

/* ---- open ------------------------------------------------------------------------- */

static int find_table(const ddpm_checkpoint *ck, const char *name) {
    for (int i = 0; i < ck->ntable; i++)
        if (!strcmp(ck->table[i].name, name)) return i;
    return -1;
}

static ddpm_status validate_tensors(ddpm_checkpoint *ck) {
    const char *path = ck->path;
    int count[NPREFIX] = {0};
    for (int k = 0; k < ck->file.ntensors; k++) {
        const ddpm_st_tensor *t = &ck->file.tensors[k];
        int p = 0;
        for (int q = 1; q < NPREFIX; q++)
            if (!strncmp(t->name, PREFIXES[q], strlen(PREFIXES[q]))) p = q;
        const char *base = t->name + strlen(PREFIXES[p]);
        int i = find_table(ck, base);
        if (i < 0) return ddpm_error(DDPM_ERR_FORMAT, "'%s': unexpected tensor '%s' for this model config", path,
                                     ddpm_show(t->name).s);
        const ddpm_param_info *pi = &ck->table[i];
        bool same = t->ndim == pi->ndim;
        for (int d = 0; same && d < pi->ndim; d++) same = t->shape[d] == pi->shape[d];
        if (!same) {
            char want[64], got[64];
            size_t a = 0, b = 0;
            want[0] = got[0] = '\0';
            for (int d = 0; d < pi->ndim; d++) a += (size_t)snprintf(want + a, sizeof want - a, d ? ",%d" : "%d", pi->shape[d]);
            for (int d = 0; d < t->ndim && b < sizeof got; d++)
                b += (size_t)snprintf(got + b, sizeof got - b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': tensor '%s' has shape [%s], the config implies [%s]", path,
                              ddpm_show(t->name).s, got, want);
        }
        size_t j = ddpm_first_nonfinite(t->data, t->numel);
        if (j < t->numel)
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': tensor '%s' holds a non-finite value at element %zu", path,
                              ddpm_show(t->name).s, j);
        count[p]++;
    }
    for (int p = 0; p < NPREFIX; p++) {
        if ((p == 0 || count[p] > 0) && count[p] != ck->ntable) {
            /* name the first missing tensor */
            for (int i = 0; i < ck->ntable; i++) {
                char name[96];
                snprintf(name, sizeof name, "%s%s", PREFIXES[p], ck->table[i].name);
                if (!ddpm_st_find(&ck->file, name))
                    return ddpm_error(DDPM_ERR_FORMAT, "'%s': missing tensor '%s'", path, name);
            }
        }
    }
    if ((count[2] > 0) != (count[3] > 0))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': has %s but not %s", path, count[2] ? "adam_m.*" : "adam_v.*",
                          count[2] ? "adam_v.*" : "adam_m.*");
    ck->has_ema = count[1] > 0;
    ck->has_adam = count[2] > 0;
    return DDPM_OK;
}

ddpm_status ddpm_checkpoint_open(ddpm_checkpoint *ck, const char *path) {
    memset(ck, 0, sizeof *ck);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    ddpm_status s = ddpm_st_load(&ck->file, path);
    if (s) return s;
    if ((s = ddpm_config_from_meta(&ck->cfg, &ck->file, path)) ||
        (s = ddpm_unet_param_layout(&ck->cfg, &ck->table, &ck->ntable, &ck->total)) ||
        (s = validate_tensors(ck))) {
        ddpm_checkpoint_close(ck);
        return s;
    }
    return DDPM_OK;
}

ddpm_status ddpm_checkpoint_read(const ddpm_checkpoint *ck, const char *prefix, float *dst) {
    for (int i = 0; i < ck->ntable; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s%s", prefix, ck->table[i].name);
        const ddpm_st_tensor *t = ddpm_st_find(&ck->file, name);
        if (!t) return ddpm_error(DDPM_ERR_FORMAT, "'%s': missing tensor '%s'", ck->path, name);
        memcpy(dst + ck->table[i].offset, t->data, t->numel * sizeof(float));
    }
    return DDPM_OK;
}

const char *ddpm_checkpoint_meta(const ddpm_checkpoint *ck, const char *key) {
    return ddpm_st_meta_get(&ck->file, key);
}

void ddpm_checkpoint_close(ddpm_checkpoint *ck) {
    ddpm_st_free(&ck->file);
    free(ck->table);
    ck->table = NULL;
    ck->ntable = 0;
}
