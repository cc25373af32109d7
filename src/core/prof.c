/* prof.c: wall-clock time per layer kind. See prof.h. */
#define _POSIX_C_SOURCE 200809L
#include "core/prof.h"
#include "ddpm/progress.h" /* ddpm_now */

#include <string.h>
#include <time.h>

static bool on;
static double total[DDPM_PROF_KINDS][DDPM_PROF_PASSES]; /* seconds */

static const char *const NAMES[DDPM_PROF_KINDS] = {
    "conv3x3", "conv1x1", "groupnorm", "silu", "attention", "elementwise", "temb", "loss", "optim",
};

void ddpm_prof_enable(bool enable) { on = enable; }
bool ddpm_prof_enabled(void) { return on; }
void ddpm_prof_reset(void) { memset(total, 0, sizeof total); }

double ddpm_prof_tic(void) {
    return on ? ddpm_now() : 0.0;
}

void ddpm_prof_toc(ddpm_prof_kind kind, int pass, double tic) {
    if (!on) return;
    total[kind][pass] += ddpm_prof_tic() - tic;
}

double ddpm_prof_seconds(ddpm_prof_kind kind, int pass) { return total[kind][pass]; }
const char *ddpm_prof_name(ddpm_prof_kind kind) { return NAMES[kind]; }
