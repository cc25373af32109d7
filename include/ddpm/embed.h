/* embed.h: embedding lookup (class labels) and sinusoidal timestep embedding.
 * Shape letters: N batch, D embedding width, V table rows. */
#ifndef DDPM_EMBED_H
#define DDPM_EMBED_H

/* out (N, D) = table[idx[n]]; table (V, D); every idx in [0, V). */
void ddpm_embedding_forward(float *out, const int *idx, const float *table, int N, int D);
/* out (N, D) += table[idx[n]]: the lookup added onto an activation (the UNet's
 * label embedding onto its time embedding). Its backward is
 * ddpm_embedding_backward for the table and the identity for out. */
void ddpm_embedding_forward_add(float *out, const int *idx, const float *table, int N, int D);
/* Accumulates dtable[idx[n]] += dout[n]. */
void ddpm_embedding_backward(float *dtable, const float *dout, const int *idx, int N, int D);

/* Sinusoidal embedding of integer timesteps (forward only, no parameters):
 * out[n] = [sin(t f_0) ... sin(t f_{D/2-1}), cos(t f_0) ... cos(t f_{D/2-1})],
 * f_i = exp(-ln(10000) i / (D/2)), computed in double and rounded to float
 * (as scripts/torch_reference.py). out (N, D), D even (an odd D gets a zero
 * last column). */
void ddpm_timestep_embedding(float *out, const int *t, int N, int D);

#endif
