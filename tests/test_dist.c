/* test_dist.c: data-parallel `ddpm train` under mpirun. 2 ranks x 1 thread
 * against 1 rank x 1 thread with the same global batch, resume across world
 * sizes, a killed rank, SIGTERM to the ranks. Exits 77 (ctest: skipped) when
 * the build has no MPI or mpirun is missing. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"
#include "ddpm/train.h"

static char g_dir[256], g_data[300];

/* a tiny class-conditional model on 8x8 images; batch 8 = 2 x 4; fp32
 * whatever the CPU (the 1e-4 tolerances below are float32 arithmetic's) */
#define BASE "--data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --steps 20 " \
             "--classes 4 --threads 1 --log-every 1 --warmup 2 --seed 5 --precision fp32"
#define TINY BASE " --batch 8 --iters 20"
#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -np "

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    return cli_write_dataset(g_data, 36, 8);
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* Runs `[mpirun -np R] ddpm train ...` (R = 0: no mpirun); returns the exit code. */
static int train(int ranks, const char *fmt, ...) {
    char args[1500], cmd[2500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s%.0d '%s' train %s >>'%s/log' 2>&1", ranks ? MPIRUN : "", ranks, getenv("DDPM_BIN"),
             args, g_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void losses(const char *run, double *loss, int n) {
    char path[400], line[256];
    snprintf(path, sizeof path, "%s/%s/log.csv", g_dir, run);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("no %s", path);
    int k = 0;
    while (fgets(line, sizeof line, f)) {
        long long it;
        double l;
        if (sscanf(line, "%lld,%lf", &it, &l) == 2 && it >= 1 && it <= n) loss[it - 1] = l, k++;
    }
    fclose(f);
    assert_int_equal(k, n);
}

/* max |a - b| / max(1, |a|) over the parameters (and EMA) of two checkpoints */
static double param_diff(const char *a, const char *b) {
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/%s/ckpt.safetensors", g_dir, a);
    snprintf(pb, sizeof pb, "%s/%s/ckpt.safetensors", g_dir, b);
    ddpm_checkpoint ca, cb;
    if (ddpm_checkpoint_open(&ca, pa) || ddpm_checkpoint_open(&cb, pb)) fail_msg("%s", ddpm_last_error());
    assert_int_equal(ca.total, cb.total);
    float *x = malloc(ca.total * sizeof *x), *y = malloc(ca.total * sizeof *y);
    double worst = 0;
    const char *prefix[] = {"", "ema."};
    for (int p = 0; p < 2; p++) {
        assert_int_equal(ddpm_checkpoint_read(&ca, prefix[p], x), DDPM_OK);
        assert_int_equal(ddpm_checkpoint_read(&cb, prefix[p], y), DDPM_OK);
        for (size_t i = 0; i < ca.total; i++) {
            double d = fabs((double)x[i] - y[i]) / fmax(1.0, fabs(x[i]));
            worst = d > worst ? d : worst;
        }
    }
    char sa[32], sb[32];
    snprintf(sa, sizeof sa, "%s", ddpm_checkpoint_meta(&ca, DDPM_META_STEP));
    snprintf(sb, sizeof sb, "%s", ddpm_checkpoint_meta(&cb, DDPM_META_STEP));
    assert_string_equal(sa, sb);
    free(x);
    free(y);
    ddpm_checkpoint_close(&ca);
    ddpm_checkpoint_close(&cb);
    return worst;
}

/* 20 iterations: 1 rank vs 2 ranks, same global batch of 8. */
static void test_two_ranks_equal_one(void **state) {
    (void)state;
    assert_int_equal(train(0, TINY " --out %s/one", g_data, g_dir), 0);
    assert_int_equal(train(2, TINY " --check-sync 5 --out %s/two", g_data, g_dir), 0);
    double a[20], b[20];
    losses("one", a, 20);
    losses("two", b, 20);
    for (int i = 0; i < 20; i++)
        if (fabs(a[i] - b[i]) > 1e-5 * fabs(a[i])) fail_msg("iteration %d: loss %.6f (1 rank) vs %.6f (2 ranks)", i + 1, a[i], b[i]);
    double d = param_diff("one", "two");
    printf("2 ranks vs 1: parameters differ by at most %.2e (relative)\n", d);
    assert_true(d <= 1e-4);
}

/* A 2-rank checkpoint resumes under 1 rank, a 1-rank checkpoint under 2. */
static void test_resume_across_world_sizes(void **state) {
    (void)state;
    assert_int_equal(train(2, TINY " --stop-after 10 --out %s/r2", g_data, g_dir), 0);
    assert_int_equal(train(0, "--resume --threads 1 --log-every 1 --out %s/r2", g_dir), 0);
    assert_int_equal(train(0, TINY " --stop-after 10 --out %s/r1", g_data, g_dir), 0);
    assert_int_equal(train(2, "--resume --threads 1 --log-every 1 --out %s/r1", g_dir), 0);
    double dr2 = param_diff("one", "r2"), dr1 = param_diff("one", "r1");
    printf("resumed across world sizes: differ from the 1-rank run by %.2e and %.2e\n", dr2, dr1);
    assert_true(dr2 <= 1e-4 && dr1 <= 1e-4);
    /* a global batch that does not split: one clear message, not one per rank */
    char log[400];
    snprintf(log, sizeof log, "%s/log", g_dir);
    remove(log);
    assert_int_equal(train(2, BASE " --batch 7 --iters 20 --out %s/odd", g_data, g_dir) != 0, 1);
    cli_result r;
    FILE *f = fopen(log, "r");
    size_t n = fread(r.err, 1, sizeof r.err - 1, f);
    fclose(f);
    r.err[n] = '\0';
    assert_non_null(strstr(r.err, "ddpm train: the batch of 7 images does not split evenly across 2 ranks"));
    assert_null(strstr(strstr(r.err, "does not split") + 1, "does not split"));
}

/* Starts a long 2-rank run, waits for its third log row, runs `action` in
 * the shell ($pid is mpirun's) and returns mpirun's exit status and, in
 * *secs, how long mpirun took to end after the action. */
static int disturb(const char *out, const char *action, double *secs) {
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             MPIRUN "2 '%s' train " BASE " --batch 8 --iters 100000 --out '%s' >/dev/null 2>'%s.err' & pid=$!; "
             "i=0; while [ $i -lt 600 ] && ! [ $(wc -l 2>/dev/null < '%s/log.csv' || echo 0) -ge 3 ]; do "
             "sleep 0.1; i=$((i+1)); done; t0=$(date +%%s%%N); %s; wait $pid; rc=$?; "
             "echo $(( ($(date +%%s%%N) - t0) / 1000000 )) > '%s.ms'; exit $rc",
             getenv("DDPM_BIN"), g_data, out, out, out, action, out);
    int st = system(cmd);
    char path[500];
    snprintf(path, sizeof path, "%s.ms", out);
    FILE *f = fopen(path, "r");
    long ms = -1;
    if (!f || fscanf(f, "%ld", &ms) != 1) fail_msg("no timing");
    fclose(f);
    *secs = ms / 1000.0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A rank killed with SIGKILL ends the whole run, in seconds, with an error. */
static void test_killed_rank_ends_run(void **state) {
    (void)state;
    char out[400];
    snprintf(out, sizeof out, "%s/killed", g_dir);
    double secs;
    int rc = disturb(out, "kill -KILL $(pgrep -P $pid | tail -1)", &secs);
    printf("a killed rank: mpirun exited %d after %.1f s\n", rc, secs);
    assert_true(rc != 0);
    assert_true(secs < 30);
}

/* SIGTERM to every rank (what a batch scheduler does): one save, at the same
 * iteration on all ranks, and --resume continues. */
static void test_sigterm_saves_once(void **state) {
    (void)state;
    char out[400], ck[500], err[500];
    snprintf(out, sizeof out, "%s/term", g_dir);
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", out);
    double secs;
    int rc = disturb(out, "kill -TERM $(pgrep -P $pid)", &secs);
    printf("SIGTERM to the ranks: mpirun exited %d after %.1f s\n", rc, secs);
    assert_true(rc != 0 && secs < 30);
    ddpm_checkpoint c;
    if (ddpm_checkpoint_open(&c, ck)) fail_msg("%s", ddpm_last_error());
    long long step = strtoll(ddpm_checkpoint_meta(&c, DDPM_META_STEP), NULL, 10);
    ddpm_checkpoint_close(&c);
    assert_true(step >= 3);
    snprintf(err, sizeof err, "%s.err", out);
    FILE *f = fopen(err, "r");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *hit = strstr(buf, "terminated at iteration");
    if (!hit) fail_msg("no save message: %s", buf);
    assert_null(strstr(hit + 1, "terminated at iteration"));
    assert_int_equal(train(2, "--resume --threads 1 --stop-after 1 --out %s", out), 0);
}

int main(void) {
    if (!ddpm_dist_available() || system("command -v mpirun >/dev/null 2>&1")) {
        printf("test_dist: skipped (%s)\n", ddpm_dist_available() ? "no mpirun on PATH" : "built without MPI");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_equal_one),
        cmocka_unit_test(test_resume_across_world_sizes),
        cmocka_unit_test(test_killed_rank_ends_run),
        cmocka_unit_test(test_sigterm_saves_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
