/* cli.h: the subcommands and the helpers they share: a small table-driven
 * option parser, flag groups, messages.
 *
 * Each subcommand describes its options once, in a table; the same table
 * drives parsing (range and overflow checked) and `ddpm CMD --help`. Forms:
 * `--name value`, `--name=value`, `-n value` (alias), `--flag`. Unknown
 * options, missing values, malformed or out-of-range numbers are usage errors. */
#ifndef DDPM_CLI_H
#define DDPM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What every command uses, so a cmd_*.c includes only its own library parts. */
#include "core/util.h" /* DDPM_COUNT: option tables are counted by the compiler */
#include "ddpm/pipeline.h"
#include "ddpm/progress.h" /* ddpm_now, ddpm_fmt_duration */
#include "ddpm/tensor.h"   /* ddpm_set_threads */
#include "ddpm/train.h"    /* the checkpoint's metadata keys, DDPM_META_* */
#include "ddpm/unet.h"

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

/* ---- the option parser ------------------------------------------------------- */

typedef enum {
    OPT_INT,    /* int,      within [min, max] */
    OPT_U64,    /* uint64_t, within [0, 2^64-1] */
    OPT_FLOAT,  /* float,    within [min, max], finite */
    OPT_STRING, /* const char * (points into argv; non-empty, shorter than DDPM_CLI_MAX_VALUE) */
    OPT_FLAG,   /* bool, no value */
    OPT_INTLIST /* int list "1,2,2" (or "none") into int[DDPM_MAX_LEVELS], its length into *count */
} ddpm_opt_type;

typedef struct {
    const char *name;  /* "--steps" */
    const char *alias; /* "-n" or NULL */
    ddpm_opt_type type;
    void *dst;
    double min, max;   /* for OPT_INT / OPT_FLOAT */
    const char *metavar;
    const char *help;
    bool seen;         /* set by the parser */
    int *count;        /* OPT_INTLIST: the list's length */
} ddpm_opt;

/* Parses argv[1..argc) (argv[0] is the command name). Returns 0 on success,
 * 1 after printing help to stdout (the caller exits 0), 2 after printing a
 * one-line usage error to stderr (the caller exits 2). `synopsis` is the
 * first help line; `epilog` (may be NULL) is printed after the options. */
int ddpm_opts_parse(const char *cmd, int argc, char **argv, ddpm_opt *opts, int nopts,
                    const char *synopsis, const char *epilog);
/* The same, also taking up to max arguments that are not options (nor an
 * option's value) into args[0..*nargs), in order; one more is a usage error
 * "at most MAX WHAT". */
int ddpm_opts_parse_args(const char *cmd, int argc, char **argv, ddpm_opt *opts, int nopts, const char *synopsis,
                         const char *epilog, const char **args, int max, int *nargs, const char *what);
/* Refuses any option of opts[0..nopts) given on the command line that names[0..n)
 * holds (names NULL: any of them): 2 after "ddpm CMD: FLAG WHY", else 0. */
int ddpm_opts_refuse(const char *cmd, const ddpm_opt *opts, int nopts, const char *const *names, int n, const char *why);

bool ddpm_opts_seen(const ddpm_opt *opts, int nopts, const char *name);

#define DDPM_CLI_MAX_VALUE 4096 /* a string flag's value is shorter: a usage error past it */

/* The model-shape flags of `train`, `info` and `bench`: --channels, --size,
 * --ch, --ch-mult, --res-blocks, --attn, --groups, --classes, --dropout,
 * parsed straight into c (which holds the defaults). */
#define DDPM_MODEL_OPTS 9 /* checked against the table in args.c */
/* Writes DDPM_MODEL_OPTS entries into opts. */
void ddpm_model_opts(ddpm_opt *opts, ddpm_unet_config *c);
/* After ddpm_opts_parse: when --size was given (or size_known: the data fixes c->res) and has a preset
 * (ddpm_unet_preset: 32, 64), the preset's --ch, --ch-mult, --res-blocks,
 * --attn and --groups replace the defaults of those not given. opts[0..n)
 * must hold the model options. */
void ddpm_model_flags_preset(ddpm_unet_config *c, const ddpm_opt *opts, int nopts, bool size_known);
/* The preset (size_known false), then ddpm_unet_config_validate: 0, or 2
 * after its message. */
int ddpm_model_flags_check(const char *cmd, ddpm_unet_config *c, const ddpm_opt *opts, int nopts);

/* Fails fast when the output `path` cannot be written: it must not be a
 * directory, and its directory must exist and accept a new file (a probe file
 * is created there and removed). Returns 0, or 1 (the exit code) after
 * printing e.g. "ddpm CMD: cannot write 'a/b.png': directory 'a' does not
 * exist" to stderr. */
int ddpm_cli_check_writable(const char *cmd, const char *path);

/* The command line as typed, for run.txt: "ddpm CMD ARGS", an argument with
 * a space or shell character in single quotes. */
void ddpm_cli_command_line(char *buf, size_t cap, int argc, char **argv);

/* Prints "ddpm CMD: <last library error>" to stderr; returns 1 (a runtime failure). */
int ddpm_cli_error(const char *cmd);
/* Prints "ddpm CMD: <the printf message>" to stderr; returns code. */
int ddpm_cli_fail(const char *cmd, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Prints "ddpm CMD: FLAG: <last library error>" to stderr; returns code. */
int ddpm_cli_error_flag(const char *cmd, const char *flag, int code);
/* v is what a parse function made of FLAG's value (ddpm_schedule_parse, ...,
 * ddpm_enum_lookup): 0 when it named something, else 2 after
 * "ddpm CMD: FLAG: unknown schedule 'X' (expected ...)". */
int ddpm_cli_check_name(const char *cmd, const char *flag, int v);

/* ---- the sampling flags of `sample` and `eval` ------------------------------- */

/* --sampler, --sample-steps, --spacing, --eta, --var, --guidance, --seed. */
typedef struct {
    const char *sampler, *spacing, *var;
    int steps;
    float eta, guidance;
    uint64_t seed;
    bool model_sampler, steps_seen; /* set by ddpm_cli_draw_opts (ddpm_cli_model_sampler) */
} ddpm_sampler_flags;
#define DDPM_SAMPLER_OPTS 7 /* checked against the table in args.c */
/* Sets f to the defaults (ddpm, var small, guidance 1, seed 0) and writes
 * DDPM_SAMPLER_OPTS entries into opts. */
void ddpm_sampler_flags_opts(ddpm_opt *opts, ddpm_sampler_flags *f);
/* After ddpm_opts_parse (opts[0..nopts) holds the sampler options): o =
 * ddpm_draw_opts_default with the flags: names parsed, options that do not
 * apply to the sampler refused, seed and guidance set (guided when
 * --guidance was given). -1 to go on, else 2 after a usage error. */
int ddpm_cli_draw_opts(const char *cmd, ddpm_draw_opts *o, ddpm_sampler_flags *f, const ddpm_opt *opts, int nopts);
/* Once the model is open: with none of --sampler and the flags of one
 * sampler (--var, --eta, --spacing, --sigmas, --churn) given, o draws with
 * the model's own sampler (ddpm_pipeline_info), at its steps unless
 * --sample-steps was given. */
void ddpm_cli_model_sampler(const ddpm_pipeline *p, ddpm_draw_opts *o, const ddpm_sampler_flags *f);
/* Opens *ckpt (NULL: the default run's checkpoint, with a hint when it does
 * not exist yet) for batches of max_batch images, in `precision` (NULL: the
 * checkpoint's). 0, 1 after the error, 2 after a usage error. */
int ddpm_cli_open_pipeline(const char *cmd, ddpm_pipeline **p, const char **ckpt, bool raw_weights, int max_batch,
                           const char *precision);
/* ddpm_pipeline_check, with the error printed under the flag it concerns
 * (--sample-steps, --guidance or --label): -1 to go on, else 2. */
int ddpm_cli_check_draw(const char *cmd, const ddpm_pipeline *p, const ddpm_draw_opts *o, int *K);

#endif
