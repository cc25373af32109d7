/* fuzz_idx_gz: the input is an IDX file; the target gzips it (one member,
 * or two when the first byte is odd, split in the middle) and reads the
 * result, so the IDX header and size checks are exercised behind a valid gzip
 * stream, which random mutation of compressed bytes rarely produces. */
#include "fuzz.h"

#include <string.h>
#include <zlib.h>

#include "ddpm/data.h"

/* One deflate state for the whole run (deflateReset per member): the ~300 KB
 * that deflateInit2 allocates would otherwise dominate an execution. */
static z_stream g_zs;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (deflateInit2(&g_zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    return 0;
}

/* Appends a gzip member of in[0..n) to out (capacity cap); returns the new length. */
static size_t gzip_member(uint8_t *out, size_t len, size_t cap, const uint8_t *in, size_t n) {
    z_stream *zs = &g_zs;
    if (deflateReset(zs) != Z_OK) abort();
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)n;
    zs->next_out = out + len;
    zs->avail_out = (uInt)(cap - len);
    if (deflate(zs, Z_FINISH) != Z_STREAM_END) abort();
    return len + zs->total_out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    size_t cap = 2 * (compressBound((uLong)size) + 64);
    uint8_t *gz = malloc(cap);
    if (!gz) abort();
    size_t len;
    if (size > 0 && (data[0] & 1)) {
        len = gzip_member(gz, 0, cap, data, size / 2);
        len = gzip_member(gz, len, cap, data + size / 2, size - size / 2);
    } else {
        len = gzip_member(gz, 0, cap, data, size);
    }
    const char *path = fuzz_file(gz, len);
    free(gz);
    for (int k = 0; k < 2; k++) {
        uint32_t kind = k ? DDPM_IDX_IMAGES : DDPM_IDX_LABELS;
        ddpm_idx idx;
        if (ddpm_idx_read(&idx, path, kind) != DDPM_OK) {
            fuzz_check_message(ddpm_last_error());
            continue;
        }
        uint64_t total = 1;
        for (int d = 0; d < idx.ndim; d++) total *= (uint64_t)idx.dims[d];
        /* the decompressed stream is the input: header + exactly the payload */
        FUZZ_CHECK(total + 4 + 4 * (uint64_t)idx.ndim == size);
        FUZZ_CHECK(memcmp(idx.data, data + 4 + 4 * idx.ndim, (size_t)total) == 0);
        ddpm_idx_free(&idx);
    }
    return 0;
}
