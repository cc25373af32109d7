/* prof.h: optional wall-clock time per layer kind (`ddpm bench --profile`).
 *
 * The model and the trainer bracket every layer call with
 *
 *     double t0 = ddpm_prof_tic();
 *     ddpm_conv2d_forward(...);
 *     ddpm_prof_toc(DDPM_PROF_CONV3, DDPM_PROF_FWD, t0);
 *
 * Off by default: tic returns 0 and toc returns at once, one predictable
 * branch per layer call. When on, each pair costs two clock_gettime calls
 * (tens of nanoseconds; a training step makes a few hundred). The totals are
 * process-wide and not thread-safe: time one model from one thread (the
 * layers parallelise inside the calls, which is what gets timed).
 */
#ifndef DDPM_PROF_H
#define DDPM_PROF_H

#include <stdbool.h>

typedef enum {
    DDPM_PROF_CONV3,  /* 3x3 convolutions (stride 1 and the stride-2 downsampling) */
    DDPM_PROF_CONV1,  /* 1x1 convolutions: shortcuts, attention qkv and projection */
    DDPM_PROF_NORM,   /* GroupNorm, including the recompute before backward */
    DDPM_PROF_ACT,    /* SiLU and dropout, including recomputes */
    DDPM_PROF_ATTN,   /* softmax(q k^T / sqrt(C)) v */
    DDPM_PROF_ELEM,   /* residual adds, concat, upsample, broadcast bias, zeroing */
    DDPM_PROF_TEMB,   /* time/label embedding and the per-block temb projections */
    DDPM_PROF_LOSS,   /* t and noise draws, q_sample, the loss and its gradient */
    DDPM_PROF_OPTIM,  /* gradient clipping, AdamW, EMA */
    DDPM_PROF_KINDS
} ddpm_prof_kind;

enum { DDPM_PROF_FWD, DDPM_PROF_BWD, DDPM_PROF_PASSES };

void ddpm_prof_enable(bool on);
bool ddpm_prof_enabled(void);
/* Sets every total to zero. */
void ddpm_prof_reset(void);

/* A timestamp in seconds, or 0 when profiling is off. */
double ddpm_prof_tic(void);
/* Adds the time since `tic` to (kind, pass); nothing when profiling is off. */
void ddpm_prof_toc(ddpm_prof_kind kind, int pass, double tic);

/* Seconds accumulated for (kind, pass) since the last reset. */
double ddpm_prof_seconds(ddpm_prof_kind kind, int pass);
/* Short lower-case name, e.g. "conv3x3" (usable in key=value output). */
const char *ddpm_prof_name(ddpm_prof_kind kind);

#endif
