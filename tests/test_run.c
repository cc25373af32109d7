/* test_run.c: the run module (run.h) and the data front (datasource.h) from
 * C: a tiny trainer through ddpm_run_* writes the directory `ddpm train`
 * writes with the same flags; log.csv is cut exactly on resume; run.txt
 * says what the checkpoint beside it holds; the lock; a stop request; the
 * progress lines. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cliutil.h"
#include "core/util.h"
#include "ddpm/datasource.h"
#include "ddpm/progress.h"
#include "ddpm/run.h"

static char g_dir[256], g_data[300];

/* The CLI flags and the config below describe the same run. */
#define FLAGS "--ch 8 --ch-mult 1,2 --res-blocks 1 --attn 4 --groups 4 --batch 4 --steps 20 --iters 6 " \
              "--warmup 2 --seed 7 --threads 2 --log-every 1"

static void tiny_config(ddpm_train_config *c) {
    ddpm_train_config_default(c);
    c->model.in_ch = 1, c->model.res = 8, c->model.ch = 8, c->model.num_levels = 2;
    c->model.ch_mult[0] = 1, c->model.ch_mult[1] = 2;
    c->model.num_res_blocks = 1, c->model.num_attn = 1, c->model.attn_res[0] = 4, c->model.groups = 4;
    c->T = 20, c->batch = 4, c->iters = 6, c->warmup = 2, c->seed = 7;
}

static const char *P(const char *name) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

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

/* A trainer on the test data (fresh, or resumed from dir's checkpoint). */
static ddpm_trainer *trainer(ddpm_data *d, const char *resume_dir) {
    ddpm_trainer *tr = NULL;
    if (resume_dir) {
        char ck[700];
        snprintf(ck, sizeof ck, "%s/%s", resume_dir, DDPM_RUN_CKPT);
        if (ddpm_trainer_resume(&tr, ck, 0)) fail_msg("%s", ddpm_last_error());
    } else {
        ddpm_train_config c;
        tiny_config(&c);
        if (ddpm_trainer_create(&tr, &c)) fail_msg("%s", ddpm_last_error());
    }
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    o.data = g_data, o.seed = ddpm_trainer_config(tr)->seed;
    if (ddpm_data_open(d, &o) || ddpm_data_attach(d, tr)) fail_msg("%s", ddpm_last_error());
    return tr;
}

/* Trains into dir through the run module; returns the result. */
static ddpm_run_result run_lib(const char *dir, const char *resume_dir, int64_t stop_after, volatile sig_atomic_t *stop) {
    ddpm_data d;
    ddpm_trainer *tr = trainer(&d, resume_dir);
    ddpm_run_opts o;
    ddpm_run_opts_default(&o);
    o.dir = dir, o.log_every = 1, o.stop_after = stop_after, o.stop = stop, o.command = "test_run", o.threads = 2;
    ddpm_run *run = NULL;
    ddpm_run_result r;
    memset(&r, 0, sizeof r);
    if (ddpm_run_open(&run, tr, &o) || ddpm_run_train(run, &r)) fail_msg("%s", ddpm_last_error());
    ddpm_run_free(run);
    ddpm_trainer_free(tr);
    ddpm_data_close(&d);
    return r;
}

/* The first three columns (iter,loss,lr) of every line of a log. */
static char *log_head(const char *path) {
    size_t n;
    char *s = cli_slurp(path, &n), *out = calloc(n + 1, 1), *o = out;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        int commas = 0;
        for (char *c = line; *c && !(*c == ',' && ++commas == 3); c++) *o++ = *c;
        *o++ = '\n';
    }
    free(s);
    return out;
}

/* run.txt's value of key (static buffer; "" when absent). */
static const char *info(const char *dir, const char *key) {
    static char v[2100];
    char path[700], line[2200];
    snprintf(path, sizeof path, "%s/run.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("no %s", path);
    v[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == '=') {
            snprintf(v, sizeof v, "%s", line + strlen(key) + 1);
            v[strcspn(v, "\n")] = '\0';
        }
    fclose(f);
    return v;
}

static void test_library_run_matches_cli(void **state) {
    (void)state;
    cli_result c;
    if (cli_run(&c, "train --data %s " FLAGS " --out %s", g_data, P("cli"))) fail_msg("%s", c.err);
    ddpm_run_result r = run_lib(P("lib"), NULL, 0, NULL);
    assert_true(r.finished && !r.stopped);
    assert_int_equal(r.iter, 6);
    assert_int_equal(r.step0, 0);
    const char *same[] = {"ckpt.safetensors", "loss.png", "samples.png"};
    for (int i = 0; i < 3; i++) {
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/cli/%s", g_dir, same[i]);
        snprintf(b, sizeof b, "%s/lib/%s", g_dir, same[i]);
        if (!cli_same_file(a, b)) fail_msg("%s differs between ddpm train and the run module", same[i]);
    }
    char *la = log_head(P("cli/log.csv")), *lb = log_head(P("lib/log.csv"));
    assert_string_equal(la, lb);
    assert_int_equal(cli_lines(la), 1 + 6);
    free(la), free(lb);
    size_t n;
    char *log = cli_slurp(P("lib/log.csv"), &n);
    assert_memory_equal(log, "iter,loss,lr,grad_norm,time_s\n1,", 32);
    free(log);
    assert_string_equal(info(P("lib"), "status"), "finished");
    assert_string_equal(info(P("cli"), "status"), "finished");
    assert_string_equal(info(P("lib"), "command"), "test_run");
    assert_false(cli_exists(P("lib/.lock")));
    assert_false(cli_exists(P("cli/.lock")));
}

/* Rows a killed run wrote after its checkpoint (and junk) go on resume:
 * every iteration has one row, the kept rows unchanged. */
static void test_log_cut_on_resume(void **state) {
    (void)state;
    ddpm_run_result r = run_lib(P("cut"), NULL, 3, NULL);
    assert_false(r.finished);
    assert_int_equal(r.iter, 3);
    assert_string_equal(info(P("cut"), "status"), "stopped");
    assert_string_equal(info(P("cut"), "iter"), "3");
    assert_string_equal(info(P("cut"), "iters"), "6");
    char started[64];
    snprintf(started, sizeof started, "%s", info(P("cut"), "started"));
    double wall = strtod(info(P("cut"), "wall_s"), NULL);
    size_t n;
    char *before = cli_slurp(P("cut/log.csv"), &n);
    assert_int_equal(cli_lines(before), 1 + 3);
    FILE *f = fopen(P("cut/log.csv"), "a");
    assert_non_null(f);
    fputs("4,9.000000,0.001,1.0,5.0\n5,9.000000,0.001,1.0,6.0\n2,9.000000,0.001,1.0,7.0\nnot,a,row\n99,1,1,1,1\n", f);
    fclose(f);
    r = run_lib(P("cut"), P("cut"), 0, NULL);
    assert_true(r.finished);
    assert_int_equal(r.step0, 3);
    char *after = cli_slurp(P("cut/log.csv"), &n);
    assert_int_equal(cli_lines(after), 1 + 6);
    assert_memory_equal(after, before, strlen(before)); /* the kept rows as they were */
    assert_null(strstr(after, "9.000000"));
    double t_prev = 0;
    int it_prev = 0;
    for (char *line = strtok(strchr(after, '\n') + 1, "\n"); line; line = strtok(NULL, "\n")) {
        int it;
        double loss, lr, g, t;
        assert_int_equal(sscanf(line, "%d,%lf,%lf,%lf,%lf", &it, &loss, &lr, &g, &t), 5);
        assert_int_equal(it, it_prev + 1);
        assert_true(t >= t_prev); /* time_s continues across the resume */
        it_prev = it, t_prev = t;
    }
    assert_true(t_prev >= wall);
    assert_string_equal(info(P("cut"), "started"), started);
    assert_true(strtod(info(P("cut"), "wall_s"), NULL) >= wall);
    assert_string_equal(info(P("cut"), "status"), "finished");
    assert_string_equal(info(P("cut"), "iter"), "6");
    assert_true(info(P("cut"), "cpu")[0] != '\0');
    assert_string_equal(info(P("cut"), "threads"), "2");
    free(before), free(after);
    /* the same checkpoint as six iterations straight */
    assert_true(cli_same_file(P("cut/ckpt.safetensors"), P("lib/ckpt.safetensors")));
}

/* A stop request ends the run after the iteration and saves. */
static void test_stop_request(void **state) {
    (void)state;
    volatile sig_atomic_t stop = 1;
    ddpm_run_result r = run_lib(P("stop"), NULL, 0, &stop);
    assert_true(r.stopped && !r.finished);
    assert_int_equal(r.iter, 1);
    assert_string_equal(info(P("stop"), "status"), "stopped");
    assert_string_equal(info(P("stop"), "iter"), "1");
    assert_true(cli_exists(P("stop/ckpt.safetensors")));
    assert_false(cli_exists(P("stop/samples.png")));
}

/* A second run on a directory in use fails at once and writes nothing. */
static void test_lock(void **state) {
    (void)state;
    ddpm_run_lock held;
    assert_int_equal(ddpm_mkdirs(P("busy/a/b")), 0);
    assert_int_equal(ddpm_run_lock_take(&held, P("busy")), DDPM_OK);
    cli_write_text(P("busy/ckpt.safetensors.tmp.AbC123"), "x");
    ddpm_data d;
    ddpm_trainer *tr = trainer(&d, NULL);
    ddpm_run_opts o;
    ddpm_run_opts_default(&o);
    o.dir = P("busy");
    ddpm_run *run;
    assert_int_equal(ddpm_run_open(&run, tr, &o), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), "is in use by another ddpm train"));
    assert_false(cli_exists(P("busy/log.csv")));
    ddpm_run_lock_release(&held);
    assert_false(cli_exists(P("busy/.lock")));
    assert_int_equal(ddpm_run_lock_guard(&held, P("busy"), false, false), DDPM_OK); /* no checkpoint: a new run */
    assert_false(cli_exists(P("busy/ckpt.safetensors.tmp.AbC123"))); /* a killed run's temporary */
    ddpm_run_lock_release(&held);
    assert_int_equal(ddpm_run_lock_guard(&held, P("lib"), false, false), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "already exists; pass --resume"));
    ddpm_run_lock_release(&held);
    assert_int_equal(ddpm_run_lock_guard(&held, P("busy"), true, false), DDPM_ERR_ARG);
    assert_non_null(strstr(ddpm_last_error(), "cannot resume"));
    ddpm_run_lock_release(&held);
    ddpm_trainer_free(tr);
    ddpm_data_close(&d);
}

/* Not a terminal: a line at each 10 %, then the total. */
static void test_progress_lines(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    ddpm_progress p;
    ddpm_progress_start(&p, f, "drawing", 20, "img");
    for (long i = 1; i <= 20; i++) ddpm_progress_tick(&p, i);
    ddpm_progress_done(&p);
    rewind(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_int_equal(cli_lines(buf), 9 + 1);
    assert_non_null(strstr(buf, "drawing: 2/20 img"));
    assert_non_null(strstr(buf, "drawing: 20 img in "));
    char d[32];
    ddpm_fmt_duration(d, sizeof d, 75);
    assert_string_equal(d, "1m15s");
    ddpm_fmt_duration(d, sizeof d, 4000);
    assert_string_equal(d, "1h06m");
}

/* The data front: where names lead, flips recorded only when on, and the
 * augmentation a function of (seed, iteration, image). */
static void test_data_front(void **state) {
    (void)state;
    ddpm_data_opts o;
    ddpm_data_opts_default(&o);
    char dir[1024];
    o.data_dir = P("nowhere");
    assert_int_equal(ddpm_data_find(dir, sizeof dir, &o), DDPM_ERR_IO);
    assert_non_null(strstr(ddpm_last_error(), "MNIST not found"));
    o.data = P("not-there");
    assert_int_equal(ddpm_data_find(dir, sizeof dir, &o), DDPM_ERR_ARG);
    o.data = g_data, o.hflip = 1, o.seed = 3;
    ddpm_data d;
    assert_int_equal(ddpm_data_open(&d, &o), DDPM_OK);
    assert_false(d.folder);
    int n;
    const ddpm_st_meta *m = ddpm_data_meta(&d, &n);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].key, DDPM_META_DATA_HFLIP);
    assert_string_equal(m[0].value, "1");
    size_t D = (size_t)d.c * d.h * d.w;
    float *x = malloc(8 * D * sizeof(float)), *y = malloc(8 * D * sizeof(float)), *z = malloc(8 * D * sizeof(float));
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7}, flips = 0;
    for (size_t i = 0; i < 8 * D; i++) x[i] = y[i] = z[i] = (float)(i % 7) - (float)(i % 3);
    ddpm_data_augment(&d, x, NULL, idx, 8, 5);
    ddpm_data_augment(&d, y, NULL, idx, 8, 5);
    assert_memory_equal(x, y, 8 * D * sizeof(float));
    for (int b = 0; b < 8; b++) flips += memcmp(x + b * D, z + b * D, D * sizeof(float)) != 0;
    assert_true(flips > 0 && flips < 8); /* some images flipped, not all (8 fair coins; the seed is fixed) */
    ddpm_data_augment(&d, y, NULL, idx, 8, 5); /* a flip undoes a flip */
    for (int b = 0; b < 8; b++)
        if (memcmp(x + b * D, z + b * D, D * sizeof(float))) assert_memory_equal(y + b * D, z + b * D, D * sizeof(float));
    ddpm_data_close(&d);
    o.hflip = -1;
    assert_int_equal(ddpm_data_open(&d, &o), DDPM_OK);
    ddpm_data_meta(&d, &n);
    assert_int_equal(n, 0); /* IDX digits: no flips, no key (checkpoints as before folders existed) */
    assert_false(ddpm_data_augments(&d));
    ddpm_data_close(&d);
    free(x), free(y), free(z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_run_matches_cli),
        cmocka_unit_test(test_log_cut_on_resume), /* after test_library_run_matches_cli: its checkpoint */
        cmocka_unit_test(test_stop_request),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_progress_lines),
        cmocka_unit_test(test_data_front),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
