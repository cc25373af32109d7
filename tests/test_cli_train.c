/* test_cli_train.c: `ddpm train` from the outside: bad arguments, exact
 * resume, the overwrite guard, a non-finite loss, Ctrl-C. Runs a tiny model
 * on a small IDX dataset the test writes. */
#define _POSIX_C_SOURCE 200809L
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

#include <stb_image.h>

static char g_dir[256], g_data[300];

/* flags of a tiny class-conditional model with dropout on the 8x8 data:
 * both random streams (noise/timesteps/label-drop and dropout masks) matter */
#define TINY "--data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 4 --steps 20 " \
             "--classes 4 --dropout 0.1 --threads 2 --log-every 1"

static int setup(void **state) {
    (void)state;
    cli_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    return cli_write_dataset(g_data, 40, 8);
}

static int teardown(void **state) {
    (void)state;
    cli_rmtree(g_dir);
    return 0;
}


static const char *meta_of(const char *ckpt, const char *key, char *buf, size_t cap) {
    ddpm_checkpoint ck;
    if (ddpm_checkpoint_open(&ck, ckpt)) fail_msg("%s", ddpm_last_error());
    const char *v = ddpm_checkpoint_meta(&ck, key);
    snprintf(buf, cap, "%s", v ? v : "(none)");
    ddpm_checkpoint_close(&ck);
    return buf;
}

static void expect(int code, const char *needle, const char *args) {
    cli_result r;
    cli_run(&r, "train %s", args);
    if (r.status != code || !strstr(r.err, needle))
        fail_msg("'ddpm train %s': exit %d (want %d), stderr: %s (want '%s')", args, r.status, code, r.err, needle);
    if (code == 2 && cli_lines(r.err) != 1) fail_msg("usage error is not one line: %s", r.err);
}

static void test_help(void **state) {
    (void)state;
    const char *const flags[] = {"--resume", "--iters", "--ch-mult", "--data", "--out", "--force"};
    cli_check_help("train", flags, (int)(sizeof flags / sizeof *flags));
}

static void test_bad_arguments(void **state) {
    (void)state;
    char out[400], a[800];
    snprintf(out, sizeof out, "%s/bad", g_dir);
    expect(2, "unknown option '--bogus'", "--bogus");
    expect(2, "--steps must be in [2, 100000]", "--steps 1");
    expect(2, "--iters must be in", "--iters 0");
    expect(2, "--iters expects an integer", "--iters 12x");
    expect(2, "--lr expects a number", "--lr fast");
    expect(2, "--batch must be in", "--batch -3");
    expect(2, "--schedule: unknown schedule 'cubic'", "--schedule cubic");
    expect(2, "--loss: unknown loss 'l3'", "--loss l3");
    expect(2, "missing value for '--out'", "--out");
    expect(2, "--resume and --force", "--resume --force");
    expect(2, "not divisible", "--ch 30");
    expect(2, "--ch-mult expects a comma-separated list", "--ch-mult 1,,2");
    snprintf(a, sizeof a, "--out %s --resume", out);
    expect(1, "cannot resume", a);
    snprintf(a, sizeof a, "--data %s/nowhere --out %s", g_dir, out);
    expect(1, "nowhere", a);
    assert_false(cli_exists(out)); /* nothing created on failure */
}

/* --data mnist looks in --data-dir, then $DDPM_DATA_DIR, then ./data/mnist
 * (the command line's defaults; the library only takes paths). */
static void test_data_location(void **state) {
    (void)state;
    char cmd[2000], errf[400];
    snprintf(errf, sizeof errf, "%s/loc.err", g_dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && env -u DDPM_DATA_DIR '%s' train --data-dir '%s/none' --out '%s/loc' 2>'%s'",
             g_dir, getenv("DDPM_BIN"), g_dir, g_dir, errf);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    size_t n;
    char *err = cli_slurp(errf, &n), want[1200];
    snprintf(want, sizeof want,
             "ddpm train: MNIST not found (no train-images-idx3-ubyte[.gz] in '%s/none', 'data/mnist'): "
             "run scripts/fetch_mnist.sh or pass --data-dir DIR\n", g_dir);
    assert_string_equal(err, want);
    free(err);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && DDPM_DATA_DIR='%s' '%s' train --ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 "
             "--batch 4 --steps 20 --iters 1 --threads 2 --out '%s/loc' >/dev/null 2>&1",
             g_dir, g_data, getenv("DDPM_BIN"), g_dir);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* N iterations straight == N/2, then --resume for the rest: same bytes. */
static void test_resume_is_exact(void **state) {
    (void)state;
    char a[1200], A[400], B[400];
    snprintf(A, sizeof A, "%s/straight", g_dir);
    snprintf(B, sizeof B, "%s/halves", g_dir);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --iters 8 --warmup 2 --seed 7 --out %s", g_data, A);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    snprintf(a, sizeof a, "train " TINY " --iters 8 --warmup 2 --seed 7 --out %s --stop-after 4", g_data, B);
    if (cli_run(&r, "%s", a)) fail_msg("%s\n%s", a, r.err);
    assert_non_null(strstr(r.out, "--resume"));
    char buf[64], pa[500], pb[500];
    snprintf(pb, sizeof pb, "%s/ckpt.safetensors", B);
    assert_string_equal(meta_of(pb, "step", buf, sizeof buf), "4");
    if (cli_run(&r, "train --resume --out %s --threads 2 --log-every 1", B)) fail_msg("resume: %s", r.err);
    assert_non_null(strstr(r.err, "(resumed)"));
    snprintf(pa, sizeof pa, "%s/ckpt.safetensors", A);
    size_t na, nb;
    char *ba = cli_slurp(pa, &na), *bb = cli_slurp(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na); /* weights, EMA, moments, rng and data state */
    free(ba);
    free(bb);
    /* the log of the resumed run has every iteration once */
    snprintf(pb, sizeof pb, "%s/log.csv", B);
    char *log = cli_slurp(pb, &nb);
    assert_int_equal(cli_lines(log), 1 + 8);
    assert_memory_equal(log, "iter,loss,lr,grad_norm,time_s\n1,", 32);
    free(log);
    snprintf(pb, sizeof pb, "%s/run.txt", B);
    char *info = cli_slurp(pb, &nb);
    assert_non_null(strstr(info, "status=finished\niter=8\niters=8\n"));
    assert_non_null(strstr(info, "command=ddpm train --resume --out "));
    free(info);
    snprintf(pb, sizeof pb, "%s/samples.png", B);
    assert_true(cli_exists(pb));
    snprintf(pb, sizeof pb, "%s/loss.png", B);
    assert_true(cli_exists(pb));

    /* the guard against clobbering a run, and what --resume may not change */
    snprintf(a, sizeof a, TINY " --iters 8 --out %s", g_data, A);
    expect(1, "already exists; pass --resume", a);
    snprintf(a, sizeof a, "--resume --out %s --lr 0.1", A);
    expect(2, "--lr cannot be changed on --resume", a);
    snprintf(a, sizeof a, "--resume --out %s --ch 16", A);
    expect(2, "--ch cannot be changed on --resume", a);
}

static void test_nonfinite_loss_keeps_checkpoint(void **state) {
    (void)state;
    char a[1200], out[400], ck[500], buf[64];
    snprintf(out, sizeof out, "%s/nan", g_dir);
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", out);
    setenv("DDPM_TEST_NAN_AT", "5", 1);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --iters 8 --ckpt-every 2 --out %s", g_data, out);
    cli_run(&r, "%s", a);
    unsetenv("DDPM_TEST_NAN_AT");
    if (r.status != 1 || !strstr(r.err, "loss is nan at iteration 5") || !strstr(r.err, "untouched"))
        fail_msg("exit %d, stderr: %s", r.status, r.err);
    assert_string_equal(meta_of(ck, "step", buf, sizeof buf), "4"); /* the last good one */
}

/* Starts a long run into `out` in the background, waits for its third log
 * row, sends `sig` and returns the exit status of the run. */
static int signal_run(const char *out, const char *sig) {
    char cmd[2000];
    snprintf(cmd, sizeof cmd,
             "'%s' train " TINY " --iters 100000 --out '%s' >/dev/null 2>'%s.err' & pid=$!; "
             "i=0; while [ $i -lt 600 ] && ! [ $(wc -l < '%s/log.csv' 2>/dev/null || echo 0) -ge 3 ]; do "
             "sleep 0.1; i=$((i+1)); done; kill -%s $pid; wait $pid; exit $?",
             getenv("DDPM_BIN"), g_data, out, out, out, sig);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Ctrl-C (SIGINT) and a job scheduler's SIGTERM both finish the iteration,
 * save once and exit 128 + signal; --resume continues from there. */
static void signal_saves(const char *name, const char *sig, int code, const char *word) {
    char out[400], buf[64], ck[500], errf[500];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    snprintf(ck, sizeof ck, "%s/ckpt.safetensors", out);
    assert_int_equal(signal_run(out, sig), code);
    int64_t step = strtoll(meta_of(ck, "step", buf, sizeof buf), NULL, 10);
    assert_true(step >= 2 && step < 100000);
    snprintf(errf, sizeof errf, "%s.err", out);
    size_t n;
    char *err = cli_slurp(errf, &n);
    const char *hit = strstr(err, word);
    if (!hit) fail_msg("stderr lacks '%s': %s", word, err);
    assert_null(strstr(hit + 1, word)); /* saved and said so once */
    free(err);
    snprintf(errf, sizeof errf, "%s/.lock", out);
    assert_false(cli_exists(errf)); /* released and removed */
    cli_result r;
    assert_int_equal(cli_run(&r, "train --resume --out %s --stop-after 1 --threads 2", out), 0);
    assert_int_equal(strtoll(meta_of(ck, "step", buf, sizeof buf), NULL, 10), step + 1);
}

static void test_interrupt_saves_checkpoint(void **state) {
    (void)state;
    signal_saves("int", "INT", 130, "interrupted at iteration");
}

static void test_sigterm_saves_checkpoint(void **state) {
    (void)state;
    signal_saves("term", "TERM", 143, "terminated at iteration");
}

/* A second `ddpm train` on a busy --out fails at once; a run killed with
 * SIGKILL leaves its lock file behind, which does not block the next run.
 * It waits for the first checkpoint itself, not for log rows: the log row
 * comes before the checkpoint's fsync, and a kill between the two (seen on
 * a slow CI disk) leaves nothing to resume. */
static void test_lock(void **state) {
    (void)state;
    char out[400], cmd[4000], lock[500];
    snprintf(out, sizeof out, "%s/lock", g_dir);
    snprintf(lock, sizeof lock, "%s/.lock", out);
    const char *bin = getenv("DDPM_BIN");
    snprintf(cmd, sizeof cmd,
             "'%s' train " TINY " --iters 100000 --ckpt-every 2 --out '%s' >/dev/null 2>&1 & pid=$!; "
             "i=0; while [ $i -lt 600 ] && ! [ -f '%s/ckpt.safetensors' ]; do "
             "sleep 0.1; i=$((i+1)); done; "
             "'%s' train " TINY " --iters 10 --force --out '%s' >'%s.out' 2>&1; second=$?; "
             "'%s' train --resume --out '%s' >>'%s.out' 2>&1; third=$?; "
             "kill -KILL $pid; wait $pid; [ $second -eq 1 ] && [ $third -eq 1 ]",
             bin, g_data, out, out, bin, g_data, out, out, bin, out, out);
    int st = system(cmd);
    char outf[500];
    snprintf(outf, sizeof outf, "%s.out", out);
    size_t n;
    char *msg = cli_slurp(outf, &n);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || cli_lines(msg) != 2 || !strstr(msg, "in use by another ddpm train"))
        fail_msg("second run on a busy --out: %s", msg);
    free(msg);
    assert_true(cli_exists(lock)); /* SIGKILL: no cleanup ran */
    cli_result r;
    if (cli_run(&r, "train --resume --out %s --stop-after 1 --threads 2", out)) fail_msg("after a crash: %s", r.err);
    assert_false(cli_exists(lock));
}

/* Train a tiny model for a few iterations on real MNIST (the shared copy
 * when present, else the test's own IDX files), sample from it, and check
 * the PNG a person would look at. */
/* A class-conditional run's sample grid has one class per column (K = 4:
 * 4 columns of 8x8 tiles, 4 rows to make 16), and --scale enlarges it. */
static void test_class_grid(void **state) {
    (void)state;
    char out[400], a[1200], png[450];
    snprintf(out, sizeof out, "%s/grid", g_dir);
    snprintf(a, sizeof a, "train " TINY " --iters 2 --scale 3 --out %s", g_data, out);
    cli_result r;
    if (cli_run(&r, "%s", a)) fail_msg("%s: %s", a, r.err);
    snprintf(png, sizeof png, "%s/samples.png", out);
    int w, h, ch;
    assert_true(stbi_info(png, &w, &h, &ch));
    assert_int_equal(w, 4 * (3 * 8 + 2) + 2);
    assert_int_equal(h, 4 * (3 * 8 + 2) + 2);
}

static char g_vck[500]; /* the v checkpoint of test_objective_flags */

/* --objective and --snr-gamma: checked, recorded, fixed on --resume, and a
 * v checkpoint is read by sample (every sampler, guidance), info and
 * eval --bpd. */
static void test_objective_flags(void **state) {
    (void)state;
    expect(2, "--objective: unknown objective 'noise' (expected eps, v or x0)", "--objective noise");
    expect(2, "--snr-gamma must be in [0, 1e+06]", "--snr-gamma -1");
    expect(2, "--snr-gamma expects a number", "--snr-gamma nan");
    expect(2, "--snr-gamma expects a number", "--snr-gamma inf");
    char out[400], a[1500], buf[64], png[500];
    snprintf(out, sizeof out, "%s/vpred", g_dir);
    snprintf(g_vck, sizeof g_vck, "%s/ckpt.safetensors", out);
    snprintf(png, sizeof png, "%s/s.png", out);
    cli_result r;
    snprintf(a, sizeof a, "train " TINY " --iters 2 --objective v --snr-gamma 5 --out %s", g_data, out);
    if (cli_run(&r, "%s", a)) fail_msg("%s: %s", a, r.err);
    assert_non_null(strstr(r.err, "objective v, min-SNR gamma 5"));
    assert_string_equal(meta_of(g_vck, "objective", buf, sizeof buf), "v");
    assert_string_equal(meta_of(g_vck, "snr_gamma", buf, sizeof buf), "5");
    snprintf(a, sizeof a, "--resume --out %s --objective x0", out);
    expect(2, "--objective cannot be changed on --resume", a);
    snprintf(a, sizeof a, "--resume --out %s --snr-gamma 1", out);
    expect(2, "--snr-gamma cannot be changed on --resume", a);
    if (cli_run(&r, "info -c %s", g_vck)) fail_msg("info: %s", r.err);
    assert_non_null(strstr(r.out, "objective: v\n"));
    const char *samplers[] = {"--sampler ddpm --sample-steps 5", "--sampler ddim --sample-steps 5",
                              "--sampler dpm++2m --sample-steps 5", "--sampler ddim --sample-steps 5 --guidance 2"};
    for (int k = 0; k < 4; k++) {
        if (cli_run(&r, "sample -c %s -n 4 %s -o %s", g_vck, samplers[k], png)) fail_msg("sample %s: %s", samplers[k], r.err);
        assert_non_null(strstr(r.err, "v-prediction"));
    }
    /* eval --bpd on the training images as the test split */
    snprintf(a, sizeof a, "cp '%s/train-images-idx3-ubyte' '%s/t10k-images-idx3-ubyte' && cp '%s/train-labels-idx1-ubyte' "
             "'%s/t10k-labels-idx1-ubyte'", g_data, g_data, g_data, g_data);
    assert_int_equal(system(a), 0);
    if (cli_run(&r, "eval --bpd -c %s --data %s -n 2", g_vck, g_data)) fail_msg("eval --bpd: %s", r.err);
    assert_non_null(strstr(r.err, "v-prediction"));
    assert_non_null(strstr(r.out, "bpd="));
}

/* A copy of the v checkpoint at dir/name with the byte after `"objectiv` or
 * after `"objective":"` replaced by c. */
static void edited_copy(char *dst, size_t cap, const char *name, const char *after, char c) {
    snprintf(dst, cap, "%s/vpred/%s", g_dir, name);
    size_t n;
    char *b = cli_slurp(g_vck, &n), *v = strstr(b + 8, after);
    assert_non_null(v);
    v[strlen(after)] = c;
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

/* The objective is applied: the same weights read as eps (the key hidden, as
 * in a checkpoint from before the option) sample other images. A bad value is
 * one line naming the file and the key, for each reader. */
static void test_objective_readers(void **state) {
    (void)state;
    char aseps[500], bad[500], idx1[500], idx2[500], cmd[1100];
    edited_copy(aseps, sizeof aseps, "as_eps.safetensors", "\"objectiv", 'X');
    snprintf(idx1, sizeof idx1, "%s/vpred/v.idx", g_dir);
    snprintf(idx2, sizeof idx2, "%s/vpred/eps.idx", g_dir);
    snprintf(cmd, sizeof cmd, "sample -n 4 --sampler ddim --sample-steps 5 -o %s/vpred/s.png", g_dir);
    cli_result r;
    if (cli_run(&r, "%s -c %s --idx %s", cmd, g_vck, idx1) || cli_run(&r, "%s -c %s --idx %s", cmd, aseps, idx2))
        fail_msg("sample: %s", r.err);
    size_t n1, n2;
    char *i1 = cli_slurp(idx1, &n1), *i2 = cli_slurp(idx2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(i1, i2, n1);
    free(i1), free(i2);
    if (cli_run(&r, "info -c %s", aseps)) fail_msg("info: %s", r.err);
    assert_non_null(strstr(r.out, "objective: eps (not recorded"));
    edited_copy(bad, sizeof bad, "bad.safetensors", "\"objective\":\"", 'w');
    char want[700];
    snprintf(want, sizeof want, "'%s': metadata 'objective' is an unknown value (expected eps, v or x0): 'w'", bad);
    const char *cmds[] = {"sample -n 1 -o x.png -c", "info -c", "eval --bpd -n 1 --data %s -c"};
    for (int k = 0; k < 3; k++) {
        char c[800];
        snprintf(c, sizeof c, cmds[k], g_data);
        cli_run(&r, "%s %s", c, bad);
        if (r.status != 1 || !strstr(r.err, want) || cli_lines(r.err) != 1)
            fail_msg("'%s %s': exit %d, stderr %s (want '%s')", c, bad, r.status, r.err, want);
    }
}

static void test_end_to_end(void **state) {
    (void)state;
    const char *mn = getenv("DDPM_SHARED_MNIST");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", mn ? mn : "");
    bool real = mn && cli_exists(probe);
    const char *data = real ? mn : g_data;
    int res = real ? 28 : 8;
    char out[400], a[1500];
    snprintf(out, sizeof out, "%s/e2e", g_dir);
    cli_result r;
    snprintf(a, sizeof a,
             "train --data %s --ch 8 --ch-mult 1,2 --res-blocks 1 --attn %d --groups 4 --batch 8 --iters 4 "
             "--steps 50 --threads 2 --out %s",
             data, res / 2, out);
    if (cli_run(&r, "%s", a)) fail_msg("%s: %s", a, r.err);
    printf("trained on %s: %s", real ? "real MNIST" : "the test's IDX files", r.out);
    char png[500];
    snprintf(png, sizeof png, "%s/grid.png", out);
    if (cli_run(&r, "sample -c %s/ckpt.safetensors -n 4 --sampler ddim --sample-steps 5 -o %s", out, png))
        fail_msg("sample: %s", r.err);
    int w, h, ch;
    unsigned char *px = stbi_load(png, &w, &h, &ch, 1);
    assert_non_null(px);
    int side = 2 * res + 3 * 2; /* 2x2 grid, 2 px padding */
    assert_int_equal(w, side);
    assert_int_equal(h, side);
    int spread = cli_grid_min_spread(px, w, h, res, res, 2); /* inside each tile, without the padding */
    printf("smallest tile spread: %d\n", spread);
    assert_true(spread > 32); /* every tile an image, not a flat field */
    stbi_image_free(px);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_data_location),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_nonfinite_loss_keeps_checkpoint),
        cmocka_unit_test(test_interrupt_saves_checkpoint),
        cmocka_unit_test(test_sigterm_saves_checkpoint),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_class_grid),
        cmocka_unit_test(test_objective_flags),
        cmocka_unit_test(test_objective_readers), /* after test_objective_flags: its checkpoint */
        cmocka_unit_test(test_end_to_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
