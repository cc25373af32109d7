/* fuzz_args: the command-line parser. The input is split at NUL bytes into
 * argv[1..]; the option table has one option of every type (with the range
 * limits the real commands use) plus the model flags shared by train and
 * info. On success every parsed value must lie in its declared range. The
 * integer-list parser (--ch-mult, and the checkpoint metadata) is also called
 * on the whole input directly. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "ddpm/unet.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* usage errors and --help go to stdio; libFuzzer and the sanitizers keep
     * their own handles on fd 2 */
    stdout = fopen("/dev/null", "w");
    stderr = stdout;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = '\0';

    /* the integer-list parser on the raw text */
    int list[DDPM_MAX_LEVELS];
    int n = ddpm_parse_int_list(buf, list, DDPM_MAX_LEVELS);
    FUZZ_CHECK(n >= -1 && n <= DDPM_MAX_LEVELS);
    for (int i = 0; i < n; i++) FUZZ_CHECK(list[i] >= 0 && list[i] <= 1000000);

    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "fuzz";
    for (char *p = buf; p <= buf + size && argc < MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    int i_val = 0, i_neg = 0;
    uint64_t u_val = 0;
    float f_val = 0.0f, f_wide = 0.0f;
    const char *s_val = NULL;
    bool flag = false;
    int l_val[DDPM_MAX_LEVELS] = {0}, l_n = 0;
    ddpm_unet_config cfg;
    ddpm_unet_config_default(&cfg);
    ddpm_opt opts[8 + DDPM_MODEL_OPTS] = {
        {"--iters", "-i", OPT_INT, &i_val, 1, 2147483647.0, "N", "int", false},
        {"--shift", NULL, OPT_INT, &i_neg, -1000, 1000, "N", "int", false},
        {"--seed", "-s", OPT_U64, &u_val, 0, 0, "N", "u64", false},
        {"--lr", NULL, OPT_FLOAT, &f_val, 0.0, 1.0, "X", "float", false},
        {"--guidance", "-w", OPT_FLOAT, &f_wide, -100.0, 100.0, "W", "float", false},
        {"--out", "-o", OPT_STRING, &s_val, 0, 0, "PATH", "string", false},
        {"--force", "-f", OPT_FLAG, &flag, 0, 0, NULL, "flag", false},
        {"--list", NULL, OPT_INTLIST, l_val, 0, 0, "LIST", "list", false, &l_n},
    };
    ddpm_model_opts(opts + 8, &cfg);
    int nopts = 8 + DDPM_MODEL_OPTS;
    int rc = ddpm_opts_parse("fuzz", argc, argv, opts, nopts, "usage: fuzz", NULL);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == 2);
    if (rc == 0) {
        FUZZ_CHECK(!opts[0].seen || (i_val >= 1));
        FUZZ_CHECK(!opts[1].seen || (i_neg >= -1000 && i_neg <= 1000));
        FUZZ_CHECK(!opts[3].seen || (isfinite(f_val) && f_val >= 0.0f && f_val <= 1.0f));
        FUZZ_CHECK(!opts[4].seen || (isfinite(f_wide) && f_wide >= -100.0f && f_wide <= 100.0f));
        FUZZ_CHECK(!opts[5].seen || (s_val && *s_val));
        FUZZ_CHECK(l_n >= 0 && l_n <= DDPM_MAX_LEVELS);
        for (int k = 8; k < nopts; k++) {
            const ddpm_opt *o = &opts[k];
            if (!o->seen) continue;
            if (o->type == OPT_INT) {
                int v = *(const int *)o->dst;
                FUZZ_CHECK(v >= o->min && v <= o->max);
            } else if (o->type == OPT_FLOAT) {
                float v = *(const float *)o->dst;
                FUZZ_CHECK(isfinite(v) && v >= (float)o->min && v <= (float)o->max);
            }
        }
        (void)ddpm_unet_config_validate(&cfg); /* the flags parse straight into the config */
    }
    free(buf);
    return 0;
}
