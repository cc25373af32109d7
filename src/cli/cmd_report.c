/* cmd_report.c: `ddpm report RUN_DIR [RUN_DIR ...] [-o FILE]`: a run as one
 * self-contained HTML page, or several runs compared (report.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ddpm/report.h"

#define CMD "report"

static const char *const SYNOPSIS =
    "usage: ddpm report RUN_DIR [RUN_DIR ...] [-o FILE] [--title TEXT] [--refresh S]\n\n"
    "Write one self-contained HTML page (images embedded, plots as SVG) about a run\n"
    "directory of `ddpm train` or `ddpm toy`: the recipe, the curves against iterations\n"
    "and time, the sample grids. Several RUN_DIRs make a comparison (of one dataset and\n"
    "image shape). Missing or damaged files are listed on the page. While run.txt says\n"
    "status=running the page reloads itself.";

static const char *const EPILOG =
    "The output defaults to RUN_DIR/report.html for one run and to compare.html in\n"
    "the current directory for several.\n\n"
    "examples:\n"
    "  ddpm report runs/mnist                 # runs/mnist/report.html\n"
    "  ddpm report runs/a runs/b -o ab.html   # a comparison";

static int cmd_report(int argc, char **argv) {
    const char *out = NULL;
    ddpm_report_opts o;
    ddpm_report_opts_default(&o);
    ddpm_opt opts[] = {
        {"--out", "-o", OPT_STRING, &out, 0, 0, "FILE", "the HTML file (default: see below)"},
        {"--title", NULL, OPT_STRING, &o.title, 0, 0, "TEXT", "the page's heading (default: the run's name)"},
        {"--refresh", NULL, OPT_INT, &o.refresh_s, 1, 86400, "S", "reload interval while a run trains (default 30)"},
    };
    const char *dirs[DDPM_REPORT_MAX_RUNS];
    int nd = 0, rc = ddpm_opts_parse_args(CMD, argc, argv, opts, (int)DDPM_COUNT(opts), SYNOPSIS, EPILOG, dirs,
                                          DDPM_REPORT_MAX_RUNS, &nd, "run directories");
    if (rc) return rc == 1 ? 0 : rc;
    if (o.title && !*o.title) return ddpm_cli_fail(CMD, 2, "--title is empty");
    if (!nd) return ddpm_cli_fail(CMD, 2, "name a run directory (see 'ddpm %s --help')", CMD);
    char def[4200];
    ddpm_report_default_path(def, sizeof def, dirs, nd); /* a directory argument is shorter than 4096 bytes */
    if (!out) out = def;
    if (ddpm_report_write(dirs, nd, out, &o)) return ddpm_cli_error(CMD);
    printf("wrote %s\n", out);
    return 0;
}

const ddpm_cli_command ddpm_cmd_report = {"report", cmd_report, "an HTML page about a run, or runs compared"};
