/* cmd_noise.c: `ddpm noise`: the forward process q(x_t | x_0) on dataset
 * images (docs/design.md §5), no checkpoint needed.
 *
 * Writes a PNG grid with one row per test-split image: the clean x_0, then
 * x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps for each requested
 * t, with ONE eps per image shared by all its columns, so a row is one
 * trajectory of the forward process. Prints the coefficients of each column
 * on stdout.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "ddpm/data.h"
#include "ddpm/image.h"

#define CMD "noise"
#define MAX_T_LIST 64   /* timesteps (columns) at most */

static const char *SYNOPSIS =
    "usage: ddpm noise [--data mnist|fashion|DIR] [--t LIST] [-n N] [-o FILE] [options]\n\n"
    "Show the forward diffusion q(x_t | x_0): test-split images next to their noised\n"
    "versions x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.";

static const char *EPILOG =
    "One row per image: the clean x_0, then one column per t. Each row uses one noise\n"
    "eps for all its columns, so it shows a single trajectory. The t values and their\n"
    "coefficients are printed on stdout. No checkpoint is needed.\n\n"
    "examples:\n"
    "  ddpm noise                                  # 8 MNIST digits at 10 t in [0, 999]\n"
    "  ddpm noise --t 0,50,100,250,500,999 -o q.png --scale 2\n"
    "  ddpm noise --schedule cosine --steps 300    # compare schedules";

typedef struct {
    const char *data, *data_dir, *tlist, *sched_name, *out;
    int T, n, zoom;
    uint64_t seed;
} noise_flags;

/* The flags' own consistency: the schedule, --data-dir, the t list (*L
 * columns into t). Returns 0, or the exit code after printing the error. */
static int check_flags(const noise_flags *f, int *kind, int *t, int *L) {
    *kind = ddpm_schedule_parse(f->sched_name);
    if (ddpm_cli_check_name(CMD, "--schedule", *kind)) return 2;
    bool named = !strcmp(f->data, "mnist") || !strcmp(f->data, "fashion") || !strcmp(f->data, "fashion-mnist");
    if (f->data_dir && !named)
        return ddpm_cli_fail(CMD, 2, "--data-dir goes with --data mnist or fashion; --data '%s' is already a directory",
                             f->data);
    *L = ddpm_timesteps_parse(f->tlist, f->T, t, MAX_T_LIST);
    return *L < 0 ? ddpm_cli_error_flag(CMD, "--t", 2) : 0;
}

/* Cheap checks first (the output, --data-dir), then the test split into ds
 * (its directory in dir). Returns 0, or the exit code after the error. */
static int load_data(const noise_flags *f, char *dir, size_t cap, ddpm_dataset *ds) {
    if (ddpm_cli_check_writable(CMD, f->out)) return 1;
    if (f->data_dir) {
        struct stat st;
        if (stat(f->data_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return ddpm_cli_fail(CMD, 1, "--data-dir '%s': %s", f->data_dir,
                                 stat(f->data_dir, &st) != 0 ? strerror(errno) : "not a directory");
    }
    if (ddpm_cli_data_dir(dir, cap, f->data, f->data_dir) || ddpm_dataset_load(ds, dir, false))
        return ddpm_cli_error(CMD);
    int rc = 0;
    if (f->n > ds->n) rc = ddpm_cli_fail(CMD, 1, "-n %d: the test split in '%s' has only %d images", f->n, dir, ds->n);
    else if (ds->c != 1 && ds->c != 3) rc = ddpm_cli_fail(CMD, 1, "'%s' holds %d-channel images; PNG grids need 1 or 3", dir, ds->c);
    if (rc) ddpm_dataset_free(ds);
    return rc;
}

/* The coefficients of each column, on stdout. */
static void print_columns(const ddpm_schedule *s, int kind, int T, const int *t, int L) {
    printf("%s schedule, T = %d; x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps\n\n",
           ddpm_schedule_name((ddpm_schedule_kind)kind), T);
    printf("%-7s %-6s %16s %20s %12s\n", "column", "t", "sqrt(alpha_bar)", "sqrt(1-alpha_bar)", "beta_t");
    printf("%-7d %-6s %16.6f %20.6f %12s\n", 0, "x_0", 1.0, 0.0, "-");
    for (int j = 0; j < L; j++)
        printf("%-7d %-6d %16.6f %20.6f %12.6f\n", j + 1, t[j], s->sqrt_alpha_bar[t[j]],
               s->sqrt_one_minus_alpha_bar[t[j]], s->beta[t[j]]);
}

/* The grid: per image, x_0 then x_t for each t with one shared eps. */
static int render(const noise_flags *f, int kind, const int *t, int L, const ddpm_dataset *ds, const char *dir) {
    ddpm_schedule s = {0};
    size_t D = (size_t)ds->c * ds->h * ds->w;
    int n = f->n, cols = 1 + L, gw, gh;
    float *grid = ddpm_malloc((size_t)n * cols * D * sizeof(float)); /* [n, cols, D] */
    ddpm_status st = !grid ? ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", n * cols)
                           : ddpm_schedule_init(&s, (ddpm_schedule_kind)kind, f->T);
    if (!st) ddpm_q_trajectories(grid, ds, n, t, L, &s, f->seed);
    if (!st) st = ddpm_image_write_grid_scaled(f->out, grid, n * cols, ds->c, ds->h, ds->w, cols, -1.0f, 1.0f, f->zoom);
    if (!st) {
        print_columns(&s, kind, f->T, t, L);
        ddpm_image_grid_size(n * cols, ds->h * f->zoom, ds->w * f->zoom, cols, &gw, &gh);
        fprintf(stderr, "ddpm %s: wrote '%s' (%d x %d px): %d image%s from '%s', x_0 and %d noised column%s each\n",
                CMD, f->out, gw, gh, n, n == 1 ? "" : "s", dir, L, L == 1 ? "" : "s");
    }
    ddpm_schedule_free(&s);
    ddpm_free(grid);
    return st ? ddpm_cli_error(CMD) : 0;
}

static int cmd_noise(int argc, char **argv) {
    noise_flags f = {.data = "mnist", .sched_name = "linear", .out = "noise.png", .T = 1000, .n = 8, .zoom = 1, .seed = 0};
    ddpm_opt opts[] = {
        {"--data", NULL, OPT_STRING, &f.data, 0, 0, "NAME", "mnist, fashion or a directory of IDX files (default mnist)"},
        {"--data-dir", NULL, OPT_STRING, &f.data_dir, 0, 0, "DIR", "where the named dataset lives"},
        {"--t", NULL, OPT_STRING, &f.tlist, 0, 0, "LIST", "timesteps, e.g. 0,100,500,999 (default 10 evenly spaced)"},
        {"--steps", NULL, OPT_INT, &f.T, 2, DDPM_SCHEDULE_MAX_T, "T", "diffusion timesteps T (default 1000)"},
        {"--schedule", NULL, OPT_STRING, &f.sched_name, 0, 0, "NAME", "linear, cosine, quadratic or sigmoid (default linear)"},
        {"--seed", NULL, OPT_U64, &f.seed, 0, 0, "S", "seed of the noise (default 0)"},
        {"--num", "-n", OPT_INT, &f.n, 1, 1000, "N", "images, from the test split (default 8)"},
        {"--out", "-o", OPT_STRING, &f.out, 0, 0, "FILE", "PNG to write (default noise.png)"},
        {"--scale", NULL, OPT_INT, &f.zoom, 1, DDPM_GRID_MAX_SCALE, "S", "enlarge the tiles S times (nearest neighbour; default 1)"},
    };
    int rc = ddpm_opts_parse(CMD, argc, argv, opts, (int)DDPM_COUNT(opts), SYNOPSIS, EPILOG);
    if (rc) return rc == 1 ? 0 : rc;
    int kind, t[MAX_T_LIST], L = 0;
    if ((rc = check_flags(&f, &kind, t, &L))) return rc;
    char dir[4096];
    ddpm_dataset ds;
    if ((rc = load_data(&f, dir, sizeof dir, &ds))) return rc;
    rc = render(&f, kind, t, L, &ds, dir);
    ddpm_dataset_free(&ds);
    return rc;
}

const ddpm_cli_command ddpm_cmd_noise = {"noise", cmd_noise, "show the forward diffusion q(x_t | x_0) on dataset images"};
