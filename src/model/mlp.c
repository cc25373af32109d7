/* mlp.c: the toy noise predictor for 2-D points. See mlp.h.
 * Shape letters: N points, D point dimension, H hidden width, T timesteps. */
#include "ddpm/mlp.h"

#include <math.h>
#include <string.h>

#include "ddpm/act.h"
#include "ddpm/embed.h"
#include "ddpm/linear.h"

static const char *const NAMES[DDPM_MLP_NPARAM] = {
    "linears.0.weight", "linears.0.bias", "linears.2.weight", "linears.2.bias",
    "linears.4.weight", "linears.4.bias", "linears.6.weight", "linears.6.bias",
    "step_embeddings.0.weight", "step_embeddings.1.weight", "step_embeddings.2.weight"};

ddpm_status ddpm_mlp_config_validate(const ddpm_mlp_config *c) {
    if (c->dim < 1 || c->dim > DDPM_MLP_MAX_DIM)
        return ddpm_error(DDPM_ERR_ARG, "MLP point dimension %d outside [1, %d]", c->dim,
                          DDPM_MLP_MAX_DIM);
    if (c->hidden < 1 || c->hidden > DDPM_MLP_MAX_HIDDEN)
        return ddpm_error(DDPM_ERR_ARG, "MLP hidden width %d outside [1, %d]", c->hidden,
                          DDPM_MLP_MAX_HIDDEN);
    if (c->T < 1 || c->T > 100000)
        return ddpm_error(DDPM_ERR_ARG, "MLP timesteps %d outside [1, 100000]", c->T);
    return DDPM_OK;
}

/* Fills the size table: linear i has in/out widths (D,H), (H,H), (H,H), (H,D). */
static void build_table(ddpm_mlp *m) {
    int D = m->cfg.dim, H = m->cfg.hidden, T = m->cfg.T;
    int in[4] = {D, H, H, H}, out[4] = {H, H, H, D};
    size_t off = 0;
    for (int k = 0; k < DDPM_MLP_NPARAM; k++) {
        ddpm_mlp_param *p = &m->table[k];
        p->name = NAMES[k];
        if (k < 8 && k % 2 == 0) { /* weight (O, I) */
            p->ndim = 2, p->shape[0] = out[k / 2], p->shape[1] = in[k / 2];
            m->w[k / 2] = off;
        } else if (k < 8) { /* bias (O) */
            p->ndim = 1, p->shape[0] = out[k / 2], p->shape[1] = 1;
            m->b[k / 2] = off;
        } else { /* embedding (T, H) */
            p->ndim = 2, p->shape[0] = T, p->shape[1] = H;
            m->emb[k - 8] = off;
        }
        p->offset = off;
        p->numel = (size_t)p->shape[0] * (p->ndim == 2 ? (size_t)p->shape[1] : 1);
        off += p->numel;
    }
    m->nparams = off;
}

ddpm_status ddpm_mlp_create(ddpm_mlp *m, const ddpm_mlp_config *c, int max_batch) {
    memset(m, 0, sizeof *m);
    ddpm_status st = ddpm_mlp_config_validate(c);
    if (st) return st;
    if (max_batch < 1 || max_batch > (1 << 24))
        return ddpm_error(DDPM_ERR_ARG, "MLP batch %d outside [1, %d]", max_batch, 1 << 24);
    m->cfg = *c;
    m->max_batch = max_batch;
    build_table(m);
    size_t NH = (size_t)max_batch * c->hidden;
    m->params = ddpm_calloc(2 * m->nparams, sizeof(float));
    float *act = ddpm_calloc(8 * NH, sizeof(float));
    m->t = ddpm_calloc((size_t)max_batch, sizeof(int));
    if (!m->params || !act || !m->t) {
        ddpm_free(act);
        ddpm_mlp_free(m);
        return DDPM_ERR_NOMEM; /* message set by ddpm_calloc */
    }
    m->grads = m->params + m->nparams;
    for (int i = 0; i < 3; i++) m->h[i] = act + (size_t)i * NH, m->a[i] = act + (size_t)(3 + i) * NH;
    m->dh = act + 6 * NH;
    m->da = act + 7 * NH;
    return DDPM_OK;
}

void ddpm_mlp_free(ddpm_mlp *m) {
    ddpm_free(m->params);
    ddpm_free(m->h[0]); /* one block holds every activation */
    ddpm_free(m->t);
    memset(m, 0, sizeof *m);
}

void ddpm_mlp_init_params(ddpm_mlp *m, ddpm_rng *rng) {
    for (int k = 0; k < DDPM_MLP_NPARAM; k++) {
        const ddpm_mlp_param *p = &m->table[k];
        float *v = m->params + p->offset;
        if (k >= 8) {
            ddpm_rng_fill_normal(rng, v, p->numel);
            continue;
        }
        int fan_in = m->table[k & ~1].shape[1]; /* the weight's I, for weight and bias */
        float bound = (float)(1.0 / sqrt((double)fan_in));
        ddpm_rng_fill_uniform(rng, v, p->numel, -bound, bound);
    }
}

void ddpm_mlp_forward(ddpm_mlp *m, float *out, const float *x, const int *t, int N) {
    int D = m->cfg.dim, H = m->cfg.hidden;
    const float *P = m->params;
    size_t NH = (size_t)N * H;
    memcpy(m->t, t, (size_t)N * sizeof(int));
    m->x = x;
    m->n_last = N;
    const float *in = x;
    for (int l = 0; l < 3; l++) {
        float *h = m->h[l]; /* (N, H) */
        ddpm_linear_forward(h, in, P + m->w[l], P + m->b[l], N, l ? H : D, H);
        /* h += E_l[t]: the lookup goes to a (free until the ReLU), then is added */
        ddpm_embedding_forward(m->a[l], t, P + m->emb[l], N, H);
        for (size_t i = 0; i < NH; i++) h[i] += m->a[l][i];
        ddpm_relu_forward(m->a[l], h, NH);
        in = m->a[l];
    }
    ddpm_linear_forward(out, in, P + m->w[3], P + m->b[3], N, H, D);
}

void ddpm_mlp_backward(ddpm_mlp *m, float *dx, const float *dout) {
    int D = m->cfg.dim, H = m->cfg.hidden, N = m->n_last;
    const float *P = m->params;
    float *G = m->grads;
    size_t NH = (size_t)N * H;
    memset(m->da, 0, NH * sizeof(float)); /* da = d a3 */
    ddpm_linear_backward(m->da, G + m->w[3], G + m->b[3], dout, m->a[2], P + m->w[3], N, H, D);
    for (int l = 2; l >= 0; l--) {
        memset(m->dh, 0, NH * sizeof(float));
        ddpm_relu_backward(m->dh, m->da, m->h[l], NH); /* dh_l */
        ddpm_embedding_backward(G + m->emb[l], m->dh, m->t, N, H);
        const float *in = l ? m->a[l - 1] : m->x;
        float *din = l ? m->da : dx; /* d a_{l-1}, or dx (may be NULL) for the first layer */
        if (l) memset(m->da, 0, NH * sizeof(float));
        ddpm_linear_backward(din, G + m->w[l], G + m->b[l], m->dh, in, P + m->w[l], N, l ? H : D,
                             H);
    }
}
