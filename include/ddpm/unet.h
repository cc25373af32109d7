/* unet.h: the DDPM noise-prediction UNet (docs/design.md §4).
 *
 * ddpm_unet owns
 *   - params: every weight in ONE contiguous buffer, split into named views by
 *     a table (names are the PyTorch state_dict keys of
 *     scripts/torch_reference.py). grads (training only) uses the same layout,
 *     so optimizer, EMA and checkpoint code are flat loops over num_params;
 *   - an activation arena sized once, at creation, for `max_batch` images. No
 *     call to forward or backward allocates.
 *
 * A model is created for training (forward saves every activation backward
 * needs, gradients are allocated) or for inference (forward only: block
 * intermediates share one scratch region, no gradient buffers), which is
 * what the sampler uses.
 */
#ifndef DDPM_UNET_H
#define DDPM_UNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/rng.h"
#include "ddpm/tensor.h"

#define DDPM_MAX_LEVELS 8

typedef struct {
    int in_ch;          /* image channels (1 for MNIST) */
    int res;            /* image height = width */
    int ch;             /* base width */
    int ch_mult[DDPM_MAX_LEVELS];
    int num_levels;     /* entries used in ch_mult */
    int num_res_blocks;
    int attn_res[DDPM_MAX_LEVELS]; /* resolutions that get attention */
    int num_attn;
    int groups;         /* GroupNorm groups */
    float dropout;
    int num_classes;    /* 0 = unconditional; K > 0 adds a (K+1)-row label table */
} ddpm_unet_config;

/* The default MNIST model: in_ch=1, res=28, ch=32, ch_mult=1,2,2,
 * num_res_blocks=2, attn_res=7, groups=8, dropout=0, num_classes=0. */
void ddpm_unet_config_default(ddpm_unet_config *cfg);
/* The preset for images of side `res` (src/model/presets.c): 32 and 64 px,
 * widths ch x 1,2,2,2 with attention at 16 (ch 32 / 8 groups at 32 px, ch 64
 * / 32 groups at 64 px), in_ch as given, num_classes 0, dropout 0. Returns
 * false (cfg untouched) when there is no preset for res. */
bool ddpm_unet_preset(ddpm_unet_config *cfg, int in_ch, int res);
/* Checks every field and their consistency (divisibility of widths by groups,
 * of res by the downsampling factor, ...). */
ddpm_status ddpm_unet_config_validate(const ddpm_unet_config *cfg);
/* "1,2,2" <-> int list; returns the count or -1 on a malformed list. */
int ddpm_parse_int_list(const char *s, int *out, int cap);
void ddpm_format_int_list(char *buf, size_t cap, const int *v, int n);
/* A short name of the shape, as `ddpm bench` reports it:
 * "ch32-mult1,2,2-rb2-attn7-g8" ("attnnone" without attention), then
 * "-cls10" and "-drop0.1" when set. */
void ddpm_unet_config_name(char *buf, size_t cap, const ddpm_unet_config *c);
/* Every field, as `ddpm info` prints it: "in_ch=1 res=28 ch=32 ch_mult=1,2,2
 * num_res_blocks=2 attn_res=7 groups=8 dropout=0 num_classes=0". */
void ddpm_unet_config_describe(char *buf, size_t cap, const ddpm_unet_config *c);

typedef enum {
    DDPM_PARAM_WEIGHT, /* conv / linear weight: kaiming-uniform */
    DDPM_PARAM_BIAS,   /* conv / linear bias: uniform(+-1/sqrt(fan_in)) */
    DDPM_PARAM_NORM_W, /* GroupNorm weight: ones */
    DDPM_PARAM_NORM_B, /* GroupNorm bias: zeros */
    DDPM_PARAM_EMBED   /* embedding table: N(0, 1) */
} ddpm_param_kind;

typedef struct {
    char name[64];      /* state_dict key, e.g. "down.0.block.1.conv1.weight" */
    int ndim;
    int shape[4];
    size_t offset;      /* into params (and grads, EMA, Adam moments) */
    size_t numel;
    ddpm_param_kind kind;
    int fan_in;
} ddpm_param_info;

/* One row of `ddpm info`: a block, its output shape, parameters and FLOPs. */
typedef struct {
    char name[32];
    int c, h, w;
    size_t params;
    double flops; /* forward, per image: 2 x multiply-adds of convs, linears, attention */
} ddpm_block_info;

typedef struct ddpm_unet ddpm_unet;

/* Creates a model for up to max_batch images. training: allocate gradients
 * and keep activations for backward. Parameters start at zero; call
 * ddpm_unet_init_params or load them. */
ddpm_status ddpm_unet_create(ddpm_unet **out, const ddpm_unet_config *cfg, int max_batch,
                             bool training);
void ddpm_unet_free(ddpm_unet *m);

/* PyTorch's default initialisation, from a seed. */
void ddpm_unet_init_params(ddpm_unet *m, uint64_t seed);

/* eps_hat = model(x, t, labels). x, out (N, in_ch, res, res); t (N) integer
 * timesteps; labels (N) in [0, num_classes] or NULL (= num_classes, "no
 * label"); ignored when num_classes == 0. N <= max_batch. out must not
 * overlap x (the output head writes into it directly). In training mode
 * with dropout > 0, masks are drawn from ddpm_unet_rng(m). */
ddpm_status ddpm_unet_forward(ddpm_unet *m, float *out, const float *x, const int *t,
                              const int *labels, int N);

/* ddpm_unet_forward as a noise predictor callback (a ddpm_model_fn of
 * sampler.h, ctx = the ddpm_unet *). */
ddpm_status ddpm_unet_eps(void *unet, float *eps_hat, const float *x, const int *t, const int *labels, int N);

/* Back-propagates dout (N, in_ch, res, res), the gradient of the loss w.r.t.
 * the last forward's output, accumulating (+=) into the parameter gradients.
 * Training models only. */
ddpm_status ddpm_unet_backward(ddpm_unet *m, const float *dout);
void ddpm_unet_zero_grad(ddpm_unet *m);

/* Accessors. */
const ddpm_unet_config *ddpm_unet_cfg(const ddpm_unet *m);
size_t ddpm_unet_num_params(const ddpm_unet *m);
float *ddpm_unet_params(ddpm_unet *m);
float *ddpm_unet_grads(ddpm_unet *m); /* NULL for inference models */
const ddpm_param_info *ddpm_unet_param_table(const ddpm_unet *m, int *count);
const ddpm_param_info *ddpm_unet_find_param(const ddpm_unet *m, const char *name);
/* Gradient w.r.t. the input x of the last backward (N, in_ch, res, res). */
const float *ddpm_unet_input_grad(const ddpm_unet *m);
const ddpm_block_info *ddpm_unet_blocks(const ddpm_unet *m, int *count);
double ddpm_unet_flops(const ddpm_unet *m); /* forward FLOPs per image */
size_t ddpm_unet_arena_bytes(const ddpm_unet *m);

/* The arithmetic of the model's products (every conv, the linear layers of
 * the time embedding, attention), forward and backward: DDPM_PREC_FP32 (what
 * ddpm_unet_create sets) or DDPM_PREC_BF16 (both operands rounded to bf16,
 * float sums; see common.h). May change between calls. The parameters and
 * gradients stay float: the weights are rounded where each product reads
 * them, as Winograd reads its transformed weights anyway, so there is no
 * bf16 copy to keep in step with the optimizer. */
void ddpm_unet_set_precision(ddpm_unet *m, ddpm_precision prec);
ddpm_precision ddpm_unet_precision(const ddpm_unet *m);
ddpm_rng *ddpm_unet_rng(ddpm_unet *m); /* dropout masks */

/* Parameter count and FLOPs of a config without allocating the model. */
ddpm_status ddpm_unet_describe(const ddpm_unet_config *cfg, size_t *num_params, double *flops);
/* The parameter table a config implies (*table is malloc'ed; free() it). */
ddpm_status ddpm_unet_param_layout(const ddpm_unet_config *cfg, ddpm_param_info **table, int *count,
                                   size_t *total);

#endif
