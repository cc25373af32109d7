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

/* `ddpm train` and `ddpm sample` share this default run directory, so
 * `ddpm sample` works right after `ddpm train` without naming a checkpoint. */
#define DDPM_DEFAULT_RUN_DIR "runs/mnist"
#define DDPM_CKPT_FILE "ckpt.safetensors"

/* Training-state metadata keys in the checkpoint (besides the model config). */
#define DDPM_META_SCHEDULE "schedule"   /* linear | cosine | quadratic | sigmoid */
#define DDPM_META_TIMESTEPS "timesteps" /* T */

/* one per src/cli/cmd_<name>.c */
extern const ddpm_cli_command ddpm_cmd_info;
extern const ddpm_cli_command ddpm_cmd_train;
extern const ddpm_cli_command ddpm_cmd_sample;
extern const ddpm_cli_command ddpm_cmd_noise;
extern const ddpm_cli_command ddpm_cmd_bench;
extern const ddpm_cli_command ddpm_cmd_toy;

#endif
