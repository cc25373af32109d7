/* fuzz_folder_cache: the decoded-image cache reader of image folders
 * (folder_cache_read) on arbitrary bytes. The cache is only used when its
 * 128-bit key matches the folder, so the target writes the expected key into
 * bytes 16..31 of the input first: everything behind the key check is
 * reachable. On success every image is drawn into a batch with random crops
 * and flips, which reads each image's full extent: the reader must have
 * checked the records against the pixel data. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "ddpm/imagefolder.h"
#include "io/imagefolder_internal.h"

#define SIZE 8

static const uint64_t KEY[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    if (size >= 32)
        for (int i = 0; i < 16; i++) buf[16 + i] = (uint8_t)(KEY[i / 8] >> (8 * (i % 8)));
    const char *path = fuzz_file(buf, size);
    free(buf);
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = SIZE;
    o.channels = 3;
    ddpm_image_folder f;
    folder_skips k;
    memset(&f, 0, sizeof f);
    memset(&k, 0, sizeof k);
    if (folder_cache_read(path, KEY, &o, &f, &k) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        return 0;
    }
    FUZZ_CHECK(f.n >= 1 && f.c == 3 && f.size == SIZE); /* a cache without images is stale */
    for (int i = 0; i < f.n; i++) {
        FUZZ_CHECK((f.w[i] < f.h[i] ? f.w[i] : f.h[i]) == SIZE && f.w[i] <= 2 * SIZE && f.h[i] <= 2 * SIZE);
        FUZZ_CHECK(f.labels[i] >= -1 && f.labels[i] < f.num_classes);
    }
    for (int i = 0; i < f.num_classes; i++) FUZZ_CHECK(f.class_names[i] != NULL);
    for (int i = 0; i < k.n; i++) FUZZ_CHECK(k.v[i].msg != NULL);
    float out[3 * SIZE * SIZE];
    ddpm_rng rng;
    ddpm_rng_seed(&rng, 1);
    for (int i = 0; i < f.n; i++) {
        ddpm_folder_batch(out, &f, &i, 1, DDPM_CROP_RANDOM, true, &rng);
        for (int j = 0; j < 3 * SIZE * SIZE; j++) FUZZ_CHECK(out[j] >= -1.0f && out[j] <= 1.0f);
    }
    ddpm_folder_free(&f);
    folder_skips_free(&k);
    return 0;
}
