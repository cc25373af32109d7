/* optim.h: AdamW, gradient clipping, the learning-rate schedule and EMA.
 *
 * Parameters, gradients, Adam moments and EMA weights share one flat layout
 * (see unet.h), so every function here is a loop over n floats. Elementwise
 * loops run under OpenMP; every result is bit-for-bit the same for any
 * thread count (no float reductions across threads, see ddpm_grad_norm).
 *
 * AdamW is torch.optim.AdamW (amsgrad=False, maximize=False, the CPU kernels
 * of PyTorch 1.13), operation for operation, in float32. With t = step and
 * scalars computed in double then rounded to float where torch does so:
 *
 *   p  = p * (float)(1 - lr*wd)                  decoupled weight decay, first
 *   m  = fmaf(g, (float)(1 - b1), m*b1)          exp_avg.mul_(b1).add_(g, alpha=1-b1)
 *   v  = fmaf((float)(1 - b2)*g, g, v*b2)        exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
 *   d  = sqrtf(v) / (float)sqrt(1 - b2^t) + eps
 *   p  = p + ((float)(-lr / (1 - b1^t)) * m) / d  param.addcdiv_(m, d, value=-step_size)
 *
 * (torch's add_ and addcmul_ CPU kernels are fused multiply-adds; checked
 * bit for bit by scripts/optim_reference.py.) Because the config and lr are
 * float here, the result equals torch's when torch is given the same
 * float-rounded values of lr, betas, eps and weight_decay.
 */
#ifndef DDPM_OPTIM_H
#define DDPM_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"

/* ---- AdamW ------------------------------------------------------------------ */

typedef struct {
    float beta1, beta2, eps, weight_decay;
} ddpm_adamw_cfg;

/* beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0 (torch's defaults, except
 * torch's AdamW weight_decay default of 0.01). */
void ddpm_adamw_default(ddpm_adamw_cfg *c);

/* One AdamW update of params[n] from grads[n]; m[n] and v[n] are the first
 * and second moments (zero before the first step), updated in place. `step`
 * is 1-based: the number of updates including this one (>= 1). */
void ddpm_adamw_step(float *params, const float *grads, float *m, float *v, size_t n,
                     const ddpm_adamw_cfg *c, float lr, int64_t step);

/* ---- gradient norm and clipping ------------------------------------------------
 * The L2 norm accumulates squares in double over fixed chunks of
 * DDPM_NORM_CHUNK elements (the chunk grows to ceil(n / DDPM_NORM_MAX_CHUNKS)
 * when n > DDPM_NORM_CHUNK * DDPM_NORM_MAX_CHUNKS, so the per-chunk partial
 * sums fit a fixed array on the stack: no allocation). Chunks are summed in
 * parallel, then their partials are added in chunk order, so the result
 * depends on n only, never on the thread count. */
#define DDPM_NORM_CHUNK 16384
#define DDPM_NORM_MAX_CHUNKS 1024

double ddpm_grad_norm(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_: norm = ddpm_grad_norm(g, n); if
 * max_norm > 0 and coef = max_norm / (norm + 1e-6) < 1, g *= (float)coef.
 * Returns the norm before clipping. max_norm <= 0 disables clipping. A
 * non-finite norm leaves g untouched (check the returned norm and skip the
 * step). */
double ddpm_clip_grad_norm(float *g, size_t n, double max_norm);

/* ---- learning-rate schedule ------------------------------------------------------ */

typedef enum { DDPM_LR_COSINE = 0, DDPM_LR_CONSTANT } ddpm_lr_decay;

/* "cosine" / "constant" <-> decay. Parse returns -1 for an unknown name,
 * with an error listing the known ones; name returns "?" for an invalid value. */
int ddpm_lr_decay_parse(const char *name);
const char *ddpm_lr_decay_name(ddpm_lr_decay decay);

/* The learning rate of the 0-based optimizer step `step` of a `total`-step
 * run (computed in double):
 *   step < warmup:  base_lr * (step + 1) / warmup        (linear warmup)
 *   constant:       base_lr
 *   cosine:         lo + (base_lr - lo) * (1 + cos(pi * p)) / 2,
 *                   lo = base_lr * min_ratio, p = (step - warmup) / (total - 1 - warmup)
 *                   clamped to [0, 1]: base_lr at step = warmup, lo at step = total - 1
 *                   and beyond. When total - 1 <= warmup there is no room to
 *                   decay and the rate stays base_lr after warmup.
 * A negative step counts as 0. */
float ddpm_lr_at(int64_t step, int64_t total, int64_t warmup, float base_lr,
                 ddpm_lr_decay decay, float min_ratio);

/* ---- EMA of the weights ---------------------------------------------------------- */

/* min(max_decay, (1 + step) / (10 + step)) for the 0-based step (negative
 * counts as 0): 0.1 at step 0, so the average forgets its initialisation. */
float ddpm_ema_decay_at(int64_t step, float max_decay);

/* The power-function profile of Karras et al. 2024 ("Analyzing and Improving
 * the Training Dynamics of Diffusion Models", eq. 3): (1 - 1/k)^(gamma + 1)
 * for the k-th update, k = step + 1 (0 at step 0, which copies the weights).
 * The average then has a length proportional to the training so far, its
 * relative width sigma_rel = sqrt((g+1) / ((g+2)^2 (g+3))): 0.10 at g = 6.94,
 * 0.05 at g = 16.97. ddpm_ema_decay_at is close to g = 8 before its cap. */
float ddpm_ema_power_decay(int64_t step, float gamma);

/* ema = decay*ema + (1-decay)*params, written as
 *     ema[i] += (1 - decay) * (params[i] - ema[i])      (1 - decay in float)
 * (the form of diffusers' EMAModel update, s -= (1-decay)*(s - p)), which
 * leaves ema exactly unchanged where it already equals params. */
void ddpm_ema_update(float *ema, const float *params, size_t n, float decay);

/* ---- checks ------------------------------------------------------------------------ */

/* True when no element of x[n] is NaN or +-Inf (scans all of x). */
bool ddpm_all_finite(const float *x, size_t n);

#endif
