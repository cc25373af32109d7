/* bf16.h: bfloat16 (1 sign, 8 exponent, 7 fraction bits: the upper half of
 * an IEEE float) and the one definition of the float -> bf16 rounding used by
 * every bf16 product (gemm_tile.c's bf16 paths, and through them the layers).
 *
 * Rounding is to nearest, ties to even, on the float's bits: add 0x7FFF plus
 * the lowest kept bit, keep the upper 16 bits. Finite values past the largest
 * bf16 (and its half ulp) become infinities, as IEEE rounding says; a NaN
 * keeps its sign and upper payload bits and is made quiet (bit 6 of the bf16)
 * so it can never round into an infinity. Subnormals round like any value
 * (no flush to zero here; the AVX512_BF16 dot product itself treats bf16
 * subnormal inputs as zero, see gemm_tile.c).
 *
 * Relative error: |bf16(x) - x| <= 2^-8 |x| for every normal x (8 significant
 * bits, half an ulp = 2^-8 relative), which the tests' bounds start from.
 */
#ifndef DDPM_NN_BF16_H
#define DDPM_NN_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t ddpm_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float ddpm_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* x rounded to the nearest bf16, as a float (exact: a bf16 is a float). */
static inline float ddpm_bf16_round(float x) { return ddpm_bf16_to_f32(ddpm_bf16_from_f32(x)); }

/* x[0..n) rounded to bf16 in place. */
static inline void ddpm_bf16_round_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = ddpm_bf16_round(x[i]);
}

#endif
