/* unet_plan.c: what a built UNet graph costs: forward FLOPs and the block
 * table of `ddpm info`, and the memory plan that carves every activation,
 * gradient and workspace buffer from one arena. See unet_internal.h. */
#include "model/unet_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double conv_flops(int C, int F, int K, int Ho, int Wo) {
    return 2.0 * C * K * K * F * (double)Ho * Wo;
}

static double op_flops(const ddpm_unet *m, const op *o) {
    double hw = (double)o->H * o->W;
    int ct = o->cin + o->cskip;
    switch (o->kind) {
    case OP_CONV:
    case OP_UPCONV: return conv_flops(o->cin, o->cout, o->K, o->Ho, o->Wo);
    case OP_RES:
        return conv_flops(ct, o->cout, 3, o->H, o->W) + conv_flops(o->cout, o->cout, 3, o->H, o->W) +
               2.0 * 4 * m->cfg.ch * o->cout + (o->nin >= 0 ? 2.0 * ct * o->cout * hw : 0.0);
    case OP_ATTN:
        return 2.0 * o->cin * 3 * o->cin * hw + 2.0 * 2 * o->cin * hw * hw + 2.0 * o->cin * o->cin * hw;
    case OP_OUT: return conv_flops(o->cin, o->cout, 3, o->H, o->W);
    }
    return 0.0;
}

ddpm_status ddpm_unet_blocks_build(ddpm_unet *m) {
    m->nblocks = m->nops + 1;
    m->blocks = calloc((size_t)m->nblocks, sizeof *m->blocks);
    if (!m->blocks) return ddpm_error(DDPM_ERR_NOMEM, "out of memory building the model");
    int E = 4 * m->cfg.ch;
    ddpm_block_info *b = &m->blocks[0];
    snprintf(b->name, sizeof b->name, "temb");
    b->c = E;
    b->h = b->w = 1;
    b->params = m->pinfo[m->temb0].numel + m->pinfo[m->temb0 + 1].numel + m->pinfo[m->temb1].numel +
                m->pinfo[m->temb1 + 1].numel + (m->label_emb >= 0 ? m->pinfo[m->label_emb].numel : 0);
    b->flops = 2.0 * m->cfg.ch * E + 2.0 * E * E;
    m->flops = b->flops;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        b = &m->blocks[i + 1];
        snprintf(b->name, sizeof b->name, "%s", o->name);
        b->c = o->cout;
        b->h = o->Ho;
        b->w = o->Wo;
        for (int p = o->p_begin; p < o->p_end; p++) b->params += m->pinfo[p].numel;
        b->flops = op_flops(m, o);
        m->flops += b->flops;
    }
    return DDPM_OK;
}

/* ---- memory plan --------------------------------------------------------------- */

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }


/* Per-image floats of every saved slot of op o (0 = unused). */
static void slot_sizes(const ddpm_unet *m, const op *o, size_t sz[B_COUNT]) {
    memset(sz, 0, B_COUNT * sizeof sz[0]);
    size_t hw = (size_t)o->H * o->W, ct = (size_t)(o->cin + o->cskip), G = (size_t)m->cfg.groups;
    switch (o->kind) {
    case OP_RES:
        if (o->cskip && m->training) sz[B_XCAT] = ct * hw; /* backward only */
        sz[B_A1] = ct * hw;
        sz[B_MEAN1] = sz[B_RSTD1] = sz[B_MEAN2] = sz[B_RSTD2] = G;
        sz[B_H] = sz[B_A2] = (size_t)o->cout * hw;
        sz[B_TP] = (size_t)o->cout;
        if (m->cfg.dropout > 0.0f) sz[B_MASK] = (size_t)o->cout * hw;
        break;
    case OP_ATTN:
        sz[B_N1] = sz[B_H] = (size_t)o->cin * hw;
        sz[B_MEAN1] = sz[B_RSTD1] = G;
        sz[B_QKV] = 3 * (size_t)o->cin * hw;
        sz[B_ATT] = hw * hw;
        break;
    case OP_UPCONV: sz[B_UP] = (size_t)o->cin * hw * 4; break;
    case OP_OUT:
        sz[B_A1] = (size_t)o->cin * hw;
        sz[B_MEAN1] = sz[B_RSTD1] = G;
        break;
    }
}

/* Does backward read slot k? (Otherwise it is shared between ops.) */
static bool slot_saved(int k) {
    return k != B_XCAT && k != B_N1 && k != B_A1 && k != B_A2;
}

/* Per-image floats of one backward scratch buffer, and workspace floats for N. */
static void scratch_sizes(const ddpm_unet *m, int N, size_t *scratch, size_t *work) {
    size_t s = 0, wk = 0;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        size_t hw = (size_t)o->H * o->W, ct = (size_t)(o->cin + o->cskip);
        s = max_sz(s, max_sz(ct, (size_t)o->cout) * hw);
        if (o->kind == OP_ATTN) {
            s = max_sz(s, 3 * (size_t)o->cin * hw);
            wk = max_sz(wk, ddpm_attention_workspace(N, o->cin, (int)hw));
            ddpm_conv2d_desc d = ddpm_unet_desc3(N, o->cin, o->H, o->W, 3 * o->cin, 1);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
        } else if (o->kind == OP_RES) {
            ddpm_conv2d_desc d = ddpm_unet_desc3(N, (int)ct, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            d = ddpm_unet_desc3(N, o->cout, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            d = ddpm_unet_desc3(N, (int)ct, o->H, o->W, o->cout, 1);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            wk = max_sz(wk, ddpm_groupnorm_silu_workspace(N, (int)max_sz(ct, (size_t)o->cout)));
        } else if (o->kind == OP_OUT) {
            ddpm_conv2d_desc d = ddpm_unet_desc3(N, o->cin, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            wk = max_sz(wk, ddpm_groupnorm_silu_workspace(N, o->cin));
        } else {
            ddpm_conv2d_desc d = ddpm_unet_conv_desc(o, N);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            if (o->kind == OP_UPCONV) s = max_sz(s, (size_t)o->cin * hw * 4);
        }
    }
    *scratch = s;
    *work = wk;
}

/* dst = count floats from arena a; on a real (not measuring) arena a
 * failure returns DDPM_ERR_NOMEM from the calling function. */
#define ALLOC(dst, count)                                                  \
    do {                                                                   \
        (dst) = ddpm_arena_alloc(a, (count));                              \
        if (!(dst) && !a->measuring) return DDPM_ERR_NOMEM;                \
    } while (0)

/* Every op's slots: its own buffer where a training model's backward reads
 * it, else the one buffer of that slot shared by all ops (sized for the
 * largest). */
static ddpm_status plan_slots(ddpm_unet *m, ddpm_arena *a) {
    size_t N = (size_t)m->max_batch, sz[B_COUNT], shared[B_COUNT] = {0};
    float *sb[B_COUNT] = {0};
    for (int i = 0; i < m->nops; i++) {
        slot_sizes(m, &m->ops[i], sz);
        for (int k = 0; k < B_COUNT; k++) shared[k] = max_sz(shared[k], sz[k]);
    }
    for (int k = 0; k < B_COUNT; k++)
        if (shared[k] && !(m->training && slot_saved(k))) ALLOC(sb[k], N * shared[k]);
    for (int i = 0; i < m->nops; i++) {
        op *o = &m->ops[i];
        slot_sizes(m, o, sz);
        for (int k = 0; k < B_COUNT; k++) {
            o->buf[k] = NULL;
            if (!sz[k]) continue;
            if (m->training && slot_saved(k)) ALLOC(o->buf[k], N * sz[k]);
            else o->buf[k] = sb[k];
        }
    }
    return DDPM_OK;
}

/* A training model's gradients of the streams and the time embedding. */
static ddpm_status plan_grads(ddpm_unet *m, ddpm_arena *a) {
    size_t N = (size_t)m->max_batch, E = 4 * (size_t)m->cfg.ch;
    ALLOC(m->g_temb_act, N * E);
    for (int i = 0; i < m->nst; i++) {
        stream *s = &m->st[i];
        ALLOC(s->g, N * s->c * s->h * s->w);
    }
    ALLOC(m->g_temb, N * E);
    ALLOC(m->g_t1a, N * E);
    ALLOC(m->g_t1, N * E);
    size_t maxc = 0;
    for (int i = 0; i < m->nops; i++) maxc = max_sz(maxc, (size_t)m->ops[i].cout);
    ALLOC(m->g_tp, N * maxc);
    return DDPM_OK;
}

/* Carves every buffer from the arena, in a fixed order (unet_internal.h). */
ddpm_status ddpm_unet_plan(ddpm_unet *m, ddpm_arena *a) {
    size_t N = (size_t)m->max_batch, ch = (size_t)m->cfg.ch, E = 4 * ch;
    float *tmp;
    ALLOC(tmp, N);
    m->t = (int *)tmp;
    ALLOC(tmp, N);
    m->labels = (int *)tmp;
    ALLOC(m->temb_sin, N * ch);
    ALLOC(m->t1, N * E);
    ALLOC(m->t1a, N * E);
    ALLOC(m->temb, N * E);
    ALLOC(m->temb_act, N * E);
    for (int i = 1; i < m->nst - 1; i++) { /* the first and last streams are the caller's */
        stream *s = &m->st[i];
        ALLOC(s->x, N * s->c * s->h * s->w);
    }
    ddpm_status st = plan_slots(m, a);
    if (!st && m->training) st = plan_grads(m, a);
    if (st) return st;
    size_t scratch, work;
    scratch_sizes(m, m->max_batch, &scratch, &work);
    int nscratch = m->training ? 3 : 0;
    for (int k = 0; k < nscratch; k++) ALLOC(m->scratch[k], N * scratch);
    ALLOC(m->work, work);
    return DDPM_OK;
}

#undef ALLOC
