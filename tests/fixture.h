/* fixture.h: reader for the reference fixtures written by scripts/torch_reference.py.
 *
 * Format (little-endian), version 1:
 *   8 bytes magic "DDPMFIX\0"; u32 version (= 1); u32 count; then count entries:
 *   u16 name_len; name bytes (no NUL); u8 dtype (0 f32, 1 i32, 2 utf-8 text);
 *   u8 ndim (<= 8); u32 dims[ndim]; data (prod(dims) elements: 4 bytes each
 *   for f32/i32, 1 byte each for text). The file ends right after the last entry.
 *
 * The UNet fixtures hold "config" (text, "key=value\n" lines), "x", "t",
 * ["labels"], "noise", "out", "loss", "param.K" / "grad.K" for every
 * checkpoint tensor K, and "grad_input.x" (see the script's docstring).
 *
 * fx_load validates the magic, the version and every size against the file
 * length, and copies each entry's data into its own aligned buffer (so float
 * and int pointers are safe to use). Text data is NUL-terminated (numel bytes
 * plus a NUL). Tests locate fixtures through $DDPM_TEST_DATA (fx_data_path).
 */
#ifndef DDPM_TEST_FIXTURE_H
#define DDPM_TEST_FIXTURE_H

#include <stddef.h>

#define FX_MAGIC "DDPMFIX"  /* 8 bytes with the NUL */
#define FX_VERSION 1
#define FX_MAX_DIMS 8

enum { FX_F32 = 0, FX_I32 = 1, FX_TEXT = 2 };

typedef struct {
    char *name;              /* NUL-terminated */
    int dtype;               /* FX_F32, FX_I32 or FX_TEXT */
    int ndim;                /* 0..8; ndim 0 is a scalar (numel 1) */
    int dims[FX_MAX_DIMS];
    size_t numel;            /* product of dims */
    void *data;              /* float*, int32_t* or char* (NUL-terminated text) */
} fx_entry;

typedef struct {
    fx_entry *e;             /* entries in file order */
    int n;
    int version;
} fx_file;

/* Returns 0 on success. On failure returns -1, writes a one-line message
 * ("<path>: bad magic", ...) to err and leaves *f empty (safe to fx_free). */
int fx_load(fx_file *f, const char *path, char *err, size_t errlen);

/* The entry with this exact name, or NULL. */
const fx_entry *fx_find(const fx_file *f, const char *name);

/* fx_find that also requires the dtype; NULL if absent or of another dtype. */
const fx_entry *fx_get(const fx_file *f, const char *name, int dtype);

/* Convenience: the f32 data of `name` if present with exactly `numel`
 * elements, else NULL. */
const float *fx_f32(const fx_file *f, const char *name, size_t numel);

void fx_free(fx_file *f);

/* "config" lookups. fx_config_str copies the value of `key` into val and
 * returns 0, or -1 if the key is absent or does not fit. fx_config_ints parses
 * a comma list ("1,2,2"; an empty value gives 0 items) into at most maxn ints
 * and returns the count, or -1 on a missing key or a malformed list.
 * fx_config_int wants exactly one int. */
int fx_config_str(const fx_file *f, const char *key, char *val, size_t vallen);
int fx_config_ints(const fx_file *f, const char *key, int *vals, int maxn);
int fx_config_int(const fx_file *f, const char *key, int *val);
int fx_config_double(const fx_file *f, const char *key, double *val);

/* Writes "$DDPM_TEST_DATA/name" into out (when DDPM_TEST_DATA is unset, as
 * when a test is run by hand, the tests/data directory of this source tree).
 * Returns 0, or -1 if the path does not fit. */
int fx_data_path(char *out, size_t outlen, const char *name);

#endif
