/* test_crash.c: the checkpoint survives whatever stops `ddpm train`.
 *
 * - SIGKILL at random moments, 20 times in a row, with a checkpoint written
 *   every iteration (--ckpt-every 1), half of the kills aimed at the moment
 *   a temporary checkpoint file exists (a write in progress) after the run
 *   has replaced the checkpoint at least once: after every
 *   kill the checkpoint loads and validates, its step never goes back, and
 *   --resume continues from it, and no temporary file is left.
 * - A full disk (RLIMIT_FSIZE below the checkpoint's size, SIGXFSZ left at
 *   its default so ddpm must handle it): a one-line "File too large" error,
 *   exit 1, the previous checkpoint byte for byte intact, no temporary file
 *   left behind.
 * Runs the tiny model of test_cli_train on a small IDX dataset it writes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cliutil.h"
#include "ddpm/checkpoint.h"
#include "ddpm/data.h"

static char g_dir[256], g_data[300];

#define TINY_ARGS "--data", g_data, "--ch", "8", "--ch-mult", "1,2", "--res-blocks", "1", "--attn", "4", \
                  "--groups", "4", "--batch", "4", "--steps", "20", "--threads", "1"

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    if (mkdir(g_data, 0755)) return -1;
    enum { N = 24, S = 8 };
    static uint8_t px[N * S * S], lab[N];
    for (int i = 0; i < N; i++) {
        lab[i] = (uint8_t)(i % 4);
        for (int p = 0; p < S * S; p++) px[i * S * S + p] = (uint8_t)((i * 37 + p * 11) % 256);
    }
    char path[400];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", g_data);
    if (ddpm_idx_write_images(path, px, N, 1, S, S)) return -1;
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", g_data);
    int dims[1] = {N};
    if (ddpm_idx_write(path, lab, 1, dims)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}

/* Starts $DDPM_BIN argv[0..] with stdin, stdout and stderr redirected
 * (stderr to err_path). fsize > 0 sets RLIMIT_FSIZE in the child. */
static pid_t spawn(char *const argv[], const char *err_path, rlim_t fsize) {
    const char *bin = getenv("DDPM_BIN");
    if (!bin) fail_msg("DDPM_BIN is not set (run the tests through ctest)");
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
            !freopen(err_path, "w", stderr))
            _exit(126);
        signal(SIGXFSZ, SIG_DFL); /* ddpm itself must cope with a file-size limit */
        if (fsize > 0) {
            struct rlimit rl = {fsize, fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(126);
        }
        char *args[64];
        int n = 0;
        args[n++] = (char *)bin;
        for (int i = 0; argv[i] && n < 63; i++) args[n++] = argv[i];
        args[n] = NULL;
        execv(bin, args);
        _exit(127);
    }
    return pid;
}

/* exit code, or 128 + signal */
static int wait_for(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void slurp(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

#define DDPM_CKPT_FILE_TMP_PREFIX "ckpt.safetensors.tmp."

/* Number of "ckpt.safetensors.tmp.*" files in dir. */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, DDPM_CKPT_FILE_TMP_PREFIX, strlen(DDPM_CKPT_FILE_TMP_PREFIX))) n++;
    closedir(d);
    return n;
}
static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(((long long)(ms * 1e6)) % 1000000000)};
    nanosleep(&ts, NULL);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Step of a checkpoint that must open and validate completely, or -1 when it does not exist. */
static long ckpt_step(const char *ckpt) {
    if (!cli_exists(ckpt)) return -1;
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, ckpt)) fail_msg("checkpoint does not load after a kill: %s", ddpm_last_error());
    const char *s = ddpm_checkpoint_meta(&ck, "step");
    long step = s ? strtol(s, NULL, 10) : -2;
    ddpm_checkpoint_close(&ck);
    if (step < 0) fail_msg("checkpoint has no valid step");
    return step;
}

static void test_sigkill_20_times(void **state) {
    (void)state;
    char out[400], ckpt[500], err[500], msg[4096];
    snprintf(out, sizeof out, "%s/killed", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(err, sizeof err, "%s/killed.err", g_dir);
    srand(16);
    long last = -1;
    int during_write = 0, advanced = 0;
    for (int round = 0; round < 20; round++) {
        bool resume = last >= 0;
        char *fresh[] = {"train", TINY_ARGS, "--log-every", "1000", "--iters", "100000", "--ckpt-every", "1", "--seed", "3", "--out", out, NULL};
        char *cont[] = {"train", "--resume", "--out", out, "--threads", "1", "--log-every", "1000", "--ckpt-every", "1", NULL};
        pid_t pid = spawn(resume ? cont : fresh, err, 0);
        if (round % 2 == 0) {
            /* aim at a write in progress: once this run has replaced the
             * checkpoint (so every round makes progress), wait for its next
             * temporary file; 60 s at most (sanitizer builds start slowly) */
            struct stat sb;
            ino_t ino0 = stat(ckpt, &sb) == 0 ? sb.st_ino : 0;
            double end = now() + 60;
            while (now() < end && !(stat(ckpt, &sb) == 0 && sb.st_ino != ino0)) sleep_ms(1);
            bool hit = false;
            while (now() < end && !(hit = count_tmp(out) > 0)) sleep_ms(0.05);
            kill(pid, SIGKILL);
            during_write += hit;
        } else {
            sleep_ms(50 + rand() % 1000); /* anywhere: startup, a step, a write */
            kill(pid, SIGKILL);
        }
        int st = wait_for(pid);
        slurp(err, msg, sizeof msg);
        if (st != 128 + SIGKILL) fail_msg("round %d: ddpm train ended with %d before the kill: %s", round, st, msg);
        long step = ckpt_step(ckpt);
        if (step < last) fail_msg("round %d: checkpoint went back from step %ld to %ld", round, last, step);
        advanced += step > last;
        last = step;
    }
    print_message("20 kills: %d while a checkpoint write was in progress, the step advanced %d times, now %ld\n",
                  during_write, advanced, last);
    assert_true(last >= 10); /* each aimed round lets at least one write finish */
    assert_true(during_write >= 5);
    /* --resume continues from the surviving checkpoint */
    char *cont[] = {"train", "--resume", "--out", out, "--threads", "1", "--stop-after", "2", NULL};
    int st = wait_for(spawn(cont, err, 0));
    slurp(err, msg, sizeof msg);
    if (st != 0) fail_msg("resume after 20 kills: exit %d: %s", st, msg);
    assert_non_null(strstr(msg, "(resumed)"));
    assert_int_equal(ckpt_step(ckpt), last + 2);
    assert_int_equal(count_tmp(out), 0); /* the killed writes' temporaries are gone */
}


static void test_full_disk_keeps_checkpoint(void **state) {
    (void)state;
    char out[400], ckpt[500], err[500], msg[4096];
    snprintf(out, sizeof out, "%s/full", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(err, sizeof err, "%s/full.err", g_dir);
    char *first[] = {"train", TINY_ARGS, "--log-every", "1000", "--iters", "10", "--stop-after", "2", "--out", out, NULL};
    int st = wait_for(spawn(first, err, 0));
    slurp(err, msg, sizeof msg);
    if (st != 0) fail_msg("first run: exit %d: %s", st, msg);
    unsigned long n0;
    char *before = cli_slurp(ckpt, &n0);
    /* a limit the log and plot fit under but the checkpoint does not */
    char *cont[] = {"train", "--resume", "--out", out, "--threads", "1", "--stop-after", "1", NULL};
    st = wait_for(spawn(cont, err, (rlim_t)(n0 / 2)));
    slurp(err, msg, sizeof msg);
    if (st != 1) fail_msg("with a full disk: exit %d (want 1, not a signal): %s", st, msg);
    /* the last line names the file and the reason */
    char *end = msg + strlen(msg);
    while (end > msg && end[-1] == '\n') *--end = '\0';
    char *line = strrchr(msg, '\n');
    line = line ? line + 1 : msg;
    if (strncmp(line, "ddpm train: cannot write '", 26) || !strstr(line, "ckpt.safetensors': File too large"))
        fail_msg("unclear error for a full disk: %s", msg);
    print_message("full disk: %s\n", line);
    unsigned long n1;
    char *after = cli_slurp(ckpt, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(count_tmp(out), 0);
    assert_int_equal(ckpt_step(ckpt), 2);
    free(before);
    free(after);
}

/* Waits (up to 60 s) until the file at path contains needle. */
static bool wait_for_text(const char *path, const char *needle, char *buf, size_t cap) {
    for (int i = 0; i < 6000; i++) {
        slurp(path, buf, cap);
        if (strstr(buf, needle)) return true;
        sleep_ms(10);
    }
    return false;
}

/* SIGTERM (what job schedulers send) saves and exits like SIGINT. */
static void test_sigterm_saves(void **state) {
    (void)state;
    char out[400], ckpt[500], err[500], msg[8192];
    snprintf(out, sizeof out, "%s/term", g_dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", out);
    snprintf(err, sizeof err, "%s/term.err", g_dir);
    char *args[] = {"train", TINY_ARGS, "--log-every", "1", "--iters", "100000", "--ckpt-every", "0", "--out", out, NULL};
    pid_t pid = spawn(args, err, 0);
    if (!wait_for_text(err, "iter 3/", msg, sizeof msg)) {
        kill(pid, SIGKILL);
        wait_for(pid);
        fail_msg("no progress: %s", msg);
    }
    kill(pid, SIGTERM);
    int st = wait_for(pid);
    slurp(err, msg, sizeof msg);
    if (st != 128 + SIGTERM) fail_msg("after SIGTERM: exit %d (want %d): %s", st, 128 + SIGTERM, msg);
    const char *said = strstr(msg, "ddpm train: terminated at iteration ");
    if (!said || !strstr(said, "checkpoint saved")) fail_msg("no save message: %s", msg);
    long at = strtol(said + strlen("ddpm train: terminated at iteration "), NULL, 10);
    assert_true(at >= 3);
    assert_int_equal(ckpt_step(ckpt), at);
    /* what killed runs leave of their writes goes; other files stay */
    const char *stray[] = {"ckpt.safetensors.tmp.AbC123", "samples.png.tmp.q1w2e3", "loss.png.tmp.zzzzzz",
                           "samples_000004.png.tmp.x9y8z7", "log.csv.tmp"};
    const char *kept[] = {"notes.tmp.123456", "ckpt.safetensors.tmp.AbC12", "samples_x.png.tmp.abcdef"};
    char path[600];
    for (int i = 0; i < 5 + 3; i++) {
        snprintf(path, sizeof path, "%s/%s", out, i < 5 ? stray[i] : kept[i - 5]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    char *cont[] = {"train", "--resume", "--out", out, "--threads", "1", "--stop-after", "1", NULL};
    st = wait_for(spawn(cont, err, 0));
    slurp(err, msg, sizeof msg);
    if (st != 0) fail_msg("resume after SIGTERM: exit %d: %s", st, msg);
    assert_int_equal(ckpt_step(ckpt), at + 1);
    for (int i = 0; i < 5 + 3; i++) {
        snprintf(path, sizeof path, "%s/%s", out, i < 5 ? stray[i] : kept[i - 5]);
        if (cli_exists(path) != (i >= 5)) fail_msg("'%s' %s", path, i < 5 ? "left behind" : "removed");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_20_times),
        cmocka_unit_test(test_full_disk_keeps_checkpoint),
        cmocka_unit_test(test_sigterm_saves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
