/* pool.c: 2x2 stride-2 max pooling, see pool.h. */
#include "ddpm/pool.h"

#include <stddef.h>

void ddpm_maxpool2_forward(float *out, uint8_t *argmax, const float *in, int N, int C, int H,
                           int W) {
    // out, argmax (N, C, H/2, W/2); in (N, C, H, W)
    int HO = H / 2, WO = W / 2;
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > (1L << 16))
    for (long p = 0; p < planes; p++) {
        const float *x = in + (size_t)p * H * W;
        float *y = out + (size_t)p * HO * WO;
        uint8_t *a = argmax ? argmax + (size_t)p * HO * WO : NULL;
        for (int i = 0; i < HO; i++)
            for (int j = 0; j < WO; j++) {
                const float *r0 = x + (size_t)(2 * i) * W + 2 * j, *r1 = r0 + W;
                float v[4] = {r0[0], r0[1], r1[0], r1[1]};
                int best = 0;
                for (int k = 1; k < 4; k++)
                    if (v[k] > v[best] || (v[k] != v[k] && v[best] == v[best])) best = k;
                y[i * WO + j] = v[best];
                if (a) a[i * WO + j] = (uint8_t)best;
            }
    }
}

void ddpm_maxpool2_backward(float *din, const float *dout, const uint8_t *argmax, int N, int C,
                            int H, int W) {
    // din (N, C, H, W); dout, argmax (N, C, H/2, W/2)
    int HO = H / 2, WO = W / 2;
    long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > (1L << 16))
    for (long p = 0; p < planes; p++) {
        float *dx = din + (size_t)p * H * W;
        const float *dy = dout + (size_t)p * HO * WO;
        const uint8_t *a = argmax + (size_t)p * HO * WO;
        for (int i = 0; i < HO; i++)
            for (int j = 0; j < WO; j++) {
                int k = a[i * WO + j];
                dx[(size_t)(2 * i + (k >> 1)) * W + 2 * j + (k & 1)] += dy[i * WO + j];
            }
    }
}
