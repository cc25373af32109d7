/* mlp.h: the toy noise predictor for 2-D points (ddpm toy), built from the
 * project's layers (linear.h, embed.h, act.h):
 *
 *     h1 = Linear(D -> H)(x)  + E1[t];  a1 = ReLU(h1)
 *     h2 = Linear(H -> H)(a1) + E2[t];  a2 = ReLU(h2)
 *     h3 = Linear(H -> H)(a2) + E3[t];  a3 = ReLU(h3)
 *     out = Linear(H -> D)(a3)
 *
 * E1..E3 are learned step embeddings, tables of T rows of width H
 * (torch.nn.Embedding). Parameter names are the state_dict keys of the
 * seed's PyTorch module (linears = ModuleList of Linear, ReLU, ... , Linear;
 * step_embeddings = ModuleList of three Embedding):
 *     linears.{0,2,4,6}.{weight,bias}, step_embeddings.{0,1,2}.weight
 * All parameters live in one flat buffer (params), gradients in the same
 * layout (grads), so the optimizer and the checkpoint are flat loops.
 *
 * Shape letters: N points (batch), D point dimension (2), H hidden width,
 * T timesteps (embedding rows).
 */
#ifndef DDPM_MLP_H
#define DDPM_MLP_H

#include <stddef.h>

#include "ddpm/common.h"
#include "ddpm/rng.h"

typedef struct {
    int dim;    /* D, point dimension (2 for ddpm toy) */
    int hidden; /* H */
    int T;      /* embedding rows = diffusion timesteps */
} ddpm_mlp_config;

#define DDPM_MLP_NPARAM 11
#define DDPM_MLP_MAX_HIDDEN 4096
#define DDPM_MLP_MAX_DIM 64

typedef struct {
    const char *name; /* state_dict key */
    int ndim;
    int shape[2];
    size_t offset, numel; /* into params / grads */
} ddpm_mlp_param;

typedef struct {
    ddpm_mlp_config cfg;
    int max_batch;
    size_t nparams;
    ddpm_mlp_param table[DDPM_MLP_NPARAM];
    float *params, *grads; /* [nparams] each */
    /* views into params (and the same offsets into grads) */
    size_t w[4], b[4], emb[3];
    /* saved activations, [max_batch, H] each: pre-ReLU h1..h3, post-ReLU a1..a3 */
    float *h[3], *a[3];
    float *dh, *da;  /* backward scratch, [max_batch, H] each */
    int *t;          /* [max_batch] timesteps of the last forward */
    const float *x;  /* input of the last forward (caller's buffer, [N, D]) */
    int n_last;      /* N of the last forward */
} ddpm_mlp;

/* Checks 1 <= dim <= DDPM_MLP_MAX_DIM, 1 <= hidden <= DDPM_MLP_MAX_HIDDEN,
 * 1 <= T <= 100000. */
ddpm_status ddpm_mlp_config_validate(const ddpm_mlp_config *c);

/* Allocates parameters, gradients (zeroed) and activations for batches of up
 * to max_batch points. Parameters are zero until ddpm_mlp_init_params. On
 * failure *m is zeroed (ddpm_mlp_free is safe). */
ddpm_status ddpm_mlp_create(ddpm_mlp *m, const ddpm_mlp_config *c, int max_batch);
void ddpm_mlp_free(ddpm_mlp *m);

/* PyTorch's default initialisation: Linear weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)),
 * Embedding N(0, 1); tensors in table order, elements in order, from rng. */
void ddpm_mlp_init_params(ddpm_mlp *m, ddpm_rng *rng);

/* out (N, D) = MLP(x (N, D), t (N), every t in [0, T)); 1 <= N <= max_batch.
 * Saves what backward needs (x is kept by pointer: leave it unchanged until
 * backward). out must not alias x. */
void ddpm_mlp_forward(ddpm_mlp *m, float *out, const float *x, const int *t, int N);

/* Backward of the last forward: accumulates (+=) dL/dparams into m->grads
 * and, when dx is not NULL, dL/dx into dx (N, D). dout (N, D). */
void ddpm_mlp_backward(ddpm_mlp *m, float *dx, const float *dout);

#endif
