/* rng.c: xoshiro256** seeded through splitmix64. See rng.h. */
#include "ddpm/rng.h"

#include <math.h>

/* splitmix64's output function (see rng.h). */
uint64_t ddpm_splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void ddpm_rng_seed(ddpm_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = ddpm_splitmix64(x += DDPM_GOLDEN_GAMMA);
}

uint64_t ddpm_rng_u64(ddpm_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ddpm_rng_uniform(ddpm_rng *rng) {
    return (double)(ddpm_rng_u64(rng) >> 11) * 0x1.0p-53;
}

uint32_t ddpm_rng_below(ddpm_rng *rng, uint32_t n) {
    /* Lemire, "Fast random integer generation in an interval" (2019). */
    uint64_t m = (uint64_t)(uint32_t)(ddpm_rng_u64(rng) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (l < threshold) {
            m = (uint64_t)(uint32_t)(ddpm_rng_u64(rng) >> 32) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* Box-Muller: two uniforms -> two independent standard normals. u1 is drawn
 * from (0, 1] so the log is finite. */
static void box_muller(ddpm_rng *rng, double *z0, double *z1) {
    double u1 = 1.0 - ddpm_rng_uniform(rng);
    double u2 = ddpm_rng_uniform(rng);
    double r = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925286766559 * u2;
    *z0 = r * cos(th);
    *z1 = r * sin(th);
}

float ddpm_rng_normal(ddpm_rng *rng) {
    double z0, z1;
    box_muller(rng, &z0, &z1);
    return (float)z0;
}

void ddpm_rng_fill_normal(ddpm_rng *rng, float *x, size_t n) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        double z0, z1;
        box_muller(rng, &z0, &z1);
        x[i] = (float)z0;
        x[i + 1] = (float)z1;
    }
    if (i < n) x[i] = ddpm_rng_normal(rng);
}

void ddpm_rng_fill_uniform(ddpm_rng *rng, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)ddpm_rng_uniform(rng);
}

ddpm_rng ddpm_rng_split(ddpm_rng *rng) {
    ddpm_rng child;
    ddpm_rng_seed(&child, ddpm_rng_u64(rng));
    return child;
}
