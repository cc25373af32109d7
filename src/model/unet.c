/* unet.c: the DDPM UNet built from the nn layers. See unet.h and DESIGN.md §4.
 *
 * The network is a list of ops (conv, ResBlock, attention, upsample+conv,
 * output head) over "streams": the tensors that flow between blocks. Each op
 * reads one stream (a ResBlock on the up path also reads a skip stream and
 * concatenates it) and writes one. Backward walks the ops in reverse; each
 * op reads the gradient of its output stream and accumulates into the
 * gradients of its input streams, so the skip connections need no special
 * case: a skip stream simply receives gradient from two ops. A stream's
 * gradient is not zeroed up front: the first op to reach it in a backward
 * pass either copies into it (residual adds, the concat split) or zeroes it
 * first (layers that accumulate), which saves a pass over most of them.
 *
 * Shape letters: N batch, C channels, H W spatial size, HW = H*W, E = 4*ch
 * (time embedding width).
 */
#include "ddpm/unet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm/nn.h"
#include "core/prof.h"

enum { OP_CONV, OP_RES, OP_ATTN, OP_UPCONV, OP_OUT };

/* Per-op activations. In an inference model every op's slot k points at the
 * same shared buffer. A training model keeps its own copy of each slot that
 * backward reads, except those that are cheap to rebuild: the fused
 * GroupNorm + SiLU outputs and the attention's GroupNorm output (from the
 * kept input and statistics, bit-identical) and the up path's concatenated
 * input (from its two input streams, which are kept anyway). Those are
 * shared as in inference: backward recomputes them, one elementwise pass
 * each, for less than half the activation memory. The forward never forms
 * the concatenation (the first GroupNorm and the 1x1 shortcut read its two
 * parts), so only a training model has that slot. The normalized tensor
 * before the SiLU and the shortcut's output are never stored: the fused
 * layer (norm.h) recomputes the first on the fly, and the shortcut is
 * accumulated straight onto conv2's output (shortcut_add). */
enum {
    B_XCAT,  /* up-path ResBlock: concat(in, skip) (recomputed) (N, Ct, HW) */
    B_N1,    /* attention: GroupNorm output (recomputed)        (N, C, HW) */
    B_MEAN1, /* first GroupNorm's statistics                    (N, G) */
    B_RSTD1,
    B_A1,    /* SiLU(GN1(x)): the conv1 input (recomputed)      (N, Ct, HW) */
    B_H,     /* ResBlock: conv1 out + temb; attention: h        (N, C, HW) */
    B_TP,    /* temb_proj output                                (N, C) */
    B_MEAN2, /* second GroupNorm's statistics                   (N, G) */
    B_RSTD2,
    B_A2,    /* dropout(SiLU(GN2(h))): conv2 input (recomputed) (N, C, HW) */
    B_MASK,  /* dropout mask                                    (N, C, HW) */
    B_QKV,   /* attention qkv                                   (N, 3C, HW) */
    B_ATT,   /* attention weights                               (N, HW, HW) */
    B_UP,    /* upsampled input                                 (N, C, 2H, 2W) */
    B_COUNT
};

typedef struct {
    int kind;
    char name[32];
    int in, skip, out;     /* stream ids; skip = -1 unless an up-path ResBlock */
    int cin, cskip, cout;  /* input channels (+ skip channels) -> output channels */
    int H, W, Ho, Wo;      /* input and output size */
    int K, S, P;           /* OP_CONV geometry */
    /* parameter index of each sublayer's weight (its bias is the next entry),
     * -1 when absent. ResBlock: norm1 conv1 temb_proj norm2 conv2 nin;
     * attention: norm1 = norm, conv1 = qkv, conv2 = proj_out; OP_CONV and
     * OP_UPCONV: conv1; OP_OUT: norm1, conv1. */
    int norm1, conv1, temb_proj, norm2, conv2, nin;
    int p_begin, p_end;    /* this op's parameters, for `ddpm info` */
    float *buf[B_COUNT];
} op;

typedef struct {
    int c, h, w;
    float *x; /* (N, c, h, w) */
    float *g; /* its gradient (training) */
    bool fresh; /* backward: g not written yet in this pass (holds garbage) */
} stream;

struct ddpm_unet {
    ddpm_unet_config cfg;
    int max_batch, N;
    bool training, have_forward;
    int pass; /* DDPM_PROF_FWD or DDPM_PROF_BWD, for the profile */

    ddpm_param_info *pinfo;
    int nparams, cap_params;
    size_t total;
    float *params, *grads;

    op *ops;
    int nops, cap_ops;
    stream *st;
    int nst, cap_st;
    ddpm_block_info *blocks;
    int nblocks;
    double flops;

    int temb0, temb1, label_emb; /* param indices */

    /* time embedding activations */
    int *t, *labels;                               /* (N) */
    float *temb_sin;                               /* (N, ch) */
    float *t1, *t1a, *temb, *temb_act;             /* (N, E) */
    float *g_temb_act, *g_temb, *g_t1a, *g_t1, *g_tp; /* training */

    float *scratch[3]; /* backward scratch, each (N, max C*HW) */
    float *work;       /* conv / attention workspace */

    ddpm_arena arena;
    ddpm_rng rng;
};

/* ---- config ---------------------------------------------------------------- */

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
        return ddpm_error(DDPM_ERR_ARG, "base width (--ch) must be even and in [2, 4096], got %d", c->ch);
    if (c->num_levels < 1 || c->num_levels > DDPM_MAX_LEVELS)
        return ddpm_error(DDPM_ERR_ARG, "--ch-mult needs 1 to %d levels, got %d", DDPM_MAX_LEVELS, c->num_levels);
    if (c->num_res_blocks < 1 || c->num_res_blocks > 16)
        return ddpm_error(DDPM_ERR_ARG, "--res-blocks must be in [1, 16], got %d", c->num_res_blocks);
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

/* ---- graph construction ------------------------------------------------------ */

static void *grow(void *p, int *cap, int need, size_t elem) {
    if (need <= *cap) return p;
    int ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) ncap *= 2;
    void *q = realloc(p, (size_t)ncap * elem);
    if (q) *cap = ncap;
    return q;
}

/* Adds one parameter tensor; returns its index or -1 on allocation failure. */
static int add_param(ddpm_unet *m, ddpm_param_kind kind, int fan_in, int ndim, const int *shape,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int add_param(ddpm_unet *m, ddpm_param_kind kind, int fan_in, int ndim, const int *shape,
                     const char *fmt, ...) {
    ddpm_param_info *q = grow(m->pinfo, &m->cap_params, m->nparams + 1, sizeof *q);
    if (!q) return -1;
    m->pinfo = q;
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
    stream *q = grow(m->st, &m->cap_st, m->nst + 1, sizeof *q);
    if (!q) return -1;
    m->st = q;
    m->st[m->nst] = (stream){.c = c, .h = h, .w = w};
    return m->nst++;
}

static op *new_op(ddpm_unet *m, int kind, const char *name) {
    op *q = grow(m->ops, &m->cap_ops, m->nops + 1, sizeof *q);
    if (!q) return NULL;
    m->ops = q;
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

static ddpm_status build_graph(ddpm_unet *m) {
    const ddpm_unet_config *c = &m->cfg;
    int E = 4 * c->ch;
    char name[64];

    m->temb0 = add_linear(m, "temb.dense.0", c->ch, E);
    m->temb1 = add_linear(m, "temb.dense.1", E, E);
    m->label_emb = -1;
    if (c->num_classes > 0)
        m->label_emb = add_param(m, DDPM_PARAM_EMBED, 0, 2, (int[]){c->num_classes + 1, E}, "label_emb.weight");

    int x = add_stream(m, c->in_ch, c->res, c->res);
    TRY(x == 0);
    op *o;
    TRY(o = append_conv(m, OP_CONV, "conv_in", x, c->ch, 3, 1, 1));
    int hs[64], nhs = 0, cur = o->out;
    hs[nhs++] = cur;

    /* Down path. The PyTorch module registers a level's blocks, then its
     * attention blocks, then the downsample; ops run interleaved. */
    for (int i = 0; i < c->num_levels; i++) {
        int width = c->ch * c->ch_mult[i];
        bool attn = is_attn_res(c, m->st[cur].h);
        for (int j = 0; j < c->num_res_blocks; j++) {
            snprintf(name, sizeof name, "down.%d.block.%d", i, j);
            TRY(o = append_block(m, OP_RES, name, cur, -1, width));
            cur = o->out;
            if (attn) {
                snprintf(name, sizeof name, "down.%d.attn.%d", i, j);
                TRY(o = append_block(m, OP_ATTN, name, cur, -1, width));
                cur = o->out;
            }
            hs[nhs++] = cur;
        }
        if (i != c->num_levels - 1) {
            snprintf(name, sizeof name, "down.%d.downsample.conv", i);
            TRY(o = append_conv(m, OP_CONV, name, cur, width, 3, 2, 1));
            cur = o->out;
            hs[nhs++] = cur;
        }
    }

    int wmid = m->st[cur].c;
    TRY(o = append_block(m, OP_RES, "mid.block_1", cur, -1, wmid));
    TRY(o = append_block(m, OP_ATTN, "mid.attn_1", o->out, -1, wmid));
    TRY(o = append_block(m, OP_RES, "mid.block_2", o->out, -1, wmid));
    cur = o->out;

    for (int i = c->num_levels - 1; i >= 0; i--) {
        int width = c->ch * c->ch_mult[i];
        bool attn = is_attn_res(c, m->st[cur].h);
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            snprintf(name, sizeof name, "up.%d.block.%d", i, j);
            TRY(o = append_block(m, OP_RES, name, cur, hs[--nhs], width));
            cur = o->out;
            if (attn) {
                snprintf(name, sizeof name, "up.%d.attn.%d", i, j);
                TRY(o = append_block(m, OP_ATTN, name, cur, -1, width));
                cur = o->out;
            }
        }
        if (i != 0) {
            snprintf(name, sizeof name, "up.%d.upsample.conv", i);
            TRY(o = append_conv(m, OP_UPCONV, name, cur, width, 3, 1, 1));
            cur = o->out;
        }
    }

    TRY(o = new_op(m, OP_OUT, "out"));
    o->in = cur;
    o->cin = m->st[cur].c;
    o->cout = c->in_ch;
    o->H = o->Ho = m->st[cur].h;
    o->W = o->Wo = m->st[cur].w;
    o->norm1 = add_norm(m, "norm_out", o->cin);
    o->conv1 = add_conv(m, "conv_out", o->cin, c->in_ch, 3);
    o->out = add_stream(m, c->in_ch, o->Ho, o->Wo);
    o->p_end = m->nparams;
    TRY(o->out >= 0);
    for (int i = 0; i < m->nparams; i++) TRY(m->pinfo[i].numel > 0);
    for (int i = 0; i < m->nops; i++)
        TRY(m->ops[i].norm1 != -2 && m->ops[i].conv1 != -2 && m->ops[i].temb_proj != -2 &&
            m->ops[i].norm2 != -2 && m->ops[i].conv2 != -2 && m->ops[i].nin != -2);
    TRY(m->temb0 >= 0 && m->temb1 >= 0);
    return DDPM_OK;
}

/* ---- FLOPs and the block table ------------------------------------------------ */

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

static ddpm_status build_blocks(ddpm_unet *m) {
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

static ddpm_conv2d_desc conv_desc(const op *o, int N) {
    ddpm_conv2d_desc d = {.N = N, .C = o->cin, .H = o->H, .W = o->W, .F = o->cout, .K = o->K, .S = o->S, .P = o->P};
    if (o->kind == OP_UPCONV) {
        d.H *= 2;
        d.W *= 2;
    }
    return d;
}

static ddpm_conv2d_desc desc3(int N, int C, int H, int W, int F, int K) {
    return (ddpm_conv2d_desc){.N = N, .C = C, .H = H, .W = W, .F = F, .K = K, .S = 1, .P = K / 2};
}

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
            ddpm_conv2d_desc d = desc3(N, o->cin, o->H, o->W, 3 * o->cin, 1);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
        } else if (o->kind == OP_RES) {
            ddpm_conv2d_desc d = desc3(N, (int)ct, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            d = desc3(N, o->cout, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            d = desc3(N, (int)ct, o->H, o->W, o->cout, 1);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            wk = max_sz(wk, ddpm_groupnorm_silu_workspace(N, (int)max_sz(ct, (size_t)o->cout)));
        } else if (o->kind == OP_OUT) {
            ddpm_conv2d_desc d = desc3(N, o->cin, o->H, o->W, o->cout, 3);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            wk = max_sz(wk, ddpm_groupnorm_silu_workspace(N, o->cin));
        } else {
            ddpm_conv2d_desc d = conv_desc(o, N);
            wk = max_sz(wk, ddpm_conv2d_workspace(&d));
            if (o->kind == OP_UPCONV) s = max_sz(s, (size_t)o->cin * hw * 4);
        }
    }
    *scratch = s;
    *work = wk;
}

/* Carves every buffer from the arena, in a fixed order. Run once on a
 * measuring arena to size the real one, then on the real one. */
static ddpm_status plan(ddpm_unet *m, ddpm_arena *a) {
    size_t N = (size_t)m->max_batch, ch = (size_t)m->cfg.ch, E = 4 * ch;
    bool meas = a->measuring;
#define ALLOC(dst, count)                                             \
    do {                                                              \
        (dst) = ddpm_arena_alloc(a, (count));                         \
        if (!(dst) && !meas) return DDPM_ERR_NOMEM;                   \
    } while (0)
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

    size_t sz[B_COUNT], shared[B_COUNT] = {0};
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
    if (m->training) {
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
    }
    size_t scratch, work;
    scratch_sizes(m, m->max_batch, &scratch, &work);
    int nscratch = m->training ? 3 : 0;
    for (int k = 0; k < nscratch; k++) ALLOC(m->scratch[k], N * scratch);
    ALLOC(m->work, work);
#undef ALLOC
    return DDPM_OK;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void free_graph(ddpm_unet *m) {
    free(m->pinfo);
    free(m->ops);
    free(m->st);
    free(m->blocks);
}

ddpm_status ddpm_unet_describe(const ddpm_unet_config *cfg, size_t *num_params, double *flops) {
    ddpm_status s = ddpm_unet_config_validate(cfg);
    if (s) return s;
    ddpm_unet m = {.cfg = *cfg};
    s = build_graph(&m);
    if (!s) s = build_blocks(&m);
    if (!s) {
        if (num_params) *num_params = m.total;
        if (flops) *flops = m.flops;
    }
    free_graph(&m);
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
    s = build_graph(&m);
    if (!s) {
        *table = m.pinfo;
        *count = m.nparams;
        *total = m.total;
        m.pinfo = NULL;
    }
    free_graph(&m);
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
    if ((s = build_graph(m)) || (s = build_blocks(m))) goto fail;

    m->params = ddpm_calloc(m->total, sizeof(float));
    if (!m->params) { s = DDPM_ERR_NOMEM; goto fail; }
    if (training) {
        m->grads = ddpm_calloc(m->total, sizeof(float));
        if (!m->grads) { s = DDPM_ERR_NOMEM; goto fail; }
    }
    ddpm_arena meas;
    ddpm_arena_init_measuring(&meas);
    plan(m, &meas);
    if ((s = ddpm_arena_init(&m->arena, meas.peak))) goto fail;
    if ((s = plan(m, &m->arena))) goto fail;
    *out = m;
    return DDPM_OK;
fail:
    ddpm_unet_free(m);
    return s;
}

void ddpm_unet_free(ddpm_unet *m) {
    if (!m) return;
    free_graph(m);
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

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* x = 0, on all threads when large (one core cannot saturate the memory). */
static void zero(float *x, size_t n) {
    const size_t chunk = (size_t)1 << 14;
    size_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n > 8 * chunk)
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

/* dst (N, C, HW) = (or += when add) channels [c0, c0 + C) of src (N, Ct, HW). */
static void take_channels(float *dst, const float *src, int N, int C, int Ct, int c0, int HW, bool add) {
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * HW > 32768)
    for (long p = 0; p < planes; p++) {
        float *d = dst + (size_t)p * HW;
        const float *s = src + ((size_t)(p / C) * Ct + c0 + (size_t)(p % C)) * HW;
        if (add)
            for (int k = 0; k < HW; k++) d[k] += s[k];
        else
            memcpy(d, s, (size_t)HW * sizeof *d);
    }
}

/* Adds channels [c0, c0 + C) of d (N, Ct, HW) into the gradient of stream i
 * (N, C, HW), or copies them on the stream's first write in this pass: the
 * residual adds (Ct = C) and the split of a concatenated input's gradient. */
static void grad_add_channels(ddpm_unet *m, int i, const float *d, int Ct, int c0) {
    stream *s = &m->st[i];
    TIMED(ELEM, take_channels(s->g, d, m->N, s->c, Ct, c0, s->h * s->w, !s->fresh));
    s->fresh = false;
}

/* out (N, C, HW) += nin(concat(a, b)), the 1x1 shortcut conv (weight (C, CA+CB),
 * bias (C)) of a ResBlock added onto its conv2 output: per image
 * out_n += W[:, :CA] a_n + W[:, CA:] b_n + bias, two GEMMs accumulating into
 * out. Neither the concatenation a (N, CA, HW), b (N, CB, HW) (b NULL when
 * CB = 0) nor the shortcut's output is ever formed, and the residual add
 * costs no pass of its own. Images run on the threads, each GEMM
 * single-threaded inside the region, as in conv.c. */
static void shortcut_add(float *out, const float *a, const float *b, const float *w,
                         const float *bias, int N, int CA, int CB, int C, int HW) {
    const int Ct = CA + CB;
#pragma omp parallel for schedule(dynamic) if (N > 1 && 2.0 * N * C * Ct * HW >= 4e6)
    for (int n = 0; n < N; n++) {
        float *y = out + (size_t)n * C * HW; /* (C, HW) */
        ddpm_gemm(false, false, C, HW, CA, 1.0f, w, Ct, a + (size_t)n * CA * HW, HW, 1.0f, y, HW);
        if (CB) ddpm_gemm(false, false, C, HW, CB, 1.0f, w + CA, Ct, b + (size_t)n * CB * HW, HW, 1.0f, y, HW);
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
    ddpm_conv2d_desc d1 = desc3(N, ct, o->H, o->W, C, 3), d2 = desc3(N, C, o->H, o->W, C, 3);
    TIMED(CONV3, ddpm_conv2d_forward(b[B_H], b[B_A1], PW(o->conv1), PB(o->conv1), &d1, m->work));
    TIMED(TEMB, ddpm_linear_forward(b[B_TP], m->temb_act, PW(o->temb_proj), PB(o->temb_proj), N, 4 * m->cfg.ch, C));
    TIMED(ELEM, ddpm_add_bias_nc_forward(b[B_H], b[B_H], b[B_TP], N, C, HW));
    /* a2 = dropout(silu(GN2(h))); dropout only when training */
    const float *mask = NULL;
    if (m->training && m->cfg.dropout > 0.0f) {
        TIMED(ACT, ddpm_dropout_mask(b[B_MASK], n_out, m->cfg.dropout, &m->rng));
        mask = b[B_MASK];
    }
    TIMED(NORM, ddpm_groupnorm_silu_forward(b[B_A2], b[B_MEAN2], b[B_RSTD2], b[B_H], PW(o->norm2), PB(o->norm2), mask, N, C, HW, G));
    TIMED(CONV3, ddpm_conv2d_forward(out, b[B_A2], PW(o->conv2), PB(o->conv2), &d2, m->work));
    if (o->nin >= 0) TIMED(CONV1, shortcut_add(out, x, xs, PW(o->nin), PB(o->nin), N, o->cin, o->cskip, C, HW));
    else TIMED(ELEM, add_inplace(out, x, n_out));
}

static void attn_forward(ddpm_unet *m, op *o, int N) {
    int C = o->cin, T = o->H * o->W;
    const float *x = m->st[o->in].x;
    float *out = m->st[o->out].x, **b = o->buf;
    TIMED(NORM, ddpm_groupnorm_forward(b[B_N1], b[B_MEAN1], b[B_RSTD1], x, PW(o->norm1), PB(o->norm1), N, C, T, m->cfg.groups));
    ddpm_conv2d_desc dq = desc3(N, C, o->H, o->W, 3 * C, 1), dp = desc3(N, C, o->H, o->W, C, 1);
    TIMED(CONV1, ddpm_conv2d_forward(b[B_QKV], b[B_N1], PW(o->conv1), PB(o->conv1), &dq, m->work));
    TIMED(ATTN, ddpm_attention_forward(b[B_H], b[B_ATT], b[B_QKV], N, C, T));
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
        ddpm_conv2d_desc d = conv_desc(o, N);
        TIMED(CONV3, ddpm_conv2d_forward(out, x, PW(o->conv1), PB(o->conv1), &d, m->work));
        break;
    }
    case OP_UPCONV: {
        ddpm_conv2d_desc d = conv_desc(o, N);
        TIMED(ELEM, ddpm_upsample2x_forward(o->buf[B_UP], x, N, o->cin, o->H, o->W));
        TIMED(CONV3, ddpm_conv2d_forward(out, o->buf[B_UP], PW(o->conv1), PB(o->conv1), &d, m->work));
        break;
    }
    case OP_OUT: {
        int C = o->cin, HW = o->H * o->W;
        float **b = o->buf;
        TIMED(NORM, ddpm_groupnorm_silu_forward(b[B_A1], b[B_MEAN1], b[B_RSTD1], x, PW(o->norm1), PB(o->norm1), NULL, N, C, HW, m->cfg.groups));
        ddpm_conv2d_desc d = desc3(N, C, o->H, o->W, o->cout, 3);
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
    TIMED(TEMB, ddpm_linear_forward(m->t1, m->temb_sin, PW(m->temb0), PB(m->temb0), N, c->ch, E));
    TIMED(ACT, ddpm_silu_forward(m->t1a, m->t1, (size_t)N * E));
    TIMED(TEMB, ddpm_linear_forward(m->temb, m->t1a, PW(m->temb1), PB(m->temb1), N, E, E));
    if (K > 0) {
        const float *table = m->params + m->pinfo[m->label_emb].offset;
        for (int n = 0; n < N; n++)
            for (int e = 0; e < E; e++) m->temb[(size_t)n * E + e] += table[(size_t)m->labels[n] * E + e];
    }
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
    ddpm_conv2d_desc d1 = desc3(N, ct, o->H, o->W, C, 3), d2 = desc3(N, C, o->H, o->W, C, 3);

    /* out = skip(x) + conv2(a2), a2 = dropout(silu(GN2(h))) */
    if (o->nin >= 0) {
        ddpm_conv2d_desc ds = desc3(N, ct, o->H, o->W, C, 1);
        if (!gx) gx = grad_acc(m, o->in);
        TIMED(CONV1, ddpm_conv2d_backward(gx, GW(o->nin), GB(o->nin), gout, x, PW(o->nin), &ds, m->work));
    } else { /* identity shortcut (never with a skip input: then ct != C) */
        grad_add_channels(m, o->in, gout, C, 0);
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
    TIMED(TEMB, ddpm_linear_backward(m->g_temb_act, GW(o->temb_proj), GB(o->temb_proj), m->g_tp, m->temb_act, PW(o->temb_proj), N, E, C));
    TIMED(NORM, ddpm_groupnorm_silu_apply(b[B_A1], x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, ct, HW, G));
    TIMED(ELEM, zero(A, n_in));
    TIMED(CONV3, ddpm_conv2d_backward(A, GW(o->conv1), GB(o->conv1), Hs, b[B_A1], PW(o->conv1), &d1, m->work));
    TIMED(NORM, ddpm_groupnorm_silu_backward(gx, GW(o->norm1), GB(o->norm1), A, x, b[B_MEAN1], b[B_RSTD1], PW(o->norm1), PB(o->norm1), NULL, N, ct, HW, G, m->work));
    if (o->skip >= 0) { /* split into the two concatenated inputs */
        grad_add_channels(m, o->in, gx, ct, 0);
        grad_add_channels(m, o->skip, gx, ct, o->cin);
    }
}

static void attn_backward(ddpm_unet *m, op *o, int N) {
    int C = o->cin, T = o->H * o->W;
    size_t n = (size_t)N * C * T;
    const float *x = m->st[o->in].x, *gout = m->st[o->out].g;
    float **b = o->buf, *A = m->scratch[0], *B = m->scratch[1], *Cs = m->scratch[0];
    ddpm_conv2d_desc dq = desc3(N, C, o->H, o->W, 3 * C, 1), dp = desc3(N, C, o->H, o->W, C, 1);
    grad_add_channels(m, o->in, gout, C, 0); /* residual */
    float *gx = m->st[o->in].g;
    TIMED(ELEM, zero(A, n));
    TIMED(CONV1, ddpm_conv2d_backward(A, GW(o->conv2), GB(o->conv2), gout, b[B_H], PW(o->conv2), &dp, m->work));
    TIMED(ELEM, zero(B, 3 * n));
    TIMED(ATTN, ddpm_attention_backward(B, A, b[B_QKV], b[B_ATT], N, C, T, m->work));
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
        ddpm_conv2d_desc d = conv_desc(o, N);
        TIMED(CONV3, ddpm_conv2d_backward(gx, GW(o->conv1), GB(o->conv1), gout, x, PW(o->conv1), &d, m->work));
        break;
    }
    case OP_UPCONV: {
        ddpm_conv2d_desc d = conv_desc(o, N);
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
        ddpm_conv2d_desc d = desc3(N, C, o->H, o->W, o->cout, 3);
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
    TIMED(TEMB, ddpm_linear_backward(m->g_t1a, GW(m->temb1), GB(m->temb1), m->g_temb, m->t1a, PW(m->temb1), N, E, E));
    TIMED(ELEM, zero(m->g_t1, ne));
    TIMED(ACT, ddpm_silu_backward(m->g_t1, m->g_t1a, m->t1, ne));
    TIMED(TEMB, ddpm_linear_backward(NULL, GW(m->temb0), GB(m->temb0), m->g_t1, m->temb_sin, PW(m->temb0), N, ch, E));
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
size_t ddpm_unet_arena_bytes(const ddpm_unet *m) { return m->arena.capacity; }
ddpm_rng *ddpm_unet_rng(ddpm_unet *m) { return &m->rng; }
