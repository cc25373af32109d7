/* rng.h: the one seeded random generator every random draw comes from.
 *
 * xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, period 2^256 - 1,
 * passes BigCrush. The state is seeded from a 64-bit seed through splitmix64,
 * as its authors recommend, so any seed (including 0) gives a good state.
 * The same seed always gives the same stream on every platform: the state is
 * four uint64_t and all arithmetic is integer. Normal draws use the
 * Box-Muller transform in double precision, one u64 pair per two normals in
 * ddpm_rng_fill_normal, one pair per normal in ddpm_rng_normal (no hidden
 * cache: the state is exactly the four words, so it can be checkpointed).
 *
 * Not thread-safe: give each thread its own ddpm_rng (see ddpm_rng_split).
 */
#ifndef DDPM_RNG_H
#define DDPM_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} ddpm_rng;


void ddpm_rng_seed(ddpm_rng *rng, uint64_t seed);

/* splitmix64 (Steele, Lea & Flood, 2014), the one definition in the code: the
 * generator is x += DDPM_GOLDEN_GAMMA, output ddpm_splitmix64(x). The output
 * function alone is a bijective 64-bit mixer, used to derive independent seeds
 * from (seed, counter) pairs, e.g. ddpm_splitmix64(seed ^ GAMMA * (i + 1)). */
#define DDPM_GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL
uint64_t ddpm_splitmix64(uint64_t z);
uint64_t ddpm_rng_u64(ddpm_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double ddpm_rng_uniform(ddpm_rng *rng);
/* Uniform integer in [0, n), unbiased (Lemire's method). n must be > 0. */
uint32_t ddpm_rng_below(ddpm_rng *rng, uint32_t n);
/* One standard normal draw (consumes two u64). */
float ddpm_rng_normal(ddpm_rng *rng);
/* Fill x[0..n) with standard normal draws (two per u64 pair). */
void ddpm_rng_fill_normal(ddpm_rng *rng, float *x, size_t n);
/* Fill x[0..n) with uniform draws in [lo, hi). */
void ddpm_rng_fill_uniform(ddpm_rng *rng, float *x, size_t n, float lo, float hi);
/* A new, independent generator derived from this one (advances `rng`). */
ddpm_rng ddpm_rng_split(ddpm_rng *rng);

#endif
