/* fuzz_folder: the image-folder decoder (ddpm_folder_load: stb_image behind
 * our header checks and pixel cap, alpha, gray/colour conversion, resize)
 * on one file, DIR/cls/img, holding the input; then a center-cropped batch
 * of it. The header cap is lowered to 2^20 pixels so that one execution
 * stays fast (the check itself is the same code as for the default cap).
 * Every skip message must be one line. The input is also parsed as the
 * class-map JSON stored in checkpoints
 * (ddpm_folder_classes_parse), and what parses must survive a round trip. */
#include "fuzz.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "ddpm/imagefolder.h"

static char g_root[256], g_file[300], g_cls[300];

static void cleanup(void) {
    unlink(g_file);
    rmdir(g_cls);
    rmdir(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_root, sizeof g_root, "%s/ddpm-fuzz-folder-%d", base, (int)getpid());
    snprintf(g_cls, sizeof g_cls, "%s/cls", g_root);
    snprintf(g_file, sizeof g_file, "%s/img", g_cls);
    if (mkdir(g_root, 0700) || mkdir(g_cls, 0700)) {
        perror(g_root);
        abort();
    }
    atexit(cleanup);
    return 0;
}

static void classes(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) abort();
    memcpy(json, data, size);
    json[size] = '\0';
    char **names;
    int n;
    if (ddpm_folder_classes_parse(json, &names, &n) == DDPM_OK) {
        char *again = ddpm_folder_classes_json(names, n);
        FUZZ_CHECK(again != NULL);
        char **names2;
        int n2;
        FUZZ_CHECK(ddpm_folder_classes_parse(again, &names2, &n2) == DDPM_OK);
        FUZZ_CHECK(n2 == n);
        for (int i = 0; i < n; i++) FUZZ_CHECK(strcmp(names[i], names2[i]) == 0);
        ddpm_folder_classes_free(names2, n2);
        free(again);
        ddpm_folder_classes_free(names, n);
    } else {
        fuzz_check_message(ddpm_last_error());
    }
    free(json);
}

/* A skipped file's message: one line, bounded, of a known kind. */
static void on_warn(void *ctx, ddpm_skip_kind kind, const char *msg) {
    (void)ctx;
    FUZZ_CHECK(kind >= 0 && kind < DDPM_SKIP_KINDS);
    fuzz_check_message(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    classes(data, size);
    FILE *f = fopen(g_file, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    ddpm_folder_options o;
    ddpm_folder_options_default(&o);
    o.size = 8;
    o.channels = size % 2 ? 1 : 3;
    o.alpha = size % 4 < 2 ? DDPM_ALPHA_WHITE : DDPM_ALPHA_BLACK;
    o.max_pixels = (int64_t)1 << 20;
    o.warn = on_warn;
    ddpm_image_folder fo;
    ddpm_folder_report rep;
    if (ddpm_folder_load(&fo, g_root, &o, &rep) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        return 0;
    }
    FUZZ_CHECK(fo.n == 1 && fo.num_classes == 1 && fo.labels[0] == 0 && fo.c == o.channels);
    int w = fo.w[0], h = fo.h[0];
    FUZZ_CHECK((w < h ? w : h) == 8 && w <= 16 && h <= 16);
    float out[3 * 8 * 8];
    int idx = 0;
    ddpm_folder_batch(out, &fo, &idx, 1, DDPM_CROP_CENTER, false, NULL);
    for (int i = 0; i < fo.c * 64; i++) FUZZ_CHECK(out[i] >= -1.0f && out[i] <= 1.0f);
    ddpm_folder_free(&fo);
    return 0;
}
