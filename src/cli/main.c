/* main.c: `ddpm <command> [options]`, a git-style command table. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const ddpm_cli_command *const commands[] = {
    &ddpm_cmd_train,
    &ddpm_cmd_sample,
    &ddpm_cmd_noise,
    &ddpm_cmd_info,
    &ddpm_cmd_bench,
    &ddpm_cmd_eval,
    &ddpm_cmd_toy,
    &ddpm_cmd_report,
    &ddpm_cmd_interp,
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

int main(int argc, char **argv) {
    ddpm_cli_tune_runtime(argv);
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
