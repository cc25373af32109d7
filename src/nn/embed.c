/* embed.c: embedding lookup (class labels) and the sinusoidal timestep
 * embedding. Shape letters: N batch, D embedding width, V table rows.
 * See embed.h. */
#include "ddpm/embed.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* out (N, D); idx (N) in [0, V); table (V, D). */
void ddpm_embedding_forward(float *out, const int *idx, const float *table, int N, int D) {
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * D, table + (size_t)idx[n] * D, (size_t)D * sizeof(float));
}

/* out (N, D) += table rows idx (N); table (V, D). */
void ddpm_embedding_forward_add(float *out, const int *idx, const float *table, int N, int D) {
    for (int n = 0; n < N; n++) {
        float *out_n = out + (size_t)n * D;
        const float *row = table + (size_t)idx[n] * D;
        for (int d = 0; d < D; d++) out_n[d] += row[d];
    }
}

/* dtable (V, D) += dout (N, D) scattered to rows idx (N). Rows are visited in
 * order, so repeated indices accumulate deterministically. */
void ddpm_embedding_backward(float *dtable, const float *dout, const int *idx, int N, int D) {
    for (int n = 0; n < N; n++) {
        float *row = dtable + (size_t)idx[n] * D;
        const float *dout_n = dout + (size_t)n * D;
        for (int d = 0; d < D; d++) row[d] += dout_n[d];
    }
}

/* out (N, D); t (N). out[n] = [sin(t f_0..f_{D/2-1}), cos(t f_0..f_{D/2-1})],
 * f_i = exp(-ln(10000) i / (D/2)), everything in double, rounded at the end.
 * For an odd D (not used by the model) the last column is 0. */
void ddpm_timestep_embedding(float *out, const int *t, int N, int D) {
    int half = D / 2;
    for (int n = 0; n < N; n++) {
        float *out_n = out + (size_t)n * D;
        double tn = (double)t[n];
        for (int i = 0; i < half; i++) {
            double f = exp(-log(10000.0) * (double)i / (double)half);
            double arg = tn * f;
            out_n[i] = (float)sin(arg);
            out_n[half + i] = (float)cos(arg);
        }
        if (D % 2) out_n[D - 1] = 0.0f;
    }
}
