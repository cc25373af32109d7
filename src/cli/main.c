/* main.c: `ddpm <command> [options]`, a git-style command table. */
#define _POSIX_C_SOURCE 200809L
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

/* OpenBLAS 0.3.21 does not recognise recent AVX-512 Xeons and falls back to
 * slow generic kernels; its AVX-512 (SkylakeX) kernels are 2-3x faster there.
 * OpenBLAS reads OPENBLAS_CORETYPE once, when the library is loaded (before
 * main), so when the CPU has AVX-512 and the user has not chosen a core type,
 * re-execute once with it set. An explicit OPENBLAS_CORETYPE is respected. */
static void use_fast_blas_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
        return;
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the default kernels */
}

int main(int argc, char **argv) {
    use_fast_blas_kernels(argv);
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
