/* sha256.h: SHA-256 (FIPS 180-4), to name the evaluation network and the
 * data it was trained on. Internal to the eval area. */
#ifndef DDPM_EVAL_SHA256_H
#define DDPM_EVAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} ddpm_sha256;

void ddpm_sha256_init(ddpm_sha256 *c);
void ddpm_sha256_update(ddpm_sha256 *c, const void *data, size_t n);
/* Writes the 32-byte digest. */
void ddpm_sha256_final(ddpm_sha256 *c, uint8_t out[32]);
/* Lower-case hex of the first nbytes of a digest into hex (2 nbytes + 1). */
void ddpm_sha256_hex(char *hex, const uint8_t *digest, int nbytes);

#endif
