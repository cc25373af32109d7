/* classifier.c: the evaluation CNN (see classifier.h): layout, forward,
 * backward. Training, inference on u8 images and files are in
 * clf_train.c. */
#include "eval/clf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/act.h"
#include "ddpm/conv.h"
#include "ddpm/linear.h"
#include "ddpm/pool.h"

ddpm_status ddpm_clf_config_validate(const ddpm_clf_config *c) {
    if (c->in_ch < 1 || c->in_ch > 4)
        return ddpm_error(DDPM_ERR_ARG, "classifier: %d image channels (expected 1..4)", c->in_ch);
    if (c->res < 4 || c->res > DDPM_CLF_MAX_RES || c->res % 4)
        return ddpm_error(DDPM_ERR_ARG, "classifier: image size %d (expected a multiple of 4 in 4..256)", c->res);
    if (c->num_classes < 2 || c->num_classes > DDPM_CLF_MAX_CLASSES)
        return ddpm_error(DDPM_ERR_ARG, "classifier: %d classes (expected 2..%d)", c->num_classes,
                          DDPM_CLF_MAX_CLASSES);
    return DDPM_OK;
}

/* The parameter table of a config: names, shapes, offsets. */
void clf_layout(const ddpm_clf_config *c, clf_param t[CLF_NPARAMS], size_t *total) {
    int flat = CLF_C2 * (c->res / 4) * (c->res / 4);
    const struct { const char *name; int ndim, s[4], fan_in; } d[CLF_NPARAMS] = {
        {"conv1.weight", 4, {CLF_C1, c->in_ch, 3, 3}, c->in_ch * 9},
        {"conv1.bias", 1, {CLF_C1}, 0},
        {"conv2.weight", 4, {CLF_C2, CLF_C1, 3, 3}, CLF_C1 * 9},
        {"conv2.bias", 1, {CLF_C2}, 0},
        {"fc1.weight", 2, {DDPM_CLF_FEATURES, flat}, flat},
        {"fc1.bias", 1, {DDPM_CLF_FEATURES}, 0},
        {"fc2.weight", 2, {c->num_classes, DDPM_CLF_FEATURES}, DDPM_CLF_FEATURES},
        {"fc2.bias", 1, {c->num_classes}, 0},
    };
    size_t off = 0;
    for (int i = 0; i < CLF_NPARAMS; i++) {
        t[i].name = d[i].name;
        t[i].ndim = d[i].ndim;
        t[i].numel = 1;
        for (int k = 0; k < 4; k++) {
            t[i].shape[k] = k < d[i].ndim ? d[i].s[k] : 0;
            if (k < d[i].ndim) t[i].numel *= (size_t)d[i].s[k];
        }
        t[i].fan_in = d[i].fan_in;
        t[i].offset = off;
        off += (t[i].numel + 15) / 16 * 16; /* keep every tensor 64-byte aligned */
    }
    *total = off;
}

static ddpm_conv2d_desc conv_desc(int N, int C, int HW, int F) {
    return (ddpm_conv2d_desc){.N = N, .C = C, .H = HW, .W = HW, .F = F, .K = 3, .S = 1, .P = 1};
}

static float *arena_take(float **p, size_t n) {
    float *r = *p;
    *p += (n + 15) / 16 * 16;
    return r;
}

ddpm_status ddpm_clf_create(ddpm_classifier **out, const ddpm_clf_config *cfg, int max_batch,
                            bool training) {
    *out = NULL;
    ddpm_status s = ddpm_clf_config_validate(cfg);
    if (s) return s;
    if (max_batch < 1 || max_batch > 4096) return ddpm_error(DDPM_ERR_ARG, "classifier: batch %d", max_batch);
    ddpm_classifier *m = calloc(1, sizeof *m);
    if (!m) return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the classifier");
    m->cfg = *cfg;
    m->max_batch = max_batch;
    clf_layout(cfg, m->table, &m->nparams);
    int B = max_batch, R = cfg->res, R2 = R / 2, R4 = R / 4, K = cfg->num_classes;
    size_t n1 = (size_t)B * CLF_C1 * R * R, p1 = n1 / 4, n2 = (size_t)B * CLF_C2 * R2 * R2, p2 = n2 / 4;
    size_t nh = (size_t)B * DDPM_CLF_FEATURES, nl = (size_t)B * K;
    ddpm_conv2d_desc c1 = conv_desc(B, cfg->in_ch, R, CLF_C1), c2 = conv_desc(B, CLF_C1, R2, CLF_C2);
    size_t ws1 = ddpm_conv2d_workspace(&c1), ws2 = ddpm_conv2d_workspace(&c2);
    size_t nws = ws1 > ws2 ? ws1 : ws2;
    size_t ngrad = training ? m->nparams + 2 * n1 : 0; /* grads + two activation-gradient buffers */
    size_t total = m->nparams + n1 + p1 + n2 + p2 + nh + nl + nws + ngrad + 16 * 16;
    m->mem = ddpm_calloc(total, sizeof(float));
    m->argmax = calloc(p1 + p2, 1);
    (void)R4;
    if (!m->mem || !m->argmax) {
        ddpm_clf_free(m);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for the classifier (batch %d)", B);
    }
    float *p = m->mem;
    m->params = arena_take(&p, m->nparams);
    m->a1 = arena_take(&p, n1);     /* (B, C1, R, R) conv1 output after ReLU */
    m->p1 = arena_take(&p, p1);     /* (B, C1, R/2, R/2) */
    m->a2 = arena_take(&p, n2);     /* (B, C2, R/2, R/2) conv2 output after ReLU */
    m->p2 = arena_take(&p, p2);     /* (B, C2, R/4, R/4) */
    m->h = arena_take(&p, nh);      /* (B, 128) features */
    m->logits = arena_take(&p, nl); /* (B, K) */
    m->work = arena_take(&p, nws);
    if (training) {
        m->grads = arena_take(&p, m->nparams);
        m->gA = arena_take(&p, n1);
        m->gB = arena_take(&p, n1);
    }
    m->am1 = m->argmax;
    m->am2 = m->argmax + p1;
    *out = m;
    return DDPM_OK;
}

void ddpm_clf_free(ddpm_classifier *m) {
    if (!m) return;
    ddpm_free(m->mem);
    free(m->argmax);
    free(m);
}

void ddpm_clf_init_params(ddpm_classifier *m, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    memset(m->params, 0, m->nparams * sizeof(float));
    for (int i = 0; i < CLF_NPARAMS; i++) {
        const clf_param *t = &m->table[i];
        if (t->fan_in == 0) continue; /* biases start at zero */
        float b = (float)sqrt(6.0 / t->fan_in);
        ddpm_rng_fill_uniform(&rng, m->params + t->offset, t->numel, -b, b);
    }
}

const ddpm_clf_config *ddpm_clf_cfg(const ddpm_classifier *m) { return &m->cfg; }
size_t ddpm_clf_num_params(const ddpm_classifier *m) { return m->nparams; }
float *ddpm_clf_params(ddpm_classifier *m) { return m->params; }
float *ddpm_clf_grads(ddpm_classifier *m) { return m->grads; }
const float *ddpm_clf_features(const ddpm_classifier *m) { return m->h; }

static const float *P(const ddpm_classifier *m, int i) { return m->params + m->table[i].offset; }
static float *G(ddpm_classifier *m, int i) { return m->grads + m->table[i].offset; }

ddpm_status ddpm_clf_forward(ddpm_classifier *m, float *logits, const float *x, int N) {
    if (N < 1 || N > m->max_batch)
        return ddpm_error(DDPM_ERR_ARG, "classifier: batch of %d images (max %d)", N, m->max_batch);
    int R = m->cfg.res, R2 = R / 2, R4 = R / 4, K = m->cfg.num_classes;
    ddpm_conv2d_desc c1 = conv_desc(N, m->cfg.in_ch, R, CLF_C1), c2 = conv_desc(N, CLF_C1, R2, CLF_C2);
    size_t n1 = (size_t)N * CLF_C1 * R * R, n2 = (size_t)N * CLF_C2 * R2 * R2;
    m->x = x;
    m->N = N;
    ddpm_conv2d_forward(m->a1, x, P(m, 0), P(m, 1), &c1, m->work);
    ddpm_relu_forward(m->a1, m->a1, n1);
    ddpm_maxpool2_forward(m->p1, m->am1, m->a1, N, CLF_C1, R, R);
    ddpm_conv2d_forward(m->a2, m->p1, P(m, 2), P(m, 3), &c2, m->work);
    ddpm_relu_forward(m->a2, m->a2, n2);
    ddpm_maxpool2_forward(m->p2, m->am2, m->a2, N, CLF_C2, R2, R2);
    ddpm_linear_forward(m->h, m->p2, P(m, 4), P(m, 5), N, CLF_C2 * R4 * R4, DDPM_CLF_FEATURES);
    ddpm_relu_forward(m->h, m->h, (size_t)N * DDPM_CLF_FEATURES);
    ddpm_linear_forward(m->logits, m->h, P(m, 6), P(m, 7), N, DDPM_CLF_FEATURES, K);
    if (logits) memcpy(logits, m->logits, (size_t)N * K * sizeof(float));
    return DDPM_OK;
}

/* ReLU outputs are > 0 exactly where their inputs are, so the saved outputs
 * serve as ddpm_relu_backward's `in`. */
ddpm_status ddpm_clf_backward(ddpm_classifier *m, const float *dlogits) {
    if (!m->grads) return ddpm_error(DDPM_ERR_ARG, "classifier: backward on an inference model");
    int N = m->N, R = m->cfg.res, R2 = R / 2, R4 = R / 4, K = m->cfg.num_classes, F = DDPM_CLF_FEATURES;
    int flat = CLF_C2 * R4 * R4;
    size_t n1 = (size_t)N * CLF_C1 * R * R, n2 = (size_t)N * CLF_C2 * R2 * R2, nh = (size_t)N * F;
    ddpm_conv2d_desc c1 = conv_desc(N, m->cfg.in_ch, R, CLF_C1), c2 = conv_desc(N, CLF_C1, R2, CLF_C2);
    float *gA = m->gA, *gB = m->gB;
    memset(gA, 0, nh * sizeof(float)); /* d features */
    ddpm_linear_backward(gA, G(m, 6), G(m, 7), dlogits, m->h, P(m, 6), N, F, K);
    memset(gB, 0, nh * sizeof(float)); /* d fc1 pre-activation */
    ddpm_relu_backward(gB, gA, m->h, nh);
    memset(gA, 0, (size_t)N * flat * sizeof(float)); /* d p2 */
    ddpm_linear_backward(gA, G(m, 4), G(m, 5), gB, m->p2, P(m, 4), N, flat, F);
    memset(gB, 0, n2 * sizeof(float)); /* d a2 (after ReLU) */
    ddpm_maxpool2_backward(gB, gA, m->am2, N, CLF_C2, R2, R2);
    memset(gA, 0, n2 * sizeof(float)); /* d conv2 output */
    ddpm_relu_backward(gA, gB, m->a2, n2);
    memset(gB, 0, n1 / 4 * sizeof(float)); /* d p1 */
    ddpm_conv2d_backward(gB, G(m, 2), G(m, 3), gA, m->p1, P(m, 2), &c2, m->work);
    memset(gA, 0, n1 * sizeof(float)); /* d a1 (after ReLU) */
    ddpm_maxpool2_backward(gA, gB, m->am1, N, CLF_C1, R, R);
    memset(gB, 0, n1 * sizeof(float)); /* d conv1 output */
    ddpm_relu_backward(gB, gA, m->a1, n1);
    ddpm_conv2d_backward(NULL, G(m, 0), G(m, 1), gB, m->x, P(m, 0), &c1, m->work);
    return DDPM_OK;
}

void ddpm_clf_zero_grad(ddpm_classifier *m) {
    if (m->grads) memset(m->grads, 0, m->nparams * sizeof(float));
}
