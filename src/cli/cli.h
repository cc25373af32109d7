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

#include "ddpm/train.h" /* the checkpoint's metadata keys, DDPM_META_* */

/* Resolve `--data NAME` (mnist, fashion or a directory) and `--data-dir DIR`
 * to the dataset's directory: "mnist" is the first of DIR, $DDPM_DATA_DIR and
 * ./data/mnist that holds the files; "fashion" DIR or Debian's
 * /usr/share/datasets/fashion-mnist. The message says how to get missing data. */
ddpm_status ddpm_cli_data_dir(char *out_dir, size_t cap, const char *data, const char *data_dir);

/* train_eval.c: `ddpm train --eval-every N`, the `ddpm eval` metrics of
 * samples of the EMA weights every N iterations. */
#include "ddpm/eval.h"
typedef struct {
    ddpm_dataset test;
    ddpm_classifier *net;
    ddpm_eval_ref ref;
    int every, n, nfid, cap;
    float *fid; /* [cap] FID of each evaluation, for fid.png */
    char net_path[1100];
} ddpm_train_eval;
/* Loads the test split of dir and the evaluation network (trained on first
 * use). Returns 0, or 1 after printing the error. */
int ddpm_train_eval_open(ddpm_train_eval *e, const char *dir, int every, int n, int64_t iters, int threads);
ddpm_status ddpm_train_eval_run(ddpm_train_eval *e, ddpm_eval_metrics *m, ddpm_trainer *tr, ddpm_unet *inf,
                                int batch);
void ddpm_train_eval_csv(char *buf, size_t cap, const ddpm_eval_metrics *m);
ddpm_status ddpm_train_eval_plot(const ddpm_train_eval *e, const char *out_dir);
void ddpm_train_eval_close(ddpm_train_eval *e);

/* one per src/cli/cmd_<name>.c */
extern const ddpm_cli_command ddpm_cmd_info;
extern const ddpm_cli_command ddpm_cmd_train;
extern const ddpm_cli_command ddpm_cmd_sample;
extern const ddpm_cli_command ddpm_cmd_noise;
extern const ddpm_cli_command ddpm_cmd_bench;
extern const ddpm_cli_command ddpm_cmd_eval;
extern const ddpm_cli_command ddpm_cmd_toy;
extern const ddpm_cli_command ddpm_cmd_interp;

/* runtime.c: sets OpenBLAS's kernel choice and libgomp's spin count when the
 * user has not, re-executing the binary once (Linux) so they take effect. */
void ddpm_cli_tune_runtime(char **argv);

#endif
