/* progress.h: a progress line for loops of known length (sampling steps,
 * evaluation batches), written to a stream the caller gives: redrawn in
 * place on a terminal (at most every 0.1 s), else one line each 10 %; the
 * last call prints the total time and rate. NULL stream: silent. */
#ifndef DDPM_PROGRESS_H
#define DDPM_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    char what[96], unit[24];
    long total, done;
    bool tty;
    int next_pct;
    double t0, last;
} ddpm_progress;

void ddpm_progress_start(ddpm_progress *p, FILE *out, const char *what, long total, const char *unit);
void ddpm_progress_tick(ddpm_progress *p, long done); /* done units so far, 1..total */
void ddpm_progress_done(ddpm_progress *p);            /* a finished line, even if ticks stopped short */

/* Monotonic clock in seconds. */
double ddpm_now(void);
/* 75 s -> "1m15s", 4000 s -> "1h06m". */
void ddpm_fmt_duration(char *buf, size_t cap, double seconds);

#endif
