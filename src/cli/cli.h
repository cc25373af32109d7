/* cli.h: the subcommands and the helpers they share (flag parsing, messages). */
#ifndef DDPM_CLI_H
#define DDPM_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Each subcommand: argv[0] is the command name ("train"). Returns the exit code:
 * 0 success, 1 runtime failure, 2 usage error. */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} ddpm_cli_command;

extern const ddpm_cli_command ddpm_cli_commands[];

#endif
