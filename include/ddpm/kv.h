/* kv.h: results as ordered key=value lines or one JSON object (`ddpm eval`,
 * `ddpm bench`): the format scripts parse. Values are formatted once; string
 * values are JSON-escaped, numbers written as they are. */
#ifndef DDPM_KV_H
#define DDPM_KV_H

#include <stdbool.h>
#include <stdio.h>

#define DDPM_KV_MAX 48

typedef struct {
    char key[DDPM_KV_MAX][32], val[DDPM_KV_MAX][1100];
    bool str[DDPM_KV_MAX]; /* a string (quoted in JSON) */
    int n;
} ddpm_kv;

/* Appends key = printf(fmt, ...); entries past DDPM_KV_MAX are dropped. */
void ddpm_kv_put(ddpm_kv *kv, const char *key, bool is_str, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ddpm_kv_print(const ddpm_kv *kv, FILE *out, bool json);

#endif
