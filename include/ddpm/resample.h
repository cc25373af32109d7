/* resample.h: shape plumbing between UNet blocks: nearest x2 upsample,
 * channel concat, and the per-channel broadcast add of the time embedding.
 * Shape letters: N batch, C channels, H W size, HW = H*W.
 * Backward functions accumulate (+=). */
#ifndef DDPM_RESAMPLE_H
#define DDPM_RESAMPLE_H

/* out (N, C, 2H, 2W); in (N, C, H, W). */
void ddpm_upsample2x_forward(float *out, const float *in, int N, int C, int H, int W);
/* din (N, C, H, W) += sum of the 4 dout pixels each input pixel was copied to. */
void ddpm_upsample2x_backward(float *din, const float *dout, int N, int C, int H, int W);

/* out (N, CA+CB, HW) = concat(a (N, CA, HW), b (N, CB, HW)) on channels. */
void ddpm_concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW);
/* Splits dout into da, db (either may be NULL). */
void ddpm_concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW);
/* The same split into gradients not yet written: da = the first CA channels
 * of dout, db = the rest (=, not +=); either may be NULL. Saves zeroing a
 * gradient that its first writer would only add onto. */
void ddpm_concat_split(float *da, float *db, const float *dout, int N, int CA, int CB, int HW);

/* out (N, C, HW) = in + bias[n, c] broadcast over HW; bias (N, C).
 * out may equal in. */
void ddpm_add_bias_nc_forward(float *out, const float *in, const float *bias, int N, int C, int HW);
/* din += dout (din may be NULL); dbias (N, C) += sum over HW of dout. */
void ddpm_add_bias_nc_backward(float *din, float *dbias, const float *dout, int N, int C, int HW);

#endif
