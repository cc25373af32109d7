/* progress.c: progress lines (progress.h). In core: it needs only libc, and
 * every rung (the data front decoding a folder, evaluation, sampling, the
 * run) uses it. */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double ddpm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ddpm_fmt_duration(char *buf, size_t cap, double seconds) {
    if (!isfinite(seconds) || seconds < 0) seconds = 0;
    long t = (long)(seconds + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

void ddpm_fmt_count(char *buf, size_t cap, size_t n) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%zu", n);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    if (cap) buf[o < cap ? o : cap - 1] = '\0';
}

bool ddpm_is_tty(FILE *f) { return f && isatty(fileno(f)); }

void ddpm_progress_start(ddpm_progress *p, FILE *out, const char *what, long total, const char *unit) {
    memset(p, 0, sizeof *p);
    p->out = out;
    snprintf(p->what, sizeof p->what, "%s", what);
    snprintf(p->unit, sizeof p->unit, "%s", unit);
    p->total = total > 0 ? total : 1;
    p->tty = ddpm_is_tty(out);
    p->next_pct = 10;
    p->t0 = ddpm_now();
}

void ddpm_progress_tick(ddpm_progress *p, long done) {
    p->done = done;
    if (!p->out || done >= p->total) return; /* the finished line is ddpm_progress_done's */
    double t = ddpm_now(), rate = done / (t - p->t0 + 1e-9);
    if (p->tty) {
        if (t - p->last < 0.1) return;
        p->last = t;
    } else {
        int pct = (int)(100 * done / p->total);
        if (pct < p->next_pct) return;
        p->next_pct = pct / 10 * 10 + 10;
    }
    char eta[32];
    ddpm_fmt_duration(eta, sizeof eta, rate > 0 ? (p->total - done) / rate : 0.0);
    fprintf(p->out, "%s%s: %ld/%ld %s  %.1f %s/s  eta %s%s", p->tty ? "\r" : "", p->what, done, p->total, p->unit,
            rate, p->unit, eta, p->tty ? "\033[K" : "\n");
    fflush(p->out);
}

int ddpm_progress_on(void *p, int done, int total) {
    (void)total;
    ddpm_progress_tick(p, done);
    return 0;
}

void ddpm_progress_done(ddpm_progress *p) {
    if (!p->out) return;
    double el = ddpm_now() - p->t0;
    char d[32];
    ddpm_fmt_duration(d, sizeof d, el);
    fprintf(p->out, "%s%s: %ld %s in %s (%.1f %s/s)%s\n", p->tty ? "\r" : "", p->what, p->done, p->unit, d,
            el > 0 ? p->done / el : 0.0, p->unit, p->tty ? "\033[K" : "");
    fflush(p->out);
}

/* ---- the training line ---------------------------------------------------------- */

void ddpm_train_progress_start(ddpm_train_progress *p, FILE *out, long long step0, long long iters, int batch) {
    *p = (ddpm_train_progress){.out = out, .tty = ddpm_is_tty(out), .iters = iters, .it_last = step0, .batch = batch,
                               .t0 = ddpm_now()};
    p->t_last = p->t0;
}

void ddpm_train_progress_line(ddpm_train_progress *p, long long iter, double loss, double lr, double grad) {
    double t = ddpm_now();
    double ips = (double)(iter - p->it_last) * p->batch / (t - p->t_last);
    p->t_last = t;
    p->it_last = iter;
    if (!p->out) return;
    char eta[32], el[32];
    ddpm_fmt_duration(eta, sizeof eta, (double)(p->iters - iter) * p->batch / ips);
    ddpm_fmt_duration(el, sizeof el, t - p->t0);
    fprintf(p->out, "%siter %lld/%lld  loss %.4f  lr %.2e  grad %.3f  %.0f img/s  %s elapsed  ETA %s%s",
            p->tty ? "\r\033[K" : "", iter, p->iters, loss, lr, grad, ips, el, eta, p->tty ? "" : "\n");
    fflush(p->out);
}

void ddpm_train_progress_pause(ddpm_train_progress *p, double seconds) { p->t_last += seconds; }

const char *ddpm_train_progress_clear(const ddpm_train_progress *p) { return p->tty ? "\r\033[K" : ""; }

void ddpm_train_progress_end(ddpm_train_progress *p) {
    if (p->out && p->tty) fputc('\n', p->out);
}
