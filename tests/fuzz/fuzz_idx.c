/* fuzz_idx: ddpm_idx_read on arbitrary bytes, as labels and as images. The
 * file may be raw IDX or gzip (the reader decides by the 1f 8b magic), so
 * this target covers the gzip error paths; fuzz_idx_gz covers the IDX header
 * checks behind a valid gzip stream. */
#include "fuzz.h"

#include "ddpm/data.h"

static void check(const char *path, uint32_t kind, size_t insize, int gz) {
    ddpm_idx idx;
    ddpm_status s = ddpm_idx_read(&idx, path, kind);
    if (s != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        FUZZ_CHECK(idx.data == NULL);
        return;
    }
    FUZZ_CHECK(idx.ndim == (kind == DDPM_IDX_LABELS ? 1 : (int)(idx.magic & 0xff)));
    FUZZ_CHECK(kind == DDPM_IDX_LABELS ? idx.magic == DDPM_IDX_LABELS
                                       : idx.magic == DDPM_IDX_IMAGES || idx.magic == DDPM_IDX_IMAGES_C);
    uint64_t total = 1;
    for (int d = 0; d < idx.ndim; d++) {
        FUZZ_CHECK(idx.dims[d] > 0);
        total *= (uint64_t)idx.dims[d];
    }
    FUZZ_CHECK(total <= DDPM_IDX_MAX_BYTES);
    if (!gz) FUZZ_CHECK(total + 4 + 4 * (uint64_t)idx.ndim == insize); /* raw: exact size */
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < total; i++) sink ^= idx.data[i]; /* every byte is readable (ASan) */
    (void)sink;
    ddpm_idx_free(&idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    check(path, DDPM_IDX_LABELS, size, gz);
    check(path, DDPM_IDX_IMAGES, size, gz);
    return 0;
}
