/* progress.h: a progress line for loops of known length (sampling steps,
 * evaluation batches, decoding a folder), written to a stream the caller
 * gives: redrawn in place on a terminal (at most every 0.1 s), else one line
 * each 10 %; the last call prints the total time and rate. NULL stream:
 * silent (the library itself never prints).
 *
 *     ddpm_progress p;
 *     ddpm_progress_start(&p, stderr, "ddpm sample: sampling", n, "img");
 *     for (...) ddpm_progress_tick(&p, done);
 *     ddpm_progress_done(&p);   // "... 64 img in 12s (5.3 img/s)"
 *
 * And the training loop's line (ddpm_train_progress), used by the run
 * module (run.h). */
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
/* ddpm_progress_tick(p, done) as a (ud, done, total) callback for a loop that
 * reports through one (ddpm_eval_bpd); returns 0 (go on). */
int ddpm_progress_on(void *p, int done, int total);

/* The training loop's line, one per logged iteration:
 *   iter 400/2200  loss 0.0412  lr 9.87e-04  grad 0.315  88 img/s  1m10s elapsed  ETA 5m27s
 * (img/s since the previous line, with the time given to ddpm_train_progress_pause
 * left out; loss as given, e.g. smoothed). Redrawn on a terminal, one line
 * each otherwise. */
typedef struct {
    FILE *out;
    bool tty;
    long long iters, it_last;
    int batch;
    double t0, t_last;
} ddpm_train_progress;

void ddpm_train_progress_start(ddpm_train_progress *p, FILE *out, long long step0, long long iters, int batch);
void ddpm_train_progress_line(ddpm_train_progress *p, long long iter, double loss, double lr, double grad);
/* seconds spent on other work (evaluation, grids) since the last line. */
void ddpm_train_progress_pause(ddpm_train_progress *p, double seconds);
/* Before another message on a terminal: clears the line being redrawn. */
const char *ddpm_train_progress_clear(const ddpm_train_progress *p);
/* After the loop: ends the redrawn line on a terminal. */
void ddpm_train_progress_end(ddpm_train_progress *p);

/* Whether f is a terminal (progress redraws in place); false for NULL. */
bool ddpm_is_tty(FILE *f);
/* Monotonic clock in seconds. */
double ddpm_now(void);
/* 75 s -> "1m15s", 4000 s -> "1h06m". */
void ddpm_fmt_duration(char *buf, size_t cap, double seconds);
/* 1623169 -> "1,623,169". */
void ddpm_fmt_count(char *buf, size_t cap, size_t n);

#endif
