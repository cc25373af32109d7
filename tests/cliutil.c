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
#include <unistd.h>

#include <cmocka.h>

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

char *cli_slurp(const char *path, unsigned long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (unsigned long)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, f) != *n) fail_msg("cannot read %s", path);
    b[*n] = '\0';
    fclose(f);
    return b;
}
