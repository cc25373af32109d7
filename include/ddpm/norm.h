/* norm.h: group normalization with per-channel affine (PyTorch GroupNorm).
 *
 * Shape letters: N batch, C channels, HW = H*W positions, G groups (C % G == 0).
 * Statistics per (n, g) over C/G channels x HW positions, biased variance,
 * y = (x - mean) * rstd * gamma[c] + beta[c], rstd = 1/sqrt(var + eps).
 * Mean and variance are accumulated in double (two passes); the saved mean
 * and rstd are their float roundings, and both forward and backward use
 * those, so backward matches the forward that produced them. Parallel over
 * (n, g) and, for dgamma/dbeta, over c: bit-identical for any thread count.
 */
#ifndef DDPM_NORM_H
#define DDPM_NORM_H

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

#endif
