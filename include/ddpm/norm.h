/* norm.h: group normalization with per-channel affine (PyTorch GroupNorm),
 * alone and fused with the SiLU (and dropout) that follows it.
 *
 * Shape letters: N batch, C channels, HW = H*W positions, G groups (C % G == 0).
 * Statistics per (n, g) over C/G channels x HW positions, biased variance,
 * y = (x - mean) * rstd * gamma[c] + beta[c], rstd = 1/sqrt(var + eps).
 * Mean and variance are accumulated in double in one pass, shifted by the
 * group's first element (see group_stats in norm.c for the error bound); the
 * saved mean and rstd are their float roundings, and both forward and backward use
 * those, so backward matches the forward that produced them. Parallel over
 * (n, g) and, for dgamma/dbeta, over c: bit-identical for any thread count.
 */
#ifndef DDPM_NORM_H
#define DDPM_NORM_H

#include <stddef.h>

#define DDPM_GN_EPS 1e-5f

/* out (N, C, HW); mean, rstd (N, G) saved for backward; in (N, C, HW);
 * gamma, beta (C). */
void ddpm_groupnorm_forward(float *out, float *mean, float *rstd, const float *in,
                            const float *gamma, const float *beta, int N, int C, int HW, int G);

/* The forward output again from the saved statistics, bit-identical to what
 * ddpm_groupnorm_forward wrote: lets a model drop `out` after forward and
 * recompute it for backward. */
void ddpm_groupnorm_apply(float *out, const float *in, const float *mean, const float *rstd,
                          const float *gamma, const float *beta, int N, int C, int HW, int G);

/* Accumulates into din (N, C, HW), dgamma (C), dbeta (C). */
void ddpm_groupnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *mean, const float *rstd,
                             const float *gamma, int N, int C, int HW, int G);

/* GroupNorm, SiLU and an optional dropout mask in one pass:
 *     out = silu(y) * mask,  y = GN(in) as above,  silu(y) = y * sigmoid(y),
 * without storing y. Bit for bit the same as ddpm_groupnorm_forward, then
 * ddpm_silu_forward, then ddpm_dropout_forward (act.h), and the same saved
 * mean and rstd. mask (N, C, HW) or NULL for none (no dropout). */
void ddpm_groupnorm_silu_forward(float *out, float *mean, float *rstd, const float *in,
                                 const float *gamma, const float *beta, const float *mask, int N,
                                 int C, int HW, int G);

/* ddpm_groupnorm_silu_forward of the channel concatenation of a (N, CA, HW)
 * and b (N, C - CA, HW), 0 < CA <= C (b unused when CA = C), without forming
 * it: bit for bit ddpm_concat_forward (resample.h), then
 * ddpm_groupnorm_silu_forward. A group may straddle the two. Recompute with
 * ddpm_groupnorm_silu_apply on the concatenation. */
void ddpm_groupnorm_silu_forward_cat(float *out, float *mean, float *rstd, const float *a,
                                     const float *b, int CA, const float *gamma, const float *beta,
                                     const float *mask, int N, int C, int HW, int G);

/* The fused output again from the saved statistics, bit-identical to what
 * ddpm_groupnorm_silu_forward wrote. */
void ddpm_groupnorm_silu_apply(float *out, const float *in, const float *mean, const float *rstd,
                               const float *gamma, const float *beta, const float *mask, int N,
                               int C, int HW, int G);

/* Floats of scratch `work` the fused backward needs: 4*N*C (a double pair
 * per (n, c)). Any buffer from ddpm_alloc or the arena is aligned enough. */
size_t ddpm_groupnorm_silu_workspace(int N, int C);

/* dout (N, C, HW) is the gradient w.r.t. the fused output. Accumulates into
 * din (N, C, HW), dgamma (C), dbeta (C); y and silu'(y) are recomputed from
 * in, mean, rstd, gamma, beta on the fly. The same result, bit for bit, as
 * ddpm_dropout_backward, ddpm_silu_backward and ddpm_groupnorm_backward
 * chained through zeroed buffers. work: ddpm_groupnorm_silu_workspace(N, C)
 * floats, clobbered. */
void ddpm_groupnorm_silu_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                  const float *in, const float *mean, const float *rstd,
                                  const float *gamma, const float *beta, const float *mask, int N,
                                  int C, int HW, int G, float *work);

#endif
