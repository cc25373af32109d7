/* cliutil.c: see cliutil.h. */
#define _POSIX_C_SOURCE 200809L
#include "cliutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <unistd.h>

#include <cmocka.h>

#include "ddpm/data.h"

char *cli_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    b[*n] = '\0';
    fclose(f);
    return b;
}

int cli_write_dataset(const char *dir, int n, int s) {
    char path[600];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    if (system(path)) return -1;
    uint8_t *px = malloc((size_t)n * s * s), *lab = malloc((size_t)n);
    if (!px || !lab) return -1;
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(i % 4);
        for (int p = 0; p < s * s; p++) px[i * s * s + p] = (uint8_t)((i * 37 + p * 11 + (p / s == i % s) * 200) % 256);
    }
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    int rc = ddpm_idx_write_images(path, px, n, 1, s, s) ? -1 : 0;
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    if (!rc && ddpm_idx_write(path, lab, 1, (int[]){n})) rc = -1;
    free(px);
    free(lab);
    return rc;
}

static void slurp(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

int cli_run(cli_result *r, const char *fmt, ...) {
    const char *bin = getenv("DDPM_BIN");
    if (!bin) fail_msg("DDPM_BIN is not set (run the tests through ctest)");
    char args[8192], cmd[16384], dir[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cli_tmpdir(dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "'%s' %s </dev/null >'%s/out' 2>'%s/err'", bin, args, dir, dir);
    int st = system(cmd);
    if (st == -1) fail_msg("cannot run %s", cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    char path[512];
    snprintf(path, sizeof path, "%s/out", dir);
    slurp(path, r->out, sizeof r->out);
    snprintf(path, sizeof path, "%s/err", dir);
    slurp(path, r->err, sizeof r->err);
    cli_rmtree(dir);
    return r->status;
}

void cli_tmpdir(char *out, unsigned long cap) {
    const char *t = getenv("TMPDIR");
    snprintf(out, cap, "%s/ddpm-test-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(out)) fail_msg("mkdtemp failed");
}

void cli_rmtree(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

bool cli_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

void cli_check_help(const char *cmd, const char *const *words, int n) {
    static cli_result r; /* 128 KB: not on the stack */
    if (cli_run(&r, "%s --help", cmd) != 0)
        fail_msg("'%s --help' exited %d; stderr:\n%s", cmd, r.status, r.err);
    for (int i = 0; i < n; i++)
        if (!strstr(r.out, words[i])) fail_msg("'%s --help' does not mention %s", cmd, words[i]);
    if (r.err[0]) fail_msg("'%s --help' wrote to stderr:\n%s", cmd, r.err);
}

void cli_expect(const cli_result *r, int status, const char *in_err) {
    if (strstr(r->err, "Sanitizer") || strstr(r->err, "runtime error:"))
        fail_msg("the sanitizers reported a problem:\n%s", r->err);
    if (r->status != status || (in_err && !strstr(r->err, in_err)))
        fail_msg("expected exit %d and stderr containing '%s'; got exit %d, stdout:\n%s\nstderr:\n%s", status,
                 in_err ? in_err : "", r->status, r->out, r->err);
}

void cli_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

bool cli_same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = false;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

int cli_grid_min_spread(const unsigned char *px, int w, int h, int tw, int th, int pad) {
    if (tw < 1 || th < 1 || pad < 0 || (w - pad) % (tw + pad) || (h - pad) % (th + pad))
        fail_msg("a %dx%d image is not a grid of %dx%d tiles with %d px padding", w, h, tw, th, pad);
    int cols = (w - pad) / (tw + pad), rows = (h - pad) / (th + pad), best = 255;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            int lo = 255, hi = 0;
            for (int y = 0; y < th; y++)
                for (int x = 0; x < tw; x++) {
                    int v = px[(size_t)(pad + r * (th + pad) + y) * w + pad + c * (tw + pad) + x];
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            best = hi - lo < best ? hi - lo : best;
        }
    return best;
}

int cli_spawn(char *const argv[], const char *err_path, char *const env[]) {
    const char *bin = getenv("DDPM_BIN");
    if (!bin) fail_msg("DDPM_BIN is not set (run the tests through ctest)");
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(126);
        for (int i = 0; env && env[i]; i++) {
            char name[256], *eq = strchr(env[i], '=');
            if (!eq || eq - env[i] >= (long)sizeof name) _exit(126);
            snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
            if (setenv(name, eq + 1, 1)) _exit(126);
        }
        char *args[128];
        int n = 0;
        args[n++] = (char *)bin;
        for (int i = 0; argv[i] && n < 127; i++) args[n++] = argv[i];
        args[n] = NULL;
        execv(bin, args);
        _exit(127);
    }
    return (int)pid;
}

int cli_wait(int pid) {
    int st;
    while (waitpid((pid_t)pid, &st, 0) < 0)
        if (errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int cli_log_evals(const char *log_csv, int every) {
    char line[512];
    FILE *fp = fopen(log_csv, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof line, fp));
    assert_non_null(strstr(line, ",fid,precision,recall,confidence,class_entropy,label_accuracy"));
    int evals = 0;
    while (fgets(line, sizeof line, fp)) {
        long long it;
        double loss, lr, g, t, fid;
        if (sscanf(line, "%lld,%lf,%lf,%lf,%lf,%lf", &it, &loss, &lr, &g, &t, &fid) == 6) {
            assert_true(it % every == 0 && fid > 0);
            evals++;
        }
    }
    fclose(fp);
    return evals;
}
