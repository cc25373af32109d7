/* clf_train.c: training the evaluation classifier, running it on u8
 * images, its files and its cache name (see classifier.h). */
#define _POSIX_C_SOURCE 200809L
#include "eval/clf_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/loss.h"
#include "ddpm/optim.h"
#include "eval/sha256.h"

#define CLF_WARMUP 100

void ddpm_clf_train_default(ddpm_clf_train_opts *o) {
    *o = (ddpm_clf_train_opts){.epochs = 3, .batch = 64, .lr = 2e-3f, .seed = 0, .limit = 0, .shift = 1};
}

static ddpm_status check_dataset(const ddpm_classifier *m, const ddpm_dataset *ds, const char *what) {
    const ddpm_clf_config *c = &m->cfg;
    if (ds->c != c->in_ch || ds->h != c->res || ds->w != c->res)
        return ddpm_error(DDPM_ERR_ARG, "%s images are %d x %d x %d, the classifier takes %d x %d x %d", what,
                          ds->c, ds->h, ds->w, c->in_ch, c->res, c->res);
    if (!ds->labels) return ddpm_error(DDPM_ERR_ARG, "%s images have no labels", what);
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= c->num_classes)
            return ddpm_error(DDPM_ERR_ARG, "%s label %d of image %d is outside 0..%d", what, ds->labels[i], i,
                              c->num_classes - 1);
    return DDPM_OK;
}

/* Translates each image of x (B, C, R, R) by (dy, dx) uniform in
 * [-shift, shift]^2 (two ddpm_rng_below draws per image), filling with -1
 * (black). */
static void random_shift(float *x, int B, int C, int R, int shift, ddpm_rng *rng) {
    float tmp[DDPM_CLF_MAX_RES * DDPM_CLF_MAX_RES];
    for (int b = 0; b < B; b++) {
        int dy = (int)ddpm_rng_below(rng, (uint32_t)(2 * shift + 1)) - shift;
        int dx = (int)ddpm_rng_below(rng, (uint32_t)(2 * shift + 1)) - shift;
        for (int c = 0; c < C; c++) {
            float *p = x + ((size_t)b * C + c) * R * R;
            memcpy(tmp, p, (size_t)R * R * sizeof(float));
            for (int i = 0; i < R; i++)
                for (int j = 0; j < R; j++) {
                    int si = i - dy, sj = j - dx;
                    p[i * R + j] = si >= 0 && si < R && sj >= 0 && sj < R ? tmp[si * R + sj] : -1.0f;
                }
        }
    }
}

/* One Adam step on a batch idx (B). Returns the batch loss in *loss. */
static ddpm_status train_step(ddpm_classifier *m, const ddpm_dataset *ds, const int *idx, int B, float *x,
                              int *lab, float *probs, float *adam_m, float *adam_v, float lr, int64_t step,
                              int shift, ddpm_rng *rng, double *loss) {
    const ddpm_adamw_cfg ac = {0.9f, 0.999f, 1e-8f, 0.0f};
    int K = m->cfg.num_classes;
    ddpm_dataset_to_float(x, ds, idx, B);
    ddpm_dataset_get_labels(lab, ds, idx, B);
    if (shift > 0) random_shift(x, B, m->cfg.in_ch, m->cfg.res, shift, rng);
    ddpm_status s = ddpm_clf_forward(m, NULL, x, B);
    if (s) return s;
    *loss = ddpm_softmax_ce_forward(probs, m->logits, lab, B, K);
    if (!isfinite(*loss)) return ddpm_error(DDPM_ERR_NUMERIC, "classifier training diverged (loss %g)", *loss);
    float *dlogits = probs + (size_t)B * K; /* second half of the probs buffer */
    memset(dlogits, 0, (size_t)B * K * sizeof(float));
    ddpm_softmax_ce_backward(dlogits, probs, lab, B, K, 1.0f);
    ddpm_clf_zero_grad(m);
    if ((s = ddpm_clf_backward(m, dlogits))) return s;
    ddpm_adamw_step(m->params, m->grads, adam_m, adam_v, m->nparams, &ac, lr, step);
    return DDPM_OK;
}

ddpm_status ddpm_clf_train(ddpm_classifier *m, const ddpm_dataset *ds, const ddpm_clf_train_opts *o,
                           ddpm_clf_progress_fn progress, void *ud) {
    if (!m->grads) return ddpm_error(DDPM_ERR_ARG, "classifier: training needs a training model");
    ddpm_status s = check_dataset(m, ds, "training");
    if (s) return s;
    int n = o->limit > 0 && o->limit < ds->n ? o->limit : ds->n, B = o->batch;
    if (B < 1 || B > m->max_batch || B > n || o->epochs < 1)
        return ddpm_error(DDPM_ERR_ARG, "classifier: batch %d, %d epochs for %d images", B, o->epochs, n);
    int64_t steps = (int64_t)o->epochs * (n / B);
    size_t D = (size_t)m->cfg.in_ch * m->cfg.res * m->cfg.res;
    float *x = ddpm_malloc((size_t)B * D * sizeof(float));
    float *probs = ddpm_malloc(2 * (size_t)B * m->cfg.num_classes * sizeof(float));
    float *am = ddpm_calloc(2 * m->nparams, sizeof(float));
    int *idx = ddpm_malloc((size_t)B * sizeof(int)), *lab = ddpm_malloc((size_t)B * sizeof(int));
    ddpm_epoch_order order = {0};
    if (!x || !probs || !am || !idx || !lab) s = ddpm_error(DDPM_ERR_NOMEM, "out of memory training the classifier");
    if (!s) s = ddpm_epoch_order_init(&order, n, o->seed ^ 0x5eed0fc1a551f1e5ULL);
    ddpm_clf_init_params(m, o->seed);
    ddpm_rng aug;
    ddpm_rng_seed(&aug, o->seed ^ 0xa11a7e5ULL);
    for (int64_t k = 0; !s && k < steps; k++) {
        double loss = 0.0;
        ddpm_epoch_order_next(&order, idx, B);
        float lr = ddpm_lr_at(k, steps, CLF_WARMUP, o->lr, DDPM_LR_COSINE, 0.0f);
        s = train_step(m, ds, idx, B, x, lab, probs, am, am + m->nparams, lr, k + 1, o->shift, &aug, &loss);
        if (!s && progress && progress(ud, (int)(k + 1), (int)steps, loss))
            s = ddpm_error(DDPM_ERR_INTERRUPTED, "classifier training interrupted");
    }
    ddpm_epoch_order_free(&order);
    ddpm_free(x);
    ddpm_free(probs);
    ddpm_free(am);
    ddpm_free(idx);
    ddpm_free(lab);
    return s;
}

/* ---- inference ------------------------------------------------------------------- */

ddpm_status ddpm_clf_embed(ddpm_classifier *m, float *feats, float *probs, const uint8_t *pixels, int n) {
    size_t D = (size_t)m->cfg.in_ch * m->cfg.res * m->cfg.res;
    int K = m->cfg.num_classes;
    float *x = ddpm_malloc((size_t)m->max_batch * D * sizeof(float));
    if (!x) return ddpm_error(DDPM_ERR_NOMEM, "out of memory running the classifier");
    ddpm_status s = DDPM_OK;
    for (int first = 0; first < n && !s; first += m->max_batch) {
        int B = n - first < m->max_batch ? n - first : m->max_batch;
        const uint8_t *px = pixels + (size_t)first * D;
        for (size_t i = 0; i < (size_t)B * D; i++) x[i] = (float)px[i] / 127.5f - 1.0f;
        if ((s = ddpm_clf_forward(m, NULL, x, B))) break;
        if (feats) memcpy(feats + (size_t)first * DDPM_CLF_FEATURES, m->h, (size_t)B * DDPM_CLF_FEATURES * sizeof(float));
        if (probs) ddpm_softmax_forward(probs + (size_t)first * K, m->logits, B, K);
    }
    ddpm_free(x);
    return s;
}

ddpm_status ddpm_clf_accuracy(ddpm_classifier *m, const ddpm_dataset *ds, double *acc) {
    ddpm_status s = check_dataset(m, ds, "test");
    if (s) return s;
    int K = m->cfg.num_classes;
    float *probs = ddpm_malloc((size_t)ds->n * K * sizeof(float));
    if (!probs) return ddpm_error(DDPM_ERR_NOMEM, "out of memory running the classifier");
    if (!(s = ddpm_clf_embed(m, NULL, probs, ds->pixels, ds->n))) {
        long right = 0;
        for (int i = 0; i < ds->n; i++) {
            const float *p = probs + (size_t)i * K;
            int best = 0;
            for (int k = 1; k < K; k++) best = p[k] > p[best] ? k : best;
            right += best == ds->labels[i];
        }
        *acc = ds->n ? (double)right / ds->n : 0.0;
    }
    ddpm_free(probs);
    return s;
}

/* ---- files ----------------------------------------------------------------------- */

ddpm_status ddpm_clf_save(ddpm_classifier *m, const char *path, const ddpm_st_meta *extra, int nextra) {
    if (nextra < 0 || nextra > 16) return ddpm_error(DDPM_ERR_ARG, "too many metadata entries");
    ddpm_st_entry e[CLF_NPARAMS];
    for (int i = 0; i < CLF_NPARAMS; i++) {
        e[i] = (ddpm_st_entry){.name = m->table[i].name, .ndim = m->table[i].ndim, .data = m->params + m->table[i].offset};
        for (int k = 0; k < m->table[i].ndim; k++) e[i].shape[k] = m->table[i].shape[k];
    }
    char v[4][16];
    snprintf(v[0], 16, "%d", m->cfg.in_ch);
    snprintf(v[1], 16, "%d", m->cfg.res);
    snprintf(v[2], 16, "%d", m->cfg.num_classes);
    snprintf(v[3], 16, "%d", DDPM_CLF_FEATURES);
    ddpm_st_meta meta[6 + 16] = {{"format", DDPM_CLF_FORMAT}, {"format_version", "1"}, {"in_ch", v[0]},
                                 {"res", v[1]}, {"num_classes", v[2]}, {"features", v[3]}};
    for (int i = 0; i < nextra; i++) meta[6 + i] = extra[i];
    return ddpm_st_save(path, e, CLF_NPARAMS, meta, 6 + nextra);
}

static ddpm_status meta_int(const ddpm_st_file *f, const char *path, const char *key, int *out) {
    const char *v = ddpm_st_meta_get(f, key);
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < 0 || x > 1000000)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': metadata '%s' is %s", path, key, v ? "not a valid integer" : "missing");
    *out = (int)x;
    return DDPM_OK;
}

static ddpm_status load_into(ddpm_classifier **out, const ddpm_st_file *f, const char *path, int max_batch) {
    const char *fmt = ddpm_st_meta_get(f, "format");
    if (!fmt || strcmp(fmt, DDPM_CLF_FORMAT))
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': not an evaluation network (metadata 'format' is %s)", path,
                          fmt ? fmt : "missing");
    ddpm_clf_config c;
    int feat = 0;
    ddpm_status s;
    if ((s = meta_int(f, path, "in_ch", &c.in_ch)) || (s = meta_int(f, path, "res", &c.res)) ||
        (s = meta_int(f, path, "num_classes", &c.num_classes)) || (s = meta_int(f, path, "features", &feat)))
        return s;
    if (feat != DDPM_CLF_FEATURES)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': %d features (this build uses %d)", path, feat, DDPM_CLF_FEATURES);
    if (ddpm_clf_config_validate(&c)) return ddpm_error(DDPM_ERR_FORMAT, "'%s': %s", path, ddpm_last_error());
    if (f->ntensors != CLF_NPARAMS)
        return ddpm_error(DDPM_ERR_FORMAT, "'%s': %d tensors (expected %d)", path, f->ntensors, CLF_NPARAMS);
    if ((s = ddpm_clf_create(out, &c, max_batch, false))) return s;
    for (int i = 0; i < CLF_NPARAMS; i++) {
        const clf_param *p = &(*out)->table[i];
        const ddpm_st_tensor *t = ddpm_st_find(f, p->name);
        bool ok = t && t->ndim == p->ndim;
        for (int k = 0; ok && k < p->ndim; k++) ok = t->shape[k] == p->shape[k];
        for (size_t j = 0; ok && j < t->numel; j++) ok = isfinite(t->data[j]);
        if (!ok) {
            ddpm_clf_free(*out);
            *out = NULL;
            return ddpm_error(DDPM_ERR_FORMAT, "'%s': tensor '%s' is %s", path, p->name,
                              t ? "of the wrong shape or not finite" : "missing");
        }
        memcpy((*out)->params + p->offset, t->data, p->numel * sizeof(float));
    }
    return DDPM_OK;
}

ddpm_status ddpm_clf_load(ddpm_classifier **out, const char *path, int max_batch, const char *meta_key,
                          char *meta_out, size_t cap) {
    *out = NULL;
    ddpm_st_file f;
    ddpm_status s = ddpm_st_load(&f, path);
    if (s) return s;
    s = load_into(out, &f, path, max_batch);
    if (!s && meta_key && meta_out) {
        const char *v = ddpm_st_meta_get(&f, meta_key);
        snprintf(meta_out, cap, "%s", v ? v : "");
    }
    ddpm_st_free(&f);
    return s;
}

ddpm_status ddpm_file_hash16(char hex[17], const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    ddpm_sha256 c;
    ddpm_sha256_init(&c);
    uint8_t buf[1 << 16], dg[32];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, fp)) > 0) ddpm_sha256_update(&c, buf, r);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return ddpm_error(DDPM_ERR_IO, "cannot read '%s'", path);
    ddpm_sha256_final(&c, dg);
    ddpm_sha256_hex(hex, dg, 8);
    return DDPM_OK;
}

ddpm_status ddpm_clf_cache_path(char *out, size_t cap, const char *cache_dir, const char *data_dir,
                                const ddpm_dataset *train, const ddpm_clf_train_opts *o) {
    char recipe[256];
    snprintf(recipe, sizeof recipe, "ddpm-classifier v1 c1=%d c2=%d f=%d epochs=%d batch=%d lr=%.9g seed=%llu "
             "shift=%d limit=%d n=%d c=%d h=%d w=%d k=%d", CLF_C1, CLF_C2, DDPM_CLF_FEATURES, o->epochs, o->batch,
             (double)o->lr, (unsigned long long)o->seed, o->shift, o->limit, train->n, train->c, train->h, train->w,
             train->num_classes);
    ddpm_sha256 c;
    ddpm_sha256_init(&c);
    ddpm_sha256_update(&c, recipe, strlen(recipe));
    ddpm_sha256_update(&c, train->pixels, (size_t)train->n * train->c * train->h * train->w);
    for (int i = 0; train->labels && i < train->n; i++) {
        uint8_t l = (uint8_t)train->labels[i];
        ddpm_sha256_update(&c, &l, 1);
    }
    uint8_t dg[32];
    char hex[17];
    ddpm_sha256_final(&c, dg);
    ddpm_sha256_hex(hex, dg, 8);
    /* the dataset's name: the last non-empty component of data_dir */
    size_t len = strlen(data_dir);
    while (len > 1 && data_dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && data_dir[b - 1] != '/') b--;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(len - b), data_dir + b);
    for (char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            *p = '_';
    int w = snprintf(out, cap, "%s/%s-%s.safetensors", cache_dir, name[0] ? name : "data", hex);
    if (w < 0 || (size_t)w >= cap) return ddpm_error(DDPM_ERR_ARG, "cache path too long");
    return DDPM_OK;
}
