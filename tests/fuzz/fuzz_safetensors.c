/* fuzz_safetensors: ddpm_st_load on arbitrary bytes (header length, JSON
 * syntax pass, schema pass, offsets and tiling). On success every tensor is
 * read in full, found by name, and every metadata key looks itself up. */
#include "fuzz.h"

#include <string.h>

#include "ddpm/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    ddpm_st_file f;
    if (ddpm_st_load(&f, path) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        FUZZ_CHECK(f.ntensors == 0 && f.tensors == NULL && f.header_ == NULL);
        ddpm_st_free(&f); /* harmless on an empty file */
        return 0;
    }
    size_t bytes = 0;
    for (int i = 0; i < f.ntensors; i++) {
        const ddpm_st_tensor *t = &f.tensors[i];
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= DDPM_ST_MAX_DIMS);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        FUZZ_CHECK(numel == t->numel);
        FUZZ_CHECK(((uintptr_t)t->data & 3) == 0);
        volatile float sink = 0;
        for (size_t j = 0; j < t->numel; j++) sink += t->data[j];
        (void)sink;
        bytes += 4 * t->numel;
        FUZZ_CHECK(ddpm_st_find(&f, t->name) == t);
        FUZZ_CHECK(strcmp(t->name, "__metadata__") != 0);
    }
    FUZZ_CHECK(bytes <= size);
    for (int i = 0; i < f.nmeta; i++) {
        const char *v = ddpm_st_meta_get(&f, f.meta[i].key);
        FUZZ_CHECK(v == f.meta[i].value);
    }
    FUZZ_CHECK(ddpm_st_find(&f, "no such tensor \x01") == NULL);
    ddpm_st_free(&f);
    return 0;
}
