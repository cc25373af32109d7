/* unet_graph.c: builds the UNet graph of docs/design.md §4 from a config: the
 * parameter table (names, shapes and order of the PyTorch module's
 * state_dict), the ops and the streams between them. No buffers are sized
 * here (unet_plan.c does that). See unet_internal.h. */
#include "core/util.h"
#include "model/unet_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adds one parameter tensor; returns its index or -1 on allocation failure. */
static int add_param(ddpm_unet *m, ddpm_param_kind kind, int fan_in, int ndim, const int *shape,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int add_param(ddpm_unet *m, ddpm_param_kind kind, int fan_in, int ndim, const int *shape,
                     const char *fmt, ...) {
    if (!ddpm_grow((void **)&m->pinfo, &m->cap_params, m->nparams + 1, sizeof *m->pinfo)) return -1;
    ddpm_param_info *p = &m->pinfo[m->nparams];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->offset = m->total;
    p->kind = kind;
    p->fan_in = fan_in;
    m->total += p->numel;
    return m->nparams++;
}

/* conv: weight (F, C, K, K), bias (F). Returns the weight's index. */
static int add_conv(ddpm_unet *m, const char *prefix, int C, int F, int K) {
    int w = add_param(m, DDPM_PARAM_WEIGHT, C * K * K, 4, (int[]){F, C, K, K}, "%s.weight", prefix);
    int b = add_param(m, DDPM_PARAM_BIAS, C * K * K, 1, (int[]){F}, "%s.bias", prefix);
    return (w < 0 || b < 0) ? -2 : w;
}

/* linear: weight (O, I), bias (O). */
static int add_linear(ddpm_unet *m, const char *prefix, int I, int O) {
    int w = add_param(m, DDPM_PARAM_WEIGHT, I, 2, (int[]){O, I}, "%s.weight", prefix);
    int b = add_param(m, DDPM_PARAM_BIAS, I, 1, (int[]){O}, "%s.bias", prefix);
    return (w < 0 || b < 0) ? -2 : w;
}

/* GroupNorm: weight (C), bias (C). */
static int add_norm(ddpm_unet *m, const char *prefix, int C) {
    int w = add_param(m, DDPM_PARAM_NORM_W, 0, 1, (int[]){C}, "%s.weight", prefix);
    int b = add_param(m, DDPM_PARAM_NORM_B, 0, 1, (int[]){C}, "%s.bias", prefix);
    return (w < 0 || b < 0) ? -2 : w;
}

static int add_stream(ddpm_unet *m, int c, int h, int w) {
    if (!ddpm_grow((void **)&m->st, &m->cap_st, m->nst + 1, sizeof *m->st)) return -1;
    m->st[m->nst] = (stream){.c = c, .h = h, .w = w};
    return m->nst++;
}

static op *new_op(ddpm_unet *m, int kind, const char *name) {
    if (!ddpm_grow((void **)&m->ops, &m->cap_ops, m->nops + 1, sizeof *m->ops)) return NULL;
    op *o = &m->ops[m->nops++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    snprintf(o->name, sizeof o->name, "%s", name);
    o->skip = -1;
    o->norm1 = o->conv1 = o->temb_proj = o->norm2 = o->conv2 = o->nin = -1;
    o->p_begin = m->nparams;
    return o;
}

/* ResBlock parameters, registered in the PyTorch module's order. */
static void resblock_params(ddpm_unet *m, op *o, const char *prefix) {
    char name[64];
    int ct = o->cin + o->cskip, E = 4 * m->cfg.ch;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    o->norm1 = add_norm(m, name, ct);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    o->conv1 = add_conv(m, name, ct, o->cout, 3);
    snprintf(name, sizeof name, "%s.temb_proj", prefix);
    o->temb_proj = add_linear(m, name, E, o->cout);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    o->norm2 = add_norm(m, name, o->cout);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    o->conv2 = add_conv(m, name, o->cout, o->cout, 3);
    if (ct != o->cout) {
        snprintf(name, sizeof name, "%s.nin_shortcut", prefix);
        o->nin = add_conv(m, name, ct, o->cout, 1);
    }
}

static void attn_params(ddpm_unet *m, op *o, const char *prefix) {
    char name[64];
    snprintf(name, sizeof name, "%s.norm", prefix);
    o->norm1 = add_norm(m, name, o->cin);
    snprintf(name, sizeof name, "%s.qkv", prefix);
    o->conv1 = add_conv(m, name, o->cin, 3 * o->cin, 1);
    snprintf(name, sizeof name, "%s.proj_out", prefix);
    o->conv2 = add_conv(m, name, o->cin, o->cin, 1);
}

/* Appends a shape-preserving op (ResBlock or attention) reading stream `in`
 * (and `skip`), writing a new stream of `cout` channels. */
static op *append_block(ddpm_unet *m, int kind, const char *name, int in, int skip, int cout) {
    op *o = new_op(m, kind, name);
    if (!o) return NULL;
    stream s = m->st[in];
    o->in = in;
    o->skip = skip;
    o->cin = s.c;
    o->cskip = skip >= 0 ? m->st[skip].c : 0;
    o->cout = cout;
    o->H = o->Ho = s.h;
    o->W = o->Wo = s.w;
    if (kind == OP_RES) resblock_params(m, o, name);
    else attn_params(m, o, name);
    o->out = add_stream(m, cout, s.h, s.w);
    o->p_end = m->nparams;
    return o;
}

static op *append_conv(ddpm_unet *m, int kind, const char *prefix, int in, int cout, int K, int S,
                       int P) {
    op *o = new_op(m, kind, prefix);
    if (!o) return NULL;
    stream s = m->st[in];
    o->in = in;
    o->cin = s.c;
    o->cout = cout;
    o->H = s.h;
    o->W = s.w;
    o->K = K;
    o->S = S;
    o->P = P;
    int h = kind == OP_UPCONV ? 2 * s.h : s.h, w = kind == OP_UPCONV ? 2 * s.w : s.w;
    o->Ho = ddpm_conv2d_out(h, K, S, P);
    o->Wo = ddpm_conv2d_out(w, K, S, P);
    o->conv1 = add_conv(m, prefix, s.c, cout, K);
    o->out = add_stream(m, cout, o->Ho, o->Wo);
    o->p_end = m->nparams;
    return o;
}

static bool is_attn_res(const ddpm_unet_config *c, int h) {
    for (int i = 0; i < c->num_attn; i++)
        if (c->attn_res[i] == h) return true;
    return false;
}

#define TRY(expr)                                                                  \
    do {                                                                           \
        if (!(expr)) return ddpm_error(DDPM_ERR_NOMEM, "out of memory building the model"); \
    } while (0)

/* The skip stack: the output of conv_in, of every down-path ResBlock(+Attn)
 * and of every downsample, popped by the up-path ResBlocks. */
typedef struct {
    int id[1 + DDPM_MAX_LEVELS * (UNET_MAX_RES_BLOCKS + 1)];
    int n;
} skip_stack;

/* A ResBlock, plus attention when attn, on stream cur (with skip stream
 * `skip`, or -1). Returns the output stream, or -1 when out of memory. */
static int res_attn(ddpm_unet *m, const char *path, int i, int j, int cur, int skip, int width, bool attn) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d.block.%d", path, i, j);
    op *o = append_block(m, OP_RES, name, cur, skip, width);
    if (!o || o->out < 0 || !attn) return o ? o->out : -1;
    snprintf(name, sizeof name, "%s.%d.attn.%d", path, i, j);
    o = append_block(m, OP_ATTN, name, o->out, -1, width);
    return o ? o->out : -1;
}

/* Down level i from stream cur. The PyTorch module registers a level's
 * blocks, then its attention blocks, then the downsample; ops run
 * interleaved. Returns the last stream, or -1 when out of memory. */
static int down_level(ddpm_unet *m, int i, int cur, skip_stack *hs) {
    const ddpm_unet_config *c = &m->cfg;
    int width = c->ch * c->ch_mult[i];
    bool attn = is_attn_res(c, m->st[cur].h);
    for (int j = 0; j < c->num_res_blocks; j++) {
        if ((cur = res_attn(m, "down", i, j, cur, -1, width, attn)) < 0) return -1;
        hs->id[hs->n++] = cur;
    }
    if (i != c->num_levels - 1) {
        char name[64];
        snprintf(name, sizeof name, "down.%d.downsample.conv", i);
        op *o = append_conv(m, OP_CONV, name, cur, width, 3, 2, 1);
        if (!o || (cur = o->out) < 0) return -1;
        hs->id[hs->n++] = cur;
    }
    return cur;
}

/* Up level i from stream cur: num_res_blocks + 1 ResBlocks on
 * concat(h, skip), then (except at level 0) upsample + conv. */
static int up_level(ddpm_unet *m, int i, int cur, skip_stack *hs) {
    const ddpm_unet_config *c = &m->cfg;
    int width = c->ch * c->ch_mult[i];
    bool attn = is_attn_res(c, m->st[cur].h);
    for (int j = 0; j < c->num_res_blocks + 1; j++)
        if ((cur = res_attn(m, "up", i, j, cur, hs->id[--hs->n], width, attn)) < 0) return -1;
    if (i != 0) {
        char name[64];
        snprintf(name, sizeof name, "up.%d.upsample.conv", i);
        op *o = append_conv(m, OP_UPCONV, name, cur, width, 3, 1, 1);
        if (!o) return -1;
        cur = o->out;
    }
    return cur;
}

/* The output head GN, SiLU, conv3x3 (ch -> in_ch) on stream cur. */
static op *out_head(ddpm_unet *m, int cur) {
    op *o = new_op(m, OP_OUT, "out");
    if (!o) return NULL;
    o->in = cur;
    o->cin = m->st[cur].c;
    o->cout = m->cfg.in_ch;
    o->H = o->Ho = m->st[cur].h;
    o->W = o->Wo = m->st[cur].w;
    o->norm1 = add_norm(m, "norm_out", o->cin);
    o->conv1 = add_conv(m, "conv_out", o->cin, o->cout, 3);
    o->out = add_stream(m, o->cout, o->Ho, o->Wo);
    o->p_end = m->nparams;
    return o;
}

ddpm_status ddpm_unet_graph_build(ddpm_unet *m) {
    const ddpm_unet_config *c = &m->cfg;
    int E = 4 * c->ch;
    m->temb0 = add_linear(m, "temb.dense.0", c->ch, E);
    m->temb1 = add_linear(m, "temb.dense.1", E, E);
    m->label_emb = -1;
    if (c->num_classes > 0)
        m->label_emb = add_param(m, DDPM_PARAM_EMBED, 0, 2, (int[]){c->num_classes + 1, E}, "label_emb.weight");

    int x = add_stream(m, c->in_ch, c->res, c->res);
    TRY(x == 0);
    op *o;
    TRY(o = append_conv(m, OP_CONV, "conv_in", x, c->ch, 3, 1, 1));
    int cur = o->out;
    TRY(cur >= 0);
    skip_stack hs = {.id = {cur}, .n = 1};
    for (int i = 0; i < c->num_levels; i++) TRY((cur = down_level(m, i, cur, &hs)) >= 0);

    int wmid = m->st[cur].c;
    TRY(o = append_block(m, OP_RES, "mid.block_1", cur, -1, wmid));
    TRY(o = append_block(m, OP_ATTN, "mid.attn_1", o->out, -1, wmid));
    TRY(o = append_block(m, OP_RES, "mid.block_2", o->out, -1, wmid));
    cur = o->out;
    TRY(cur >= 0);
    for (int i = c->num_levels - 1; i >= 0; i--) TRY((cur = up_level(m, i, cur, &hs)) >= 0);

    TRY(o = out_head(m, cur));
    TRY(o->out >= 0);
    for (int i = 0; i < m->nparams; i++) TRY(m->pinfo[i].numel > 0);
    for (int i = 0; i < m->nops; i++)
        TRY(m->ops[i].norm1 != -2 && m->ops[i].conv1 != -2 && m->ops[i].temb_proj != -2 &&
            m->ops[i].norm2 != -2 && m->ops[i].conv2 != -2 && m->ops[i].nin != -2);
    TRY(m->temb0 >= 0 && m->temb1 >= 0);
    return DDPM_OK;
}

void ddpm_unet_graph_free(ddpm_unet *m) {
    free(m->pinfo);
    free(m->ops);
    free(m->st);
    free(m->blocks);
}
