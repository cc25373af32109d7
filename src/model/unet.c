/* unet.c: the DDPM UNet's lifecycle, forward and backward over the graph of
 * unet_graph.c (ops over streams, see unet_internal.h), built from the nn
 * layers. See unet.h and docs/design.md §4.
 *
 * Backward walks the ops in reverse; each op reads the gradient of its
 * output stream and accumulates into the gradients of its input streams, so
 * the skip connections need no special case: a skip stream simply receives
 * gradient from two ops. A stream's
 * gradient is not zeroed up front: the first op to reach it in a backward
 * pass either copies into it (residual adds, the concat split) or zeroes it
 * first (layers that accumulate), which saves a pass over most of them.
 *
 * Shape letters: N batch, C channels, H W spatial size, HW = H*W, E = 4*ch
 * (time embedding width).
 */
#include "model/unet_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/prof.h"
#include "core/util.h"
#include "nn/gemm_tile.h"

/* ---- lifecycle ------------------------------------------------------------------ */

ddpm_status ddpm_unet_describe(const ddpm_unet_config *cfg, size_t *num_params, double *flops) {
    ddpm_status s = ddpm_unet_config_validate(cfg);
    if (s) return s;
    ddpm_unet m = {.cfg = *cfg};
    s = ddpm_unet_graph_build(&m);
    if (!s) s = ddpm_unet_blocks_build(&m);
    if (!s) {
        if (num_params) *num_params = m.total;
        if (flops) *flops = m.flops;
    }
    ddpm_unet_graph_free(&m);
    return s;
}

ddpm_status ddpm_unet_param_layout(const ddpm_unet_config *cfg, ddpm_param_info **table, int *count,
                                   size_t *total) {
    *table = NULL;
    *count = 0;
    *total = 0;
    ddpm_status s = ddpm_unet_config_validate(cfg);
    if (s) return s;
    ddpm_unet m = {.cfg = *cfg};
    s = ddpm_unet_graph_build(&m);
    if (!s) {
        *table = m.pinfo;
        *count = m.nparams;
        *total = m.total;
        m.pinfo = NULL;
    }
    ddpm_unet_graph_free(&m);
    return s;
}

ddpm_status ddpm_unet_create(ddpm_unet **out, const ddpm_unet_config *cfg, int max_batch,
                             bool training) {
    *out = NULL;
    ddpm_status s = ddpm_unet_config_validate(cfg);
    if (s) return s;
    if (max_batch < 1 || max_batch > 65536)
        return ddpm_error(DDPM_ERR_ARG, "batch size must be in [1, 65536], got %d", max_batch);
    ddpm_unet *m = calloc(1, sizeof *m);
    if (!m) return ddpm_error(DDPM_ERR_NOMEM, "out of memory creating the model");
    m->cfg = *cfg;
    m->max_batch = max_batch;
    m->training = training;
    ddpm_rng_seed(&m->rng, 0);
    if ((s = ddpm_unet_graph_build(m)) || (s = ddpm_unet_blocks_build(m))) goto fail;

    m->params = ddpm_calloc(m->total, sizeof(float));
    if (!m->params) { s = DDPM_ERR_NOMEM; goto fail; }
    if (training) {
        m->grads = ddpm_calloc(m->total, sizeof(float));
        if (!m->grads) { s = DDPM_ERR_NOMEM; goto fail; }
    }
    ddpm_arena meas;
    ddpm_arena_init_measuring(&meas);
    ddpm_unet_plan(m, &meas);
    if ((s = ddpm_arena_init(&m->arena, meas.peak))) goto fail;
    if ((s = ddpm_unet_plan(m, &m->arena))) goto fail;
    *out = m;
    return DDPM_OK;
fail:
    ddpm_unet_free(m);
    return s;
}

void ddpm_unet_free(ddpm_unet *m) {
    if (!m) return;
    ddpm_unet_graph_free(m);
    ddpm_free(m->params);
    ddpm_free(m->grads);
    ddpm_arena_free(&m->arena);
    free(m);
}

void ddpm_unet_init_params(ddpm_unet *m, uint64_t seed) {
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    for (int i = 0; i < m->nparams; i++) {
        const ddpm_param_info *p = &m->pinfo[i];
        float *w = m->params + p->offset;
        /* kaiming_uniform_(a=sqrt(5)) and PyTorch's bias init both give
         * U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
        float bound = p->fan_in > 0 ? 1.0f / sqrtf((float)p->fan_in) : 0.0f;
        switch (p->kind) {
        case DDPM_PARAM_WEIGHT:
        case DDPM_PARAM_BIAS: ddpm_rng_fill_uniform(&rng, w, p->numel, -bound, bound); break;
        case DDPM_PARAM_NORM_W:
            for (size_t j = 0; j < p->numel; j++) w[j] = 1.0f;
            break;
        case DDPM_PARAM_NORM_B: memset(w, 0, p->numel * sizeof *w); break;
        case DDPM_PARAM_EMBED: ddpm_rng_fill_normal(&rng, w, p->numel); break;
        }
    }
}

/* ---- forward ---------------------------------------------------------------------- */

#define PW(i) (m->params + m->pinfo[i].offset)     /* weight of sublayer i */
#define PB(i) (m->params + m->pinfo[(i) + 1].offset) /* its bias */
#define GW(i) (m->grads + m->pinfo[i].offset)
#define GB(i) (m->grads + m->pinfo[(i) + 1].offset)

/* The conv descriptors of unet_internal.h with the model's precision. */
static ddpm_conv2d_desc desc3(const ddpm_unet *m, int N, int C, int H, int W, int F, int K) {
    ddpm_conv2d_desc d = ddpm_unet_desc3(N, C, H, W, F, K);
    d.prec = m->prec;
    return d;
}
static ddpm_conv2d_desc conv_desc(const ddpm_unet *m, const op *o, int N) {
    ddpm_conv2d_desc d = ddpm_unet_conv_desc(o, N);
    d.prec = m->prec;
    return d;
}

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* x = 0, on all threads when large (one core cannot saturate the memory). */
static void zero(float *x, size_t n) {
    const size_t chunk = (size_t)1 << 14;
    size_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n > DDPM_PAR_MIN_ZERO)
    for (size_t k = 0; k < nchunks; k++) {
        size_t b = k * chunk;
        memset(x + b, 0, (n - b < chunk ? n - b : chunk) * sizeof *x);
    }
}

/* Times one layer call as DDPM_PROF_<kind> of the current pass (prof.h). */
#define TIMED(kind, call)                                \
    do {                                                 \
        double t0_ = ddpm_prof_tic();                    \
        call;                                            \
        ddpm_prof_toc(DDPM_PROF_##kind, m->pass, t0_);   \
    } while (0)

/* ---- gradient streams ------------------------------------------------------------- */

/* The gradient of stream i, ready to accumulate into: zeroed if this is the
 * first write to it in this backward pass. */
static float *grad_acc(ddpm_unet *m, int i) {
    stream *s = &m->st[i];
    if (s->fresh) {
        TIMED(ELEM, zero(s->g, (size_t)m->N * s->c * s->h * s->w));
        s->fresh = false;
    }
    return s->g;
}

/* Adds d (N, CA + CB, HW) into the gradients of stream ia (its first CA =
 * st[ia].c channels) and stream ib (the other CB; ib = -1 when CB = 0), or
 * copies into a stream's gradient on its first write in this pass: the
 * residual adds (ib = -1) and the split of a concatenated input's gradient. */
static void grad_add_split(ddpm_unet *m, int ia, int ib, const float *d) {
    stream *a = &m->st[ia], *b = ib >= 0 ? &m->st[ib] : NULL;
    int CA = a->c, CB = b ? b->c : 0, HW = a->h * a->w;
    float *set_a = a->fresh ? a->g : NULL, *add_a = a->fresh ? NULL : a->g;
    float *set_b = b && b->fresh ? b->g : NULL, *add_b = b && !b->fresh ? b->g : NULL;
    if (set_a || set_b) TIMED(ELEM, ddpm_concat_split(set_a, set_b, d, m->N, CA, CB, HW));
    if (add_a || add_b) TIMED(ELEM, ddpm_concat_backward(add_a, add_b, d, m->N, CA, CB, HW));
    a->fresh = false;
    if (b) b->fresh = false;
}

/* out (N, C, HW) += nin(concat(a, b)), the 1x1 shortcut conv (weight (C, CA+CB),
 * bias (C)) of a ResBlock added onto its conv2 output: per image
 * out_n += W[:, :CA] a_n + W[:, CA:] b_n + bias, two GEMMs accumulating into
 * out. Neither the concatenation a (N, CA, HW), b (N, CB, HW) (b NULL when
 * CB = 0) nor the shortcut's output is ever formed, and the residual add
 * costs no pass of its own. Images run on the threads, each GEMM
 * single-threaded inside the region, as in conv.c. */
static void shortcut_add(ddpm_precision prec, float *out, const float *a, const float *b,
                         const float *w, const float *bias, int N, int CA, int CB, int C, int HW) {
    const int Ct = CA + CB;
#pragma omp parallel for schedule(dynamic) if (N > 1 && 2.0 * N * C * Ct * HW >= DDPM_PAR_MIN_FLOPS)
    for (int n = 0; n < N; n++) {
        float *y = out + (size_t)n * C * HW; /* (C, HW) */
        if (prec == DDPM_PREC_BF16) {
            ddpm_gemm_bf16(false, false, C, HW, CA, 1.0f, w, Ct, a + (size_t)n * CA * HW, HW, 1.0f, y, HW);
            if (CB) ddpm_gemm_bf16(false, false, C, HW, CB, 1.0f, w + CA, Ct, b + (size_t)n * CB * HW, HW, 1.0f, y, HW);
        } else {
            ddpm_image_gemm(false, C, HW, CA, w, Ct, a + (size_t)n * CA * HW, HW, y, HW, true);
            if (CB) ddpm_image_gemm(false, C, HW, CB, w + CA, Ct, b + (size_t)n * CB * HW, HW, y, HW, true);
        }
        for (int f = 0; f < C; f++) {
            float bf = bias[f], *yf = y + (size_t)f * HW;
            for (int i = 0; i < HW; i++) yf[i] += bf;
        }
    }
}

static void res_forward(ddpm_unet *m, op *o, int N) {
    int G = m->cfg.groups, ct = o->cin + o->cskip, C = o->cout, HW = o->H * o->W;
    size_t n_out = (size_t)N * C * HW;
    const float *x = m->st[o->in].x;
    /* an up-path block reads concat(x, skip) from its two parts, never formed */
    const float *xs = o->skip >= 0 ? m->st[o->skip].x : NULL;
    float **b = o->buf;
    float *out = m->st[o->out].x;
    /* a1 = silu(GN1(concat(x, skip))) */
    TIMED(NORM, ddpm_groupnorm_silu_forward_cat(b[B_A1], b[B_MEAN1], b[B_RSTD1], x, xs, o->cin, PW(o->norm1), PB(o->norm1), NULL, N, ct, HW, G));
    ddpm_conv2d_desc d1 = desc3(m, N, ct, o->H, o->W, C, 3), d2 = desc3(m, N, C, o->H, o->W, C, 3);
    TIMED(CONV3, ddpm_conv2d_forward(b[B_H], b[B_A1], PW(o->conv1), PB(o->conv1), &d1, m->work));
    TIMED(TEMB, ddpm_linear_forward_prec(m->prec, b[B_TP], m->temb_act, PW(o->temb_proj), PB(o->temb_proj), N, 4 * m->cfg.ch, C));
    TIMED(ELEM, ddpm_add_bias_nc_forward(b[B_H], b[B_H], b[B_TP], N, C, HW));
    /* a2 = dropout(silu(GN2(h))); dropout only when training */
    const float *mask = NULL;
    if (m->training && m->cfg.dropout > 0.0f) {
        TIMED(ACT, ddpm_dropout_mask(b[B_MASK], n_out, m->cfg.dropout, &m->rng));
        mask = b[B_MASK];
    }
    TIMED(NORM, ddpm_groupnorm_silu_forward(b[B_A2], b[B_MEAN2], b[B_RSTD2], b[B_H], PW(o->norm2), PB(o->norm2), mask, N, C, HW, G));
    TIMED(CONV3, ddpm_conv2d_forward(out, b[B_A2], PW(o->conv2), PB(o->conv2), &d2, m->work));
    if (o->nin >= 0) TIMED(CONV1, shortcut_add(m->prec, out, x, xs, PW(o->nin), PB(o->nin), N, o->cin, o->cskip, C, HW));
    else TIMED(ELEM, add_inplace(out, x, n_out));
}

static void attn_forward(ddpm_unet *m, op *o, int N) {
    int C = o->cin, T = o->H * o->W;
    const float *x = m->st[o->in].x;
    float *out = m->st[o->out].x, **b = o->buf;
    TIMED(NORM, ddpm_groupnorm_forward(b[B_N1], b[B_MEAN1], b[B_RSTD1], x, PW(o->norm1), PB(o->norm1), N, C, T, m->cfg.groups));
    ddpm_conv2d_desc dq = desc3(m, N, C, o->H, o->W, 3 * C, 1), dp = desc3(m, N, C, o->H, o->W, C, 1);
    TIMED(CONV1, ddpm_conv2d_forward(b[B_QKV], b[B_N1], PW(o->conv1), PB(o->conv1), &dq, m->work));
    TIMED(ATTN, ddpm_attention_forward_prec(m->prec, b[B_H], b[B_ATT], b[B_QKV], N, C, T));
    TIMED(CONV1, ddpm_conv2d_forward(out, b[B_H], PW(o->conv2), PB(o->conv2), &dp, m->work));
    TIMED(ELEM, add_inplace(out, x, (size_t)N * C * T));
}

static void op_forward(ddpm_unet *m, op *o, int N) {
    const float *x = m->st[o->in].x;
    float *out = m->st[o->out].x;
    switch (o->kind) {
    case OP_RES: res_forward(m, o, N); break;
    case OP_ATTN: attn_forward(m, o, N); break;
    case OP_CONV: {
        ddpm_conv2d_desc d = conv_desc(m, o, N);
        TIMED(CONV3, ddpm_conv2d_forward(out, x, PW(o->conv1), PB(o->conv1), &d, m->work));
        break;
    }
    case OP_UPCONV: {
        ddpm_conv2d_desc d = conv_desc(m, o, N);
        TIMED(ELEM, ddpm_upsample2x_forward(o->buf[B_UP], x, N, o->cin, o->H, o->W));
        TIMED(CONV3, ddpm_conv2d_forward(out, o->buf[B_UP], PW(o->conv1), PB(o->conv1), &d, m->work));
        break;
    }
    case OP_OUT: {
        int C = o->cin, HW = o->H * o->W;
        float **b = o->buf;
        TIMED(NORM, ddpm_groupnorm_silu_forward(b[B_A1], b[B_MEAN1], b[B_RSTD1], x, PW(o->norm1), PB(o->norm1), NULL, N, C, HW, m->cfg.groups));
        ddpm_conv2d_desc d = desc3(m, N, C, o->H, o->W, o->cout, 3);
        TIMED(CONV3, ddpm_conv2d_forward(out, b[B_A1], PW(o->conv1), PB(o->conv1), &d, m->work));
        break;
    }
    }
}

ddpm_status ddpm_unet_forward(ddpm_unet *m, float *out, const float *x, const int *t,
                              const int *labels, int N) {
    const ddpm_unet_config *c = &m->cfg;
    if (N < 1 || N > m->max_batch)
        return ddpm_error(DDPM_ERR_ARG, "batch of %d images, the model was built for 1 to %d", N, m->max_batch);
    int K = c->num_classes, E = 4 * c->ch;
    size_t n_img = (size_t)N * c->in_ch * c->res * c->res;
    uintptr_t o0 = (uintptr_t)out, x0 = (uintptr_t)x, nb = n_img * sizeof(float);
    if (o0 < x0 + nb && x0 < o0 + nb) return ddpm_error(DDPM_ERR_ARG, "forward: out overlaps x");
    for (int n = 0; n < N; n++) {
        m->t[n] = t[n];
        m->labels[n] = (K > 0 && labels) ? labels[n] : K;
        if (m->labels[n] < 0 || m->labels[n] > K)
            return ddpm_error(DDPM_ERR_ARG, "label %d out of range [0, %d]", m->labels[n], K);
    }
    m->N = N;
    m->pass = DDPM_PROF_FWD;
    /* time (and label) embedding: temb_act = SiLU(dense1(SiLU(dense0(sin(t))))) */
    TIMED(TEMB, ddpm_timestep_embedding(m->temb_sin, m->t, N, c->ch));
    TIMED(TEMB, ddpm_linear_forward_prec(m->prec, m->t1, m->temb_sin, PW(m->temb0), PB(m->temb0), N, c->ch, E));
    TIMED(ACT, ddpm_silu_forward(m->t1a, m->t1, (size_t)N * E));
    TIMED(TEMB, ddpm_linear_forward_prec(m->prec, m->temb, m->t1a, PW(m->temb1), PB(m->temb1), N, E, E));
    if (K > 0)
        TIMED(TEMB, ddpm_embedding_forward_add(m->temb, m->labels, m->params + m->pinfo[m->label_emb].offset, N, E));
    TIMED(ACT, ddpm_silu_forward(m->temb_act, m->temb, (size_t)N * E));

    /* the first stream is the caller's input (no op writes it); the output
     * head writes straight into `out` (backward never reads it) */
    m->st[0].x = (float *)x;
    m->st[m->nst - 1].x = out;
    for (int i = 0; i < m->nops; i++) op_forward(m, &m->ops[i], N);
    m->have_forward = true;
    return DDPM_OK;
}

/* ---- backward ---------------------------------------------------------------------- */

static void res_backward(ddpm_unet *m, op *o, int N) {
    int G = m->cfg.groups, ct = o->cin + o->cskip, C = o->cout, HW = o->H * o->W, E = 4 * m->cfg.ch;
    size_t n_in = (size_t)N * ct * HW, n_out = (size_t)N * C * HW;
    const float *x = m->st[o->in].x;
    if (o->skip >= 0) { /* recompute the concatenated input */
        TIMED(ELEM, ddpm_concat_forward(o->buf[B_XCAT], x, m->st[o->skip].x, N, o->cin, o->cskip, HW));
        x = o->buf[B_XCAT];
    }
    const float *gout = m->st[o->out].g;
    const float *mask = m->cfg.dropout > 0.0f ? o->buf[B_MASK] : NULL;
    /* Two scratch buffers hold the intermediate gradients: d(a2) in A, d(h)
     * in Hs, then d(a1) in A again (d(a2) is dead by then). */
    float **b = o->buf, *A = m->scratch[0], *Hs = m->scratch[1];
    /* gradient of the block input: straight into the stream's, or into a
     * scratch buffer that is split between the two concatenated inputs */
    float *gx = o->skip >= 0 ? m->scratch[2] : NULL;
    if (gx) TIMED(ELEM, zero(gx, n_in));
    ddpm_conv2d_desc d1 = desc3(m, N, ct, o->H, o->W, C, 3), d2 = desc3(m, N, C, o->H, o->W, C, 3);

    /* out = skip(x) + conv2(a2), a2 = dropout(silu(GN2(h))) */
    if (o->nin >= 0) {
        ddpm_conv2d_desc ds = desc3(m, N, ct, o->H, o->W, C, 1);
        if (!gx) gx = grad_acc(m, o->in);
        TIMED(CONV1, ddpm_conv2d_backward(gx, GW(o->nin), GB(o->nin), gout, x, PW(o->nin), &ds, m->work));
    } else { /* identity shortcut (never with a skip input: then ct != C) */
        grad_add_split(m, o->in, -1, gout);
        gx = m->st[o->in].g;
    }
    TIMED(NORM, ddpm_groupnorm_silu_apply(b[B_A2], b[B_H], b[B_MEAN2], b[B_RSTD2], PW(o->norm2), PB(o->norm2), mask, N, C, HW, G));
    TIMED(ELEM, zero(A, n_out));
    TIMED(CONV3, ddpm_conv2d_backward(A, GW(o->conv2), GB(o->conv2), gout, b[B_A2], PW(o->conv2), &d2, m->work));
    TIMED(ELEM, zero(Hs, n_out));
    TIMED(NORM, ddpm_groupnorm_silu_backward(Hs, GW(o->norm2), GB(o->norm2), A, b[B_H], b[B_MEAN2], b[B_RSTD2], PW(o->norm2), PB(o->norm2), mask, N, C, HW, G, m->work));
    /* h = conv1(a1) + temb_proj(silu(temb)), a1 = silu(GN1(x)) */
    TIMED(ELEM, zero(m->g_tp, (size_t)N * C));
    TIMED(ELEM, ddpm_add_bias_nc_backward(NULL, m->g_tp, Hs, N, C, HW));
    TIMED(TEMB, ddpm_linear_backward_prec(m->prec, m->g_temb_act, GW(o->temb_proj), GB(o->temb_proj), m->g_tp, m->temb_act, PW(o->temb_proj), N, E, C));
    TIMED(NORM, ddpm_groupnorm_silu_apply(b[B_A1], x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, ct, HW, G));
    TIMED(ELEM, zero(A, n_in));
    TIMED(CONV3, ddpm_conv2d_backward(A, GW(o->conv1), GB(o->conv1), Hs, b[B_A1], PW(o->conv1), &d1, m->work));
    TIMED(NORM, ddpm_groupnorm_silu_backward(gx, GW(o->norm1), GB(o->norm1), A, x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, ct, HW, G, m->work));
    if (o->skip >= 0) grad_add_split(m, o->in, o->skip, gx); /* into the two concatenated inputs */
}

static void attn_backward(ddpm_unet *m, op *o, int N) {
    int C = o->cin, T = o->H * o->W;
    size_t n = (size_t)N * C * T;
    const float *x = m->st[o->in].x, *gout = m->st[o->out].g;
    float **b = o->buf, *A = m->scratch[0], *B = m->scratch[1], *Cs = m->scratch[0];
    ddpm_conv2d_desc dq = desc3(m, N, C, o->H, o->W, 3 * C, 1), dp = desc3(m, N, C, o->H, o->W, C, 1);
    grad_add_split(m, o->in, -1, gout); /* residual */
    float *gx = m->st[o->in].g;
    TIMED(ELEM, zero(A, n));
    TIMED(CONV1, ddpm_conv2d_backward(A, GW(o->conv2), GB(o->conv2), gout, b[B_H], PW(o->conv2), &dp, m->work));
    TIMED(ELEM, zero(B, 3 * n));
    TIMED(ATTN, ddpm_attention_backward_prec(m->prec, B, A, b[B_QKV], b[B_ATT], N, C, T, m->work));
    TIMED(ELEM, zero(Cs, n));
    TIMED(NORM, ddpm_groupnorm_apply(b[B_N1], x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), N, C, T, m->cfg.groups));
    TIMED(CONV1, ddpm_conv2d_backward(Cs, GW(o->conv1), GB(o->conv1), B, b[B_N1], PW(o->conv1), &dq, m->work));
    TIMED(NORM, ddpm_groupnorm_backward(gx, GW(o->norm1), GB(o->norm1), Cs, x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), N, C, T, m->cfg.groups));
}

static void op_backward(ddpm_unet *m, op *o, int N) {
    const float *x = m->st[o->in].x, *gout = m->st[o->out].g;
    if (o->kind == OP_RES) {
        res_backward(m, o, N);
        return;
    }
    if (o->kind == OP_ATTN) {
        attn_backward(m, o, N);
        return;
    }
    float *gx = grad_acc(m, o->in); /* the rest accumulate into it */
    switch (o->kind) {
    case OP_CONV: {
        ddpm_conv2d_desc d = conv_desc(m, o, N);
        TIMED(CONV3, ddpm_conv2d_backward(gx, GW(o->conv1), GB(o->conv1), gout, x, PW(o->conv1), &d, m->work));
        break;
    }
    case OP_UPCONV: {
        ddpm_conv2d_desc d = conv_desc(m, o, N);
        size_t n_up = (size_t)N * o->cin * o->H * o->W * 4;
        float *A = m->scratch[0];
        TIMED(ELEM, zero(A, n_up));
        TIMED(CONV3, ddpm_conv2d_backward(A, GW(o->conv1), GB(o->conv1), gout, o->buf[B_UP], PW(o->conv1), &d, m->work));
        TIMED(ELEM, ddpm_upsample2x_backward(gx, A, N, o->cin, o->H, o->W));
        break;
    }
    case OP_OUT: {
        int C = o->cin, HW = o->H * o->W;
        size_t n = (size_t)N * C * HW;
        float **b = o->buf, *A = m->scratch[0];
        ddpm_conv2d_desc d = desc3(m, N, C, o->H, o->W, o->cout, 3);
        /* recompute the conv input silu(GN(x)), then back through both */
        TIMED(NORM, ddpm_groupnorm_silu_apply(b[B_A1], x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, C, HW, m->cfg.groups));
        TIMED(ELEM, zero(A, n));
        TIMED(CONV3, ddpm_conv2d_backward(A, GW(o->conv1), GB(o->conv1), gout, b[B_A1], PW(o->conv1), &d, m->work));
        TIMED(NORM, ddpm_groupnorm_silu_backward(gx, GW(o->norm1), GB(o->norm1), A, x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, C, HW, m->cfg.groups, m->work));
        break;
    }
    }
}

ddpm_status ddpm_unet_backward(ddpm_unet *m, const float *dout) {
    if (!m->training) return ddpm_error(DDPM_ERR_ARG, "backward on a model created for inference");
    if (!m->have_forward) return ddpm_error(DDPM_ERR_ARG, "backward without a forward pass");
    int N = m->N, E = 4 * m->cfg.ch, ch = m->cfg.ch;
    m->pass = DDPM_PROF_BWD;
    for (int i = 0; i < m->nst; i++) m->st[i].fresh = true;
    TIMED(ELEM, zero(m->g_temb_act, (size_t)N * E));
    stream *y = &m->st[m->nst - 1];
    memcpy(y->g, dout, (size_t)N * y->c * y->h * y->w * sizeof(float));
    y->fresh = false;
    for (int i = m->nops - 1; i >= 0; i--) op_backward(m, &m->ops[i], N);

    /* time embedding */
    size_t ne = (size_t)N * E;
    TIMED(ELEM, zero(m->g_temb, ne));
    TIMED(ACT, ddpm_silu_backward(m->g_temb, m->g_temb_act, m->temb, ne));
    if (m->label_emb >= 0)
        TIMED(TEMB, ddpm_embedding_backward(m->grads + m->pinfo[m->label_emb].offset, m->g_temb, m->labels, N, E));
    TIMED(ELEM, zero(m->g_t1a, ne));
    TIMED(TEMB, ddpm_linear_backward_prec(m->prec, m->g_t1a, GW(m->temb1), GB(m->temb1), m->g_temb, m->t1a, PW(m->temb1), N, E, E));
    TIMED(ELEM, zero(m->g_t1, ne));
    TIMED(ACT, ddpm_silu_backward(m->g_t1, m->g_t1a, m->t1, ne));
    TIMED(TEMB, ddpm_linear_backward_prec(m->prec, NULL, GW(m->temb0), GB(m->temb0), m->g_t1, m->temb_sin, PW(m->temb0), N, ch, E));
    return DDPM_OK;
}

void ddpm_unet_zero_grad(ddpm_unet *m) {
    if (m->grads) TIMED(ELEM, zero(m->grads, m->total));
}

/* ---- accessors ------------------------------------------------------------------------ */

const ddpm_unet_config *ddpm_unet_cfg(const ddpm_unet *m) { return &m->cfg; }
size_t ddpm_unet_num_params(const ddpm_unet *m) { return m->total; }
float *ddpm_unet_params(ddpm_unet *m) { return m->params; }
float *ddpm_unet_grads(ddpm_unet *m) { return m->grads; }
const ddpm_param_info *ddpm_unet_param_table(const ddpm_unet *m, int *count) {
    *count = m->nparams;
    return m->pinfo;
}
const ddpm_param_info *ddpm_unet_find_param(const ddpm_unet *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->pinfo[i].name, name)) return &m->pinfo[i];
    return NULL;
}
const float *ddpm_unet_input_grad(const ddpm_unet *m) { return m->training ? m->st[0].g : NULL; }
const ddpm_block_info *ddpm_unet_blocks(const ddpm_unet *m, int *count) {
    *count = m->nblocks;
    return m->blocks;
}
double ddpm_unet_flops(const ddpm_unet *m) { return m->flops; }
void ddpm_unet_set_precision(ddpm_unet *m, ddpm_precision prec) { m->prec = prec; }
ddpm_precision ddpm_unet_precision(const ddpm_unet *m) { return m->prec; }
size_t ddpm_unet_arena_bytes(const ddpm_unet *m) { return m->arena.capacity; }
ddpm_rng *ddpm_unet_rng(ddpm_unet *m) { return &m->rng; }

ddpm_status ddpm_unet_eps(void *unet, float *eps_hat, const float *x, const int *t, const int *labels, int N) {
    return ddpm_unet_forward(unet, eps_hat, x, t, labels, N);
}
