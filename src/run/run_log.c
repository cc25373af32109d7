/* run_log.c: a run's log.csv (cut exactly on resume) and run.txt. See run.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddpm/image.h"
#include "run/run_internal.h"

#define LOG_COLS "iter,loss,lr,grad_norm,time_s"
#define EVAL_COLS ",fid,precision,recall,confidence,class_entropy,label_accuracy"
#define MAX_COLS 32

/* Splits line (in place) at commas into at most MAX_COLS fields; drops the newline. */
static int split(char *line, char **f) {
    line[strcspn(line, "\r\n")] = '\0';
    int n = 0;
    for (char *p = line; n < MAX_COLS;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = '\0', p = c + 1;
    }
    return n;
}

static int find(char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

/* Copies the rows of iterations 1..step of `in` (each once, increasing)
 * into out under the columns `hdr`, and their losses into L. */
static void keep_rows(run_log *L, FILE *in, FILE *out, const char *hdr, int64_t step) {
    char hline[1024], line[1024], hbuf[1024], *old[MAX_COLS], *cols[MAX_COLS], *f[MAX_COLS];
    if (!fgets(hline, sizeof hline, in)) return;
    int nold = split(hline, old);
    snprintf(hbuf, sizeof hbuf, "%s", hdr);
    int ncol = split(hbuf, cols), map[MAX_COLS];
    for (int j = 0; j < ncol; j++) map[j] = find(old, nold, cols[j]);
    if (map[0] < 0 || map[1] < 0) return; /* no iter or loss column: nothing to keep */
    int64_t last = 0;
    while (fgets(line, sizeof line, in)) {
        int n = split(line, f);
        if (map[0] >= n || map[1] >= n) continue;
        char *end;
        long long it = strtoll(f[map[0]], &end, 10);
        if (end == f[map[0]] || *end || it <= last || it > step) continue;
        last = it;
        for (int j = 0; j < ncol; j++) fprintf(out, "%s%s", j ? "," : "", map[j] >= 0 && map[j] < n ? f[map[j]] : "");
        fputc('\n', out);
        if (it <= L->cap) {
            L->loss[it - 1] = strtof(f[map[1]], NULL);
            L->n = it;
        }
    }
}

ddpm_status run_log_open(run_log *L, const char *dir, int64_t step, int64_t iters, bool eval) {
    const char *hdr = eval ? LOG_COLS EVAL_COLS : LOG_COLS;
    memset(L, 0, sizeof *L);
    snprintf(L->path, sizeof L->path, "%s/log.csv", dir);
    L->cap = iters > 0 ? iters : 1;
    if (!(L->loss = calloc((size_t)L->cap, sizeof *L->loss))) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_atomic_file a;
    ddpm_status s = ddpm_atomic_open(&a, L->path);
    if (s) return s;
    fprintf(a.f, "%s\n", hdr);
    FILE *in = step > 0 ? fopen(L->path, "r") : NULL;
    if (in) {
        keep_rows(L, in, a.f, hdr, step);
        fclose(in);
    }
    if (ferror(a.f)) return ddpm_atomic_fail(&a, strerror(errno ? errno : EIO));
    if ((s = ddpm_atomic_commit(&a))) return s;
    if (!(L->f = fopen(L->path, "a"))) return ddpm_error(DDPM_ERR_IO, "cannot write '%s': %s", L->path, strerror(errno));
    return DDPM_OK;
}

void run_log_close(run_log *L) {
    if (L->f) fclose(L->f);
    free(L->loss);
    memset(L, 0, sizeof *L);
}

ddpm_status run_log_plot(const run_log *L, const char *dir) {
    if (L->n < 2) return DDPM_OK;
    char path[1100];
    snprintf(path, sizeof path, "%s/loss.png", dir);
    return ddpm_plot_line_png(path, L->loss, (int)L->n, 800, 400, true, "TRAINING LOSS (LOG SCALE) VS ITERATION");
}

/* ---- run.txt ------------------------------------------------------------------------------ */

/* /proc/cpuinfo's first "model name" (Linux), else "unknown". */
static void cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c += 1 + strspn(c + 1, " \t");
        c[strcspn(c, "\r\n")] = '\0';
        snprintf(out, cap, "%s", c);
        break;
    }
    fclose(f);
}

/* A value of run.txt goes on one line. */
static void one_line(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

void run_info_init(run_info *ri, const char *dir, const char *command, int threads, bool resumed) {
    memset(ri, 0, sizeof *ri);
    snprintf(ri->path, sizeof ri->path, "%s/run.txt", dir);
    one_line(ri->command, sizeof ri->command, command);
    cpu_name(ri->cpu, sizeof ri->cpu);
    ri->threads = threads;
    ri->status = "running";
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ri->started, sizeof ri->started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    FILE *f = resumed ? fopen(ri->path, "r") : NULL;
    if (!f) return;
    char line[2200];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "started=", 8) && strlen(line + 8) < sizeof ri->started) strcpy(ri->started, line + 8);
        else if (!strncmp(line, "wall_s=", 7)) ri->wall_s = strtod(line + 7, NULL);
    }
    fclose(f);
    if (!(ri->wall_s >= 0 && ri->wall_s < 1e12)) ri->wall_s = 0; /* NaN or nonsense: start over */
}

ddpm_status run_info_write(const run_info *ri) {
    ddpm_atomic_file a;
    ddpm_status s = ddpm_atomic_open(&a, ri->path);
    if (s) return s;
    fprintf(a.f, "command=%s\ncpu=%s\nthreads=%d\nprecision=%s\nstarted=%s\nwall_s=%.1f\nimg_per_s=%.1f\nstatus=%s\niter=%" PRId64
                 "\niters=%" PRId64 "\n", ri->command, ri->cpu, ri->threads, ri->precision ? ri->precision : "fp32",
            ri->started, ri->wall_s, ri->img_per_s, ri->status, ri->iter, ri->iters);
    if (ferror(a.f)) return ddpm_atomic_fail(&a, strerror(errno ? errno : EIO));
    return ddpm_atomic_commit(&a);
}
