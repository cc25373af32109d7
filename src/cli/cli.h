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
#define DDPM_CKPT_FILE "ckpt.safetensors" /* DDPM_RUN_CKPT */

#include "ddpm/train.h" /* the checkpoint's metadata keys, DDPM_META_* */

/* Resolve `--data NAME` (mnist, fashion or a directory) and `--data-dir DIR`
 * to the dataset's directory (ddpm_data_find, with $DDPM_DATA_DIR). */
ddpm_status ddpm_cli_data_dir(char *out_dir, size_t cap, const char *data, const char *data_dir);

/* one per src/cli/cmd_<name>.c */
extern const ddpm_cli_command ddpm_cmd_info;
extern const ddpm_cli_command ddpm_cmd_train;
extern const ddpm_cli_command ddpm_cmd_sample;
extern const ddpm_cli_command ddpm_cmd_noise;
extern const ddpm_cli_command ddpm_cmd_bench;
extern const ddpm_cli_command ddpm_cmd_eval;
extern const ddpm_cli_command ddpm_cmd_toy;
extern const ddpm_cli_command ddpm_cmd_report;
extern const ddpm_cli_command ddpm_cmd_interp;

/* runtime.c: sets OpenBLAS's kernel choice and libgomp's spin count when the
 * user has not, re-executing the binary once (Linux) so they take effect. */
void ddpm_cli_tune_runtime(char **argv);

#endif
