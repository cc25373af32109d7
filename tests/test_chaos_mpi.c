/* test_chaos_mpi.c: a 2-rank `ddpm train` under mpirun, one rank killed
 * (SIGKILL) five times, two of them inside rank 0's writes
 * (DDPM_TEST_KILL_AT: a checkpoint not yet renamed, half a log row), the
 * others rank 0 or rank 1 four iterations past the checkpoint
 * (DDPM_TEST_KILL_ITER, so no kill depends on timing), and resumed with --resume
 * each time, ends with the checkpoint byte-identical to the uninterrupted
 * 2-rank run's and log.csv with the same iter,loss,lr,grad_norm rows. The
 * single-process case with 20 kills is test_chaos; scripts/chaos.sh runs both
 * on the default model. Exits 77 (ctest: skipped) when the build has no MPI
 * or mpirun is missing, as test_dist. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdbool.h>
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
#include "ddpm/train.h"

static char g_dir[256], g_data[300];

#define ITERS 24
#define CADENCE "--threads 1 --log-every 1 --ckpt-every 3"
#define FRESH "--data '%s' --ch 8 --ch-mult 1,2 --res-blocks 1 --attn none --groups 4 --steps 20 --batch 8 " \
              "--iters 24 --warmup 2 --seed 5 " CADENCE
#define MPIRUN "mpirun --allow-run-as-root --oversubscribe -np 2 "

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    return cli_write_dataset(g_data, 32, 8);
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* Runs the shell fragment; its exit code. */
static int sh(const char *fmt, ...) {
    char cmd[4000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The step of out's checkpoint, which must load; -1 if there is none. */
static long ckpt_step(const char *out) {
    char path[500];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", out);
    if (!cli_exists(path)) return -1;
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, path)) fail_msg("the checkpoint does not load: %s", ddpm_last_error());
    const char *s = ddpm_checkpoint_meta(&ck, "step");
    long step = s ? strtol(s, NULL, 10) : -2;
    ddpm_checkpoint_close(&ck);
    return step;
}

/* `cut -d, -f1-4 log.csv` of a run, into buf. */
static void log_cols(const char *out, char *buf, size_t cap) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cut -d, -f1-4 '%s/log.csv'", out);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    pclose(p);
}

static void test_killed_ranks_resume_exactly(void **state) {
    (void)state;
    const char *bin = getenv("DDPM_BIN");
    char ref[400], out[400];
    snprintf(ref, sizeof ref, "%s/ref", g_dir);
    snprintf(out, sizeof out, "%s/chaos", g_dir);
    assert_int_equal(sh(MPIRUN "'%s' train " FRESH " --out '%s' >/dev/null 2>&1", bin, g_data, ref), 0);
    /* what each round does: a write that dies, or which rank dies four iterations past the checkpoint */
    const char *rounds[] = {"ckpt.safetensors:2", "1", "log.csv:3", "0", "1"};
    long last = -1;
    for (int k = 0; k < 5; k++) {
        char args[600];
        if (last >= 0) snprintf(args, sizeof args, "--resume " CADENCE);
        else snprintf(args, sizeof args, FRESH, g_data);
        bool hook = strchr(rounds[k], ':') != NULL;
        char env[100];
        if (hook) snprintf(env, sizeof env, "DDPM_TEST_KILL_AT='%s'", rounds[k]);
        else snprintf(env, sizeof env, "DDPM_TEST_KILL_ITER='%s:%ld'", rounds[k], (last > 0 ? last : 0) + 4);
        int rc = sh("%s " MPIRUN "-x DDPM_TEST_KILL_AT -x DDPM_TEST_KILL_ITER '%s' train %s --out '%s' >/dev/null 2>&1",
                    env, bin, args, out);
        if (rc == 0) fail_msg("round %d (%s): the run finished before the kill", k, rounds[k]);
        long step = ckpt_step(out);
        if (step < last) fail_msg("round %d: the checkpoint went back from %ld to %ld", k, last, step);
        last = step;
        printf("round %d (%s): mpirun exited %d, checkpoint at %ld\n", k, env, rc, step);
    }
    assert_true(last >= 3); /* round 0 dies in its second checkpoint */
    assert_int_equal(sh(MPIRUN "'%s' train --resume " CADENCE " --out '%s' >/dev/null 2>&1", bin, out), 0);
    char a[500], b[500];
    snprintf(a, sizeof a, "%s/ckpt.safetensors", ref);
    snprintf(b, sizeof b, "%s/ckpt.safetensors", out);
    if (!cli_same_file(a, b)) fail_msg("the checkpoint differs from the uninterrupted run's");
    static char la[1 << 16], lb[1 << 16];
    log_cols(ref, la, sizeof la);
    log_cols(out, lb, sizeof lb);
    assert_int_equal(cli_lines(la), ITERS + 1);
    assert_string_equal(la, lb);
    assert_int_equal(sh("ls '%s' | grep -q '\\.tmp\\.'", out), 1); /* no temporary file */
}

int main(void) {
    if (!ddpm_dist_available() || system("command -v mpirun >/dev/null 2>&1")) {
        printf("test_chaos_mpi: skipped (%s)\n", ddpm_dist_available() ? "no mpirun on PATH" : "built without MPI");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_ranks_resume_exactly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
