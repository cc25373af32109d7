/* unet_internal.h: the UNet's private data structures, shared by the files
 * of src/model (not public API; see ddpm/unet.h for that):
 *   unet_config.c  defaults, validation, int-list parsing
 *   unet_graph.c   the graph: parameter table, ops and streams (docs/design.md §4)
 *   unet_plan.c    FLOPs, the `ddpm info` block table, the activation arena plan
 *   unet.c         lifecycle, init, forward, backward, accessors
 *
 * The network is a list of ops (conv, ResBlock, attention, upsample+conv,
 * output head) over "streams": the tensors that flow between blocks. Each op
 * reads one stream (a ResBlock on the up path also reads a skip stream and
 * concatenates it) and writes one.
 *
 * Shape letters: N batch, C channels, H W spatial size, HW = H*W, E = 4*ch
 * (time embedding width).
 */
#ifndef DDPM_MODEL_UNET_INTERNAL_H
#define DDPM_MODEL_UNET_INTERNAL_H

#include "ddpm/nn.h"
#include "ddpm/unet.h"

/* The most ResBlocks per level a config may ask for (it sizes the skip stack). */
#define UNET_MAX_RES_BLOCKS 16

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
 * accumulated straight onto conv2's output (shortcut_add in unet.c). */
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
    ddpm_precision prec; /* of the products (ddpm_unet_set_precision) */

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

/* unet_graph.c: fills m's parameter table, ops and streams from m->cfg (a
 * validated config); ddpm_unet_graph_free releases them (and the block table). */
ddpm_status ddpm_unet_graph_build(ddpm_unet *m);
void ddpm_unet_graph_free(ddpm_unet *m);

/* unet_plan.c: the block table and FLOP count of a built graph. */
ddpm_status ddpm_unet_blocks_build(ddpm_unet *m);
/* Carves every activation buffer from the arena, in a fixed order. Run once
 * on a measuring arena to size the real one, then on the real one. */
ddpm_status ddpm_unet_plan(ddpm_unet *m, ddpm_arena *a);

/* The conv of an OP_CONV / OP_UPCONV op for N images (an upconv reads the
 * upsampled input, 2H x 2W). */
static inline ddpm_conv2d_desc ddpm_unet_conv_desc(const op *o, int N) {
    ddpm_conv2d_desc d = {.N = N, .C = o->cin, .H = o->H, .W = o->W, .F = o->cout, .K = o->K, .S = o->S, .P = o->P};
    if (o->kind == OP_UPCONV) {
        d.H *= 2;
        d.W *= 2;
    }
    return d;
}

/* A stride-1 "same" KxK conv, C -> F channels on H x W. */
static inline ddpm_conv2d_desc ddpm_unet_desc3(int N, int C, int H, int W, int F, int K) {
    return (ddpm_conv2d_desc){.N = N, .C = C, .H = H, .W = W, .F = F, .K = K, .S = 1, .P = K / 2};
}

#endif
