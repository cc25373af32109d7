/* main.c: `ddpm <command> [options]`, a git-style command table. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const ddpm_cli_command *const commands[] = {
    &ddpm_cmd_train,
    &ddpm_cmd_sample,
    &ddpm_cmd_noise,
    &ddpm_cmd_info,
    &ddpm_cmd_bench,
    NULL,
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: ddpm <command> [options]\n"
            "       ddpm --version | --help\n\n"
            "Denoising diffusion probabilistic models on the CPU.\n\n"
            "commands:\n");
    for (const ddpm_cli_command *const *c = commands; *c; c++)
        fprintf(f, "  %-8s %s\n", (*c)->name, (*c)->summary);
    fprintf(f, "\nRun 'ddpm <command> --help' for a command's options.\n");
}

/* Two runtime settings are read when their libraries load, before main, so
 * ddpm sets them and re-executes itself once when the user has not chosen:
 * - OpenBLAS 0.3.21 does not recognise recent AVX-512 Xeons and falls back to
 *   generic kernels; its AVX-512 (SkylakeX) kernels are 2-3x faster there.
 * - libgomp's idle threads spin for a long time before sleeping. On a quiet
 *   machine that costs nothing, but when other processes share the cores a
 *   spinning thread steals the core its partner needs: a training step took
 *   5x longer under load. A spin count of 30000 is as fast as the default on
 *   a quiet machine (73.3 vs 73.5 img/s, ddpm bench) and degrades gracefully.
 * An explicit OPENBLAS_CORETYPE, GOMP_SPINCOUNT or OMP_WAIT_POLICY wins. */
static bool has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

static void tune_runtime(char **argv) {
    bool changed = false;
    if (!getenv("OPENBLAS_CORETYPE") && has_avx512())
        changed |= setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0;
    if (!getenv("GOMP_SPINCOUNT") && !getenv("OMP_WAIT_POLICY"))
        changed |= setenv("GOMP_SPINCOUNT", "30000", 1) == 0;
    if (changed) execv("/proc/self/exe", argv); /* both are set now: no loop */
    /* exec failed (no /proc?): carry on with the defaults */
}

int main(int argc, char **argv) {
    tune_runtime(argv);
    /* A file-size limit (ulimit -f, RLIMIT_FSIZE) would otherwise kill ddpm
     * with SIGXFSZ in the middle of a write, without a word; ignored, the
     * write fails with EFBIG and the atomic writers report "File too large"
     * and keep the previous file (tests/test_crash.c). */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("ddpm %s\n", DDPM_VERSION);
        return 0;
    }
    for (const ddpm_cli_command *const *c = commands; *c; c++)
        if (!strcmp(cmd, (*c)->name)) return (*c)->run(argc - 1, argv + 1);
    fprintf(stderr, "ddpm: '%s' is not a ddpm command. See 'ddpm --help'.\n", cmd);
    return 2;
}
